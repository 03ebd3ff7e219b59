//! A real guest mounts a share served by our daemon and does I/O through it, on the stack
//! `$GUEST_STACK` names (its kernel is the one that booted).

use guest_vm::{GuestRun, Stack, StackInstall};
use vufs_testkit::{daemon_bin, Build, Daemon, Scratch};

#[test]
fn guest_smoke_write_read_through_the_share() {
    let _g = guest_vm::serial_guard();
    let s = Scratch::new();
    std::fs::write(s.share.join("from-host"), b"hello guest\n").unwrap();
    let share = format!("--shared-dir={}", s.share.display());
    let d = Daemon::start(
        &daemon_bin(Build::Normal),
        &s.socket(),
        &[&share, "--cache=auto"],
        &[],
    );
    let out = GuestRun::new()
        .socket(&d.socket)
        .script("uname -r > uname && cut -d' ' -f1 /proc/modules > modules && cat from-host && echo written-by-guest > from-guest && ls -la && dd if=/dev/zero of=big bs=1M count=4 2>&1 && sync")
        .run()
        .unwrap_or_else(|e| panic!("guest run failed: {e}\ndaemon stderr:\n{}", d.stderr()));
    out.assert_success();
    assert!(out.stdout.contains("hello guest"), "{}", out.stdout);
    assert_eq!(
        std::fs::read(s.share.join("from-guest")).unwrap(),
        b"written-by-guest\n"
    );
    assert_eq!(
        std::fs::metadata(s.share.join("big")).unwrap().len(),
        4 << 20
    );
    // The guest ran the stack's kernel: modular virtio-fs on Debian 12's 6.1, built in on the
    // backports 6.12.
    let stack = StackInstall::from_env().unwrap();
    assert_eq!(out.stack, stack.stack);
    let uname = std::fs::read_to_string(s.share.join("uname")).unwrap();
    assert_eq!(uname.trim(), stack.kernel.version, "guest kernel");
    let modules = std::fs::read_to_string(s.share.join("modules")).unwrap();
    let loaded = modules.lines().any(|m| m == "virtiofs");
    match stack.stack {
        Stack::Debian12 => assert!(loaded, "virtiofs not a module on 6.1: {modules}"),
        Stack::Backports => assert!(!loaded, "virtiofs a module on 6.12: {modules}"),
    }
    eprintln!(
        "guest stack {}: {} + kernel {}",
        stack.stack,
        stack.qemu_version().unwrap(),
        uname.trim()
    );
}
