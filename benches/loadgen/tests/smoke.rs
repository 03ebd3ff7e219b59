//! Each workload for about a second against our daemon: the requests the generator encodes
//! are accepted (nonzero operations, zero errors), the data read back matches, and what it
//! wrote is right on the host.

mod common;

use std::time::Duration;

use common::{with_timeout, Env};
use vufs_loadgen::{Config, Generator, RunReport, Workload};

fn run(env: &Env, shared_dir: bool, qd: usize, file_mib: u64, ws: &[Workload]) -> RunReport {
    let cfg = Config {
        socket: env.daemon.socket.clone(),
        shared_dir: shared_dir.then(|| env.share.clone()),
        daemon_pid: Some(env.daemon.pid()),
        queue_depth: qd,
        duration: Duration::from_millis(800),
        warmup: Duration::from_millis(200),
        file_size: file_mib << 20,
        ..Default::default()
    };
    let ws = ws.to_vec();
    with_timeout(move || {
        let mut g = Generator::connect(cfg).unwrap_or_else(|e| panic!("connect: {e}"));
        for w in ws {
            g.run(w).unwrap_or_else(|e| panic!("{}: {e}", w.name()));
        }
        g.finish_run()
    })
}

fn check(r: &RunReport, env: &Env) {
    for w in &r.results {
        assert!(
            w.ops > 0,
            "{}: no operations\n{}",
            w.workload,
            env.daemon.log_tail(20)
        );
        assert_eq!(
            w.errors + w.verify_errors,
            0,
            "{}: {:?}",
            w.workload,
            w.first_error
        );
        if w.workload != "meta" {
            assert_eq!(w.bytes, w.ops * w.block_size as u64, "{}", w.workload);
        }
        let d = w.daemon.as_ref().expect("daemon usage");
        assert!(d.rss_kib > 0 && d.hwm_kib >= d.rss_kib, "{d:?}");
        assert!(!w.intervals_ops.is_empty());
        assert!(w.lat_us.p50 > 0.0 && w.lat_us.p99 >= w.lat_us.p50 && w.lat_us.max >= w.lat_us.p99);
    }
    assert!(r.ok, "{r:?}");
    assert!(r.fatal.is_none());
}

#[test]
fn every_workload_against_our_daemon_thread_pool_0() {
    let env = Env::start(&[]);
    let r = run(&env, true, 8, 16, &Workload::ALL);
    check(&r, &env);
    assert_eq!(r.results.len(), Workload::ALL.len());
    assert_eq!(r.write_file_check.as_deref(), Some("ok"));
    // The metadata workload cleans up after itself.
    let left = std::fs::read_dir(env.share.join("vufs-loadgen/meta"))
        .unwrap()
        .count();
    assert_eq!(left, 0, "meta workload left {left} files");
}

#[test]
fn every_workload_against_our_daemon_thread_pool_4() {
    let env = Env::start(&["--thread-pool-size=4"]);
    let r = run(&env, true, 16, 16, &Workload::ALL);
    check(&r, &env);
}

#[test]
fn files_prepared_through_the_daemon_without_shared_dir() {
    let env = Env::start(&[]);
    let r = run(&env, false, 4, 4, &[Workload::SeqRead, Workload::RandRead]);
    check(&r, &env);
    // Laid out through FUSE with the pattern: the host copy checks out.
    let p = env.share.join("vufs-loadgen/read.dat");
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 4 << 20);
    assert_eq!(vufs_loadgen::engine::check_host_file(&p, 1), None);
}
