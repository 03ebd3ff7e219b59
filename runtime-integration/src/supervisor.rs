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

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::command::{
    daemon_args_with_api, CommandOptions, LaunchStyle, API_SOCKET_FLAG, GO_LISTEN_FD,
};
use crate::config::VirtioFsConfig;
use crate::error::{Error, Result};
use crate::statedir::{
    create_sandbox_dir, open_sandbox_dir, open_state_dir, read_no_follow, SandboxDir,
};

/// The socket's file name in the sandbox directory.
pub const SOCKET_NAME: &str = "virtiofsd.sock";
/// The API socket's file name in the sandbox directory.
pub const API_SOCKET_NAME: &str = "api.sock";
/// The log's file name in the sandbox directory.
pub const LOG_NAME: &str = "virtiofsd.log";
/// The state file's name in the sandbox directory.
pub const STATE_NAME: &str = "state.json";
/// The line upstream virtiofsd (and ours) logs when it listens (runtime-rs waits for it).
pub const READY_LINE: &str = "Waiting for vhost-user socket connection";
/// Lines the daemon logs when it exits because its frontend (the VMM) closed the connection:
/// ours, and upstream virtiofsd's.
pub const DISCONNECT_LINES: [&str; 2] = ["frontend disconnected", "Client disconnected"];
/// Log size at which `virtiofsd.log` is rotated to `virtiofsd.log.1`.
pub const DEFAULT_LOG_LIMIT: u64 = 1 << 20;
/// Longest accepted sandbox id.
pub const MAX_ID_LEN: usize = 128;
/// Default state directory of the CLI.
pub const DEFAULT_STATE_DIR: &str = "/run/virtiofs-sandbox";

/// Checks that `id` can name a directory: 1..=128 characters of `[A-Za-z0-9._-]`, starting with
/// a letter or digit (so no `/`, no `.`/`..`, no hidden names).
pub fn validate_sandbox_id(id: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::InvalidSandboxId {
            id: id.to_string(),
            reason: reason.to_string(),
        })
    };
    if id.is_empty() {
        return bad("empty");
    }
    if id.len() > MAX_ID_LEN {
        return bad(&format!("longer than {MAX_ID_LEN} characters"));
    }
    if id.contains('/') {
        return bad("contains '/'");
    }
    if id.contains("..") {
        return bad("contains '..'");
    }
    if !id.as_bytes()[0].is_ascii_alphanumeric() {
        return bad("must start with a letter or digit");
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return bad(&format!(
            "character {c:?} is not allowed (only A-Z a-z 0-9 . _ -)"
        ));
    }
    Ok(())
}

/// What `state.json` records about a running daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxState {
    /// The sandbox id.
    pub sandbox_id: String,
    /// The daemon's pid.
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat` (clock ticks since boot) at start: a reused pid has
    /// another value.
    pub start_time: u64,
    /// The vhost-user socket.
    pub socket: PathBuf,
    /// The daemon's HTTP control socket (absent in states written without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_socket: Option<PathBuf>,
    /// The daemon's log.
    pub log: PathBuf,
    /// The launch style.
    pub launch: LaunchStyle,
    /// The daemon binary.
    pub daemon: PathBuf,
    /// The daemon's arguments (without argv\[0\]).
    pub args: Vec<String>,
    /// The shared directory.
    pub shared_dir: PathBuf,
    /// Seconds since the Unix epoch at start.
    pub started_at: u64,
}

/// The files of one sandbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SandboxPaths {
    /// `<state-dir>/<id>`
    pub dir: PathBuf,
    /// The vhost-user socket.
    pub socket: PathBuf,
    /// The daemon's HTTP control socket (used when [`StartOptions::api_socket`] is set).
    pub api_socket: PathBuf,
    /// The daemon log.
    pub log: PathBuf,
    /// The state file.
    pub state: PathBuf,
}

/// What showed that a daemon's vhost-user side was ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadyBy {
    /// The daemon logged [`READY_LINE`].
    LogLine,
    /// rs style: the socket was listening (in `/proc/net/unix`) before the line was read.
    Listening,
    /// Go style: [`StartOptions::settle`] passed without an exit or the line (a daemon that
    /// does not log it, e.g. at `--log-level=warn`).
    Settled,
}

/// Why a daemon that exited with status 0 stopped, read from the end of its log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CleanExitCause {
    /// Its frontend closed the vhost-user connection (one of [`DISCONNECT_LINES`]).
    FrontendDisconnected,
    /// It was told to stop by a signal (`signal N: exiting`).
    Signal,
    /// The log does not say (e.g. a log level above info).
    Unknown,
}

/// Reads the cause of a clean exit from a log text: the last of the daemon's exit lines wins.
pub fn clean_exit_cause(log: &str) -> CleanExitCause {
    log.lines()
        .rev()
        .find_map(|l| {
            if DISCONNECT_LINES.iter().any(|d| l.contains(d)) {
                Some(CleanExitCause::FrontendDisconnected)
            } else if l.contains("signal ") && l.contains(": exiting") {
                Some(CleanExitCause::Signal)
            } else {
                None
            }
        })
        .unwrap_or(CleanExitCause::Unknown)
}

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

fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: plain syscall; the returned descriptor is owned by us.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        None
    } else {
        // SAFETY: a fresh descriptor from the kernel.
        Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }
}

/// Polls a pidfd for the process's exit; true if it exited within `timeout`.
fn pidfd_wait(fd: &OwnedFd, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    n > 0 && p.revents != 0
}

fn pidfd_signal(fd: &OwnedFd, sig: i32) -> bool {
    // SAFETY: plain syscall on our pidfd.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    r == 0
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
        let pidfd = pidfd_open(pid);
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
            // SAFETY: kill(2) on a child we have not reaped (its pid cannot be reused).
            unsafe { libc::kill(self.pid as libc::pid_t, sig) == 0 }
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
    let fd = pidfd_open(pid).ok_or_else(|| Error::Io {
        context: format!("pidfd_open({pid})"),
        source: io::Error::last_os_error(),
    })?;
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

/// Whether the unix socket file at `path` has a listening socket behind it, without
/// connecting to it: a listening socket of this network namespace bound to that very file
/// (device and inode, from the kernel's unix sock_diag), so a socket bound under another name
/// and renamed into place (as the daemon does) counts, and a stale file does not.
pub fn socket_listening(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const UDIAG_SHOW_VFS: u32 = 2;
    const UNIX_DIAG_VFS: u16 = 1;
    const TCP_LISTEN: u32 = 10;
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    let Ok(md) = fs::symlink_metadata(path) else {
        return false;
    };
    // SAFETY: a new netlink socket, owned by `sock` from here on.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return false;
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // nlmsghdr (16 bytes), then unix_diag_req: family, protocol, pad, states, ino, show,
    // cookie[2].
    let mut req = Vec::with_capacity(40);
    req.extend(40u32.to_ne_bytes());
    req.extend(SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend(((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    req.extend([0u8; 8]);
    req.extend([libc::AF_UNIX as u8, 0, 0, 0]);
    req.extend((1u32 << TCP_LISTEN).to_ne_bytes());
    req.extend(0u32.to_ne_bytes());
    req.extend(UDIAG_SHOW_VFS.to_ne_bytes());
    req.extend([0u8; 8]);
    // SAFETY: send(2) of our buffer on our socket (to the kernel: no address needed).
    if unsafe { libc::send(sock.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
        return false;
    }
    let u16_at = |b: &[u8], i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
    let u32_at = |b: &[u8], i: usize| u32::from_ne_bytes(b[i..i + 4].try_into().unwrap());
    let mut buf = vec![0u8; 32 << 10];
    loop {
        // SAFETY: recv(2) into our buffer.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        let Ok(n) = usize::try_from(n) else {
            return false;
        };
        let mut msgs = &buf[..n];
        while msgs.len() >= 16 {
            let len = (u32_at(msgs, 0) as usize).min(msgs.len());
            match u16_at(msgs, 4) {
                NLMSG_DONE | NLMSG_ERROR => return false,
                _ if len < 16 => return false,
                _ => {}
            }
            // unix_diag_msg (16 bytes), then attributes: (len u16, type u16, payload), 4-aligned.
            let mut attrs = msgs.get(32..len).unwrap_or_default();
            while attrs.len() >= 4 {
                let alen = (u16_at(attrs, 0) as usize).clamp(4, attrs.len());
                if u16_at(attrs, 2) == UNIX_DIAG_VFS && alen >= 12 {
                    // unix_diag_vfs: inode (its low 32 bits), then the device in the kernel's
                    // encoding.
                    let (ino, kdev) = (u32_at(attrs, 4), u32_at(attrs, 8));
                    let dev = libc::makedev(kdev >> 20, kdev & 0xf_ffff);
                    if ino == md.ino() as u32 && dev == md.dev() {
                        return true;
                    }
                }
                attrs = &attrs[((alen + 3) & !3).min(attrs.len())..];
            }
            msgs = &msgs[((len + 3) & !3).min(msgs.len())..];
        }
    }
}

/// Copies `input` to `path`, rotating to `<path>.1` when the file would exceed `limit` bytes;
/// returns at end of input. Used by the in-process pump thread and the CLI's `__log-pump`.
pub fn pump_log(mut input: impl Read, path: &Path, limit: u64) -> io::Result<()> {
    let open = || crate::statedir::open_log(path);
    let mut out = open()?;
    let mut size = out.metadata()?.len();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mut chunk = &buf[..n];
        if size + chunk.len() as u64 > limit && size > 0 {
            let mut rotated = path.as_os_str().to_owned();
            rotated.push(".1");
            fs::rename(path, &rotated)?;
            out = open()?;
            size = 0;
        }
        if chunk.len() as u64 > limit {
            chunk = &chunk[chunk.len() - limit as usize..];
        }
        out.write_all(chunk)?;
        size += chunk.len() as u64;
    }
}

/// The last `lines` lines of a log and its rotated predecessor.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let mut rotated = path.as_os_str().to_owned();
    rotated.push(".1");
    let mut all = read_no_follow(Path::new(&rotated)).unwrap_or_default();
    all.extend(read_no_follow(path).unwrap_or_default());
    let text = String::from_utf8_lossy(&all);
    let v: Vec<&str> = text.lines().collect();
    let tail = v[v.len().saturating_sub(lines)..].join("\n");
    if tail.is_empty() {
        "(no output)".into()
    } else {
        tail
    }
}

/// Options of [`Supervisor::start`].
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

/// How [`Supervisor::stop`] / [`Daemon::stop`] ended.
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

/// A sandbox's state as seen by [`Supervisor::status`].
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// The sandbox id.
    pub sandbox_id: String,
    /// `running`, `gone`, `pid-reused` or `not-found`/`corrupt` (see `detail`).
    pub state: String,
    /// The recorded pid.
    pub pid: Option<u32>,
    /// The socket.
    pub socket: Option<PathBuf>,
    /// The API socket.
    pub api_socket: Option<PathBuf>,
    /// The log.
    pub log: Option<PathBuf>,
    /// The daemon's argv (without argv\[0\]).
    pub args: Vec<String>,
    /// The launch style.
    pub launch: Option<LaunchStyle>,
    /// Seconds since the epoch at start.
    pub started_at: Option<u64>,
    /// Explanation for non-running states.
    pub detail: Option<String>,
}

/// Manages the sandboxes below one state directory.
#[derive(Clone, Debug)]
pub struct Supervisor {
    state_dir: PathBuf,
}

enum Pump {
    Thread(mpsc::Receiver<()>),
    Process(Child),
    None,
}

impl Pump {
    /// Waits (bounded) until everything the daemon wrote is in the log.
    fn settle(&mut self, timeout: Duration) {
        match self {
            Pump::Thread(rx) => {
                let _ = rx.recv_timeout(timeout);
            }
            Pump::Process(c) => {
                let deadline = Instant::now() + timeout;
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = c.try_wait() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            Pump::None => {}
        }
    }

    /// Lets a pump process run on its own; a pump thread's end-of-input notice is returned.
    fn release(self) -> Option<mpsc::Receiver<()>> {
        match self {
            Pump::Process(mut c) => {
                std::thread::spawn(move || {
                    let _ = c.wait();
                });
                None
            }
            Pump::Thread(rx) => Some(rx),
            Pump::None => None,
        }
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptors.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
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

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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
            Some(state) => Self::read_state_in(&state, id, &p),
        }
    }

    fn read_state_in(state: &OwnedFd, id: &str, p: &SandboxPaths) -> Result<Option<SandboxState>> {
        let dir = match open_sandbox_dir(state, id, &p.dir)? {
            SandboxDir::Missing => return Ok(None),
            SandboxDir::Symlink => {
                return Err(Error::State {
                    path: p.dir.clone(),
                    message: "the sandbox directory is a symbolic link (not followed)".into(),
                })
            }
            SandboxDir::Dir(fd) => fd,
        };
        match crate::statedir::read_at(&dir, STATE_NAME) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| Error::State {
                    path: p.state.clone(),
                    message: e.to_string(),
                }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Err(Error::State {
                path: p.state.clone(),
                message: "a symbolic link (not followed)".into(),
            }),
            Err(e) => Err(Error::io(format!("reading {}", p.state.display()))(e)),
        }
    }

    fn write_state(dir: &OwnedFd, paths: &SandboxPaths, st: &SandboxState) -> Result<()> {
        let data = serde_json::to_vec_pretty(st).expect("state serialises");
        crate::statedir::write_at(dir, STATE_NAME, &data)
            .map_err(Error::io(format!("writing {}", paths.state.display())))
    }

    /// Removes the sandbox directory (a symbolic link there is removed, not followed).
    fn remove_files(paths: &SandboxPaths) {
        if fs::symlink_metadata(&paths.dir).is_ok() {
            if let Err(e) = fs::remove_dir_all(&paths.dir) {
                log::warn!("removing {}: {e}", paths.dir.display());
            }
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
                match Self::read_state_in(&state, id, &paths) {
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
                        Self::remove_files(&paths);
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
        let result = Self::spawn(id, cfg, shared_dir, opts, on_exit, &paths, &dir);
        if result.is_err() {
            Self::remove_files(&paths);
        }
        result
    }

    fn spawn(
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
                        libc::setsid();
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
                if detach && libc::setsid() < 0 {
                    return Err(io::Error::last_os_error());
                }
                if pdeath {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
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
        if let Err(e) = Self::write_state(dir, paths, &daemon.state) {
            daemon.kill_now();
            return Err(e);
        }

        let ready_line = |p: &Path| {
            let mut rotated = p.as_os_str().to_owned();
            rotated.push(".1");
            [p.to_path_buf(), PathBuf::from(rotated)].iter().any(|f| {
                read_no_follow(f)
                    .map(|b| String::from_utf8_lossy(&b).contains(READY_LINE))
                    .unwrap_or(false)
            })
        };
        let started = Instant::now();
        // Go style: the vhost-user side is settled after `settle` (or the ready line); rs
        // style: it must become ready within `ready_timeout`. The API socket, if any, must
        // listen within `ready_timeout` in both styles.
        let deadline = match style {
            LaunchStyle::Go => opts.settle.max(opts.ready_timeout),
            LaunchStyle::Rs => opts.ready_timeout,
        };
        let mut vhost_ready = None;
        loop {
            if let Some(ev) = daemon.watch.exit() {
                pump.settle(Duration::from_secs(1));
                let output = log_tail(&paths.log, 30);
                daemon.finished = true;
                return Err(Error::DaemonExited {
                    status: ev.describe(),
                    output,
                });
            }
            if vhost_ready.is_none() {
                vhost_ready = if ready_line(&paths.log) {
                    Some(ReadyBy::LogLine)
                } else {
                    match style {
                        LaunchStyle::Go if started.elapsed() >= opts.settle => {
                            Some(ReadyBy::Settled)
                        }
                        LaunchStyle::Rs if socket_listening(&paths.socket) => {
                            Some(ReadyBy::Listening)
                        }
                        _ => None,
                    }
                };
            }
            // /proc/net/unix only shows our network namespace's sockets: a daemon that
            // unshared its own before binding is found by connecting.
            let api_ready = match api_socket {
                None => true,
                Some(p) => {
                    socket_listening(p)
                        || (p.exists() && crate::api::probe(p, Duration::from_millis(100)))
                }
            };
            if let (Some(by), true) = (vhost_ready, api_ready) {
                daemon.ready_by = by;
                break;
            }
            if started.elapsed() >= deadline {
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
            std::thread::sleep(Duration::from_millis(10));
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

    /// Stops sandbox `id` (from its state file): SIGTERM, `grace`, SIGKILL; then removes its
    /// directory. Idempotent. A stale state (dead or reused pid), or one that cannot be
    /// trusted (a symbolic link, not followed; unreadable), is removed without signalling. A
    /// state directory that fails its checks is an error and nothing is touched.
    pub fn stop(&self, id: &str, grace: Duration) -> Result<StopOutcome> {
        let paths = self.paths(id)?;
        let st = match self.read_state(id) {
            Ok(Some(st)) => st,
            Ok(None) => {
                let existed = fs::symlink_metadata(&paths.dir).is_ok();
                Self::remove_files(&paths);
                return Ok(if existed {
                    StopOutcome::Stale
                } else {
                    StopOutcome::NotFound
                });
            }
            Err(e @ Error::StateDir { .. }) => return Err(e),
            Err(e) => {
                log::warn!("{e}; removing the sandbox directory");
                Self::remove_files(&paths);
                return Ok(StopOutcome::Stale);
            }
        };
        let outcome = terminate(st.pid, st.start_time, grace)?;
        Self::remove_files(&paths);
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

/// Signals a recorded process through a pidfd (after re-checking its start time, so a reused
/// pid is never signalled): SIGTERM, up to `grace`, then SIGKILL and up to 5 s more.
pub fn terminate(pid: u32, start_time: u64, grace: Duration) -> Result<StopOutcome> {
    match liveness(pid, start_time) {
        Liveness::Gone => return Ok(StopOutcome::AlreadyExited),
        Liveness::PidReused => return Ok(StopOutcome::Stale),
        Liveness::Running => {}
    }
    let Some(fd) = pidfd_open(pid) else {
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
    pidfd_signal(&fd, libc::SIGTERM);
    if exited(&fd, grace) {
        return Ok(StopOutcome::Stopped);
    }
    pidfd_signal(&fd, libc::SIGKILL);
    if exited(&fd, Duration::from_secs(5)) {
        return Ok(StopOutcome::Killed);
    }
    Err(Error::Io {
        context: format!("stopping pid {pid}"),
        source: io::Error::new(io::ErrorKind::TimedOut, "still alive 5 s after SIGKILL"),
    })
}

/// A daemon started by [`Supervisor::start`]. Dropping it stops the daemon (unless
/// [`Daemon::detach`]ed).
#[derive(Debug)]
pub struct Daemon {
    state: SandboxState,
    paths: SandboxPaths,
    watch: Arc<ChildWatch>,
    keep_running: bool,
    finished: bool,
    ready_by: ReadyBy,
    /// The in-process log pump's end-of-input notice (not for a detached daemon).
    log_done: Option<mpsc::Receiver<()>>,
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

    fn kill_now(&mut self) {
        self.watch.signal(libc::SIGKILL);
        self.watch.wait_timeout(Duration::from_secs(5));
        self.finished = true;
    }

    /// Stops the daemon (SIGTERM, `grace`, SIGKILL) and removes the sandbox directory.
    /// Calling it again is harmless.
    pub fn stop(&mut self, grace: Duration) -> Result<StopOutcome> {
        let outcome = if self.finished || self.watch.exit().is_some() {
            StopOutcome::AlreadyExited
        } else {
            self.watch.signal(libc::SIGTERM);
            if self.watch.wait_timeout(grace).is_some() {
                StopOutcome::Stopped
            } else {
                self.watch.signal(libc::SIGKILL);
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
        Supervisor::remove_files(&self.paths);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_ids() {
        for good in ["abc", "0123456789abcdef", "pod-1.a_b", &"a".repeat(128)] {
            validate_sandbox_id(good).unwrap();
        }
        for (bad, why) in [
            ("", "empty"),
            ("a/b", "'/'"),
            ("..", "'..'"),
            ("a..b", "'..'"),
            (".hidden", "start"),
            ("-rf", "start"),
            ("a b", "' '"),
            ("a\nb", "'\\n'"),
            ("pod\u{e9}", "not allowed"),
            (&"a".repeat(129), "longer"),
        ] {
            let e = validate_sandbox_id(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn proc_stat_of_self() {
        let (state, start) = proc_stat(std::process::id()).unwrap();
        assert!(matches!(state, 'R' | 'S'), "{state}");
        assert_eq!(liveness(std::process::id(), start), Liveness::Running);
        assert_eq!(liveness(std::process::id(), start + 1), Liveness::PidReused);
        assert_eq!(liveness(u32::MAX - 1, start), Liveness::Gone);
    }

    #[test]
    fn log_rotation() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l.log");
        let data: Vec<u8> = (0..2500u32)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        pump_log(&data[..], &p, 4096).unwrap();
        let cur = fs::metadata(&p).unwrap().len();
        let old = fs::metadata(d.path().join("l.log.1")).unwrap().len();
        assert!(cur <= 4096 && old <= 4096, "{cur} {old}");
        assert!(
            log_tail(&p, 1).ends_with("line 2499"),
            "{}",
            log_tail(&p, 2)
        );
        assert_eq!(log_tail(&d.path().join("none"), 3), "(no output)");
    }

    #[test]
    fn clean_exit_causes_from_the_log() {
        use CleanExitCause::*;
        let ours =
            "[INFO] Client connected, servicing requests\n[INFO] frontend disconnected; exiting\n";
        assert_eq!(clean_exit_cause(ours), FrontendDisconnected);
        let upstream = "[INFO virtiofsd] Client disconnected, shutting down\n";
        assert_eq!(clean_exit_cause(upstream), FrontendDisconnected);
        assert_eq!(clean_exit_cause("[INFO] signal 15: exiting\n"), Signal);
        // The last exit line wins.
        assert_eq!(
            clean_exit_cause(&format!("{ours}[INFO] signal 15: exiting\n")),
            Signal
        );
        assert_eq!(clean_exit_cause("[WARN] something\n"), Unknown);
        assert_eq!(clean_exit_cause(""), Unknown);
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

    #[test]
    fn socket_listening_by_the_file_behind_the_path() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a.sock"), d.path().join("b.sock"));
        let la = UnixListener::bind(&a).unwrap();
        assert!(socket_listening(&a), "bound in place");
        // Bound under another name and renamed into place, as the daemon does.
        std::fs::create_dir(d.path().join("p")).unwrap();
        let lb = UnixListener::bind(d.path().join("p/s")).unwrap();
        std::fs::rename(d.path().join("p/s"), &b).unwrap();
        assert!(socket_listening(&b), "renamed into place");
        drop((la, lb));
        assert!(
            !socket_listening(&a) && !socket_listening(&b),
            "stale files"
        );
        fs::write(d.path().join("f"), b"").unwrap();
        assert!(!socket_listening(&d.path().join("f")), "a regular file");
        assert!(!socket_listening(&d.path().join("none")), "nothing");
    }
}
