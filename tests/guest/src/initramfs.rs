//! Building (and caching) the base initramfs.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{BufWriter, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::cpio::CpioWriter;
use crate::error::{Error, Result};
use crate::stack::StackInstall;

pub(crate) mod host;

pub use crate::kernel::Kernel;
pub use host::find_kernel;
use host::*;

/// Bump when the archive layout changes so stale caches are not reused.
const FORMAT_VERSION: &str = "guest-vm-initramfs-v1";
const INIT_SH: &str = include_str!("init.sh");
const GUEST_SIGNAL_SH: &str = include_str!("guest-signal.sh");
/// Modules loaded by default; their dependencies are resolved from modules.dep.
pub(crate) const DEFAULT_MODULES: &[&str] = &["virtio_pci", "virtiofs"];

fn missing(what: impl Into<String>, package: &'static str, detail: impl Into<String>) -> Error {
    Error::MissingPackage {
        what: what.into(),
        package,
        detail: detail.into(),
    }
}

/// Where a host path lives in the archive: parent directory canonicalized on
/// the host (merged-/usr: `/lib/x/libc.so.6` -> `/usr/lib/x/libc.so.6`), file
/// name kept. The archive mirrors the host's top-level symlinks, so both
/// spellings resolve in the guest.
fn archive_path(p: &Path) -> String {
    let parent = p.parent().and_then(|d| fs::canonicalize(d).ok());
    match (parent, p.file_name()) {
        (Some(d), Some(n)) => d.join(n).to_string_lossy().into_owned(),
        _ => p.to_string_lossy().into_owned(),
    }
}

#[derive(Debug, Clone)]
enum Entry {
    Dir,
    HostFile { src: PathBuf, perm: u32 },
    Data { data: Vec<u8>, perm: u32 },
    Symlink(String),
    CharDev(u32, u32),
}

/// A word-at-a-time FNV-style 64-bit hash; only used as a cache key.
#[derive(Debug)]
struct KeyHash(u64, u64);

impl KeyHash {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325, 0x9e37_79b9_7f4a_7c15)
    }
    fn update(&mut self, data: &[u8]) {
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().unwrap());
            self.0 = (self.0 ^ w).wrapping_mul(0x0000_0100_0000_01b3);
            self.1 = (self.1 ^ w.rotate_left(29)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.1 ^= data.len() as u64;
        self.0 = self.0.rotate_left(7) ^ self.1;
    }
    fn hex(&self) -> String {
        format!("{:016x}", self.0 ^ self.1.rotate_left(32))
    }
}

/// The directory caching built initramfs images: `$GUEST_VM_CACHE`, else
/// `$CARGO_TARGET_DIR/guest-cache`, else `<cargo target dir of the running
/// test binary>/guest-cache`, else `<workspace>/target/guest-cache`.
pub(crate) fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("GUEST_VM_CACHE") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(d).join("guest-cache");
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1) {
            if dir.join("CACHEDIR.TAG").is_file() {
                return dir.join("guest-cache");
            }
        }
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/guest-cache")
}

/// A built initramfs (an uncompressed newc cpio archive) for a given kernel.
#[derive(Debug, Clone)]
pub struct Initramfs {
    path: PathBuf,
    kernel: Kernel,
}

impl Initramfs {
    /// The default base initramfs for the kernel of the `$GUEST_STACK` stack
    /// ([`StackInstall::from_env`]), built on first use and cached on disk (see
    /// [`InitramfsBuilder::cache_dir`]) and in-process.
    pub fn cached() -> Result<Initramfs> {
        Initramfs::cached_for(&StackInstall::from_env()?.kernel)
    }

    /// The default base initramfs for `kernel`, cached like [`Initramfs::cached`].
    pub fn cached_for(kernel: &Kernel) -> Result<Initramfs> {
        type Built = std::result::Result<Initramfs, String>;
        static CACHED: Mutex<BTreeMap<String, Built>> = Mutex::new(BTreeMap::new());
        let key = format!("{}\0{}", kernel.path.display(), kernel.modules.display());
        let mut map = CACHED.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key)
            .or_insert_with(|| {
                Initramfs::builder()
                    .kernel(kernel.clone())
                    .build()
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(Error::Setup)
    }

    /// A builder for a custom base initramfs.
    pub fn builder() -> InitramfsBuilder {
        InitramfsBuilder::default()
    }

    /// Wraps an already built archive (it must contain this crate's `/init`).
    pub fn from_path(path: impl Into<PathBuf>, kernel: Kernel) -> Self {
        Self {
            path: path.into(),
            kernel,
        }
    }

    /// Path of the cpio archive.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The kernel whose modules the archive holds.
    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }
}

/// Builds a base initramfs: busybox-static with applet symlinks, fio (and any
/// extra binaries) with all their libraries, the virtio-fs modules in load
/// order and the harness `/init`.
#[derive(Debug, Clone, Default)]
pub struct InitramfsBuilder {
    kernel: Option<Kernel>,
    modules: Vec<String>,
    binaries: Vec<PathBuf>,
    files: Vec<(String, PathBuf)>,
    cache_dir: Option<PathBuf>,
    no_fio: bool,
}

impl InitramfsBuilder {
    /// Use this kernel (default: the `$GUEST_STACK` stack's, [`StackInstall::from_env`]).
    pub fn kernel(mut self, kernel: Kernel) -> Self {
        self.kernel = Some(kernel);
        self
    }

    /// Loads module `name` (and its dependencies) in addition to
    /// `virtio_pci` and `virtiofs`.
    pub fn module(mut self, name: impl Into<String>) -> Self {
        self.modules.push(name.into());
        self
    }

    /// Adds a dynamically or statically linked host binary plus its libraries
    /// at the same absolute path.
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binaries.push(path.into());
        self
    }

    /// Copies host file `src` to `guest_path` in the archive.
    pub fn file(mut self, guest_path: impl Into<String>, src: impl Into<PathBuf>) -> Self {
        self.files.push((guest_path.into(), src.into()));
        self
    }

    /// Leaves fio out (it is included by default).
    pub fn without_fio(mut self) -> Self {
        self.no_fio = true;
        self
    }

    /// Caches under `dir` instead of the default (`$GUEST_VM_CACHE`, else
    /// `$CARGO_TARGET_DIR/guest-cache`, else `<target dir>/guest-cache`).
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Builds the archive, or reuses a cached one with the same inputs (kernel
    /// version, module list, init script and the content of every input file).
    pub fn build(self) -> Result<Initramfs> {
        let kernel = match self.kernel.clone() {
            Some(k) => k,
            None => StackInstall::from_env()?.kernel,
        };
        let entries = self.collect(&kernel)?;

        let mut h = KeyHash::new();
        h.update(FORMAT_VERSION.as_bytes());
        h.update(kernel.version.as_bytes());
        for (name, e) in &entries {
            h.update(name.as_bytes());
            match e {
                Entry::Dir => h.update(b"d"),
                Entry::HostFile { src, perm } => {
                    let data =
                        fs::read(src).map_err(Error::io(format!("reading {}", src.display())))?;
                    h.update(&perm.to_le_bytes());
                    h.update(&data);
                }
                Entry::Data { data, perm } => {
                    h.update(&perm.to_le_bytes());
                    h.update(data);
                }
                Entry::Symlink(t) => h.update(t.as_bytes()),
                Entry::CharDev(a, b) => {
                    h.update(&a.to_le_bytes());
                    h.update(&b.to_le_bytes());
                }
            }
        }
        let dir = self.cache_dir.clone().unwrap_or_else(cache_dir);
        fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        let path = dir.join(format!("initramfs-{}-{}.cpio", kernel.version, h.hex()));
        if path.is_file() {
            log::debug!("guest-vm: reusing cached initramfs {}", path.display());
            return Ok(Initramfs { path, kernel });
        }
        let tmp = dir.join(format!(".initramfs-{}.{}.tmp", std::process::id(), h.hex()));
        let write = || -> Result<()> {
            let f =
                fs::File::create(&tmp).map_err(Error::io(format!("creating {}", tmp.display())))?;
            let mut w = CpioWriter::new(BufWriter::with_capacity(1 << 20, f));
            let ctx = |n: &str| format!("writing {n} into {}", tmp.display());
            for (name, e) in &entries {
                match e {
                    Entry::Dir => w.dir(name, 0o755).map_err(Error::io(ctx(name)))?,
                    Entry::HostFile { src, perm } => {
                        let mut data = Vec::new();
                        fs::File::open(src)
                            .and_then(|mut f| f.read_to_end(&mut data))
                            .map_err(Error::io(format!("reading {}", src.display())))?;
                        w.file(name, *perm, &data).map_err(Error::io(ctx(name)))?
                    }
                    Entry::Data { data, perm } => {
                        w.file(name, *perm, data).map_err(Error::io(ctx(name)))?
                    }
                    Entry::Symlink(t) => w.symlink(name, t).map_err(Error::io(ctx(name)))?,
                    Entry::CharDev(a, b) => w
                        .char_dev(name, 0o600, *a, *b)
                        .map_err(Error::io(ctx(name)))?,
                }
            }
            w.finish().map_err(Error::io(ctx("trailer")))?;
            fs::rename(&tmp, &path).map_err(Error::io(format!("renaming to {}", path.display())))
        };
        let r = write();
        if r.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        r?;
        log::info!("guest-vm: built initramfs {}", path.display());
        Ok(Initramfs { path, kernel })
    }

    fn collect(&self, kernel: &Kernel) -> Result<BTreeMap<String, Entry>> {
        let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
        // Top-level directory symlinks mirrored from the host (merged /usr),
        // e.g. "lib" -> "usr/lib". Names are rewritten through them so no
        // entry is created through a (possibly still dangling) symlink.
        let mut links: HashMap<String, String> = HashMap::new();
        for top in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
            let p = Path::new("/").join(top);
            if let Ok(t) = fs::read_link(&p) {
                let t = t.to_string_lossy().trim_start_matches('/').to_string();
                if !t.contains('/') || t.starts_with("usr/") {
                    links.insert(top.to_string(), t);
                }
            }
        }
        for (top, target) in &links {
            entries.insert(top.clone(), Entry::Symlink(target.clone()));
        }
        let add = |entries: &mut BTreeMap<String, Entry>, name: &str, e: Entry| {
            let mut name = name.trim_start_matches('/').to_string();
            if let Some((first, rest)) = name.split_once('/') {
                if let Some(t) = links.get(first) {
                    name = format!("{t}/{rest}");
                }
            }
            let mut anc = Path::new(&name).parent();
            while let Some(a) = anc {
                let s = a.to_string_lossy();
                if s.is_empty() {
                    break;
                }
                entries.entry(s.into_owned()).or_insert(Entry::Dir);
                anc = a.parent();
            }
            entries.insert(name, e);
        };

        for d in [
            "proc",
            "sys",
            "dev",
            "tmp",
            "run",
            "mnt",
            "root",
            "etc/guest-vm",
        ] {
            add(&mut entries, d, Entry::Dir);
        }
        add(&mut entries, "dev/console", Entry::CharDev(5, 1));
        add(&mut entries, "dev/null", Entry::CharDev(1, 3));

        // busybox-static and its applets.
        let bb = ["/usr/bin/busybox", "/bin/busybox"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or_else(|| missing("busybox", "busybox-static", "no /usr/bin/busybox"))?;
        if elf_is_dynamic(&bb)? {
            return Err(missing(
                "a statically linked busybox",
                "busybox-static",
                format!("{} is dynamically linked", bb.display()),
            ));
        }
        let bb_in = archive_path(&bb);
        add(
            &mut entries,
            &bb_in,
            Entry::HostFile {
                src: fs::canonicalize(&bb).map_err(Error::io("resolving busybox"))?,
                perm: 0o755,
            },
        );
        let list = Command::new(&bb)
            .arg("--list-full")
            .output()
            .map_err(Error::io(format!("running {} --list-full", bb.display())))?;
        if !list.status.success() {
            return Err(Error::Setup(format!("{} --list-full failed", bb.display())));
        }
        let bb_target = format!("/{}", bb_in.trim_start_matches('/'));
        let mut applets = Vec::new();
        for l in String::from_utf8_lossy(&list.stdout).lines() {
            let l = l.trim();
            if l.is_empty() || l.ends_with("/busybox") {
                continue;
            }
            applets.push(archive_path(&Path::new("/").join(l)));
        }
        if !applets.iter().any(|a| a.ends_with("/sh")) {
            return Err(Error::Setup(format!("{} has no sh applet", bb.display())));
        }

        // Binaries with their libraries.
        let mut bins = self.binaries.clone();
        if !self.no_fio {
            let fio = PathBuf::from("/usr/bin/fio");
            if !fio.is_file() {
                return Err(missing("/usr/bin/fio", "fio", "file not found"));
            }
            bins.insert(0, fio);
        }
        for b in &bins {
            let real =
                fs::canonicalize(b).map_err(Error::io(format!("resolving {}", b.display())))?;
            add(
                &mut entries,
                &archive_path(b),
                Entry::HostFile {
                    src: real,
                    perm: 0o755,
                },
            );
            for lib in ldd_libs(b)? {
                let real = fs::canonicalize(&lib)
                    .map_err(Error::io(format!("resolving {}", lib.display())))?;
                add(
                    &mut entries,
                    &archive_path(&lib),
                    Entry::HostFile {
                        src: real,
                        perm: 0o755,
                    },
                );
            }
        }
        for (guest, src) in &self.files {
            let real =
                fs::canonicalize(src).map_err(Error::io(format!("resolving {}", src.display())))?;
            let perm = fs::metadata(&real)
                .map_err(Error::io(format!("stat {}", real.display())))?
                .permissions()
                .mode()
                & 0o7777;
            add(&mut entries, guest, Entry::HostFile { src: real, perm });
        }

        // Applet symlinks last, never replacing a real file.
        for a in applets {
            let key = a.trim_start_matches('/').to_string();
            if !entries.contains_key(&key) {
                add(&mut entries, &key, Entry::Symlink(bb_target.clone()));
            }
        }

        // Kernel modules in dependency order.
        let moddir = &kernel.modules;
        let mut wanted: Vec<String> = DEFAULT_MODULES.iter().map(|s| s.to_string()).collect();
        wanted.extend(self.modules.iter().cloned());
        let mut list = String::new();
        for rel in resolve_modules(moddir, &wanted)? {
            let host = moddir.join(&rel);
            let data = read_module(&host)?;
            let plain = rel
                .trim_end_matches(".xz")
                .trim_end_matches(".zst")
                .trim_end_matches(".gz");
            let guest = archive_path(&Path::new("/lib/modules").join(&kernel.version).join(plain));
            list.push_str(&guest);
            list.push('\n');
            add(&mut entries, &guest, Entry::Data { data, perm: 0o644 });
        }
        add(
            &mut entries,
            "etc/guest-vm/modules",
            Entry::Data {
                data: list.into_bytes(),
                perm: 0o644,
            },
        );
        add(
            &mut entries,
            "init",
            Entry::Data {
                data: INIT_SH.as_bytes().to_vec(),
                perm: 0o755,
            },
        );
        add(
            &mut entries,
            &archive_path(Path::new("/usr/bin/guest-signal")),
            Entry::Data {
                data: GUEST_SIGNAL_SH.as_bytes().to_vec(),
                perm: 0o755,
            },
        );
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order() {
        let mut v = vec![
            "6.10.0-1-cloud-amd64",
            "6.1.0-56-cloud-amd64",
            "6.1.0-9-cloud-amd64",
        ];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            v,
            [
                "6.1.0-9-cloud-amd64",
                "6.1.0-56-cloud-amd64",
                "6.10.0-1-cloud-amd64"
            ]
        );
    }

    #[test]
    fn modules_resolve_in_dependency_order() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("modules.dep"),
            "kernel/fs/fuse/fuse.ko:\n\
             kernel/fs/fuse/virtiofs.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko kernel/fs/fuse/fuse.ko\n\
             kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n\
             kernel/drivers/virtio/virtio_ring.ko:\n\
             kernel/drivers/virtio/virtio_pci_modern_dev.ko.zst:\n\
             kernel/drivers/virtio/virtio_pci_legacy_dev.ko:\n\
             kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko.zst kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n",
        )
        .unwrap();
        let order = resolve_modules(dir.path(), &["virtio_pci".into(), "virtiofs".into()]).unwrap();
        let names: Vec<&str> = order
            .iter()
            .map(|p| p.rsplit('/').next().unwrap().split(".ko").next().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "virtio_pci_legacy_dev",
                "virtio_pci_modern_dev",
                "virtio_ring",
                "virtio",
                "virtio_pci",
                "fuse",
                "virtiofs"
            ]
        );
        assert!(resolve_modules(dir.path(), &["nope".into()]).is_err());
    }

    #[test]
    fn host_modules_resolve() {
        let k = find_kernel().expect("guest kernel");
        let order = resolve_modules(
            &Path::new("/lib/modules").join(&k.version),
            &["virtio_pci".into(), "virtiofs".into()],
        )
        .unwrap();
        assert!(order.last().unwrap().contains("virtiofs.ko"), "{order:?}");
    }

    #[test]
    fn fio_libraries_are_listed() {
        let libs = ldd_libs(Path::new("/usr/bin/fio")).expect("fio installed (package fio)");
        assert!(
            libs.iter()
                .any(|l| l.to_string_lossy().contains("ld-linux")),
            "{libs:?}"
        );
        assert!(
            libs.iter().any(|l| l.to_string_lossy().contains("libc.so")),
            "{libs:?}"
        );
    }
}

#[cfg(test)]
mod message_tests {
    use super::*;

    #[test]
    fn missing_package_message_names_the_package() {
        let e = missing("/usr/bin/fio", "fio", "file not found").to_string();
        assert!(e.contains("apt-get install -y fio"), "{e}");
        assert!(e.contains("/usr/bin/fio"), "{e}");
    }

    #[test]
    fn cold_build_into_fresh_cache() {
        // Debian 12's kernel, whose virtio-fs is a module (whatever `$GUEST_STACK` says; the
        // backports kernel, with it built in, has its own test).
        let kernel = crate::Stack::Debian12.install().unwrap().kernel;
        let dir = tempfile::tempdir().unwrap();
        let t = std::time::Instant::now();
        let a = Initramfs::builder()
            .kernel(kernel.clone())
            .cache_dir(dir.path())
            .build()
            .unwrap();
        let cold = t.elapsed();
        let t = std::time::Instant::now();
        let b = Initramfs::builder()
            .kernel(kernel)
            .cache_dir(dir.path())
            .build()
            .unwrap();
        eprintln!("cold build {cold:?}, cached lookup {:?}", t.elapsed());
        assert_eq!(a.path(), b.path());
        let listing = std::process::Command::new("cpio")
            .args(["-t", "--quiet", "-F"])
            .arg(a.path())
            .output()
            .expect("cpio (package cpio)");
        let l = String::from_utf8_lossy(&listing.stdout);
        for want in [
            "init",
            "usr/bin/fio",
            "usr/bin/busybox",
            "usr/bin/sh",
            "virtiofs.ko",
            "ld-linux-x86-64.so.2",
            "etc/guest-vm/modules",
        ] {
            assert!(
                l.lines().any(|x| x.ends_with(want)),
                "{want} missing from archive"
            );
        }
    }
}
