//! Support for the end-to-end tests: the daemon binary, a running daemon that dies with the
//! test, and a shared directory with canary files outside it.
//!
//! The tests run the real `virtiofsd` binary. [`daemon_bin`] builds it with cargo (a no-op when
//! it is up to date), so `cargo test -p e2e` and `cargo nextest run` work from a clean checkout.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Which build of the daemon to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Build {
    /// The daemon as shipped.
    Normal,
    /// Built with the `seeded-bugs` feature: `VIRTIOFSD_SEEDED_BUG_NO_NAME_CHECKS=1` turns off
    /// name validation. Used to prove the hostile tests can fail.
    Seeded,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The target directory this test binary was built into (`.../target/<profile>/deps/x` → target).
fn target_dir() -> (PathBuf, &'static str) {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test exe in target/<profile>/deps");
    let profile = if profile_dir.ends_with("release") {
        "release"
    } else {
        "debug"
    };
    (
        profile_dir.parent().expect("target dir").to_path_buf(),
        profile,
    )
}

/// Builds (if needed) and returns the daemon binary for `build`. Panics with cargo's output if
/// the build fails.
pub fn daemon_bin(build: Build) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    static NORMAL: OnceLock<PathBuf> = OnceLock::new();
    static SEEDED: OnceLock<PathBuf> = OnceLock::new();
    let cell = match build {
        Build::Normal => &NORMAL,
        Build::Seeded => &SEEDED,
    };
    cell.get_or_init(|| {
        let _g = LOCK.lock().unwrap();
        let (target, profile) = target_dir();
        let target = match build {
            Build::Normal => target,
            Build::Seeded => target.join("seeded"),
        };
        let mut cmd = Command::new(env!("CARGO"));
        cmd.current_dir(workspace_root())
            .args(["build", "--quiet", "-p", "virtiofsd", "--bin", "virtiofsd"])
            .arg("--target-dir")
            .arg(&target);
        if profile == "release" {
            cmd.arg("--release");
        }
        if build == Build::Seeded {
            cmd.args(["--features", "seeded-bugs"]);
        }
        let out = cmd.output().expect("run cargo build");
        assert!(
            out.status.success(),
            "building virtiofsd ({build:?}) failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        target.join(profile).join("virtiofsd")
    })
    .clone()
}

/// A daemon process killed when dropped; its stderr is collected in the background.
pub struct Daemon {
    child: Option<Child>,
    stderr: std::sync::Arc<Mutex<String>>,
    /// Set when stderr reached end of file (every writer exited).
    stderr_done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The vhost-user socket path (when started with `--socket-path`).
    pub socket: PathBuf,
}

impl Daemon {
    /// Starts `bin` with `args` plus `--socket-path=socket` and waits (≤ 10 s) for the socket.
    pub fn start(bin: &Path, socket: &Path, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--socket-path={}", socket.display()))
            .args(args)
            .envs(env.iter().copied());
        let mut d = Daemon::spawn_cmd(cmd, socket);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            if let Some(st) = d.try_status() {
                panic!("virtiofsd exited early ({st}):\n{}", d.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "no socket after 10 s:\n{}",
                d.stderr()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        d
    }

    /// Starts `bin` with exactly `args` (the caller's argv names the socket) and waits for
    /// nothing.
    pub fn spawn(bin: &Path, socket: &Path, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(bin);
        cmd.args(args).envs(env.iter().copied());
        Daemon::spawn_cmd(cmd, socket)
    }

    /// The pid of the daemon.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// What the daemon wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The exit status, if the daemon has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits up to `timeout` for the daemon to exit; then (≤ 2 s more) for the last of its
    /// stderr, so [`Daemon::stderr`] holds everything it wrote.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_status() {
                let drained = Instant::now() + Duration::from_secs(2);
                while !self.stderr_done.load(std::sync::atomic::Ordering::Acquire)
                    && Instant::now() < drained
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// Sends a signal.
    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our child's pid.
        unsafe { libc::kill(self.pid() as i32, sig) };
    }
}

/// The stderr line upstream virtiofsd prints once it listens; Kata's runtime-rs treats the
/// daemon as ready when it appears.
pub const READY_LINE: &str = "Waiting for vhost-user socket connection";

impl Daemon {
    /// Spawns `cmd` (stdio set here, killed with the test process) without waiting for anything.
    fn spawn_cmd(mut cmd: Command, socket: &Path) -> Daemon {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawn virtiofsd");
        let stderr = std::sync::Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        let stderr_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = stderr_done.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
            done.store(true, std::sync::atomic::Ordering::Release);
        });
        Daemon {
            child: Some(child),
            stderr,
            stderr_done,
            socket: socket.to_path_buf(),
        }
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
        let mut cmd = Command::new(bin);
        cmd.args(args).envs(env.iter().copied());
        // SAFETY: dup2 and fcntl are async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
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
        Daemon::spawn_cmd(cmd, socket)
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
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--socket-path={}", socket.display()))
            .args(args)
            .envs(env.iter().copied());
        let mut d = Daemon::spawn_cmd(cmd, socket);
        if let Err(e) = d.wait_for_stderr(READY_LINE, timeout) {
            panic!("virtiofsd never became ready: {e}");
        }
        d
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
                // Let the reader thread drain what is left before judging.
                std::thread::sleep(Duration::from_millis(100));
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
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A scratch area: `share/` is exported; `outside/` holds canaries the guest must never touch.
pub struct Scratch {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
    /// The shared directory.
    pub share: PathBuf,
    /// A sibling directory outside the share.
    pub outside: PathBuf,
}

impl Scratch {
    /// Creates the layout with a canary file `outside/canary` and a `share/sub/` directory.
    pub fn new() -> Scratch {
        let dir = tempfile::tempdir().expect("tempdir");
        let share = dir.path().join("share");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(share.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("canary"), b"canary").unwrap();
        Scratch {
            dir,
            share,
            outside,
        }
    }

    /// A socket path inside the scratch dir.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("vhost.sock")
    }

    /// Every entry below `outside/` (relative paths), to compare before and after an attack.
    pub fn outside_listing(&self) -> Vec<String> {
        let mut out = Vec::new();
        list(&self.outside, &self.outside, &mut out);
        out.sort();
        out
    }

    /// Entries in the scratch root other than share/, outside/ and the daemon's own files.
    pub fn stray_root_entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                ![
                    "share",
                    "outside",
                    "vhost.sock",
                    "vhost.sock.pid",
                    "vhost.sock.api",
                ]
                .contains(&n.as_str())
            })
            .collect();
        v.sort();
        v
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

fn list(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let mut content = String::new();
        if p.is_file() {
            let _ = std::fs::File::open(&p).and_then(|mut f| f.read_to_string(&mut content));
        }
        out.push(format!(
            "{} {content}",
            p.strip_prefix(root).unwrap().display()
        ));
        if p.is_dir() {
            list(root, &p, out);
        }
    }
}
