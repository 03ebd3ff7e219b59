//! The guest tier: fio in a TCG guest, ours and upstream alternating, a fresh daemon per boot.

use super::*;

fn fio_jobs(runtime: u32, nrfiles: u32, file_mib: u64) -> String {
    let mut j = format!(
        "[global]\ndirectory=/mnt/vufs-loadgen\ndirect=1\nioengine=libaio\niodepth=8\n\
         size={file_mib}M\nallow_file_create=0\n"
    );
    for (name, file, rw, bs) in [
        ("seq-read", "read.dat", "read", "1M"),
        ("seq-write", "write.dat", "write", "1M"),
        ("rand-read", "read.dat", "randread", "4k"),
        ("rand-write", "write.dat", "randwrite", "4k"),
    ] {
        j += &format!(
            "[{name}]\nstonewall\nfilename={file}\nrw={rw}\nbs={bs}\ntime_based=1\nruntime={runtime}\n"
        );
    }
    for (name, engine, rw) in [
        ("meta-create", "filecreate", "write"),
        ("meta-stat", "filestat", "read"),
        ("meta-delete", "filedelete", "write"),
    ] {
        j += &format!(
            "[{name}]\nstonewall\ndirectory=/mnt/vufs-loadgen/meta\nallow_file_create=1\n\
             ioengine={engine}\nrw={rw}\nnrfiles={nrfiles}\nfilesize=4k\nsize={}k\nbs=4k\n\
             openfiles=1\nfilename_format=f.$filenum\niodepth=1\ndirect=0\n",
            4 * nrfiles
        );
    }
    j
}

pub(crate) fn guest(d: &Daemons, runtime: u32, nrfiles: u32, file_mib: u64) -> Result<(), String> {
    let s = scratch(&d.scratch.join("guest"));
    vufs_loadgen::engine::prepare_host(&s.share, file_mib << 20).map_err(|e| e.to_string())?;
    let jobs = fio_jobs(runtime, nrfiles, file_mib);
    let raw = d.out.join("raw");
    fs::create_dir_all(&raw).map_err(|e| e.to_string())?;
    let mut runs = Vec::new();
    for round in 1..=d.rounds {
        for &pool in &d.pools {
            for v in &rotated(d, pool, false, round) {
                announce("guest ", round, d.rounds, &v.name, pool);
                let mut daemon = start(v, &s, &[]).map_err(|e| e.to_string())?;
                daemon
                    .wait_socket_file(Duration::from_secs(10))
                    .map_err(|e| e.to_string())?;
                let t = Instant::now();
                let out = guest_vm::GuestRun::new()
                    .socket(&daemon.socket)
                    .file("/jobs.fio", jobs.clone().into_bytes(), 0o644)
                    .script(guest_vm::fio::script(&["/jobs.fio"]))
                    .timeout(Duration::from_secs(
                        60 + 12 * runtime as u64 + nrfiles as u64 / 5,
                    ))
                    .run();
                let wall = t.elapsed().as_secs_f64();
                daemon.wait_exit(Duration::from_secs(5));
                let (jobs_out, err) = match out {
                    Ok(o) if o.success() => match o.fio_json() {
                        Ok(fv) => {
                            let _ = fs::write(
                                raw.join(format!("guest-r{round}-{}-p{pool}.json", v.name)),
                                &o.stdout,
                            );
                            (fio_per_job(&fv), None)
                        }
                        Err(e) => (Value::Null, Some(e.to_string())),
                    },
                    Ok(o) => (
                        Value::Null,
                        Some(format!(
                            "fio exit {}: {}\n{}",
                            o.status,
                            o.stderr.chars().take(2000).collect::<String>(),
                            o.console_tail
                        )),
                    ),
                    Err(e) => (Value::Null, Some(e.to_string())),
                };
                if let Some(e) = &err {
                    eprintln!("  guest run failed: {e}\n  daemon: {}", daemon.log_tail(3));
                }
                runs.push(json!({
                    "round": round, "variant": v.name, "pool": pool, "args": v.args,
                    "wall_s": wall, "jobs": jobs_out, "error": err,
                }));
                // Leftovers of a failed metadata job must not change the next run.
                let _ = fs::remove_dir_all(s.share.join("vufs-loadgen/meta"));
                let _ = fs::create_dir_all(s.share.join("vufs-loadgen/meta"));
            }
        }
    }
    let all = json!({
        "machine": machine(),
        "settings": {"rounds": d.rounds, "runtime_s": runtime, "nrfiles": nrfiles,
                     "file_mib": file_mib, "pools": d.pools, "common_args": d.common,
                     "accel": std::env::var("GUEST_ACCEL").unwrap_or_else(|_| "tcg".into())},
        "fio_jobs": jobs,
        "runs": runs,
    });
    write_json(&d.out, "guest.json", &all)
}

/// {job name: {"mib_s", "iops", "lat_p50_us"}} from a fio report.
fn fio_per_job(v: &Value) -> Value {
    let mut m = serde_json::Map::new();
    for j in v["jobs"].as_array().into_iter().flatten() {
        let name = j["jobname"].as_str().unwrap_or("?").to_string();
        let f = |d: &str, k: &str| j[d][k].as_f64().unwrap_or(0.0);
        let bw = f("read", "bw_bytes") + f("write", "bw_bytes");
        let iops = f("read", "iops") + f("write", "iops");
        m.insert(
            name,
            json!({"mib_s": bw / 1048576.0, "iops": iops, "error": j["error"]}),
        );
    }
    Value::Object(m)
}
