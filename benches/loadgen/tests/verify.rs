//! Read-back verification: a byte corrupted in a host file is reported as a verification
//! error (by the library and by the `vufs-loadgen` binary's exit status and message).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{corrupt_read_file, with_timeout, Env, HARD_TIMEOUT};
use vufs_loadgen::{Config, Generator, Workload};

const FILE_MIB: u64 = 8;
const BAD: u64 = (5 << 20) + 123;

fn corrupt(env: &Env) {
    corrupt_read_file(&env.share, FILE_MIB, BAD, 0x40);
}

#[test]
fn corrupted_byte_is_a_verification_error() {
    let env = Env::start(&[]);
    corrupt(&env);
    let cfg = Config {
        socket: env.daemon.socket.clone(),
        shared_dir: Some(env.share.clone()),
        queue_depth: 8,
        duration: Duration::from_secs(1),
        warmup: Duration::ZERO,
        file_size: FILE_MIB << 20,
        ..Default::default()
    };
    let r = with_timeout(move || {
        let mut g = Generator::connect(cfg).unwrap();
        g.run(Workload::SeqRead).unwrap();
        g.finish_run()
    });
    let w = &r.results[0];
    assert!(w.verify_errors > 0, "{w:?}");
    assert_eq!(w.errors, 0);
    let e = w.first_error.as_deref().unwrap();
    assert!(
        e.contains("verification error") && e.contains(&format!("offset {BAD}")),
        "{e}"
    );
    assert!(!r.ok);
}

#[test]
fn binary_exits_1_and_names_the_offset() {
    let env = Env::start(&[]);
    corrupt(&env);
    let so = env.dir.path().join("stdout");
    let se = env.dir.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vufs-loadgen"))
        .arg("--socket")
        .arg(&env.daemon.socket)
        .arg("--shared-dir")
        .arg(&env.share)
        .args([
            "--workloads",
            "seq-read",
            "--duration",
            "1",
            "--warmup",
            "0",
        ])
        .args(["--file-mib", &FILE_MIB.to_string(), "--json"])
        .stdout(std::fs::File::create(&so).unwrap())
        .stderr(std::fs::File::create(&se).unwrap())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t.elapsed() > HARD_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("vufs-loadgen ran longer than {HARD_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(&se).unwrap();
    let stdout = std::fs::read(&so).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("verification error") && stderr.contains(&format!("offset {BAD}")),
        "{stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert!(report["results"][0]["verify_errors"].as_u64().unwrap() > 0);
}
