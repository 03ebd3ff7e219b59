//! Drop-in for upstream virtiofsd as Kata Containers launches it, proven with a real guest
//! (QEMU/TCG, Debian cloud kernel, mount tag `kataShared`, fstype virtiofs, option `nodev`).
//!
//! The daemon is launched both ways Kata does:
//! - Go runtime: the test creates and listens on the socket and passes it as fd 3, with
//!   `--syslog --cache=auto --shared-dir=D --fd=3 --thread-pool-size=1 --announce-submounts --xattr`;
//! - runtime-rs: `--socket-path=P --shared-dir=D --cache=never --thread-pool-size=1
//!   -o announce_submounts --xattr`, ready when stderr shows `Waiting for vhost-user socket
//!   connection`.
//!
//! After every guest run the daemon must exit 0 on its own once QEMU disconnects.
//! Every guest run has a hard timeout; nextest runs these tests one at a time.

#[path = "guest_dropin/late_bind.rs"]
mod late_bind;
#[path = "guest_dropin/launch.rs"]
mod launch;
#[path = "guest_dropin/output.rs"]
mod output;

use std::collections::BTreeMap;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use guest_vm::{fio, GuestOutput, GuestRun, Vm};
use late_bind::*;
use launch::*;
use output::*;
use serde_json::Value;
use vufs_testkit::{daemon_bin, Build, Daemon, Scratch};

/// A shell function the guest uses to wait for a file the host creates on the share (a
/// host→guest signal). Exits 9 after 60 s. Negative dentries live for the entry timeout
/// (1 s with cache=auto), so the file shows up at most about a second after it is created.
const WAITFOR_SH: &str = r#"
waitfor() {
  n=0
  while [ ! -e "$1" ]; do
    n=$((n + 1))
    if [ "$n" -gt 600 ]; then echo "timed out waiting for $1" >&2; exit 9; fi
    usleep 100000
  done
}
"#;

// ---------------------------------------------------------------------------------------------
// (a) fio with verification, host-side checksums against the guest's.

const SEQ_SIZE: u64 = 32 << 20;
const RAND_SIZE: u64 = 16 << 20;

fn fio_verify_script() -> String {
    let common = "--output-format=json --direct=1 --ioengine=psync --verify=crc32c \
                  --verify_fatal=1 --do_verify=1 --fallocate=none";
    format!(
        r#"set -e
fio {common} --output=/tmp/seq.json --name=seq --filename=fio-seq --rw=write --bs=1M --size={seq}
fio {common} --output=/tmp/rand.json --name=rand --filename=fio-rand --rw=randwrite --bs=4k --size={rand}
# Read both back again in separate runs: the data persisted, not only the first handle's view.
fio {common} --output=/tmp/seqv.json --name=seq --filename=fio-seq --rw=write --bs=1M --size={seq} --verify_only
fio {common} --output=/tmp/randv.json --name=rand --filename=fio-rand --rw=randwrite --bs=4k --size={rand} --verify_only
dd if=/dev/urandom of=rnd-1 bs=64k count=16 2>/dev/null
dd if=/dev/urandom of=rnd-2 bs=4k count=3 2>/dev/null
echo "written by the guest" > small.txt
sync
echo @@@SEQ; cat /tmp/seq.json
echo @@@RAND; cat /tmp/rand.json
echo @@@SEQV; cat /tmp/seqv.json
echo @@@RANDV; cat /tmp/randv.json
echo @@@MD5; md5sum fio-seq fio-rand rnd-1 rnd-2 small.txt host.bin
"#,
        seq = SEQ_SIZE,
        rand = RAND_SIZE,
    )
}

fn fio_job(json: &str) -> Value {
    let v = fio::parse_json(json).expect("fio JSON");
    let s = fio::summary(&v);
    assert_eq!(s.errors, 0, "fio reported errors: {v}");
    v
}

fn fio_verified_and_checksums_match(launch: Launch) {
    let _g = guest_vm::serial_guard();
    let s = Scratch::new();
    // A file the host wrote: the guest must read exactly these bytes.
    let host_bytes: Vec<u8> = (0..(3 << 20) + 123u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(s.share.join("host.bin"), &host_bytes).unwrap();
    let mut d = start(&s, launch, &[]);
    let out = run_ok(&d, guest(&d, fio_verify_script()));
    let secs = sections(&out.stdout);

    let seq = fio_job(section(&secs, "SEQ", &out.stdout));
    let rand = fio_job(section(&secs, "RAND", &out.stdout));
    let seqv = fio_job(section(&secs, "SEQV", &out.stdout));
    let randv = fio_job(section(&secs, "RANDV", &out.stdout));
    let (seq_s, rand_s) = (fio::summary(&seq), fio::summary(&rand));
    assert_eq!(seq_s.write_bytes, SEQ_SIZE, "sequential write bytes");
    assert_eq!(rand_s.write_bytes, RAND_SIZE, "random write bytes");
    // The verify phases read everything back through the daemon (direct I/O).
    for (what, v, size) in [
        ("seq verify", &seqv, SEQ_SIZE),
        ("rand verify", &randv, RAND_SIZE),
    ] {
        let sv = fio::summary(v);
        assert!(
            sv.read_bytes >= size,
            "{what}: read {} bytes, want {size}: {v}",
            sv.read_bytes
        );
    }

    // Host-side state and checksums equal the guest's.
    let names = [
        "fio-seq",
        "fio-rand",
        "rnd-1",
        "rnd-2",
        "small.txt",
        "host.bin",
    ];
    let guest_md5 = parse_md5(section(&secs, "MD5", &out.stdout));
    let host = host_md5(&s.share, &names);
    assert_eq!(guest_md5.len(), names.len(), "guest md5sum: {guest_md5:?}");
    assert_eq!(guest_md5, host, "guest and host checksums differ");
    let len = |n: &str| std::fs::metadata(s.share.join(n)).unwrap().len();
    assert_eq!(len("fio-seq"), SEQ_SIZE);
    assert_eq!(len("fio-rand"), RAND_SIZE);
    assert_eq!(len("rnd-1"), 1 << 20);
    assert_eq!(len("rnd-2"), 12 << 10);
    assert_eq!(
        std::fs::read(s.share.join("small.txt")).unwrap(),
        b"written by the guest\n"
    );
    assert_eq!(std::fs::read(s.share.join("host.bin")).unwrap(), host_bytes);

    let rsv = fio::summary(&seqv);
    let rrv = fio::summary(&randv);
    eprintln!(
        "{launch:?}: boot→mount {:?}, job {:?}, wall {:?}; seq write {:.1} MB/s, seq verify read {:.1} MB/s, \
         rand 4k write {:.1} MB/s ({:.0} IOPS), rand verify read {:.1} MB/s ({:.0} IOPS)",
        out.boot_to_mount,
        out.job_time,
        out.elapsed,
        mb_s(seq_s.write_bw),
        mb_s(rsv.read_bw),
        mb_s(rand_s.write_bw),
        rand_s.write_iops,
        mb_s(rrv.read_bw),
        rrv.read_iops,
    );
    assert_daemon_exits_cleanly(&mut d);
}

/// (a) Go-style launch: fio sequential (1 MiB) and random (4 KiB) direct writes verified with
/// crc32c, verified again in a second fio run, and md5 of every file equal on both sides.
#[test]
fn guest_go_style_fio_verify_and_checksums() {
    fio_verified_and_checksums_match(Launch::Go);
}

/// (a) The same under the runtime-rs launch (`--socket-path`, `--cache=never`, `-o
/// announce_submounts`, ready on the stderr line).
#[test]
fn guest_runtime_rs_style_fio_verify_and_checksums() {
    fio_verified_and_checksums_match(Launch::RuntimeRs);
}

// ---------------------------------------------------------------------------------------------
// (b) 1,000 files: create, stat, rename, unlink; the host checks the state after each phase.

const NFILES: usize = 1000;

fn many_files_script() -> String {
    format!(
        r#"{WAITFOR_SH}
set -e
mkdir many
cd many
i=0
while [ $i -lt {NFILES} ]; do echo "file $i" > f$i; i=$((i + 1)); done
echo "created=$(ls | grep -c '^f')"
guest-signal created
waitfor /mnt/ctl/created-ok
# stat every file in one process; sizes must match the contents written.
stat -c '%s %n' f* > /tmp/stat.txt
echo "stat $(awk '{{ n = substr($2, 2); if ($1 != length("file " n) + 1) bad++ }} END {{ printf "statted=%d badsize=%d", NR, bad + 0 }}' /tmp/stat.txt)"
i=0
while [ $i -lt {NFILES} ]; do mv f$i r$i; i=$((i + 1)); done
echo "renamed_r=$(ls | grep -c '^r') renamed_f=$(ls | grep -c '^f' || true)"
cat r0 r999 > /tmp/ends
echo "ends=$(tr '\n' ',' < /tmp/ends)"
guest-signal renamed
waitfor /mnt/ctl/renamed-ok
rm r*
echo "unlinked_left=$(ls -A | wc -l)"
cd ..
rmdir many
echo "dir_removed=$([ -e many ] && echo no || echo yes)"
"#
    )
}

/// Lists `dir` (names only, sorted).
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Host check: `dir` holds exactly `{prefix}0..{prefix}999`, each with its `file i` line.
fn assert_host_files(dir: &Path, prefix: &str) {
    let got = names(dir);
    let mut want: Vec<String> = (0..NFILES).map(|i| format!("{prefix}{i}")).collect();
    want.sort();
    assert_eq!(got.len(), NFILES, "host sees {} entries", got.len());
    assert_eq!(got, want, "host directory state");
    for i in [0, 1, 499, 998, 999] {
        let p = dir.join(format!("{prefix}{i}"));
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            format!("file {i}\n"),
            "{}",
            p.display()
        );
    }
}

/// (b) A busybox loop creates 1,000 files; the guest stats them all (sizes checked), renames
/// each, then unlinks them. After each phase the guest prints its counts and the host checks the
/// directory before letting the guest continue (a file on the share as the host→guest signal).
#[test]
fn guest_thousand_files_create_stat_rename_unlink() {
    let _g = guest_vm::serial_guard();
    let s = Scratch::new();
    let ctl = s.share.join("ctl");
    std::fs::create_dir(&ctl).unwrap();
    let mut d = start(&s, Launch::Go, &[]);
    let mut vm = guest(&d, many_files_script())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn guest: {e}"));
    let t0 = Instant::now();
    let many = s.share.join("many");

    vm.wait_for_signal("created", GUEST_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\n--- daemon stderr ---\n{}", d.stderr()));
    let t_created = t0.elapsed();
    assert_host_files(&many, "f");
    std::fs::write(ctl.join("created-ok"), b"").unwrap();

    vm.wait_for_signal("renamed", GUEST_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\n--- daemon stderr ---\n{}", d.stderr()));
    let t_renamed = t0.elapsed();
    assert_host_files(&many, "r");
    std::fs::write(ctl.join("renamed-ok"), b"").unwrap();

    let out = finish_vm(&d, vm);
    let o = &out.stdout;
    let n = NFILES.to_string();
    assert_eq!(kv(o, "created").as_deref(), Some(n.as_str()), "{o}");
    assert_eq!(kv(o, "statted").as_deref(), Some(n.as_str()), "{o}");
    assert_eq!(kv(o, "badsize").as_deref(), Some("0"), "{o}");
    assert_eq!(kv(o, "renamed_r").as_deref(), Some(n.as_str()), "{o}");
    assert_eq!(kv(o, "renamed_f").as_deref(), Some("0"), "{o}");
    assert!(o.contains("ends=file 0,file 999,"), "{o}");
    assert_eq!(kv(o, "unlinked_left").as_deref(), Some("0"), "{o}");
    assert_eq!(kv(o, "dir_removed").as_deref(), Some("yes"), "{o}");
    assert!(!many.exists(), "host still has share/many");
    assert_eq!(names(&s.share), ["ctl", "sub"], "host share root");
    eprintln!(
        "1000 files: created by {t_created:?}, renamed by {t_renamed:?} (incl. host checks), \
         job {:?}, wall {:?}",
        out.job_time, out.elapsed
    );
    assert_daemon_exits_cleanly(&mut d);
}

// ---------------------------------------------------------------------------------------------
// (c) A bind mount made after the guest mounted the share shows up as a submount.

/// (c) Kata's Go launch (`--announce-submounts`): a bind mount of a directory of the *same
/// filesystem* made after the guest mounted the share is a submount in the guest. Upstream
/// virtiofsd detects mount points by st_dev *or* mount id (statx STATX_MNT_ID), so a same-device
/// bind mount is announced too.
#[test]
fn guest_late_same_fs_bind_mount_is_a_submount() {
    let _g = guest_vm::serial_guard();
    let lb = late_bind_mount(Launch::Go, Source::SameFs, &[]);
    assert_submount(&lb, "same-filesystem bind mount");
}

/// (c) runtime-rs launch (`-o announce_submounts`): a late bind mount of a tmpfs (another
/// device) is a submount in the guest.
#[test]
fn guest_late_tmpfs_bind_mount_is_a_submount() {
    let _g = guest_vm::serial_guard();
    let lb = late_bind_mount(Launch::RuntimeRs, Source::Tmpfs, &[]);
    assert_submount(&lb, "tmpfs bind mount");
}

/// (c) `--no-announce-submounts` appended after Kata's `--announce-submounts` wins: the late
/// tmpfs bind mount is visible but is not a submount (same st_dev as the share in the guest).
#[test]
fn guest_late_bind_mount_not_announced_with_no_announce_submounts() {
    let _g = guest_vm::serial_guard();
    let lb = late_bind_mount(Launch::Go, Source::Tmpfs, &["--no-announce-submounts"]);
    assert_eq!(
        lb.dev_mnt, lb.dev_late,
        "without announcement /mnt/late must stay on the share's device:\n{}",
        lb.out.stdout
    );
    assert!(
        !lb.mounts
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some("/mnt/late")),
        "{}",
        lb.mounts
    );
}

// ---------------------------------------------------------------------------------------------
// (d) --readonly

const RO_SCRIPT: &str = r#"
try() {
  name=$1; shift
  if "$@" > /tmp/try.out 2>&1; then
    echo "RESULT $name ok"
  else
    echo "RESULT $name failed: $(tr '\n' ' ' < /tmp/try.out)"
  fi
}
echo "read=$(cat ro.txt)"
echo "readsub=$(cat dir/inner.txt)"
echo "listing=$(ls | tr '\n' ,)"
try create sh -c 'echo x > new.txt'
try append sh -c 'echo x >> ro.txt'
try truncate sh -c ': > ro.txt'
try ddwrite dd if=/dev/zero of=ro.txt bs=1 count=1 conv=notrunc
try mkdir mkdir newdir
try rm rm ro.txt
try rmdir rmdir dir/empty
try rename mv ro.txt moved.txt
try symlink ln -s ro.txt link
try hardlink ln ro.txt hard
try chmod chmod 600 ro.txt
try touch touch -c ro.txt
try mknod mkfifo fifo
echo "after=$(ls | tr '\n' ,)"
echo "reread=$(cat ro.txt)"
"#;

/// (d) `--readonly` (Go launch): reads work; every kind of change fails with EROFS ("Read-only
/// file system") in the guest, and the host files are unchanged.
#[test]
fn guest_readonly_share_refuses_every_change() {
    let _g = guest_vm::serial_guard();
    let s = Scratch::new();
    std::fs::write(s.share.join("ro.txt"), b"read-only content\n").unwrap();
    std::fs::create_dir_all(s.share.join("dir/empty")).unwrap();
    std::fs::write(s.share.join("dir/inner.txt"), b"inner\n").unwrap();
    let before = listing(&s.share);
    let mut d = start(&s, Launch::Go, &["--readonly"]);
    let out = run_ok(&d, guest(&d, RO_SCRIPT));
    let o = &out.stdout;
    assert!(o.contains("read=read-only content\n"), "{o}");
    assert!(o.contains("readsub=inner\n"), "{o}");
    assert!(o.contains("listing=dir,ro.txt,sub,\n"), "{o}");
    let ops = [
        "create", "append", "truncate", "ddwrite", "mkdir", "rm", "rmdir", "rename", "symlink",
        "hardlink", "chmod", "touch", "mknod",
    ];
    for op in ops {
        let line = o
            .lines()
            .find(|l| l.starts_with(&format!("RESULT {op} ")))
            .unwrap_or_else(|| panic!("no result for {op}:\n{o}"));
        assert!(
            line.contains("failed") && line.contains("Read-only file system"),
            "{op} must fail with EROFS: {line}\n{o}"
        );
    }
    assert!(o.contains("after=dir,ro.txt,sub,\n"), "{o}");
    assert!(o.contains("reread=read-only content\n"), "{o}");
    assert_eq!(listing(&s.share), before, "host files changed");
    assert_daemon_exits_cleanly(&mut d);
}

/// Every entry below `dir` with its mode, size and content (files), for before/after checks.
fn listing(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let content = if m.is_file() {
                String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned()
            } else {
                String::new()
            };
            out.push(format!(
                "{} {:o} {} {:?} {content}",
                p.strip_prefix(dir).unwrap().display(),
                m.permissions().mode(),
                m.len(),
                m.modified().ok()
            ));
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------------
// The demo ("the main job"): scripts/demo.sh runs this with --no-capture.

const DEMO_RATE: f64 = 10e6;
const DEMO_BURST: f64 = 20e6;
const DEMO_WRITE: u64 = 60 << 20;
const DEMO_READ: u64 = 24 << 20;

fn demo_script() -> String {
    let common = "--output-format=json --direct=1 --ioengine=psync --bs=1M --fallocate=none";
    format!(
        r#"set -e
# 1. The rate limit: a sequential direct write while the bucket is full (20 MB burst).
fio {common} --output=/tmp/w.json --name=seqwrite --filename=demo-write.dat --rw=write --size={w}
# 2. A sequential direct read of a file the host laid out (the bucket is empty now).
fio {common} --output=/tmp/r.json --name=seqread --filename=demo-read.dat --rw=read --size={r}
# 3. Ordinary file work.
mkdir -p reports
for i in 1 2 3; do echo "report $i from the guest, $(uname -r)" > reports/report-$i.txt; done
dd if=/dev/urandom of=reports/blob.bin bs=64k count=4 2>/dev/null
sync
echo @@@W; cat /tmp/w.json
echo @@@R; cat /tmp/r.json
echo @@@LS; ls -l reports demo-write.dat demo-read.dat hello-from-host.txt
echo @@@HELLO; cat hello-from-host.txt
echo @@@MD5; md5sum reports/* demo-write.dat
"#,
        w = DEMO_WRITE,
        r = DEMO_READ,
    )
}

fn fio_job_runtime_s(v: &Value, dir: &str) -> f64 {
    v["jobs"][0][dir]["runtime"].as_f64().unwrap_or(0.0) / 1000.0
}

/// The main job, as a human-readable report (run with --no-capture; scripts/demo.sh does).
/// Kata's Go-style launch plus `--fs-bw-size=10M --fs-bw-burst=20M`, a guest writes and reads
/// through the share, and the rate the guest saw is compared with the configured limit.
#[test]
fn guest_demo_main_job() {
    let _g = guest_vm::serial_guard();
    let s = Scratch::new();
    std::fs::write(
        s.share.join("hello-from-host.txt"),
        b"hello from the host\n",
    )
    .unwrap();
    {
        let f = std::fs::File::create(s.share.join("demo-read.dat")).unwrap();
        f.set_len(DEMO_READ).unwrap();
    }
    let extra = ["--fs-bw-size=10M", "--fs-bw-burst=20M"];
    let t0 = Instant::now();
    let mut d = start(&s, Launch::Go, &extra);
    println!("\n=== virtiofsd drop-in demo: Kata Containers' launch + per-sandbox rate limit ===");
    println!("daemon:  {}", daemon().display());
    println!(
        "command: virtiofsd --syslog --cache=auto --shared-dir={} --fd=3 --thread-pool-size=1 \
         --announce-submounts --xattr {}",
        s.share.display(),
        extra.join(" ")
    );
    println!(
        "         (the listening socket {} is passed as fd 3, as Kata's Go runtime does)",
        d.socket.display()
    );
    println!("guest:   QEMU {} vhost-user-fs-pci tag={TAG} queue-size=1024, mount -t virtiofs -o nodev {TAG} /mnt",
        match guest_vm::Accel::from_env() { Ok(guest_vm::Accel::Kvm) => "KVM", _ => "TCG" });

    let out = run_ok(&d, guest(&d, demo_script()));
    assert_daemon_exits_cleanly(&mut d);
    let secs = sections(&out.stdout);
    let w = fio_job(section(&secs, "W", &out.stdout));
    let r = fio_job(section(&secs, "R", &out.stdout));
    let (ws, rs) = (fio::summary(&w), fio::summary(&r));
    assert_eq!(ws.write_bytes, DEMO_WRITE);
    assert_eq!(rs.read_bytes, DEMO_READ);

    println!("\n--- the guest ---");
    println!(
        "boot → share mounted: {:.1} s; job: {:.1} s; whole run: {:.1} s",
        out.boot_to_mount.unwrap_or_default().as_secs_f64(),
        out.job_time.unwrap_or_default().as_secs_f64(),
        out.elapsed.as_secs_f64()
    );
    println!(
        "host file read by the guest: {}",
        section(&secs, "HELLO", &out.stdout).trim()
    );
    println!("the share as the guest sees it (ls -l in the guest; reports/ and demo-write.dat are the guest's):");
    for l in section(&secs, "LS", &out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        println!("    {l}");
    }

    println!("\n--- fio in the guest (direct I/O, 1 MiB blocks) ---");
    let w_time = fio_job_runtime_s(&w, "write");
    let r_time = fio_job_runtime_s(&r, "read");
    println!(
        "sequential write {:>5.1} MB  in {w_time:>5.2} s = {:>6.2} MB/s",
        DEMO_WRITE as f64 / 1e6,
        mb_s(ws.write_bw)
    );
    println!(
        "sequential read  {:>5.1} MB  in {r_time:>5.2} s = {:>6.2} MB/s",
        DEMO_READ as f64 / 1e6,
        mb_s(rs.read_bw)
    );

    // Bucket starts full (20 MB) and refills at 10 MB/s: bytes = burst + rate·t.
    let w_expected = (DEMO_WRITE as f64 - DEMO_BURST).max(0.0) / DEMO_RATE;
    // The read starts with a bucket drained by the write (plus whatever refilled meanwhile,
    // at most the burst): between (bytes − burst)/rate and bytes/rate.
    let r_lo = (DEMO_READ as f64 - DEMO_BURST).max(0.0) / DEMO_RATE;
    let r_hi = DEMO_READ as f64 / DEMO_RATE;
    println!("\n--- the rate limit (--fs-bw-size=10M --fs-bw-burst=20M: 10 MB/s, 20 MB bucket, starts full) ---");
    println!(
        "write {:.1} MB: expected ≥ ({:.1} MB − 20 MB burst) / 10 MB/s = {w_expected:.2} s; measured {w_time:.2} s ({:+.0} %)",
        DEMO_WRITE as f64 / 1e6,
        DEMO_WRITE as f64 / 1e6,
        (w_time - w_expected) / w_expected * 100.0
    );
    println!(
        "      rate after the burst: expected 10.00 MB/s, measured {:.2} MB/s",
        (DEMO_WRITE as f64 - DEMO_BURST) / w_time / 1e6
    );
    println!(
        "read  {:.1} MB: expected {r_lo:.2}–{r_hi:.2} s (bucket partly refilled); measured {r_time:.2} s = {:.2} MB/s",
        DEMO_READ as f64 / 1e6,
        mb_s(rs.read_bw)
    );

    let names: Vec<String> = parse_md5(section(&secs, "MD5", &out.stdout))
        .into_keys()
        .collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let host = host_md5(&s.share, &name_refs);
    let guest_md5 = parse_md5(section(&secs, "MD5", &out.stdout));
    println!("\n--- checksums: guest md5sum vs host md5sum ---");
    for (n, h) in &guest_md5 {
        let same = host.get(n) == Some(h);
        println!(
            "    {h}  {n}  {}",
            if same { "same on host" } else { "DIFFERS" }
        );
    }
    assert_eq!(guest_md5, host, "guest and host checksums differ");
    println!(
        "\ndaemon exited 0 by itself when QEMU disconnected; total {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    // The limit held: never faster than the bucket allows; not absurdly slower either.
    assert!(
        w_time >= w_expected * 0.9,
        "write finished in {w_time:.2} s, faster than the limit allows ({w_expected:.2} s)"
    );
    assert!(
        w_time <= w_expected * 1.5 + 2.0,
        "write took {w_time:.2} s, expected about {w_expected:.2} s"
    );
    assert!(
        r_time >= r_lo * 0.9 && r_time <= r_hi * 1.5 + 2.0,
        "read took {r_time:.2} s, expected {r_lo:.2}–{r_hi:.2} s"
    );
}
