//! The queue-scaling tier: ours with 1, 2 and 4 request queues (`vufs-loadgen --queues N`,
//! one submitter thread per queue, the daemon started with `--max-request-queues=N`) against
//! upstream (which serves one), same rounds, rotation and pinning as the host tier.

use super::*;

/// What `vufs-bench queues` runs.
pub(crate) struct QueueBench<'a> {
    pub(crate) d: &'a Daemons,
    pub(crate) loadgen: &'a Path,
    pub(crate) queues: &'a [usize],
    pub(crate) duration: f64,
    pub(crate) warmup: f64,
    pub(crate) qd: usize,
    pub(crate) file_mib: u64,
    pub(crate) workloads: &'a str,
    pub(crate) verify_every: u32,
}

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
    let k = v.len();
    v.rotate_left((round as usize - 1) % k);
    v
}

impl QueueBench<'_> {
    /// Run every round and write `queues.json` into the output directory.
    pub(crate) fn run(&self) -> Result<(), String> {
        let d = self.d;
        let s = scratch(&d.scratch);
        let raw = d.out.join("raw");
        fs::create_dir_all(&raw).map_err(|e| e.to_string())?;
        let st = Command::new(self.loadgen)
            .args(["--prepare-only", "--file-mib", &self.file_mib.to_string()])
            .arg("--shared-dir")
            .arg(&s.share)
            .status()
            .map_err(|e| e.to_string())?;
        if !st.success() {
            return Err("preparing files failed".into());
        }
        let nw = self.workloads.split(',').count() as f64;
        let per_run = Duration::from_secs_f64((self.duration + self.warmup + 2.0) * nw + 60.0);
        let mut runs = Vec::new();
        let mut example = None;
        for round in 1..=d.rounds {
            for &pool in &d.pools {
                for (v, n) in queue_variants(d, pool, self.queues, round) {
                    eprintln!(
                        "[queues round {round}/{}] {} pool {pool} ({})",
                        d.rounds,
                        v.name,
                        chrono_now()
                    );
                    let mut daemon = start(&v, &s, &[]).map_err(|e| e.to_string())?;
                    daemon
                        .wait_socket_file(Duration::from_secs(10))
                        .map_err(|e| e.to_string())?;
                    let out = raw.join(format!("queues-r{round}-{}-p{pool}.json", v.name));
                    let mut cmd = Command::new(self.loadgen);
                    cmd.arg("--socket")
                        .arg(&daemon.socket)
                        .arg("--shared-dir")
                        .arg(&s.share)
                        .args(["--daemon-pid", &daemon.pid().to_string()])
                        .args(["--workloads", self.workloads])
                        .args(["--queues", &n.to_string()])
                        .args(["--duration", &self.duration.to_string()])
                        .args(["--warmup", &self.warmup.to_string()])
                        .args(["--qd", &self.qd.to_string()])
                        .args(["--file-mib", &self.file_mib.to_string()])
                        .args(["--cpu", &GEN_CPU.to_string()])
                        .args(["--verify-every", &self.verify_every.to_string()])
                        .arg("--json")
                        .arg("--output")
                        .arg(&out);
                    if example.is_none() && n > 1 {
                        example = Some(format!(
                            "taskset -c {DAEMON_CPU} {} --socket-path=SOCK --shared-dir=DIR {}\n{:?}",
                            v.bin.display(),
                            v.args.join(" "),
                            cmd
                        ));
                    }
                    let r = run_with_timeout(&mut cmd, per_run);
                    let report: Option<RunReport> = fs::read_to_string(&out)
                        .ok()
                        .and_then(|t| serde_json::from_str(&t).ok());
                    daemon.wait_exit(Duration::from_secs(5));
                    let (status, err) = match &r {
                        Ok((code, _)) => (*code, None),
                        Err(e) => (-1, Some(e.clone())),
                    };
                    if status != 0 {
                        eprintln!(
                            "  loadgen exit {status} {err:?}; daemon log: {}",
                            daemon.log_tail(3)
                        );
                    }
                    runs.push(json!({
                        "round": round, "variant": v.name, "pool": pool, "queues": n,
                        "args": v.args, "loadgen_status": status, "error": err,
                        "report": report,
                    }));
                }
            }
        }
        let all = json!({
            "machine": machine(),
            "settings": {
                "rounds": d.rounds, "duration_s": self.duration, "warmup_s": self.warmup,
                "qd": self.qd, "queues": self.queues, "file_mib": self.file_mib,
                "workloads": self.workloads, "pools": d.pools, "verify_every": self.verify_every,
                "common_args": d.common, "daemon_cpu": DAEMON_CPU, "generator_cpu": GEN_CPU,
            },
            "runs": runs,
            "example_command": example,
        });
        let p = d.out.join("queues.json");
        fs::write(&p, serde_json::to_string_pretty(&all).unwrap_or_default())
            .map_err(|e| e.to_string())?;
        eprintln!("wrote {}", p.display());
        Ok(())
    }
}
