//! A real guest mounts a share served by our daemon and does I/O through it.

use guest_vm::GuestRun;
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
        .script("cat from-host && echo written-by-guest > from-guest && ls -la && dd if=/dev/zero of=big bs=1M count=4 2>&1 && sync")
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
}
