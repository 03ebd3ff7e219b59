//! The cells of the report: series of values over rounds, min / median / max, ratios of
//! medians and the per-round range of a ratio, and how each workload is measured.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::stats::min_med_max;

pub(super) type Series = BTreeMap<(String, u64, String, String), Vec<f64>>;

pub(super) fn load(p: &Path) -> Option<Value> {
    serde_json::from_str(&fs::read_to_string(p).ok()?).ok()
}

/// (variant, pool, workload, metric) → values over rounds, from host.json runs.
pub(super) fn host_series(host: &Value) -> Series {
    let mut s = Series::new();
    for run in host["runs"].as_array().into_iter().flatten() {
        let var = run["variant"].as_str().unwrap_or("?").to_string();
        let pool = run["pool"].as_u64().unwrap_or(0);
        let mut put = |w: &str, m: &str, v: Option<f64>| {
            if let Some(v) = v {
                s.entry((var.clone(), pool, w.to_string(), m.to_string()))
                    .or_default()
                    .push(v);
            }
        };
        put("-", "idle_rss_kib", run["idle_rss_kib"].as_f64());
        put(
            "-",
            "rss_after_init_kib",
            run["report"]["daemon_rss_after_init_kib"].as_f64(),
        );
        for r in run["report"]["results"].as_array().into_iter().flatten() {
            let w = r["workload"].as_str().unwrap_or("?");
            if r["errors"].as_u64().unwrap_or(0) + r["verify_errors"].as_u64().unwrap_or(0) > 0 {
                put(w, "errors", Some(1.0));
            }
            put(w, "mib_s", r["mib_s"].as_f64());
            put(w, "iops", r["iops"].as_f64());
            put(w, "p50", r["lat_us"]["p50"].as_f64());
            put(w, "p99", r["lat_us"]["p99"].as_f64());
            put(w, "cpu_s_per_gib", r["daemon"]["cpu_s_per_gib"].as_f64());
            put(w, "cpu_us_per_op", r["daemon"]["cpu_us_per_op"].as_f64());
            put(w, "cpu_share", r["daemon"]["cpu_share"].as_f64());
            put(w, "hwm_kib", r["daemon"]["hwm_kib"].as_f64());
            put(w, "anon_kib", r["daemon"]["anon_peak_kib"].as_f64());
            put(w, "gen_share", r["generator"]["cpu_share"].as_f64());
        }
    }
    s
}

pub(super) fn mmm(v: Option<&Vec<f64>>) -> Option<(f64, f64, f64)> {
    v.and_then(|v| min_med_max(v))
}

pub(super) fn fmt_num(x: f64) -> String {
    if x.abs() >= 1000.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else if x.abs() >= 0.1 {
        format!("{x:.3}")
    } else {
        format!("{x:.4}")
    }
}

pub(super) fn fmt_mmm(t: Option<(f64, f64, f64)>) -> String {
    match t {
        Some((a, m, b)) => format!("{} / **{}** / {}", fmt_num(a), fmt_num(m), fmt_num(b)),
        None => "–".into(),
    }
}

pub(super) fn ratio(a: Option<(f64, f64, f64)>, b: Option<(f64, f64, f64)>) -> Option<f64> {
    match (a, b) {
        (Some((_, x, _)), Some((_, y, _))) if y > 0.0 => Some(x / y),
        _ => None,
    }
}

pub(super) fn fmt_ratio(r: Option<f64>) -> String {
    r.map(|r| format!("{r:.3}")).unwrap_or_else(|| "–".into())
}

pub(super) const WORKLOADS: [&str; 6] = [
    "seq-read",
    "seq-write",
    "rand-read",
    "rand-write",
    "meta",
    "churn",
];

/// Workload `w`'s results at `pool`, paired by round: (variant `a`'s, variant `b`'s).
pub(super) fn paired<'h>(
    host: &'h Value,
    a: &str,
    b: &str,
    pool: u64,
    w: &str,
) -> BTreeMap<u64, (Option<&'h Value>, Option<&'h Value>)> {
    let mut by_round: BTreeMap<u64, (Option<&Value>, Option<&Value>)> = BTreeMap::new();
    for run in host["runs"].as_array().into_iter().flatten() {
        if run["pool"].as_u64() != Some(pool) {
            continue;
        }
        let var = run["variant"].as_str().unwrap_or("");
        let Some(r) = run["report"]["results"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["workload"].as_str() == Some(w))
        else {
            continue;
        };
        let e = by_round
            .entry(run["round"].as_u64().unwrap_or(0))
            .or_default();
        if var == a {
            e.0 = Some(r);
        } else if var == b {
            e.1 = Some(r);
        }
    }
    by_round
}

/// The value at `path` in a workload result.
pub(super) fn at(r: &Value, path: &[&str]) -> Option<f64> {
    path.iter().fold(r, |v, k| &v[*k]).as_f64()
}

/// Per-round ratios `a/b` of one metric (runs paired by round): (min, max) over the rounds.
/// This is the spread a ratio of medians must be read against.
pub(super) fn round_range(
    host: &Value,
    a: &str,
    b: &str,
    pool: u64,
    w: &str,
    path: &[&str],
) -> Option<(f64, f64)> {
    let rs: Vec<f64> = paired(host, a, b, pool, w)
        .values()
        .filter_map(
            |&(x, y)| match (x.and_then(|x| at(x, path)), y.and_then(|y| at(y, path))) {
                (Some(x), Some(y)) if y > 0.0 => Some(x / y),
                _ => None,
            },
        )
        .collect();
    let (lo, _, hi) = min_med_max(&rs)?;
    Some((lo, hi))
}

pub(super) fn fmt_range(r: Option<(f64, f64)>) -> String {
    r.map(|(a, b)| format!("{a:.3}–{b:.3}"))
        .unwrap_or_else(|| "–".into())
}

pub(super) fn metric_path(mk: &str) -> &'static [&'static str] {
    match mk {
        "mib_s" => &["mib_s"],
        _ => &["iops"],
    }
}

pub(super) fn main_metric(w: &str) -> (&'static str, &'static str) {
    match w {
        "seq-read" | "seq-write" => ("mib_s", "MiB/s"),
        _ => ("iops", "IOPS"),
    }
}

pub(super) fn cpu_metric(w: &str) -> (&'static str, &'static str) {
    if w == "meta" || w == "churn" {
        ("cpu_us_per_op", "CPU µs/op")
    } else {
        ("cpu_s_per_gib", "CPU s/GiB")
    }
}

/// A ratio cell with the range of its per-round ratios: `R (LO–HI)`.
pub(super) fn fmt_ratio_range(r: Option<f64>, rr: Option<(f64, f64)>) -> String {
    format!("{} ({})", fmt_ratio(r), fmt_range(rr))
}

/// One comparison row, `| LABEL | A | B | LAST |`: `label` is the leading cell(s), `a` and `b`
/// the two sides' min / median / max, `last` the ratio cell(s).
pub(super) fn row(
    o: &mut String,
    label: &str,
    a: Option<(f64, f64, f64)>,
    b: Option<(f64, f64, f64)>,
    last: &str,
) {
    let _ = writeln!(o, "| {label} | {} | {} | {last} |", fmt_mmm(a), fmt_mmm(b));
}
