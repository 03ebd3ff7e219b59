//! Privilege bits die on write, in every cache mode, as on a local Linux filesystem: in a real
//! guest, a writer without CAP_FSETID (uid 65534 via busybox `su`) that writes or truncates a
//! root-owned file clears SUID, and SGID when group-execute is set; SGID without group-execute
//! stays; root (which has CAP_FSETID) keeps them.
//!
//! With `--cache=never` the guest writes with direct I/O, never clears the bits itself and only
//! flags the WRITE (`FUSE_WRITE_KILL_SUIDGID`): the daemon must act on the flag. With
//! `--cache=auto` the guest clears them with a SETATTR. A truncating open (ATOMIC_O_TRUNC) is
//! cleared by the daemon for a caller other than root. With `--killpriv-v2` the guest leaves it
//! all to the daemon.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use guest_vm::GuestRun;
use vufs_testkit::{daemon_bin, Build, Daemon, Scratch};

/// (file, mode set on the host, mode expected after the guest's job).
const CASES: [(&str, u32, u32); 7] = [
    ("suid", 0o4777, 0o0777),
    ("sgid", 0o2777, 0o0777),
    ("sgid-no-gx", 0o2767, 0o2767),
    ("both", 0o6777, 0o0777),
    ("trunc-suid", 0o4777, 0o0777),
    ("otrunc-suid", 0o4777, 0o0777),
    ("root-suid", 0o4777, 0o4777),
];

/// The guest's job: uid 65534 appends to (or truncates) each file; root appends to its own.
const JOB: &str = "\
echo 'nobody:x:65534:65534:nobody:/:/bin/sh' >> /etc/passwd
echo 'nogroup:x:65534:' >> /etc/group
for f in suid sgid sgid-no-gx both; do
  su -s /bin/sh nobody -c \"echo data >> /mnt/$f\" || echo \"write $f failed\"
done
su -s /bin/sh nobody -c 'truncate -s 1 /mnt/trunc-suid' || echo 'truncate failed'
su -s /bin/sh nobody -c ': > /mnt/otrunc-suid' || echo 'open O_TRUNC failed'
echo data >> /mnt/root-suid || echo 'root write failed'
su -s /bin/sh nobody -c id
stat -c '%n %a %s' /mnt/*
";

fn run_in(flags: &[&str]) -> Vec<String> {
    let cache = flags.join(" ");
    let s = Scratch::new();
    for (name, mode, _) in CASES {
        let p = s.share.join(name);
        std::fs::write(&p, b"host data\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let share = format!("--shared-dir={}", s.share.display());
    let d = Daemon::start(
        &daemon_bin(Build::Normal),
        &s.socket(),
        &[&[share.as_str(), "--thread-pool-size=1"][..], flags].concat(),
        &[],
    );
    let out = GuestRun::new()
        .socket(&d.socket)
        .script(JOB)
        .timeout(Duration::from_secs(100))
        .run()
        .unwrap_or_else(|e| panic!("guest run failed: {e}\ndaemon stderr:\n{}", d.stderr()));
    out.assert_success();
    eprintln!("{cache}: guest says:\n{}", out.stdout);
    assert!(out.stdout.contains("uid=65534"), "{}", out.stdout);
    assert!(!out.stdout.contains("failed"), "{cache}: {}", out.stdout);
    let mut wrong = Vec::new();
    for (name, before, want) in CASES {
        let m = std::fs::metadata(s.share.join(name)).unwrap();
        let got = m.permissions().mode() & 0o7777;
        let grew = m.len() != b"host data\n".len() as u64;
        assert!(grew, "{cache}: {name} was not written ({} bytes)", m.len());
        if got != want {
            wrong.push(format!(
                "{cache}: {name} {before:04o} -> {got:04o}, want {want:04o}"
            ));
        }
    }
    wrong
}

#[test]
fn guest_killpriv_write_clears_suid_sgid_in_every_cache_mode() {
    let _g = guest_vm::serial_guard();
    let mut wrong = Vec::new();
    // Our default (KILLPRIV_V2 off) in both modes, and with it on, where the guest leaves even
    // cached writes and truncating opens to the daemon.
    for flags in [
        &["--cache=never"][..],
        &["--cache=auto"],
        &["--cache=auto", "--killpriv-v2"],
    ] {
        wrong.extend(run_in(flags));
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}
