//! The churn workload really has `churn_files` files alive at once before it removes them:
//! inotify on the host directory sees every MKNOD and UNLINK in order, and the running count
//! of files present peaks at exactly `churn_files` and ends at zero.

mod common;

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use common::{with_timeout, Env};
use vufs_loadgen::engine::{prepare_host, DIR, META_DIR};
use vufs_loadgen::{Config, Generator, Workload};

/// (most files present at once, files present at the end, rounds seen) from the queued
/// inotify events of the watched directory.
fn replay(fd: &OwnedFd) -> (i64, i64, u64) {
    let (mut alive, mut max, mut rounds) = (0i64, 0i64, 0u64);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        // SAFETY: reading into a buffer we own, of its length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            assert_eq!(e.raw_os_error(), Some(libc::EAGAIN), "inotify read: {e}");
            return (max, alive, rounds);
        }
        let mut off = 0;
        while off < n as usize {
            // SAFETY: the kernel writes whole events; the header is in the bytes read.
            let ev: libc::inotify_event =
                unsafe { std::ptr::read_unaligned(buf[off..].as_ptr().cast()) };
            assert_eq!(ev.mask & libc::IN_Q_OVERFLOW, 0, "inotify queue overflowed");
            if ev.mask & libc::IN_CREATE != 0 {
                alive += 1;
                max = max.max(alive);
            } else if ev.mask & libc::IN_DELETE != 0 {
                alive -= 1;
                if alive == 0 {
                    rounds += 1;
                }
            }
            off += std::mem::size_of::<libc::inotify_event>() + ev.len as usize;
        }
    }
}

#[test]
fn churn_holds_all_its_files_alive_at_once_then_removes_them() {
    const FILES: u64 = 150;
    let env = Env::start(&[]);
    let meta = env.share.join(DIR).join(META_DIR);
    prepare_host(&env.share, 4 << 20).expect("prepare");
    // SAFETY: plain syscalls; the descriptor is owned below.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    assert!(
        fd >= 0,
        "inotify_init1: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: fd is a new descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let path = CString::new(meta.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid descriptor and NUL-terminated path.
    let wd = unsafe {
        libc::inotify_add_watch(
            fd.as_raw_fd(),
            path.as_ptr(),
            libc::IN_CREATE | libc::IN_DELETE,
        )
    };
    assert!(
        wd >= 0,
        "inotify_add_watch: {}",
        std::io::Error::last_os_error()
    );
    let cfg = Config {
        socket: env.daemon.socket.clone(),
        shared_dir: Some(env.share.clone()),
        daemon_pid: Some(env.daemon.pid()),
        queue_depth: 8,
        duration: Duration::from_millis(300),
        warmup: Duration::ZERO,
        file_size: 4 << 20,
        churn_files: FILES,
        ..Default::default()
    };
    let r = with_timeout(move || {
        let mut g = Generator::connect(cfg).unwrap_or_else(|e| panic!("connect: {e}"));
        g.run(Workload::Churn)
            .unwrap_or_else(|e| panic!("churn: {e}"));
        g.finish_run()
    });
    let w = &r.results[0];
    assert_eq!(w.errors, 0, "{:?}", w.first_error);
    assert!(w.ops > 0, "no operations");
    let (max, end, rounds) = replay(&fd);
    assert_eq!(max, FILES as i64, "most files alive at once");
    assert_eq!(end, 0, "files left behind");
    assert!(rounds >= 1);
    assert_eq!(std::fs::read_dir(&meta).unwrap().count(), 0);
}
