//! A stand-in VMM for `virtiofs-sandbox run` tests: it takes the QEMU arguments `run` adds,
//! connects to the daemon's vhost-user socket like a VMM's frontend (`-chardev
//! socket,...,path=<sock>`), sends FUSE INIT and looks up `/`, then closes the connection, as
//! a VMM does when its guest shuts down. What follows the disconnect, `$FRONTEND_VMM_AFTER`:
//! * `exit-after-daemon` (default): wait until the daemon (pid from the sandbox's
//!   `state.json`) has exited, then 300 ms more, and exit 0, so that the daemon's exit 0
//!   comes first, as a slow-to-exit VMM makes it;
//! * `hang`: never exit (a VMM hung after closing the connection).
//!
//! Progress lines go to stderr.

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn socket_path(args: &[String]) -> PathBuf {
    args.iter()
        .find_map(|a| {
            a.strip_prefix("socket,")?
                .split(',')
                .find_map(|p| p.strip_prefix("path="))
                .map(PathBuf::from)
        })
        .expect("a -chardev socket,...,path=<sock> argument")
}

fn daemon_pid(sandbox_dir: &Path) -> i32 {
    let state = std::fs::read(sandbox_dir.join("state.json")).expect("state.json");
    let v: serde_json::Value = serde_json::from_slice(&state).expect("state.json is JSON");
    v["pid"].as_i64().expect("pid in state.json") as i32
}

/// Blocks until process `pid` has exited (a zombie counts).
fn wait_exit(pid: i32) {
    // SAFETY: plain syscall; the returned descriptor is ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return; // already gone
    }
    // SAFETY: a fresh descriptor from the kernel.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut p = libc::pollfd {
        fd: std::os::fd::AsRawFd::as_raw_fd(&fd),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd; -1 waits without a timeout.
    while unsafe { libc::poll(&mut p, 1, -1) } <= 0 {}
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sock = socket_path(&args);
    let mut fs = vufs_frontend::FuseSession::connect(&sock).expect("vhost-user connect");
    fs.init().expect("FUSE INIT");
    fs.getattr(vufs_frontend::ROOT_ID).expect("GETATTR /");
    let pid = daemon_pid(sock.parent().expect("socket in the sandbox directory"));
    eprintln!("frontend-vmm: served by virtiofsd pid {pid}; disconnecting");
    drop(fs);
    match std::env::var("FRONTEND_VMM_AFTER").as_deref() {
        Ok("hang") => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        Ok("exit-after-daemon") | Err(_) => {
            wait_exit(pid);
            eprintln!("frontend-vmm: virtiofsd exited; exiting 0 in 300 ms");
            std::thread::sleep(Duration::from_millis(300));
        }
        Ok(o) => panic!("FRONTEND_VMM_AFTER={o:?}: expected exit-after-daemon or hang"),
    }
}
