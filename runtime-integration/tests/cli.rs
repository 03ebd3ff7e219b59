//! The `virtiofs-sandbox` binary: start/status/list/stop, annotations, and `run` with a stand-in
//! VMM (a shell script) so the process plumbing is tested without booting a guest.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{cli, cmdline, daemon_bin, json_out, running, wait_for_text, wait_gone, Scratch};

const EXTRA: &str = "io.katacontainers.config.hypervisor.virtio_fs_extra_args";

fn start_args<'a>(cfg: &'a str, s: &'a Scratch, id: &'a str) -> Vec<String> {
    vec![
        "start".into(),
        "--config".into(),
        cfg.into(),
        "--sandbox-id".into(),
        id.into(),
        "--shared-dir".into(),
        s.share.display().to_string(),
        "--state-dir".into(),
        s.state.display().to_string(),
    ]
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn cli_start_status_list_stop() {
    let s = Scratch::new();
    let cfg = common::write_config(s.dir.path(), &daemon_bin(), &[]);
    let cfg = cfg.display().to_string();
    let state = s.state.display().to_string();
    let out = cli(&refs(&start_args(&cfg, &s, "pod-a")));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = json_out(&out);
    let pid = j["pid"].as_u64().unwrap() as u32;
    let socket = j["socket"].as_str().unwrap().to_string();
    assert!(running(pid), "daemon must outlive `start`");
    assert_eq!(j["launch"], "go");
    assert_eq!(j["vmm"]["hypervisor"], "qemu");
    let vmm: Vec<String> = serde_json::from_value(j["vmm"]["args"].clone()).unwrap();
    assert!(
        vmm.contains(&format!("socket,id=char-kataShared,path={socket}")),
        "{vmm:?}"
    );
    assert!(vmm.contains(&"memory-backend-memfd,id=mem,size=1024M,share=on".to_string()));
    // Own session, not our process group.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    assert_eq!(f[3], pid.to_string(), "setsid: session id == pid ({stat})");
    // The log gets the daemon's output through the pump.
    wait_for_text(
        std::path::Path::new(j["log"].as_str().unwrap()),
        "rate limits:",
        Duration::from_secs(5),
    );

    let st = cli(&["status", "pod-a", "--state-dir", &state]);
    assert_eq!(st.status.code(), Some(0));
    assert_eq!(json_out(&st)["state"], "running");
    let list = cli(&["list", "--state-dir", &state]);
    let table = String::from_utf8_lossy(&list.stdout);
    assert!(
        table.contains("pod-a") && table.contains("running") && table.contains(&pid.to_string()),
        "{table}"
    );
    let lj = json_out(&cli(&["list", "--state-dir", &state, "--json"]));
    assert_eq!(lj.as_array().unwrap().len(), 1);

    let stop = cli(&["stop", "pod-a", "--state-dir", &state]);
    assert!(stop.status.success());
    assert_eq!(json_out(&stop)["result"], "stopped");
    assert!(wait_gone(pid, Duration::from_secs(2)));
    assert!(!std::path::Path::new(&socket).exists());
    assert!(!s.state.join("pod-a").exists());
    let again = cli(&["stop", "pod-a", "--state-dir", &state]);
    assert_eq!(json_out(&again)["result"], "not-found");
    let st = cli(&["status", "pod-a", "--state-dir", &state]);
    assert_eq!(st.status.code(), Some(3));
    assert_eq!(json_out(&st)["state"], "not-found");
}

#[test]
fn two_sandboxes_side_by_side_with_different_limits() {
    let s = Scratch::new();
    let cfg = common::write_config(s.dir.path(), &daemon_bin(), &[])
        .display()
        .to_string();
    let state = s.state.display().to_string();
    let a = json_out(&cli(&refs(&start_args(&cfg, &s, "pod-a"))));
    let mut b_args = start_args(&cfg, &s, "pod-b");
    b_args.extend([
        "--annotation".into(),
        format!(r#"{EXTRA}=["--fs-bw-size=5M","--fs-bw-burst=5M"]"#),
        "--launch".into(),
        "rs".into(),
    ]);
    let b = json_out(&cli(&refs(&b_args)));
    let (pa, pb) = (
        a["pid"].as_u64().unwrap() as u32,
        b["pid"].as_u64().unwrap() as u32,
    );
    assert_ne!(pa, pb);
    let ca = cmdline(pa);
    let cb = cmdline(pb);
    assert!(
        ca.contains(&"--fs-bw-size=10000000".to_string())
            && !ca.iter().any(|x| x == "--fs-bw-size=5M"),
        "{ca:?}"
    );
    assert!(ca.contains(&"--fd=3".to_string()));
    assert!(
        cb.ends_with(&[
            "--fs-bw-size=5M".into(),
            "--fs-bw-burst=5M".into(),
            "--xattr".into()
        ]),
        "{cb:?}"
    );
    assert!(cb.iter().any(|x| x.starts_with("--socket-path=")));
    let la = wait_for_text(
        &s.state.join("pod-a/virtiofsd.log"),
        "rate limits:",
        Duration::from_secs(5),
    );
    let lb = wait_for_text(
        &s.state.join("pod-b/virtiofsd.log"),
        "rate limits:",
        Duration::from_secs(5),
    );
    assert!(
        la.contains("rate limits: bw 10000000 B/s (burst 20000000 B)"),
        "{la}"
    );
    assert!(
        lb.contains("rate limits: bw 5000000 B/s (burst 5000000 B)"),
        "{lb}"
    );
    let list = json_out(&cli(&["list", "--state-dir", &state, "--json"]));
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["sandbox_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["pod-a", "pod-b"]);
    for id in ["pod-a", "pod-b"] {
        assert!(cli(&["stop", id, "--state-dir", &state]).status.success());
    }
    assert!(wait_gone(pa, Duration::from_secs(2)) && wait_gone(pb, Duration::from_secs(2)));
}

#[test]
fn cli_rejections_name_the_culprit() {
    let s = Scratch::new();
    let cfg = common::write_config(s.dir.path(), &daemon_bin(), &[])
        .display()
        .to_string();
    for (ann, needle) in [
        (
            format!(r#"{EXTRA}=["--shared-dir=/"]"#),
            r#""--shared-dir=/" is not allowed"#,
        ),
        (
            format!(r#"{EXTRA}=["--fs-bw-size=50M"]"#),
            "above the operator's limit",
        ),
        (
            format!(r#"{EXTRA}=["--fs-bw-size=0"]"#),
            "would remove the operator's limit",
        ),
        (format!("{EXTRA}=--fs-bw-size=1M"), "JSON array"),
        (
            "io.katacontainers.config.hypervisor.virtio_fs_daemon=/tmp/x".to_string(),
            "not enabled",
        ),
    ] {
        let mut a = start_args(&cfg, &s, "rej");
        a.extend(["--annotation".into(), ann.clone()]);
        let out = cli(&refs(&a));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{ann}: {err}");
        let name = ann.split('=').next().unwrap();
        assert!(
            err.contains(&format!("annotation {name}:")) && err.contains(needle),
            "{ann}: {err}"
        );
    }
    assert!(!s.state.join("rej").exists());
    for bad in ["../x", "a/b", ""] {
        let out = cli(&refs(&start_args(&cfg, &s, bad)));
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("invalid sandbox id"));
        let out = cli(&["stop", bad, "--state-dir", &s.state.display().to_string()]);
        assert_eq!(out.status.code(), Some(1));
    }
    // virtio-9p: no daemon, and it says so.
    let cfg9p = common::write_config(
        s.dir.path(),
        &daemon_bin(),
        &[("shared_fs", "\"virtio-9p\"")],
    )
    .display()
    .to_string();
    let out = cli(&refs(&start_args(&cfg9p, &s, "ninep")));
    assert!(out.status.success());
    let j = json_out(&out);
    assert!(j["pid"].is_null());
    assert!(
        j["message"]
            .as_str()
            .unwrap()
            .contains("no virtio-fs daemon"),
        "{j}"
    );
    let cfgn = common::write_config(
        s.dir.path(),
        &daemon_bin(),
        &[("shared_fs", "\"virtio-fs-nydus\"")],
    )
    .display()
    .to_string();
    let out = cli(&refs(&start_args(&cfgn, &s, "nydus")));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not supported"));
}

fn run_cmd(s: &Scratch, cfg: &str, id: &str, vmm: &[&str]) -> Command {
    let mut c = Command::new(common::cli_bin());
    c.args(["run", "--config", cfg, "--sandbox-id", id, "--shared-dir"])
        .arg(&s.share)
        .arg("--state-dir")
        .arg(&s.state)
        .arg("--")
        .args(vmm);
    c
}

#[test]
fn run_returns_the_vmm_status_and_stops_the_daemon() {
    let s = Scratch::new();
    let cfg = common::write_config(s.dir.path(), &daemon_bin(), &[])
        .display()
        .to_string();
    let argsfile = s.dir.path().join("vmm-args");
    let vmm = s.script(
        "fake-qemu",
        &format!("printf '%s\\n' \"$@\" > {}\nexit 7", argsfile.display()),
    );
    let out = common::run_timeout(
        &mut run_cmd(&s, &cfg, "run1", &[vmm.to_str().unwrap(), "-smp", "1"]),
        Duration::from_secs(20),
    );
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let args: Vec<String> = std::fs::read_to_string(&argsfile)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let sock = s.state.join("run1/virtiofsd.sock");
    assert_eq!(&args[..4], ["-smp", "1", "-m", "1024M"]);
    assert!(
        args.contains(&"memory-backend-memfd,id=mem,size=1024M,share=on".to_string()),
        "{args:?}"
    );
    assert!(
        args.contains(&format!(
            "socket,id=char-kataShared,path={}",
            sock.display()
        )),
        "{args:?}"
    );
    assert!(args.contains(
        &"vhost-user-fs-pci,chardev=char-kataShared,tag=kataShared,queue-size=1024".to_string()
    ));
    assert!(
        !s.state.join("run1").exists(),
        "sandbox state left after run"
    );
}

/// `run` sandbox `id` with a fake VMM (`vmm_args` after it) that only sleeps; once the VMM
/// has started, the daemon gets `sig`. Returns `run`'s exit status (within `wait`), the time
/// from the signal to that exit, and `run`'s stderr.
fn signal_the_daemon_under_run(
    s: &Scratch,
    id: &str,
    vmm_args: &[&str],
    sig: i32,
    wait: Duration,
) -> (std::process::ExitStatus, Duration, String) {
    let cfg = common::write_config(s.dir.path(), &daemon_bin(), &[])
        .display()
        .to_string();
    let started = s.dir.path().join("vmm-started");
    let vmm = s.script(
        "fake-qemu",
        &format!("touch {}\nexec sleep 60", started.display()),
    );
    let mut vmm_cmd = vec![vmm.to_str().unwrap()];
    vmm_cmd.extend_from_slice(vmm_args);
    let mut child = run_cmd(s, &cfg, id, &vmm_cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !started.exists() {
        assert!(Instant::now() < deadline, "fake VMM did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.state.join(id).join("state.json")).unwrap())
            .unwrap();
    let dpid = st["pid"].as_u64().unwrap() as i32;
    let t = Instant::now();
    // SAFETY: kill(2) on the daemon `run` started.
    assert_eq!(unsafe { libc::kill(dpid, sig) }, 0);
    let status = common::run_wait(&mut child, wait);
    let took = t.elapsed();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status, took, err)
}

#[test]
fn run_daemon_death_stops_the_vmm_within_1s() {
    let s = Scratch::new();
    let (status, took, err) = signal_the_daemon_under_run(
        &s,
        "run2",
        &["-m", "512"],
        libc::SIGKILL,
        Duration::from_secs(5),
    );
    eprintln!("run exited {status} {took:?} after the daemon's SIGKILL");
    assert!(took < Duration::from_secs(1), "{took:?}\n{err}");
    assert!(!status.success(), "{status}");
    assert_eq!(status.code(), Some(128 + libc::SIGKILL));
    assert!(
        err.contains("virtiofsd (pid") && err.contains("killed by signal 9"),
        "{err}"
    );
    assert!(!s.state.join("run2").exists());
}

/// A guest shutdown as a slow VMM makes it: the VMM closes its connection, the daemon exits 0
/// at once, and the VMM itself exits 0 only 300 ms after the daemon. `run` must report the
/// VMM's 0, not a daemon failure.
#[test]
fn run_exits_0_when_the_daemons_exit_0_comes_before_the_vmms() {
    let s = Scratch::new();
    let cfg = common::write_config(s.dir.path(), &daemon_bin(), &[])
        .display()
        .to_string();
    let vmm = common::frontend_vmm_bin();
    let out = common::run_timeout(
        run_cmd(&s, &cfg, "race", &[vmm.to_str().unwrap(), "-m", "512"])
            .env("FRONTEND_VMM_AFTER", "exit-after-daemon"),
        Duration::from_secs(20),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("frontend-vmm: virtiofsd exited; exiting 0 in 300 ms"),
        "the daemon's exit did not come first:\n{err}"
    );
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("VMM killed"), "{err}");
    assert!(!s.state.join("race").exists(), "sandbox state left");
}

/// A daemon stopped by a signal exits 0 too, but the VMM still runs: that is a failure, at
/// once (no waiting for the VMM).
#[test]
fn run_daemon_sigterm_while_the_vmm_runs_stops_the_vmm_within_1s() {
    let s = Scratch::new();
    let (status, took, err) =
        signal_the_daemon_under_run(&s, "term", &[], libc::SIGTERM, Duration::from_secs(15));
    assert!(took < Duration::from_secs(1), "{took:?}\n{err}");
    assert_eq!(status.code(), Some(128 + libc::SIGKILL), "{err}");
    assert!(
        err.contains("was stopped by a signal (exit code 0) while the VMM was running")
            && err.contains("VMM killed"),
        "{err}"
    );
    assert!(!s.state.join("term").exists());
}

/// The wait for the VMM after it closed its connection is bounded: a VMM that never exits is
/// killed after `VMM_EXIT_AFTER_DISCONNECT` and reported.
#[test]
fn run_kills_a_vmm_hung_after_closing_its_connection() {
    let s = Scratch::new();
    let cfg = common::write_config(s.dir.path(), &daemon_bin(), &[])
        .display()
        .to_string();
    let vmm = common::frontend_vmm_bin();
    let t = Instant::now();
    let out = common::run_timeout(
        run_cmd(&s, &cfg, "hung", &[vmm.to_str().unwrap()]).env("FRONTEND_VMM_AFTER", "hang"),
        Duration::from_secs(30),
    );
    let took = t.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    let bound = runtime_integration::cli::VMM_EXIT_AFTER_DISCONNECT;
    assert!(
        took >= bound && took < bound + Duration::from_secs(5),
        "{took:?}\n{err}"
    );
    assert_eq!(out.status.code(), Some(128 + libc::SIGKILL), "{err}");
    assert!(
        err.contains("the VMM closed its connection") && err.contains("taken for hung"),
        "{err}"
    );
    assert!(!s.state.join("hung").exists());
}

/// `shared_fs` may not move a sandbox off the configuration's daemon-backed virtio-fs: `start`
/// and `run` refuse, and `run` starts no VMM.
#[test]
fn shared_fs_annotation_may_not_drop_the_daemon() {
    let s = Scratch::new();
    let cfg = common::write_config(
        s.dir.path(),
        &daemon_bin(),
        &[(
            "enable_annotations",
            r#"["virtio_fs_extra_args", "shared_fs"]"#,
        )],
    )
    .display()
    .to_string();
    let started = s.dir.path().join("vmm-started");
    let vmm = s.script("fake-qemu", &format!("touch {}", started.display()));
    for fs in ["virtio-9p", "none"] {
        let ann = format!("io.katacontainers.config.hypervisor.shared_fs={fs}");
        let mut a = start_args(&cfg, &s, "sfs");
        a.extend(["--annotation".into(), ann.clone()]);
        let out = cli(&refs(&a));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{fs}: {err}");
        assert!(
            err.contains("annotation io.katacontainers.config.hypervisor.shared_fs:")
                && err.contains(&format!("\"{fs}\" refused")),
            "{fs}: {err}"
        );
        let mut c = Command::new(common::cli_bin());
        c.args([
            "run",
            "--config",
            &cfg,
            "--sandbox-id",
            "sfs",
            "--shared-dir",
        ])
        .arg(&s.share)
        .arg("--state-dir")
        .arg(&s.state)
        .args(["--annotation", &ann, "--"])
        .arg(&vmm);
        let out = common::run_timeout(&mut c, Duration::from_secs(20));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{fs}: {err}");
        assert!(err.contains(&format!("\"{fs}\" refused")), "{fs}: {err}");
        assert!(!started.exists(), "{fs}: the VMM was started");
    }
    // Restating virtio-fs is fine.
    let mut a = start_args(&cfg, &s, "sfs");
    a.extend([
        "--annotation".into(),
        "io.katacontainers.config.hypervisor.shared_fs=virtio-fs".into(),
    ]);
    let j = json_out(&cli(&refs(&a)));
    let pid = j["pid"].as_u64().unwrap() as u32;
    assert!(running(pid));
    let state = s.state.display().to_string();
    assert!(cli(&["stop", "sfs", "--state-dir", &state])
        .status
        .success());
    assert!(wait_gone(pid, Duration::from_secs(2)));
}

/// Makes a character device node (async-signal-safe; for `pre_exec`).
unsafe fn mknod_chr(path: &std::ffi::CStr, major: u32, minor: u32) -> std::io::Result<()> {
    if libc::mknod(
        path.as_ptr(),
        libc::S_IFCHR | 0o666,
        libc::makedev(major, minor),
    ) != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// On a host with a syslog socket the daemon's output must still reach the per-sandbox log
/// (the supervisor captures it; `--syslog` would divert it), and Go-style readiness must come
/// from the ready line there, not from the settle timer. `start` runs in a private mount
/// namespace whose `/dev` is a fresh tmpfs with the usual nodes and a listening datagram
/// socket at `/dev/log` (this test holds it, and reads what reaches it).
#[test]
fn per_sandbox_log_is_filled_with_a_dev_log_present() {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;

    let s = Scratch::new();
    let cfg = common::write_config(s.dir.path(), &daemon_bin(), &[])
        .display()
        .to_string();
    let syslog = std::os::unix::net::UnixDatagram::unbound().unwrap();
    syslog.set_nonblocking(true).unwrap();
    let syslog_fd = syslog.as_raw_fd();
    // SAFETY: a zeroed sockaddr_un is valid; the path fits.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, b) in addr.sun_path.iter_mut().zip(b"/dev/log") {
        *d = *b as libc::c_char;
    }
    let c = |p: &str| CString::new(p).unwrap();
    let (root, dev, tmpfs, opts) = (c("/"), c("/dev"), c("tmpfs"), c("mode=755"));
    let nodes: Vec<(CString, u32, u32)> = [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ]
    .iter()
    .map(|(p, a, b)| (c(p), *a, *b))
    .collect();

    let mut args = start_args(&cfg, &s, "devlog");
    args.extend(["--settle".into(), "30".into()]);
    let mut cmd = Command::new(common::cli_bin());
    cmd.args(&args);
    // SAFETY: only syscalls on data prepared above.
    unsafe {
        cmd.pre_exec(move || {
            let ok = |r: libc::c_int| {
                if r == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            };
            ok(libc::unshare(libc::CLONE_NEWNS))?;
            ok(libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            ok(libc::mount(
                tmpfs.as_ptr(),
                dev.as_ptr(),
                tmpfs.as_ptr(),
                libc::MS_NOSUID,
                opts.as_ptr().cast(),
            ))?;
            for (p, major, minor) in &nodes {
                mknod_chr(p, *major, *minor)?;
            }
            ok(libc::bind(
                syslog_fd,
                (&addr as *const libc::sockaddr_un).cast(),
                std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
            ))
        });
    }
    let t = Instant::now();
    let out = common::run_timeout(&mut cmd, Duration::from_secs(60));
    let took = t.elapsed();
    let j = json_out(&out);
    let pid = j["pid"].as_u64().unwrap() as u32;
    let log = std::path::PathBuf::from(j["log"].as_str().unwrap());
    let state = s.state.display().to_string();
    let mut to_syslog = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = syslog.recv(&mut buf) {
        to_syslog.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    // The pump process may write the lines a moment after `start` returned.
    let wanted = [runtime_integration::supervisor::READY_LINE, "rate limits:"];
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let t = std::fs::read_to_string(&log).unwrap_or_default();
        if wanted.iter().all(|w| t.contains(w)) || Instant::now() >= deadline {
            break t;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stop = cli(&["stop", "devlog", "--state-dir", &state]);
    assert!(stop.status.success());
    assert!(wait_gone(pid, Duration::from_secs(2)));
    assert!(
        to_syslog.is_empty(),
        "lines went to /dev/log: {to_syslog:#?}"
    );
    assert!(
        wanted.iter().all(|w| text.contains(w)),
        "{}:\n{text}",
        log.display()
    );
    assert_eq!(j["ready_by"], "log-line", "{j}");
    assert!(took < Duration::from_secs(10), "start took {took:?}");
    assert!(!cmdline_has(&j, "--syslog"), "{j}");
}

fn cmdline_has(start_json: &serde_json::Value, arg: &str) -> bool {
    start_json["args"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == arg)
}
