//! Starting a vhost-user-fs daemon for a measurement or a test: pinned to a CPU if asked,
//! stderr to a file, killed (SIGKILL) when the handle is dropped.

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Pin the calling process to `cpu` (for `pre_exec`).
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

/// Pin this process (all threads created afterwards) to `cpu`.
pub fn pin_self(cpu: usize) -> std::io::Result<()> {
    pin(cpu)
}

/// Add a CPU pin to a command about to be spawned.
pub fn pin_command(cmd: &mut Command, cpu: Option<usize>) {
    if let Some(c) = cpu {
        // SAFETY: sched_setaffinity is async-signal-safe; nothing is allocated in the child.
        unsafe {
            cmd.pre_exec(move || pin(c));
        }
    }
}

/// A running daemon; SIGKILLed and reaped on drop.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    /// Its vhost-user socket.
    pub socket: PathBuf,
    /// Where its stderr goes.
    pub log: PathBuf,
    /// When it was spawned.
    pub started: Instant,
}

impl Daemon {
    /// Spawn `bin --socket-path=SOCKET --shared-dir=SHARED ARGS...` on `cpu`.
    pub fn start(
        bin: &Path,
        socket: &Path,
        shared: &Path,
        args: &[String],
        cpu: Option<usize>,
        log: &Path,
    ) -> std::io::Result<Daemon> {
        let _ = fs::remove_file(socket);
        let mut pidfile = socket.as_os_str().to_owned();
        pidfile.push(".pid");
        let _ = fs::remove_file(&pidfile);
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--socket-path={}", socket.display()))
            .arg(format!("--shared-dir={}", shared.display()))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(log)?);
        pin_command(&mut cmd, cpu);
        let started = Instant::now();
        let child = cmd.spawn()?;
        Ok(Daemon {
            child,
            socket: socket.to_owned(),
            log: log.to_owned(),
            started,
        })
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last `n` lines of its stderr.
    pub fn log_tail(&self, n: usize) -> String {
        let s = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    fn check_alive(&mut self) -> std::io::Result<()> {
        if let Some(st) = self.child.try_wait()? {
            return Err(std::io::Error::other(format!(
                "daemon exited ({st}) before its socket was ready: {}",
                self.log_tail(5)
            )));
        }
        Ok(())
    }

    /// Wait until the socket file exists (polling every millisecond); time since spawn.
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

    /// Wait until a connection to the socket succeeds (then close it: most daemons serve one
    /// frontend and exit when it leaves, so this is for a start-up probe only); time since
    /// spawn.
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

    /// Wait for it to exit by itself (at most `timeout`); SIGKILL it otherwise.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.socket);
    }
}
