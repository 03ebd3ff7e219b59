//! Shared helpers of the integration tests: the real daemon binary, configurations pointing
//! at it, the CLI with timeouts, and process checks.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use runtime_integration::supervisor::{liveness, Liveness};

pub use vufs_testkit::workspace_root;

/// Builds (if needed) and returns the real daemon.
pub fn daemon_bin() -> PathBuf {
    vufs_testkit::daemon_bin(vufs_testkit::Build::Normal)
}

/// The CLI binary.
pub fn cli_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_virtiofs-sandbox"))
}

/// configs/configuration-qemu.toml with `virtio_fs_daemon` (and the valid paths) pointing at
/// `daemon`, written to `dir/configuration.toml`. `extra` replaces whole keys: (key, value).
pub fn write_config(dir: &Path, daemon: &Path, extra: &[(&str, &str)]) -> PathBuf {
    let text = std::fs::read_to_string(workspace_root().join("configs/configuration-qemu.toml"))
        .expect("configs/configuration-qemu.toml");
    let mut overrides: Vec<(String, String)> = vec![
        (
            "virtio_fs_daemon".into(),
            format!("{:?}", daemon.display().to_string()),
        ),
        (
            "valid_virtio_fs_daemon_paths".into(),
            format!("[{:?}]", daemon.display().to_string()),
        ),
    ];
    for (k, v) in extra {
        overrides.retain(|(ok, _)| ok != k);
        overrides.push((k.to_string(), v.to_string()));
    }
    let mut out = String::new();
    let mut seen = Vec::new();
    for line in text.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        if let Some((k, v)) = overrides.iter().find(|(k, _)| k == key) {
            out.push_str(&format!("{k} = {v}\n"));
            seen.push(k.clone());
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    for (k, v) in &overrides {
        if !seen.contains(k) {
            out = out.replacen(
                "[hypervisor.qemu]\n",
                &format!("[hypervisor.qemu]\n{k} = {v}\n"),
                1,
            );
        }
    }
    let p = dir.join("configuration.toml");
    std::fs::write(&p, out).unwrap();
    p
}

/// Runs a command, killing it after `timeout`. Panics on timeout.
pub fn run_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t1 = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t2 = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // A detached daemon may keep a pipe open only if it inherited it; ours do not.
    Output {
        status,
        stdout: t1.join().unwrap(),
        stderr: t2.join().unwrap(),
    }
}

/// Waits for a child with a timeout (panics on expiry after killing it).
pub fn run_wait(c: &mut std::process::Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = c.try_wait().unwrap() {
            return st;
        }
        if Instant::now() >= deadline {
            let _ = c.kill();
            let _ = c.wait();
            panic!("child {} did not exit within {timeout:?}", c.id());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs the CLI with `args` (20 s limit).
pub fn cli(args: &[&str]) -> Output {
    run_timeout(Command::new(cli_bin()).args(args), Duration::from_secs(20))
}

/// Parses the CLI's JSON stdout, panicking with both streams otherwise.
pub fn json_out(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}); status {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Sandboxes started by a test, stopped when it ends (also when an assertion fails first), so a
/// detached daemon never outlives its test.
pub struct Started {
    state: String,
    ids: Vec<String>,
}

impl Started {
    /// Nothing started yet, under the state directory `state`.
    pub fn new(state: &str) -> Started {
        Started {
            state: state.to_string(),
            ids: Vec::new(),
        }
    }

    /// Records `id` (started by the caller) for stopping.
    pub fn add(&mut self, id: &str) {
        self.ids.push(id.to_string());
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        for id in &self.ids {
            cli(&["stop", id, "--state-dir", &self.state]);
        }
    }
}

/// Whether `pid` is a running (not zombie) process.
pub fn running(pid: u32) -> bool {
    match runtime_integration::supervisor::proc_stat(pid) {
        Some((s, start)) => liveness(pid, start) == Liveness::Running && s != 'Z',
        None => false,
    }
}

/// Waits up to `timeout` until `pid` is no longer running.
pub fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !running(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    !running(pid)
}

/// The process's argv from /proc/<pid>/cmdline.
pub fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// Waits until `path`'s content contains `needle` (or panics after `timeout`).
pub fn wait_for_text(path: &Path, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let t = std::fs::read_to_string(path).unwrap_or_default();
        if t.contains(needle) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} not in {} within {timeout:?}:\n{t}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The test kit's scratch directory (`dir`, `share/`; see [`vufs_testkit::Scratch`]) with
/// `state/`, the state directory of the sandboxes a test starts.
pub struct Scratch {
    base: vufs_testkit::Scratch,
    pub state: PathBuf,
}

impl std::ops::Deref for Scratch {
    type Target = vufs_testkit::Scratch;
    fn deref(&self) -> &vufs_testkit::Scratch {
        &self.base
    }
}

impl Scratch {
    pub fn new() -> Scratch {
        let base = vufs_testkit::Scratch::empty();
        let state = base.dir.path().join("state");
        Scratch { base, state }
    }

    /// Writes an executable shell script fixture.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        // Written by a child process: a descriptor for writing it, inherited by a concurrent
        // fork in this multi-threaded test process, would make exec fail with ETXTBSY.
        use std::io::Write;
        let p = self.dir.path().join(name);
        let mut c = Command::new("sh")
            .args(["-c", "cat > \"$0\" && chmod 755 \"$0\""])
            .arg(&p)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(format!("#!/bin/sh\n{body}\n").as_bytes())
            .unwrap();
        let out = run_wait(&mut c, Duration::from_secs(10));
        assert!(out.success());
        p
    }
}

/// Builds (if needed) and returns this crate's `frontend-vmm` example: a stand-in VMM that
/// connects to the daemon's socket as a frontend and then disconnects (see its docs).
pub fn frontend_vmm_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        // The test exe is target/<profile>/deps/<name>.
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>");
        let target = profile_dir.parent().expect("target dir");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.current_dir(workspace_root())
            .args(["build", "--quiet", "-p", "runtime-integration"])
            .args(["--example", "frontend-vmm", "--target-dir"])
            .arg(target);
        if profile_dir.ends_with("release") {
            cmd.arg("--release");
        }
        let out = cmd.output().expect("run cargo build");
        assert!(
            out.status.success(),
            "building the frontend-vmm example failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        profile_dir.join("examples/frontend-vmm")
    })
    .clone()
}

/// `promtool ARGS...` with `stdin` (panics naming the package if promtool is missing);
/// returns (success, what it said).
pub fn promtool(args: &[&str], stdin: &str) -> (bool, String) {
    use std::io::Write;
    let mut p = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("promtool is needed (apt-get install prometheus): {e}"));
    p.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// `promtool check metrics` on an exposition text.
pub fn promtool_check_metrics(text: &str) -> (bool, String) {
    promtool(&["check", "metrics"], text)
}

/// The metrics exporter, killed (and waited for, bounded) on drop.
pub struct Exporter {
    child: Child,
    addr: String,
}

impl Exporter {
    /// `virtiofs-sandbox metrics` over `state` on a free port, with `--timeout` and `extra`.
    pub fn start(state: &str, timeout: &str, extra: &[&str]) -> Exporter {
        let mut child = Command::new(cli_bin())
            .args([
                "metrics",
                "--listen",
                "127.0.0.1:0",
                "--state-dir",
                state,
                "--timeout",
                timeout,
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The first stdout line announces the bound address.
        let mut out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = Vec::new();
            let mut b = [0u8; 1];
            while out.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
                line.push(b[0]);
            }
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                run_wait(&mut child, Duration::from_secs(5));
                panic!("metrics exporter did not announce its address within 10 s");
            }
        };
        let v: serde_json::Value = serde_json::from_slice(&line)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&line)));
        let addr = v["listen"].as_str().unwrap().to_string();
        assert!(addr.starts_with("127.0.0.1:"), "{addr}");
        Exporter { child, addr }
    }

    /// GET `path` (HTTP/1.0, bounded); returns (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        let mut c = std::net::TcpStream::connect_timeout(
            &self.addr.parse().unwrap(),
            Duration::from_secs(5),
        )
        .unwrap();
        c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        c.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(c, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr).unwrap();
        let mut raw = String::new();
        c.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP response");
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        (status, body.to_string())
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        run_wait(&mut self.child, Duration::from_secs(5));
    }
}
