//! Several request queues in flight at once, on the real binary over its socket: every reply
//! comes back on the queue of its request, one set of buckets limits the sum of the queues,
//! every request queue is charged, and a ring stop of one queue handles its own parked
//! requests without disturbing the others.
//!
//! These tests measure time: run them under `flock /tmp/guest-tests.lock` (nextest runs them
//! one at a time, with the other rate tests). Each assertion is shown failing against a seeded
//! bug (`Build::Seeded` with a `VIRTIOFSD_SEEDED_BUG_*` variable; see the report of the change).

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::session_with_file;
use vufs_frontend::fuse::{parse_obj, WriteOut};
use vufs_frontend::{ConnectOptions, FuseSession, Pending, ROOT_ID};
use vufs_testkit::api::json;
use vufs_testkit::{Build, Daemon, Scratch};

/// Request queues of every test (virtqueues 1 to 4; 0 is hiprio).
const QUEUES: usize = 4;
const KIB: usize = 1024;

/// The daemon under test: the normal build, or the seeded one with `VIRTIOFSD_SEEDED_BUG`
/// naming a seeded bug (`e.g. VIRTIOFSD_SEEDED_BUG=EVENT_INDEX`), to show an assertion failing.
fn start(s: &Scratch, args: &[&str]) -> Daemon {
    let mut all = vec![
        "--api-socket=auto",
        "--sandbox=none",
        "--max-request-queues=4",
    ];
    all.extend_from_slice(args);
    let seeded = std::env::var("VIRTIOFSD_SEEDED_BUG").ok();
    let var = seeded.as_ref().map(|b| format!("VIRTIOFSD_SEEDED_BUG_{b}"));
    let (build, env) = match &var {
        Some(v) => (Build::Seeded, vec![(v.as_str(), "1")]),
        None => (Build::Normal, vec![]),
    };
    let mut d = s.start(build, &all, &env);
    d.wait_ready();
    d
}

/// Hiprio plus [`QUEUES`] request queues; INIT and a file `f` opened read-write.
fn session(s: &Scratch) -> (FuseSession, u64, u64) {
    let opts = ConnectOptions {
        num_queues: 1 + QUEUES,
        timeout: Duration::from_secs(10),
        ..Default::default()
    };
    session_with_file(s, &opts)
}

/// Bytes a WRITE reply says were written, or its errno.
fn write_result(r: vufs_frontend::Result<vufs_frontend::Reply>) -> Result<u64, i32> {
    match r.and_then(|r| r.into_result()) {
        Ok(body) => Ok(u64::from(parse_obj::<WriteOut>(&body).unwrap().size)),
        Err(e) => Err(e.errno().unwrap_or_else(|| panic!("transport error: {e}"))),
    }
}

/// Submits a WRITE of `data` on queue `q` at `*off`, advancing it.
fn write_on(fs: &mut FuseSession, q: usize, node: u64, fh: u64, off: &mut u64, data: &[u8]) {
    fs.set_request_queue(q).unwrap();
    fs.submit_write(node, fh, *off, data)
        .unwrap_or_else(|e| panic!("WRITE on queue {q}: {e}"));
    *off += data.len() as u64;
}

/// The reply of one pending request on queue `q`: it must come back on that queue.
fn reply_on(fs: &mut FuseSession, d: &Daemon, q: usize) -> (Pending, Result<u64, i32>) {
    let (p, r) = fs
        .wait_any_reply_on(q)
        .unwrap_or_else(|e| panic!("no reply on queue {q}: {e}\n{}", d.log_tail(20)));
    assert_eq!(
        p.token.queue as usize, q,
        "reply of another queue's request"
    );
    (p, write_result(r))
}

/// Requests per virtqueue from `/api/v1/stats` (`queue` → `requests`).
fn queue_requests(s: &Scratch) -> HashMap<u64, u64> {
    let (st, v) = json(&s.api_socket(), "GET", "/api/v1/stats", "");
    assert_eq!(st, 200, "{v}");
    v["queues"]
        .as_array()
        .unwrap_or_else(|| panic!("no queues: {v}"))
        .iter()
        .map(|q| {
            (
                q["queue"].as_u64().unwrap(),
                q["requests"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Four queues keep 4 writes of 64 KiB each in flight for 3 s against 1 MB/s (1 MB burst):
/// each reply comes back on its request's queue, the sum over the queues stays within
/// `burst + size·T + one write` and reaches the rate, and every queue carries its share.
#[test]
fn four_queues_in_flight_share_one_limit_and_reply_on_their_own_queue() {
    const W: usize = 64 * KIB;
    const SIZE: u64 = 1_000_000;
    const BURST: u64 = 1_000_000;
    let s = Scratch::new();
    let d = start(&s, &["--fs-bw-size=1000000", "--fs-bw-burst=1000000"]);
    let (mut fs, node, fh) = session(&s);
    let before = queue_requests(&s);
    let data = vec![0xa5u8; W];
    let mut off = 0u64;
    let mut per_queue = [0u64; QUEUES + 1];
    let mut in_flight = [0usize; QUEUES + 1];
    let mut ok = 0u64;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) {
        for (q, n) in in_flight.iter_mut().enumerate().skip(1) {
            while *n < 4 {
                write_on(&mut fs, q, node, fh, &mut off, &data);
                *n += 1;
            }
        }
        // Take one reply from each queue in turn: a reply on another queue would never come.
        for q in 1..=QUEUES {
            let (_, r) = reply_on(&mut fs, &d, q);
            in_flight[q] -= 1;
            let n = r.unwrap_or_else(|e| panic!("WRITE on queue {q} failed: errno {e}"));
            ok += n;
            per_queue[q] += n;
            let t = t0.elapsed();
            let bound = BURST + (SIZE as f64 * t.as_secs_f64()) as u64 + W as u64;
            assert!(
                ok <= bound,
                "{ok} bytes written over {QUEUES} queues in {t:?}: bound burst + size·T + one \
                 write = {bound} (per queue {per_queue:?})"
            );
        }
    }
    let t = t0.elapsed();
    println!("{ok} bytes in {t:?} over {QUEUES} queues: {per_queue:?}");
    // At the rate: the burst, then the refill (give or take the writes still in flight).
    let floor = BURST + (SIZE as f64 * t.as_secs_f64()) as u64;
    let floor = floor.saturating_sub((QUEUES * 4 * W) as u64 + 2 * W as u64);
    assert!(ok >= floor, "only {ok} bytes in {t:?} (floor {floor})");
    let after = queue_requests(&s);
    for (q, bytes) in per_queue.iter().enumerate().skip(1) {
        assert!(
            *bytes >= ok / (2 * QUEUES as u64),
            "queue {q} carried {bytes} of {ok} bytes: {per_queue:?}"
        );
        let served = after.get(&(q as u64)).copied().unwrap_or(0)
            - before.get(&(q as u64)).copied().unwrap_or(0);
        assert!(
            served >= bytes / W as u64,
            "stats count {served} requests on queue {q}, {bytes} bytes were written on it: \
             {after:?}"
        );
    }
}

/// Every request queue pays the limits: with 40 ops/s and a burst of 5, 25 GETATTRs on any
/// one queue take at least (25 − 5) / 40 = 0.5 s, and the throttled count grows.
#[test]
fn every_request_queue_is_charged() {
    let s = Scratch::new();
    let d = start(&s, &["--fs-ops-size=40", "--fs-ops-burst=5"]);
    let (mut fs, _, _) = session(&s);
    for q in 1..=QUEUES {
        // Start from an empty bucket each time: wait out whatever the previous queue left.
        std::thread::sleep(Duration::from_millis(200));
        let before = throttled(&s);
        fs.set_request_queue(q).unwrap();
        let t0 = Instant::now();
        let pending: Vec<Pending> = (0..25)
            .map(|_| {
                fs.submit(3 /* GETATTR */, ROOT_ID, &[&[0u8; 16]], 104)
                    .unwrap()
            })
            .collect();
        for _ in &pending {
            let (p, r) = fs.wait_any_reply_on(q).unwrap_or_else(|e| {
                panic!("no GETATTR reply on queue {q}: {e}\n{}", d.log_tail(20))
            });
            assert_eq!(p.token.queue as usize, q);
            r.and_then(|r| r.into_result())
                .unwrap_or_else(|e| panic!("GETATTR on queue {q}: {e}"));
        }
        let t = t0.elapsed();
        let waited = throttled(&s) - before;
        println!("queue {q}: 25 GETATTRs in {t:?}, {waited} throttled");
        assert!(
            t >= Duration::from_millis(450),
            "25 GETATTRs on queue {q} took {t:?}: the ops limit (40/s, burst 5) did not apply"
        );
        assert!(
            waited >= 10,
            "only {waited} requests on queue {q} waited for tokens"
        );
    }
}

fn throttled(s: &Scratch) -> u64 {
    let (_, v) = json(&s.api_socket(), "GET", "/api/v1/stats", "");
    v["throttled"]["requests"].as_u64().unwrap()
}

/// With writes parked on all four queues (1 MB/s, 256 KiB burst), queue 2 is stopped and restarted (a GET_VRING_BASE,
/// as for a reset of that queue): its own parked writes are finished before the stop answers
/// (served within one burst of debt, the rest EIO), and the other queues' writes are not
/// touched: they stay parked, then all succeed at the rate. Queue 2 serves again afterwards.
#[test]
fn a_ring_stop_of_one_queue_leaves_the_others_running() {
    const W: usize = 128 * KIB;
    const STOPPED: usize = 2;
    let s = Scratch::new();
    let d = start(&s, &["--fs-bw-size=1000000", "--fs-bw-burst=262144"]);
    let (mut fs, node, fh) = session(&s);
    let data = vec![0x3cu8; W];
    let mut off = 0u64;
    // Drain the burst first, so everything below parks.
    for _ in 0..2 {
        write_on(&mut fs, 1, node, fh, &mut off, &data);
        let (_, r) = reply_on(&mut fs, &d, 1);
        r.unwrap();
    }
    // Queue 2 parks 6 (768 KiB: more than a full bucket plus one burst of debt can pay, so some
    // are refused at its stop however late it comes), the others 4 each.
    let parked = |q| if q == STOPPED { 6 } else { 4 };
    for q in 1..=QUEUES {
        for _ in 0..parked(q) {
            write_on(&mut fs, q, node, fh, &mut off, &data);
        }
    }
    std::thread::sleep(Duration::from_millis(50));
    let (_, lost) = fs.frontend().restart_queue(STOPPED).unwrap();
    assert_eq!(
        lost, 0,
        "queue {STOPPED}: a chain was not returned before the stop"
    );
    let (mut ok, mut eio) = (0, 0);
    for _ in 0..parked(STOPPED) {
        match reply_on(&mut fs, &d, STOPPED).1 {
            Ok(_) => ok += 1,
            Err(libc::EIO) => eio += 1,
            Err(e) => panic!("a parked write of the stopped queue failed with errno {e}"),
        }
    }
    println!("queue {STOPPED} stopped: {ok} parked writes served, {eio} failed with EIO");
    assert!(eio >= 1, "no parked write of the stopped queue was refused");
    // The others were not disturbed: every write of theirs succeeds, on its own queue.
    let t0 = Instant::now();
    for q in (1..=QUEUES).filter(|q| *q != STOPPED) {
        for _ in 0..4 {
            let (_, r) = reply_on(&mut fs, &d, q);
            let n = r.unwrap_or_else(|e| {
                panic!("queue {q}'s write failed with errno {e} after queue {STOPPED} stopped")
            });
            assert_eq!(n, W as u64);
        }
    }
    println!(
        "the other queues' 12 writes finished {:?} after the stop",
        t0.elapsed()
    );
    // The restarted queue serves again.
    write_on(&mut fs, STOPPED, node, fh, &mut off, &data);
    let (_, r) = reply_on(&mut fs, &d, STOPPED);
    assert_eq!(r, Ok(W as u64), "queue {STOPPED} after its restart");
}
