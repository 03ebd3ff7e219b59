//! The rounds nothing else disturbed. On a shared machine a round in which other processes
//! (or the hypervisor) took CPU time from the daemon or the generator says little about
//! either daemon; every workload result records how much CPU the rest of the machine used
//! while it was measured (`machine.foreign_share`, `machine.steal_share`, in cores). A round
//! is quiet for a workload when that stayed under [`DISTURBED`] in both runs it pairs. The
//! medians of the per-round ratios over the quiet rounds are reported beside the all-round
//! figures, never instead of them.

use std::fmt::Write as _;

use serde_json::Value;

use crate::stats::min_med_max;

use super::cells::{at, main_metric, metric_path, paired, WORKLOADS};

/// CPU (in cores) that other processes and the hypervisor may take while a workload is
/// measured before its round no longer counts as quiet. The idle machine here used 0.012 to
/// 0.014 cores (three 5 s samples of `/proc/stat` with nothing running); the kernel's own
/// writeback of what a workload wrote also counts. 0.05 is 2.5 % of the two cores.
pub(super) const DISTURBED: f64 = 0.05;

/// What the rest of the machine took while a workload result was measured (cores), if
/// recorded.
fn disturbance(r: &Value) -> Option<f64> {
    let m = &r["machine"];
    Some(m["foreign_share"].as_f64()? + m["steal_share"].as_f64()?)
}

/// The per-round ratios `a/b` of the quiet rounds.
#[derive(Debug, Clone, Copy)]
pub(super) struct Quiet {
    /// (min, median, max) of the quiet rounds' ratios; `None` if no round was quiet.
    pub(super) ratio: Option<(f64, f64, f64)>,
    /// Quiet rounds.
    pub(super) quiet: usize,
    /// Rounds with both runs.
    pub(super) rounds: usize,
}

/// The ratios `a/b` of the rounds quiet in both runs; `None` if no round has both.
pub(super) fn quiet_ratio(
    host: &Value,
    a: &str,
    b: &str,
    pool: u64,
    w: &str,
    path: &[&str],
) -> Option<Quiet> {
    // Each run's value and disturbance, for the rounds that have both runs.
    let cell = |r: &Value| at(r, path).zip(disturbance(r));
    let both: Vec<_> = paired(host, a, b, pool, w)
        .values()
        .filter_map(|&(x, y)| x.and_then(cell).zip(y.and_then(cell)))
        .filter(|&(_, (y, _))| y > 0.0)
        .collect();
    let quiet: Vec<f64> = both
        .iter()
        .filter(|((_, dx), (_, dy))| dx.max(*dy) < DISTURBED)
        .map(|((x, _), (y, _))| x / y)
        .collect();
    (!both.is_empty()).then(|| Quiet {
        ratio: min_med_max(&quiet),
        quiet: quiet.len(),
        rounds: both.len(),
    })
}

fn fmt_quiet(q: Option<Quiet>) -> String {
    match q {
        Some(Quiet {
            ratio: Some((lo, med, hi)),
            quiet,
            rounds,
        }) => format!("**{med:.3}** ({lo:.3}–{hi:.3}) | {quiet} of {rounds}"),
        Some(Quiet { rounds, .. }) => format!("– | 0 of {rounds}"),
        None => "– | –".into(),
    }
}

/// The quiet rounds' count and ratios, if there are enough of them (3) for a goal line.
fn enough(q: Option<Quiet>) -> Option<(usize, (f64, f64, f64))> {
    q.filter(|q| q.quiet >= 3)
        .and_then(|q| Some((q.quiet, q.ratio?)))
}

/// The disturbance of every run and workload: (median, max) in cores.
fn spread(host: &Value) -> Option<(f64, f64, usize)> {
    let d: Vec<f64> = host["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|run| run["report"]["results"].as_array().into_iter().flatten())
        .filter_map(disturbance)
        .collect();
    let (_, med, hi) = min_med_max(&d)?;
    Some((med, hi, d.len()))
}

/// The quiet-rounds table (ours/upstream and the limiter's cost), or nothing when the runs
/// did not record the machine's CPU. Returns the goal lines it supports: (text, value, met).
pub(super) fn section(
    o: &mut String,
    host: &Value,
    pools: &[u64],
) -> Vec<(String, String, Option<bool>)> {
    let mut goals = Vec::new();
    let Some((med, hi, n)) = spread(host) else {
        return goals;
    };
    let _ = writeln!(
        o,
        "### Quiet rounds only\n\n\
         CPU the rest of the machine took while each of the {n} workload runs was measured (other \
         processes besides the daemon and the generator, plus the hypervisor's steal): median \
         {med:.3}, max {hi:.3} cores. A round counts as quiet for a workload when both runs it \
         pairs stayed under {DISTURBED} cores. Cells: median of the quiet rounds' per-round ratios \
         (min–max), and how many of the rounds were quiet.\n\n\
         | pool | workload | metric | ours/upstream, quiet rounds | quiet | limits/ours, quiet rounds | quiet |\n\
         |---|---|---|---|---|---|---|"
    );
    for &p in pools {
        for w in WORKLOADS {
            let (mk, ml) = main_metric(w);
            let up = quiet_ratio(host, "ours", "upstream", p, w, metric_path(mk));
            let lim = quiet_ratio(host, "ours-limits", "ours", p, w, metric_path(mk));
            if up.is_none() && lim.is_none() {
                continue;
            }
            let _ = writeln!(
                o,
                "| {p} | {w} | {ml} | {} | {} |",
                fmt_quiet(up),
                fmt_quiet(lim)
            );
            if let Some((k, (lo, med, _))) = enough(up) {
                goals.push((
                    format!("{w}, pool {p}: ours/upstream {ml} ≥ 1.00 in the quiet rounds ({k})"),
                    format!("{med:.3} (min {lo:.3})"),
                    Some(med >= 1.0),
                ));
            }
            if let Some((k, (_, med, _))) = enough(lim) {
                let cost = (1.0 - med) * 100.0;
                goals.push((
                    format!("limiter cost, {w}, pool {p} ≤ 2 % in the quiet rounds ({k})"),
                    format!("{cost:+.1} %"),
                    Some(cost <= 2.0),
                ));
            }
        }
    }
    let _ = writeln!(o);
    goals
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(round: u64, variant: &str, iops: f64, foreign: f64) -> Value {
        json!({"round": round, "variant": variant, "pool": 0, "report": {"results": [
            {"workload": "meta", "iops": iops,
             "machine": {"busy_share": 2.0, "foreign_share": foreign, "steal_share": 0.0}}]}})
    }

    #[test]
    fn only_rounds_quiet_in_both_runs_count() {
        let host = json!({"runs": [
            run(1, "ours", 110.0, 0.0), run(1, "upstream", 100.0, 0.01),
            run(2, "ours", 10.0, 0.9), run(2, "upstream", 100.0, 0.0),
            run(3, "ours", 100.0, 0.0), run(3, "upstream", 100.0, 0.5),
            run(4, "ours", 120.0, 0.0), run(4, "upstream", 100.0, 0.0),
        ]});
        let q = quiet_ratio(&host, "ours", "upstream", 0, "meta", &["iops"]).unwrap();
        assert_eq!((q.quiet, q.rounds), (2, 4));
        let (lo, med, hi) = q.ratio.unwrap();
        assert!((lo - 1.1).abs() < 1e-9 && (hi - 1.2).abs() < 1e-9);
        assert!((med - 1.15).abs() < 1e-9);
    }

    #[test]
    fn runs_without_machine_figures_give_no_section() {
        let host = json!({"runs": [{"round": 1, "variant": "ours", "pool": 0,
            "report": {"results": [{"workload": "meta", "iops": 1.0}]}}]});
        let mut o = String::new();
        assert!(section(&mut o, &host, &[0]).is_empty());
        assert!(o.is_empty());
    }
}
