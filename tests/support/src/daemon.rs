//! One spawner for the daemon under test: [`Launch`] says how to start it, [`Daemon`] is the
//! running process, SIGKILLed when dropped and when the process that started it dies.

use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::io::RawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The stderr line upstream virtiofsd prints once it listens; Kata's runtime-rs treats the
/// daemon as ready when it appears.
pub const READY_LINE: &str = "Waiting for vhost-user socket connection";

/// How to start a daemon: a command line plus where its stderr goes, which CPU it runs on,
/// which user it runs as and which listener it inherits as fd 3.
pub struct Launch {
    cmd: Command,
    socket: PathBuf,
    log: Option<PathBuf>,
}

impl Launch {
    /// `bin` with no arguments yet; stderr is captured (see [`Daemon::stderr`]).
    pub fn new(bin: impl AsRef<OsStr>) -> Launch {
        let mut cmd = Command::new(bin);
        // SAFETY: prctl is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        Launch {
            cmd,
            socket: PathBuf::new(),
            log: None,
        }
    }

    /// Adds `--socket-path=socket` and records it as the daemon's socket.
    pub fn socket_path(mut self, socket: &Path) -> Launch {
        self.cmd.arg(format!("--socket-path={}", socket.display()));
        self.socket(socket)
    }

    /// Records `socket` as the daemon's socket without adding an argument (the argv names it,
    /// or it is inherited).
    pub fn socket(mut self, socket: &Path) -> Launch {
        self.socket = socket.to_path_buf();
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Launch
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    /// Sets environment variables.
    pub fn envs(mut self, env: &[(&str, &str)]) -> Launch {
        self.cmd.envs(env.iter().copied());
        self
    }

    /// The working directory.
    pub fn current_dir(mut self, dir: &Path) -> Launch {
        self.cmd.current_dir(dir);
        self
    }

    /// Writes stderr to `log` (created or truncated) instead of capturing it.
    pub fn stderr_to(mut self, log: &Path) -> Launch {
        self.log = Some(log.to_path_buf());
        self
    }

    /// Pins the daemon to `cpu` (nothing when `None`).
    pub fn cpu(mut self, cpu: Option<usize>) -> Launch {
        pin_command(&mut self.cmd, cpu);
        self
    }

    /// Runs the daemon as `uid`/`gid` with no supplementary groups.
    pub fn user(mut self, uid: u32, gid: u32) -> Launch {
        // SAFETY: setgroups/setgid/setuid are async-signal-safe.
        unsafe {
            self.cmd.pre_exec(move || {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self
    }

    /// Passes descriptor `fd` (a listening socket, as Kata's Go runtime does) as fd 3.
    pub fn fd3(mut self, fd: RawFd) -> Launch {
        // SAFETY: dup2 and fcntl are async-signal-safe.
        unsafe {
            self.cmd.pre_exec(move || {
                // dup2(3, 3) would keep FD_CLOEXEC: clear it explicitly instead.
                if fd == 3 {
                    if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self
    }

    /// Spawns the daemon and waits for nothing.
    pub fn spawn(mut self) -> std::io::Result<Daemon> {
        self.cmd.stdin(Stdio::null()).stdout(Stdio::null());
        match &self.log {
            Some(log) => self.cmd.stderr(fs::File::create(log)?),
            None => self.cmd.stderr(Stdio::piped()),
        };
        let started = Instant::now();
        let mut child = self.cmd.spawn()?;
        let stderr = match self.log {
            Some(path) => Stderr::File(path),
            None => Stderr::capture(child.stderr.take().expect("piped stderr")),
        };
        Ok(Daemon {
            child: Some(child),
            stderr,
            socket: self.socket,
            started,
        })
    }
}

/// Where a daemon's stderr goes.
enum Stderr {
    /// Collected by a reader thread; `done` is set at end of file (every writer exited).
    Captured {
        text: Arc<Mutex<String>>,
        done: Arc<AtomicBool>,
    },
    /// Written to this file.
    File(PathBuf),
}

impl Stderr {
    fn capture(pipe: std::process::ChildStderr) -> Stderr {
        let text = Arc::new(Mutex::new(String::new()));
        let done = Arc::new(AtomicBool::new(false));
        let (sink, eof) = (text.clone(), done.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
            eof.store(true, Ordering::Release);
        });
        Stderr::Captured { text, done }
    }

    fn text(&self) -> String {
        match self {
            Stderr::Captured { text, .. } => text.lock().unwrap().clone(),
            Stderr::File(p) => fs::read_to_string(p).unwrap_or_default(),
        }
    }

    fn drained(&self) -> bool {
        match self {
            Stderr::Captured { done, .. } => done.load(Ordering::Acquire),
            Stderr::File(_) => true,
        }
    }
}

/// A running daemon, SIGKILLed and reaped when dropped.
pub struct Daemon {
    child: Option<Child>,
    stderr: Stderr,
    /// The vhost-user socket path (empty when none was given to [`Launch`]).
    pub socket: PathBuf,
    /// When it was spawned.
    pub started: Instant,
}

impl Daemon {
    /// Starts `bin` with `--socket-path=socket` plus `args` and waits (≤ 10 s) for the socket.
    pub fn start(bin: &Path, socket: &Path, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut d = Daemon::spawn_or_panic(Launch::new(bin).socket_path(socket), args, env);
        if let Err(e) = d.wait_socket_file(Duration::from_secs(10)) {
            panic!("{e}:\n{}", d.stderr());
        }
        d
    }

    /// Starts `bin` with exactly `args` (the caller's argv names the socket) and waits for
    /// nothing.
    pub fn spawn(bin: &Path, socket: &Path, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        Daemon::spawn_or_panic(Launch::new(bin).socket(socket), args, env)
    }

    /// Kata's Go runtime: `listener` (already bound to `socket` and listening, created by the
    /// caller) is passed to `bin` as fd 3; `args` should contain `--fd=3`. Like the runtime, this
    /// does not wait for readiness: the socket already accepts connections. The caller may drop
    /// its copy of `listener` afterwards.
    pub fn start_with_fd(
        bin: &Path,
        listener: &std::os::unix::net::UnixListener,
        socket: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let fd = std::os::unix::io::AsRawFd::as_raw_fd(listener);
        Daemon::spawn_or_panic(Launch::new(bin).socket(socket).fd3(fd), args, env)
    }

    /// Kata's runtime-rs: starts `bin` with `--socket-path=socket` followed by `args` and waits
    /// (≤ `timeout`) until stderr shows [`READY_LINE`]. Panics with the stderr if the daemon
    /// exits first or the line does not appear in time.
    pub fn start_until_ready(
        bin: &Path,
        socket: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        timeout: Duration,
    ) -> Daemon {
        let mut d = Daemon::spawn_or_panic(Launch::new(bin).socket_path(socket), args, env);
        if let Err(e) = d.wait_for_stderr(READY_LINE, timeout) {
            panic!("virtiofsd never became ready: {e}");
        }
        d
    }

    fn spawn_or_panic(launch: Launch, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        launch
            .args(args)
            .envs(env)
            .spawn()
            .expect("spawn virtiofsd")
    }

    /// The pid of the daemon.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// The process that serves: the sandbox's child (the daemon's only child), else the daemon.
    pub fn serving_pid(&self) -> u32 {
        let children = format!("/proc/{0}/task/{0}/children", self.pid());
        let c = fs::read_to_string(children).unwrap_or_default();
        c.split_whitespace()
            .next()
            .map_or(self.pid(), |p| p.parse().unwrap())
    }

    /// What the daemon wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// The last `n` lines of its stderr.
    pub fn log_tail(&self, n: usize) -> String {
        let s = self.stderr();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The exit status, if the daemon has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// Waits up to `timeout` for the daemon to exit; then (≤ 2 s more) for the last of its
    /// stderr, so [`Daemon::stderr`] holds everything it wrote.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_status() {
                self.drain_stderr();
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for the daemon to exit, however long it takes, and for the last of its stderr.
    pub fn wait(&mut self) -> ExitStatus {
        let st = self
            .child
            .as_mut()
            .expect("daemon not reaped")
            .wait()
            .expect("wait for virtiofsd");
        self.drain_stderr();
        st
    }

    fn drain_stderr(&self) {
        let drained = Instant::now() + Duration::from_secs(2);
        while !self.stderr.drained() && Instant::now() < drained {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// SIGKILLs the daemon (if it still runs) and reaps it.
    pub fn kill(&mut self) {
        if let Some(c) = self.child.as_mut() {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }

    /// Sends a signal.
    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our child's pid.
        unsafe { libc::kill(self.pid() as i32, sig) };
    }

    /// Waits until the socket file exists (polling every millisecond); returns the time since
    /// spawn. Fails if the daemon exits first or `timeout` (since spawn) passes.
    pub fn wait_socket_file(&mut self, timeout: Duration) -> std::io::Result<Duration> {
        loop {
            if fs::metadata(&self.socket).is_ok_and(|m| m.file_type().is_socket()) {
                return Ok(self.started.elapsed());
            }
            self.check_alive()?;
            if self.started.elapsed() > timeout {
                return Err(std::io::Error::other(format!(
                    "socket {} not there after {timeout:?}",
                    self.socket.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits until a connection to the socket succeeds, then closes it (most daemons serve one
    /// frontend and exit when it leaves, so this is for a start-up probe only); returns the
    /// time since spawn.
    pub fn probe_ready(&mut self, timeout: Duration) -> std::io::Result<Duration> {
        loop {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return Ok(self.started.elapsed());
            }
            self.check_alive()?;
            if self.started.elapsed() > timeout {
                return Err(std::io::Error::other("daemon not accepting connections"));
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    fn check_alive(&mut self) -> std::io::Result<()> {
        if let Some(st) = self.try_status() {
            return Err(std::io::Error::other(format!(
                "daemon exited ({st}) before its socket was ready: {}",
                self.log_tail(5)
            )));
        }
        Ok(())
    }

    /// Waits (≤ 10 s) until stderr shows [`READY_LINE`] (in the sandboxes the daemon is then
    /// confined); panics with the stderr otherwise.
    pub fn wait_ready(&mut self) {
        if let Err(e) = self.wait_for_stderr(READY_LINE, Duration::from_secs(10)) {
            panic!("virtiofsd never became ready: {e}");
        }
    }

    /// Waits (≤ `timeout`) until the daemon's stderr contains `needle`; on failure the error
    /// says whether it exited and carries its stderr.
    pub fn wait_for_stderr(&mut self, needle: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stderr().contains(needle) {
                return Ok(());
            }
            if let Some(st) = self.try_status() {
                // Let the reader drain what is left before judging.
                self.drain_stderr();
                if self.stderr().contains(needle) {
                    return Ok(());
                }
                return Err(format!(
                    "virtiofsd exited ({st}) before printing {needle:?}:\n{}",
                    self.stderr()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no {needle:?} on stderr after {timeout:?}:\n{}",
                    self.stderr()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Pins the calling process to `cpu`.
fn pin(cpu: usize) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only write inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Pins this process (and the threads it creates afterwards) to `cpu`.
pub fn pin_self(cpu: usize) -> std::io::Result<()> {
    pin(cpu)
}

/// Pins a command about to be spawned to `cpu` (nothing when `None`).
pub fn pin_command(cmd: &mut Command, cpu: Option<usize>) {
    if let Some(c) = cpu {
        // SAFETY: sched_setaffinity is async-signal-safe; nothing is allocated in the child.
        unsafe {
            cmd.pre_exec(move || pin(c));
        }
    }
}
