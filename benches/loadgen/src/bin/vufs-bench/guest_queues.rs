//! The guest queue tier: a QEMU 10 + Linux 6.12 guest (the backports stack) with 2 vCPUs,
//! fio `numjobs=2` (one job pinned to each vCPU with `cpus_allowed`), ours with 1 request
//! queue against ours with 2 (`num-request-queues`). Linux ≥ 6.11 maps request queues to CPUs
//! (`virtio_fs_map_queues`), so with 2 queues each job's requests go to its own queue and the
//! daemon serves each on its own vring thread. The daemon's CPU and its request counts
//! (`GET /api/v1/stats`) are read when each job starts and ends (the guest signals it), so CPU
//! per request covers exactly the job.

use guest_vm::Stack;
use vufs_testkit::api::json as api_json;

use super::*;

/// The fio jobs: (name, file, rw).
const JOBS: [(&str, &str, &str); 2] = [
    ("rand-read", "read.dat", "randread"),
    ("rand-write", "write.dat", "randwrite"),
];

fn job_file(name: &str, file: &str, rw: &str, runtime: u32, file_mib: u64) -> String {
    format!(
        "[global]\ndirectory=/mnt/vufs-loadgen\ndirect=1\nioengine=libaio\niodepth=8\n\
         size={file_mib}M\nallow_file_create=0\nnumjobs=2\ncpus_allowed=0-1\n\
         cpus_allowed_policy=split\ngroup_reporting=1\ntime_based=1\nruntime={runtime}\n\
         [{name}]\nfilename={file}\nrw={rw}\nbs=4k\n"
    )
}

/// The guest's script: for each job, signal, run fio (JSON into the share), signal; then
/// wait (bounded) until the host has read the statistics: the daemon exits with its frontend.
fn script() -> String {
    let mut s = String::from("st=0\n");
    for (i, (name, _, _)) in JOBS.iter().enumerate() {
        s += &format!(
            "guest-signal job{i}-start\n\
             fio --output-format=json --output=fio-{name}.json /{name}.fio || st=1\n\
             guest-signal job{i}-end\n\
             i=0; while [ ! -e host-read-{i} ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done\n"
        );
    }
    s + "exit $st\n"
}

/// (daemon CPU seconds, requests per request queue) now.
fn sample(pid: u32, api: &Path) -> (Option<f64>, Vec<u64>) {
    let cpu = procfs::cpu_seconds(pid);
    let (st, v) = api_json(api, "GET", "/api/v1/stats", "");
    let mut q = Vec::new();
    if st == 200 {
        for x in v["queues"].as_array().into_iter().flatten() {
            let i = x["queue"].as_u64().unwrap_or(0) as usize;
            if i >= 1 {
                q.resize(q.len().max(i), 0);
                q[i - 1] = x["requests"].as_u64().unwrap_or(0);
            }
        }
    }
    (cpu, q)
}

/// Run `rounds` rounds of ours with 1 and 2 request queues; write `guest-queues.json`.
pub(crate) fn guest_queues(
    d: &Daemons,
    pool: u32,
    runtime: u32,
    file_mib: u64,
) -> Result<(), String> {
    let s = scratch(&d.scratch.join("guest-queues"));
    fs::create_dir_all(&d.out).map_err(|e| e.to_string())?;
    vufs_loadgen::engine::prepare_host(&s.share, file_mib << 20).map_err(|e| e.to_string())?;
    let api = s.dir.join("api.sock");
    let mut common = split(&d.common);
    common.extend([
        format!("--thread-pool-size={pool}"),
        "--max-request-queues=2".into(),
        format!("--api-socket={}", api.display()),
    ]);
    let mut runs = Vec::new();
    for round in 1..=d.rounds {
        let mut order = [1usize, 2];
        rotate(&mut order, round);
        for n in order {
            let name = format!("ours-q{n}");
            eprintln!(
                "[guest-queues round {round}/{}] {name} ({})",
                d.rounds,
                chrono_now()
            );
            let _ = fs::remove_file(&api);
            // Not pinned: the point is that two vring threads may run on both cores.
            let mut daemon = Daemon::start(
                &d.ours,
                &s.dir.join("vfsd.sock"),
                &s.share,
                &common,
                None,
                &s.dir.join(format!("{name}.log")),
            )
            .map_err(|e| e.to_string())?;
            daemon
                .wait_socket_file(Duration::from_secs(10))
                .map_err(|e| e.to_string())?;
            let mut g = guest_vm::GuestRun::new()
                .stack(Stack::Backports)
                .smp(2)
                .device_props(format!("num-request-queues={n}"))
                .socket(&daemon.socket)
                .script(script())
                .timeout(Duration::from_secs(120 + 4 * runtime as u64));
            for (job, file, rw) in JOBS {
                g = g.file(
                    format!("/{job}.fio"),
                    job_file(job, file, rw, runtime, file_mib).into_bytes(),
                    0o644,
                );
            }
            let mut jobs = serde_json::Map::new();
            let mut err = None;
            match g.spawn() {
                Err(e) => err = Some(e.to_string()),
                Ok(mut vm) => {
                    for (i, (job, _, _)) in JOBS.iter().enumerate() {
                        let t = Duration::from_secs(90 + 2 * runtime as u64);
                        if let Err(e) = vm.wait_for_signal(&format!("job{i}-start"), t) {
                            err = Some(e.to_string());
                            break;
                        }
                        let (c0, q0) = sample(daemon.pid(), &api);
                        if let Err(e) = vm.wait_for_signal(&format!("job{i}-end"), t) {
                            err = Some(e.to_string());
                            break;
                        }
                        let (c1, q1) = sample(daemon.pid(), &api);
                        let _ = fs::write(s.share.join(format!("host-read-{i}")), b"");
                        let per_queue: Vec<u64> = q1
                            .iter()
                            .enumerate()
                            .map(|(k, b)| b - q0.get(k).copied().unwrap_or(0))
                            .collect();
                        let fio = fs::read_to_string(s.share.join(format!("fio-{job}.json")))
                            .ok()
                            .and_then(|t| guest_vm::fio::parse_json(&t).ok());
                        let iops = fio.as_ref().map(|f| {
                            f["jobs"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .map(|j| {
                                    j["read"]["iops"].as_f64().unwrap_or(0.0)
                                        + j["write"]["iops"].as_f64().unwrap_or(0.0)
                                })
                                .sum::<f64>()
                        });
                        let fio_errors = fio.as_ref().map(|f| {
                            f["jobs"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .map(|j| j["error"].as_i64().unwrap_or(0))
                                .sum::<i64>()
                        });
                        let requests: u64 = per_queue.iter().sum();
                        let cpu = c0.zip(c1).map(|(a, b)| b - a);
                        jobs.insert(
                            job.to_string(),
                            json!({
                                "iops": iops, "fio_errors": fio_errors,
                                "daemon_cpu_s": cpu, "requests": requests,
                                "requests_per_queue": per_queue,
                                "cpu_us_per_request": cpu.filter(|_| requests > 0)
                                    .map(|c| c * 1e6 / requests as f64),
                            }),
                        );
                        if iops.is_none() {
                            err = Some(format!("no fio report for {job}"));
                        }
                    }
                    match vm.wait_timeout(Duration::from_secs(60)) {
                        Ok(o) if !o.success() && err.is_none() => {
                            err = Some(format!(
                                "guest exit {}: {}\n{}",
                                o.status,
                                o.stderr.chars().take(2000).collect::<String>(),
                                o.console_tail
                            ))
                        }
                        Err(e) if err.is_none() => err = Some(e.to_string()),
                        _ => {}
                    }
                }
            }
            daemon.wait_exit(Duration::from_secs(5));
            if let Some(e) = &err {
                eprintln!("  guest run failed: {e}\n  daemon: {}", daemon.log_tail(3));
            }
            for (i, (job, _, _)) in JOBS.iter().enumerate() {
                let _ = fs::remove_file(s.share.join(format!("host-read-{i}")));
                let _ = fs::remove_file(s.share.join(format!("fio-{job}.json")));
            }
            runs.push(json!({
                "round": round, "variant": name, "queues": n, "pool": pool,
                "args": common, "jobs": jobs, "error": err,
            }));
        }
    }
    let stack = Stack::Backports.install().ok();
    let all = json!({
        "machine": machine(),
        "settings": {
            "rounds": d.rounds, "runtime_s": runtime, "file_mib": file_mib, "pool": pool,
            "vcpus": 2, "numjobs": 2, "common_args": common.join(" "),
            "stack": "backports",
            "qemu": stack.as_ref().and_then(|s| s.qemu_version().ok()),
            "kernel": stack.as_ref().map(|s| s.kernel.version.clone()),
            "accel": std::env::var("GUEST_ACCEL").unwrap_or_else(|_| "tcg".into()),
        },
        "fio_jobs": JOBS.iter().map(|(j, f, rw)| job_file(j, f, rw, runtime, file_mib)).collect::<Vec<_>>(),
        "script": script(),
        "runs": runs,
    });
    write_json(&d.out, "guest-queues.json", &all)
}
