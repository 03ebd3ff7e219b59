//! `RESULTS.md` (and `summary.json`) from the JSON files of a bench run. Everything in the
//! report is computed here from the raw files: the report is never edited by hand.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use serde_json::{json, Value};

use crate::stats::min_med_max;

type Series = BTreeMap<(String, u64, String, String), Vec<f64>>;

fn load(p: &Path) -> Option<Value> {
    serde_json::from_str(&fs::read_to_string(p).ok()?).ok()
}

/// (variant, pool, workload, metric) → values over rounds, from host.json runs.
fn host_series(host: &Value) -> Series {
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

fn mmm(v: Option<&Vec<f64>>) -> Option<(f64, f64, f64)> {
    v.and_then(|v| min_med_max(v))
}

fn fmt_num(x: f64) -> String {
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

fn fmt_mmm(t: Option<(f64, f64, f64)>) -> String {
    match t {
        Some((a, m, b)) => format!("{} / **{}** / {}", fmt_num(a), fmt_num(m), fmt_num(b)),
        None => "–".into(),
    }
}

fn ratio(a: Option<(f64, f64, f64)>, b: Option<(f64, f64, f64)>) -> Option<f64> {
    match (a, b) {
        (Some((_, x, _)), Some((_, y, _))) if y > 0.0 => Some(x / y),
        _ => None,
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map(|r| format!("{r:.3}")).unwrap_or_else(|| "–".into())
}

const WORKLOADS: [&str; 6] = [
    "seq-read",
    "seq-write",
    "rand-read",
    "rand-write",
    "meta",
    "churn",
];

/// Per-round ratios `a/b` of one metric (runs paired by round): (min, max) over the rounds.
/// This is the spread a ratio of medians must be read against.
fn round_range(
    host: &Value,
    a: &str,
    b: &str,
    pool: u64,
    w: &str,
    path: &[&str],
) -> Option<(f64, f64)> {
    let mut by_round: BTreeMap<u64, (Option<f64>, Option<f64>)> = BTreeMap::new();
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
        let v = path.iter().fold(r, |v, k| &v[*k]).as_f64();
        let e = by_round
            .entry(run["round"].as_u64().unwrap_or(0))
            .or_default();
        if var == a {
            e.0 = v;
        } else if var == b {
            e.1 = v;
        }
    }
    let rs: Vec<f64> = by_round
        .values()
        .filter_map(|&(x, y)| match (x, y) {
            (Some(x), Some(y)) if y > 0.0 => Some(x / y),
            _ => None,
        })
        .collect();
    let (lo, _, hi) = min_med_max(&rs)?;
    Some((lo, hi))
}

fn fmt_range(r: Option<(f64, f64)>) -> String {
    r.map(|(a, b)| format!("{a:.3}–{b:.3}"))
        .unwrap_or_else(|| "–".into())
}

fn metric_path(mk: &str) -> &'static [&'static str] {
    match mk {
        "mib_s" => &["mib_s"],
        _ => &["iops"],
    }
}

fn main_metric(w: &str) -> (&'static str, &'static str) {
    match w {
        "seq-read" | "seq-write" => ("mib_s", "MiB/s"),
        _ => ("iops", "IOPS"),
    }
}

fn cpu_metric(w: &str) -> (&'static str, &'static str) {
    if w == "meta" || w == "churn" {
        ("cpu_us_per_op", "CPU µs/op")
    } else {
        ("cpu_s_per_gib", "CPU s/GiB")
    }
}

/// A goal line: (description, value, met).
struct Goal(String, String, Option<bool>);

/// Write `md` (and `summary.json` beside the JSON files) from `results`.
pub fn write(results: &Path, md: &Path, command: &str) -> Result<(), String> {
    let host = load(&results.join("host.json"));
    let guest = load(&results.join("guest.json"));
    let limited = load(&results.join("limited.json"));
    let mut o = String::new();
    let mut goals: Vec<Goal> = Vec::new();
    let mut summary = json!({});
    let _ = writeln!(
        o,
        "# Benchmark results\n\n\
         Generated by `{command}` (via `vufs-bench report`) from the JSON files in \
         [`results/`](results/); do not edit by hand — rerun the script.\n"
    );
    if let Some(h) = &host {
        let m = &h["machine"];
        let st = &h["settings"];
        let _ = writeln!(
            o,
            "## Machine\n\n| | |\n|---|---|\n| nproc | {} |\n| CPU | {} |\n| kernel | {} |\n| OS | {} |\n| memory | {} |\n| load average at start | {} |\n| date (UTC) | {} |\n",
            m["nproc"], m["cpu_model"].as_str().unwrap_or(""), m["kernel"].as_str().unwrap_or(""),
            m["os"].as_str().unwrap_or(""), m["mem_total"].as_str().unwrap_or("").split_whitespace().skip(1).collect::<Vec<_>>().join(" "),
            m["loadavg_at_start"].as_str().unwrap_or(""), m["date"].as_str().unwrap_or("")
        );
        let _ = writeln!(
            o,
            "## Method\n\n\
             * Host tier: `vufs-loadgen` (no VM) against each daemon's socket. Daemon pinned to CPU {}, \
             generator to CPU {}. {} rounds; in each round, for each thread-pool size, the variants run \
             one after the other in an order rotated every round (ours, upstream, ours-with-limits, then \
             upstream, ours-with-limits, ours, …). A fresh daemon per run; one connection runs all \
             workloads in order ({}), each {} s measured after {} s warm-up, queue depth {}, \
             {} MiB files prepared on the host (page cache warm for every daemon alike). \
             READ data is checked against the file pattern (every byte of every {}-th READ, the \
             per-4-KiB offset tags of all others); the written file is checked on the host after each run.\n\
             * Daemon arguments: `{}` plus `--thread-pool-size=N` (and `--socket-path`, `--shared-dir`). \
             \"ours-limits\" adds `{}` (far above what is achievable here: the limiter's cost when it does not bind).\n\
             * Each cell is min / **median** / max over the rounds; ratios are of medians. \
             The machine is shared (other processes may have been running): compare ratios within this run only.\n",
            st["daemon_cpu"], st["generator_cpu"], st["rounds"],
            st["workloads"].as_str().unwrap_or(""), st["duration_s"], st["warmup_s"], st["qd"], st["file_mib"],
            st["verify_every"],
            st["common_args"].as_str().unwrap_or(""), st["limit_args"].as_str().unwrap_or("")
        );
        let s = host_series(h);
        let pools: Vec<u64> = st["pools"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        let get =
            |v: &str, p: u64, w: &str, m: &str| mmm(s.get(&(v.into(), p, w.into(), m.into())));
        let has_up = s.keys().any(|k| k.0 == "upstream");
        let _ = writeln!(o, "## Host tier: ours vs upstream virtiofsd 1.14.0\n");
        for &p in &pools {
            let _ = writeln!(
                o,
                "### Thread pool {p}\n\n| workload | metric | ours | upstream | ours/upstream (per-round range) |\n|---|---|---|---|---|"
            );
            for w in WORKLOADS {
                let (mk, ml) = main_metric(w);
                let a = get("ours", p, w, mk);
                let b = get("upstream", p, w, mk);
                if a.is_none() && b.is_none() {
                    continue;
                }
                let r = ratio(a, b);
                let rr = round_range(h, "ours", "upstream", p, w, metric_path(mk));
                let _ = writeln!(
                    o,
                    "| {w} | {ml} | {} | {} | {} ({}) |",
                    fmt_mmm(a),
                    fmt_mmm(b),
                    fmt_ratio(r),
                    fmt_range(rr)
                );
                summary["host"][format!("pool{p}")][w]["ratio_throughput"] = json!(r);
                if has_up {
                    let target = if w == "rand-read" && p > 0 { 1.2 } else { 1.0 };
                    goals.push(Goal(
                        format!("{w}, pool {p}: ours/upstream {ml} ≥ {target:.2}"),
                        fmt_ratio(r),
                        r.map(|r| r >= target),
                    ));
                }
                for (lk, ll) in [("p50", "p50 latency µs"), ("p99", "p99 latency µs")] {
                    let a = get("ours", p, w, lk);
                    let b = get("upstream", p, w, lk);
                    let _ = writeln!(
                        o,
                        "| {w} | {ll} | {} | {} | {} |",
                        fmt_mmm(a),
                        fmt_mmm(b),
                        fmt_ratio(ratio(a, b))
                    );
                }
                let (ck, cl) = cpu_metric(w);
                let a = get("ours", p, w, ck);
                let b = get("upstream", p, w, ck);
                let r = ratio(a, b);
                let _ = writeln!(
                    o,
                    "| {w} | daemon {cl} | {} | {} | {} |",
                    fmt_mmm(a),
                    fmt_mmm(b),
                    fmt_ratio(r)
                );
                summary["host"][format!("pool{p}")][w]["ratio_cpu"] = json!(r);
                if has_up {
                    goals.push(Goal(
                        format!("{w}, pool {p}: daemon {cl} ours/upstream ≤ 1.00"),
                        fmt_ratio(r),
                        r.map(|r| r <= 1.0),
                    ));
                }
                let a = get("ours", p, w, "hwm_kib");
                let b = get("upstream", p, w, "hwm_kib");
                let r = ratio(a, b);
                let rr = round_range(h, "ours", "upstream", p, w, &["daemon", "hwm_kib"]);
                let _ = writeln!(
                    o,
                    "| {w} | daemon peak RSS KiB (VmHWM so far) | {} | {} | {} ({}) |",
                    fmt_mmm(a),
                    fmt_mmm(b),
                    fmt_ratio(r),
                    fmt_range(rr)
                );
                let a = get("ours", p, w, "anon_kib");
                let b = get("upstream", p, w, "anon_kib");
                let ra = ratio(a, b);
                let rra = round_range(h, "ours", "upstream", p, w, &["daemon", "anon_peak_kib"]);
                let _ = writeln!(
                    o,
                    "| {w} | daemon peak anonymous RSS KiB (RssAnon, per interval) | {} | {} | {} ({}) |",
                    fmt_mmm(a),
                    fmt_mmm(b),
                    fmt_ratio(ra),
                    fmt_range(rra)
                );
                if has_up {
                    goals.push(Goal(
                        format!("{w}, pool {p}: peak RSS ours/upstream ≤ 1.00"),
                        fmt_ratio(r),
                        r.map(|r| r <= 1.0),
                    ));
                    goals.push(Goal(
                        format!("{w}, pool {p}: peak anonymous RSS ours/upstream ≤ 1.00"),
                        fmt_ratio(ra),
                        ra.map(|r| r <= 1.0),
                    ));
                }
            }
            let _ = writeln!(o);
        }
        // Errors.
        let errs: Vec<String> = s
            .iter()
            .filter(|(k, _)| k.3 == "errors")
            .map(|(k, v)| format!("{} pool {} {}: {} run(s)", k.0, k.1, k.2, v.len()))
            .collect();
        let bad_runs: Vec<String> = h["runs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["loadgen_status"].as_i64() != Some(0))
            .map(|r| {
                format!(
                    "round {} {} pool {}: loadgen exit {} {}",
                    r["round"],
                    r["variant"].as_str().unwrap_or(""),
                    r["pool"],
                    r["loadgen_status"],
                    r["report"]["fatal"]
                        .as_str()
                        .or(r["error"].as_str())
                        .unwrap_or("")
                )
            })
            .collect();
        let _ = writeln!(
            o,
            "Request or verification errors: {}.\n",
            if errs.is_empty() && bad_runs.is_empty() {
                "none".to_string()
            } else {
                [errs, bad_runs].concat().join("; ")
            }
        );

        // Limiter cost (not measured when two builds of ours are compared).
        let has_limits = s.keys().any(|k| k.0 == "ours-limits");
        if has_limits {
            let _ = writeln!(
            o,
            "### Limiter cost when not binding (ours with `{}` vs ours without limits)\n\nThe per-round range of limits/ours is the ours-vs-ours spread of this run: a margin smaller than it is noise.\n\n| pool | workload | ours | ours-limits | cost (1 − limits/ours) | limits/ours per round |\n|---|---|---|---|---|---|",
            st["limit_args"].as_str().unwrap_or("")
        );
        }
        for &p in &pools {
            for w in WORKLOADS {
                let (mk, ml) = main_metric(w);
                let a = get("ours", p, w, mk);
                let b = get("ours-limits", p, w, mk);
                if a.is_none() || b.is_none() {
                    continue;
                }
                let r = ratio(b, a).map(|r| (1.0 - r) * 100.0);
                let rr = round_range(h, "ours-limits", "ours", p, w, metric_path(mk));
                let _ = writeln!(
                    o,
                    "| {p} | {w} ({ml}) | {} | {} | {} | {} |",
                    fmt_mmm(a),
                    fmt_mmm(b),
                    r.map(|c| format!("{c:+.1} %"))
                        .unwrap_or_else(|| "–".into()),
                    fmt_range(rr)
                );
                summary["host"][format!("pool{p}")][w]["limiter_cost_pct"] = json!(r);
                goals.push(Goal(
                    format!("limiter cost, {w}, pool {p} ≤ 2 %"),
                    r.map(|c| format!("{c:+.1} %")).unwrap_or_default(),
                    r.map(|c| c <= 2.0),
                ));
            }
        }
        let _ = writeln!(o);

        // Two builds of ours (--ours-b): new/old.
        if s.keys().any(|k| k.0 == "ours-b") {
            let _ = writeln!(
                o,
                "### New build vs old build (ours-b / ours, alternating in every round)\n\n\
                 `{}` (new, ours-b) against `{}` (old, ours). Ratio of medians, and the range of the \
                 per-round ratios (the noise of this run).\n\n\
                 | pool | workload | metric | old | new | new/old (per-round range) |\n|---|---|---|---|---|---|",
                st["ours_b"].as_str().unwrap_or(""),
                st["ours"].as_str().unwrap_or("")
            );
            for &p in &pools {
                for w in WORKLOADS {
                    let (mk, ml) = main_metric(w);
                    let (ck, cl) = cpu_metric(w);
                    for (k, l, path) in [
                        (mk, ml, metric_path(mk)),
                        (ck, cl, &["daemon", ck][..]),
                        ("hwm_kib", "peak RSS KiB", &["daemon", "hwm_kib"][..]),
                    ] {
                        let a = get("ours", p, w, k);
                        let b = get("ours-b", p, w, k);
                        if a.is_none() || b.is_none() {
                            continue;
                        }
                        let r = ratio(b, a);
                        let rr = round_range(h, "ours-b", "ours", p, w, path);
                        let _ = writeln!(
                            o,
                            "| {p} | {w} | {l} | {} | {} | {} ({}) |",
                            fmt_mmm(a),
                            fmt_mmm(b),
                            fmt_ratio(r),
                            fmt_range(rr)
                        );
                        summary["host"][format!("pool{p}")][w][format!("new_old_{k}")] = json!(r);
                        if k == mk {
                            goals.push(Goal(
                                format!("{w}, pool {p}: new/old {ml} within ±2 %"),
                                fmt_ratio(r),
                                r.map(|r| (0.98..=1.02).contains(&r)),
                            ));
                        }
                    }
                }
            }
            let _ = writeln!(o);
        }

        // Idle RSS and start-up.
        let _ = writeln!(o, "### Idle RSS and start-up\n\n| measure | ours | upstream | ours/upstream |\n|---|---|---|---|");
        for &p in &pools {
            let a = get("ours", p, "-", "idle_rss_kib");
            let b = get("upstream", p, "-", "idle_rss_kib");
            let r = ratio(a, b);
            let _ = writeln!(
                o,
                "| idle RSS KiB (socket up, no frontend), pool {p} | {} | {} | {} |",
                fmt_mmm(a),
                fmt_mmm(b),
                fmt_ratio(r)
            );
            if has_up {
                goals.push(Goal(
                    format!("idle RSS, pool {p}: ours/upstream ≤ 1.00"),
                    fmt_ratio(r),
                    r.map(|r| r <= 1.0),
                ));
            }
            summary["host"][format!("pool{p}")]["idle_rss_ratio"] = json!(r);
            let a = get("ours", p, "-", "rss_after_init_kib");
            let b = get("upstream", p, "-", "rss_after_init_kib");
            let _ = writeln!(
                o,
                "| RSS KiB after INIT, pool {p} | {} | {} | {} |",
                fmt_mmm(a),
                fmt_mmm(b),
                fmt_ratio(ratio(a, b))
            );
        }
        let mut su: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for x in h["startup"].as_array().into_iter().flatten() {
            if let Some(ms) = x["ready_ms"].as_f64() {
                su.entry(x["variant"].as_str().unwrap_or("?").into())
                    .or_default()
                    .push(ms);
            }
        }
        let a = mmm(su.get("ours"));
        let b = mmm(su.get("upstream"));
        let _ = writeln!(
            o,
            "| start-up to socket accepting, ms | {} | {} | {} |\n",
            fmt_mmm(a),
            fmt_mmm(b),
            fmt_ratio(ratio(a, b))
        );
        summary["host"]["startup_ratio"] = json!(ratio(a, b));

        // Generator headroom.
        let _ = writeln!(
            o,
            "### Generator headroom (calibration)\n\n\
             The generator's own CPU use, from `/proc/self/stat` over each measured window \
             (share of one core; headroom = 1 / share: how much faster a daemon could go before \
             the generator, on its own core, becomes the limit). Worst run per workload:\n\n\
             | workload | max generator CPU share | min headroom |\n|---|---|---|"
        );
        for w in WORKLOADS {
            let all: Vec<f64> = s
                .iter()
                .filter(|(k, _)| k.2 == w && k.3 == "gen_share")
                .flat_map(|(_, v)| v.iter().copied())
                .collect();
            if let Some((_, _, mx)) = min_med_max(&all) {
                let hr = if mx > 0.0 { 1.0 / mx } else { f64::INFINITY };
                let _ = writeln!(o, "| {w} | {:.1} % | {:.1}× |", mx * 100.0, hr);
                goals.push(Goal(
                    format!("generator headroom, {w} ≥ 2×"),
                    format!("{hr:.1}×"),
                    Some(hr >= 2.0),
                ));
            }
        }
        if let Some(c) = h["calibration"].as_array() {
            let _ = writeln!(o, "\nGenerator alone (no daemon, one core): ");
            for x in c {
                let _ = writeln!(
                    o,
                    "* block {} B: checks {:.0} MiB/s of READ data, prepares {:.0} MiB/s of WRITE data",
                    x["block_size"], x["verify_mib_s"].as_f64().unwrap_or(0.0), x["prepare_mib_s"].as_f64().unwrap_or(0.0)
                );
            }
        }
        let _ = writeln!(o);
        if let Some(c) = h["example_command"].as_str() {
            let _ = writeln!(
                o,
                "One host-tier run, exactly as executed (the first of the run):\n\n```\n{c}\n```\n"
            );
        }
    }

    if let Some(g) = &guest {
        let st = &g["settings"];
        let _ = writeln!(
            o,
            "## Guest tier: fio in a {} guest\n\n\
             fio {} s per data job (`direct=1`, libaio, iodepth 8; 1 MiB sequential, 4 KiB random), \
             metadata jobs on {} files (`filecreate`, `filestat`, `filedelete`), {} rounds, fresh daemon \
             per boot, ours and upstream alternating. Guest numbers under TCG are noisy (±35–60 % run \
             to run): read the ratios of medians. Cells: min / **median** / max.\n",
            st["accel"].as_str().unwrap_or("tcg").to_uppercase(), st["runtime_s"], st["nrfiles"], st["rounds"]
        );
        let mut gs: BTreeMap<(String, u64, String), Vec<f64>> = BTreeMap::new();
        let mut failures = Vec::new();
        for r in g["runs"].as_array().into_iter().flatten() {
            let var = r["variant"].as_str().unwrap_or("?").to_string();
            let pool = r["pool"].as_u64().unwrap_or(0);
            if let Some(e) = r["error"].as_str() {
                failures.push(format!(
                    "round {} {var} pool {pool}: {}",
                    r["round"],
                    e.lines().next().unwrap_or("")
                ));
            }
            for (job, v) in r["jobs"].as_object().into_iter().flatten() {
                let metric = if job.starts_with("seq") {
                    v["mib_s"].as_f64()
                } else {
                    v["iops"].as_f64()
                };
                if let Some(x) = metric {
                    gs.entry((var.clone(), pool, job.clone()))
                        .or_default()
                        .push(x);
                }
            }
        }
        let pools: Vec<u64> = st["pools"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        let jobs = [
            "seq-read",
            "seq-write",
            "rand-read",
            "rand-write",
            "meta-create",
            "meta-stat",
            "meta-delete",
        ];
        let _ = writeln!(
            o,
            "| pool | job | metric | ours | upstream | ours/upstream |\n|---|---|---|---|---|---|"
        );
        for &p in &pools {
            for j in jobs {
                let a = mmm(gs.get(&("ours".into(), p, j.into())));
                let b = mmm(gs.get(&("upstream".into(), p, j.into())));
                if a.is_none() && b.is_none() {
                    continue;
                }
                let ml = if j.starts_with("seq") {
                    "MiB/s"
                } else {
                    "IOPS"
                };
                let r = ratio(a, b);
                summary["guest"][format!("pool{p}")][j] = json!(r);
                let _ = writeln!(
                    o,
                    "| {p} | {j} | {ml} | {} | {} | {} |",
                    fmt_mmm(a),
                    fmt_mmm(b),
                    fmt_ratio(r)
                );
            }
        }
        let _ = writeln!(
            o,
            "\nFailed guest runs: {}.\n",
            if failures.is_empty() {
                "none".into()
            } else {
                failures.join("; ")
            }
        );
    }

    if let Some(l) = &limited {
        let r = &l["report"]["results"][0];
        let iv: Vec<f64> = r["intervals_mib_s"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_f64)
            .collect();
        let dt = r["interval_ms"].as_f64().unwrap_or(100.0) / 1000.0;
        let rate = l["limit_bytes_per_s"].as_f64().unwrap_or(0.0);
        let burst = l["burst_bytes"].as_f64().unwrap_or(0.0);
        let bytes: Vec<f64> = iv.iter().map(|m| m * 1048576.0 * dt).collect();
        let total: f64 = bytes.iter().sum();
        let t = iv.len() as f64 * dt;
        let skip = (3.0 / dt) as usize;
        let plateau = if bytes.len() > skip + 5 {
            bytes[skip..].iter().sum::<f64>() / ((bytes.len() - skip) as f64 * dt)
        } else {
            0.0
        };
        let first_s: f64 = bytes.iter().take((1.0 / dt) as usize).sum();
        let _ = writeln!(
            o,
            "## Rate limit over time\n\n![throughput per 100 ms](results/limited.svg)\n\n\
             Ours with `{}`, sequential 1 MiB writes at queue depth 8 for {:.0} s \
             ([`results/limited.json`](results/limited.json)). Ideal: at most burst + rate·t by time t \
             ({:.0} MB + {:.1} MB/s·t).\n\n\
             | measure | value |\n|---|---|\n| written in the first second | {:.1} MB (ideal ≤ {:.1} MB) |\n\
             | plateau rate after 3 s | {:.2} MB/s (configured {:.2} MB/s) |\n\
             | total in {:.1} s | {:.1} MB (ideal ≤ {:.1} MB + one request) |\n",
            l["daemon_args"].as_array().map(|a| a.iter().filter_map(Value::as_str).filter(|s| s.starts_with("--fs-")).collect::<Vec<_>>().join(" ")).unwrap_or_default(),
            l["seconds"].as_f64().unwrap_or(0.0),
            burst / 1e6, rate / 1e6,
            first_s / 1e6, (burst + rate) / 1e6,
            plateau / 1e6, rate / 1e6,
            t, total / 1e6, (burst + rate * t) / 1e6
        );
        summary["limited"] = json!({"plateau_bytes_per_s": plateau, "configured": rate, "first_second_bytes": first_s});
    }

    if !goals.is_empty() {
        let _ = writeln!(
            o,
            "## Goals (reported, not asserted)\n\n| goal | value | met |\n|---|---|---|"
        );
        for Goal(d, v, m) in &goals {
            let _ = writeln!(
                o,
                "| {d} | {v} | {} |",
                match m {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "–",
                }
            );
        }
        let _ = writeln!(o);
    }

    let _ = writeln!(
        o,
        "## Commands\n\n```\n{command}\n```\n\nwhich builds the release binaries, installs upstream \
         (`cargo install --locked virtiofsd --version 1.14.0 --root <cache>`), and runs \
         `vufs-bench host`, `vufs-bench limited`, `vufs-bench plot`, `vufs-bench guest` and \
         `vufs-bench report` (see `benches/run.sh`). Raw JSON: `results/host.json` (every run's \
         full generator report, including the 100 ms series), `results/guest.json`, \
         `results/limited.json`, `results/raw/*.json` (one file per run), `results/summary.json`."
    );
    fs::write(md, o).map_err(|e| e.to_string())?;
    fs::write(
        results.join("summary.json"),
        serde_json::to_string_pretty(&summary).unwrap_or_default(),
    )
    .map_err(|e| e.to_string())
}
