//! `vufs-group-bench`: three daemons in one node group (weights 1:1:2), one VM-less generator
//! each, whose demands start and stop at different times; writes the 100 ms rate series as
//! JSON and an SVG plot of each member's rate and the sum against the group's rate. For each
//! phase (a set of members backlogged) it compares each member's measured rate with its
//! weighted max-min share of the group rate, and the sum with the group rate.
//!
//! ```text
//! flock /tmp/guest-tests.lock target/release/vufs-group-bench --daemon target/release/virtiofsd --out benches/results/group
//! ```
//! Schedule (seconds): A (weight 100) 0–14, B (weight 100) 3–14, C (weight 200) 6–11.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use clap::Parser;
use vufs_loadgen::engine::{Config, Generator, Workload};
use vufs_testkit::{Daemon, Scratch};

/// Command line.
#[derive(Parser, Debug)]
struct Args {
    /// The daemon binary [default: the workspace's build].
    #[arg(long)]
    daemon: Option<PathBuf>,
    /// Where to write group.json and group.svg.
    #[arg(long, default_value = "benches/results/group")]
    out: PathBuf,
    /// The group's rate, MiB/s.
    #[arg(long, default_value_t = 24)]
    rate_mib: u64,
}

/// (name, weight, start s, stop s)
const MEMBERS: [(&str, u64, f64, f64); 3] = [
    ("A w=100", 100, 0.0, 14.0),
    ("B w=100", 100, 3.0, 14.0),
    ("C w=200", 200, 6.0, 11.0),
];
const IV: f64 = 0.1;

fn main() -> Result<(), String> {
    let a = Args::parse();
    let bin = a
        .daemon
        .clone()
        .unwrap_or_else(|| vufs_testkit::daemon_bin(vufs_testkit::Build::Normal));
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
        .map_err(|e| e.to_string())?;
    let group = dir.path().join("group");
    let rate = a.rate_mib << 20;
    let mut daemons: Vec<(Scratch, Daemon)> = Vec::new();
    for (_, w, _, _) in MEMBERS {
        let s = Scratch::new();
        let args = [
            format!("--shared-dir={}", s.share.display()),
            format!("--fs-group={}", group.display()),
            format!("--fs-group-bw-size={rate}"),
            format!("--fs-group-bw-burst={}", rate / 4),
            format!("--fs-weight={w}"),
        ];
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let d = Daemon::start(&bin, &s.socket(), &refs, &[]);
        daemons.push((s, d));
    }
    let start = Arc::new(Barrier::new(MEMBERS.len()));
    let handles: Vec<_> = MEMBERS
        .iter()
        .zip(&daemons)
        .map(|((_, _, from, to), (s, _))| {
            let cfg = Config {
                socket: s.socket(),
                shared_dir: Some(s.share.clone()),
                queue_depth: 8,
                duration: Duration::from_secs_f64(to - from),
                warmup: Duration::ZERO,
                file_size: 16 << 20,
                seq_bs: 64 << 10,
                verify_every: 0,
                ..Default::default()
            };
            let (from, start) = (*from, start.clone());
            std::thread::spawn(move || -> Result<Vec<f64>, String> {
                let g = Generator::connect(cfg).map_err(|e| e.to_string());
                start.wait();
                let mut g = g?;
                std::thread::sleep(Duration::from_secs_f64(from));
                let r = g.run(Workload::SeqRead).map_err(|e| e.to_string())?;
                Ok(r.intervals_mib_s)
            })
        })
        .collect();
    let mut series = Vec::new();
    for (h, (_, _, from, _)) in handles.into_iter().zip(MEMBERS) {
        let s = h.join().map_err(|_| "generator panicked")??;
        // Shift onto the common time axis.
        let mut full = vec![0.0; (from / IV).round() as usize];
        full.extend(s);
        series.push(full);
    }
    let len = series.iter().map(Vec::len).max().unwrap_or(0);
    for s in &mut series {
        s.resize(len, 0.0);
    }
    let sum: Vec<f64> = (0..len)
        .map(|i| series.iter().map(|s| s[i]).sum())
        .collect();
    let rate_mib = rate as f64 / (1 << 20) as f64;
    let phases: Vec<serde_json::Value> = PHASES
        .iter()
        .map(|p| phase(*p, &series, &sum, rate_mib))
        .collect();
    std::fs::create_dir_all(&a.out).map_err(|e| e.to_string())?;
    let json = serde_json::json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "group_rate_mib_s": rate_mib,
        "interval_s": IV,
        "members": MEMBERS.iter().zip(&series).map(|((n, w, f, t), s)| serde_json::json!({
            "name": n, "weight": w, "start_s": f, "stop_s": t, "mib_s": s,
        })).collect::<Vec<_>>(),
        "sum_mib_s": sum,
        "phases": phases,
    });
    std::fs::write(
        a.out.join("group.json"),
        serde_json::to_string_pretty(&json).unwrap_or_default(),
    )
    .map_err(|e| e.to_string())?;
    plot(&a.out.join("group.svg"), &series, &sum, rate_mib)?;
    println!("phase (steady part)  member    ideal MiB/s  measured MiB/s  measured/ideal");
    for p in &phases {
        let span = format!("{}–{} s", p["from_s"], p["to_s"]);
        for m in p["members"].as_array().into_iter().flatten() {
            println!(
                "{span:<20} {:<9} {:>11.2} {:>15.2} {:>15.3}",
                m["name"].as_str().unwrap_or(""),
                m["ideal_mib_s"].as_f64().unwrap_or(0.0),
                m["measured_mib_s"].as_f64().unwrap_or(0.0),
                m["ratio"].as_f64().unwrap_or(0.0)
            );
        }
        println!(
            "{span:<20} {:<9} {:>11.2} {:>15.2} {:>15.3}",
            "sum",
            rate_mib,
            p["sum_mib_s"].as_f64().unwrap_or(0.0),
            p["sum_ratio"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(())
}

/// The steady part of each phase (seconds): its first second is left out, while the members'
/// shares settle (a tick to publish demand, a tick to see it, the local buckets' bursts).
const PHASES: [(f64, f64); 4] = [(1.0, 3.0), (4.0, 6.0), (7.0, 11.0), (12.0, 14.0)];

/// Weighted max-min shares of `rate` among members with `demands` (None: backlogged, wants
/// more than any share): water filling, the least hungry per unit of weight served first.
fn max_min(rate: f64, weights: &[f64], demands: &[Option<f64>]) -> Vec<f64> {
    let mut share = vec![0.0; weights.len()];
    let mut order: Vec<usize> = (0..weights.len()).collect();
    let per_weight = |i: usize| demands[i].map_or(f64::INFINITY, |d| d / weights[i]);
    order.sort_by(|&x, &y| per_weight(x).total_cmp(&per_weight(y)));
    let (mut left, mut w_left) = (rate, weights.iter().sum::<f64>());
    for i in order {
        let fair = left * weights[i] / w_left;
        share[i] = demands[i].map_or(fair, |d| d.min(fair));
        left -= share[i];
        w_left -= weights[i];
    }
    share
}

/// Mean of `s` over `from`..`to` seconds.
fn mean(s: &[f64], from: f64, to: f64) -> f64 {
    let (i, j) = (
        (from / IV).round() as usize,
        ((to / IV).round() as usize).min(s.len()),
    );
    s[i.min(j)..j].iter().sum::<f64>() / (j - i.min(j)).max(1) as f64
}

/// One phase: every member active over all of it is backlogged (its generator keeps 8 reads in
/// flight), the others want nothing; measured means against the max-min shares.
fn phase((from, to): (f64, f64), series: &[Vec<f64>], sum: &[f64], rate: f64) -> serde_json::Value {
    let active: Vec<usize> = (0..MEMBERS.len())
        .filter(|&i| MEMBERS[i].2 < from && MEMBERS[i].3 >= to)
        .collect();
    let weights: Vec<f64> = active.iter().map(|&i| MEMBERS[i].1 as f64).collect();
    let ideal = max_min(rate, &weights, &vec![None; active.len()]);
    let members: Vec<serde_json::Value> = active
        .iter()
        .zip(&ideal)
        .map(|(&i, want)| {
            let got = mean(&series[i], from, to);
            serde_json::json!({
                "name": MEMBERS[i].0, "weight": MEMBERS[i].1,
                "ideal_mib_s": want, "measured_mib_s": got, "ratio": got / want,
            })
        })
        .collect();
    let total = mean(sum, from, to);
    serde_json::json!({
        "from_s": from, "to_s": to, "members": members,
        "sum_mib_s": total, "group_rate_mib_s": rate, "sum_ratio": total / rate,
    })
}

fn plot(path: &std::path::Path, series: &[Vec<f64>], sum: &[f64], rate: f64) -> Result<(), String> {
    use plotters::style::{BLACK, BLUE, GREEN, MAGENTA, RED};
    use vufs_loadgen::plot::{chart, finish, svg, Axes, Line};
    let secs = sum.len() as f64 * IV;
    let pts = |s: &[f64]| -> Vec<(f64, f64)> {
        s.iter()
            .enumerate()
            .map(|(i, v)| ((i as f64 + 1.0) * IV, *v))
            .collect()
    };
    let mut lines: Vec<Line> = MEMBERS
        .iter()
        .zip(series)
        .zip([BLUE, GREEN, MAGENTA])
        .map(|(((name, ..), s), c)| Line::new(*name, pts(s), c))
        .collect();
    lines.push(Line::new("sum", pts(sum), BLACK).width(2));
    lines.push(Line::new(
        "group rate",
        vec![(0.0, rate), (secs, rate)],
        RED,
    ));
    let root = svg(path, (1000, 500))?;
    chart(
        &root,
        &format!("node group {rate} MiB/s, weights 1:1:2 — rate per 100 ms"),
        Axes {
            x: 0.0..secs,
            // Above the group rate only the bursts: the shared bucket and a joiner's own.
            y: 0.0..sum.iter().copied().fold(rate * 1.6, f64::max) * 1.05,
            x_desc: "seconds",
            y_desc: "MiB/s",
        },
        lines,
    )?;
    finish(&root)
}
