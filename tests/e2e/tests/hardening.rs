//! Confinement: capabilities and seccomp in every sandbox mode, what each seccomp action does
//! with a forbidden call, faults (disconnect and SIGTERM mid-I/O), and rootless use.

mod common;

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::session_with_file;
use vufs_frontend::{ConnectOptions, FuseSession, ROOT_ID};
use vufs_testkit::{daemon_bin, Build, Daemon, Launch, Scratch};

fn status_field(pid: u32, field: &str) -> String {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    st.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_owned()
}

fn caps_mask(bits: &[u32]) -> String {
    format!("{:016x}", bits.iter().fold(0u64, |m, b| m | 1 << b))
}

/// chown, dac_override, fowner, fsetid, setgid, setuid, mknod, setfcap.
const KEPT: [u32; 8] = [0, 1, 3, 4, 6, 7, 27, 31];

#[test]
fn capabilities_and_seccomp_in_every_sandbox() {
    for mode in ["namespace", "chroot", "none"] {
        let s = Scratch::new();
        let sandbox = format!("--sandbox={mode}");
        let mut d = s.start(Build::Normal, &[&sandbox, "--seccomp=kill"], &[]);
        d.wait_ready();
        let pid = d.serving_pid();
        if mode == "namespace" {
            assert_ne!(
                pid,
                d.pid(),
                "namespace: the serving process is the forked child"
            );
            for ns in ["mnt", "pid", "net", "ipc", "uts"] {
                let ours = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
                let its = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
                assert_ne!(ours, its, "namespace: {ns} namespace not unshared");
            }
        }
        // Without a sandbox, inodes are file handles, which need DAC_READ_SEARCH (bit 2).
        let want = match mode {
            "none" => caps_mask(&[&KEPT[..], &[2]].concat()),
            _ => caps_mask(&KEPT),
        };
        for set in ["CapEff", "CapPrm", "CapBnd"] {
            assert_eq!(status_field(pid, set), want, "{mode}: {set}");
        }
        assert_eq!(
            status_field(pid, "Seccomp"),
            "2",
            "{mode}: seccomp filter mode"
        );
        assert_eq!(status_field(pid, "NoNewPrivs"), "1", "{mode}");
        // Still serves.
        let mut fs = FuseSession::connect(s.socket()).unwrap();
        fs.init().unwrap();
        fs.getattr(ROOT_ID).unwrap();
    }
    // --modcaps changes the kept set.
    let s = Scratch::new();
    let mut d = s.start(
        Build::Normal,
        &["--sandbox=none", "--modcaps=+sys_admin:-mknod"],
        &[],
    );
    d.wait_ready();
    let mut bits: Vec<u32> = KEPT.iter().copied().filter(|b| *b != 27).collect();
    bits.extend([2, 21]);
    assert_eq!(status_field(d.pid(), "CapEff"), caps_mask(&bits));
}

#[test]
fn seccomp_actions_on_a_forbidden_call() {
    let hook = [("VIRTIOFSD_TEST_FORBIDDEN_SYSCALL", "1")];
    for (action, dies) in [
        ("kill", true),
        ("trap", true),
        ("log", false),
        ("none", false),
    ] {
        let s = Scratch::new();
        let seccomp = format!("--seccomp={action}");
        let mut d = s.start(Build::Seeded, &["--sandbox=none", &seccomp], &hook);
        if dies {
            let st = d
                .wait_exit(Duration::from_secs(10))
                .expect("killed by seccomp");
            assert_eq!(
                st.signal(),
                Some(libc::SIGSYS),
                "{action}: {st}\n{}",
                d.stderr()
            );
            assert!(
                !d.stderr().contains("still running"),
                "{action}: {}",
                d.stderr()
            );
        } else {
            d.wait_ready();
            assert!(
                d.stderr().contains("still running"),
                "{action}: {}",
                d.stderr()
            );
            let mut fs = FuseSession::connect(s.socket()).unwrap();
            fs.init().unwrap();
            fs.getattr(ROOT_ID).unwrap();
        }
    }
    // In the namespace and chroot sandboxes the parent reports the child's death by SIGSYS as
    // 128 + 31. (Spawned directly: the daemon is gone before a socket could be waited for.)
    for mode in ["namespace", "chroot"] {
        let s = Scratch::new();
        let out = Command::new(daemon_bin(Build::Seeded))
            .arg(format!("--shared-dir={}", s.share.display()))
            .arg(format!("--socket-path={}", s.socket().display()))
            .args([&format!("--sandbox={mode}"), "--seccomp=kill"])
            .envs(hook)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(128 + libc::SIGSYS),
            "{mode}: {}\n{err}",
            out.status
        );
        assert!(err.contains("TEST HOOK: calling"), "{mode}: {err}");
        assert!(
            !s.socket().exists(),
            "{mode}: the parent removes the socket"
        );
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn frontend_disconnect_mid_io_exits_cleanly() {
    for mode in ["namespace", "none"] {
        let s = Scratch::new();
        let sandbox = format!("--sandbox={mode}");
        let mut d = s.start(Build::Normal, &[&sandbox, "--thread-pool-size=4"], &[]);
        let (mut fs, ino, fh) = session_with_file(&s, &ConnectOptions::default());
        let data = pattern(1 << 20, 1);
        for i in 0..16u64 {
            fs.submit_write(ino, fh, i << 20, &data).unwrap();
        }
        drop(fs); // gone with writes in flight
        let st = d
            .wait_exit(Duration::from_secs(10))
            .expect("exit after disconnect");
        assert_eq!(st.code(), Some(0), "{mode}: {st}\n{}", d.stderr());
        assert!(!s.socket().exists(), "{mode}: socket removed");
    }
}

#[test]
fn sigterm_mid_write_exits_cleanly_and_keeps_acknowledged_data() {
    let s = Scratch::new();
    let mut d = s.start(
        Build::Normal,
        &["--sandbox=namespace", "--seccomp=kill"],
        &[],
    );
    let (mut fs, ino, fh) = session_with_file(&s, &ConnectOptions::default());
    let data = pattern(1 << 20, 7);
    for i in 0..8u64 {
        assert_eq!(fs.write(ino, fh, i << 20, &data).unwrap(), 1 << 20);
    }
    for i in 8..16u64 {
        fs.submit_write(ino, fh, i << 20, &data).unwrap();
    }
    d.signal(libc::SIGTERM);
    let st = d
        .wait_exit(Duration::from_secs(10))
        .expect("exit on SIGTERM");
    assert_eq!(st.code(), Some(0), "{st}\n{}", d.stderr());
    assert!(!s.socket().exists(), "socket removed");
    assert!(
        !s.dir.path().join("vhost.sock.pid").exists(),
        "pid file removed"
    );
    let host = std::fs::read(s.share.join("f")).unwrap();
    assert!(
        host.len() >= 8 << 20,
        "acknowledged writes lost: {} bytes",
        host.len()
    );
    for i in 0..8 {
        assert!(
            host[i << 20..(i + 1) << 20] == data[..],
            "acknowledged MiB {i} differs"
        );
    }
}

/// Starts the daemon as `nobody` with `args`.
fn as_nobody(args: &[String]) -> Daemon {
    Launch::new(daemon_bin(Build::Normal))
        .user(65534, 65534)
        .args(args)
        .spawn()
        .unwrap()
}

fn chown_nobody(p: &Path) {
    std::os::unix::fs::chown(p, Some(65534), Some(65534)).unwrap();
}

#[test]
fn rootless_sandbox_none_serves_an_owned_directory() {
    let s = Scratch::new();
    chown_nobody(s.dir.path());
    chown_nobody(&s.share);
    let share = format!("--shared-dir={}", s.share.display());
    let sock = format!("--socket-path={}", s.socket().display());

    // The default sandbox needs root: a clear message, no socket.
    let mut d = as_nobody(&[share.clone(), sock.clone()]);
    let status = d.wait();
    let err = d.stderr();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("needs root") && err.contains("--sandbox=none"),
        "{err}"
    );
    assert!(!s.socket().exists());

    let mut child = as_nobody(&[share, sock, "--sandbox=none".into()]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.socket().exists() {
        assert!(child.try_status().is_none(), "rootless daemon exited");
        assert!(Instant::now() < deadline, "no socket");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    let mut fs = FuseSession::connect(s.socket()).unwrap();
    fs.init().unwrap();
    let (e, o) = fs
        .create(ROOT_ID, b"mine", 0o644, libc::O_RDWR as u32)
        .unwrap();
    assert_eq!(fs.write(e.nodeid, o.fh, 0, b"rootless").unwrap(), 8);
    assert_eq!(fs.read(e.nodeid, o.fh, 0, 64).unwrap(), b"rootless");
    drop(fs);
    let meta = std::fs::metadata(s.share.join("mine")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (65534, 65534),
        "created as the daemon's user"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let st = loop {
        if let Some(st) = child.try_status() {
            break st;
        }
        assert!(Instant::now() < deadline, "rootless daemon did not exit");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(st.success(), "{st}");
}
