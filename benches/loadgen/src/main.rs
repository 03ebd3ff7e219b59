//! `vufs-loadgen`: connect to a vhost-user-fs daemon's socket, INIT, and run workloads.
//!
//! ```text
//! vufs-loadgen --socket /run/vfsd.sock --shared-dir /srv/share --daemon-pid 1234 \
//!     --workloads seq-read,seq-write,rand-read,rand-write,meta --duration 5 --qd 8 --queues 2 --json
//! ```
//! Exit status: 0 all fine, 1 request or verification errors, 2 could not run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use vufs_loadgen::engine::{calibrate, Config, Generator, Workload};
use vufs_loadgen::RunReport;

/// Load generator for vhost-user-fs daemons (no VM).
#[derive(Parser, Debug)]
#[command(name = "vufs-loadgen", version)]
struct Args {
    /// The daemon's vhost-user socket.
    #[arg(long, required_unless_present_any = ["calibrate", "prepare_only"])]
    socket: Option<PathBuf>,
    /// The daemon's shared directory as seen here: prepare the files directly (else they are
    /// written through the daemon), and check the written file afterwards.
    #[arg(long)]
    shared_dir: Option<PathBuf>,
    /// The daemon's pid: report its CPU seconds per GiB and its RSS.
    #[arg(long)]
    daemon_pid: Option<u32>,
    /// Workloads to run in order on one connection (seq-read, seq-write, rand-read,
    /// rand-write, meta, churn; or all).
    #[arg(long, value_delimiter = ',', default_value = "all")]
    workloads: Vec<String>,
    /// Measured seconds per workload.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Unmeasured seconds before each workload (kept in the 100 ms series).
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Requests in flight per request queue.
    #[arg(long = "qd", default_value_t = 8)]
    queue_depth: usize,
    /// Request queues to drive, one submitter thread each (the daemon must serve them:
    /// ours with `--max-request-queues=N`; upstream serves 1).
    #[arg(long, default_value_t = 1)]
    queues: usize,
    /// Size of each data file, MiB.
    #[arg(long, default_value_t = 256)]
    file_mib: u64,
    /// Block size of the sequential workloads, KiB.
    #[arg(long, default_value_t = 1024)]
    seq_kib: u32,
    /// Block size of the random workloads, KiB.
    #[arg(long, default_value_t = 4)]
    rand_kib: u32,
    /// Files alive at once in each round of the churn workload.
    #[arg(long, default_value_t = 10_000)]
    churn_files: u64,
    /// Interval of the throughput series, ms.
    #[arg(long, default_value_t = 100)]
    interval_ms: u64,
    /// Check every byte of every N-th READ and the per-4-KiB offset tags of all others
    /// (1: every byte of every READ; 0: no checking).
    #[arg(long, default_value_t = 1)]
    verify_every: u32,
    /// Pin the generator to this CPU.
    #[arg(long)]
    cpu: Option<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also write the JSON report to this file.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Only measure the generator itself (no daemon): MiB/s it can verify / prepare.
    #[arg(long)]
    calibrate: bool,
    /// Prepare the files in --shared-dir and exit.
    #[arg(long)]
    prepare_only: bool,
}

fn table(r: &RunReport) -> String {
    let mut s = format!(
        "socket {}  queues {}  qd {}  INIT {}.{} max_write {}  connect {:.1} ms\n",
        r.socket,
        r.queues,
        r.queue_depth,
        r.init.major,
        r.init.minor,
        r.init.max_write,
        r.connect_s * 1e3
    );
    s += &format!(
        "{:<11} {:>6} {:>9} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9} {:>7} {:>6}\n",
        "workload",
        "bs",
        "MiB/s",
        "IOPS",
        "p50 µs",
        "p99 µs",
        "max µs",
        "cpu s/GiB",
        "RSS KiB",
        "gen cpu",
        "errors"
    );
    for w in &r.results {
        let d = w.daemon.as_ref();
        s += &format!(
            "{:<11} {:>6} {:>9.1} {:>9.0} {:>8.1} {:>8.1} {:>8.1} {:>9} {:>9} {:>6.0}% {:>6}\n",
            w.workload,
            w.block_size,
            w.mib_s,
            w.iops,
            w.lat_us.p50,
            w.lat_us.p99,
            w.lat_us.max,
            d.and_then(|d| d.cpu_s_per_gib)
                .map(|v| format!("{v:.3}"))
                .unwrap_or_else(|| "-".into()),
            d.map(|d| d.rss_kib.to_string())
                .unwrap_or_else(|| "-".into()),
            w.generator.cpu_share * 100.0,
            w.errors + w.verify_errors
        );
        if w.queues.len() > 1 {
            let q: Vec<String> = w
                .queues
                .iter()
                .map(|q| format!("q{} {}", q.queue, q.ops))
                .collect();
            s += &format!("  requests per queue: {}\n", q.join(", "));
        }
        if let Some(e) = &w.first_error {
            s += &format!("  first error: {e}\n");
        }
    }
    if let Some(c) = &r.write_file_check {
        s += &format!("written file on the host: {c}\n");
    }
    if let Some(f) = &r.fatal {
        s += &format!("FATAL: {f}\n");
    }
    s
}

fn main() -> ExitCode {
    let a = Args::parse();
    if let Some(c) = a.cpu {
        if let Err(e) = vufs_loadgen::daemon::pin_self(c) {
            eprintln!("vufs-loadgen: cannot pin to CPU {c}: {e}");
            return ExitCode::from(2);
        }
    }
    if a.calibrate {
        let v = calibrate(&[a.seq_kib << 10, a.rand_kib << 10], a.duration.min(2.0));
        let j: Vec<_> = v
            .iter()
            .map(|(bs, r, w)| serde_json::json!({"block_size": bs, "verify_mib_s": r, "prepare_mib_s": w}))
            .collect();
        if a.json {
            println!("{}", serde_json::to_string_pretty(&j).unwrap_or_default());
        } else {
            for (bs, r, w) in v {
                println!("bs {bs:>8}: verify {r:>9.0} MiB/s, prepare {w:>9.0} MiB/s (generator alone, one core)");
            }
        }
        return ExitCode::SUCCESS;
    }
    let mut workloads = Vec::new();
    for w in &a.workloads {
        if w == "all" {
            workloads.extend(Workload::ALL);
        } else if let Some(x) = Workload::parse(w) {
            workloads.push(x);
        } else {
            eprintln!("vufs-loadgen: unknown workload {w:?}");
            return ExitCode::from(2);
        }
    }
    let cfg = Config {
        socket: a.socket.clone().unwrap_or_default(),
        shared_dir: a.shared_dir.clone(),
        daemon_pid: a.daemon_pid,
        queue_depth: a.queue_depth,
        queues: a.queues,
        duration: Duration::from_secs_f64(a.duration),
        warmup: Duration::from_secs_f64(a.warmup),
        file_size: a.file_mib << 20,
        seq_bs: a.seq_kib << 10,
        rand_bs: a.rand_kib << 10,
        interval: Duration::from_millis(a.interval_ms.max(1)),
        verify_every: a.verify_every,
        churn_files: a.churn_files,
        ..Default::default()
    };
    if a.prepare_only {
        let Some(d) = &cfg.shared_dir else {
            eprintln!("vufs-loadgen: --prepare-only needs --shared-dir");
            return ExitCode::from(2);
        };
        return match vufs_loadgen::engine::prepare_host(d, cfg.file_size) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vufs-loadgen: {e}");
                ExitCode::from(2)
            }
        };
    }
    let mut g = match Generator::connect(cfg) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("vufs-loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    for w in workloads {
        if let Err(e) = g.run(w) {
            eprintln!("vufs-loadgen: {}: {e}", w.name());
            g.set_fatal(&e);
            break;
        }
    }
    let r = g.finish_run();
    let json = serde_json::to_string_pretty(&r).unwrap_or_default();
    if let Some(p) = &a.output {
        if let Err(e) = std::fs::write(p, &json) {
            eprintln!("vufs-loadgen: writing {}: {e}", p.display());
        }
    }
    if a.json {
        println!("{json}");
    } else {
        print!("{}", table(&r));
    }
    match (&r.fatal, r.ok) {
        (Some(_), _) => ExitCode::from(2),
        (None, true) => ExitCode::SUCCESS,
        (None, false) => {
            for w in &r.results {
                if let Some(e) = &w.first_error {
                    eprintln!("vufs-loadgen: {}: {e}", w.workload);
                }
            }
            ExitCode::from(1)
        }
    }
}
