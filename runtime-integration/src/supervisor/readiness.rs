//! Readiness: when a started daemon's vhost-user side (its ready line, a listening socket, or
//! a settle time) and its API socket are ready, or why it never was.

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::process::{ChildWatch, ExitEvent};
use crate::command::LaunchStyle;
use crate::statedir::read_no_follow;

/// The line upstream virtiofsd (and ours) logs when it listens (runtime-rs waits for it).
pub const READY_LINE: &str = "Waiting for vhost-user socket connection";

/// What showed that a daemon's vhost-user side was ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadyBy {
    /// The daemon logged [`READY_LINE`].
    LogLine,
    /// rs style: the socket was listening (in `/proc/net/unix`) before the line was read.
    Listening,
    /// Go style: [`super::StartOptions::settle`] passed without an exit or the line (a daemon that
    /// does not log it, e.g. at `--log-level=warn`).
    Settled,
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

/// What [`wait_ready`] waits for.
pub(super) struct Target<'a> {
    /// The launch style (what shows the vhost-user side ready).
    pub style: LaunchStyle,
    /// Go style: how long an early exit is watched for.
    pub settle: Duration,
    /// The deadline (at least `settle` in Go style).
    pub ready_timeout: Duration,
    /// The daemon's log.
    pub log: &'a Path,
    /// The vhost-user socket.
    pub socket: &'a Path,
    /// The API socket, if the daemon has one.
    pub api_socket: Option<&'a Path>,
}

/// How a readiness wait ended.
pub(super) enum Wait {
    /// Both sides are ready.
    Ready(ReadyBy),
    /// The daemon exited first.
    Exited(ExitEvent),
    /// The deadline passed (the daemon is still running).
    TimedOut {
        /// The deadline waited for.
        deadline: Duration,
        /// Whether the API socket was listening by then.
        api_ready: bool,
    },
}

/// Polls every 10 ms until the daemon behind `watch` is ready, exits, or the deadline passes.
pub(super) fn wait_ready(watch: &ChildWatch, t: &Target) -> Wait {
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
    let deadline = match t.style {
        LaunchStyle::Go => t.settle.max(t.ready_timeout),
        LaunchStyle::Rs => t.ready_timeout,
    };
    let mut vhost_ready = None;
    loop {
        if let Some(ev) = watch.exit() {
            return Wait::Exited(ev);
        }
        if vhost_ready.is_none() {
            vhost_ready = if ready_line(t.log) {
                Some(ReadyBy::LogLine)
            } else {
                match t.style {
                    LaunchStyle::Go if started.elapsed() >= t.settle => Some(ReadyBy::Settled),
                    LaunchStyle::Rs if socket_listening(t.socket) => Some(ReadyBy::Listening),
                    _ => None,
                }
            };
        }
        // /proc/net/unix only shows our network namespace's sockets: a daemon that
        // unshared its own before binding is found by connecting.
        let api_ready = match t.api_socket {
            None => true,
            Some(p) => {
                socket_listening(p)
                    || (p.exists() && crate::api::probe(p, Duration::from_millis(100)))
            }
        };
        if let (Some(by), true) = (vhost_ready, api_ready) {
            return Wait::Ready(by);
        }
        if started.elapsed() >= deadline {
            return Wait::TimedOut {
                deadline,
                api_ready,
            };
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

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
