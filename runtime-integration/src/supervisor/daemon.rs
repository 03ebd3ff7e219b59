//! The handle of a started daemon: its state, its exit, its log, stopping it.

use std::io;
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use rustix::process::Signal;

use super::logs::{clean_exit_cause, log_tail, CleanExitCause};
use super::process::{ChildWatch, ExitEvent, StopOutcome};
use super::readiness::ReadyBy;
use super::state::{remove_files, SandboxPaths, SandboxState};
use crate::error::{Error, Result};

/// A daemon started by [`super::Supervisor::start`]. Dropping it stops the daemon (unless
/// [`Daemon::detach`]ed).
#[derive(Debug)]
pub struct Daemon {
    pub(super) state: SandboxState,
    pub(super) paths: SandboxPaths,
    pub(super) watch: Arc<ChildWatch>,
    pub(super) keep_running: bool,
    pub(super) finished: bool,
    pub(super) ready_by: ReadyBy,
    /// The in-process log pump's end-of-input notice (not for a detached daemon).
    pub(super) log_done: Option<mpsc::Receiver<()>>,
}

impl Daemon {
    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.state.pid
    }

    /// The vhost-user socket.
    pub fn socket(&self) -> &Path {
        &self.paths.socket
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.paths.log
    }

    /// The recorded state.
    pub fn state(&self) -> &SandboxState {
        &self.state
    }

    /// The sandbox's files.
    pub fn paths(&self) -> &SandboxPaths {
        &self.paths
    }

    /// How the daemon exited, if it did.
    pub fn exit(&self) -> Option<ExitEvent> {
        self.watch.exit()
    }

    /// Waits up to `timeout` for the daemon to exit.
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitEvent> {
        self.watch.wait_timeout(timeout)
    }

    /// Sends a signal (only while the daemon has not been reaped).
    pub fn signal(&self, sig: i32) -> bool {
        self.watch.signal(sig)
    }

    /// The last lines of the daemon's log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.paths.log, lines)
    }

    /// What showed that the daemon was ready.
    pub fn ready_by(&self) -> ReadyBy {
        self.ready_by
    }

    /// Waits up to `timeout` until the log holds everything the daemon (and anything holding
    /// its output) wrote, i.e. the in-process pump reached the end of its input. True when it
    /// did (at once for a daemon without an in-process pump).
    pub fn wait_log_complete(&mut self, timeout: Duration) -> bool {
        match &self.log_done {
            None => true,
            Some(rx) => match rx.recv_timeout(timeout) {
                Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.log_done = None;
                    true
                }
                Err(mpsc::RecvTimeoutError::Timeout) => false,
            },
        }
    }

    /// Why the daemon exited with status 0, from its complete log (waits up to 1 s for the
    /// log pump to drain).
    pub fn clean_exit_cause(&mut self) -> CleanExitCause {
        if !self.wait_log_complete(Duration::from_secs(1)) {
            log::warn!(
                "sandbox {}: the daemon's log is still open 1 s after its exit",
                self.state.sandbox_id
            );
        }
        clean_exit_cause(&log_tail(&self.paths.log, 50))
    }

    pub(super) fn kill_now(&mut self) {
        self.watch.signal(Signal::KILL.as_raw());
        self.watch.wait_timeout(Duration::from_secs(5));
        self.finished = true;
    }

    /// Stops the daemon (SIGTERM, `grace`, SIGKILL) and removes the sandbox directory.
    /// Calling it again is harmless.
    pub fn stop(&mut self, grace: Duration) -> Result<StopOutcome> {
        let outcome = if self.finished || self.watch.exit().is_some() {
            StopOutcome::AlreadyExited
        } else {
            self.watch.signal(Signal::TERM.as_raw());
            if self.watch.wait_timeout(grace).is_some() {
                StopOutcome::Stopped
            } else {
                self.watch.signal(Signal::KILL.as_raw());
                if self.watch.wait_timeout(Duration::from_secs(5)).is_none() {
                    return Err(Error::Io {
                        context: format!("stopping virtiofsd pid {}", self.pid()),
                        source: io::Error::new(
                            io::ErrorKind::TimedOut,
                            "still alive 5 s after SIGKILL",
                        ),
                    });
                }
                StopOutcome::Killed
            }
        };
        self.finished = true;
        remove_files(&self.paths);
        Ok(outcome)
    }

    /// Leaves the daemon running after this handle is gone (for `virtiofs-sandbox start`).
    pub fn detach(mut self) -> SandboxState {
        self.keep_running = true;
        self.state.clone()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if !self.keep_running && !self.finished {
            let _ = self.stop(Duration::from_secs(1));
        }
    }
}
