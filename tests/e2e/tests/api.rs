//! The control API (`--api-socket`) of the real binary: every endpoint, bad input, a stuck
//! client, live changes reaching parked requests, and statistics that match the workload.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::session_with_file;
use serde_json::Value;
use vufs_frontend::{ConnectOptions, FuseSession, ROOT_ID};
use vufs_testkit::api::{http, json};
use vufs_testkit::{daemon_bin, Build, Daemon, Scratch};

#[test]
fn endpoints_and_bad_input() {
    let s = Scratch::new();
    let _d = s.start_with_api(&["--fs-bw-size=10M", "--fs-bw-burst=20M"]);
    let api = s.api_socket();
    let mode = std::fs::metadata(&api).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "API socket mode");

    let (st, v) = json(&api, "GET", "/api/v1/ratelimit", "");
    assert_eq!(st, 200);
    assert_eq!(v["bw"]["size"], 10_000_000);
    assert_eq!(v["bw"]["burst"], 20_000_000);
    assert_eq!(v["bw"]["level"], 20_000_000, "a bucket starts full");
    assert_eq!(v["ops"]["size"], 0);
    assert!(v["ops"]["level"].is_null());

    // PATCH: only the bucket given; a size alone keeps the burst.
    let (st, v) = json(
        &api,
        "PATCH",
        "/api/v1/ratelimit",
        r#"{"bw":{"size":2000000},"ops":{"size":100}}"#,
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (v["bw"]["size"].as_u64(), v["bw"]["burst"].as_u64()),
        (Some(2_000_000), Some(20_000_000))
    );
    assert_eq!(
        (v["ops"]["size"].as_u64(), v["ops"]["burst"].as_u64()),
        (Some(100), Some(100))
    );
    // PUT: the whole set; what is not given is unlimited.
    let (st, v) = json(
        &api,
        "PUT",
        "/api/v1/ratelimit",
        r#"{"write_bw":{"size":5000000,"burst":1000000}}"#,
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["bw"]["size"], 0);
    assert_eq!(v["ops"]["size"], 0);
    assert_eq!(v["write_bw"]["burst"], 1_000_000);
    // size 0 removes a limit.
    let (_, v) = json(
        &api,
        "PATCH",
        "/api/v1/ratelimit",
        r#"{"write_bw":{"size":0}}"#,
    );
    assert_eq!(v["write_bw"]["size"], 0);

    // Bad bodies: 400 naming the field, nothing changed.
    let before = json(&api, "GET", "/api/v1/ratelimit", "").1;
    for (body, names) in [
        ("{", "EOF"),
        (r#"{"bw":{"size":"fast"}}"#, "bw.size"),
        (r#"{"bw":{"size":-1}}"#, "bw.size"),
        (r#"{"bw":{"siez":1}}"#, "siez"),
        (r#"{"bandwidth":{"size":1}}"#, "bandwidth"),
        (r#"{"bw":{"burst":5}}"#, "bw.burst"),
        (r#"{"ops":{"size":5,"burst":0}}"#, "ops.burst"),
        (r#"[1,2]"#, "invalid type"),
    ] {
        for method in ["PUT", "PATCH"] {
            let (st, v) = json(&api, method, "/api/v1/ratelimit", body);
            assert_eq!(st, 400, "{method} {body}: {v}");
            let msg = v["error"].as_str().unwrap();
            assert!(
                msg.contains(names),
                "{method} {body}: error must name {names}: {msg}"
            );
        }
    }
    assert_eq!(
        json(&api, "GET", "/api/v1/ratelimit", "").1,
        before,
        "limits changed by a bad body"
    );

    let big = "x".repeat(70_000);
    assert_eq!(http(&api, "PUT", "/api/v1/ratelimit", &big).0, 413);
    assert_eq!(http(&api, "DELETE", "/api/v1/ratelimit", "").0, 405);
    assert_eq!(http(&api, "GET", "/api/v2/nothing", "").0, 404);

    let (st, v) = json(&api, "GET", "/api/v1/stats", "");
    assert_eq!(st, 200);
    for key in ["uptime_seconds", "requests", "bytes", "throttled"] {
        assert!(v.get(key).is_some(), "stats lacks {key}: {v}");
    }
    let (st, m) = http(&api, "GET", "/metrics", "");
    assert_eq!(st, 200);
    assert!(m.contains("# TYPE virtiofsd_requests_total counter"), "{m}");
    assert!(
        m.contains("virtiofsd_ratelimit_size{bucket=\"bw\"} 0"),
        "{m}"
    );
}

#[test]
fn a_stuck_client_blocks_neither_the_data_path_nor_other_clients() {
    let s = Scratch::new();
    let d = s.start_with_api(&[]);
    let api = s.api_socket();
    // One client sends half a request and stalls; another sends nothing at all.
    let mut stuck = UnixStream::connect(&api).unwrap();
    stuck
        .write_all(b"PATCH /api/v1/ratelimit HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
        .unwrap();
    let _silent = UnixStream::connect(&api).unwrap();

    let t = Instant::now();
    assert_eq!(http(&api, "GET", "/api/v1/stats", "").0, 200);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "other clients waited {:?}",
        t.elapsed()
    );
    let mut fs = FuseSession::connect(s.socket()).unwrap();
    fs.init().unwrap();
    let t = Instant::now();
    for _ in 0..100 {
        fs.getattr(ROOT_ID).unwrap();
    }
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "data path slowed: {:?}",
        t.elapsed()
    );

    // The stuck connection is dropped by the server's timeout, with an error reply.
    stuck
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut resp = String::new();
    let t = Instant::now();
    let _ = stuck.read_to_string(&mut resp);
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "no timeout after {:?}",
        t.elapsed()
    );
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    drop(d);
}

/// The 5 s are for the whole request, not for each read: a client sending one byte a second
/// of a header that never ends is answered 408 and closed at 5 s.
#[test]
fn a_trickling_client_is_cut_at_the_deadline() {
    let s = Scratch::new();
    let _d = s.start_with_api(&[]);
    let t = Instant::now();
    let mut c = UnixStream::connect(s.api_socket()).unwrap();
    c.write_all(b"GET /api/v1/stats HTTP/1.1\r\nX-Slow: ")
        .unwrap();
    // Between bytes, wait for the reply for a second (the trickle's pace).
    c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut resp = Vec::new();
    while t.elapsed() < Duration::from_secs(12) {
        let mut buf = [0u8; 512];
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => resp.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && resp.is_empty() => {
                // Still reading our request: one more byte. (Fails once the server is gone.)
                let _ = c.write_all(b"a");
            }
            Err(e) => panic!("after {:?}: {e}", t.elapsed()),
        }
    }
    let took = t.elapsed();
    let resp = String::from_utf8_lossy(&resp);
    assert!(
        resp.starts_with("HTTP/1.1 408"),
        "after {took:?}, a trickling client got {resp:?} (want a 408 at 5 s)"
    );
    assert!(
        took >= Duration::from_millis(4900) && took < Duration::from_millis(6500),
        "cut after {took:?}, want 5 s"
    );
}

/// A chunked body is not supported, and is answered 501: never read as an empty body (a
/// PATCH with no body is a 400) nor applied.
#[test]
fn a_chunked_request_gets_501() {
    let s = Scratch::new();
    let _d = s.start_with_api(&["--fs-bw-size=10M"]);
    let api = s.api_socket();
    let body = r#"{"bw":{"size":2000000}}"#;
    for te in ["chunked", "gzip, chunked"] {
        let mut c = UnixStream::connect(&api).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            c,
            "PATCH /api/v1/ratelimit HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: {te}\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        )
        .unwrap();
        let mut resp = String::new();
        c.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 501"), "{te}: {resp}");
        assert!(resp.contains("Transfer-Encoding"), "{te}: {resp}");
    }
    let (st, v) = json(&api, "GET", "/api/v1/ratelimit", "");
    assert_eq!((st, &v["bw"]["size"]), (200, &Value::from(10_000_000)));
}

/// A daemon with the control API and its arguments, a FUSE session on it, and a new file `f`
/// open read-write (see [`with_file`]).
struct WithFile {
    fs: FuseSession,
    /// `f`'s node id and file handle.
    ino: u64,
    fh: u64,
    api: std::path::PathBuf,
    _d: Daemon,
    _s: Scratch,
}

/// Start a daemon with `--api-socket=auto` and `args`, connect, INIT, and create `f`.
fn with_file(args: &[&str]) -> WithFile {
    let s = Scratch::new();
    let d = s.start_with_api(args);
    let (fs, ino, fh) = session_with_file(&s, &ConnectOptions::default());
    WithFile {
        fs,
        ino,
        fh,
        api: s.api_socket(),
        _d: d,
        _s: s,
    }
}

#[test]
fn a_live_change_reaches_parked_requests() {
    // 100 kB/s: a 1 MiB write parks for ~10 s.
    let mut f = with_file(&["--fs-bw-size=100k", "--fs-bw-burst=100k"]);
    let data = vec![7u8; 1 << 20];
    let first = f.fs.submit_write(f.ino, f.fh, 0, &data).unwrap();
    let _ = f.fs.wait_reply(first).unwrap(); // the full bucket admits it, into debt
    let parked = f.fs.submit_write(f.ino, f.fh, 1 << 20, &data).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (_, v) = json(&f.api, "GET", "/api/v1/ratelimit", "");
    assert!(
        v["bw"]["level"].as_i64().unwrap() < 0,
        "the bucket is in debt: {v}"
    );

    let t = Instant::now();
    let (st, v) = json(&f.api, "PATCH", "/api/v1/ratelimit", r#"{"bw":{"size":0}}"#);
    assert_eq!(st, 200, "{v}");
    let r = f.fs.wait_reply(parked).expect("the parked write completes");
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "released after {:?}",
        t.elapsed()
    );
    drop(r);
    let (_, stats) = json(&f.api, "GET", "/api/v1/stats", "");
    assert_eq!(stats["throttled"]["requests"], 1, "{stats}");
    assert!(
        stats["throttled"]["wait_seconds_total"].as_f64().unwrap() > 0.2,
        "{stats}"
    );
    assert!(
        stats["throttled"]["wait_seconds_p99"].as_f64().unwrap() > 0.2,
        "{stats}"
    );
}

#[test]
fn stats_match_the_workload() {
    let mut f = with_file(&[]);
    let data = vec![1u8; 300_000];
    for i in 0..5u64 {
        f.fs.write(f.ino, f.fh, i * 300_000, &data).unwrap();
    }
    for i in 0..3u64 {
        f.fs.read(f.ino, f.fh, i * 100_000, 100_000).unwrap();
    }
    let (_, v) = json(&f.api, "GET", "/api/v1/stats", "");
    assert_eq!(v["bytes"]["write"], 1_500_000, "{v}");
    assert_eq!(v["bytes"]["read"], 300_000, "{v}");
    assert_eq!(v["requests"]["write"], 5, "{v}");
    assert_eq!(v["requests"]["read"], 3, "{v}");
    // INIT and CREATE at least.
    assert!(v["requests"]["metadata"].as_u64().unwrap() >= 2, "{v}");
    let (_, m) = http(&f.api, "GET", "/metrics", "");
    assert!(
        m.contains("virtiofsd_bytes_total{kind=\"write\"} 1500000"),
        "{m}"
    );
}

#[test]
fn auto_path_with_an_inherited_fd() {
    let s = Scratch::new();
    let listener = std::os::unix::net::UnixListener::bind(s.socket()).unwrap();
    let share = format!("--shared-dir={}", s.share.display());
    let args = ["--fd=3", "--api-socket=auto", &share];
    let _d = Daemon::start_with_fd(
        &daemon_bin(Build::Normal),
        &listener,
        &s.socket(),
        &args,
        &[],
    );
    let api = s.api_socket();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !api.exists() {
        assert!(
            Instant::now() < deadline,
            "no API socket beside the inherited one"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(http(&api, "GET", "/api/v1/ratelimit", "").0, 200);
}

/// The value of the sample `series` (name and labels, as written) in a text exposition.
fn sample(m: &str, series: &str) -> f64 {
    let line = m
        .lines()
        .find(|l| l.split_once(' ').is_some_and(|(s, _)| s == series))
        .unwrap_or_else(|| panic!("no sample {series} in\n{m}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// A live scrape passes `promtool check metrics`, every family of the wire crate is there with
/// help and type, and the throttle wait histogram holds the real waits: its count and sum are
/// the stats' throttled requests and total wait, and the longest wait (0.3 s) is above the
/// 0.0512 s bound.
#[test]
fn metrics_pass_promtool_and_the_wait_histogram_holds_the_waits() {
    use limits_api::wire::metrics;
    // 1 MB/s with a 100 kB burst: the first 100 kB write empties the bucket, the next three,
    // sent at once, wait 0.1, 0.2 and 0.3 s.
    let mut f = with_file(&["--fs-bw-size=1M", "--fs-bw-burst=100k"]);
    let data = vec![3u8; 100_000];
    let sent: Vec<_> = (0..4u64)
        .map(|i| f.fs.submit_write(f.ino, f.fh, i * 100_000, &data).unwrap())
        .collect();
    for id in sent {
        f.fs.wait_reply(id).unwrap();
    }
    let (_, stats) = json(&f.api, "GET", "/api/v1/stats", "");
    let (st, m) = http(&f.api, "GET", "/metrics", "");
    assert_eq!(st, 200);

    let mut promtool = match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!("promtool is needed (apt-get install prometheus): {e}"),
    };
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(m.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}\n{m}"
    );

    for family in metrics::ALL {
        assert!(m.contains(&format!("# HELP {family} ")), "{family}: {m}");
        assert!(m.contains(&format!("# TYPE {family} ")), "{family}: {m}");
    }
    let h = metrics::THROTTLE_WAIT_SECONDS;
    assert!(m.contains(&format!("# TYPE {h} histogram")), "{m}");
    let count = sample(&m, &format!("{h}_count"));
    let throttled = stats["throttled"]["requests"].as_u64().unwrap();
    assert!(throttled >= 1, "{stats}");
    assert_eq!(count, throttled as f64, "{m}\n{stats}");
    let sum = sample(&m, &format!("{h}_sum"));
    let total = stats["throttled"]["wait_seconds_total"].as_f64().unwrap();
    assert!((sum - total).abs() < 1e-9, "sum {sum} total {total}");
    assert_eq!(sample(&m, &format!("{h}_bucket{{le=\"+Inf\"}}")), count);
    assert!(
        sample(&m, &format!("{h}_bucket{{le=\"0.0512\"}}")) < count,
        "{m}"
    );
    assert_eq!(
        sample(&m, &format!("{h}_bucket{{le=\"13.1072\"}}")),
        count,
        "{m}"
    );
}
