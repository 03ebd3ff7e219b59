//! A real guest through `virtiofs-sandbox run`: QEMU (TCG by default, `$GUEST_ACCEL`) of the
//! `$GUEST_STACK` stack boots its kernel with the guest-vm harness's base initramfs; `run` adds the vhost-user-fs device and
//! the shared memory backend, the guest mounts `kataShared` and runs fio.
//!
//! The QEMU command is built here (not by `guest_vm::GuestRun`, which adds its own device and
//! memory backend): the harness's base initramfs plus a per-run cpio with
//! `/etc/guest-vm/run.conf` and `/job.sh`, read by the harness's `/init`, which reports on the
//! second serial port (parsed below).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{daemon_bin, Scratch};
use guest_vm::cpio::CpioWriter;
use guest_vm::{shell_quote, Initramfs, StackInstall};

const EXTRA: &str = "io.katacontainers.config.hypervisor.virtio_fs_extra_args";
/// The operator's burst in configs/configuration-qemu.toml.
const CONFIG_BURST: f64 = 20_000_000.0;

struct GuestCmd {
    qemu: PathBuf,
    qemu_args: Vec<String>,
    console: PathBuf,
    results: PathBuf,
}

/// Per-run initramfs and the QEMU arguments (without device and memory backend).
fn guest_cmd(work: &Path, job: &str) -> GuestCmd {
    let stack = StackInstall::from_env().unwrap_or_else(|e| panic!("guest stack: {e}"));
    let base =
        Initramfs::cached_for(&stack.kernel).unwrap_or_else(|e| panic!("guest initramfs: {e}"));
    let initrd = work.join("initrd.cpio");
    std::fs::copy(base.path(), &initrd).unwrap();
    let f = std::fs::OpenOptions::new()
        .append(true)
        .open(&initrd)
        .unwrap();
    let mut w = CpioWriter::new(std::io::BufWriter::new(f));
    let conf = [
        ("GVM_TAG", "kataShared"),
        ("GVM_MOUNTPOINT", "/mnt"),
        ("GVM_MOUNT", "1"),
        ("GVM_MOUNT_OPTS", "nodev"),
        ("GVM_MOUNT_TIMEOUT", "30"),
        ("GVM_UMOUNT", "1"),
        ("GVM_POWEROFF", "1"),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}\n", shell_quote(v)))
    .collect::<String>();
    w.dir("etc", 0o755).unwrap();
    w.dir("etc/guest-vm", 0o755).unwrap();
    w.file("etc/guest-vm/run.conf", 0o644, conf.as_bytes())
        .unwrap();
    w.file("job.sh", 0o755, job.as_bytes()).unwrap();
    w.finish().unwrap().flush().unwrap();
    let console = work.join("console.log");
    let results = work.join("results.log");
    let accel = match std::env::var("GUEST_ACCEL").as_deref() {
        Ok("kvm") => vec!["-accel", "kvm", "-cpu", "host"],
        _ => vec!["-accel", "tcg,thread=multi", "-cpu", "max"],
    };
    let mut a = stack.qemu_data_args();
    a.extend(
        ["-nodefaults", "-display", "none", "-no-reboot"]
            .iter()
            .chain(accel.iter())
            .chain(["-smp", "2", "-m", "1024M"].iter())
            .map(|s| s.to_string()),
    );
    a.extend([
        "-kernel".into(),
        base.kernel().path.display().to_string(),
        "-initrd".into(),
        initrd.display().to_string(),
        "-append".into(),
        "console=ttyS0 quiet panic=-1 rdinit=/init".into(),
        "-serial".into(),
        format!("file:{}", console.display()),
        "-serial".into(),
        format!("file:{}", results.display()),
    ]);
    GuestCmd {
        qemu: stack.qemu,
        qemu_args: a,
        console,
        results,
    }
}

fn run_command(s: &Scratch, cfg: &Path, id: &str, annotation: &str, g: &GuestCmd) -> Command {
    let mut c = Command::new(common::cli_bin());
    c.args(["run", "--config"])
        .arg(cfg)
        .args(["--sandbox-id", id, "--shared-dir"])
        .arg(&s.share)
        .arg("--state-dir")
        .arg(&s.state)
        .args(["--annotation", annotation, "--"])
        .arg(&g.qemu)
        .args(&g.qemu_args);
    c
}

/// The text between `===GUEST-VM-<what> len=N===\n` and `\n===GUEST-VM-<what>-END===`.
fn section(results: &str, what: &str) -> Option<String> {
    let start = results.find(&format!("===GUEST-VM-{what} len="))?;
    let body = start + results[start..].find("===\n")? + 4;
    let end = body + results[body..].find(&format!("\n===GUEST-VM-{what}-END==="))?;
    Some(results[body..end].to_string())
}

fn diagnostics(g: &GuestCmd, out: Option<&Output>) -> String {
    let tail = |p: &Path| {
        let t = std::fs::read_to_string(p).unwrap_or_default();
        let v: Vec<&str> = t.lines().collect();
        v[v.len().saturating_sub(40)..].join("\n")
    };
    format!(
        "--- run stderr ---\n{}\n--- console ---\n{}\n--- results ---\n{}",
        out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .unwrap_or_default(),
        tail(&g.console),
        tail(&g.results)
    )
}

#[test]
fn guest_run_pod_annotation_limits_fio_to_the_annotated_rate() {
    let _g = guest_vm::serial_guard();
    let s = Scratch::new();
    let cfg = common::write_config(s.dir.path(), &daemon_bin(), &[]);
    let work = s.dir.path().join("vm");
    std::fs::create_dir_all(&work).unwrap();
    let job = guest_vm::fio::script(&[
        "--name=seqwrite",
        "--rw=write",
        "--bs=1M",
        "--size=40M",
        "--direct=1",
        "--ioengine=psync",
        "--filename=fio.dat",
    ]);
    let g = guest_cmd(&work, &job);
    let annotation = format!(r#"{EXTRA}=["--fs-bw-size=5M"]"#);
    let t = Instant::now();
    let mut child = run_command(&s, &cfg, "guest1", &annotation, &g)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The daemon's own view of its limits, from the sandbox log while it runs.
    let log = s.state.join("guest1/virtiofsd.log");
    let limits_line = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.contains("rate limits:")) {
            break l.to_string();
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "run exited before the daemon logged its limits"
        );
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no 'rate limits:' line in {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(
        limits_line.ends_with("rate limits: bw 5000000 B/s (burst 20000000 B)"),
        "{limits_line}"
    );
    let status = common::run_wait(&mut child, Duration::from_secs(400));
    let mut stderr = Vec::new();
    std::io::Read::read_to_end(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let out = Output {
        status,
        stdout: Vec::new(),
        stderr,
    };
    eprintln!("guest run took {:?}", t.elapsed());
    assert_eq!(
        out.status.code(),
        Some(0),
        "run failed\n{}",
        diagnostics(&g, Some(&out))
    );
    let results = std::fs::read_to_string(&g.results).unwrap();
    assert!(
        results.contains("===GUEST-VM-EXIT status=0"),
        "{}",
        diagnostics(&g, Some(&out))
    );
    let stdout = section(&results, "STDOUT").expect("job stdout");
    let report = guest_vm::fio::parse_json(&stdout).unwrap();
    let sum = guest_vm::fio::summary(&report);
    let runtime_s = report["jobs"][0]["job_runtime"].as_f64().unwrap() / 1000.0;
    let bytes = sum.write_bytes as f64;
    assert_eq!(sum.write_bytes, 40 << 20, "{stdout}");
    // The bucket starts full (the operator's 20 MB burst); after it, writes flow at the rate.
    let after_burst = (bytes - CONFIG_BURST) / runtime_s;
    eprintln!(
        "fio: {bytes} B in {runtime_s:.2} s = {:.2} MB/s average; {:.2} MB/s after the 20 MB burst (annotated 5 MB/s, config 10 MB/s)",
        sum.write_bw / 1e6,
        after_burst / 1e6
    );
    assert!(
        (4.0e6..=5.75e6).contains(&after_burst),
        "post-burst rate {after_burst} B/s is not ≈ the annotated 5 MB/s\n{stdout}"
    );
    // The config's 10 MB/s would have given (40 MiB - 20 MB) / 10 MB/s ≈ 2.2 s.
    assert!(runtime_s > 3.5, "{runtime_s}");
    assert!(!s.state.join("guest1").exists(), "state left after run");
}

#[test]
fn guest_run_daemon_kill_stops_qemu_within_1s() {
    let _g = guest_vm::serial_guard();
    let s = Scratch::new();
    let cfg = common::write_config(s.dir.path(), &daemon_bin(), &[]);
    let work = s.dir.path().join("vm");
    std::fs::create_dir_all(&work).unwrap();
    let job = "guest-signal writing\nfio --name=long --rw=write --bs=1M --size=400M --direct=1 --ioengine=psync --filename=long.dat >/dev/null\n";
    let g = guest_cmd(&work, job);
    let annotation = format!(r#"{EXTRA}=["--fs-bw-size=5M"]"#);
    let mut child = run_command(&s, &cfg, "guest2", &annotation, &g)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let r = std::fs::read_to_string(&g.results).unwrap_or_default();
        if r.contains("===GUEST-VM-SIGNAL writing===") {
            break;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("run exited early ({st})\n{}", diagnostics(&g, None));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("guest did not start writing\n{}", diagnostics(&g, None));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let fio get going (the writes are throttled in the daemon at this point).
    std::thread::sleep(Duration::from_secs(2));
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.state.join("guest2/state.json")).unwrap()).unwrap();
    let dpid = st["pid"].as_u64().unwrap() as u32;
    let qemu_pid = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|p| {
            common::cmdline(*p)
                .first()
                .is_some_and(|a| a.ends_with("qemu-system-x86_64"))
                && std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .map(|t| {
                        t[t.rfind(')').unwrap() + 2..].split_whitespace().nth(1)
                            == Some(&child.id().to_string())
                    })
                    .unwrap_or(false)
        })
        .expect("QEMU child of run");
    let killed = Instant::now();
    // SAFETY: kill(2) on the daemon `run` started.
    assert_eq!(unsafe { libc::kill(dpid as i32, libc::SIGKILL) }, 0);
    let status = common::run_wait(&mut child, Duration::from_secs(10));
    let took = killed.elapsed();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    eprintln!("run exited ({status}) {took:?} after SIGKILL of virtiofsd; QEMU pid {qemu_pid}");
    assert!(took < Duration::from_secs(1), "{took:?}\n{err}");
    assert!(!status.success(), "{status}\n{err}");
    assert!(
        common::wait_gone(qemu_pid, Duration::from_millis(100)),
        "QEMU still running"
    );
    assert!(!s.state.join("guest2").exists());
}
