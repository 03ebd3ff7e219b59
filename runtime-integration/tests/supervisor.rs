//! The supervisor against the real daemon binary (and small shell-script fixtures standing in
//! for broken daemons).

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{daemon_bin, running, wait_for_text, wait_gone, Scratch};
use runtime_integration::annotations;
use runtime_integration::supervisor::{SandboxState, READY_LINE};
use runtime_integration::{
    CommandOptions, Error, LaunchStyle, StartOptions, StopOutcome, Supervisor, VirtioFsConfig,
};

fn config(s: &Scratch) -> VirtioFsConfig {
    let p = common::write_config(s.dir.path(), &daemon_bin(), &[]);
    VirtioFsConfig::load(p, "qemu").unwrap()
}

fn opts(style: LaunchStyle) -> StartOptions {
    StartOptions {
        command: CommandOptions { style, xattr: true },
        ..StartOptions::default()
    }
}

fn assert_clean(s: &Scratch, id: &str, pid: u32) {
    assert!(
        wait_gone(pid, Duration::from_secs(2)),
        "pid {pid} still running"
    );
    let dir = s.state.join(id);
    assert!(!dir.join("virtiofsd.sock").exists(), "socket left");
    assert!(!dir.join("state.json").exists(), "state left");
    assert!(!dir.exists(), "sandbox dir left");
}

#[test]
fn start_status_stop_leaves_nothing_both_styles() {
    for style in [LaunchStyle::Go, LaunchStyle::Rs] {
        let s = Scratch::new();
        let cfg = config(&s);
        let sup = Supervisor::new(&s.state);
        let mut d = sup
            .start("sb1", &cfg, &s.share, &opts(style), None)
            .unwrap();
        let pid = d.pid();
        assert!(running(pid));
        let st = sup.status("sb1").unwrap();
        assert_eq!(st.state, "running", "{st:?}");
        assert_eq!(st.pid, Some(pid));
        let m = std::fs::metadata(d.socket()).unwrap();
        assert!(m.file_type().is_socket());
        let recorded: SandboxState =
            serde_json::from_slice(&std::fs::read(&d.paths().state).unwrap()).unwrap();
        assert_eq!(recorded.pid, pid);
        assert_eq!(recorded.launch, style);
        assert_eq!(&recorded.args, &common::cmdline(pid)[1..]);
        assert_eq!(sup.list().unwrap().len(), 1);
        assert_eq!(
            d.stop(Duration::from_secs(2)).unwrap(),
            StopOutcome::Stopped
        );
        assert_clean(&s, "sb1", pid);
        // Idempotent.
        assert_eq!(
            d.stop(Duration::from_secs(2)).unwrap(),
            StopOutcome::AlreadyExited
        );
        assert_eq!(
            sup.stop("sb1", Duration::from_secs(1)).unwrap(),
            StopOutcome::NotFound
        );
        assert_eq!(sup.status("sb1").unwrap().state, "not-found");
    }
}

#[test]
fn go_style_passes_a_listening_fd3_the_daemon_accepts_on() {
    let s = Scratch::new();
    let cfg = config(&s);
    let sup = Supervisor::new(&s.state);
    let mut d = sup
        .start("go1", &cfg, &s.share, &opts(LaunchStyle::Go), None)
        .unwrap();
    let args = common::cmdline(d.pid());
    assert!(
        args.contains(&"--fd=3".to_string()) && !args.contains(&"--syslog".to_string()),
        "{args:?}"
    );
    assert!(
        !args.iter().any(|a| a.starts_with("--socket-path")),
        "{args:?}"
    );
    let fd3 = std::fs::read_link(format!("/proc/{}/fd/3", d.pid())).unwrap();
    assert!(fd3.to_string_lossy().starts_with("socket:"), "{fd3:?}");
    std::fs::write(s.share.join("hello"), b"hi").unwrap();
    let mut fs = vufs_frontend::FuseSession::connect(d.socket()).expect("vhost-user connect");
    fs.init().expect("FUSE INIT through the inherited socket");
    let e = fs.lookup(vufs_frontend::ROOT_ID, b"hello").expect("lookup");
    assert_eq!(e.attr.size, 2);
    wait_for_text(d.log_path(), "Client connected", Duration::from_secs(5));
    drop(fs);
    d.stop(Duration::from_secs(2)).unwrap();
}

#[test]
fn rs_style_waits_for_the_ready_line() {
    let s = Scratch::new();
    let cfg = config(&s);
    let sup = Supervisor::new(&s.state);
    let mut d = sup
        .start("rs1", &cfg, &s.share, &opts(LaunchStyle::Rs), None)
        .unwrap();
    let args = common::cmdline(d.pid());
    assert!(
        args.contains(&format!("--socket-path={}", d.socket().display())),
        "{args:?}"
    );
    assert!(!args.contains(&"--syslog".to_string()));
    // Ready means listening (the socket, or the ready line): the line itself reaches the log
    // through the pump thread, possibly a moment after `start` returned.
    assert!(runtime_integration::supervisor::socket_listening(
        d.socket()
    ));
    wait_for_text(d.log_path(), READY_LINE, Duration::from_secs(5));
    let mut fs = vufs_frontend::FuseSession::connect(d.socket()).unwrap();
    fs.init().unwrap();
    drop(fs);
    d.stop(Duration::from_secs(2)).unwrap();
}

#[test]
fn kill_9_of_the_daemon_runs_the_callback_within_1s() {
    let s = Scratch::new();
    let cfg = config(&s);
    let sup = Supervisor::new(&s.state);
    let (tx, rx) = mpsc::channel();
    let mut d = sup
        .start(
            "k9",
            &cfg,
            &s.share,
            &opts(LaunchStyle::Go),
            Some(Box::new(move |ev| {
                let _ = tx.send((Instant::now(), ev));
            })),
        )
        .unwrap();
    let pid = d.pid();
    let killed = Instant::now();
    // SAFETY: kill(2) on the daemon we just started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let (at, ev) = rx
        .recv_timeout(Duration::from_secs(1))
        .expect("no callback within 1 s");
    let latency = at - killed;
    assert!(latency < Duration::from_secs(1), "{latency:?}");
    assert_eq!(ev.pid, pid);
    assert_eq!(ev.signal, Some(libc::SIGKILL));
    eprintln!("exit callback {latency:?} after SIGKILL");
    assert_eq!(sup.status("k9").unwrap().state, "gone");
    assert_eq!(
        d.stop(Duration::from_secs(1)).unwrap(),
        StopOutcome::AlreadyExited
    );
    assert_clean(&s, "k9", pid);
}

#[test]
fn never_ready_daemon_times_out_with_its_stderr() {
    let s = Scratch::new();
    let fake = s.script(
        "fake-virtiofsd",
        "echo \"fake-virtiofsd: pretending to start with $*\" >&2\necho 'fake-virtiofsd: stuck' >&2\nexec sleep 30",
    );
    let mut cfg = config(&s);
    cfg.virtio_fs_daemon = fake;
    let sup = Supervisor::new(&s.state);
    let mut o = opts(LaunchStyle::Rs);
    o.ready_timeout = Duration::from_millis(800);
    let t = Instant::now();
    let e = sup.start("never", &cfg, &s.share, &o, None).unwrap_err();
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(800) + Duration::from_secs(2),
        "{took:?}"
    );
    assert!(took >= Duration::from_millis(800), "{took:?}");
    match &e {
        Error::NotReady { output, .. } => {
            assert!(output.contains("fake-virtiofsd: stuck"), "{output}");
            assert!(output.contains("--socket-path="), "{output}");
        }
        other => panic!("expected NotReady, got {other}"),
    }
    assert!(e.to_string().contains("did not become ready"), "{e}");
    assert!(
        !s.state.join("never").exists(),
        "state left after a failed start"
    );
    // The fixture was killed: no `sleep 30` of ours is left.
    let leftovers = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| common::cmdline(*p) == ["sleep", "30"] && running(*p))
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .map(|st| st.split_whitespace().nth(3) == Some(&std::process::id().to_string()))
                .unwrap_or(false)
        })
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn early_exit_is_reported_with_its_output_in_go_style() {
    let s = Scratch::new();
    let fake = s.script(
        "dying-virtiofsd",
        "echo 'dying-virtiofsd: no such option --bogus' >&2\nexit 3",
    );
    let mut cfg = config(&s);
    cfg.virtio_fs_daemon = fake;
    let sup = Supervisor::new(&s.state);
    let e = sup
        .start("dies", &cfg, &s.share, &opts(LaunchStyle::Go), None)
        .unwrap_err();
    match &e {
        Error::DaemonExited { status, output } => {
            assert_eq!(status, "exit code 3");
            assert!(output.contains("no such option --bogus"), "{output}");
        }
        other => panic!("expected DaemonExited, got {other}"),
    }
    assert!(!s.state.join("dies").exists());
    // A real daemon refusing a bad flag from the operator's config is reported the same way.
    let mut cfg = config(&s);
    cfg.virtio_fs_extra_args.push("--no-such-flag".into());
    let e = sup
        .start("dies2", &cfg, &s.share, &opts(LaunchStyle::Go), None)
        .unwrap_err();
    assert!(matches!(e, Error::DaemonExited { .. }), "{e}");
    assert!(e.to_string().contains("no-such-flag"), "{e}");
}

#[test]
fn bad_sandbox_ids_are_rejected() {
    let s = Scratch::new();
    let cfg = config(&s);
    let sup = Supervisor::new(&s.state);
    let long = "a".repeat(129);
    for id in [
        "",
        "../escape",
        "a/b",
        "..",
        ".x",
        "x y",
        "x;rm",
        long.as_str(),
    ] {
        let e = sup
            .start(id, &cfg, &s.share, &opts(LaunchStyle::Go), None)
            .unwrap_err();
        assert!(matches!(e, Error::InvalidSandboxId { .. }), "{id:?}: {e}");
        assert!(sup.stop(id, Duration::from_secs(1)).is_err(), "{id:?}");
        assert!(sup.status(id).is_err(), "{id:?}");
    }
    assert!(!s.state.exists() || std::fs::read_dir(&s.state).unwrap().count() == 0);
    assert!(!s.dir.path().join("escape").exists());
}

#[test]
fn stale_state_is_detected_not_trusted() {
    let s = Scratch::new();
    let cfg = config(&s);
    let sup = Supervisor::new(&s.state);
    let d = sup
        .start("stale", &cfg, &s.share, &opts(LaunchStyle::Go), None)
        .unwrap();
    let st = d.detach();
    let state_file = s.state.join("stale/state.json");
    // Pretend the pid was reused: point the state at this test process with a wrong start time.
    let (_, my_start) = runtime_integration::supervisor::proc_stat(std::process::id()).unwrap();
    let mut fake = st.clone();
    fake.pid = std::process::id();
    fake.start_time = my_start + 12345;
    std::fs::write(&state_file, serde_json::to_vec(&fake).unwrap()).unwrap();
    let status = sup.status("stale").unwrap();
    assert_eq!(status.state, "pid-reused", "{status:?}");
    assert!(status.detail.unwrap().contains("start time differs"));
    // stop must not signal the reused pid (this very test process).
    assert_eq!(
        sup.stop("stale", Duration::from_secs(1)).unwrap(),
        StopOutcome::Stale
    );
    assert!(!s.state.join("stale").exists());
    // The real daemon is still running: clean it up through a correct state.
    assert!(running(st.pid));
    std::fs::create_dir_all(s.state.join("stale")).unwrap();
    std::fs::write(&state_file, serde_json::to_vec(&st).unwrap()).unwrap();
    // A start over a live sandbox is refused.
    let e = sup
        .start("stale", &cfg, &s.share, &opts(LaunchStyle::Go), None)
        .unwrap_err();
    assert!(matches!(e, Error::AlreadyRunning { .. }), "{e}");
    assert_eq!(
        sup.stop("stale", Duration::from_secs(2)).unwrap(),
        StopOutcome::Stopped
    );
    assert!(wait_gone(st.pid, Duration::from_secs(2)));
    // A dead pid: "gone", and a new start replaces the stale state.
    std::fs::create_dir_all(s.state.join("stale")).unwrap();
    std::fs::write(&state_file, serde_json::to_vec(&st).unwrap()).unwrap();
    assert_eq!(sup.status("stale").unwrap().state, "gone");
    let mut d = sup
        .start("stale", &cfg, &s.share, &opts(LaunchStyle::Go), None)
        .unwrap();
    assert_ne!(d.pid(), st.pid);
    d.stop(Duration::from_secs(2)).unwrap();
    // A corrupt state file is reported, and stop cleans it.
    std::fs::create_dir_all(s.state.join("stale")).unwrap();
    std::fs::write(&state_file, b"{not json").unwrap();
    assert_eq!(sup.status("stale").unwrap().state, "corrupt");
    assert_eq!(
        sup.stop("stale", Duration::from_secs(1)).unwrap(),
        StopOutcome::Stale
    );
}

#[test]
fn dropping_the_handle_stops_the_daemon() {
    let s = Scratch::new();
    let cfg = config(&s);
    let sup = Supervisor::new(&s.state);
    let d = sup
        .start("drop", &cfg, &s.share, &opts(LaunchStyle::Rs), None)
        .unwrap();
    let pid = d.pid();
    drop(d);
    assert_clean(&s, "drop", pid);
}

#[test]
fn annotated_limits_reach_the_daemon() {
    let s = Scratch::new();
    let cfg = config(&s);
    let mut a = BTreeMap::new();
    a.insert(
        annotations::VIRTIO_FS_EXTRA_ARGS.to_string(),
        r#"["--fs-bw-size", "5M", "--fs-ops-size=200"]"#.to_string(),
    );
    let cfg = annotations::apply(&cfg, &a).unwrap();
    let sup = Supervisor::new(&s.state);
    let mut d = sup
        .start("ann", &cfg, &s.share, &opts(LaunchStyle::Go), None)
        .unwrap();
    let args = common::cmdline(d.pid());
    assert!(
        args.ends_with(&[
            "--fs-bw-size=5M".to_string(),
            "--fs-ops-size=200".to_string(),
            "--xattr".to_string()
        ]),
        "{args:?}"
    );
    let log = wait_for_text(d.log_path(), "rate limits:", Duration::from_secs(5));
    assert!(log.contains("bw 5000000 B/s (burst 20000000 B)"), "{log}");
    assert!(log.contains("ops 200 req/s"), "{log}");
    d.stop(Duration::from_secs(2)).unwrap();
}

/// A state that a writer of the state directory could forge: it names `pid` with its true
/// start time, so only refusing to read it protects the process.
fn forged_state(pid: u32, dir: &std::path::Path) -> Vec<u8> {
    let (_, start_time) = runtime_integration::supervisor::proc_stat(pid).unwrap();
    serde_json::to_vec(&SandboxState {
        sandbox_id: "victim".into(),
        pid,
        start_time,
        socket: dir.join("virtiofsd.sock"),
        api_socket: None,
        log: dir.join("virtiofsd.log"),
        launch: LaunchStyle::Go,
        daemon: "/bin/true".into(),
        args: Vec::new(),
        shared_dir: "/".into(),
        started_at: 0,
    })
    .unwrap()
}

fn refused(e: Error, needle: &str) {
    match &e {
        Error::StateDir { message, .. } => assert!(message.contains(needle), "{e}"),
        other => panic!("expected a refused state directory, got {other}"),
    }
    assert!(e.to_string().contains("refused"), "{e}");
}

#[test]
fn state_dir_of_another_user_or_writable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new();
    let cfg = config(&s);
    let sup = Supervisor::new(&s.state);
    std::fs::create_dir(&s.state).unwrap();
    let set_mode =
        |m: u32| std::fs::set_permissions(&s.state, std::fs::Permissions::from_mode(m)).unwrap();
    set_mode(0o755);
    std::os::unix::fs::chown(&s.state, Some(65534), Some(65534)).unwrap();
    let e = sup
        .start("pod", &cfg, &s.share, &opts(LaunchStyle::Go), None)
        .unwrap_err();
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    refused(
        e,
        &format!("owned by uid 65534, not by the running user (uid {me})"),
    );
    refused(sup.status("pod").unwrap_err(), "owned by uid 65534");
    refused(sup.list().unwrap_err(), "owned by uid 65534");
    refused(
        sup.stop("pod", Duration::from_secs(1)).unwrap_err(),
        "owned by uid 65534",
    );
    std::os::unix::fs::chown(&s.state, Some(0), Some(0)).unwrap();
    for (mode, who) in [
        (0o777, "its group and others"),
        (0o775, "its group"),
        (0o757, "others"),
        (0o1777, "its group and others"),
    ] {
        set_mode(mode);
        let e = sup
            .start("pod", &cfg, &s.share, &opts(LaunchStyle::Go), None)
            .unwrap_err();
        refused(e, &format!("mode {mode:04o}: writable by {who}"));
    }
    assert_eq!(
        std::fs::read_dir(&s.state).unwrap().count(),
        0,
        "nothing created"
    );
    // The CLI says so too, and exits 1.
    let out = common::cli(&["list", "--state-dir", s.state.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("state directory {} refused", s.state.display()))
            && err.contains("mode 1777"),
        "{err}"
    );
    // A symbolic link as the state directory is not followed.
    set_mode(0o700);
    let link = s.dir.path().join("state-link");
    std::os::unix::fs::symlink(&s.state, &link).unwrap();
    let e = Supervisor::new(&link)
        .start("pod", &cfg, &s.share, &opts(LaunchStyle::Go), None)
        .unwrap_err();
    refused(e, "symbolic link");
    // Fixed: it works.
    let mut d = sup
        .start("pod", &cfg, &s.share, &opts(LaunchStyle::Go), None)
        .unwrap();
    d.stop(Duration::from_secs(2)).unwrap();
}

#[test]
fn planted_symlinks_in_the_state_dir_are_not_followed() {
    let s = Scratch::new();
    let cfg = config(&s);
    let sup = Supervisor::new(&s.state);
    std::fs::create_dir(&s.state).unwrap();
    let mut victim = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let vpid = victim.id();
    // (1) The sandbox directory is a link to a directory with a forged state.
    let elsewhere = s.dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let forged = forged_state(vpid, &elsewhere);
    std::fs::write(elsewhere.join("state.json"), &forged).unwrap();
    std::os::unix::fs::symlink(&elsewhere, s.state.join("pod")).unwrap();
    let st = sup.status("pod").unwrap();
    assert_eq!(st.state, "corrupt", "{st:?}");
    assert!(
        st.detail
            .as_deref()
            .unwrap()
            .contains("symbolic link (not followed)"),
        "{st:?}"
    );
    assert_eq!(
        sup.stop("pod", Duration::from_secs(1)).unwrap(),
        StopOutcome::Stale
    );
    assert!(
        running(vpid),
        "stop signalled the process a planted state names"
    );
    assert!(
        std::fs::symlink_metadata(s.state.join("pod")).is_err(),
        "link left"
    );
    assert_eq!(std::fs::read(elsewhere.join("state.json")).unwrap(), forged);
    // start replaces such a link with a directory of its own, writing nothing through it.
    std::os::unix::fs::symlink(&elsewhere, s.state.join("pod")).unwrap();
    let mut d = sup
        .start("pod", &cfg, &s.share, &opts(LaunchStyle::Go), None)
        .unwrap();
    let m = std::fs::symlink_metadata(s.state.join("pod")).unwrap();
    assert!(m.is_dir(), "{m:?}");
    let mut names: Vec<_> = std::fs::read_dir(&elsewhere)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["state.json"], "written through the link");
    d.stop(Duration::from_secs(2)).unwrap();

    // (2) The state file is a link (to a forged state) in a real sandbox directory.
    std::fs::create_dir(s.state.join("pod2")).unwrap();
    std::os::unix::fs::symlink(
        elsewhere.join("state.json"),
        s.state.join("pod2/state.json"),
    )
    .unwrap();
    let st = sup.status("pod2").unwrap();
    assert_eq!(st.state, "corrupt", "{st:?}");
    assert!(
        st.detail
            .as_deref()
            .unwrap()
            .contains("state.json: a symbolic link (not followed)"),
        "{st:?}"
    );
    assert_eq!(
        sup.stop("pod2", Duration::from_secs(1)).unwrap(),
        StopOutcome::Stale
    );
    assert!(
        running(vpid),
        "stop signalled the process a planted state names"
    );
    assert!(!s.state.join("pod2").exists());

    let _ = victim.kill();
    let _ = victim.wait();
}

/// The log pump (in-process, and `virtiofs-sandbox __log-pump` for detached daemons) replaces
/// a link at the log's name by a file of its own; the link's target is untouched.
#[test]
fn a_link_planted_at_the_log_is_replaced_not_followed() {
    let s = Scratch::new();
    let dir3 = s.state.join("pod3");
    std::fs::create_dir_all(&dir3).unwrap();
    let target = s.dir.path().join("precious");
    std::fs::write(&target, b"precious\n").unwrap();
    std::os::unix::fs::symlink(&target, dir3.join("virtiofsd.log")).unwrap();
    runtime_integration::supervisor::pump_log(
        &b"daemon line\n"[..],
        &dir3.join("virtiofsd.log"),
        1 << 20,
    )
    .unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"precious\n");
    let m = std::fs::symlink_metadata(dir3.join("virtiofsd.log")).unwrap();
    assert!(m.is_file(), "{m:?}");
    assert_eq!(
        std::fs::read(dir3.join("virtiofsd.log")).unwrap(),
        b"daemon line\n"
    );
}
