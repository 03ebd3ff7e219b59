//! `vufs-bench`: the bench runner behind `benches/run.sh`.
//!
//! * `host`: ours vs upstream (and ours with non-binding limits) over the VM-less load
//!   generator, N alternating rounds, daemon pinned to CPU 0 and generator to CPU 1, plus
//!   start-up time and idle RSS. Raw JSON per run and a combined `host.json`.
//! * `limited`: one rate-limited sequential-write run (the plot's data).
//! * `guest`: the same comparison with fio in a TCG guest (`guest-vm`), fresh daemon per boot.
//! * `queues`: queue scaling, ours with 1, 2 and 4 request queues against upstream (1).
//! * `guest-queues`: a 2-vCPU QEMU 10 + Linux 6.12 guest, fio `numjobs=2`, 1 vs 2 queues.
//! * `plot`: SVG of throughput per 100 ms interval of the limited run against the ideal.
//! * `report`: `RESULTS.md` and `summary.json` from the JSON files (never edit by hand).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use vufs_loadgen::daemon::{pin_command, Daemon};
use vufs_loadgen::{procfs, RunReport};

use generator::{announce, example, finish, rotate, write_json, Load};

mod generator;
mod guest;
mod guest_queues;
mod plot;
mod queues;

const DAEMON_CPU: usize = 0;
const GEN_CPU: usize = 1;

#[derive(Parser)]
#[command(name = "vufs-bench")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone, Debug, Serialize, Deserialize)]
struct Daemons {
    /// Our virtiofsd binary.
    #[arg(long)]
    ours: PathBuf,
    /// A second build of ours, "ours-b" (say the new build, with --ours the old one): it
    /// alternates with --ours in every round, and the report gives new/old (ours-b/ours)
    /// median ratios with the per-round range. The "ours-limits" variant is left out then.
    #[arg(long)]
    ours_b: Option<PathBuf>,
    /// Upstream virtiofsd 1.14 binary.
    #[arg(long)]
    upstream: Option<PathBuf>,
    /// Arguments both daemons get (besides --socket-path, --shared-dir, --thread-pool-size).
    #[arg(
        long,
        default_value = "--sandbox=none --cache=auto",
        allow_hyphen_values = true
    )]
    common: String,
    /// Extra arguments of the "ours with limits far above the achievable rate" variant.
    #[arg(
        long,
        default_value = "--fs-bw-size=100G --fs-ops-size=100M",
        allow_hyphen_values = true
    )]
    limits: String,
    /// Thread pool sizes to compare.
    #[arg(long, value_delimiter = ',', default_value = "0,4")]
    pools: Vec<u32>,
    /// Rounds.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Directory for raw JSON and scratch (shared dir, sockets, logs under it).
    #[arg(long)]
    out: PathBuf,
    /// Scratch directory (shared dir, sockets, logs).
    #[arg(long, default_value = "/tmp/vufs-bench")]
    scratch: PathBuf,
}

/// The load generator's flags the host and queue tiers share (same names, same defaults).
#[derive(clap::Args, Clone, Debug)]
struct GenArgs {
    /// The load generator binary.
    #[arg(long)]
    loadgen: PathBuf,
    /// Queue depth (per request queue in the queue tier).
    #[arg(long, default_value_t = 8)]
    qd: usize,
    /// Data file size, MiB.
    #[arg(long, default_value_t = 256)]
    file_mib: u64,
    /// Generator's --verify-every (every byte of every N-th READ, offset tags of all).
    #[arg(long, default_value_t = 8)]
    verify_every: u32,
}

#[derive(Subcommand)]
enum Cmd {
    /// Host tier (VM-less load generator).
    Host {
        #[command(flatten)]
        d: Daemons,
        #[command(flatten)]
        g: GenArgs,
        /// Measured seconds per workload.
        #[arg(long, default_value_t = 3.0)]
        duration: f64,
        /// Warm-up seconds per workload.
        #[arg(long, default_value_t = 0.5)]
        warmup: f64,
        /// Workloads.
        #[arg(long, default_value = "all")]
        workloads: String,
        /// Generator's --churn-files (files alive at once per round of `churn`).
        #[arg(long, default_value_t = 2000)]
        churn_files: u64,
    },
    /// One rate-limited sequential-write run for the plot.
    Limited {
        /// Our virtiofsd binary.
        #[arg(long)]
        ours: PathBuf,
        /// The load generator binary.
        #[arg(long)]
        loadgen: PathBuf,
        /// Limit arguments.
        #[arg(
            long,
            default_value = "--fs-bw-size=10M --fs-bw-burst=20M",
            allow_hyphen_values = true
        )]
        limits: String,
        /// Seconds.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Output JSON.
        #[arg(long)]
        out: PathBuf,
        /// Scratch directory.
        #[arg(long, default_value = "/tmp/vufs-bench")]
        scratch: PathBuf,
    },
    /// Guest tier (fio in a TCG guest).
    Guest {
        #[command(flatten)]
        d: Daemons,
        /// fio runtime per data job, seconds.
        #[arg(long, default_value_t = 3)]
        runtime: u32,
        /// Files created / stat'ed / deleted by the metadata jobs.
        #[arg(long, default_value_t = 500)]
        nrfiles: u32,
        /// Data file size, MiB.
        #[arg(long, default_value_t = 128)]
        file_mib: u64,
    },
    /// Queue scaling (VM-less): ours with N request queues (one submitter each) vs upstream.
    Queues {
        #[command(flatten)]
        d: Daemons,
        #[command(flatten)]
        g: GenArgs,
        /// Request queue counts of ours.
        #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
        queues: Vec<usize>,
        /// Measured seconds per workload.
        #[arg(long, default_value_t = 2.0)]
        duration: f64,
        /// Warm-up seconds per workload.
        #[arg(long, default_value_t = 0.3)]
        warmup: f64,
        /// Workloads.
        #[arg(long, default_value = "rand-read,rand-write,meta")]
        workloads: String,
    },
    /// Guest queue tier: 2 vCPUs on the backports stack, fio numjobs=2, 1 vs 2 request queues.
    GuestQueues {
        #[command(flatten)]
        d: Daemons,
        /// Thread pool size of the daemon.
        #[arg(long, default_value_t = 0)]
        pool: u32,
        /// fio runtime per job, seconds.
        #[arg(long, default_value_t = 3)]
        runtime: u32,
        /// Data file size, MiB.
        #[arg(long, default_value_t = 128)]
        file_mib: u64,
    },
    /// SVG of the limited run.
    Plot {
        /// limited.json.
        #[arg(long)]
        input: PathBuf,
        /// Output SVG.
        #[arg(long)]
        svg: PathBuf,
    },
    /// RESULTS.md from the JSON files.
    Report {
        /// Directory with host.json, guest.json, limited.json, calibration.json.
        #[arg(long)]
        results: PathBuf,
        /// Markdown output.
        #[arg(long)]
        md: PathBuf,
        /// The command that produced the results (shown in the report).
        #[arg(long, default_value = "benches/run.sh")]
        command: String,
    },
}

fn split(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

/// The filesystem the shared directory is on, as findmnt names it: type, source and options.
fn share_fs(dir: &Path) -> String {
    Command::new("findmnt")
        .args(["-no", "FSTYPE,SOURCE,OPTIONS", "-T"])
        .arg(dir)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> Value {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let out = |c: &str, a: &[&str]| {
        Command::new(c)
            .args(a)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": cpu,
        "kernel": out("uname", &["-r"]),
        "os": out("sh", &["-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "mem_total": fs::read_to_string("/proc/meminfo").unwrap_or_default().lines().next().unwrap_or("").to_string(),
        "loadavg_at_start": load.trim(),
        "date": out("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Variant {
    /// "ours", "ours-b", "upstream", "ours-limits".
    name: String,
    bin: PathBuf,
    args: Vec<String>,
    pool: u32,
}

/// The variants in the order they run in `round` (rotated every round, so none always runs
/// first on a warm or cold machine).
fn rotated(d: &Daemons, pool: u32, with_limits: bool, round: u32) -> Vec<Variant> {
    let mut vs = variants(d, pool, with_limits);
    rotate(&mut vs, round);
    vs
}

fn variants(d: &Daemons, pool: u32, with_limits: bool) -> Vec<Variant> {
    let mut common = split(&d.common);
    common.push(format!("--thread-pool-size={pool}"));
    let mut v = vec![Variant {
        name: "ours".into(),
        bin: d.ours.clone(),
        args: common.clone(),
        pool,
    }];
    if let Some(b) = &d.ours_b {
        v.push(Variant {
            name: "ours-b".into(),
            bin: b.clone(),
            args: common.clone(),
            pool,
        });
    }
    if let Some(u) = &d.upstream {
        v.push(Variant {
            name: "upstream".into(),
            bin: u.clone(),
            args: common.clone(),
            pool,
        });
    }
    if with_limits && d.ours_b.is_none() {
        let mut a = common;
        a.extend(split(&d.limits));
        v.push(Variant {
            name: "ours-limits".into(),
            bin: d.ours.clone(),
            args: a,
            pool,
        });
    }
    v
}

/// Run `cmd`, killing it after `timeout`; (status code, stdout).
fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<(i32, String), String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let st = loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("timed out after {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok((st.code().unwrap_or(-1), reader.join().unwrap_or_default()))
}

struct Scratch {
    share: PathBuf,
    dir: PathBuf,
}

fn scratch(dir: &Path) -> Scratch {
    let share = dir.join("share");
    fs::create_dir_all(&share).expect("scratch dir");
    Scratch {
        share,
        dir: dir.to_owned(),
    }
}

fn start(v: &Variant, s: &Scratch, extra: &[String]) -> std::io::Result<Daemon> {
    let mut args = v.args.clone();
    args.extend_from_slice(extra);
    Daemon::start(
        &v.bin,
        &s.dir.join("vfsd.sock"),
        &s.share,
        &args,
        Some(DAEMON_CPU),
        &s.dir.join(format!("{}-p{}.log", v.name, v.pool)),
    )
}

fn host(d: &Daemons, g: &Load, churn_files: u64) -> Result<(), String> {
    let s = scratch(&d.scratch);
    let raw = d.out.join("raw");
    fs::create_dir_all(&raw).map_err(|e| e.to_string())?;
    let mut all = json!({
        "machine": machine(),
        "settings": {
            "rounds": d.rounds, "duration_s": g.duration, "warmup_s": g.warmup, "qd": g.qd,
            "file_mib": g.file_mib, "workloads": g.workloads, "pools": d.pools,
            "verify_every": g.verify_every, "churn_files": churn_files,
            "ours": d.ours, "ours_b": d.ours_b,
            "common_args": d.common, "limit_args": d.limits,
            "daemon_cpu": DAEMON_CPU, "generator_cpu": GEN_CPU,
            "share_fs": share_fs(&s.share),
        },
    });
    // Files once, on the host; both daemons serve the same directory in turn.
    g.prepare(&s.share)?;
    // Calibration: the generator alone.
    let mut c = Command::new(g.loadgen);
    c.args(["--calibrate", "--json", "--duration", "1"]);
    pin_command(&mut c, Some(GEN_CPU));
    let (_, cal) = run_with_timeout(&mut c, Duration::from_secs(30))?;
    all["calibration"] = serde_json::from_str(&cal).unwrap_or(Value::Null);

    let per_run = Duration::from_secs_f64(
        (g.duration + g.warmup + 2.0) * 6.0 + 90.0 + g.file_mib as f64 / 50.0,
    );
    let churn = ["--churn-files".to_string(), churn_files.to_string()];
    let mut runs = Vec::new();
    let mut startups = Vec::new();
    let mut example_cmd = None;
    for round in 1..=d.rounds {
        for &pool in &d.pools {
            for v in &rotated(d, pool, true, round) {
                announce("", round, d.rounds, &v.name, pool);
                let mut daemon = start(v, &s, &[]).map_err(|e| e.to_string())?;
                let sock_ms = daemon
                    .wait_socket_file(Duration::from_secs(10))
                    .map_err(|e| e.to_string())?
                    .as_secs_f64()
                    * 1e3;
                std::thread::sleep(Duration::from_millis(300));
                let idle = procfs::rss_kib(daemon.pid());
                let out = raw.join(format!("r{round}-{}-p{pool}.json", v.name));
                let mut cmd = g.command(&daemon, &s.share, &churn, &out);
                if example_cmd.is_none() {
                    example_cmd = Some(example(v, &cmd));
                }
                let o = finish(&mut cmd, per_run, &out, &mut daemon);
                runs.push(json!({
                    "round": round, "variant": v.name, "pool": pool, "args": v.args,
                    "socket_file_ms": sock_ms,
                    "idle_rss_kib": idle.map(|x| x.0),
                    "loadgen_status": o.status, "error": o.err,
                    "daemon_exited_by_itself": o.exited,
                    "report": o.report,
                }));
            }
        }
        // Start-up to socket-ready (a connection accepted), both daemons, pool 0.
        for v in variants(d, 0, false) {
            let mut daemon = start(&v, &s, &[]).map_err(|e| e.to_string())?;
            let ready = daemon.probe_ready(Duration::from_secs(10));
            startups.push(json!({
                "round": round, "variant": v.name,
                "ready_ms": ready.as_ref().ok().map(|t| t.as_secs_f64() * 1e3),
                "error": ready.err().map(|e| e.to_string()),
            }));
        }
    }
    all["runs"] = Value::Array(runs);
    all["startup"] = Value::Array(startups);
    all["example_command"] = json!(example_cmd);
    write_json(&d.out, "host.json", &all)
}

fn chrono_now() -> String {
    Command::new("date")
        .arg("+%T")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn limited(
    ours: &Path,
    loadgen: &Path,
    limits: &str,
    seconds: f64,
    out: &Path,
    scr: &Path,
) -> Result<(), String> {
    let s = scratch(scr);
    let v = Variant {
        name: "ours-limited".into(),
        bin: ours.to_owned(),
        args: [split("--sandbox=none --cache=auto"), split(limits)].concat(),
        pool: 0,
    };
    let file_mib = ((seconds * 12.0) as u64 + 32).next_power_of_two();
    let mut daemon = start(&v, &s, &[]).map_err(|e| e.to_string())?;
    daemon
        .wait_socket_file(Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let mut cmd = Command::new(loadgen);
    cmd.arg("--socket")
        .arg(&daemon.socket)
        .arg("--shared-dir")
        .arg(&s.share)
        .args(["--daemon-pid", &daemon.pid().to_string()])
        .args(["--workloads", "seq-write", "--warmup", "0", "--qd", "8"])
        .args(["--duration", &seconds.to_string()])
        .args(["--file-mib", &file_mib.to_string()])
        .args(["--cpu", &GEN_CPU.to_string(), "--json"]);
    let (code, stdout) = run_with_timeout(&mut cmd, Duration::from_secs_f64(seconds * 3.0 + 60.0))?;
    daemon.wait_exit(Duration::from_secs(5));
    let report: Value =
        serde_json::from_str(&stdout).map_err(|e| format!("loadgen output: {e}"))?;
    let j = json!({
        "daemon_args": v.args, "seconds": seconds, "loadgen_status": code,
        "limit_bytes_per_s": limit_value(limits, "--fs-bw-size"),
        "burst_bytes": limit_value(limits, "--fs-bw-burst"),
        "report": report,
    });
    fs::write(out, serde_json::to_string_pretty(&j).unwrap_or_default()).map_err(|e| e.to_string())
}

/// The value of `--NAME=QTY` in `args`, in units (K/M/G decimal, Ki/Mi/Gi binary).
fn limit_value(args: &str, name: &str) -> Option<f64> {
    let q = split(args)
        .into_iter()
        .find_map(|a| a.strip_prefix(&format!("{name}=")).map(String::from))?;
    let (num, mult) = match q.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => {
            let m = match &q[i..] {
                "K" | "k" | "KB" => 1e3,
                "M" | "MB" => 1e6,
                "G" | "GB" => 1e9,
                "Ki" | "KiB" => 1024.0,
                "Mi" | "MiB" => 1048576.0,
                "Gi" | "GiB" => 1073741824.0,
                _ => return None,
            };
            (&q[..i], m)
        }
        None => (q.as_str(), 1.0),
    };
    num.parse::<f64>().ok().map(|n| n * mult)
}

fn main() {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Host {
            d,
            g,
            duration,
            warmup,
            workloads,
            churn_files,
        } => host(
            &d,
            &Load::new(&g, &workloads, [duration, warmup]),
            churn_files,
        ),
        Cmd::Limited {
            ours,
            loadgen,
            limits,
            seconds,
            out,
            scratch,
        } => limited(&ours, &loadgen, &limits, seconds, &out, &scratch),
        Cmd::Guest {
            d,
            runtime,
            nrfiles,
            file_mib,
        } => guest::guest(&d, runtime, nrfiles, file_mib),
        Cmd::Queues {
            d,
            g,
            queues,
            duration,
            warmup,
            workloads,
        } => queues::queues(&d, &Load::new(&g, &workloads, [duration, warmup]), &queues),
        Cmd::GuestQueues {
            d,
            pool,
            runtime,
            file_mib,
        } => guest_queues::guest_queues(&d, pool, runtime, file_mib),
        Cmd::Plot { input, svg } => plot::plot(&input, &svg),
        Cmd::Report {
            results,
            md,
            command,
        } => vufs_loadgen::report::write(&results, &md, &command),
    };
    if let Err(e) = r {
        eprintln!("vufs-bench: {e}");
        std::process::exit(1);
    }
}
