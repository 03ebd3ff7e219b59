//! Process watching: a spawned child's exit noticed at once (pidfd), a recorded process's
//! liveness (pid + start time), and stopping one without ever signalling a reused pid.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rustix::event::{self, PollFd, PollFlags, Timespec};
use rustix::process::{self, Pid, PidfdFlags, Signal};
use serde::Serialize;

use crate::error::{Error, Result};

/// How a process ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExitEvent {
    /// Its pid.
    pub pid: u32,
    /// Exit code, if it exited normally.
    pub code: Option<i32>,
    /// Signal, if it was killed by one.
    pub signal: Option<i32>,
}

impl ExitEvent {
    fn from_status(pid: u32, st: ExitStatus) -> Self {
        ExitEvent {
            pid,
            code: st.code(),
            signal: st.signal(),
        }
    }

    /// "exit code N" / "killed by signal N" / "exited".
    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("exit code {c}"),
            (_, Some(s)) => format!("killed by signal {s}"),
            _ => "exited".into(),
        }
    }

    /// The shell's convention: the code, or 128 + signal.
    pub fn shell_code(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(c), _) => c,
            (_, Some(s)) => 128 + s,
            _ => 1,
        }
    }
}

/// A callback run (on the watcher thread) when a process exits.
pub type ExitCallback = Box<dyn FnOnce(ExitEvent) + Send + 'static>;

fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
    Ok(process::pidfd_open(pid, PidfdFlags::empty())?)
}

/// Polls a pidfd for the process's exit; true if it exited within `timeout`.
fn pidfd_wait(fd: &OwnedFd, timeout: Duration) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    let timeout = Timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    matches!(event::poll(&mut fds, Some(&timeout)), Ok(n) if n > 0) && !fds[0].revents().is_empty()
}

fn pidfd_signal(fd: &OwnedFd, sig: Signal) -> bool {
    process::pidfd_send_signal(fd, sig).is_ok()
}

/// A spawned child whose exit is noticed at once by a watcher thread (pidfd + poll, falling
/// back to polling `try_wait` every 10 ms), reaped, and reported to a callback. Signals are
/// only sent while the child is not yet reaped, so they can never hit a reused pid.
pub struct ChildWatch {
    pid: u32,
    child: Mutex<Option<Child>>,
    exit: Mutex<Option<ExitEvent>>,
    cv: Condvar,
}

impl std::fmt::Debug for ChildWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildWatch")
            .field("pid", &self.pid)
            .field("exit", &self.exit())
            .finish()
    }
}

impl ChildWatch {
    /// Starts watching `child`; `on_exit` runs on the watcher thread right after it is reaped.
    pub fn spawn(child: Child, on_exit: Option<ExitCallback>) -> Arc<ChildWatch> {
        let pid = child.id();
        let pidfd = pidfd_open(pid).ok();
        let w = Arc::new(ChildWatch {
            pid,
            child: Mutex::new(Some(child)),
            exit: Mutex::new(None),
            cv: Condvar::new(),
        });
        let w2 = w.clone();
        std::thread::Builder::new()
            .name(format!("watch-{pid}"))
            .spawn(move || {
                let ev = loop {
                    match &pidfd {
                        Some(fd) => {
                            pidfd_wait(fd, Duration::from_secs(1));
                        }
                        None => std::thread::sleep(Duration::from_millis(10)),
                    }
                    let mut g = w2.child.lock().unwrap();
                    match g.as_mut().map(|c| c.try_wait()) {
                        Some(Ok(Some(st))) => {
                            *g = None;
                            break ExitEvent::from_status(pid, st);
                        }
                        Some(Ok(None)) => continue,
                        Some(Err(e)) => {
                            log::warn!("waiting for pid {pid}: {e}");
                            *g = None;
                            break ExitEvent {
                                pid,
                                code: None,
                                signal: None,
                            };
                        }
                        None => return,
                    }
                };
                *w2.exit.lock().unwrap() = Some(ev.clone());
                w2.cv.notify_all();
                if let Some(cb) = on_exit {
                    cb(ev);
                }
            })
            .expect("spawn watcher thread");
        w
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `sig` if the child has not been reaped yet; returns whether it was sent.
    pub fn signal(&self, sig: i32) -> bool {
        let g = self.child.lock().unwrap();
        if g.is_some() {
            // kill(2) on a child we have not reaped: its pid cannot be reused.
            let pid = i32::try_from(self.pid).ok().and_then(Pid::from_raw);
            match (pid, Signal::from_named_raw(sig)) {
                (Some(pid), Some(sig)) => process::kill_process(pid, sig).is_ok(),
                _ => false,
            }
        } else {
            false
        }
    }

    /// How the child exited, if it did.
    pub fn exit(&self) -> Option<ExitEvent> {
        self.exit.lock().unwrap().clone()
    }

    /// Waits up to `timeout` for the exit.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<ExitEvent> {
        let deadline = Instant::now() + timeout;
        let mut g = self.exit.lock().unwrap();
        while g.is_none() {
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            g = self.cv.wait_timeout(g, deadline - now).unwrap().0;
        }
        g.clone()
    }
}

/// Watches a process that is not our child (e.g. a daemon started by `virtiofs-sandbox
/// start`) and runs `on_exit` when it exits. Fails if the pid is not the recorded process.
pub fn watch_pid(
    pid: u32,
    start_time: u64,
    on_exit: ExitCallback,
) -> Result<std::thread::JoinHandle<()>> {
    let fd = pidfd_open(pid).map_err(Error::io(format!("pidfd_open({pid})")))?;
    if liveness(pid, start_time) != Liveness::Running {
        return Err(Error::State {
            path: PathBuf::from(format!("/proc/{pid}")),
            message: "not the recorded running process".into(),
        });
    }
    Ok(std::thread::spawn(move || {
        while !pidfd_wait(&fd, Duration::from_secs(3600)) {}
        on_exit(ExitEvent {
            pid,
            code: None,
            signal: None,
        });
    }))
}

/// `(state, start time)` of a process from `/proc/<pid>/stat`.
pub fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let state = f.first()?.chars().next()?;
    let start = f.get(19)?.parse().ok()?;
    Some((state, start))
}

/// What a recorded `(pid, start time)` refers to now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Liveness {
    /// The recorded process is running.
    Running,
    /// No such process, or it exited (a zombie not yet reaped by its parent counts as exited).
    Gone,
    /// The pid now belongs to another process.
    PidReused,
}

/// Checks a recorded process.
pub fn liveness(pid: u32, start_time: u64) -> Liveness {
    match proc_stat(pid) {
        None => Liveness::Gone,
        Some((_, st)) if st != start_time => Liveness::PidReused,
        Some(('Z' | 'X' | 'x', _)) => Liveness::Gone,
        Some(_) => Liveness::Running,
    }
}

/// How [`super::Supervisor::stop`] / [`super::Daemon::stop`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopOutcome {
    /// It exited after SIGTERM.
    Stopped,
    /// It needed SIGKILL after the grace period.
    Killed,
    /// It had already exited; files removed.
    AlreadyExited,
    /// The state pointed at a dead or reused pid; nothing was signalled; files removed.
    Stale,
    /// No such sandbox.
    NotFound,
}

/// Signals a recorded process through a pidfd (after re-checking its start time, so a reused
/// pid is never signalled): SIGTERM, up to `grace`, then SIGKILL and up to 5 s more.
pub fn terminate(pid: u32, start_time: u64, grace: Duration) -> Result<StopOutcome> {
    match liveness(pid, start_time) {
        Liveness::Gone => return Ok(StopOutcome::AlreadyExited),
        Liveness::PidReused => return Ok(StopOutcome::Stale),
        Liveness::Running => {}
    }
    let Ok(fd) = pidfd_open(pid) else {
        return Ok(StopOutcome::AlreadyExited);
    };
    // The pidfd pins the process we just opened; check it is still the recorded one.
    match liveness(pid, start_time) {
        Liveness::Gone => return Ok(StopOutcome::AlreadyExited),
        Liveness::PidReused => return Ok(StopOutcome::Stale),
        Liveness::Running => {}
    }
    let exited = |fd: &OwnedFd, t: Duration| {
        pidfd_wait(fd, t) || liveness(pid, start_time) != Liveness::Running
    };
    pidfd_signal(&fd, Signal::TERM);
    if exited(&fd, grace) {
        return Ok(StopOutcome::Stopped);
    }
    pidfd_signal(&fd, Signal::KILL);
    if exited(&fd, Duration::from_secs(5)) {
        return Ok(StopOutcome::Killed);
    }
    Err(Error::Io {
        context: format!("stopping pid {pid}"),
        source: io::Error::new(io::ErrorKind::TimedOut, "still alive 5 s after SIGKILL"),
    })
}

/// Resets the signal mask in a child (a parent may block signals it handles with sigwait).
///
/// # Safety
/// Only async-signal-safe calls; to be used in `pre_exec`.
pub unsafe fn reset_signal_mask() {
    let mut set: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut set);
    libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::sync::mpsc;

    #[test]
    fn proc_stat_of_self() {
        let (state, start) = proc_stat(std::process::id()).unwrap();
        assert!(matches!(state, 'R' | 'S'), "{state}");
        assert_eq!(liveness(std::process::id(), start), Liveness::Running);
        assert_eq!(liveness(std::process::id(), start + 1), Liveness::PidReused);
        assert_eq!(liveness(u32::MAX - 1, start), Liveness::Gone);
    }

    #[test]
    fn child_watch_reports_exit_and_callback() {
        let child = Command::new("sh").args(["-c", "exit 7"]).spawn().unwrap();
        let (tx, rx) = mpsc::channel();
        let w = ChildWatch::spawn(child, Some(Box::new(move |e| tx.send(e).unwrap())));
        let ev = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(ev.code, Some(7));
        assert_eq!(
            w.wait_timeout(Duration::from_secs(1)).unwrap().shell_code(),
            7
        );
        assert!(!w.signal(libc::SIGTERM), "no signal after reaping");
    }
}
