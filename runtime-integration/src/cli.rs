//! The `virtiofs-sandbox` command line.
//!
//! ```text
//! virtiofs-sandbox start --config FILE [--hypervisor qemu] --sandbox-id ID --shared-dir DIR
//!                        [--annotation K=V]... [--state-dir DIR] [--launch go|rs]
//!                        [--daemon PATH] [--no-xattr] [--memory SIZE] [--ready-timeout SECS]
//!                        [--settle SECS]
//! virtiofs-sandbox stop ID [--state-dir DIR] [--grace SECS]
//! virtiofs-sandbox status ID [--state-dir DIR]          (exit 0 if running, 3 otherwise)
//! virtiofs-sandbox list [--state-dir DIR] [--json]
//! virtiofs-sandbox run --config FILE --sandbox-id ID --shared-dir DIR [...start options]
//!                      -- VMM [ARGS...]
//! virtiofs-sandbox limits ID [--state-dir DIR] [--fs-{bw,read-bw,write-bw,ops}-{size,burst}=Q]...
//! virtiofs-sandbox stats ID [--state-dir DIR]
//! virtiofs-sandbox metrics --listen ADDR:PORT [--state-dir DIR] [--timeout SECS]
//! ```
//!
//! `start` prints JSON (pid, socket, log, `ready_by`: what showed readiness, the daemon's argv
//! and the VMM arguments) and leaves
//! the daemon running in its own session; its output goes to the sandbox log through a small
//! pump process (`virtiofs-sandbox __log-pump`) that rotates it at 1 MiB.
//!
//! `run` starts the daemon, adds the device and shared-memory arguments to the VMM command,
//! runs the VMM, and tears everything down when either side exits: when the VMM exits the
//! daemon is stopped. A daemon exit is judged by its cause: when the daemon exited 0 because
//! the VMM closed the connection (a guest shutdown: the VMM closes it on its way out, often
//! before it is reaped), `run` waits for the VMM's own exit (killing it only if it still runs
//! 10 s later); when the daemon failed, was killed, or was stopped by a signal, the VMM is
//! SIGKILLed at once (the guest lost its root filesystem) and `run` fails. The exit status is
//! the VMM's (128+N when killed by signal N; 1 if it was 0 after a daemon failure). SIGINT,
//! SIGTERM and SIGHUP are forwarded to the VMM.
//!
//! Every daemon gets an HTTP control socket, `<state-dir>/<id>/api.sock` (`--api-socket`),
//! used by the live commands ([`crate::api`]):
//! * `limits` without flags prints the sandbox's rate limits (`GET /api/v1/ratelimit`); with
//!   flags it changes only the buckets given (`PATCH`) and prints the limits after. Values
//!   take the daemon's units (`10M`, `4Mi`, `0` removes a limit). This is the operator's tool:
//!   unlike pod annotations it may loosen or remove limits. A burst given without its size
//!   keeps the bucket's current size.
//! * `stats` prints the daemon's counters (`GET /api/v1/stats`).
//! * `metrics` serves one Prometheus `/metrics` over TCP for every sandbox of the state
//!   directory ([`crate::metrics`]); it prints `{"listen": "ADDR:PORT"}` once listening (port 0
//!   picks a free port) and runs until killed.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::annotations;
use crate::api::{BucketUpdate, RateLimitUpdate, BUCKETS};
use crate::command::{CommandOptions, LaunchStyle};
use crate::config::VirtioFsConfig;
use crate::error::{Error, Result};
use crate::supervisor::{
    reset_signal_mask, ChildWatch, CleanExitCause, Daemon, ExitEvent, StartOptions, Supervisor,
    DEFAULT_LOG_LIMIT, DEFAULT_STATE_DIR,
};
use crate::vmm::{self, Vmm};

/// `virtiofs-sandbox`: start and supervise one virtiofsd per Kata sandbox.
#[derive(Debug, Parser)]
#[command(name = "virtiofs-sandbox", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Start a sandbox's daemon and leave it running; prints JSON.
    Start(StartArgs),
    /// Stop a sandbox's daemon (SIGTERM, grace, SIGKILL) and remove its state.
    Stop {
        /// Sandbox id.
        id: String,
        /// State directory.
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// Seconds between SIGTERM and SIGKILL.
        #[arg(long, default_value_t = 2.0)]
        grace: f64,
    },
    /// Show a sandbox's state as JSON (exit 0 if running, 3 otherwise).
    Status {
        /// Sandbox id.
        id: String,
        /// State directory.
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// List the sandboxes of a state directory.
    List {
        /// State directory.
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Start the daemon, run a VMM wired to it, tear both down when either exits.
    Run {
        /// Daemon options.
        #[command(flatten)]
        start: StartArgs,
        /// The VMM and its arguments (after `--`).
        #[arg(last = true, required = true, num_args = 1..)]
        vmm: Vec<String>,
    },
    /// Show a sandbox's rate limits, or change the buckets given (JSON output).
    Limits {
        /// Sandbox id.
        id: String,
        /// State directory.
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// New limits (only the buckets given change).
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Show a sandbox daemon's statistics (JSON).
    Stats {
        /// Sandbox id.
        id: String,
        /// State directory.
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Serve Prometheus /metrics of every sandbox in the state directory (runs until killed).
    Metrics {
        /// TCP address to listen on, ADDR:PORT (port 0: any free port).
        #[arg(long, value_name = "ADDR:PORT")]
        listen: String,
        /// State directory.
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// Seconds allowed for each daemon's answer (slower ones count as down).
        #[arg(long, default_value_t = 5.0)]
        timeout: f64,
    },
    /// Internal: copy stdin to a size-bounded log file (used by detached daemons).
    #[command(name = "__log-pump", hide = true)]
    LogPump {
        /// Rotation size in bytes.
        #[arg(long, default_value_t = DEFAULT_LOG_LIMIT)]
        max_bytes: u64,
        /// The log file.
        log: PathBuf,
    },
}

/// Options shared by `start` and `run`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Kata configuration.toml.
    #[arg(long)]
    pub config: PathBuf,
    /// Hypervisor section ([hypervisor.NAME]).
    #[arg(long, default_value = "qemu")]
    pub hypervisor: String,
    /// Sandbox id (1-128 of A-Z a-z 0-9 . _ -).
    #[arg(long)]
    pub sandbox_id: String,
    /// Directory shared with the guest.
    #[arg(long)]
    pub shared_dir: PathBuf,
    /// Pod annotation NAME=VALUE (repeatable).
    #[arg(long = "annotation", value_name = "K=V")]
    pub annotations: Vec<String>,
    /// State directory.
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Launch convention: go (socket passed as fd 3) or rs (--socket-path).
    #[arg(long, default_value = "go")]
    pub launch: LaunchStyle,
    /// Operator override of virtio_fs_daemon (not subject to valid_virtio_fs_daemon_paths).
    #[arg(long)]
    pub daemon: Option<PathBuf>,
    /// Do not add --xattr (guest SELinux disabled).
    #[arg(long)]
    pub no_xattr: bool,
    /// Guest RAM for the printed VMM arguments (start only; run reads -m).
    #[arg(long, default_value = "1G")]
    pub memory: String,
    /// Seconds to wait for readiness (rs style).
    #[arg(long, default_value_t = 10.0)]
    pub ready_timeout: f64,
    /// Go style: seconds after which a daemon that has neither exited nor logged its ready
    /// line counts as started.
    #[arg(long, default_value_t = 0.3)]
    pub settle: f64,
}

fn quantity(s: &str) -> std::result::Result<u64, String> {
    ratelimit::parse_quantity(s).map_err(|e| e.to_string())
}

/// The `limits` flags: the daemon's own rate-limit flags and units.
#[derive(Debug, Default, Args)]
pub struct LimitArgs {
    /// Total bandwidth, bytes/s (0 removes the limit).
    #[arg(long, value_name = "Q", value_parser = quantity)]
    pub fs_bw_size: Option<u64>,
    /// Total bandwidth burst, bytes.
    #[arg(long, value_name = "Q", value_parser = quantity)]
    pub fs_bw_burst: Option<u64>,
    /// Read bandwidth, bytes/s (0 removes the limit).
    #[arg(long, value_name = "Q", value_parser = quantity)]
    pub fs_read_bw_size: Option<u64>,
    /// Read bandwidth burst, bytes.
    #[arg(long, value_name = "Q", value_parser = quantity)]
    pub fs_read_bw_burst: Option<u64>,
    /// Write bandwidth, bytes/s (0 removes the limit).
    #[arg(long, value_name = "Q", value_parser = quantity)]
    pub fs_write_bw_size: Option<u64>,
    /// Write bandwidth burst, bytes.
    #[arg(long, value_name = "Q", value_parser = quantity)]
    pub fs_write_bw_burst: Option<u64>,
    /// Requests/s (0 removes the limit).
    #[arg(long, value_name = "Q", value_parser = quantity)]
    pub fs_ops_size: Option<u64>,
    /// Request burst.
    #[arg(long, value_name = "Q", value_parser = quantity)]
    pub fs_ops_burst: Option<u64>,
}

impl LimitArgs {
    /// `(bucket, size, burst)` for each of [`BUCKETS`].
    fn buckets(&self) -> [(&'static str, Option<u64>, Option<u64>); 4] {
        [
            (BUCKETS[0], self.fs_bw_size, self.fs_bw_burst),
            (BUCKETS[1], self.fs_read_bw_size, self.fs_read_bw_burst),
            (BUCKETS[2], self.fs_write_bw_size, self.fs_write_bw_burst),
            (BUCKETS[3], self.fs_ops_size, self.fs_ops_burst),
        ]
    }

    /// The PATCH body. A burst without a size takes the bucket's size from `current` (the
    /// daemon's GET answer), which is only fetched when needed.
    pub fn update(
        &self,
        current: impl FnOnce() -> Result<serde_json::Value>,
    ) -> Result<RateLimitUpdate> {
        let mut u = RateLimitUpdate::default();
        let mut current = Some(current);
        let mut fetched: Option<serde_json::Value> = None;
        for (name, size, burst) in self.buckets() {
            let size = match (size, burst) {
                (None, None) => continue,
                (Some(s), _) => s,
                (None, Some(_)) => {
                    if fetched.is_none() {
                        fetched = Some((current.take().expect("fetched once"))()?);
                    }
                    let flag = format!("--fs-{}-burst", name.replace('_', "-"));
                    match fetched.as_ref().and_then(|v| v[name]["size"].as_u64()) {
                        Some(s) if s > 0 => s,
                        _ => {
                            return Err(Error::NotSupported(format!(
                                "{flag} on an unlimited bucket: give --fs-{}-size too",
                                name.replace('_', "-")
                            )))
                        }
                    }
                }
            };
            *u.bucket_mut(name).expect("known bucket") = Some(BucketUpdate { size, burst });
        }
        Ok(u)
    }
}

impl StartArgs {
    fn config(&self) -> Result<VirtioFsConfig> {
        let mut cfg = VirtioFsConfig::load(&self.config, &self.hypervisor)?;
        if let Some(d) = &self.daemon {
            cfg.virtio_fs_daemon = d.clone();
        }
        let mut ann = BTreeMap::new();
        for a in &self.annotations {
            let (k, v) = a.split_once('=').ok_or_else(|| Error::Annotation {
                name: a.clone(),
                message: "expected NAME=VALUE".into(),
            })?;
            ann.insert(k.to_string(), v.to_string());
        }
        annotations::apply(&cfg, &ann)
    }

    fn options(&self) -> StartOptions {
        StartOptions {
            command: CommandOptions {
                style: self.launch,
                xattr: !self.no_xattr,
            },
            ready_timeout: Duration::from_secs_f64(self.ready_timeout.max(0.0)),
            settle: Duration::from_secs_f64(self.settle.max(0.0)),
            ..StartOptions::default()
        }
    }
}

/// Runs the CLI with `args` (including argv\[0\]) and returns the exit code.
pub fn main_with(args: impl IntoIterator<Item = OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("virtiofs-sandbox: error: {e}");
            1
        }
    }
}

fn print_json(v: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer_pretty(&mut out, v);
    let _ = writeln!(out);
}

fn dispatch(cmd: Cmd) -> Result<i32> {
    match cmd {
        Cmd::Start(a) => start(a),
        Cmd::Stop {
            id,
            state_dir,
            grace,
        } => {
            let outcome =
                Supervisor::new(state_dir).stop(&id, Duration::from_secs_f64(grace.max(0.0)))?;
            print_json(&json!({ "sandbox_id": id, "result": outcome }));
            Ok(0)
        }
        Cmd::Status { id, state_dir } => {
            let s = Supervisor::new(state_dir).status(&id)?;
            print_json(&serde_json::to_value(&s).expect("serialise"));
            Ok(if s.state == "running" { 0 } else { 3 })
        }
        Cmd::List { state_dir, json } => {
            let all = Supervisor::new(state_dir).list()?;
            if json {
                print_json(&serde_json::to_value(&all).expect("serialise"));
            } else {
                println!("{:<40} {:<11} {:>8}  SOCKET", "SANDBOX", "STATE", "PID");
                for s in all {
                    println!(
                        "{:<40} {:<11} {:>8}  {}",
                        s.sandbox_id,
                        s.state,
                        s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                        s.socket
                            .map(|p| p.display().to_string())
                            .unwrap_or_else(|| "-".into())
                    );
                }
            }
            Ok(0)
        }
        Cmd::Run { start, vmm } => run(start, vmm),
        Cmd::Limits {
            id,
            state_dir,
            limits,
        } => {
            let client = Supervisor::new(state_dir).api(&id)?;
            let update = limits.update(|| client.get_limits())?;
            let v = if update.is_empty() {
                client.get_limits()?
            } else {
                client.patch_limits(&update)?
            };
            print_json(&v);
            Ok(0)
        }
        Cmd::Stats { id, state_dir } => {
            let v = Supervisor::new(state_dir).api(&id)?.stats()?;
            print_json(&v);
            Ok(0)
        }
        Cmd::Metrics {
            listen,
            state_dir,
            timeout,
        } => {
            let timeout = Duration::from_secs_f64(timeout.clamp(0.01, 3600.0));
            crate::metrics::serve(&listen, &state_dir, timeout, |addr| {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(
                    out,
                    "{}",
                    json!({ "listen": addr.to_string(), "state_dir": state_dir })
                );
                let _ = out.flush();
            })?;
            Ok(0)
        }
        Cmd::LogPump { max_bytes, log } => {
            crate::supervisor::pump_log(std::io::stdin().lock(), &log, max_bytes)
                .map_err(Error::io(format!("writing {}", log.display())))?;
            Ok(0)
        }
    }
}

fn start(a: StartArgs) -> Result<i32> {
    let cfg = a.config()?;
    if let Some(reason) = cfg.no_daemon_reason() {
        print_json(&json!({
            "sandbox_id": a.sandbox_id,
            "shared_fs": cfg.shared_fs,
            "pid": null,
            "daemon": null,
            "message": reason,
        }));
        return Ok(0);
    }
    let vmm_kind = Vmm::from_hypervisor(&cfg.hypervisor)?;
    let memory_mib = vmm::parse_qemu_size_mib(&a.memory)?;
    let mut opts = a.options();
    opts.detach = true;
    let exe = std::env::current_exe().map_err(Error::io("current_exe"))?;
    opts.log_pump = Some(vec![exe.into_os_string(), "__log-pump".into()]);
    let sup = Supervisor::new(&a.state_dir);
    let daemon = sup.start(&a.sandbox_id, &cfg, &a.shared_dir, &opts, None)?;
    let paths = daemon.paths().clone();
    let ready_by = daemon.ready_by();
    let st = daemon.detach();
    let vmm_args = vmm::device_args(
        vmm_kind,
        &vmm::DeviceSpec {
            socket: paths.socket.clone(),
            queue_size: cfg.virtio_fs_queue_size,
            memory_mib,
        },
    );
    print_json(&json!({
        "sandbox_id": st.sandbox_id,
        "shared_fs": cfg.shared_fs,
        "pid": st.pid,
        "socket": paths.socket,
        "sockets": [paths.socket],
        "api_socket": st.api_socket,
        "log": paths.log,
        "state": paths.state,
        "launch": st.launch,
        "ready_by": ready_by,
        "daemon": st.daemon,
        "args": st.args,
        "vmm": { "hypervisor": cfg.hypervisor, "args": vmm_args },
    }));
    Ok(0)
}

/// A safety net only: how long a VMM that closed its virtio-fs connection (so the daemon
/// exited 0) may take to exit before it is taken for hung and killed.
pub const VMM_EXIT_AFTER_DISCONNECT: Duration = Duration::from_secs(10);

enum Event {
    Daemon(ExitEvent),
    Vmm(ExitEvent),
    Signal(i32),
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

fn spawn_vmm(
    program: &str,
    args: &[String],
    tx: mpsc::Sender<Event>,
) -> Result<std::sync::Arc<ChildWatch>> {
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::inherit());
    // SAFETY: async-signal-safe calls only.
    unsafe {
        cmd.pre_exec(|| {
            reset_signal_mask();
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    use std::os::unix::process::CommandExt;
    let child = cmd
        .spawn()
        .map_err(Error::io(format!("starting the VMM {program}")))?;
    Ok(ChildWatch::spawn(
        child,
        Some(Box::new(move |ev| {
            let _ = tx.send(Event::Vmm(ev));
        })),
    ))
}

fn run(a: StartArgs, vmm_cmd: Vec<String>) -> Result<i32> {
    // Block the termination signals before any thread exists; one thread takes them with
    // sigwait and the VMM gets them forwarded. Children get an empty mask back.
    let set = signal_set();
    // SAFETY: changing this thread's mask; threads spawned later inherit it.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    let (tx, rx) = mpsc::channel::<Event>();
    {
        let tx = tx.clone();
        std::thread::spawn(move || loop {
            let mut sig = 0;
            // SAFETY: waits for one of the blocked signals.
            if unsafe { libc::sigwait(&set, &mut sig) } == 0 && tx.send(Event::Signal(sig)).is_err()
            {
                return;
            }
        });
    }

    let cfg = a.config()?;
    let (program, user_args) = vmm_cmd.split_first().expect("clap requires a VMM");
    if let Some(reason) = cfg.no_daemon_reason() {
        eprintln!("virtiofs-sandbox: {reason}; running the VMM unchanged");
        let w = spawn_vmm(program, user_args, tx)?;
        return Ok(wait_vmm_only(&rx, &w));
    }
    let vmm_kind = Vmm::from_hypervisor(&cfg.hypervisor)?;
    let sup = Supervisor::new(&a.state_dir);
    let mut opts = a.options();
    opts.die_with_parent = true;
    let dtx = tx.clone();
    let mut daemon = sup.start(
        &a.sandbox_id,
        &cfg,
        &a.shared_dir,
        &opts,
        Some(Box::new(move |ev| {
            let _ = dtx.send(Event::Daemon(ev));
        })),
    )?;
    let (args, mib) = match vmm::complete_command(
        vmm_kind,
        user_args,
        daemon.socket(),
        cfg.virtio_fs_queue_size,
    ) {
        Ok(x) => x,
        Err(e) => {
            let _ = daemon.stop(Duration::from_secs(2));
            return Err(e);
        }
    };
    eprintln!(
        "virtiofs-sandbox: sandbox {}: virtiofsd pid {} on {} ({} MiB shared guest RAM; API {}); starting {program}",
        a.sandbox_id,
        daemon.pid(),
        daemon.socket().display(),
        mib,
        daemon.paths().api_socket.display()
    );
    let vmm = match spawn_vmm(program, &args, tx) {
        Ok(w) => w,
        Err(e) => {
            let _ = daemon.stop(Duration::from_secs(2));
            return Err(e);
        }
    };
    loop {
        match rx.recv() {
            Ok(Event::Signal(sig)) => {
                vmm.signal(sig);
            }
            Ok(Event::Daemon(ev)) => return Ok(daemon_exited(ev, &mut daemon, &vmm, &rx)),
            Ok(Event::Vmm(ev)) => {
                if let Err(e) = daemon.stop(Duration::from_secs(2)) {
                    eprintln!("virtiofs-sandbox: stopping virtiofsd: {e}");
                }
                return Ok(ev.shell_code());
            }
            Err(_) => return Ok(1),
        }
    }
}

/// `run`'s answer to the daemon's exit, decided by its cause. A daemon that exited 0 because
/// its frontend closed the connection (or without saying why) was left by a VMM on its way
/// out: the VMM's own exit status is the result (a VMM still running
/// [`VMM_EXIT_AFTER_DISCONNECT`] later is killed). A daemon that failed, was killed, or was
/// stopped by a signal while the VMM runs took the guest's filesystem away: the VMM is killed
/// at once and `run` fails.
fn daemon_exited(
    ev: ExitEvent,
    daemon: &mut Daemon,
    vmm: &ChildWatch,
    rx: &mpsc::Receiver<Event>,
) -> i32 {
    let stop_daemon = |daemon: &mut Daemon| {
        if let Err(e) = daemon.stop(Duration::from_secs(1)) {
            eprintln!("virtiofs-sandbox: stopping virtiofsd: {e}");
        }
    };
    if let Some(v) = vmm.exit() {
        stop_daemon(daemon);
        return v.shell_code();
    }
    let cause = (ev.code == Some(0)).then(|| daemon.clean_exit_cause());
    let reason = match cause {
        Some(CleanExitCause::FrontendDisconnected | CleanExitCause::Unknown) => {
            let deadline = Instant::now() + VMM_EXIT_AFTER_DISCONNECT;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(Event::Signal(sig)) => {
                        vmm.signal(sig);
                    }
                    Ok(Event::Vmm(v)) => {
                        stop_daemon(daemon);
                        return v.shell_code();
                    }
                    Ok(Event::Daemon(_)) => {}
                    Err(_) => break,
                }
            }
            format!(
                "exited ({}, {}), but the VMM (pid {}) was still running {:?} later: taken \
                 for hung",
                ev.describe(),
                match cause {
                    Some(CleanExitCause::FrontendDisconnected) => "the VMM closed its connection",
                    _ => "no cause in its log",
                },
                vmm.pid(),
                VMM_EXIT_AFTER_DISCONNECT
            )
        }
        Some(CleanExitCause::Signal) => format!(
            "was stopped by a signal ({}) while the VMM was running",
            ev.describe()
        ),
        None => format!("exited ({}) while the VMM was running", ev.describe()),
    };
    vmm.signal(libc::SIGKILL);
    eprintln!(
        "virtiofs-sandbox: virtiofsd (pid {}) {reason}; VMM killed. Daemon log tail:\n{}",
        ev.pid,
        daemon.log_tail(20)
    );
    let code = vmm
        .wait_timeout(Duration::from_secs(5))
        .map(|e| e.shell_code())
        .unwrap_or(1);
    stop_daemon(daemon);
    if code == 0 {
        1
    } else {
        code
    }
}

fn wait_vmm_only(rx: &mpsc::Receiver<Event>, vmm: &ChildWatch) -> i32 {
    loop {
        match rx.recv() {
            Ok(Event::Signal(sig)) => {
                vmm.signal(sig);
            }
            Ok(Event::Vmm(ev)) => return ev.shell_code(),
            Ok(Event::Daemon(_)) => {}
            Err(_) => return 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn parse(args: &[&str]) -> LimitArgs {
        let mut v = vec!["virtiofs-sandbox", "limits", "pod"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v).unwrap().command {
            Cmd::Limits { limits, .. } => limits,
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn limit_flags_become_a_patch_of_the_buckets_given() {
        let gets = Cell::new(0);
        let current = || {
            gets.set(gets.get() + 1);
            Ok(json!({"bw": {"size": 7, "burst": 9}, "ops": {"size": 0, "burst": 0}}))
        };
        let u = parse(&[
            "--fs-bw-size=2M",
            "--fs-read-bw-size",
            "4Ki",
            "--fs-read-bw-burst=8Ki",
        ])
        .update(current)
        .unwrap();
        assert_eq!(gets.get(), 0, "no GET when every burst has its size");
        assert_eq!(
            serde_json::to_string(&u).unwrap(),
            r#"{"bw":{"size":2000000},"read_bw":{"size":4096,"burst":8192}}"#
        );
        // A burst alone keeps the current size (one GET for all buckets).
        let u = parse(&["--fs-bw-burst=1k"]).update(current).unwrap();
        assert_eq!(gets.get(), 1);
        assert_eq!(
            u.bw,
            Some(BucketUpdate {
                size: 7,
                burst: Some(1000)
            })
        );
        let e = parse(&["--fs-ops-burst=5"]).update(current).unwrap_err();
        assert!(e.to_string().contains("give --fs-ops-size too"), "{e}");
        assert!(parse(&[]).update(current).unwrap().is_empty());
        for bad in ["--fs-bw-size=-1", "--fs-ops-size=1.5", "--fs-bw-burst=10X"] {
            let v = ["virtiofs-sandbox", "limits", "pod", bad];
            assert!(Cli::try_parse_from(v).is_err(), "{bad}");
        }
    }
}
