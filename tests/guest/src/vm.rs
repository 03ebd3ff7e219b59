//! Running QEMU: the accelerator, the [`GuestRun`] builder (`run`), the running [`Vm`]
//! handle and QMP (`handle`).

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::results::JobRun;
use crate::stack::{Stack, StackInstall};

mod handle;
mod run;

pub use run::GuestRun;

/// QEMU accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// `-accel tcg,thread=multi -cpu max` (works everywhere, slow).
    Tcg,
    /// `-accel kvm -cpu host`.
    Kvm,
    /// KVM if [`probe_kvm`] says it can boot the kernel, else TCG.
    Auto,
}

impl Accel {
    /// From `$GUEST_ACCEL` (`tcg`, `kvm` or `auto`); default [`Accel::Tcg`]
    /// (on the project's CI machines `/dev/kvm` exists but cannot run a guest).
    pub fn from_env() -> Result<Accel> {
        match std::env::var("GUEST_ACCEL").as_deref() {
            Err(_) | Ok("") | Ok("tcg") => Ok(Accel::Tcg),
            Ok("kvm") => Ok(Accel::Kvm),
            Ok("auto") => Ok(Accel::Auto),
            Ok(o) => Err(Error::Setup(format!(
                "GUEST_ACCEL={o}: expected tcg, kvm or auto"
            ))),
        }
    }
}

/// Whether KVM can actually boot `stack`'s kernel (to its "no root" panic) with its QEMU
/// within 15 s. The answer is computed once per process. On nested setups where
/// `/dev/kvm` exists but `-cpu host` aborts or hangs this returns false.
pub fn probe_kvm(stack: &StackInstall) -> bool {
    static KVM: OnceLock<bool> = OnceLock::new();
    *KVM.get_or_init(|| {
        if fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_err()
        {
            return false;
        }
        let Ok(mut child) = stack
            .qemu_command()
            .args(["-accel", "kvm", "-cpu", "host", "-m", "256", "-nodefaults"])
            .args(["-display", "none", "-no-reboot", "-kernel"])
            .arg(&stack.kernel.path)
            .args(["-append", "panic=-1 quiet"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        else {
            return false;
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match child.try_wait() {
                Ok(Some(st)) => return st.success(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    log::warn!("guest-vm: KVM probe timed out; using TCG");
                    return false;
                }
            }
        }
    })
}

/// What a finished guest run produced.
#[derive(Debug, Clone)]
pub struct GuestOutput {
    /// Exit status of the job script (of the last boot).
    pub status: i32,
    /// What the job wrote to stdout (exactly, lossily decoded as UTF-8).
    pub stdout: String,
    /// What the job wrote to stderr.
    pub stderr: String,
    /// The last lines of the guest console (kernel log and /init messages).
    pub console_tail: String,
    /// Wall time from QEMU start to QEMU exit.
    pub elapsed: Duration,
    /// Wall time from QEMU start until the host saw the guest's "mounted"
    /// marker (polled every 20 ms); None when mounting was disabled.
    pub boot_to_mount: Option<Duration>,
    /// Guest uptime at mount (guest clock).
    pub mount_uptime: Option<Duration>,
    /// The job's run time measured by the guest clock.
    pub job_time: Option<Duration>,
    /// `guest-signal` names the job emitted.
    pub signals: Vec<String>,
    /// Every boot's result (more than one if the guest was reset).
    pub runs: Vec<JobRun>,
    /// The stack the guest ran on.
    pub stack: Stack,
}

impl GuestOutput {
    /// True if the job exited 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }

    /// Panics with stdout, stderr and the console tail unless the job exited 0.
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.success(),
            "guest job exited {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- console tail ---\n{}",
            self.status,
            self.stdout,
            self.stderr,
            self.console_tail
        );
        self
    }

    /// Parses the job's stdout as fio JSON (see [`crate::fio`]).
    pub fn fio_json(&self) -> Result<Value> {
        crate::fio::parse_json(&self.stdout)
    }
}
/// A running guest, from [`GuestRun::spawn`]. Dropping it SIGKILLs QEMU.
#[derive(Debug)]
pub struct Vm {
    stack: Stack,
    child: Option<Child>,
    started: Instant,
    timeout: Duration,
    expect_mount: bool,
    mount_seen: Option<Duration>,
    console: PathBuf,
    results: PathBuf,
    stderr_path: PathBuf,
    qmp: PathBuf,
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}
