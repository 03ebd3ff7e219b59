//! The queue-scaling tier: ours with 1, 2 and 4 request queues (`vufs-loadgen --queues N`,
//! one submitter thread per queue, the daemon started with `--max-request-queues=N`) against
//! upstream (which serves one), same rounds, rotation and pinning as the host tier.

use super::*;

/// (daemon variant, request queues) in the order they run in `round`.
fn queue_variants(d: &Daemons, pool: u32, queues: &[usize], round: u32) -> Vec<(Variant, usize)> {
    let mut common = split(&d.common);
    common.push(format!("--thread-pool-size={pool}"));
    let mut v: Vec<(Variant, usize)> = queues
        .iter()
        .map(|&n| {
            let mut args = common.clone();
            args.push(format!("--max-request-queues={n}"));
            let v = Variant {
                name: format!("ours-q{n}"),
                bin: d.ours.clone(),
                args,
                pool,
            };
            (v, n)
        })
        .collect();
    if let Some(u) = &d.upstream {
        let up = Variant {
            name: "upstream".into(),
            bin: u.clone(),
            args: common,
            pool,
        };
        v.push((up, 1));
    }
    rotate(&mut v, round);
    v
}

/// Run every round of `queues` request queues with `g` and write `queues.json` into the
/// output directory.
pub(crate) fn queues(d: &Daemons, g: &Load, queues: &[usize]) -> Result<(), String> {
    let s = scratch(&d.scratch);
    let raw = d.out.join("raw");
    fs::create_dir_all(&raw).map_err(|e| e.to_string())?;
    g.prepare(&s.share)?;
    let nw = g.workloads.split(',').count() as f64;
    let per_run = Duration::from_secs_f64((g.duration + g.warmup + 2.0) * nw + 60.0);
    let mut runs = Vec::new();
    let mut example_cmd = None;
    for round in 1..=d.rounds {
        for &pool in &d.pools {
            for (v, n) in queue_variants(d, pool, queues, round) {
                announce("queues ", round, d.rounds, &v.name, pool);
                let mut daemon = start(&v, &s, &[]).map_err(|e| e.to_string())?;
                daemon
                    .wait_socket_file(Duration::from_secs(10))
                    .map_err(|e| e.to_string())?;
                let out = raw.join(format!("queues-r{round}-{}-p{pool}.json", v.name));
                let extra = ["--queues".to_string(), n.to_string()];
                let mut cmd = g.command(&daemon, &s.share, &extra, &out);
                if example_cmd.is_none() && n > 1 {
                    example_cmd = Some(example(&v, &cmd));
                }
                let o = finish(&mut cmd, per_run, &out, &mut daemon);
                runs.push(json!({
                    "round": round, "variant": v.name, "pool": pool, "queues": n,
                    "args": v.args, "loadgen_status": o.status, "error": o.err,
                    "report": o.report,
                }));
            }
        }
    }
    let all = json!({
        "machine": machine(),
        "settings": {
            "rounds": d.rounds, "duration_s": g.duration, "warmup_s": g.warmup,
            "qd": g.qd, "queues": queues, "file_mib": g.file_mib,
            "workloads": g.workloads, "pools": d.pools, "verify_every": g.verify_every,
            "common_args": d.common, "daemon_cpu": DAEMON_CPU, "generator_cpu": GEN_CPU,
        },
        "runs": runs,
        "example_command": example_cmd,
    });
    write_json(&d.out, "queues.json", &all)
}
