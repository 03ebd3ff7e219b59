//! Live limit changes seen from a real guest, and statistics that match what it did.

use std::path::Path;
use std::time::{Duration, Instant};

use guest_vm::GuestRun;
use serde_json::Value;
use vufs_testkit::api::json;
use vufs_testkit::{daemon_bin, Build, Daemon, Scratch};

/// One API request that must succeed; its JSON body.
fn http(path: &Path, method: &str, url: &str, body: &str) -> Value {
    let (st, v) = json(path, method, url, body);
    assert_eq!(st, 200, "{method} {url}: {v}");
    v
}

/// fio writes 64 KiB blocks under 10 MB/s; the limit goes to 2 MB/s through the API, then is
/// removed. Over 500 ms windows the rate holds the new limit (±5 %) from the second window
/// after the change, and returns to unthrottled after the removal. The daemon's byte counter
/// matches fio's within 1 %.
#[test]
fn guest_live_limit_change_and_stats() {
    let _g = guest_vm::serial_guard();
    let s = Scratch::new();
    let share = format!("--shared-dir={}", s.share.display());
    let args = [
        share.as_str(),
        "--api-socket=auto",
        "--fs-bw-size=10M",
        "--fs-bw-burst=1M",
    ];
    let d = Daemon::start(&daemon_bin(Build::Normal), &s.socket(), &args, &[]);
    let api = s.api_socket();
    let script = "guest-signal start
fio --name=w --rw=write --bs=64k --direct=1 --ioengine=psync --size=512M --fallocate=none \
    --time_based --runtime=13 --filename=w.dat --write_bw_log=/tmp/w --log_avg_msec=500 \
    --output-format=json --output=/tmp/fio.json >/dev/null 2>&1
st=$?
guest-signal done
while [ ! -e go-on ]; do sleep 0.1; done
cat /tmp/fio.json
echo ===BWLOG
cat /tmp/w_bw.1.log
exit $st";
    let mut vm = GuestRun::new()
        .socket(&d.socket)
        .script(script)
        .timeout(Duration::from_secs(120))
        .spawn()
        .expect("spawn guest");
    vm.wait_for_signal("start", Duration::from_secs(60))
        .expect("fio start");
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    let v = http(
        &api,
        "PATCH",
        "/api/v1/ratelimit",
        r#"{"bw":{"size":2000000}}"#,
    );
    let changed = t0.elapsed();
    assert_eq!(v["bw"]["size"], 2_000_000);
    std::thread::sleep(Duration::from_secs(5));
    http(&api, "PATCH", "/api/v1/ratelimit", r#"{"bw":{"size":0}}"#);
    let removed = t0.elapsed();
    vm.wait_for_signal("done", Duration::from_secs(60))
        .expect("fio done");
    let stats = http(&api, "GET", "/api/v1/stats", "");
    std::fs::write(s.share.join("go-on"), b"").unwrap();
    let out = vm.wait_timeout(Duration::from_secs(60)).expect("guest run");
    out.assert_success();

    let (json, log) = out.stdout.split_once("===BWLOG").expect("fio output");
    let report = guest_vm::fio::parse_json(json).unwrap();
    let fio_bytes = report["jobs"][0]["write"]["io_bytes"].as_f64().unwrap();
    // fio's 500 ms windows: (end ms, bytes/s over the window's actual length; fio logs KiB/s).
    let windows: Vec<(f64, f64)> = log
        .lines()
        .filter_map(|l| {
            let mut f = l.split(',').map(str::trim);
            Some((
                f.next()?.parse().ok()?,
                f.next()?.parse::<f64>().ok()? * 1024.0,
            ))
        })
        .collect();
    for (t, bw) in &windows {
        eprintln!("{t:>7.0} ms {:>8.2} MB/s", bw / 1e6);
    }
    eprintln!(
        "change at ~{changed:?}, removal at ~{removed:?} (host clock, after fio's start signal)"
    );
    let _ = (changed, removed);

    // fio's clock runs behind the host's by its start-up (≈0.5 s under TCG), so the windows
    // are placed by the data: the first window below 6 MB/s holds the change, the next one may
    // still hold the bucket's level from before it; from the second window after the change the limit holds
    // until the rate rises again (the window just before the rise may hold the removal).
    let first_low = windows
        .iter()
        .position(|(_, bw)| *bw < 6e6)
        .expect("the rate never fell after the change");
    let rise = first_low
        + windows[first_low..]
            .iter()
            .position(|(_, bw)| *bw > 6e6)
            .expect("the rate never rose after the removal");
    let mut held = Vec::new(); // (seconds, bytes/s)
    for i in first_low + 2..rise.saturating_sub(1) {
        held.push(((windows[i].0 - windows[i - 1].0) / 1000.0, windows[i].1));
    }
    assert!(
        held.len() >= 5,
        "too few windows at the new limit: {held:?}"
    );
    let (secs, bytes): (f64, f64) = held
        .iter()
        .fold((0.0, 0.0), |a, w| (a.0 + w.0, a.1 + w.0 * w.1));
    let mean = bytes / secs;
    eprintln!(
        "held 2 MB/s over {} windows: mean {:.4} MB/s",
        held.len(),
        mean / 1e6
    );
    assert!(
        (mean - 2e6).abs() <= 0.02 * 2e6,
        "mean {:.4} MB/s is not within 2 %",
        mean / 1e6
    );
    // A window holds whole 64 KiB requests (15.26 on average at 2 MB/s): each must be within
    // 5 % of the limit over its actual length, or within one request of it.
    for (secs, bw) in &held {
        let (bytes, want) = (bw * secs, 2e6 * secs);
        let err = (bytes - want) / want * 100.0;
        assert!(
            (bytes - want).abs() <= (0.05 * want).max(65536.0),
            "window of {secs:.3} s at {:.3} MB/s ({err:+.1} %) under a 2 MB/s limit",
            bw / 1e6
        );
    }
    let settled = &windows[rise + 1..];
    // After the removal: unthrottled again, far above the limit just removed (a TCG guest's own
    // speed varies with the machine's load, so no absolute figure).
    let tail: Vec<f64> = settled.iter().map(|(_, bw)| *bw).collect();
    assert!(!tail.is_empty(), "no windows after the removal");
    let tail_mean = tail.iter().sum::<f64>() / tail.len() as f64;
    assert!(
        tail_mean > 5.0 * 2e6,
        "after removing the limit: {:.1} MB/s",
        tail_mean / 1e6
    );

    // The counters match the workload.
    let counted = stats["bytes"]["write"].as_f64().unwrap();
    let err = (counted - fio_bytes) / fio_bytes * 100.0;
    eprintln!("daemon counted {counted} bytes written, fio {fio_bytes} ({err:+.3} %)");
    assert!(err.abs() <= 1.0, "stats bytes off by {err:+.2} %");
    assert!(
        stats["throttled"]["requests"].as_u64().unwrap() > 0,
        "{stats}"
    );
}
