//! The daemon's memory stays flat while a guest creates, forgets and unlinks files without end.
//!
//! fuse-backend-rs 0.14 keeps every forgotten inode's identity→nodeid mapping (and, with file
//! handles, the handle) until exit; `patches/fuse-backend-rs` drops it. Each test bounds the
//! growth of the serving process's RSS per thousand cycles, in the namespace sandbox (O_PATH
//! inodes) and with `--sandbox=none` as root (file handles).

mod common;

use std::time::Instant;

use common::{Build, Env, MountGuard, Scratch};
use vufs_frontend::fuse::EntryOut;
use vufs_frontend::{ConnectOptions, ROOT_ID};

/// Requests in flight at once.
const WINDOW: usize = 256;

/// The process that serves requests: the sandboxed child in namespace mode, else the daemon.
fn serving_pid(daemon_pid: u32) -> u32 {
    let children =
        std::fs::read_to_string(format!("/proc/{daemon_pid}/task/{daemon_pid}/children"))
            .unwrap_or_default();
    children
        .split_whitespace()
        .next()
        .and_then(|c| c.parse().ok())
        .unwrap_or(daemon_pid)
}

/// Resident set size in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Creates `alive` files (all alive at once), forgets them, unlinks them; `rounds` times.
/// Returns the RSS with the first round's files alive and with the last round's.
///
/// Sampled while the files are alive, the daemon's heap is at its full extent: sampled after
/// the unlinks, RSS depends on whether glibc could give the freed top of the heap back (one
/// small allocation left there keeps it), which moved the reading by the whole working set
/// (1.4 MiB for 15,000 files) from one run to the next.
fn churn(mode: &str, alive: usize, rounds: usize) -> (u64, u64) {
    // On a tmpfs: ext4's journal would make the host's side of each cycle the slow part.
    let s = Scratch::new();
    let mount = MountGuard::tmpfs(&s.share);
    let mut e = Env::launch(
        s,
        Some(mount),
        Build::Normal,
        &[&format!("--sandbox={mode}")],
        &[],
    );
    let mut fs = e.connect_with(ConnectOptions {
        queue_size: 1024,
        ..Default::default()
    });
    fs.init().expect("INIT");
    fs.set_compact_chains(true);
    let pid = serving_pid(e.d.pid());
    let dir = fs.mkdir(ROOT_ID, b"churn", 0o755).expect("MKDIR").nodeid;
    let (mut first, mut last) = (0, 0);
    let mut serial = 0u64;
    for round in 0..rounds {
        let names: Vec<Vec<u8>> = (0..alive)
            .map(|i| format!("f{}", serial + i as u64).into_bytes())
            .collect();
        // Distinct names: every file is new to the daemon.
        serial += alive as u64;
        let mut forgets = Vec::with_capacity(alive);
        for window in names.chunks(WINDOW) {
            let pending: Vec<_> = window
                .iter()
                .map(|n| {
                    fs.submit_mknod(dir, n, libc::S_IFREG | 0o644)
                        .expect("MKNOD")
                })
                .collect();
            for p in pending {
                let body = fs
                    .wait_reply(p)
                    .and_then(|r| r.into_result())
                    .expect("MKNOD");
                let e: EntryOut = vufs_frontend::fuse::parse_obj(&body).expect("EntryOut");
                forgets.push((e.nodeid, 1));
            }
        }
        let alive_rss = rss_kib(pid);
        if round == 0 {
            first = alive_rss;
        }
        last = alive_rss;
        for batch in forgets.chunks(500) {
            fs.batch_forget(batch).expect("BATCH_FORGET");
        }
        for window in names.chunks(WINDOW) {
            let pending: Vec<_> = window
                .iter()
                .map(|n| fs.submit_unlink(dir, n).expect("UNLINK"))
                .collect();
            for p in pending {
                fs.wait_reply(p)
                    .and_then(|r| r.into_result())
                    .expect("UNLINK");
            }
        }
    }
    e.still_serving(&mut fs).unwrap();
    (first, last)
}

/// RSS growth allowed per thousand cycles after the first round: a few hundred bytes of
/// allocator noise, far below the 65–195 bytes per file the kept mappings cost (measured).
const KIB_PER_1000_CYCLES: u64 = 4;

fn assert_flat(mode: &str, alive: usize, rounds: usize) {
    let t = Instant::now();
    let (first, last) = churn(mode, alive, rounds);
    let cycles = (alive * (rounds - 1)) as u64;
    let allowed = KIB_PER_1000_CYCLES * cycles / 1000 + 512;
    eprintln!(
        "{mode}: {alive} files x {rounds} rounds in {:.1} s: RSS {first} KiB with the first \
         round's files alive, {last} KiB with the last's (+{} KiB, allowed {allowed})",
        t.elapsed().as_secs_f64(),
        last.saturating_sub(first)
    );
    assert!(
        last <= first + allowed,
        "{mode}: RSS grew from {first} KiB to {last} KiB over {cycles} create/forget/unlink \
         cycles (allowed {allowed} KiB)"
    );
}

#[test]
fn rss_flat_over_200k_create_unlink_cycles_namespace() {
    assert_flat("namespace", 1_000, 201);
}

#[test]
fn rss_flat_over_200k_create_unlink_cycles_file_handles() {
    assert_flat("none", 1_000, 201);
}

/// Each live O_PATH inode holds a descriptor, and RLIMIT_NOFILE's hard limit here is 20,000:
/// 15,000 files alive at once, forgotten and unlinked, 14 times (210,000 files).
#[test]
fn rss_flat_when_15k_files_live_at_once_namespace() {
    assert_flat("namespace", 15_000, 14);
}

#[test]
fn rss_flat_when_100k_files_live_at_once_file_handles() {
    assert_flat("none", 100_000, 3);
}
