//! A pod's `virtio_fs_extra_args` annotation, passed through Kata unfiltered, can neither widen
//! access nor loosen the operator's limits, with the shipped `configs/configuration-qemu.toml`
//! (whose `virtio_fs_extra_args` end with `--pod-args-follow`).
//!
//! The daemon's argv is written out as Kata itself builds it, not as this project's
//! runtime-integration does. Kata Containers at commit
//! 7c6ba40c54ea29b459b4997cff948caaba4e658b (2026-08-22):
//! - Go runtime, `src/runtime/virtcontainers/virtiofsd.go` `args()`: `--syslog`,
//!   `--cache=<mode>`, `--shared-dir=<dir>`, `--fd=3`, then `extraArgs`; `extraArgs` is the
//!   configuration's `virtio_fs_extra_args` with the annotation's JSON array appended
//!   (`src/runtime/pkg/oci/utils.go`, `addHypervisorVirtioFsOverrides`), then `--xattr`
//!   (`src/runtime/virtcontainers/qemu.go`, `createVirtiofsDaemon`, unless
//!   `disable_guest_selinux`).
//! - runtime-rs, `src/runtime-rs/crates/resource/src/share_fs/share_virtio_fs_standalone.rs`
//!   `virtiofsd_args()`: `--socket-path`, `<sock>`, `--shared-dir`, `<dir>`, `--cache`, `<mode>`,
//!   the extra args, then `--xattr`; the annotation's value is split on `,` and pushed after the
//!   configuration's (`src/libs/kata-types/src/annotations/mod.rs`).

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vufs_frontend::{ConnectOptions, FuseSession, ROOT_ID};
use vufs_testkit::{daemon_bin, Build, Daemon, Scratch};

/// The seeded bug: a daemon that ignores the boundary (upstream's "last flag wins").
const TRUST_POD_ARGS: (&str, &str) = ("VIRTIOFSD_SEEDED_BUG_TRUST_POD_ARGS", "1");

/// The `[hypervisor.qemu]` keys of the shipped configuration that shape the argv.
struct Shipped {
    extra_args: Vec<String>,
    cache: String,
}

fn shipped() -> Shipped {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/configuration-qemu.toml");
    let text = std::fs::read_to_string(&path).expect("configs/configuration-qemu.toml");
    let doc: toml::Table = text.parse().expect("valid TOML");
    let qemu = &doc["hypervisor"]["qemu"];
    Shipped {
        extra_args: qemu["virtio_fs_extra_args"]
            .as_array()
            .expect("virtio_fs_extra_args")
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect(),
        cache: qemu["virtio_fs_cache"].as_str().unwrap().to_owned(),
    }
}

/// How Kata starts the daemon.
#[derive(Clone, Copy, Debug)]
enum Style {
    Go,
    Rs,
}

/// The argv (without argv[0]) Kata builds for `pod` (the annotation's arguments).
fn kata_argv(style: Style, cfg: &Shipped, s: &Scratch, pod: &[&str]) -> Vec<String> {
    let shared = s.share.display().to_string();
    let mut v: Vec<String> = match style {
        Style::Go => vec![
            "--syslog".into(),
            format!("--cache={}", cfg.cache),
            format!("--shared-dir={shared}"),
            "--fd=3".into(),
        ],
        Style::Rs => vec![
            "--socket-path".into(),
            s.socket().display().to_string(),
            "--shared-dir".into(),
            shared,
            "--cache".into(),
            cfg.cache.clone(),
        ],
    };
    v.extend(cfg.extra_args.iter().cloned());
    match style {
        // The annotation is a JSON array, decoded and appended as is.
        Style::Go => {
            let json = serde_json::to_string(pod).unwrap();
            let decoded: Vec<String> = serde_json::from_str(&json).unwrap();
            v.extend(decoded);
        }
        // The annotation is one string, split on ','.
        Style::Rs => {
            if !pod.is_empty() {
                v.extend(pod.join(",").split(',').map(str::to_owned));
            }
        }
    }
    v.push("--xattr".into());
    v
}

/// A daemon started as Kata starts it (Go: with its listening socket as fd 3).
fn launch(style: Style, build: Build, s: &Scratch, pod: &[&str], env: &[(&str, &str)]) -> Daemon {
    let argv = kata_argv(style, &shipped(), s, pod);
    let args: Vec<&str> = argv.iter().map(String::as_str).collect();
    let bin = daemon_bin(build);
    match style {
        Style::Go => {
            let l = UnixListener::bind(s.socket()).expect("bind");
            Daemon::start_with_fd(&bin, &l, &s.socket(), &args, env)
        }
        Style::Rs => Daemon::spawn(&bin, &s.socket(), &args, env),
    }
}

/// Hostile annotations: (arguments, the token the refusal must name, widens or loosens).
/// `widens` cases are the ones a daemon without the boundary accepts and starts with.
const HOSTILE: &[(&[&str], &str, bool)] = &[
    (
        &["--sandbox=none", "--shared-dir=/"],
        "--sandbox=none",
        true,
    ),
    (&["--shared-dir=OUTSIDE"], "--shared-dir=OUTSIDE", true),
    (&["-o", "source=OUTSIDE"], "-o", true),
    (&["--sandbox=none"], "--sandbox=none", true),
    (&["--sandbox=chroot"], "--sandbox=chroot", true),
    (&["--seccomp=none"], "--seccomp=none", true),
    (&["--seccomp=log"], "--seccomp=log", true),
    (&["--modcaps=+sys_admin"], "--modcaps=+sys_admin", true),
    (
        &["--inode-file-handles=never"],
        "--inode-file-handles=never",
        true,
    ),
    (
        &["--socket-path=/tmp/pod-sock"],
        "--socket-path=/tmp/pod-sock",
        false,
    ),
    (&["--fd=0"], "--fd=0", false),
    (&["--socket-group=root"], "--socket-group=root", false),
    (&["--api-socket=API"], "--api-socket=API", true),
    (&["--thread-pool-size=64"], "--thread-pool-size=64", true),
    (&["--rlimit-nofile=100"], "--rlimit-nofile=100", true),
    (&["--log-level=off"], "--log-level=off", true),
    (&["--syslog"], "--syslog", true),
    (&["-d"], "-d", true),
    (&["--fs-bw-size=1G"], "--fs-bw-size=1000000000", true),
    (&["--fs-bw-size=0"], "--fs-bw-size=0", false),
    (
        &["--fs-bw-size=1G", "--fs-bw-burst=1G"],
        "--fs-bw-size=1000000000",
        true,
    ),
    (&["--fs-bw-burst=1G"], "--fs-bw-burst=1000000000", true),
    (
        &["--fs-bw-size=5M", "--fs-bw-size=50M"],
        "--fs-bw-size=50000000",
        true,
    ),
    (&["--fs-bw-size", "--shared-dir=/"], "--shared-dir=/", false),
    (
        &["--fs-bw-size=5M", "--cache=always"],
        "--cache=always",
        true,
    ),
    (&["--writeback"], "--writeback", true),
    (
        &["--no-announce-submounts"],
        "--no-announce-submounts",
        true,
    ),
    (&["--xattr", "--fs-bw-size=5M"], "--xattr", true),
    (
        &["--pod-args-follow", "--sandbox=none"],
        "--pod-args-follow",
        false,
    ),
    (&["--fs-group=/tmp/group"], "--fs-group=/tmp/group", false),
    (&["--bogus-flag"], "--bogus-flag", false),
    (&["--posix-acl"], "--posix-acl", false),
    (&["--"], "'--'", false),
    (&["--", "--shared-dir=/"], "'--'", false),
    (&["positional"], "positional", false),
    (&["--help"], "--help", false),
    (&["--print-capabilities"], "--print-capabilities", false),
];

/// Replaces the placeholders: `API` with a socket path in the scratch directory, `OUTSIDE`
/// with a host directory beside the share.
fn concrete(s: &Scratch, arg: &str) -> String {
    arg.replace("API", &s.dir.path().join("pod.api").display().to_string())
        .replace("OUTSIDE", &s.outside.display().to_string())
}

#[test]
fn hostile_pod_arguments_exit_2_naming_them_before_binding_in_both_launch_styles() {
    for style in [Style::Go, Style::Rs] {
        for (args, named, _) in HOSTILE {
            let s = Scratch::new();
            let args: Vec<String> = args.iter().map(|a| concrete(&s, a)).collect();
            let pod: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut d = launch(style, Build::Normal, &s, &pod, &[]);
            let status = d.wait_exit(Duration::from_secs(10));
            let err = d.stderr();
            assert_eq!(
                status.and_then(|st| st.code()),
                Some(2),
                "{style:?} {args:?}: must exit 2; stderr:\n{err}"
            );
            let named = concrete(&s, named);
            assert!(
                err.contains(&format!("pod argument {named}"))
                    || err.contains(&format!("pod argument '{}'", named.trim_matches('\''))),
                "{style:?} {args:?}: the message must name {named}:\n{err}"
            );
            assert!(err.contains("refused"), "{style:?} {args:?}: {err}");
            // Nothing was bound or locked: no socket (rs), no pid file, no API socket.
            if let Style::Rs = style {
                assert!(!s.socket().exists(), "{style:?} {args:?}: socket bound");
            }
            let pid = PathBuf::from(format!("{}.pid", s.socket().display()));
            assert!(!pid.exists(), "{style:?} {args:?}: pid file created");
            assert!(!s.dir.path().join("pod.api").exists(), "{style:?} {args:?}");
            assert!(!Path::new("/tmp/pod-sock").exists());
        }
    }
}

#[test]
fn without_the_boundary_the_same_pod_arguments_get_through_seeded() {
    // Shows the test above would catch a daemon that trusts the pod: a build that ignores the
    // boundary starts with every widening argument.
    for style in [Style::Go, Style::Rs] {
        for (args, _, _) in HOSTILE.iter().filter(|c| c.2) {
            let s = Scratch::new();
            let args: Vec<String> = args.iter().map(|a| concrete(&s, a)).collect();
            let pod: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut d = launch(style, Build::Seeded, &s, &pod, &[TRUST_POD_ARGS]);
            // Started: the ready line, or (with logging off) still running after it.
            let started = d
                .wait_for_stderr(vufs_testkit::READY_LINE, Duration::from_secs(3))
                .or_else(|e| if d.alive() { Ok(()) } else { Err(e) });
            assert!(
                started.is_ok(),
                "{style:?} {args:?}: the seeded daemon should have accepted it: {started:?}"
            );
        }
    }
}

/// Writes `total` bytes in 256 KiB WRITEs and returns how long it took.
fn timed_writes(socket: &Path, total: usize) -> Duration {
    let opts = ConnectOptions {
        timeout: Duration::from_secs(20),
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut fs = loop {
        match FuseSession::connect_with(socket, &opts) {
            Ok(fs) => break fs,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("connect: {e}"),
        }
    };
    fs.init().expect("INIT");
    let (e, o) = fs
        .create(ROOT_ID, b"f", 0o644, libc::O_RDWR as u32)
        .expect("CREATE");
    let chunk = vec![0x5a; 256 * 1024];
    let start = Instant::now();
    let mut off = 0;
    while off < total {
        let n = fs.write(e.nodeid, o.fh, off as u64, &chunk).expect("WRITE") as usize;
        assert_eq!(n, chunk.len());
        off += n;
    }
    start.elapsed()
}

#[test]
fn a_tightening_annotation_is_enforced_in_both_launch_styles() {
    // The operator allows 10 MB/s with a 20 MB burst: 3 MiB would pass at once. The pod asks
    // for 2 MB/s with a 1 MB burst: at least (3 MiB - 1 MB - one 256 KiB request) / 2 MB/s.
    let total = 12 * 256 * 1024;
    let floor = (total - 1_000_000 - 256 * 1024) as f64 / 2_000_000.0;
    for style in [Style::Go, Style::Rs] {
        let s = Scratch::new();
        let mut d = launch(
            style,
            Build::Normal,
            &s,
            &["--fs-bw-size=2M", "--fs-bw-burst=1M"],
            &[],
        );
        d.wait_for_stderr(
            "rate limits: bw 2000000 B/s (burst 1000000 B)",
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("{style:?}: {e}"));
        let took = timed_writes(&s.socket(), total).as_secs_f64();
        assert!(
            took >= floor,
            "{style:?}: 3 MiB took {took:.3} s, the pod's limit allows no less than {floor:.3} s"
        );
    }
}
