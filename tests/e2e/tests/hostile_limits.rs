//! Limits and memory a hostile guest cannot beat, on the real binary over its socket: device
//! resets with parked writes, live changes, oversized and undersized requests, re-posted heads, a
//! ring full of the largest parked requests.
//!
//! The rate tests measure time: run them under `flock /tmp/guest-tests.lock` (they run one at a
//! time among themselves). Their bounds come from the limit arithmetic (README "Debt" and
//! "Guest reset"): over any window T a bucket admits at most `burst + size·T + one request`, and
//! `2·burst + size·T + one request` across ring stops.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::session_with_file;
use vufs_frontend::fuse::{parse_obj, WriteOut, OUT_HEADER_LEN};
use vufs_frontend::{
    encode_request, parse_reply, ConnectOptions, Desc, FuseSession, REQUEST_QUEUE, ROOT_ID,
};
use vufs_testkit::api::json;
use vufs_testkit::{Daemon, Scratch};

/// 1 MB/s with a 1 MB burst: the limit of every rate test.
const SIZE: u64 = 1_000_000;
const BURST: u64 = 1_000_000;
const LIMIT: [&str; 2] = ["--fs-bw-size=1000000", "--fs-bw-burst=1000000"];
/// The writes of the rate tests.
const W: usize = 256 * 1024;
const MIB: usize = 1 << 20;
const READ: u32 = 15;
const WRITE: u32 = 16;

fn start(s: &Scratch, args: &[&str]) -> Daemon {
    // No sandbox: the process we start is the daemon itself, so its RSS is the daemon's.
    s.start_with_api(&[&["--sandbox=none"], args].concat())
}

fn patch(path: &Path, body: &str) {
    let (st, v) = json(path, "PATCH", "/api/v1/ratelimit", body);
    assert_eq!(st, 200, "{body}: {v}");
}

fn bw_level(path: &Path) -> i64 {
    let (_, v) = json(path, "GET", "/api/v1/ratelimit", "");
    v["bw"]["level"].as_i64().unwrap_or_else(|| panic!("{v}"))
}

/// Bytes a window of `t` may admit: `slack + size·t`, rounded down.
fn allowed(slack: u64, size: u64, t: Duration) -> u64 {
    slack + (size as u128 * t.as_nanos() / 1_000_000_000) as u64
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A WRITE request's header and fixed part (the payload goes in its own descriptor).
fn write_head(unique: u64, nodeid: u64, fh: u64, offset: u64, size: u32) -> Vec<u8> {
    let mut wi = Vec::with_capacity(40);
    wi.extend_from_slice(&fh.to_le_bytes());
    wi.extend_from_slice(&offset.to_le_bytes());
    wi.extend_from_slice(&size.to_le_bytes());
    wi.extend_from_slice(&[0u8; 20]); // write_flags, lock_owner, flags, padding
    let mut req = encode_request(unique, WRITE, nodeid, &[&wi]);
    let len = req.len() as u32 + size;
    req[..4].copy_from_slice(&len.to_le_bytes());
    req
}

fn read_in(fh: u64, offset: u64, size: u32) -> Vec<u8> {
    let mut ri = Vec::with_capacity(40);
    ri.extend_from_slice(&fh.to_le_bytes());
    ri.extend_from_slice(&offset.to_le_bytes());
    ri.extend_from_slice(&size.to_le_bytes());
    ri.extend_from_slice(&[0u8; 20]); // read_flags, lock_owner, flags, padding
    ri
}

/// The byte count of a WRITE reply, or the errno it failed with.
fn write_result(r: vufs_frontend::Result<vufs_frontend::Reply>) -> Result<u64, i32> {
    match r.and_then(|r| r.into_result()) {
        Ok(body) => Ok(u64::from(parse_obj::<WriteOut>(&body).unwrap().size)),
        Err(e) => Err(e.errno().unwrap_or_else(|| panic!("transport error: {e}"))),
    }
}

/// A guest that keeps 16 writes parked and resets its device every 60 ms for 4 s. Each stop
/// serves only what the bucket can pay (one burst of debt at most) and fails the rest with EIO
/// without performing it, so the bytes on the host stay within `2·burst + size·T + one write`,
/// while writes keep flowing at the rate.
#[test]
fn reset_loop_with_parked_writes_stays_within_the_bound() {
    reset_loop(&[]);
}

/// The same with Kata's `--thread-pool-size=1`: admitted writes wait in the pool's queue, and
/// a stop waits for them.
#[test]
fn reset_loop_with_parked_writes_on_a_thread_pool() {
    reset_loop(&["--thread-pool-size=1"]);
}

fn reset_loop(extra: &[&str]) {
    let s = Scratch::new();
    let mut args = LIMIT.to_vec();
    args.extend_from_slice(extra);
    let _d = start(&s, &args);
    let (mut fs, node, fh) = session_with_file(&s, &ConnectOptions::default());
    let data = vec![0x5au8; W];
    let slack = 2 * BURST + W as u64;
    let (mut ok, mut eio, mut stops, mut off) = (0u64, 0u64, 0u32, 0u64);
    let t0 = Instant::now();
    let mut last_stop = t0;
    while t0.elapsed() < Duration::from_secs(4) {
        while fs.pending_count() < 16 {
            fs.submit_write(node, fh, off, &data).unwrap();
            off += W as u64;
        }
        std::thread::sleep(Duration::from_millis(60));
        last_stop = Instant::now();
        let (_, lost) = fs.frontend().restart_queue(REQUEST_QUEUE).unwrap();
        assert_eq!(
            lost, 0,
            "the daemon did not finish every chain before the stop"
        );
        stops += 1;
        // Every chain came back at the stop.
        while fs.pending_count() > 0 {
            let (_, r) = fs.wait_any_reply().unwrap();
            match write_result(r) {
                Ok(n) => ok += n,
                Err(libc::EIO) => eio += 1,
                Err(e) => panic!("a parked write failed with errno {e}, not EIO"),
            }
        }
        let t = t0.elapsed();
        assert!(
            ok <= allowed(slack, SIZE, t),
            "{ok} bytes written in {t:?} over {stops} ring stops; bound 2·burst + size·T + one \
             write = {}",
            allowed(slack, SIZE, t)
        );
    }
    let t = t0.elapsed();
    println!(
        "{stops} ring stops in {t:?}: {ok} bytes written, {eio} parked writes failed with EIO"
    );
    assert!(stops >= 20, "only {stops} ring stops");
    assert!(
        eio > 0,
        "no parked write was refused: the test proves nothing"
    );
    // Refused writes were not performed: the file holds no more than what was acknowledged.
    let on_host = std::fs::metadata(s.share.join("f")).unwrap().blocks() * 512;
    assert!(
        on_host <= ok,
        "{on_host} bytes on the host, {ok} acknowledged"
    );
    // Still at the rate: the bucket was full at t0 and never sat full, so everything it refilled
    // up to the last stop was admitted (give or take one write).
    let floor = allowed(0, SIZE, last_stop - t0).saturating_sub(W as u64);
    assert!(ok >= floor, "{ok} bytes in {t:?}: below the rate ({floor})");
}

/// A PATCH every 50 ms to the same rate ±1 while a writer saturates the limit: a change keeps
/// the bucket's level, so the window bound `burst + size·T + one write` holds.
#[test]
fn patch_every_50ms_hands_out_no_burst() {
    let s = Scratch::new();
    let _d = start(&s, &LIMIT);
    let path = s.api_socket();
    let (mut fs, node, fh) = session_with_file(&s, &ConnectOptions::default());
    fs.frontend().set_timeout(Duration::from_millis(5));
    let data = vec![0x5au8; W];
    let slack = BURST + W as u64;
    let (mut ok, mut patches, mut off) = (0u64, 0u32, 0u64);
    let t0 = Instant::now();
    let mut next_patch = t0 + Duration::from_millis(50);
    while t0.elapsed() < Duration::from_secs(4) {
        while fs.pending_count() < 8 {
            fs.submit_write(node, fh, off, &data).unwrap();
            off += W as u64;
        }
        match fs.wait_any_reply() {
            Ok((_, r)) => ok += write_result(r).expect("a write failed"),
            Err(e) if e.is_timeout() => {}
            Err(e) => panic!("{e}"),
        }
        if Instant::now() >= next_patch {
            let size = if patches % 2 == 0 { SIZE + 1 } else { SIZE - 1 };
            patch(&path, &format!(r#"{{"bw":{{"size":{size}}}}}"#));
            patches += 1;
            next_patch += Duration::from_millis(50);
        }
        let t = t0.elapsed();
        assert!(
            ok <= allowed(slack, SIZE + 1, t),
            "{ok} bytes in {t:?} after {patches} PATCHes; bound burst + size·T + one write = {}",
            allowed(slack, SIZE + 1, t)
        );
    }
    println!(
        "{patches} PATCHes in {:?}: {ok} bytes written",
        t0.elapsed()
    );
    assert!(patches >= 40, "only {patches} PATCHes");
}

/// A limit removed and added back every 200 ms: the re-added bucket starts empty, so after each
/// re-add nothing passes before its tokens accrue at the rate (bytes ≤ size × time since the
/// PATCH was sent), yet writes do pass once they have.
#[test]
fn a_limit_removed_and_added_back_starts_empty() {
    let s = Scratch::new();
    let _d = start(&s, &LIMIT);
    let path = s.api_socket();
    let (mut fs, node, fh) = session_with_file(&s, &ConnectOptions::default());
    let data = vec![0x5au8; 64 * 1024];
    let (mut passed, mut off) = (0u64, 0u64);
    for cycle in 0..5 {
        patch(&path, r#"{"bw":{"size":0}}"#);
        fs.frontend().set_timeout(Duration::from_secs(10));
        while fs.pending_count() > 0 {
            let (_, r) = fs.wait_any_reply().unwrap();
            write_result(r).expect("a write failed");
        }
        fs.frontend().set_timeout(Duration::from_millis(5));
        let added = Instant::now();
        patch(&path, r#"{"bw":{"size":1000000,"burst":1000000}}"#);
        let level = bw_level(&path);
        let accrued = allowed(0, SIZE, added.elapsed()) as i64;
        assert!(
            level <= accrued,
            "cycle {cycle}: level {level} right after the re-add; only {accrued} can have accrued"
        );
        let mut bytes = 0u64;
        while added.elapsed() < Duration::from_millis(200) {
            while fs.pending_count() < 4 {
                fs.submit_write(node, fh, off, &data).unwrap();
                off += data.len() as u64;
            }
            match fs.wait_any_reply() {
                Ok((_, r)) => bytes += write_result(r).expect("a write failed"),
                Err(e) if e.is_timeout() => {}
                Err(e) => panic!("{e}"),
            }
            let t = added.elapsed();
            assert!(
                bytes <= allowed(0, SIZE, t),
                "cycle {cycle}: {bytes} bytes passed {t:?} after the re-add"
            );
        }
        passed += bytes;
    }
    assert!(passed > 0, "nothing passed once tokens accrued");
}

/// READ and WRITE above the negotiated maximum (1 MiB: 256 pages) get EINVAL, and the daemon
/// keeps serving; at the maximum they are served. Without MAX_PAGES and BIG_WRITES the maximum
/// is the library's 4 KiB `max_write` and the kernel's default 32 pages for READ.
#[test]
fn oversized_read_and_write_get_einval() {
    let s = Scratch::new();
    let d = start(&s, &["--xattr"]);
    let (mut fs, node, fh) = session_with_file(&s, &ConnectOptions::default());
    assert_eq!(fs.max_write(), MIB as u32);
    let errno = |r: vufs_frontend::Result<Vec<u8>>| r.err().and_then(|e| e.errno());
    assert_eq!(
        errno(fs.read(node, fh, 0, 8 * MIB as u32)),
        Some(libc::EINVAL)
    );
    let big = vec![1u8; 4 * MIB];
    let w = fs.write(node, fh, 0, &big).err().and_then(|e| e.errno());
    assert_eq!(w, Some(libc::EINVAL));
    let w = fs
        .write(node, fh, 0, &big[..MIB + 1])
        .err()
        .and_then(|e| e.errno());
    assert_eq!(w, Some(libc::EINVAL));
    assert_eq!(fs.write(node, fh, 0, &big[..MIB]).unwrap(), MIB as u32);
    assert_eq!(fs.read(node, fh, 0, MIB as u32).unwrap().len(), MIB);
    fs.getattr(ROOT_ID).expect("the daemon keeps serving");
    // GETXATTR and LISTXATTR buffers are clamped to Linux's 64 KiB: tests/e2e/tests/xattr.rs.
    fs.getattr(ROOT_ID).expect("the daemon keeps serving");

    let old = vufs_frontend::fuse::InitIn {
        major: 7,
        minor: 31,
        max_readahead: 128 * 1024,
        flags: 0,
    };
    // The daemon exits when its frontend disconnects: a new one for the second session.
    drop(fs);
    drop(d);
    let s = Scratch::new();
    std::fs::write(s.share.join("f"), b"").unwrap();
    let _d = start(&s, &[]);
    let mut fs = FuseSession::connect(s.socket()).unwrap();
    fs.init_with(old).unwrap();
    assert_eq!(fs.max_write(), 4096);
    let e = fs.lookup(ROOT_ID, b"f").unwrap();
    let o = fs.open(e.nodeid, libc::O_RDWR as u32).unwrap();
    assert_eq!(
        fs.write(e.nodeid, o.fh, 0, &big[..4097])
            .err()
            .and_then(|e| e.errno()),
        Some(libc::EINVAL)
    );
    assert_eq!(fs.write(e.nodeid, o.fh, 0, &big[..4096]).unwrap(), 4096);
    assert_eq!(
        errno(fs.read(e.nodeid, o.fh, 0, 128 * 1024 + 1)),
        Some(libc::EINVAL)
    );
    assert_eq!(fs.read(e.nodeid, o.fh, 0, 128 * 1024).unwrap().len(), 4096);
}

/// A READ asking for 1 MiB on a chain with 4 KiB of room for data is served and charged by the
/// 4 KiB, and the statistics count the 4 KiB moved.
#[test]
fn a_read_is_served_and_charged_by_the_room_its_chain_has() {
    let s = Scratch::new();
    let content: Vec<u8> = (0..MIB).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(s.share.join("big"), &content).unwrap();
    // 1 kB/s: the level moves by under 100 bytes while the test looks at it.
    let _d = start(&s, &["--fs-bw-size=1000", "--fs-bw-burst=1000000"]);
    let path = s.api_socket();
    let mut fs = FuseSession::connect(s.socket()).unwrap();
    fs.init().unwrap();
    let e = fs.lookup(ROOT_ID, b"big").unwrap();
    let o = fs.open(e.nodeid, libc::O_RDONLY as u32).unwrap();
    let unique = fs.next_unique();
    let req = encode_request(unique, READ, e.nodeid, &[&read_in(o.fh, 0, MIB as u32)]);
    let t = Instant::now();
    let c = fs
        .frontend()
        .send_chain(
            REQUEST_QUEUE,
            &[
                Desc::readable(req),
                Desc::writable((OUT_HEADER_LEN + 4096) as u32),
            ],
            Duration::from_secs(10),
        )
        .unwrap();
    let body = parse_reply(&c, unique).unwrap().into_result().unwrap();
    assert_eq!(body, content[..4096], "served by the room the chain has");
    let level = bw_level(&path);
    let charged = BURST as i64 - level;
    let refilled = allowed(1, 1000, t.elapsed()) as i64;
    assert!(
        (4096 - refilled..=4096).contains(&charged),
        "charged {charged} bytes for a 4 KiB read (level {level})"
    );
    let (_, stats) = json(&path, "GET", "/api/v1/stats", "");
    assert_eq!(stats["bytes"]["read"], 4096, "{stats}");
}

/// A throttled guest that publishes the same head 60 000 times: the second publication while
/// it is in flight stops the device with a message naming the queue, before the daemon grows.
#[test]
fn a_head_published_again_while_throttled_stops_the_device() {
    let s = Scratch::new();
    let mut d = start(&s, &LIMIT);
    let (mut fs, node, fh) = session_with_file(&s, &ConnectOptions::default());
    fs.write(node, fh, 0, &vec![1u8; MIB]).unwrap(); // into debt
    let parked = fs.submit_write(node, fh, 0, &vec![2u8; W]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    fs.frontend().reap().unwrap();
    assert!(
        fs.frontend()
            .queue(REQUEST_QUEUE)
            .unwrap()
            .is_in_flight(parked.token),
        "the write is not parked"
    );
    let head = parked.token.head;
    let pid = d.pid();
    let rss0 = rss_kib(pid);
    let mut rss_max = rss0;
    let mut posted = 0u32;
    while posted < 60_000 && d.alive() {
        let (q, mem) = fs.frontend().queue_mut(REQUEST_QUEUE).unwrap();
        for _ in 0..64 {
            q.poke_avail_head(mem, head).unwrap();
        }
        q.kick_now().unwrap();
        posted += 64;
        // Let the daemon take them (it publishes how far it got in avail_event) or stop.
        let want = q.avail_idx();
        let at = q.layout().avail_event_addr();
        let deadline = Instant::now() + Duration::from_secs(5);
        while d.alive()
            && mem
                .load_u16(at, std::sync::atomic::Ordering::Acquire)
                .unwrap()
                != want
        {
            assert!(
                Instant::now() < deadline,
                "the daemon stopped taking chains"
            );
            std::thread::sleep(Duration::from_micros(100));
        }
        rss_max = rss_max.max(rss_kib(pid));
    }
    let grew = rss_max.saturating_sub(rss0);
    println!("{posted} publications of head {head}; RSS grew {grew} KiB");
    assert!(
        grew < 4096,
        "RSS grew {grew} KiB after {posted} publications"
    );
    let st = d.wait_exit(Duration::from_secs(5));
    assert_eq!(
        st.and_then(|s| s.code()),
        Some(1),
        "the device did not stop after {posted} publications of one head"
    );
    let msg = format!("virtqueue 1 is corrupt: head {head} published again while still in flight");
    assert!(d.stderr().contains(&msg), "{}", d.stderr());
}

/// A ring of 1024 entries filled with the largest parked WRITEs (1 MiB, all pointing at one
/// guest buffer, through indirect tables): the daemon holds no payload, only the chains, within
/// the README's bound of 1 KiB per parked request; and a device reset then puts no more than
/// the stop bound on the host.
#[test]
fn a_ring_full_of_max_size_parked_writes_stays_within_the_stated_bound() {
    const QUEUE: u16 = 1024;
    const PER_PARKED: u64 = 1024;
    let s = Scratch::new();
    let d = start(&s, &LIMIT);
    let opts = ConnectOptions {
        queue_size: QUEUE,
        ..ConnectOptions::default()
    };
    let (mut fs, node, fh) = session_with_file(&s, &opts);
    let t0 = Instant::now();
    fs.write(node, fh, 0, &vec![1u8; MIB]).unwrap(); // into debt: the rest parks
    let rss0 = rss_kib(d.pid());
    let fe = fs.frontend();
    let payload = fe.alloc(MIB).unwrap();
    fe.mem().fill(payload.addr, MIB, 3).unwrap();
    for i in 0..u64::from(QUEUE) {
        let head = write_head(1000 + i, node, fh, (i + 1) * MIB as u64, MIB as u32);
        let table = vec![
            Desc::readable(head),
            Desc::raw(payload.addr, MIB as u32, 0),
            Desc::writable((OUT_HEADER_LEN + 8) as u32),
        ];
        fe.post_chain(REQUEST_QUEUE, &[Desc::indirect(table)])
            .unwrap();
    }
    let (q, mem) = fe.queue_mut(REQUEST_QUEUE).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (at, want) = (q.layout().avail_event_addr(), q.avail_idx());
    let taken = || {
        mem.load_u16(at, std::sync::atomic::Ordering::Acquire)
            .unwrap()
    };
    while taken() != want {
        assert!(
            Instant::now() < deadline,
            "the daemon took chains up to {} of {want}:\n{}",
            taken(),
            d.stderr()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(200));
    fe.reap().unwrap();
    assert_eq!(
        fe.queue(REQUEST_QUEUE).unwrap().in_flight(),
        usize::from(QUEUE),
        "every write must be parked"
    );
    let grew = rss_kib(d.pid()).saturating_sub(rss0) * 1024;
    let bound = u64::from(QUEUE) * PER_PARKED;
    println!("{QUEUE} parked 1 MiB writes: RSS grew {grew} bytes (bound {bound})");
    assert!(
        grew <= bound,
        "RSS grew {grew} bytes for {QUEUE} parked writes"
    );

    // Then the guest resets its device with the ring full: 1 GiB is parked, and what reaches
    // the host stays within 2·burst + size·T + one request.
    let (_, lost) = fe.restart_queue(REQUEST_QUEUE).unwrap();
    let t = t0.elapsed();
    assert_eq!(lost, 0);
    let (mut ok, mut eio) = (MIB as u64, 0u32); // the first write, before the ring filled
    for _ in 0..QUEUE {
        let c = fe.wait_any(REQUEST_QUEUE, Duration::from_secs(10)).unwrap();
        match i32::from_le_bytes(c.reply[4..8].try_into().unwrap()) {
            0 => ok += MIB as u64,
            e if e == -libc::EIO => eio += 1,
            e => panic!("a parked write failed with {e}"),
        }
    }
    let limit = allowed(2 * BURST + MIB as u64, SIZE, t);
    println!(
        "reset with {QUEUE} parked: {ok} bytes written in {t:?}, {eio} failed (bound {limit})"
    );
    assert!(ok <= limit, "{ok} bytes written in {t:?}; bound {limit}");
    let on_host = std::fs::metadata(s.share.join("f")).unwrap().blocks() * 512;
    assert!(
        on_host <= ok,
        "{on_host} bytes on the host, {ok} acknowledged"
    );
}

/// A guest that rewrites a parked READ in its memory to ask for 1 MiB instead of the 4 KiB it
/// was charged: the daemon re-reads the request when it serves it, and moves only the 4 KiB.
#[test]
fn a_request_rewritten_while_parked_moves_only_what_was_charged() {
    let s = Scratch::new();
    let content: Vec<u8> = (0..MIB).map(|i| (i * 13 % 251) as u8).collect();
    std::fs::write(s.share.join("big"), &content).unwrap();
    // 1 MB/s with a 100 kB burst: after a 1 MiB read, a 4 KiB read waits ~0.95 s.
    let _d = start(&s, &["--fs-bw-size=1000000", "--fs-bw-burst=100000"]);
    let mut fs = FuseSession::connect(s.socket()).unwrap();
    fs.init().unwrap();
    let e = fs.lookup(ROOT_ID, b"big").unwrap();
    let o = fs.open(e.nodeid, libc::O_RDONLY as u32).unwrap();
    assert_eq!(fs.read(e.nodeid, o.fh, 0, MIB as u32).unwrap(), content);
    let unique = fs.next_unique();
    let req = encode_request(unique, READ, e.nodeid, &[&read_in(o.fh, 0, 4096)]);
    let fe = fs.frontend();
    let buf = fe.alloc(req.len()).unwrap();
    fe.mem().write(buf.addr, &req).unwrap();
    let token = fe
        .post_chain(
            REQUEST_QUEUE,
            &[
                Desc::raw(buf.addr, req.len() as u32, 0),
                Desc::writable((OUT_HEADER_LEN + MIB) as u32),
            ],
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    fe.reap().unwrap();
    assert!(
        fe.queue(REQUEST_QUEUE).unwrap().is_in_flight(token),
        "the read is not parked"
    );
    // ReadIn.size sits after the 40-byte InHeader, fh and offset.
    fe.mem()
        .write(buf.addr + 56, &(MIB as u32).to_le_bytes())
        .unwrap();
    let c = fe.wait(token, Duration::from_secs(10)).unwrap();
    fe.free(buf);
    let body = parse_reply(&c, unique).unwrap().into_result().unwrap();
    assert_eq!(body.len(), 4096, "moved more than it was charged for");
    assert_eq!(body, content[..4096]);
    let (_, stats) = json(&s.api_socket(), "GET", "/api/v1/stats", "");
    assert_eq!(stats["bytes"]["read"], (MIB + 4096) as u64, "{stats}");
}
