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
//! virtiofs-sandbox metrics --listen ADDR:PORT [--state-dir DIR] [--timeout SECS] [--config FILE]...
//! virtiofs-sandbox install --config FILE [--hypervisor NAME]... [--daemon-path PATH]
//!                          [--daemon-source PATH] [--dry-run] [--in-place] [--enable-annotations]
//!                          [--fs-{bw,read-bw,write-bw,ops}-{size,burst}=Q]...
//! virtiofs-sandbox uninstall --config FILE [--daemon-path PATH]
//! ```
//!
//! `install` and `uninstall`: see [`crate::install`].
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
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::json;

mod group;
mod install;
mod limit_args;
mod run;

pub use install::{InstallArgs, UninstallArgs};
pub use limit_args::LimitArgs;
pub use run::VMM_EXIT_AFTER_DISCONNECT;

use crate::annotations;
use crate::command::{CommandOptions, LaunchStyle};
use crate::config::VirtioFsConfig;
use crate::error::{Error, Result};
use crate::supervisor::{StartOptions, Supervisor, DEFAULT_LOG_LIMIT, DEFAULT_STATE_DIR};
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
    /// Show a node group (--fs-group file) as JSON; --fs-group-* change its live budget.
    Group(group::GroupCmd),
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
        /// A Kata configuration whose daemon paths are reported (which binary each holds).
        #[arg(long = "config", value_name = "FILE")]
        configs: Vec<PathBuf>,
    },
    /// Install this daemon into a Kata configuration (a drop-in in config.d/; undoable).
    Install(InstallArgs),
    /// Undo `install`: restore every file it changed, unless someone changed it since.
    Uninstall(UninstallArgs),
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
    /// Request queues of the virtio-fs device (QEMU `num-request-queues`, Cloud Hypervisor
    /// `num_queues`; 1 as Kata). Guests use more than one from Linux 6.11 on.
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=16))]
    pub request_queues: u32,
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
        Cmd::Group(a) => Ok(group::run(a)),
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
        Cmd::Run { start, vmm } => run::run(start, vmm),
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
        Cmd::Install(a) => install::run_install(a),
        Cmd::Uninstall(a) => install::run_uninstall(a),
        Cmd::Metrics {
            listen,
            state_dir,
            timeout,
            configs,
        } => {
            let timeout = Duration::from_secs_f64(timeout.clamp(0.01, 3600.0));
            crate::metrics::serve(&listen, &state_dir, timeout, &configs, |addr| {
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
            request_queues: a.request_queues,
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
