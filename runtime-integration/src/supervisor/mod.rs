//! One daemon per sandbox: state directory, spawn, readiness, exit notice, stop.
//!
//! Layout: `<state-dir>/<sandbox-id>/` holds `virtiofsd.sock` (the vhost-user socket),
//! `api.sock` (the daemon's HTTP control socket, `--api-socket`; see [`crate::api`]),
//! `virtiofsd.log` (the daemon's stdout+stderr, rotated to `virtiofsd.log.1` at
//! [`DEFAULT_LOG_LIMIT`]) and `state.json` ([`SandboxState`]: pid, the process start time from
//! `/proc/<pid>/stat` to detect pid reuse, socket, argv). The state directory must be the
//! running user's and writable by nobody else, and nothing in it is followed through a
//! symbolic link ([`crate::statedir`]).
//!
//! Readiness:
//! * Go style: we bind and listen on the socket ourselves and pass it as fd 3, so the VMM can
//!   connect at once. We still wait up to [`StartOptions::settle`] (or until the daemon logs
//!   its ready line) and report an early exit with the daemon's last output.
//! * rs style: ready when the log shows [`READY_LINE`] or the socket is listening (checked with
//!   [`socket_listening`], without connecting: the daemon serves a single connection), within
//!   [`StartOptions::ready_timeout`]; otherwise the daemon is killed and the error carries its
//!   last output.
//! * Both styles, with [`StartOptions::api_socket`] (the default): also until the API socket
//!   is listening, within [`StartOptions::ready_timeout`], so `limits`/`stats` work as soon as
//!   `start` returns.
//!
//! Exit notice: a watcher thread polls a pidfd (`pidfd_open`) and reaps the child at once,
//! then runs the owner's callback. Stop: SIGTERM, a grace period, SIGKILL, then the socket and
//! state are removed; stopping twice, or stopping a sandbox whose daemon is gone, is fine. A
//! state file whose pid is dead or belongs to another process (start time differs) is reported
//! as stale and never signalled.

mod daemon;
mod launch;
mod logs;
mod process;
mod readiness;
mod state;

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use daemon::Daemon;
pub use launch::StartOptions;
pub use logs::{
    clean_exit_cause, log_tail, pump_log, CleanExitCause, DEFAULT_LOG_LIMIT, DISCONNECT_LINES,
};
pub use process::{
    liveness, proc_stat, reset_signal_mask, terminate, watch_pid, ChildWatch, ExitCallback,
    ExitEvent, Liveness, StopOutcome,
};
pub use readiness::{socket_listening, ReadyBy, READY_LINE};
pub use state::{
    validate_sandbox_id, SandboxPaths, SandboxState, Status, API_SOCKET_NAME, DEFAULT_STATE_DIR,
    LOG_NAME, MAX_ID_LEN, SOCKET_NAME, STATE_NAME,
};

use crate::command::API_SOCKET_FLAG;
use crate::config::VirtioFsConfig;
use crate::error::{Error, Result};
use crate::statedir::{create_sandbox_dir, open_sandbox_dir, open_state_dir, SandboxDir};
use state::{read_state_in, remove_files};

/// Manages the sandboxes below one state directory.
#[derive(Clone, Debug)]
pub struct Supervisor {
    state_dir: PathBuf,
}

impl Supervisor {
    /// A supervisor for `state_dir` (created on first start).
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Supervisor {
            state_dir: state_dir.into(),
        }
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The files of sandbox `id` (validated).
    pub fn paths(&self, id: &str) -> Result<SandboxPaths> {
        validate_sandbox_id(id)?;
        let dir = self.state_dir.join(id);
        Ok(SandboxPaths {
            socket: dir.join(SOCKET_NAME),
            api_socket: dir.join(API_SOCKET_NAME),
            log: dir.join(LOG_NAME),
            state: dir.join(STATE_NAME),
            dir,
        })
    }

    /// Opens the state directory (see [`crate::statedir`] for the checks); `None` if it does
    /// not exist and `create` is false.
    fn state_fd(&self, create: bool) -> Result<Option<OwnedFd>> {
        open_state_dir(&self.state_dir, create)
    }

    /// Reads a sandbox's state file (`None` if absent). A state directory that fails its
    /// checks is an error; so is a symbolic link at the sandbox directory or the state file
    /// (not followed).
    pub fn read_state(&self, id: &str) -> Result<Option<SandboxState>> {
        let p = self.paths(id)?;
        match self.state_fd(false)? {
            None => Ok(None),
            Some(state) => read_state_in(&state, id, &p),
        }
    }

    /// Starts the daemon for sandbox `id` serving `shared_dir` with the (annotated)
    /// configuration `cfg`. `on_exit` runs when the daemon exits (also after a stop).
    pub fn start(
        &self,
        id: &str,
        cfg: &VirtioFsConfig,
        shared_dir: &Path,
        opts: &StartOptions,
        on_exit: Option<ExitCallback>,
    ) -> Result<Daemon> {
        let paths = self.paths(id)?;
        if let Some(reason) = cfg.no_daemon_reason() {
            return Err(Error::NotSupported(reason));
        }
        if !shared_dir.is_dir() {
            return Err(Error::Io {
                context: format!("shared directory {}", shared_dir.display()),
                source: io::Error::new(io::ErrorKind::NotFound, "not a directory"),
            });
        }
        if opts.api_socket
            && cfg
                .virtio_fs_extra_args
                .iter()
                .any(|a| a.split('=').next() == Some(API_SOCKET_FLAG))
        {
            return Err(Error::NotSupported(format!(
                "{API_SOCKET_FLAG} in virtio_fs_extra_args: every sandbox gets its own API socket ({}/<id>/{API_SOCKET_NAME})",
                self.state_dir.display()
            )));
        }
        if paths.socket.as_os_str().len() >= 108 {
            return Err(Error::InvalidSandboxId {
                id: id.into(),
                reason: format!(
                    "socket path {} is longer than a unix socket path may be (107 bytes); use a shorter --state-dir or id",
                    paths.socket.display()
                ),
            });
        }
        let state = self.state_fd(true)?.ok_or_else(|| Error::StateDir {
            path: self.state_dir.clone(),
            message: "vanished after it was created".into(),
        })?;
        let create = || {
            create_sandbox_dir(&state, id)
                .map_err(Error::io(format!("creating {}", paths.dir.display())))
        };
        match create_sandbox_dir(&state, id) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                match read_state_in(&state, id, &paths) {
                    Ok(Some(st)) if liveness(st.pid, st.start_time) == Liveness::Running => {
                        return Err(Error::AlreadyRunning {
                            id: id.into(),
                            pid: st.pid,
                        })
                    }
                    other => {
                        if let Err(e) = other {
                            log::warn!("sandbox {id}: {e}");
                        }
                        log::info!(
                            "sandbox {id}: removing stale state in {}",
                            paths.dir.display()
                        );
                        remove_files(&paths);
                        create()?;
                    }
                }
            }
            Err(e) => return Err(Error::io(format!("creating {}", paths.dir.display()))(e)),
        }
        let dir = match open_sandbox_dir(&state, id, &paths.dir)? {
            SandboxDir::Dir(fd) => fd,
            _ => {
                return Err(Error::State {
                    path: paths.dir.clone(),
                    message: "replaced while starting".into(),
                })
            }
        };
        let result = launch::spawn(id, cfg, shared_dir, opts, on_exit, &paths, &dir);
        if result.is_err() {
            remove_files(&paths);
        }
        result
    }

    /// trusted (a symbolic link, not followed; unreadable), is removed without signalling. A
    /// state directory that fails its checks is an error and nothing is touched.
    pub fn stop(&self, id: &str, grace: Duration) -> Result<StopOutcome> {
        let paths = self.paths(id)?;
        let st = match self.read_state(id) {
            Ok(Some(st)) => st,
            Ok(None) => {
                let existed = fs::symlink_metadata(&paths.dir).is_ok();
                remove_files(&paths);
                return Ok(if existed {
                    StopOutcome::Stale
                } else {
                    StopOutcome::NotFound
                });
            }
            Err(e @ Error::StateDir { .. }) => return Err(e),
            Err(e) => {
                log::warn!("{e}; removing the sandbox directory");
                remove_files(&paths);
                return Ok(StopOutcome::Stale);
            }
        };
        let outcome = terminate(st.pid, st.start_time, grace)?;
        remove_files(&paths);
        Ok(outcome)
    }

    /// The status of sandbox `id`.
    pub fn status(&self, id: &str) -> Result<Status> {
        let paths = self.paths(id)?;
        let mut s = Status {
            sandbox_id: id.to_string(),
            state: "not-found".into(),
            pid: None,
            socket: None,
            api_socket: None,
            log: None,
            args: Vec::new(),
            launch: None,
            started_at: None,
            detail: None,
        };
        match self.read_state(id) {
            Err(e @ Error::StateDir { .. }) => return Err(e),
            Ok(None) => {
                if fs::symlink_metadata(&paths.dir).is_ok() {
                    s.state = "gone".into();
                    s.detail = Some("sandbox directory without a state file".into());
                }
            }
            Err(e) => {
                s.state = "corrupt".into();
                s.detail = Some(e.to_string());
            }
            Ok(Some(st)) => {
                let l = liveness(st.pid, st.start_time);
                s.state = match l {
                    Liveness::Running => "running",
                    Liveness::Gone => "gone",
                    Liveness::PidReused => "pid-reused",
                }
                .into();
                s.detail = match l {
                    Liveness::Running => None,
                    Liveness::Gone => {
                        Some(format!("daemon pid {} has exited (stale state)", st.pid))
                    }
                    Liveness::PidReused => Some(format!(
                        "pid {} now belongs to another process (start time differs; stale state)",
                        st.pid
                    )),
                };
                s.pid = Some(st.pid);
                s.socket = Some(st.socket);
                s.api_socket = st.api_socket;
                s.log = Some(st.log);
                s.args = st.args;
                s.launch = Some(st.launch);
                s.started_at = Some(st.started_at);
            }
        }
        Ok(s)
    }

    /// A client for the control API of sandbox `id`, whose daemon must be running and have
    /// an API socket.
    pub fn api(&self, id: &str) -> Result<crate::api::Client> {
        let st = self.status(id)?;
        if st.state != "running" {
            return Err(Error::NotRunning {
                id: id.into(),
                state: match st.detail {
                    Some(d) => format!("{}: {d}", st.state),
                    None => st.state,
                },
            });
        }
        let socket = st.api_socket.ok_or_else(|| Error::NotRunning {
            id: id.into(),
            state: "running without an API socket".into(),
        })?;
        Ok(crate::api::Client::new(socket))
    }

    /// The status of every sandbox directory below the state directory (sorted by id).
    pub fn list(&self) -> Result<Vec<Status>> {
        if self.state_fd(false)?.is_none() {
            return Ok(Vec::new());
        }
        let rd = match fs::read_dir(&self.state_dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(Error::io(format!("reading {}", self.state_dir.display()))(
                    e,
                ))
            }
        };
        let mut ids: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| validate_sandbox_id(n).is_ok())
            .collect();
        ids.sort();
        ids.iter().map(|id| self.status(id)).collect()
    }
}
