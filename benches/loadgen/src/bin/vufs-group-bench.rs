//! `vufs-group-bench`: three daemons in one node group (weights 1:1:2), one VM-less generator
//! each, whose demands start and stop at different times; writes the 100 ms rate series as
//! JSON and an SVG plot of each member's rate and the sum against the group's rate.
//!
//! ```text
//! flock /tmp/guest-tests.lock target/release/vufs-group-bench --out benches/results/group
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
    std::fs::create_dir_all(&a.out).map_err(|e| e.to_string())?;
    let json = serde_json::json!({
        "group_rate_mib_s": rate as f64 / (1 << 20) as f64,
        "interval_s": IV,
        "members": MEMBERS.iter().zip(&series).map(|((n, w, f, t), s)| serde_json::json!({
            "name": n, "weight": w, "start_s": f, "stop_s": t, "mib_s": s,
        })).collect::<Vec<_>>(),
        "sum_mib_s": sum,
    });
    std::fs::write(
        a.out.join("group.json"),
        serde_json::to_string_pretty(&json).unwrap_or_default(),
    )
    .map_err(|e| e.to_string())?;
    plot(
        &a.out.join("group.svg"),
        &series,
        &sum,
        rate as f64 / (1 << 20) as f64,
    )?;
    for ((n, ..), s) in MEMBERS.iter().zip(&series) {
        println!("{n}: {}", phases(s));
    }
    println!("sum: {}", phases(&sum));
    Ok(())
}

/// Mean MiB/s over the phases 1–3 s, 4–6 s, 7–11 s, 12–14 s (steady parts of each phase).
fn phases(s: &[f64]) -> String {
    [(1.0, 3.0), (4.0, 6.0), (7.0, 11.0), (12.0, 14.0)]
        .iter()
        .map(|(a, b)| {
            let (i, j) = ((a / IV) as usize, ((b / IV) as usize).min(s.len()));
            let m = s[i.min(j)..j].iter().sum::<f64>() / (j - i.min(j)).max(1) as f64;
            format!("{a}-{b}s {m:.2}")
        })
        .collect::<Vec<_>>()
        .join("  ")
}

fn plot(path: &std::path::Path, series: &[Vec<f64>], sum: &[f64], rate: f64) -> Result<(), String> {
    use plotters::prelude::*;
    let secs = sum.len() as f64 * IV;
    let root = SVGBackend::new(path, (1000, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut ch = ChartBuilder::on(&root)
        .caption(
            format!("node group {rate} MiB/s, weights 1:1:2 — rate per 100 ms"),
            ("sans-serif", 16),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..secs, 0.0..rate * 1.6)
        .map_err(|e| e.to_string())?;
    ch.configure_mesh()
        .x_desc("seconds")
        .y_desc("MiB/s")
        .draw()
        .map_err(|e| e.to_string())?;
    let colors = [BLUE, GREEN, MAGENTA];
    let pts = |s: &[f64]| -> Vec<(f64, f64)> {
        s.iter()
            .enumerate()
            .map(|(i, v)| ((i as f64 + 1.0) * IV, *v))
            .collect()
    };
    for (((name, ..), s), c) in MEMBERS.iter().zip(series).zip(colors) {
        ch.draw_series(LineSeries::new(pts(s), c))
            .map_err(|e| e.to_string())?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
    }
    ch.draw_series(LineSeries::new(pts(sum), BLACK.stroke_width(2)))
        .map_err(|e| e.to_string())?
        .label("sum")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    ch.draw_series(LineSeries::new(vec![(0.0, rate), (secs, rate)], RED))
        .map_err(|e| e.to_string())?
        .label("group rate")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    ch.configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}
