//! [`GuestRun`]: what to boot and run, and starting QEMU with it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::cpio::CpioWriter;
use crate::error::{Error, Result};
use crate::initramfs::{Initramfs, Kernel};
use crate::shell_quote;
use crate::stack::{Stack, StackInstall};

use super::{probe_kvm, Accel, GuestOutput, Vm};

/// Builder for one guest run. Defaults: the stack of `$GUEST_STACK` (its QEMU and
/// kernel), cached base initramfs, 1 GiB shared memfd RAM, 2 vCPUs, TCG (or
/// `$GUEST_ACCEL`), tag `kataShared` mounted at `/mnt`, queue size 1024, 180 s timeout.
#[derive(Debug, Clone)]
pub struct GuestRun {
    stack: Option<Stack>,
    kernel: Option<Kernel>,
    initramfs: Option<Initramfs>,
    memory_mib: u64,
    smp: u32,
    socket: Option<PathBuf>,
    tag: String,
    queue_size: u16,
    mount: bool,
    mount_point: String,
    mount_options: String,
    mount_timeout_secs: u32,
    umount: bool,
    poweroff: bool,
    script: String,
    files: Vec<(String, Vec<u8>, u32)>,
    append: Vec<String>,
    chardev_opts: String,
    device_props: Vec<String>,
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
            stack: None,
            kernel: None,
            initramfs: None,
            memory_mib: 1024,
            smp: 2,
            socket: None,
            tag: "kataShared".into(),
            queue_size: 1024,
            mount: true,
            mount_point: "/mnt".into(),
            mount_options: String::new(),
            mount_timeout_secs: 10,
            umount: true,
            poweroff: true,
            script: "true\n".into(),
            files: Vec::new(),
            append: Vec::new(),
            chardev_opts: String::new(),
            device_props: Vec::new(),
            accel: None,
            timeout: Duration::from_secs(180),
            no_reboot: true,
            work_dir: None,
            keep_work_dir: std::env::var_os("GUEST_VM_KEEP").is_some(),
        }
    }

    /// The QEMU + kernel stack (default: [`StackInstall::from_env`], i.e. `$GUEST_STACK` with
    /// the `$GUEST_QEMU` / `$GUEST_KERNEL` overrides; a stack named here ignores those).
    pub fn stack(mut self, stack: Stack) -> Self {
        self.stack = Some(stack);
        self
    }

    /// Guest kernel (default: the stack's).
    pub fn kernel(mut self, kernel: Kernel) -> Self {
        self.kernel = Some(kernel);
        self
    }

    /// Base initramfs (default: [`Initramfs::cached_for`] the kernel).
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

    /// Extra `vhost-user-fs-pci` properties, comma-separated `key=value` (e.g.
    /// `num-request-queues=2`, which needs the [`Stack::Backports`] QEMU); added after
    /// `vmm_args::qemu::fs_device`'s own. Repeated calls accumulate.
    pub fn device_props(mut self, props: impl Into<String>) -> Self {
        self.device_props.push(props.into());
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
        let stack = match self.stack {
            Some(s) => s.install()?,
            None => StackInstall::from_env()?,
        };
        let kernel = match (&self.kernel, &self.initramfs) {
            (Some(k), _) => k.clone(),
            (None, Some(i)) => i.kernel().clone(),
            (None, None) => stack.kernel.clone(),
        };
        let initramfs = match self.initramfs.clone() {
            Some(i) => i,
            None => Initramfs::cached_for(&kernel)?,
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
                    "vhost-user socket {} does not exist (start the daemon first)",
                    s.display()
                )));
            }
        }
        let accel = match self.accel {
            Some(a) => a,
            None => Accel::from_env()?,
        };
        let accel = match accel {
            Accel::Auto if probe_kvm(&stack) => Accel::Kvm,
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
        let mut cmd = stack.qemu_command();
        cmd.args(["-nodefaults", "-display", "none"]);
        if self.no_reboot {
            cmd.arg("-no-reboot");
        }
        match accel {
            Accel::Kvm => cmd.args(["-accel", "kvm", "-cpu", "host"]),
            _ => cmd.args(["-accel", "tcg,thread=multi", "-cpu", "max"]),
        };
        cmd.args(["-smp", &self.smp.to_string(), "-m", &format!("{mem}M")]);
        cmd.args(vmm_args::qemu::shared_memory(mem));
        if let Some(socket) = &self.socket {
            let mut dev = vmm_args::qemu::fs_device(&vmm_args::qemu::FsDevice {
                chardev_id: "vufs0",
                socket,
                tag: &self.tag,
                queue_size: self.queue_size.into(),
                chardev_opts: &self.chardev_opts,
            });
            let device = dev
                .iter_mut()
                .find(|a| a.starts_with("vhost-user-fs-pci,"))
                .ok_or_else(|| Error::Setup("vmm-args gave no vhost-user-fs-pci device".into()))?;
            for p in &self.device_props {
                device.push(',');
                device.push_str(p.trim_matches(','));
            }
            cmd.args(dev);
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
        let stderr = fs::File::create(&stderr_path)
            .map_err(Error::io(format!("creating {}", stderr_path.display())))?;
        cmd.stdin(Stdio::null())
            .stdout(stderr.try_clone().map_err(Error::io("dup"))?)
            .stderr(stderr);
        log::debug!("guest-vm: {cmd:?}");
        let started = Instant::now();
        let child = cmd
            .spawn()
            .map_err(Error::io(format!("starting {}", stack.qemu.display())))?;
        Ok(Vm {
            stack: stack.stack,
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
