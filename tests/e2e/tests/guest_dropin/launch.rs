//! Starting the daemon as each Kata runtime does, and a guest on it mounted as Kata mounts it.

use super::*;

/// Kata's mount tag.
pub(super) const TAG: &str = "kataShared";

/// Hard limit on one guest run.
pub(super) const GUEST_TIMEOUT: Duration = Duration::from_secs(150);

/// How long the daemon may take to exit after QEMU is gone.
pub(super) const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// How Kata starts the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Launch {
    /// Go runtime (`--fd=3`, `--cache=auto`).
    Go,
    /// runtime-rs (`--socket-path`, `--cache=never`, `-o announce_submounts`).
    RuntimeRs,
}

/// The daemon under test: ours, or `$GUEST_DROPIN_DAEMON` (e.g. upstream virtiofsd, to check
/// that these tests encode upstream's behaviour).
pub(super) fn daemon() -> PathBuf {
    match std::env::var_os("GUEST_DROPIN_DAEMON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => daemon_bin(Build::Normal),
    }
}

/// Starts the daemon on `s.share` the way `launch` does, with `extra` appended (Kata appends
/// annotation-supplied `virtio_fs_extra_args` after its own; the last flag wins).
pub(super) fn start(s: &Scratch, launch: Launch, extra: &[&str]) -> Daemon {
    let bin = daemon();
    let share = format!("--shared-dir={}", s.share.display());
    let socket = s.socket();
    match launch {
        Launch::Go => {
            let listener = UnixListener::bind(&socket).expect("bind the vhost-user socket");
            let mut args = vec![
                "--syslog",
                "--cache=auto",
                share.as_str(),
                "--fd=3",
                "--thread-pool-size=1",
                "--announce-submounts",
                "--xattr",
            ];
            args.extend_from_slice(extra);
            let d = Daemon::start_with_fd(&bin, &listener, &socket, &args, &[]);
            // Like the runtime: the daemon owns the listening socket from now on.
            drop(listener);
            d
        }
        Launch::RuntimeRs => {
            let mut args = vec![
                share.as_str(),
                "--cache=never",
                "--thread-pool-size=1",
                "-o",
                "announce_submounts",
                "--xattr",
            ];
            args.extend_from_slice(extra);
            Daemon::start_until_ready(&bin, &socket, &args, &[], Duration::from_secs(10))
        }
    }
}

/// A guest on `d`'s socket mounted as Kata mounts it.
pub(super) fn guest(d: &Daemon, script: impl Into<String>) -> GuestRun {
    GuestRun::new()
        .socket(&d.socket)
        .tag(TAG)
        .mount_options("nodev")
        .script(script)
        .timeout(GUEST_TIMEOUT)
}

/// Runs the guest to completion and asserts the job exited 0.
pub(super) fn run_ok(d: &Daemon, run: GuestRun) -> GuestOutput {
    let out = run.run().unwrap_or_else(|e| {
        panic!(
            "guest run failed: {e}\n--- daemon stderr ---\n{}",
            d.stderr()
        )
    });
    out.assert_success();
    out
}

/// Waits for a spawned guest to finish and asserts the job exited 0.
pub(super) fn finish_vm(d: &Daemon, vm: Vm) -> GuestOutput {
    let out = vm.wait_timeout(GUEST_TIMEOUT).unwrap_or_else(|e| {
        panic!(
            "guest run failed: {e}\n--- daemon stderr ---\n{}",
            d.stderr()
        )
    });
    out.assert_success();
    out
}

/// The daemon exits 0 on its own once QEMU has disconnected.
pub(super) fn assert_daemon_exits_cleanly(d: &mut Daemon) {
    match d.wait_exit(EXIT_TIMEOUT) {
        Some(st) => assert!(
            st.success(),
            "daemon exited with {st} after the guest:\n{}",
            d.stderr()
        ),
        None => panic!(
            "daemon still running {EXIT_TIMEOUT:?} after QEMU exited:\n{}",
            d.stderr()
        ),
    }
}
