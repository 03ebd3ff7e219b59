//! Node groups (`--fs-group`) on the real binary over real sockets, one VM-less load generator
//! per member: weights, a lone member, a capped member, a SIGKILLed member and a late joiner,
//! a live budget change, refused group files, a corrupted file and the pod rule. The request
//! classes inside a group are in `group_classes.rs`.
//!
//! They measure rates: run them under `flock /tmp/guest-tests.lock`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vufs_loadgen::engine::{Config, Generator, Workload};
use vufs_testkit::api::json;
use vufs_testkit::{Daemon, Scratch};

mod groupkit;
use groupkit::{group_args, group_dir};

const MIB: f64 = 1024.0 * 1024.0;
/// The group's rate in the rate tests: 12 MiB/s, 32 KiB reads (≥ 100 requests a window for
/// the smallest share).
const RATE: u64 = 12 << 20;
const BS: u32 = 32 << 10;
/// 100 ms intervals: skip the first second, then 2 s windows.
const SKIP: usize = 10;
const WINDOW: usize = 20;

struct Member {
    s: Scratch,
    d: Daemon,
}

fn member(path: &Path, rate: u64, extra: &[&str]) -> Member {
    let s = Scratch::new();
    let mut args: Vec<String> = group_args(path, rate);
    args.extend(extra.iter().map(|a| a.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let d = s.start_with_api(&refs);
    Member { s, d }
}

/// One generator's run: when it began and its 100 ms series in MiB/s.
struct Run {
    begun: Instant,
    series: Vec<f64>,
}

/// Runs seq-read on `m` for `secs` after `start` is passed (all generators connected first);
/// None if the daemon went away.
fn load(m: &Member, secs: f64, start: Arc<Barrier>) -> JoinHandle<Option<Run>> {
    let cfg = Config {
        socket: m.s.socket(),
        shared_dir: Some(m.s.share.clone()),
        queue_depth: 8,
        duration: Duration::from_secs_f64(secs),
        warmup: Duration::ZERO,
        file_size: 8 << 20,
        seq_bs: BS,
        rand_bs: 4096,
        verify_every: 0,
        ..Default::default()
    };
    std::thread::spawn(move || {
        let g = Generator::connect(cfg);
        start.wait();
        let mut g = g.ok()?;
        let begun = Instant::now();
        let series = g.run(Workload::SeqRead).ok()?.intervals_mib_s;
        Some(Run { begun, series })
    })
}

/// Mean MiB/s of each 2 s window after the first second.
fn windows(series: &[f64]) -> Vec<f64> {
    series[SKIP.min(series.len())..]
        .chunks_exact(WINDOW)
        .map(|w| w.iter().sum::<f64>() / w.len() as f64)
        .collect()
}

fn assert_share(name: &str, series: &[f64], want_mib: f64, tol: f64) {
    let w = windows(series);
    assert!(!w.is_empty(), "{name}: no full window in {series:?}");
    for (i, got) in w.iter().enumerate() {
        assert!(
            (got - want_mib).abs() <= want_mib * tol,
            "{name}: window {i}: {got:.2} MiB/s, want {want_mib:.2} ±{:.0} % (windows {w:.2?})",
            tol * 100.0
        );
    }
}

fn run_all(members: &[&Member], secs: f64) -> Vec<Vec<f64>> {
    let b = Arc::new(Barrier::new(members.len()));
    let hs: Vec<_> = members.iter().map(|m| load(m, secs, b.clone())).collect();
    hs.into_iter()
        .map(|h| h.join().unwrap().expect("the generator ran").series)
        .collect()
}

fn rate_mib(r: u64) -> f64 {
    r as f64 / MIB
}

#[test]
fn backlogged_members_share_by_weight_1_1_2() {
    let (_d, path) = group_dir();
    let a = member(&path, RATE, &["--fs-weight=100"]);
    let b = member(&path, RATE, &["--fs-weight=100"]);
    let c = member(&path, RATE, &["--fs-weight=200"]);
    let r = run_all(&[&a, &b, &c], 5.0);
    let total = rate_mib(RATE);
    assert_share("weight 100 (a)", &r[0], total / 4.0, 0.10);
    assert_share("weight 100 (b)", &r[1], total / 4.0, 0.10);
    assert_share("weight 200 (c)", &r[2], total / 2.0, 0.10);
    // The sum never exceeds the group's bound over a window.
    let sum: Vec<f64> = (0..r[0].len().min(r[1].len()).min(r[2].len()))
        .map(|i| r[0][i] + r[1][i] + r[2][i])
        .collect();
    for w in windows(&sum) {
        assert!(
            w <= total * 1.03,
            "sum {w:.2} MiB/s over the group's {total:.2}"
        );
    }
}

#[test]
fn a_lone_member_gets_the_whole_group_rate() {
    let (_d, path) = group_dir();
    let a = member(&path, RATE, &[]);
    let r = run_all(&[&a], 4.0);
    assert_share("lone member", &r[0], rate_mib(RATE), 0.03);
}

#[test]
fn a_capped_member_leaves_the_rest_to_the_others() {
    let (_d, path) = group_dir();
    let capped = member(&path, RATE, &["--fs-bw-size=2M"]);
    let other = member(&path, RATE, &[]);
    let r = run_all(&[&capped, &other], 5.0);
    let cap = 2_000_000.0 / MIB;
    assert_share("capped at 2 MB/s", &r[0], cap, 0.10);
    assert_share("the other", &r[1], rate_mib(RATE) - cap, 0.10);
}

#[test]
fn a_killed_member_leaks_nothing_and_a_late_joiner_gets_its_share() {
    let (_d, path) = group_dir();
    // The default sandbox: each member is pid 1 of its own pid namespace.
    let a = member(&path, RATE, &[]);
    let b = member(&path, RATE, &[]);
    let mut victim = member(&path, RATE, &[]);
    let start = Arc::new(Barrier::new(4));
    let ha = load(&a, 12.0, start.clone());
    let hb = load(&b, 12.0, start.clone());
    let hv = load(&victim, 12.0, start.clone());
    start.wait();
    std::thread::sleep(Duration::from_millis(1500));
    // SIGKILL the serving process mid-flight (Kata stops daemons this way).
    let pid = victim.d.serving_pid();
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let killed = Instant::now();
    assert!(
        hv.join().unwrap().is_none(),
        "the victim's generator saw it die"
    );
    victim.d.kill();
    // At 5 s a new member joins the same file (nothing was left locked) while a and b run.
    std::thread::sleep(Duration::from_millis(3500));
    let late = member(&path, RATE, &[]);
    let hl = load(&late, 4.5, Arc::new(Barrier::new(1)));
    let (ra, rb) = (ha.join().unwrap().unwrap(), hb.join().unwrap().unwrap());
    let rl = hl.join().unwrap().expect("the late joiner ran");
    // The windows are placed by when things happened, not by when they were asked for: a
    // daemon's start-up and the generator's connect take longer on a loaded machine.
    // Interval of `r` that holds the instant `at`.
    let index =
        |r: &Run, at: Instant| (at.duration_since(r.begun).as_secs_f64() * 10.0).round() as usize;
    let mean = |r: &Run, from: usize| {
        let w = r
            .series
            .get(from..from + WINDOW)
            .unwrap_or_else(|| panic!("no 2 s window from interval {from} in {:.1?}", r.series));
        w.iter().sum::<f64>() / WINDOW as f64
    };
    assert!(
        rl.begun.duration_since(killed) >= Duration::from_secs(3),
        "the late joiner began {:.2} s after the kill, inside the window after it",
        rl.begun.duration_since(killed).as_secs_f64()
    );
    // From one second after the kill, for 2 s, the two others share the whole rate.
    let half = rate_mib(RATE) / 2.0;
    let third = rate_mib(RATE) / 3.0;
    for (name, r) in [("a", &ra), ("b", &rb)] {
        let got = mean(r, index(r, killed) + SKIP);
        assert!(
            (got - half).abs() <= half * 0.10,
            "{name} after the kill: {got:.2} MiB/s, want {half:.2} ±10 % ({:.1?})",
            r.series
        );
        // With the late joiner in (1.5 s to 3.5 s after it began): a third each.
        let got = mean(r, index(r, rl.begun) + 15);
        assert!(
            (got - third).abs() <= third * 0.10,
            "{name} with the late joiner: {got:.2} MiB/s, want {third:.2} ±10 % ({:.1?})",
            r.series
        );
    }
    let got = mean(&rl, 15);
    assert!(
        (got - third).abs() <= third * 0.10,
        "late joiner: {got:.2} MiB/s, want {third:.2} ±10 % ({:.1?})",
        rl.series
    );
}

#[test]
fn a_live_budget_change_reaches_every_member() {
    let (_d, path) = group_dir();
    let a = member(&path, RATE, &[]);
    let b = member(&path, RATE, &[]);
    // Through a's API, for b too.
    let (st, v) = json(
        &a.s.api_socket(),
        "PATCH",
        "/api/v1/group",
        &format!(r#"{{"bw":{{"size":{}}}}}"#, 2 * RATE),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["bw"]["size"], 2 * RATE);
    let (_, v) = json(&b.s.api_socket(), "GET", "/api/v1/group", "");
    assert_eq!(v["bw"]["size"], 2 * RATE, "{v}");
    // A later member with the creation values joins and takes the live budget.
    let c = member(&path, RATE, &[]);
    let (_, v) = json(&c.s.api_socket(), "GET", "/api/v1/group", "");
    assert_eq!(v["bw"]["size"], 2 * RATE, "{v}");
    // a and b (c is idle) share the doubled rate.
    let r = run_all(&[&a, &b], 4.0);
    assert_share("a", &r[0], rate_mib(RATE), 0.10);
    assert_share("b", &r[1], rate_mib(RATE), 0.10);
}

/// Starts a daemon that must refuse at start-up; returns its stderr.
fn refused(args: &[String]) -> String {
    let s = Scratch::new();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let share = format!("--shared-dir={}", s.share.display());
    let sock = format!("--socket-path={}", s.socket().display());
    let all = [&[share.as_str(), sock.as_str()], &refs[..]].concat();
    let bin = vufs_testkit::daemon_bin(vufs_testkit::Build::Normal);
    let mut d = Daemon::spawn(&bin, &s.socket(), &all, &[]);
    let st = d
        .wait_exit(Duration::from_secs(10))
        .expect("a refused group exits");
    assert_eq!(st.code(), Some(2), "{}", d.stderr());
    d.stderr()
}

#[test]
fn mismatched_creation_values_are_refused_naming_both() {
    let (_d, path) = group_dir();
    let _a = member(&path, RATE, &[]);
    let err = refused(&group_args(&path, RATE / 2));
    assert!(
        err.contains(&format!("--fs-group-bw-size={RATE}"))
            && err.contains(&format!("--fs-group-bw-size={}", RATE / 2)),
        "{err}"
    );
}

#[test]
fn an_unexpected_group_file_is_refused() {
    let (_d, path) = group_dir();
    let args = group_args(&path, RATE);
    drop(member(&path, RATE, &[]));
    let set_mode = |m: u32| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m));
    set_mode(0o644).unwrap();
    assert!(refused(&args).contains("mode 644"));
    set_mode(0o600).unwrap();
    std::os::unix::fs::chown(&path, Some(1000), None).unwrap();
    assert!(refused(&args).contains("owned by uid 1000"));
    std::os::unix::fs::chown(&path, Some(0), None).unwrap();
    let good = std::fs::read(&path).unwrap();
    std::fs::write(&path, &good[..good.len() - 8]).unwrap();
    assert!(refused(&args).contains("size"));
    let mut bad = good.clone();
    bad[..8].copy_from_slice(b"NOTAGRP!");
    std::fs::write(&path, &bad).unwrap();
    assert!(refused(&args).contains("bad magic"));
    std::fs::write(&path, &good).unwrap();
    // A directory others may write to.
    let dir = path.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert!(refused(&args).contains("writable only by it"));
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    drop(member(&path, RATE, &[]));
}

#[test]
fn a_corrupted_group_file_neither_crashes_nor_uncaps_the_members() {
    let (_d, path) = group_dir();
    let mut a = member(&path, RATE, &[]);
    let mut b = member(&path, RATE, &[]);
    let start = Arc::new(Barrier::new(3));
    let ha = load(&a, 5.0, start.clone());
    let hb = load(&b, 5.0, start.clone());
    start.wait();
    std::thread::sleep(Duration::from_millis(1000));
    // Garbage over everything after the magic, version, size and slot count, twice.
    for seed in [0x9e37_79b9_7f4a_7c15u64, 0x2545_f491_4f6c_dd1d] {
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let mut x = seed;
        let junk: Vec<u8> = (0..(33280 - 32) / 8)
            .flat_map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()
            })
            .collect();
        std::os::unix::fs::FileExt::write_all_at(&f, &junk, 32).unwrap();
        std::thread::sleep(Duration::from_millis(500));
    }
    let (ra, rb) = (ha.join().unwrap(), hb.join().unwrap());
    // Neither crashed: both served to the end and exit 0 when their frontend leaves.
    for d in [&mut a.d, &mut b.d] {
        let st = d
            .wait_exit(Duration::from_secs(5))
            .expect("exits after the frontend");
        assert_eq!(st.code(), Some(0), "{}", d.stderr());
    }
    let (ra, rb) = (ra.expect("a served").series, rb.expect("b served").series);
    // After the corruption (t = 2 s on): not uncapped (the members' own flags stand in for
    // the live budget), and neither stopped.
    let sum: f64 = ra[20..50].iter().chain(&rb[20..50]).sum::<f64>() / 30.0;
    assert!(
        sum <= rate_mib(RATE) * 1.10,
        "uncapped: {sum:.2} MiB/s ({ra:.1?} {rb:.1?})"
    );
    for (n, r) in [("a", &ra), ("b", &rb)] {
        let tail = r[30..50].iter().sum::<f64>() / 20.0;
        assert!(tail > 0.5, "{n} stopped: {r:.1?}");
    }
}

#[test]
fn a_pod_may_not_touch_the_group_and_may_only_lower_its_weight() {
    let (_d, path) = group_dir();
    let mut base = group_args(&path, RATE);
    base.push("--fs-weight=100".into());
    base.push("--pod-args-follow".into());
    for bad in [
        "--fs-group=/tmp/x",
        "--fs-group-bw-size=1",
        "--fs-group-ops-burst=5",
    ] {
        let mut args = base.clone();
        args.push(bad.into());
        let err = refused(&args);
        assert!(
            err.contains(bad) && err.contains("operator's"),
            "{bad}: {err}"
        );
    }
    let mut args = base.clone();
    args.push("--fs-weight=101".into());
    assert!(refused(&args).contains("--fs-weight=101 is above the operator's 100"));
    // Lowering it is accepted: the member runs with weight 50.
    let s = Scratch::new();
    let mut all = vec!["--api-socket=auto".to_string()];
    all.extend(base.clone());
    all.push("--fs-weight=50".into());
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let _d = s.start_with_api(&refs[1..]);
    let (_, v) = json(&s.api_socket(), "GET", "/api/v1/group", "");
    assert_eq!(v["weight"], 50, "{v}");
}
