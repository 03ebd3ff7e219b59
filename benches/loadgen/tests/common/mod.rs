//! Shared by the generator's tests: our daemon in a scratch directory, killed on drop, a
//! hard timeout around everything that talks to it, and a corrupted byte in the read file.

#![allow(dead_code)]

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use vufs_loadgen::daemon::Daemon;
use vufs_loadgen::engine::{prepare_host, DIR, READ_FILE};
use vufs_testkit::Scratch;

/// Hard limit for one generator run in a test.
pub const HARD_TIMEOUT: Duration = Duration::from_secs(90);

/// Our daemon: `$VUFS_DAEMON_BIN`, else the workspace's, built on first use (the end-to-end
/// tests' own helper).
pub fn daemon_bin() -> PathBuf {
    match std::env::var_os("VUFS_DAEMON_BIN") {
        Some(p) => PathBuf::from(p),
        None => vufs_testkit::daemon_bin(vufs_testkit::Build::Normal),
    }
}

/// A daemon serving `share/` of its own scratch directory (killed when dropped).
pub struct Env {
    pub daemon: Daemon,
    pub share: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Env {
    /// Start our daemon (`--sandbox=none --cache=auto` plus `args`).
    pub fn start(args: &[&str]) -> Env {
        let s = Scratch::empty();
        let mut a: Vec<String> = vec!["--sandbox=none".into(), "--cache=auto".into()];
        a.extend(args.iter().map(|s| s.to_string()));
        let mut daemon = Daemon::start(
            &daemon_bin(),
            &s.socket(),
            &s.share,
            &a,
            None,
            &s.dir.path().join("daemon.log"),
        )
        .expect("spawn daemon");
        daemon
            .wait_socket_file(Duration::from_secs(20))
            .expect("daemon socket");
        Env {
            daemon,
            share: s.share,
            dir: s.dir,
        }
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

/// Create the generator's files in `share` (`file_mib` MiB each) and flip the bits `mask` of
/// the byte at offset `at` of the read file, on the host, behind the daemon's back.
pub fn corrupt_read_file(share: &Path, file_mib: u64, at: u64, mask: u8) {
    prepare_host(share, file_mib << 20).unwrap();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(share.join(DIR).join(READ_FILE))
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= mask;
    f.write_all_at(&b, at).unwrap();
    f.sync_all().unwrap();
}
