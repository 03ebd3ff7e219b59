//! What the confined daemon holds, and how its sockets appear.
//!
//! - Descriptors: every descriptor of the confined process (the sandbox's child), read from the
//!   host through `/proc/<pid>/fd`, is classified by device and inode: inside the share, a
//!   socket or kernel object, the sandbox's own procfs, or anything else (a failure). Before
//!   the first FUSE request only the share root may be open; after a workload, nothing outside
//!   the share. The procfs it holds must be one of its own pid namespace mounted `subset=pid`:
//!   from its `/proc/<pid>/fd` directory, `../..` lists only `1`, `self` and `thread-self`, and
//!   `../../1/root` is the share (with the host's procfs it is the host's root). The daemon is
//!   started with a descriptor of a host directory leaked to it, as a careless runtime might.
//! - Sockets: the vhost-user and API sockets are connected to the instant their path appears,
//!   over many starts in every sandbox mode: every connect succeeds, and the API socket is 0600
//!   from its first appearance. A seeded bug (bind in place, a pause before listen, the mode set
//!   after) must be caught.

use std::collections::HashSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vufs_frontend::{FuseSession, ROOT_ID};
use vufs_testkit::{daemon_bin, Build, Daemon, Launch, Scratch};

const PROC_SUPER_MAGIC: libc::__fsword_t = 0x9fa0;

/// (device, inode) of every entry of the share, the root included.
fn share_ids(share: &Path) -> HashSet<(u64, u64)> {
    fn walk(dir: &Path, out: &mut HashSet<(u64, u64)>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let md = std::fs::symlink_metadata(e.path()).unwrap();
            out.insert((md.dev(), md.ino()));
            if md.is_dir() {
                walk(&e.path(), out);
            }
        }
    }
    let md = std::fs::metadata(share).unwrap();
    let mut out = HashSet::from([(md.dev(), md.ino())]);
    walk(share, &mut out);
    out
}

/// What one descriptor of the confined process refers to.
#[derive(Debug, PartialEq)]
enum Held {
    /// A socket, a kernel object without a path (epoll, eventfd, timerfd), or guest memory.
    Kernel,
    /// A procfs other than the host's (checked further by [`check_procfs`]).
    SandboxProc { fd: u32, dir: bool, dev: u64 },
    /// A directory or file of the share: (device, inode).
    Share(u64, u64),
    /// Anything else: what it is, as the host sees it.
    Host(String),
}

fn stat(p: &Path) -> std::io::Result<(libc::stat, libc::statfs)> {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: stat and statfs write into the zeroed structs we pass.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        let mut sf: libc::statfs = std::mem::zeroed();
        if libc::stat(c.as_ptr(), &mut st) != 0 || libc::statfs(c.as_ptr(), &mut sf) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok((st, sf))
    }
}

/// Every descriptor of `pid` but stdin/stdout/stderr, classified.
fn classify(pid: u32, share: &Path) -> Vec<(u32, String, Held)> {
    let ids = share_ids(share);
    let host_proc = std::fs::metadata("/proc").unwrap().dev();
    let dir = PathBuf::from(format!("/proc/{pid}/fd"));
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let fd: u32 = e.file_name().to_str().unwrap().parse().unwrap();
        if fd <= 2 {
            continue;
        }
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue; // closed meanwhile
        };
        let target = target.display().to_string();
        let held = if target.starts_with("socket:") || target.starts_with("anon_inode:") {
            Held::Kernel
        } else {
            match stat(&e.path()) {
                Err(err) => Held::Host(format!("cannot stat: {err}")),
                Ok((st, sf)) if sf.f_type == PROC_SUPER_MAGIC => match st.st_dev {
                    d if d == host_proc => Held::Host("the host's procfs".into()),
                    dev => Held::SandboxProc {
                        fd,
                        dir: st.st_mode & libc::S_IFMT == libc::S_IFDIR,
                        dev,
                    },
                },
                // Guest memory: the frontend's memfd, received over the socket.
                Ok((st, _)) if target.starts_with("/memfd:") && st.st_nlink == 0 => Held::Kernel,
                Ok((st, _)) if ids.contains(&(st.st_dev, st.st_ino)) => {
                    Held::Share(st.st_dev, st.st_ino)
                }
                Ok((st, _)) => Held::Host(format!(
                    "mode {:o}, device {:x}, inode {}",
                    st.st_mode, st.st_dev, st.st_ino
                )),
            }
        };
        out.push((fd, target, held));
    }
    out
}

/// Entries of the directory at `p`, opened through `dir` (an `O_PATH` directory fd).
fn list_at(dir: &std::fs::File, p: &str) -> std::io::Result<HashSet<String>> {
    let path = format!(
        "/proc/self/fd/{}/{p}",
        std::os::unix::io::AsRawFd::as_raw_fd(dir)
    );
    Ok(std::fs::read_dir(path)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect())
}

/// The procfs the confined process holds is one of its own pid namespace, `subset=pid`: all
/// its procfs descriptors are of one filesystem, and from a directory of it (`/proc/1/fd`),
/// the procfs root shows only the process itself, and its pid 1's root is the share.
fn check_procfs(pid: u32, share: &Path, held: &[(u32, String, Held)]) -> Result<(), String> {
    let procs: Vec<_> = held
        .iter()
        .filter_map(|(_, _, h)| match h {
            Held::SandboxProc { fd, dir, dev } => Some((*fd, *dir, *dev)),
            _ => None,
        })
        .collect();
    let devs: HashSet<u64> = procs.iter().map(|p| p.2).collect();
    if devs.len() > 1 {
        return Err(format!("descriptors of {} procfs instances", devs.len()));
    }
    let Some((fd, _, _)) = procs.iter().find(|p| p.1) else {
        return Err("no procfs directory held (the library keeps /proc/self/fd)".into());
    };
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(format!("/proc/{pid}/fd/{fd}"))
        .map_err(|e| format!("open its procfs directory: {e}"))?;
    let root = list_at(&dir, "../..").map_err(|e| format!("list its procfs root: {e}"))?;
    let want: HashSet<String> = ["1", "self", "thread-self"].map(String::from).into();
    if root != want {
        let mut seen: Vec<_> = root.into_iter().collect();
        seen.sort();
        seen.truncate(12);
        return Err(format!(
            "its procfs root is not its own pid namespace with subset=pid: {seen:?}..."
        ));
    }
    let p1 = format!(
        "/proc/self/fd/{}/../../1/root",
        std::os::unix::io::AsRawFd::as_raw_fd(&dir)
    );
    let (st, _) = stat(Path::new(&p1)).map_err(|e| format!("stat ../../1/root: {e}"))?;
    let sh = std::fs::metadata(share).unwrap();
    if (st.st_dev, st.st_ino) != (sh.dev(), sh.ino()) {
        return Err("../../1/root from its procfs is not the share".into());
    }
    Ok(())
}

/// Descriptors that are neither the share's, the sandbox's procfs, nor kernel objects.
fn host_held(held: &[(u32, String, Held)]) -> Vec<String> {
    held.iter()
        .filter_map(|(fd, t, h)| match h {
            Held::Host(what) => Some(format!("fd {fd} -> {t} ({what})")),
            _ => None,
        })
        .collect()
}

/// Creates, writes, reads and lists in the share, leaving files and directories open.
fn workload(fs: &mut FuseSession) {
    let d = fs.mkdir(ROOT_ID, b"d", 0o755).unwrap();
    let (e, o) = fs
        .create(d.nodeid, b"f", 0o644, libc::O_RDWR as u32)
        .unwrap();
    assert_eq!(fs.write(e.nodeid, o.fh, 0, b"confined").unwrap(), 8);
    assert_eq!(fs.read(e.nodeid, o.fh, 0, 64).unwrap(), b"confined");
    fs.fsync(e.nodeid, o.fh, false).unwrap();
    let g = fs.lookup(ROOT_ID, b"g").unwrap();
    let go = fs.open(g.nodeid, libc::O_RDONLY as u32).unwrap();
    assert_eq!(fs.read(g.nodeid, go.fh, 0, 64).unwrap(), b"g-data");
    for dir in [ROOT_ID, d.nodeid] {
        let h = fs.opendir(dir).unwrap();
        let names: Vec<_> = fs.readdir(dir, h.fh, 0, 4096).unwrap();
        assert!(!names.is_empty(), "readdir: no entries");
    }
    fs.statfs(ROOT_ID).unwrap();
    fs.getattr(e.nodeid).unwrap();
}

fn descriptors_hold_nothing_of_the_host(mode: &str) {
    let s = Scratch::new();
    std::fs::write(s.share.join("g"), b"g-data").unwrap();
    let share = format!("--shared-dir={}", s.share.display());
    let sandbox = format!("--sandbox={mode}");
    let args = [
        share.as_str(),
        &sandbox,
        "--seccomp=kill",
        "--announce-submounts",
        "--api-socket=auto",
    ];
    // A descriptor of a host directory leaked by whoever starts the daemon (not close-on-exec).
    let outside = CString::new(s.outside.as_os_str().as_bytes()).unwrap();
    // SAFETY: open(2) of a NUL-terminated path; closed below.
    let leaked = unsafe { libc::open(outside.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
    assert!(leaked >= 0, "open {}", s.outside.display());
    let mut d = Daemon::start(&daemon_bin(Build::Normal), &s.socket(), &args, &[]);
    // SAFETY: our own descriptor, opened above.
    unsafe { libc::close(leaked) };
    d.wait_ready();
    let pid = d.serving_pid();

    // Before any request: the share root, the sandbox's procfs, sockets and kernel objects.
    let before = classify(pid, &s.share);
    let root = std::fs::metadata(&s.share).unwrap();
    let shared: Vec<_> = before
        .iter()
        .filter(|(_, _, h)| matches!(h, Held::Share(..)))
        .collect();
    let host = host_held(&before);
    assert!(
        host.is_empty(),
        "{mode}: before any request the confined daemon holds of the host: {host:#?}"
    );
    assert!(
        shared.len() == 1 && shared[0].2 == Held::Share(root.dev(), root.ino()),
        "{mode}: before any request only the share root may be open: {shared:?}"
    );
    check_procfs(pid, &s.share, &before).unwrap_or_else(|e| panic!("{mode}: {e}"));
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    assert!(
        !mountinfo.contains(" - proc "),
        "{mode}: no procfs is reachable from its root:\n{mountinfo}"
    );

    assert_ne!(pid, d.pid(), "{mode}: the confined process is a child");

    // After a workload (files and directories still open): still nothing outside the share.
    let mut fs = FuseSession::connect(s.socket()).unwrap();
    fs.init().unwrap();
    workload(&mut fs);
    let after = classify(pid, &s.share);
    let host = host_held(&after);
    assert!(
        host.is_empty(),
        "{mode}: after a workload the confined daemon holds of the host: {host:#?}"
    );
    assert!(
        after
            .iter()
            .filter(|h| matches!(h.2, Held::Share(..)))
            .count()
            > 1,
        "{mode}: the workload's files are open: {after:?}"
    );
    check_procfs(pid, &s.share, &after).unwrap_or_else(|e| panic!("{mode}: {e}"));

    // The parent outside still removes what the daemon created.
    drop(fs);
    let st = d.wait_exit(Duration::from_secs(10)).expect("exit");
    assert_eq!(st.code(), Some(0), "{mode}: {st}\n{}", d.stderr());
    let left: Vec<_> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("vhost.sock") || n.starts_with(".virtiofsd-"))
        .collect();
    assert!(left.is_empty(), "{mode}: left behind {left:?}");
}

#[test]
fn namespace_sandbox_holds_nothing_of_the_host() {
    descriptors_hold_nothing_of_the_host("namespace");
}

#[test]
fn chroot_sandbox_holds_nothing_of_the_host() {
    descriptors_hold_nothing_of_the_host("chroot");
}

/// Spawns the daemon in working directory `cwd` without waiting for anything.
fn spawn_in(build: Build, args: &[String], env: &[(&str, &str)], cwd: &Path) -> Daemon {
    Launch::new(daemon_bin(build))
        .args(args)
        .envs(env)
        .current_dir(cwd)
        .spawn()
        .unwrap()
}

/// One start: both sockets are watched with a tight loop on lstat, and connected to the
/// instant each appears. Returns what went wrong.
fn first_contact(build: Build, mode: &str, socket: &Path, env: &[(&str, &str)]) -> Vec<String> {
    let s = Scratch::new();
    let api = PathBuf::from(format!("{}.api", socket.display()));
    let args = [
        format!("--shared-dir={}", s.share.display()),
        format!("--socket-path={}", socket.display()),
        format!("--api-socket={}", api.display()),
        format!("--sandbox={mode}"),
    ];
    let mut child = spawn_in(build, &args, env, Path::new("."));
    let mut problems = Vec::new();
    let (mut vhost, mut vhost_seen, mut api_seen) = (None, false, false);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !vhost_seen || !api_seen {
        if !vhost_seen && std::fs::symlink_metadata(socket).is_ok() {
            vhost_seen = true;
            match UnixStream::connect(socket) {
                Ok(c) => vhost = Some(c),
                Err(e) => problems.push(format!("vhost-user socket: connect at once: {e}")),
            }
        }
        if !api_seen {
            if let Ok(md) = std::fs::symlink_metadata(&api) {
                api_seen = true;
                let mode = md.permissions().mode() & 0o7777;
                if mode != 0o600 {
                    problems.push(format!("API socket first seen with mode {mode:o}"));
                }
                if let Err(e) = UnixStream::connect(&api) {
                    problems.push(format!("API socket: connect at once: {e}"));
                }
            }
        }
        if Instant::now() > deadline || child.try_status().is_some() {
            problems.push("no sockets (the daemon exited or took over 10 s)".into());
            break;
        }
    }
    // The frontend goes away (or, when none could connect, SIGTERM): the daemon exits 0 and
    // its parent removes what it created.
    if vhost.take().is_none() {
        child.signal(libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let st = loop {
        if let Some(st) = child.try_status() {
            break Some(st);
        }
        if Instant::now() > deadline {
            child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    if st.and_then(|s| s.code()) != Some(0) {
        child.kill();
        child.wait_exit(Duration::ZERO);
        let err = child.stderr();
        problems.push(format!("exit {st:?} after the disconnect:\n{err}"));
    }
    child.kill();
    for p in [socket.to_path_buf(), api] {
        if p.exists() {
            problems.push(format!("{} left behind", p.display()));
        }
    }
    problems
}

/// `rounds` starts in `mode` on an ordinary socket path, and a few on a path too long for the
/// private directory's name (bound through `/proc/self/fd`). Returns the failures by round.
fn appearances(build: Build, mode: &str, rounds: usize, env: &[(&str, &str)]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let deep = dir
        .path()
        .join("d".repeat(95 - dir.path().as_os_str().len()));
    std::fs::create_dir(&deep).unwrap();
    let long = deep.join("v.sock"); // 101 bytes; the private directory's name would be 115
    let mut failures = Vec::new();
    for round in 0..rounds {
        let socket = match round % 20 {
            19 => long.clone(),
            _ => dir.path().join("v.sock"),
        };
        for p in first_contact(build, mode, &socket, env) {
            failures.push(format!("{mode} round {round} ({}): {p}", socket.display()));
        }
    }
    failures
}

fn sockets_listen_when_they_appear(mode: &str) {
    let failures = appearances(Build::Normal, mode, 100, &[]);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn sockets_listen_when_they_appear_namespace() {
    sockets_listen_when_they_appear("namespace");
}

#[test]
fn sockets_listen_when_they_appear_chroot() {
    sockets_listen_when_they_appear("chroot");
}

#[test]
fn sockets_listen_when_they_appear_none() {
    sockets_listen_when_they_appear("none");
}

#[test]
fn sockets_listen_when_they_appear_seeded_bug_is_caught() {
    let seeded = [("VIRTIOFSD_SEEDED_BUG_BIND_IN_PLACE", "1")];
    let failures = appearances(Build::Seeded, "namespace", 5, &seeded);
    let refused = failures
        .iter()
        .filter(|f| f.contains("connect at once"))
        .count();
    let mode = failures
        .iter()
        .filter(|f| f.contains("first seen with mode"))
        .count();
    assert!(
        refused > 0 && mode > 0,
        "the bind-in-place seeded bug went unnoticed: {failures:#?}"
    );
}

/// A relative `--socket-path` (and the API socket and pid file beside it) is removed at exit
/// too, by the parent outside the sandbox.
#[test]
fn relative_socket_paths_are_removed_at_exit() {
    for mode in ["namespace", "chroot", "none"] {
        let s = Scratch::new();
        let args = [
            format!("--shared-dir={}", s.share.display()),
            "--socket-path=rel.sock".to_string(),
            "--api-socket=auto".to_string(),
            format!("--sandbox={mode}"),
        ];
        let mut child = spawn_in(Build::Normal, &args, &[], s.dir.path());
        let sock = s.dir.path().join("rel.sock");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sock.exists() || !s.dir.path().join("rel.sock.api").exists() {
            assert!(child.try_status().is_none(), "{mode}: exited early");
            assert!(Instant::now() < deadline, "{mode}: no sockets");
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(UnixStream::connect(&sock).unwrap());
        assert_eq!(child.wait().code(), Some(0), "{mode}");
        for f in ["rel.sock", "rel.sock.api", "rel.sock.pid"] {
            assert!(!s.dir.path().join(f).exists(), "{mode}: {f} left behind");
        }
    }
}
