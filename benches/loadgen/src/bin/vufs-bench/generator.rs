//! What the host and queue tiers share: preparing the files, one load-generator run against a
//! started daemon (its command line, its outcome), the rotation of variants per round, and
//! writing a tier's combined JSON.

use super::*;

/// The load generator's settings for one tier.
pub(crate) struct Load<'a> {
    pub(crate) loadgen: &'a Path,
    pub(crate) workloads: &'a str,
    pub(crate) duration: f64,
    pub(crate) warmup: f64,
    pub(crate) qd: usize,
    pub(crate) file_mib: u64,
    pub(crate) verify_every: u32,
}

/// How one generator run ended.
pub(crate) struct Outcome {
    /// The generator's exit code (-1 when it could not run or timed out).
    pub(crate) status: i32,
    pub(crate) err: Option<String>,
    /// The report it wrote, if it wrote one that parses.
    pub(crate) report: Option<RunReport>,
    /// The daemon exited by itself after the generator disconnected.
    pub(crate) exited: bool,
}

impl<'a> Load<'a> {
    /// The settings from a tier's flags: the shared ones, its workloads and its
    /// [measured, warm-up] seconds per workload.
    pub(crate) fn new(g: &'a GenArgs, workloads: &'a str, [duration, warmup]: [f64; 2]) -> Self {
        Load {
            loadgen: &g.loadgen,
            workloads,
            duration,
            warmup,
            qd: g.qd,
            file_mib: g.file_mib,
            verify_every: g.verify_every,
        }
    }

    /// Create the data files in `share` once, with the generator alone.
    pub(crate) fn prepare(&self, share: &Path) -> Result<(), String> {
        let st = Command::new(self.loadgen)
            .args(["--prepare-only", "--file-mib", &self.file_mib.to_string()])
            .arg("--shared-dir")
            .arg(share)
            .status()
            .map_err(|e| e.to_string())?;
        if !st.success() {
            return Err("preparing files failed".into());
        }
        Ok(())
    }

    /// The generator's command line against `daemon` (serving `share`), with `extra`
    /// arguments, writing its JSON report to `out`.
    pub(crate) fn command(
        &self,
        daemon: &Daemon,
        share: &Path,
        extra: &[String],
        out: &Path,
    ) -> Command {
        let mut cmd = Command::new(self.loadgen);
        cmd.arg("--socket")
            .arg(&daemon.socket)
            .arg("--shared-dir")
            .arg(share)
            .args(["--daemon-pid", &daemon.pid().to_string()])
            .args(["--workloads", self.workloads])
            .args(["--duration", &self.duration.to_string()])
            .args(["--warmup", &self.warmup.to_string()])
            .args(["--qd", &self.qd.to_string()])
            .args(["--file-mib", &self.file_mib.to_string()])
            .args(["--cpu", &GEN_CPU.to_string()])
            .args(["--verify-every", &self.verify_every.to_string()])
            .args(extra)
            .arg("--json")
            .arg("--output")
            .arg(out);
        cmd
    }
}

/// Run `cmd` (killed after `timeout`), read the report it wrote to `out`, give the daemon
/// 5 s to exit, and log a failed run with the daemon's last log lines.
pub(crate) fn finish(
    cmd: &mut Command,
    timeout: Duration,
    out: &Path,
    daemon: &mut Daemon,
) -> Outcome {
    let r = run_with_timeout(cmd, timeout);
    let report: Option<RunReport> = fs::read_to_string(out)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let exited = daemon.wait_exit(Duration::from_secs(5)).is_some();
    let (status, err) = match r {
        Ok((code, _)) => (code, None),
        Err(e) => (-1, Some(e)),
    };
    if status != 0 {
        eprintln!(
            "  loadgen exit {status} {err:?}; daemon log: {}",
            daemon.log_tail(3)
        );
    }
    Outcome {
        status,
        err,
        report,
        exited,
    }
}

/// The command that reproduces one run by hand: the pinned daemon, then the generator.
pub(crate) fn example(v: &Variant, cmd: &Command) -> String {
    format!(
        "taskset -c {DAEMON_CPU} {} --socket-path=SOCK --shared-dir=DIR {}\n{:?}",
        v.bin.display(),
        v.args.join(" "),
        cmd
    )
}

/// Rotate `v` for `round` (1-based), so that no variant always runs first on a warm or cold
/// machine.
pub(crate) fn rotate<T>(v: &mut [T], round: u32) {
    let k = v.len();
    if k > 0 {
        v.rotate_left((round as usize - 1) % k);
    }
}

/// Announce one run on stderr: `[TIER round R/N] VARIANT pool P (time)`.
pub(crate) fn announce(tier: &str, round: u32, rounds: u32, v: &str, pool: u32) {
    eprintln!(
        "[{tier}round {round}/{rounds}] {v} pool {pool} ({})",
        chrono_now()
    );
}

/// Write a tier's combined JSON as `name` in `dir` and say so.
pub(crate) fn write_json(dir: &Path, name: &str, all: &Value) -> Result<(), String> {
    let p = dir.join(name);
    fs::write(&p, serde_json::to_string_pretty(all).unwrap_or_default())
        .map_err(|e| e.to_string())?;
    eprintln!("wrote {}", p.display());
    Ok(())
}
