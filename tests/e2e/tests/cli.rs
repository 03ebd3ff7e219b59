//! The command line as Kata and operators use it: help, version, capabilities, repeated flags,
//! the legacy `-o` forms, rejected flags and values (exit 2, message names the flag), the pid
//! lock, signals, and an inherited listening socket.

use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use vufs_testkit::{daemon_bin, Build, Daemon, Scratch};

fn run(args: &[&str]) -> Output {
    let mut cmd = Command::new(daemon_bin(Build::Normal));
    cmd.args(args).stdin(Stdio::null());
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(child, Duration::from_secs(10))
}

fn wait_output(mut child: std::process::Child, timeout: Duration) -> Output {
    let deadline = std::time::Instant::now() + timeout;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("virtiofsd did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn help_documents_every_flag() {
    let o = run(&["--help"]);
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--shared-dir",
        "--socket-path",
        "--fd",
        "--socket-group",
        "--tag",
        "--cache",
        "--no-readdirplus",
        "--writeback",
        "--allow-direct-io",
        "--xattr",
        "--readonly",
        "--killpriv-v2",
        "--no-killpriv-v2",
        "--announce-submounts",
        "--no-announce-submounts",
        "--inode-file-handles",
        "--rlimit-nofile",
        "--thread-pool-size",
        "--sandbox",
        "--log-level",
        "--syslog",
        "--print-capabilities",
        "-o",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[test]
fn version_and_capabilities() {
    let o = run(&["--version"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("virtiofsd "));

    let o = run(&["--print-capabilities"]);
    assert!(o.status.success());
    let caps = String::from_utf8_lossy(&o.stdout);
    assert!(caps.contains("\"type\": \"fs\""), "{caps}");
    assert!(
        !caps.contains("migrate"),
        "must not claim migration: {caps}"
    );
}

#[test]
fn rejected_flags_and_values_exit_2_naming_them() {
    let s = Scratch::new();
    let share = format!("--shared-dir={}", s.share.display());
    let sock = format!("--socket-path={}", s.socket().display());
    let cases: &[(&[&str], &str)] = &[
        (&["--posix-acl"], "--posix-acl"),
        (&["--security-label"], "--security-label"),
        (&["--xattrmap=:prefix:all::"], "--xattrmap"),
        (&["--allow-mmap"], "--allow-mmap"),
        (&["--migration-mode=find-paths"], "--migration-mode"),
        (&["--migration-on-error=abort"], "--migration-on-error"),
        (
            &["--migration-verify-handles"],
            "--migration-verify-handles",
        ),
        (&["--migration-confirm-paths"], "--migration-confirm-paths"),
        (&["--uid-map=:0:1000:1:"], "--uid-map"),
        (&["--gid-map=:0:1000:1:"], "--gid-map"),
        (&["--translate-uid=guest:0:1000:1"], "--translate-uid"),
        (&["--translate-gid=guest:0:1000:1"], "--translate-gid"),
        (&["--preserve-noatime"], "--preserve-noatime"),
        (&["--cache=sometimes"], "--cache"),
        (&["--inode-file-handles=maybe"], "--inode-file-handles"),
        (&["--thread-pool-size=-1"], "--thread-pool-size"),
        (&["--max-request-queues=0"], "--max-request-queues"),
        (&["--max-request-queues=17"], "--max-request-queues"),
        (&["--sandbox=jail"], "--sandbox"),
        (&["--seccomp=maybe"], "--seccomp"),
        (&["--modcaps=sys_admin"], "--modcaps"),
        (&["--modcaps=+frobnicate"], "--modcaps"),
        (&["-o", "sandbox=jail"], "-o sandbox"),
        (&["--log-level=loud"], "--log-level"),
        (&["--tag="], "--tag"),
        (&["--tag=0123456789012345678901234567890123456"], "--tag"),
        (&["-o", "cache=sometimes"], "-o cache"),
        (&["-o", "xattrmap=x"], "-o xattrmap"),
        (&["-o", "frobnicate"], "-o frobnicate"),
        (&["--bogus-flag"], "--bogus-flag"),
    ];
    for (args, named) in cases {
        let mut all = vec![share.as_str(), sock.as_str()];
        all.extend_from_slice(args);
        let o = run(&all);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(named),
            "{args:?}: message must name {named}: {}",
            stderr(&o)
        );
    }
    // Missing or wrong essentials.
    for (args, named) in [
        (vec![sock.as_str()], "--shared-dir"),
        (vec![share.as_str()], "--socket-path"),
        (
            vec![sock.as_str(), "--shared-dir=/nonexistent/dir"],
            "--shared-dir",
        ),
        (vec![share.as_str(), "--fd=0"], "--fd=0"),
        (vec![share.as_str(), sock.as_str(), "--fd=3"], "--fd"),
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(named),
            "{args:?} must name {named}: {}",
            stderr(&o)
        );
    }
    assert!(
        !s.socket().exists(),
        "nothing may be bound on a usage error"
    );
}

#[test]
fn kata_command_lines_with_repeats_and_compat_forms_start() {
    let s = Scratch::new();
    let bin = daemon_bin(Build::Normal);
    let share = format!("--shared-dir={}", s.share.display());
    // runtime-rs style with its default extra args, plus repeats (last wins) and -o forms.
    let args = [
        share.as_str(),
        "--cache=auto",
        "--cache=never",
        "--thread-pool-size=1",
        "-o",
        "announce_submounts",
        "--announce-submounts",
        "--no-announce-submounts",
        "--announce-submounts",
        "--xattr",
        "--xattr",
        "-o",
        "no_posix_lock,xattr",
        "-f",
        "--syslog",
        "--log-level=debug",
        "--log-level=info",
    ];
    let mut d = Daemon::start(&bin, &s.socket(), &args, &[]);
    // runtime-rs treats the daemon as ready on this exact stderr line.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !d
        .stderr()
        .contains("Waiting for vhost-user socket connection")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no ready line:\n{}",
            d.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(d.alive());
    // -o source= is the legacy --shared-dir.
    let s2 = Scratch::new();
    let src = format!("source={}", s2.share.display());
    let mut d2 = Daemon::start(&bin, &s2.socket(), &["-o", &src, "-o", "cache=none"], &[]);
    assert!(d2.alive(), "{}", d2.stderr());
}

#[test]
fn second_daemon_on_same_socket_refuses_and_sigterm_cleans_up() {
    let s = Scratch::new();
    let bin = daemon_bin(Build::Normal);
    let share = format!("--shared-dir={}", s.share.display());
    let mut first = Daemon::start(&bin, &s.socket(), &[&share], &[]);
    let pid_file = s.dir.path().join("vhost.sock.pid");
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    assert_eq!(pid.trim(), first.pid().to_string());

    let o = run(&[&share, &format!("--socket-path={}", s.socket().display())]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("in use by another virtiofsd"),
        "{}",
        stderr(&o)
    );
    assert!(
        s.socket().exists(),
        "the second daemon must not remove a live socket"
    );
    assert!(
        UnixStream::connect(s.socket()).is_ok(),
        "first daemon still listening"
    );
    drop(UnixStream::connect(s.socket()));

    // The connection above made the first daemon serve and then see a disconnect: exit 0.
    let st = first
        .wait_exit(Duration::from_secs(10))
        .expect("exit after disconnect");
    assert!(st.success(), "{st}: {}", first.stderr());
    assert!(
        !s.socket().exists() && !pid_file.exists(),
        "socket and pid file removed"
    );

    for sig in [libc::SIGTERM, libc::SIGINT] {
        let mut d = Daemon::start(&bin, &s.socket(), &[&share], &[]);
        d.signal(sig);
        let st = d
            .wait_exit(Duration::from_secs(10))
            .expect("exit on signal");
        assert_eq!(st.code(), Some(0), "signal {sig}: {}", d.stderr());
        assert!(
            !s.socket().exists() && !pid_file.exists(),
            "signal {sig}: files removed"
        );
    }
}

#[test]
fn sigterm_during_start_up_still_exits_cleanly_in_every_sandbox() {
    // The socket appears before the sandbox is entered, so a runtime may signal the daemon
    // while it is still starting: the signal must neither kill it without cleanup nor be lost
    // (the namespace child is pid 1 of its namespace, which drops signals it has no handler
    // for). The delays sweep the start-up steps after the socket exists (polled every 1 ms).
    let s = Scratch::new();
    let bin = daemon_bin(Build::Normal);
    let share = format!("--shared-dir={}", s.share.display());
    let pid_file = s.dir.path().join("vhost.sock.pid");
    for mode in ["namespace", "chroot", "none"] {
        let sandbox = format!("--sandbox={mode}");
        for delay_us in (0..60).map(|i| i * 100).chain([20_000, 50_000]) {
            let mut d = Daemon::start(&bin, &s.socket(), &[&share, &sandbox], &[]);
            std::thread::sleep(Duration::from_micros(delay_us));
            d.signal(libc::SIGTERM);
            let st = d.wait_exit(Duration::from_secs(5)).unwrap_or_else(|| {
                panic!(
                    "{mode}, SIGTERM {delay_us} us after the socket: still running after 5 s\n{}",
                    d.stderr()
                )
            });
            assert_eq!(
                st.code(),
                Some(0),
                "{mode}, SIGTERM {delay_us} us after the socket: {st}\n{}",
                d.stderr()
            );
            assert!(
                !s.socket().exists() && !pid_file.exists(),
                "{mode}, {delay_us} us: socket and pid file removed"
            );
        }
    }
}

#[test]
fn inherited_listening_fd_is_accepted_on() {
    // Kata's Go runtime: it creates and listens on the socket and passes it as fd 3.
    let s = Scratch::new();
    let listener = UnixListener::bind(s.socket()).unwrap();
    let share = format!("--shared-dir={}", s.share.display());
    let args = [
        "--syslog",
        "--cache=auto",
        "--fd=3",
        "--thread-pool-size=1",
        &share,
    ];
    let mut d = Daemon::start_with_fd(
        &daemon_bin(Build::Normal),
        &listener,
        &s.socket(),
        &args,
        &[],
    );
    drop(listener);
    // A full vhost-user handshake on the inherited socket proves the daemon accepts on it.
    let mut fs = vufs_frontend::FuseSession::connect(s.socket())
        .expect("vhost-user handshake over the inherited fd");
    fs.init().expect("FUSE INIT over the inherited fd");
    fs.getattr(vufs_frontend::ROOT_ID)
        .expect("GETATTR over the inherited fd");
    drop(fs);
    let st = d
        .wait_exit(Duration::from_secs(10))
        .expect("exit after disconnect");
    assert!(st.success(), "{st}: {}", d.stderr());
    assert!(
        s.socket().exists(),
        "--fd: the socket belongs to the runtime; not removed"
    );
}

#[test]
fn socket_group_owns_the_socket() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let s = Scratch::new();
    let share = format!("--shared-dir={}", s.share.display());
    // The socket must appear with its final owner and mode (a VMM of the group may connect the
    // moment it exists), also when its path is too long for the private-directory detour.
    let deep = s
        .dir
        .path()
        .join("d".repeat(95 - s.dir.path().as_os_str().len()));
    std::fs::create_dir(&deep).unwrap();
    let long = deep.join("v.sock"); // 101 bytes; the detour's name would be 115 > 107
    for (round, socket) in (0..10).map(|r| (r, s.socket())).chain([(10, long)]) {
        let mut d = Daemon::start(
            &daemon_bin(Build::Normal),
            &socket,
            &[&share, "--socket-group=daemon"],
            &[],
        );
        let meta = std::fs::metadata(&socket).unwrap();
        assert_eq!(meta.gid(), 1, "round {round}: the group `daemon` owns it");
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o660,
            "round {round}: the group may connect"
        );
        d.signal(libc::SIGTERM);
        assert_eq!(
            d.wait_exit(Duration::from_secs(5)).and_then(|s| s.code()),
            Some(0)
        );
        let strays: Vec<_> = std::fs::read_dir(socket.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with(".virtiofsd-"))
            .collect();
        assert!(strays.is_empty(), "round {round}: left behind {strays:?}");
    }

    let s2 = Scratch::new();
    let share2 = format!("--shared-dir={}", s2.share.display());
    let sock2 = format!("--socket-path={}", s2.socket().display());
    let o = run(&[&share2, &sock2, "--socket-group=no-such-group-here"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("no-such-group-here"), "{}", stderr(&o));
    let o = run(&[&share2, "--fd=3", "--socket-group=daemon"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--socket-group"), "{}", stderr(&o));
}
