//! A Linux 6.12 guest on QEMU 10 (the backports stack) with two request queues and two vCPUs:
//! the kernel maps one request queue to each CPU (`virtio_fs_map_queues`, Linux ≥ 6.11), so
//! fio jobs pinned to different vCPUs load both queues, and the daemon serves each on its own
//! vring thread. Shown failing with `VIRTIOFSD_SEEDED_BUG=EVENT_INDEX` (the seeded build).

use std::time::Duration;

use guest_vm::{fio, GuestRun, Stack};
use vufs_testkit::api::json;
use vufs_testkit::{daemon_bin, Build, Daemon, Scratch};

#[test]
fn guest_multiqueue_two_pinned_fio_jobs_use_both_request_queues() {
    let _g = guest_vm::serial_guard();
    let s = Scratch::new();
    let share = format!("--shared-dir={}", s.share.display());
    let seeded = std::env::var("VIRTIOFSD_SEEDED_BUG").ok();
    let var = seeded.as_ref().map(|b| format!("VIRTIOFSD_SEEDED_BUG_{b}"));
    let (build, env) = match &var {
        Some(v) => (Build::Seeded, vec![(v.as_str(), "1")]),
        None => (Build::Normal, vec![]),
    };
    let mut d = Daemon::start(
        &daemon_bin(build),
        &s.socket(),
        &[
            &share,
            "--cache=never",
            "--api-socket=auto",
            "--max-request-queues=2",
        ],
        &env,
    );
    d.wait_ready();
    // Write then verify 4 MiB per job in 4 KiB O_DIRECT requests, job a on vCPU 0, b on 1.
    let job = |name: &str, cpu: u32| {
        vec![
            format!("--name={name}"),
            format!("--filename={name}"),
            format!("--cpus_allowed={cpu}"),
        ]
    };
    let mut args: Vec<String> = [
        "--direct=1",
        "--ioengine=psync",
        "--rw=write",
        "--bs=4k",
        "--size=4M",
        "--verify=crc32c",
        "--do_verify=1",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.extend(job("a", 0));
    args.extend(job("b", 1));
    // The daemon exits with its frontend: the guest waits (bounded) after fio until the host
    // has read the statistics and says so with a file in the share.
    let script = fio::script(&args).replace(
        "exit $st\n",
        "guest-signal fio-done\n\
         i=0; while [ ! -e stats-read ] && [ $i -lt 300 ]; do sleep 0.2; i=$((i+1)); done\n\
         exit $st\n",
    );
    let mut vm = GuestRun::new()
        .stack(Stack::Backports)
        .smp(2)
        .device_props("num-request-queues=2")
        .socket(&d.socket)
        .script(script)
        .timeout(Duration::from_secs(240))
        .spawn()
        .unwrap_or_else(|e| panic!("guest start failed: {e}\ndaemon stderr:\n{}", d.stderr()));
    vm.wait_for_signal("fio-done", Duration::from_secs(240))
        .unwrap_or_else(|e| panic!("{e}\ndaemon stderr:\n{}", d.stderr()));
    let (st, v) = json(&s.api_socket(), "GET", "/api/v1/stats", "");
    std::fs::write(s.share.join("stats-read"), b"").unwrap();
    let out = vm
        .wait_timeout(Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("guest run failed: {e}\ndaemon stderr:\n{}", d.stderr()));
    out.assert_success();
    let report = fio::parse_json(&out.stdout).expect("fio JSON");
    let sum = fio::summary(&report);
    assert_eq!(sum.errors, 0, "fio verify errors: {report}");
    assert_eq!(sum.write_bytes, 8 << 20, "{report}");

    assert_eq!(st, 200, "{v}");
    let queues = v["queues"].as_array().unwrap_or_else(|| panic!("{v}"));
    let requests = |q: u64| {
        queues
            .iter()
            .find(|x| x["queue"] == q)
            .and_then(|x| x["requests"].as_u64())
            .unwrap_or(0)
    };
    let (q1, q2) = (requests(1), requests(2));
    let total = q1 + q2;
    eprintln!("request queue 1: {q1}, request queue 2: {q2} of {total} requests ({v})");
    assert!(
        total >= 4096,
        "only {total} requests on the request queues: {v}"
    );
    for (q, n) in [(1, q1), (2, q2)] {
        assert!(
            n * 4 >= total,
            "request queue {q} carried {n} of {total} requests (< 25 %): {v}"
        );
    }
    // Every request-queue request was served and counted on one of the two queues.
    let r = &v["requests"];
    let served = ["read", "write", "metadata"]
        .iter()
        .map(|k| r[k].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(served, total, "{v}");
}
