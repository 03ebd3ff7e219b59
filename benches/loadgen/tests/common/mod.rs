//! Shared by the generator's tests: our daemon (target/debug/virtiofsd, built with
//! `cargo build -p virtiofsd` when missing) in a scratch directory, killed on drop, and a
//! hard timeout around everything that talks to it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

use vufs_loadgen::daemon::Daemon;

/// Hard limit for one generator run in a test.
pub const HARD_TIMEOUT: Duration = Duration::from_secs(90);

/// target/<profile> of this test binary (…/target/debug/deps/test-hash → …/target/debug).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .to_owned()
}

/// Our daemon's debug binary: `$VUFS_DAEMON_BIN`, else `target/debug/virtiofsd` of the
/// target directory these tests were built in (built on first use if missing).
pub fn daemon_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("VUFS_DAEMON_BIN") {
            return PathBuf::from(p);
        }
        let dir = profile_dir();
        let bin = dir.join("virtiofsd");
        if !bin.is_file() {
            let target = dir.parent().expect("target dir");
            let st = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
                .args(["build", "-p", "virtiofsd"])
                .env("CARGO_TARGET_DIR", target)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("running cargo build -p virtiofsd");
            assert!(st.success(), "cargo build -p virtiofsd failed");
        }
        assert!(bin.is_file(), "{} missing", bin.display());
        bin
    })
    .clone()
}

/// A daemon serving `share/` of its own temporary directory (killed when dropped).
pub struct Env {
    pub daemon: Daemon,
    pub share: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Env {
    /// Start our daemon (`--sandbox=none --cache=auto` plus `args`).
    pub fn start(args: &[&str]) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let share = dir.path().join("share");
        std::fs::create_dir(&share).expect("share dir");
        let mut a: Vec<String> = vec!["--sandbox=none".into(), "--cache=auto".into()];
        a.extend(args.iter().map(|s| s.to_string()));
        let mut daemon = Daemon::start(
            &daemon_bin(),
            &dir.path().join("vfsd.sock"),
            &share,
            &a,
            None,
            &dir.path().join("daemon.log"),
        )
        .expect("spawn daemon");
        daemon
            .wait_socket_file(Duration::from_secs(20))
            .expect("daemon socket");
        Env { daemon, share, dir }
    }
}

/// Run `f` on another thread; panic if it takes longer than [`HARD_TIMEOUT`] (the caller's
/// `Env` is then dropped, killing the daemon).
pub fn with_timeout<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(HARD_TIMEOUT)
        .unwrap_or_else(|_| panic!("generator run exceeded {HARD_TIMEOUT:?}"))
}
