//! A node group seen from a real guest: two members of one group (`--fs-group`), a QEMU/TCG
//! guest writing with fio (`--direct=1 --ioengine=psync`) through one and the VM-less load
//! generator reading through the other, both backlogged, with weights 100:300. Over a steady
//! window the guest's daemon serves the guest's weighted share of the group rate (±10 %).
//!
//! Each member's bytes are read from its daemon's `/api/v1/stats` at two instants. Shown
//! failing with `VIRTIOFSD_SEEDED_BUG=GROUP_EQUAL_WEIGHTS` (the seeded build joins every
//! member with the default weight) and without `--fs-group` (see the report of the change).
//! Run it under `flock /tmp/guest-tests.lock` (it measures rates).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use guest_vm::GuestRun;
use serde_json::Value;
use vufs_loadgen::engine::{Config, Generator, Workload};
use vufs_testkit::api::json;
use vufs_testkit::{Build, Daemon, Scratch};

const MIB: f64 = 1024.0 * 1024.0;
/// The group's rate: 16 MiB/s, so the guest's share is 4 MiB/s (an equal split would give it
/// 8), far below what a TCG guest writes here unthrottled (measured 33-36 MiB/s with these fio
/// options on both stacks), so it is backlogged.
const RATE: u64 = 16 << 20;
const BURST: u64 = RATE / 4;
const W_GUEST: u64 = 100;
const W_GEN: u64 = 300;
/// The guest's write size (64 requests/s at its share: ~500 in the window).
const GUEST_BS: u64 = 64 << 10;
/// The generator's read size and depth.
const GEN_BS: u32 = 32 << 10;
/// Time from both members running to the first sample, and the window measured after it.
const SETTLE: Duration = Duration::from_secs(2);
const WINDOW: Duration = Duration::from_secs(8);

/// The daemon under test: the normal build, or the seeded one with `VIRTIOFSD_SEEDED_BUG`
/// naming a seeded bug (e.g. `VIRTIOFSD_SEEDED_BUG=GROUP_EQUAL_WEIGHTS`).
fn member(s: &Scratch, group: &Path, weight: u64) -> Daemon {
    let args = [
        "--api-socket=auto".to_string(),
        format!("--fs-group={}", group.display()),
        format!("--fs-group-bw-size={RATE}"),
        format!("--fs-group-bw-burst={BURST}"),
        format!("--fs-weight={weight}"),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let seeded = std::env::var("VIRTIOFSD_SEEDED_BUG").ok();
    let var = seeded.as_ref().map(|b| format!("VIRTIOFSD_SEEDED_BUG_{b}"));
    let (build, env) = match &var {
        Some(v) => (Build::Seeded, vec![(v.as_str(), "1")]),
        None => (Build::Normal, vec![]),
    };
    let mut d = s.start(build, &args, &env);
    d.wait_ready();
    d
}

/// One member's counters at an instant.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    /// READ + WRITE payload bytes served.
    bytes: f64,
    /// Requests that waited for tokens.
    throttled: f64,
}

fn sample(api: &Path) -> Sample {
    let (st, v) = json(api, "GET", "/api/v1/stats", "");
    assert_eq!(st, 200, "{v}");
    let n = |v: &Value| v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"));
    Sample {
        at: Instant::now(),
        bytes: n(&v["bytes"]["read"]) + n(&v["bytes"]["write"]),
        throttled: n(&v["throttled"]["requests"]),
    }
}

/// What one member did between two samples.
#[derive(Debug)]
struct Served {
    secs: f64,
    bytes: f64,
    throttled: f64,
}

impl Served {
    fn between(a: Sample, b: Sample) -> Served {
        Served {
            secs: (b.at - a.at).as_secs_f64(),
            bytes: b.bytes - a.bytes,
            throttled: b.throttled - a.throttled,
        }
    }

    fn mib_s(&self) -> f64 {
        self.bytes / self.secs / MIB
    }
}

#[test]
fn guest_group_member_gets_its_weighted_share() {
    let _g = guest_vm::serial_guard();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let group = dir.path().join("group");
    let (gs, ls) = (Scratch::new(), Scratch::new());
    let guest_d = member(&gs, &group, W_GUEST);
    let gen_d = member(&ls, &group, W_GEN);

    // fio runs well past the window; the test reads the stats while it runs.
    let runtime = (SETTLE + WINDOW).as_secs() + 8;
    let script = format!(
        "guest-signal start
fio --name=w --rw=write --bs={GUEST_BS} --direct=1 --ioengine=psync --size=256M \
    --fallocate=none --time_based --runtime={runtime} --filename=w.dat \
    --output-format=json --output=/tmp/fio.json >/dev/null 2>&1
st=$?
cat /tmp/fio.json
exit $st"
    );
    let mut vm = GuestRun::new()
        .socket(&guest_d.socket)
        .script(script)
        .timeout(Duration::from_secs(120))
        .spawn()
        .expect("spawn guest");
    vm.wait_for_signal("start", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}\n{}", guest_d.stderr()));

    // The generator: 32 KiB sequential reads, 8 in flight, until after the window.
    let cfg = Config {
        socket: ls.socket(),
        shared_dir: Some(ls.share.clone()),
        queue_depth: 8,
        duration: SETTLE + WINDOW + Duration::from_secs(3),
        warmup: Duration::ZERO,
        file_size: 8 << 20,
        seq_bs: GEN_BS,
        verify_every: 0,
        ..Default::default()
    };
    let (running_tx, running) = mpsc::channel();
    let gen = std::thread::spawn(move || {
        let mut g = Generator::connect(cfg).expect("the generator connects");
        running_tx.send(()).unwrap();
        g.run(Workload::SeqRead).map(|r| r.intervals_mib_s)
    });
    running
        .recv_timeout(Duration::from_secs(20))
        .expect("the generator connected");
    std::thread::sleep(SETTLE);
    let (g0, l0) = (sample(&gs.api_socket()), sample(&ls.api_socket()));
    std::thread::sleep(WINDOW);
    let (g1, l1) = (sample(&gs.api_socket()), sample(&ls.api_socket()));
    let (_, share) = json(&gs.api_socket(), "GET", "/api/v1/group", "");

    let series = gen.join().unwrap().expect("the generator ran");
    let out = vm.wait_timeout(Duration::from_secs(90)).expect("guest run");
    out.assert_success();
    let report = guest_vm::fio::parse_json(&out.stdout).expect("fio JSON");
    let fio_mib_s = report["jobs"][0]["write"]["bw_bytes"].as_f64().unwrap() / MIB;

    let (guest, gen) = (Served::between(g0, g1), Served::between(l0, l1));
    let total = RATE as f64 / MIB;
    let w_sum = (W_GUEST + W_GEN) as f64;
    let (want_guest, want_gen) = (total * W_GUEST as f64 / w_sum, total * W_GEN as f64 / w_sum);
    let sum = guest.mib_s() + gen.mib_s();
    eprintln!(
        "stack {}: over {:.2} s: guest {:.3} MiB/s (share {want_guest:.3}, {:+.1} %, {} waits), \
         generator {:.3} MiB/s (share {want_gen:.3}, {:+.1} %, {} waits), sum {sum:.3} MiB/s \
         (group {total:.3}); fio over its whole run {fio_mib_s:.3} MiB/s; guest's group view {share}",
        vm_stack(),
        guest.secs,
        guest.mib_s(),
        (guest.mib_s() / want_guest - 1.0) * 100.0,
        guest.throttled,
        gen.mib_s(),
        (gen.mib_s() / want_gen - 1.0) * 100.0,
        gen.throttled,
    );
    eprintln!("generator's 100 ms series (MiB/s): {series:.1?}");

    // Both were backlogged: each had requests waiting for tokens within the window.
    assert!(
        guest.throttled > 0.0,
        "the guest never waited: not backlogged ({guest:?})"
    );
    assert!(
        gen.throttled > 0.0,
        "the generator never waited: not backlogged ({gen:?})\n{}",
        gen_d.log_tail(20)
    );
    // Within ±10 % of their weighted shares.
    assert!(
        (guest.mib_s() - want_guest).abs() <= want_guest * 0.10,
        "guest: {:.3} MiB/s, want {want_guest:.3} ±10 %",
        guest.mib_s()
    );
    assert!(
        (gen.mib_s() - want_gen).abs() <= want_gen * 0.10,
        "generator: {:.3} MiB/s, want {want_gen:.3} ±10 %",
        gen.mib_s()
    );
    // The sum within the group's bound (burst + rate·T + one request per member), and the
    // group's rate used (work-conserving: within 10 % of it).
    let secs = guest.secs.max(gen.secs);
    let bound = BURST as f64 + RATE as f64 * secs + (GUEST_BS + u64::from(GEN_BS)) as f64;
    assert!(
        guest.bytes + gen.bytes <= bound,
        "sum {:.0} bytes over {secs:.2} s exceeds the group's bound {bound:.0}",
        guest.bytes + gen.bytes
    );
    assert!(
        sum >= total * 0.90,
        "sum {sum:.3} MiB/s: the group's {total:.3} MiB/s went unused"
    );
}

/// The stack the guest ran on (for the log line).
fn vm_stack() -> String {
    std::env::var("GUEST_STACK").unwrap_or_else(|_| "default".into())
}
