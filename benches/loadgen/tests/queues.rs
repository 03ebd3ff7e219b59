//! Several request queues: with `queues: 4` every request queue carries requests, as the
//! daemon itself counts them (`GET /api/v1/stats` `"queues"`), and the data read on every
//! queue is verified (a corrupted byte is found; the written file checks out on the host).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{corrupt_read_file, with_timeout, Env};
use vufs_loadgen::{Config, Generator, RunReport, Workload};
use vufs_testkit::api::json;

const QUEUES: usize = 4;
const FILE_MIB: u64 = 8;

fn start() -> Env {
    Env::start(&[
        "--max-request-queues=4",
        "--api-socket=auto",
        "--thread-pool-size=0",
    ])
}

fn api(env: &Env) -> PathBuf {
    let mut p = env.daemon.socket.as_os_str().to_owned();
    p.push(".api");
    let p = PathBuf::from(p);
    // The control socket comes up beside the vhost-user one, not necessarily before it.
    let t = std::time::Instant::now();
    while !p.exists() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    p
}

/// Requests per virtqueue index, from the daemon's statistics.
fn queue_requests(api: &Path) -> Vec<u64> {
    let (st, v) = json(api, "GET", "/api/v1/stats", "");
    assert_eq!(st, 200, "{v}");
    let mut n = vec![0u64; QUEUES + 1];
    for q in v["queues"].as_array().unwrap_or_else(|| panic!("{v}")) {
        let i = q["queue"].as_u64().unwrap() as usize;
        if i <= QUEUES {
            n[i] = q["requests"].as_u64().unwrap();
        }
    }
    n
}

/// The generator's report and the daemon's count of requests per virtqueue taken while the
/// generator is still connected (the daemon exits with its frontend).
fn run(env: &Env, workloads: &[Workload]) -> (RunReport, Vec<u64>) {
    let api = api(env);
    let cfg = Config {
        socket: env.daemon.socket.clone(),
        shared_dir: Some(env.share.clone()),
        daemon_pid: Some(env.daemon.pid()),
        queue_depth: 4,
        queues: QUEUES,
        duration: Duration::from_millis(700),
        warmup: Duration::from_millis(100),
        file_size: FILE_MIB << 20,
        seq_bs: 256 << 10,
        verify_every: 1,
        ..Default::default()
    };
    let workloads = workloads.to_vec();
    with_timeout(move || {
        let mut g = Generator::connect(cfg).unwrap_or_else(|e| panic!("connect: {e}"));
        for w in workloads {
            g.run(w).unwrap_or_else(|e| panic!("{}: {e}", w.name()));
        }
        let served = queue_requests(&api);
        (g.finish_run(), served)
    })
}

#[test]
fn four_queues_all_carry_requests_and_the_data_is_verified() {
    let env = start();
    let before = queue_requests(&api(&env));
    let (r, after) = run(
        &env,
        &[
            Workload::RandRead,
            Workload::RandWrite,
            Workload::Meta,
            Workload::SeqRead,
        ],
    );
    assert!(r.ok, "{r:?}");
    assert_eq!(r.queues, QUEUES);
    assert_eq!(r.write_file_check.as_deref(), Some("ok"));
    let mut counted = [0u64; QUEUES + 1];
    for w in &r.results {
        assert_eq!(w.errors + w.verify_errors, 0, "{w:?}");
        assert!(w.ops > 0, "{w:?}");
        assert_eq!(w.queues.len(), QUEUES, "{}: {:?}", w.workload, w.queues);
        for q in &w.queues {
            // Each queue has its own submitter at the same depth: about a quarter each.
            assert!(
                q.ops * 10 >= w.ops,
                "{}: queue {} completed {} of {} requests: {:?}",
                w.workload,
                q.queue,
                q.ops,
                w.ops,
                w.queues
            );
            counted[q.queue] += q.ops;
        }
    }
    let served: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let total: u64 = served[1..].iter().sum();
    eprintln!("daemon's count per request queue: {:?}", &served[1..]);
    for q in 1..=QUEUES {
        // The daemon counts warm-up and drain too: at least what the generator counted.
        assert!(
            served[q] >= counted[q] && served[q] * 10 >= total,
            "the daemon served {} requests on queue {q} (generator counted {}): {served:?}",
            served[q],
            counted[q]
        );
    }
}

#[test]
fn a_corrupted_byte_is_found_with_four_queues() {
    let env = start();
    let bad = (5u64 << 20) + 77;
    corrupt_read_file(&env.share, FILE_MIB, bad, 0x10);
    let (r, _) = run(&env, &[Workload::SeqRead]);
    let w = &r.results[0];
    assert!(w.verify_errors > 0, "{w:?}");
    let e = w.first_error.as_deref().unwrap_or("");
    assert!(
        e.contains("verification error") && e.contains(&format!("offset {bad}")),
        "{e}"
    );
    assert!(!r.ok);
}
