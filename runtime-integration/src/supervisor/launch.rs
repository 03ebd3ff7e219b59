//! Spawning the daemon: its output, its socket (Go style: ours, passed as fd 3), its process
//! settings, its state file, then the wait for readiness.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rustix::process::{self, Signal};

use super::daemon::Daemon;
use super::logs::{log_tail, pipe, pump_log, Pump, DEFAULT_LOG_LIMIT};
use super::process::{proc_stat, reset_signal_mask, ChildWatch, ExitCallback};
use super::readiness::{wait_ready, ReadyBy, Target, Wait};
use super::state::{unix_now, write_state, SandboxPaths, SandboxState};
use crate::command::{daemon_args_with_api, CommandOptions, LaunchStyle, GO_LISTEN_FD};
use crate::config::VirtioFsConfig;
use crate::error::{Error, Result};

/// Options of [`super::Supervisor::start`].
#[derive(Clone, Debug)]
pub struct StartOptions {
    /// Launch style and `--xattr`.
    pub command: CommandOptions,
    /// rs style: how long to wait for readiness (default 10 s).
    pub ready_timeout: Duration,
    /// Go style: how long to watch for an early exit (default 300 ms; ends early when the
    /// daemon logs its ready line).
    pub settle: Duration,
    /// Let the daemon outlive this process: new session, and (with [`Self::log_pump`]) its
    /// output copied by a separate pump process.
    pub detach: bool,
    /// The command (argv) of a log pump process reading the daemon's output on stdin and
    /// appending it to the log file given as its last argument (the CLI uses its own hidden
    /// `__log-pump` subcommand). Only used when detached; without one a detached daemon
    /// writes its log file directly, and rotation does not happen.
    pub log_pump: Option<Vec<OsString>>,
    /// SIGKILL the daemon if the spawning thread's process dies (`PR_SET_PDEATHSIG`); only
    /// sensible when the spawning thread lives as long as the daemon (e.g. the main thread).
    pub die_with_parent: bool,
    /// Log rotation size (default 1 MiB).
    pub log_limit: u64,
    /// Give the daemon an HTTP control socket, `<sandbox dir>/api.sock` (`--api-socket`;
    /// default on).
    pub api_socket: bool,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions {
            command: CommandOptions::default(),
            ready_timeout: Duration::from_secs(10),
            settle: Duration::from_millis(300),
            detach: false,
            log_pump: None,
            die_with_parent: false,
            log_limit: DEFAULT_LOG_LIMIT,
            api_socket: true,
        }
    }
}

/// Spawns the daemon of sandbox `id` in its (created, opened) directory `dir` and waits
/// until it is ready.
pub(super) fn spawn(
    id: &str,
    cfg: &VirtioFsConfig,
    shared_dir: &Path,
    opts: &StartOptions,
    on_exit: Option<ExitCallback>,
    paths: &SandboxPaths,
    dir: &OwnedFd,
) -> Result<Daemon> {
    let style = opts.command.style;
    let api_socket = opts.api_socket.then_some(paths.api_socket.as_path());
    let args = daemon_args_with_api(cfg, shared_dir, &paths.socket, api_socket, &opts.command);
    if let Some(api) = api_socket {
        let _ = fs::remove_file(api);
    }

    // Output: a pipe to a pump (thread, or process when detached), or the file directly.
    let (daemon_out, mut pump): (File, Pump) = if opts.detach && opts.log_pump.is_none() {
        let f = crate::statedir::open_log(&paths.log)
            .map_err(Error::io(format!("opening {}", paths.log.display())))?;
        (f, Pump::None)
    } else {
        let (r, w) = pipe().map_err(Error::io("pipe"))?;
        let pump = if opts.detach {
            let argv = opts.log_pump.as_ref().expect("checked");
            let mut c = Command::new(&argv[0]);
            c.args(&argv[1..])
                .arg(&paths.log)
                .stdin(Stdio::from(r))
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            // SAFETY: async-signal-safe calls only.
            unsafe {
                c.pre_exec(|| {
                    reset_signal_mask();
                    let _ = process::setsid();
                    Ok(())
                });
            }
            let child = c
                .spawn()
                .map_err(Error::io(format!("starting the log pump {:?}", argv[0])))?;
            Pump::Process(child)
        } else {
            let (tx, rx) = mpsc::channel();
            let log = paths.log.clone();
            let limit = opts.log_limit;
            let input = File::from(r);
            std::thread::Builder::new()
                .name(format!("log-{id}"))
                .spawn(move || {
                    if let Err(e) = pump_log(input, &log, limit) {
                        log::warn!("{}: {e}", log.display());
                    }
                    let _ = tx.send(());
                })
                .map_err(Error::io("spawning the log thread"))?;
            Pump::Thread(rx)
        };
        (File::from(w), pump)
    };

    let listener = match style {
        LaunchStyle::Go => {
            let _ = fs::remove_file(&paths.socket);
            Some(
                UnixListener::bind(&paths.socket)
                    .map_err(Error::io(format!("binding {}", paths.socket.display())))?,
            )
        }
        LaunchStyle::Rs => {
            let _ = fs::remove_file(&paths.socket);
            let mut pidfile = paths.socket.as_os_str().to_owned();
            pidfile.push(".pid");
            let _ = fs::remove_file(pidfile);
            None
        }
    };
    let listen_fd = listener.as_ref().map(|l| l.as_raw_fd());

    let mut cmd = Command::new(&cfg.virtio_fs_daemon);
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(
            daemon_out
                .try_clone()
                .map_err(Error::io("duplicating the log descriptor"))?,
        )
        .stderr(daemon_out);
    let detach = opts.detach;
    let pdeath = opts.die_with_parent;
    // SAFETY: only async-signal-safe calls (sigprocmask, setsid, prctl, dup2, fcntl).
    unsafe {
        cmd.pre_exec(move || {
            reset_signal_mask();
            if detach {
                process::setsid()?;
            }
            if pdeath {
                let _ = process::set_parent_process_death_signal(Some(Signal::KILL));
            }
            if let Some(fd) = listen_fd {
                if fd == GO_LISTEN_FD {
                    if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                } else if libc::dup2(fd, GO_LISTEN_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(Error::io(format!(
        "starting {}",
        cfg.virtio_fs_daemon.display()
    )))?;
    drop(cmd); // closes our copies of the log pipe's write end
    drop(listener); // the daemon holds the listening socket now
    let pid = child.id();
    let start_time = proc_stat(pid).map(|(_, t)| t).unwrap_or(0);
    let watch = ChildWatch::spawn(child, on_exit);
    let state = SandboxState {
        sandbox_id: id.to_string(),
        pid,
        start_time,
        socket: paths.socket.clone(),
        api_socket: api_socket.map(Path::to_path_buf),
        log: paths.log.clone(),
        launch: style,
        daemon: cfg.virtio_fs_daemon.clone(),
        args,
        shared_dir: shared_dir.to_path_buf(),
        started_at: unix_now(),
    };
    let mut daemon = Daemon {
        state,
        paths: paths.clone(),
        watch,
        keep_running: false,
        finished: false,
        ready_by: ReadyBy::Settled,
        log_done: None,
    };
    if let Err(e) = write_state(dir, paths, &daemon.state) {
        daemon.kill_now();
        return Err(e);
    }

    let target = Target {
        style,
        settle: opts.settle,
        ready_timeout: opts.ready_timeout,
        log: &paths.log,
        socket: &paths.socket,
        api_socket,
    };
    match wait_ready(&daemon.watch, &target) {
        Wait::Ready(by) => daemon.ready_by = by,
        Wait::Exited(ev) => {
            pump.settle(Duration::from_secs(1));
            let output = log_tail(&paths.log, 30);
            daemon.finished = true;
            return Err(Error::DaemonExited {
                status: ev.describe(),
                output,
            });
        }
        Wait::TimedOut {
            deadline,
            api_ready,
        } => {
            daemon.kill_now();
            pump.settle(Duration::from_secs(1));
            let mut output = String::new();
            if !api_ready {
                output.push_str(&format!(
                    "(API socket {} not listening)\n",
                    paths.api_socket.display()
                ));
            }
            output.push_str(&log_tail(&paths.log, 30));
            return Err(Error::NotReady {
                timeout: deadline,
                output,
            });
        }
    }
    daemon.log_done = pump.release();
    log::info!(
        "sandbox {id}: virtiofsd pid {pid} ready on {} ({} style, {:?})",
        paths.socket.display(),
        style.as_str(),
        daemon.ready_by
    );
    Ok(daemon)
}
