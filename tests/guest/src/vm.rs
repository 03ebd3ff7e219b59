//! Running QEMU: the [`GuestRun`] builder, the running [`Vm`] handle and QMP.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cpio::CpioWriter;
use crate::error::{Error, Result};
use crate::initramfs::{find_kernel, Initramfs, Kernel};
use crate::results::{parse, JobRun};
use crate::shell_quote;

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

fn qemu_binary() -> Result<PathBuf> {
    if let Some(q) = std::env::var_os("GUEST_QEMU") {
        return Ok(PathBuf::from(q));
    }
    let p = PathBuf::from("/usr/bin/qemu-system-x86_64");
    if p.is_file() {
        Ok(p)
    } else {
        Err(Error::MissingPackage {
            what: p.display().to_string(),
            package: "qemu-system-x86",
            detail: "file not found".into(),
        })
    }
}

/// Whether KVM can actually boot `kernel` (to its "no root" panic) within
/// 15 s. The answer is computed once per process. On nested setups where
/// `/dev/kvm` exists but `-cpu host` aborts or hangs this returns false.
pub fn probe_kvm(kernel: &Path) -> bool {
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
        let Ok(qemu) = qemu_binary() else {
            return false;
        };
        let Ok(mut child) = Command::new(qemu)
            .args(["-accel", "kvm", "-cpu", "host", "-m", "256", "-nodefaults"])
            .args(["-display", "none", "-no-reboot", "-kernel"])
            .arg(kernel)
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

/// Waits until `path` exists and accepts a connection (a daemon's vhost-user
/// socket), or fails after `timeout`.
///
/// Note: connecting consumes the daemon's single accept for daemons that
/// serve one frontend only; this only checks existence and socket type.
pub fn wait_for_socket(path: impl AsRef<Path>, timeout: Duration) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let path = path.as_ref();
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(m) = fs::metadata(path) {
            if m.file_type().is_socket() {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::Setup(format!(
                "socket {} did not appear within {timeout:?}",
                path.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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

#[derive(Debug, Clone)]
struct ExtraFs {
    socket: PathBuf,
    tag: String,
}

/// Builder for one guest run. Defaults: auto-detected kernel, cached base
/// initramfs, 1 GiB shared memfd RAM, 2 vCPUs, TCG (or `$GUEST_ACCEL`), tag
/// `kataShared` mounted at `/mnt`, queue size 1024, 180 s timeout.
#[derive(Debug, Clone)]
pub struct GuestRun {
    kernel: Option<Kernel>,
    initramfs: Option<Initramfs>,
    memory_mib: u64,
    smp: u32,
    socket: Option<PathBuf>,
    tag: String,
    queue_size: u16,
    extra_fs: Vec<ExtraFs>,
    mount: bool,
    mount_point: String,
    mount_options: String,
    mount_timeout_secs: u32,
    umount: bool,
    poweroff: bool,
    script: String,
    files: Vec<(String, Vec<u8>, u32)>,
    append: Vec<String>,
    qemu_args: Vec<String>,
    chardev_opts: String,
    machine: Option<String>,
    accel: Option<Accel>,
    timeout: Duration,
    no_reboot: bool,
    work_dir: Option<PathBuf>,
    keep_work_dir: bool,
}

impl Default for GuestRun {
    fn default() -> Self {
        Self::new()
    }
}

impl GuestRun {
    /// A run with the defaults described on [`GuestRun`] and an empty job.
    pub fn new() -> Self {
        Self {
            kernel: None,
            initramfs: None,
            memory_mib: 1024,
            smp: 2,
            socket: None,
            tag: "kataShared".into(),
            queue_size: 1024,
            extra_fs: Vec::new(),
            mount: true,
            mount_point: "/mnt".into(),
            mount_options: String::new(),
            mount_timeout_secs: 10,
            umount: true,
            poweroff: true,
            script: "true\n".into(),
            files: Vec::new(),
            append: Vec::new(),
            qemu_args: Vec::new(),
            chardev_opts: String::new(),
            machine: None,
            accel: None,
            timeout: Duration::from_secs(180),
            no_reboot: true,
            work_dir: None,
            keep_work_dir: std::env::var_os("GUEST_VM_KEEP").is_some(),
        }
    }

    /// Guest kernel (default: [`find_kernel`]).
    pub fn kernel(mut self, kernel: Kernel) -> Self {
        self.kernel = Some(kernel);
        self
    }

    /// Base initramfs (default: [`Initramfs::cached`]).
    pub fn initramfs(mut self, initramfs: Initramfs) -> Self {
        self.initramfs = Some(initramfs);
        self
    }

    /// Guest RAM in MiB (default 1024); always a shared memfd backend.
    pub fn memory_mib(mut self, mib: u64) -> Self {
        self.memory_mib = mib;
        self
    }

    /// Number of vCPUs (default 2).
    pub fn smp(mut self, n: u32) -> Self {
        self.smp = n;
        self
    }

    /// The vhost-user-fs socket of the daemon under test (its device uses
    /// [`tag`](Self::tag)). Without a socket no virtio-fs device is added and
    /// mounting is skipped.
    pub fn socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.socket = Some(path.into());
        self
    }

    /// Tag of the main device and of the guest mount (default `kataShared`).
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = tag.into();
        self
    }

    /// Virtqueue size of the device (default 1024, like Kata).
    pub fn queue_size(mut self, n: u16) -> Self {
        self.queue_size = n;
        self
    }

    /// Extra options appended to the main `-chardev socket,...` (e.g. `reconnect=1`).
    pub fn chardev_opts(mut self, opts: impl Into<String>) -> Self {
        self.chardev_opts = opts.into();
        self
    }

    /// Adds another vhost-user-fs device (not mounted by /init; mount it in
    /// the job with `mount -t virtiofs TAG DIR`).
    pub fn extra_device(mut self, socket: impl Into<PathBuf>, tag: impl Into<String>) -> Self {
        self.extra_fs.push(ExtraFs {
            socket: socket.into(),
            tag: tag.into(),
        });
        self
    }

    /// Whether /init mounts the share before the job (default true).
    pub fn mount(mut self, yes: bool) -> Self {
        self.mount = yes;
        self
    }

    /// Guest mount point (default `/mnt`); the job starts in it and gets it
    /// as `$GUEST_VM_MNT`.
    pub fn mount_point(mut self, dir: impl Into<String>) -> Self {
        self.mount_point = dir.into();
        self
    }

    /// `-o` options of the guest mount (default none; Kata uses `nodev`).
    pub fn mount_options(mut self, opts: impl Into<String>) -> Self {
        self.mount_options = opts.into();
        self
    }

    /// How long /init retries the mount while the PCI device probes (default 10 s).
    pub fn mount_timeout_secs(mut self, secs: u32) -> Self {
        self.mount_timeout_secs = secs;
        self
    }

    /// Whether /init unmounts the share after the job (default true; sends FUSE_DESTROY).
    pub fn umount(mut self, yes: bool) -> Self {
        self.umount = yes;
        self
    }

    /// Whether the guest powers off after the job (default true). With false
    /// the guest idles until killed ([`Vm::kill`]) or the timeout.
    pub fn poweroff(mut self, yes: bool) -> Self {
        self.poweroff = yes;
        self
    }

    /// The job: a `/bin/sh` (busybox) script run after the mount, in the mount
    /// point, with stdin from /dev/null. `guest-signal NAME` inside it lets
    /// the host's [`Vm::wait_for_signal`] proceed.
    pub fn script(mut self, script: impl Into<String>) -> Self {
        self.script = script.into();
        self
    }

    /// Puts a file into the per-run archive (e.g. a fio job file).
    pub fn file(
        mut self,
        guest_path: impl Into<String>,
        data: impl Into<Vec<u8>>,
        perm: u32,
    ) -> Self {
        self.files.push((guest_path.into(), data.into(), perm));
        self
    }

    /// Appends to the kernel command line.
    pub fn append(mut self, args: impl Into<String>) -> Self {
        self.append.push(args.into());
        self
    }

    /// Appends a raw QEMU argument.
    pub fn qemu_arg(mut self, arg: impl Into<String>) -> Self {
        self.qemu_args.push(arg.into());
        self
    }

    /// `-machine` type (default: QEMU's default `pc`).
    pub fn machine(mut self, machine: impl Into<String>) -> Self {
        self.machine = Some(machine.into());
        self
    }

    /// Accelerator (default [`Accel::from_env`]).
    pub fn accel(mut self, accel: Accel) -> Self {
        self.accel = Some(accel);
        self
    }

    /// Hard limit on the whole run; QEMU is SIGKILLed when exceeded (default 180 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// QEMU `-no-reboot` (default true). Note: with it, a QMP/HMP
    /// `system_reset` makes QEMU exit; pass false to let the guest reboot
    /// (it then runs the job again; see [`GuestOutput::runs`]).
    pub fn no_reboot(mut self, yes: bool) -> Self {
        self.no_reboot = yes;
        self
    }

    /// Run directory for logs, sockets and the per-run initramfs (default: a
    /// fresh temporary directory, removed when the [`Vm`] is dropped).
    pub fn work_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.work_dir = Some(dir.into());
        self
    }

    /// Keep the temporary run directory (also `$GUEST_VM_KEEP=1`).
    pub fn keep_work_dir(mut self, yes: bool) -> Self {
        self.keep_work_dir = yes;
        self
    }

    /// Boots the guest, runs the job and waits for QEMU to exit (at most the
    /// timeout). A job that exits non-zero is still `Ok`; check
    /// [`GuestOutput::status`].
    pub fn run(self) -> Result<GuestOutput> {
        self.spawn()?.wait()
    }

    fn run_conf(&self) -> String {
        let mut c = String::new();
        let mut kv = |k: &str, v: &str| {
            c.push_str(&format!("{k}={}\n", shell_quote(v)));
        };
        let b = |x: bool| if x { "1" } else { "0" };
        kv("GVM_TAG", &self.tag);
        kv("GVM_MOUNTPOINT", &self.mount_point);
        kv("GVM_MOUNT", b(self.mount && self.socket.is_some()));
        kv("GVM_MOUNT_OPTS", &self.mount_options);
        kv("GVM_MOUNT_TIMEOUT", &self.mount_timeout_secs.to_string());
        kv("GVM_UMOUNT", b(self.umount));
        kv("GVM_POWEROFF", b(self.poweroff));
        c
    }

    /// Starts QEMU and returns at once; use the [`Vm`] handle to interact
    /// with the running guest and [`Vm::wait`] to collect the result.
    pub fn spawn(self) -> Result<Vm> {
        let qemu = qemu_binary()?;
        let initramfs = match self.initramfs.clone() {
            Some(i) => i,
            None => Initramfs::cached()?,
        };
        let kernel = match (&self.kernel, &self.initramfs) {
            (Some(k), _) => k.clone(),
            (None, Some(i)) => i.kernel().clone(),
            (None, None) => find_kernel()?,
        };
        if kernel.version != initramfs.kernel().version {
            return Err(Error::Setup(format!(
                "kernel {} does not match the initramfs modules ({})",
                kernel.version,
                initramfs.kernel().version
            )));
        }
        if let Some(s) = &self.socket {
            if !s.exists() {
                return Err(Error::Setup(format!(
                    "vhost-user socket {} does not exist (start the daemon first; see wait_for_socket)",
                    s.display()
                )));
            }
        }
        let accel = match self.accel {
            Some(a) => a,
            None => Accel::from_env()?,
        };
        let accel = match accel {
            Accel::Auto if probe_kvm(&kernel.path) => Accel::Kvm,
            Accel::Auto => Accel::Tcg,
            a => a,
        };

        let (dir, temp) = match &self.work_dir {
            Some(d) => {
                fs::create_dir_all(d).map_err(Error::io(format!("creating {}", d.display())))?;
                (d.clone(), None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("guest-vm-")
                    .tempdir()
                    .map_err(Error::io("creating a temporary run directory"))?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let temp = match temp {
            Some(t) if self.keep_work_dir => {
                let p = t.keep();
                log::info!("guest-vm: keeping run directory {}", p.display());
                None
            }
            t => t,
        };

        // Per-run initramfs = base archive + a small archive with the job.
        let initrd = dir.join("initrd.cpio");
        fs::copy(initramfs.path(), &initrd).map_err(Error::io(format!(
            "copying {} to {}",
            initramfs.path().display(),
            initrd.display()
        )))?;
        {
            let f = fs::OpenOptions::new()
                .append(true)
                .open(&initrd)
                .map_err(Error::io(format!("opening {}", initrd.display())))?;
            let mut w = CpioWriter::new(std::io::BufWriter::new(f));
            let ctx = || format!("appending the job archive to {}", initrd.display());
            w.dir("etc", 0o755).map_err(Error::io(ctx()))?;
            w.dir("etc/guest-vm", 0o755).map_err(Error::io(ctx()))?;
            w.file("etc/guest-vm/run.conf", 0o644, self.run_conf().as_bytes())
                .map_err(Error::io(ctx()))?;
            w.file("job.sh", 0o755, self.script.as_bytes())
                .map_err(Error::io(ctx()))?;
            for (p, data, perm) in &self.files {
                let p = p.trim_start_matches('/');
                let mut acc = String::new();
                if let Some(parent) = Path::new(p).parent() {
                    for comp in parent.components() {
                        if !acc.is_empty() {
                            acc.push('/');
                        }
                        acc.push_str(&comp.as_os_str().to_string_lossy());
                        w.dir(&acc, 0o755).map_err(Error::io(ctx()))?;
                    }
                }
                w.file(p, *perm, data).map_err(Error::io(ctx()))?;
            }
            w.finish().map_err(Error::io(ctx()))?;
        }

        let console = dir.join("console.log");
        let results = dir.join("results.log");
        let stderr_path = dir.join("qemu.stderr");
        let qmp = dir.join("qmp.sock");
        for p in [&console, &results, &qmp] {
            let _ = fs::remove_file(p);
        }
        let mem = self.memory_mib;
        let mut cmd = Command::new(&qemu);
        cmd.args(["-nodefaults", "-display", "none"]);
        if self.no_reboot {
            cmd.arg("-no-reboot");
        }
        if let Some(m) = &self.machine {
            cmd.args(["-machine", m]);
        }
        match accel {
            Accel::Kvm => cmd.args(["-accel", "kvm", "-cpu", "host"]),
            _ => cmd.args(["-accel", "tcg,thread=multi", "-cpu", "max"]),
        };
        cmd.args(["-smp", &self.smp.to_string(), "-m", &format!("{mem}M")]);
        cmd.args(vmm_args::qemu::shared_memory(mem));
        let mut devs: Vec<ExtraFs> = Vec::new();
        if let Some(s) = &self.socket {
            devs.push(ExtraFs {
                socket: s.clone(),
                tag: self.tag.clone(),
            });
        }
        devs.extend(self.extra_fs.iter().cloned());
        for (i, d) in devs.iter().enumerate() {
            cmd.args(vmm_args::qemu::fs_device(&vmm_args::qemu::FsDevice {
                chardev_id: &format!("vufs{i}"),
                socket: &d.socket,
                tag: &d.tag,
                queue_size: self.queue_size.into(),
                chardev_opts: if i == 0 { &self.chardev_opts } else { "" },
            }));
        }
        let mut append = String::from("console=ttyS0 quiet panic=-1 rdinit=/init");
        for a in &self.append {
            append.push(' ');
            append.push_str(a);
        }
        cmd.arg("-kernel")
            .arg(&kernel.path)
            .arg("-initrd")
            .arg(&initrd)
            .args(["-append", &append]);
        cmd.args([
            "-serial",
            &format!("file:{}", console.display()),
            "-serial",
            &format!("file:{}", results.display()),
            "-qmp",
            &format!("unix:{},server=on,wait=off", qmp.display()),
        ]);
        cmd.args(&self.qemu_args);
        let stderr = fs::File::create(&stderr_path)
            .map_err(Error::io(format!("creating {}", stderr_path.display())))?;
        cmd.stdin(Stdio::null())
            .stdout(stderr.try_clone().map_err(Error::io("dup"))?)
            .stderr(stderr);
        log::debug!("guest-vm: {cmd:?}");
        let started = Instant::now();
        let child = cmd
            .spawn()
            .map_err(Error::io(format!("starting {}", qemu.display())))?;
        Ok(Vm {
            child: Some(child),
            started,
            timeout: self.timeout,
            expect_mount: self.mount && self.socket.is_some(),
            mount_seen: None,
            console,
            results,
            stderr_path,
            qmp,
            dir,
            _temp: temp,
        })
    }
}

/// A running guest, from [`GuestRun::spawn`]. Dropping it SIGKILLs QEMU.
#[derive(Debug)]
pub struct Vm {
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

fn tail_lines(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

impl Vm {
    /// QEMU's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The run directory (console.log, results.log, qemu.stderr, qmp.sock, initrd.cpio).
    pub fn work_dir(&self) -> &Path {
        &self.dir
    }

    /// Time since QEMU was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The guest console (ttyS0) so far.
    pub fn console_log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.console).unwrap_or_default()).into_owned()
    }

    /// The last 60 lines of the guest console.
    pub fn console_tail(&self) -> String {
        tail_lines(&self.console_log(), 60)
    }

    fn results_raw(&self) -> Vec<u8> {
        fs::read(&self.results).unwrap_or_default()
    }

    fn results_tail(&self) -> String {
        let r = self.results_raw();
        String::from_utf8_lossy(&r[r.len().saturating_sub(2000)..]).into_owned()
    }

    fn qemu_stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The results parsed so far (one entry per boot).
    pub fn runs(&self) -> Vec<JobRun> {
        parse(&self.results_raw())
    }

    fn poll_mount(&mut self) {
        if self.mount_seen.is_none() && self.expect_mount {
            let r = self.results_raw();
            if r.windows(20).any(|w| w == b"===GUEST-VM-MOUNTED ") {
                self.mount_seen = Some(self.started.elapsed());
            }
        }
    }

    /// Polls QEMU; `Some(status)` once it exited.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        self.poll_mount();
        match self.child.as_mut() {
            Some(c) => c.try_wait().map_err(Error::io("waiting for QEMU")),
            None => Err(Error::Setup("QEMU already reaped".into())),
        }
    }

    fn wait_until<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&mut Self) -> Option<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f(self) {
                return Ok(v);
            }
            if let Some(st) = self.try_wait()? {
                return Err(Error::Setup(format!(
                    "QEMU exited ({st}) before {what}\n--- console tail ---\n{}\n--- qemu stderr ---\n{}",
                    self.console_tail(),
                    self.qemu_stderr()
                )));
            }
            if Instant::now() >= deadline {
                return Err(Error::Setup(format!(
                    "{what} did not happen within {timeout:?}\n--- console tail ---\n{}",
                    self.console_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the guest has mounted the share (returns the time since
    /// QEMU started). Fails if the mount failed or QEMU exited.
    pub fn wait_for_mount(&mut self, timeout: Duration) -> Result<Duration> {
        self.wait_until("the guest mount", timeout, |vm| {
            vm.poll_mount();
            vm.mount_seen
        })
    }

    /// Waits until the job ran `guest-signal NAME` (in any boot).
    pub fn wait_for_signal(&mut self, name: &str, timeout: Duration) -> Result<()> {
        let marker = format!("===GUEST-VM-SIGNAL {name}===");
        self.wait_until(&format!("guest-signal {name}"), timeout, |vm| {
            let r = vm.results_raw();
            r.windows(marker.len())
                .any(|w| w == marker.as_bytes())
                .then_some(())
        })
    }

    /// Sends a QMP command and returns its `return` value (events are skipped).
    /// Each call opens a fresh connection to the QMP socket.
    pub fn qmp(&self, command: &str, arguments: Option<Value>) -> Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match UnixStream::connect(&self.qmp) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => {
                    return Err(Error::Qmp(format!("connect {}: {e}", self.qmp.display())))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| Error::Qmp(e.to_string()))?;
        let mut writer = stream.try_clone().map_err(|e| Error::Qmp(e.to_string()))?;
        let mut reader = BufReader::new(stream);
        let read_reply = |reader: &mut BufReader<UnixStream>, greeting: bool| -> Result<Value> {
            loop {
                let mut line = String::new();
                let n = reader
                    .read_line(&mut line)
                    .map_err(|e| Error::Qmp(format!("read: {e}")))?;
                if n == 0 {
                    return Err(Error::Qmp("connection closed".into()));
                }
                let v: Value = serde_json::from_str(&line)
                    .map_err(|e| Error::Qmp(format!("bad JSON {line:?}: {e}")))?;
                if greeting && v.get("QMP").is_some() {
                    return Ok(v);
                }
                if let Some(r) = v.get("return") {
                    return Ok(r.clone());
                }
                if let Some(e) = v.get("error") {
                    return Err(Error::Qmp(format!("{command}: {e}")));
                }
            }
        };
        read_reply(&mut reader, true)?;
        let mut send = |v: Value| -> Result<()> {
            writeln!(writer, "{v}").map_err(|e| Error::Qmp(format!("write: {e}")))
        };
        send(json!({"execute": "qmp_capabilities"}))?;
        read_reply(&mut reader, false)?;
        let mut req = json!({ "execute": command });
        if let Some(a) = arguments {
            req["arguments"] = a;
        }
        send(req)?;
        read_reply(&mut reader, false)
    }

    /// Runs a human-monitor (HMP) command, e.g. `system_reset` or
    /// `info status`, and returns its text output.
    pub fn monitor_command(&self, command: &str) -> Result<String> {
        let v = self.qmp(
            "human-monitor-command",
            Some(json!({ "command-line": command })),
        )?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// SIGKILLs QEMU and reaps it.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(c) = self.child.as_mut() {
            if c.try_wait()
                .map_err(Error::io("waiting for QEMU"))?
                .is_none()
            {
                let _ = c.kill();
            }
            c.wait().map_err(Error::io("waiting for QEMU"))?;
        }
        Ok(())
    }

    /// Waits for QEMU to exit until the run's timeout (counted from spawn).
    pub fn wait(self) -> Result<GuestOutput> {
        let t = self.timeout.saturating_sub(self.started.elapsed());
        self.wait_timeout(t)
    }

    /// Waits for QEMU to exit for at most `timeout` from now; on expiry QEMU
    /// is SIGKILLed and [`Error::Timeout`] carries the console tail.
    pub fn wait_timeout(mut self, timeout: Duration) -> Result<GuestOutput> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(st) = self.try_wait()? {
                break st;
            }
            if Instant::now() >= deadline {
                self.kill()?;
                return Err(Error::Timeout {
                    timeout: self.started.elapsed(),
                    console_tail: self.console_tail(),
                    results_tail: self.results_tail(),
                    qemu_stderr: self.qemu_stderr(),
                    work_dir: self.dir.display().to_string(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let elapsed = self.started.elapsed();
        self.poll_mount();
        self.child = None;
        let console_tail = self.console_tail();
        if !status.success() {
            return Err(Error::QemuFailed {
                status: status.to_string(),
                qemu_stderr: self.qemu_stderr(),
                console_tail,
            });
        }
        let runs = self.runs();
        let Some(last) = runs.last().cloned() else {
            return Err(Error::NoResult {
                console_tail,
                results_tail: self.results_tail(),
                qemu_stderr: self.qemu_stderr(),
            });
        };
        if let Some(message) = last.mount_error.clone() {
            return Err(Error::MountFailed {
                message,
                console_tail,
            });
        }
        let Some(status) = last.status else {
            return Err(Error::NoResult {
                console_tail,
                results_tail: self.results_tail(),
                qemu_stderr: self.qemu_stderr(),
            });
        };
        Ok(GuestOutput {
            status,
            stdout: last.stdout.clone(),
            stderr: last.stderr.clone(),
            console_tail,
            elapsed,
            boot_to_mount: self.mount_seen,
            mount_uptime: last.mount_uptime,
            job_time: last.job_time,
            signals: last.signals.clone(),
            runs,
        })
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
