//! What the host provides the initramfs: its newest cloud kernel, the libraries a binary
//! links, the kernel modules a module needs (from `modules.dep`), a module's bytes.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{missing, Kernel};
use crate::error::{Error, Result};

/// Compares version-like strings, numeric runs compared as numbers.
pub(super) fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut digit = false;
        for c in s.chars() {
            if c.is_ascii_digit() != digit && !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            digit = c.is_ascii_digit();
            cur.push(c);
        }
        out.push(cur);
        out.into_iter()
            .map(|c| (c.parse().unwrap_or(u64::MAX), c))
            .collect()
    }
    chunks(a).cmp(&chunks(b))
}

/// Finds the guest kernel: `$GUEST_KERNEL` (version from `$GUEST_KERNEL_VERSION`
/// or the file name `vmlinuz-<version>`, modules in `$GUEST_KERNEL_MODULES` or
/// `/lib/modules/<version>`), else the newest
/// `/boot/vmlinuz-*-cloud-amd64` whose `/lib/modules/<version>/modules.dep` exists.
pub fn find_kernel() -> Result<Kernel> {
    if let Some(p) = std::env::var_os("GUEST_KERNEL") {
        let path = PathBuf::from(p);
        let version = match std::env::var("GUEST_KERNEL_VERSION") {
            Ok(v) => v,
            Err(_) => path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("vmlinuz-"))
                .ok_or_else(|| {
                    Error::Setup(format!(
                        "GUEST_KERNEL={} is not named vmlinuz-<version>; set GUEST_KERNEL_VERSION",
                        path.display()
                    ))
                })?
                .to_string(),
        };
        if !path.is_file() {
            return Err(Error::Setup(format!(
                "GUEST_KERNEL={} does not exist",
                path.display()
            )));
        }
        let mut k = Kernel::new(path, version);
        if let Some(m) = std::env::var_os("GUEST_KERNEL_MODULES") {
            k = k.with_modules_dir(m);
        }
        return Ok(k);
    }
    let mut found: Vec<String> = fs::read_dir("/boot")
        .map_err(Error::io("reading /boot"))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| {
            n.strip_prefix("vmlinuz-")
                .filter(|v| v.ends_with("-cloud-amd64"))
                .map(str::to_string)
        })
        .filter(|v| {
            Path::new("/lib/modules")
                .join(v)
                .join("modules.dep")
                .is_file()
        })
        .collect();
    found.sort_by(|a, b| natural_cmp(a, b));
    let version = found.pop().ok_or_else(|| {
        missing(
            "guest kernel /boot/vmlinuz-*-cloud-amd64 (with /lib/modules/<version>/modules.dep)",
            "linux-image-cloud-amd64",
            "no matching kernel in /boot",
        )
    })?;
    let path = PathBuf::from(format!("/boot/vmlinuz-{version}"));
    fs::File::open(&path).map_err(Error::io(format!(
        "kernel {} is not readable (run as root?)",
        path.display()
    )))?;
    Ok(Kernel::new(path, version))
}

/// True if the ELF file at `path` has a `PT_INTERP` header (is dynamically linked).
pub(super) fn elf_is_dynamic(path: &Path) -> Result<bool> {
    let data = fs::read(path).map_err(Error::io(format!("reading {}", path.display())))?;
    let bad = || Error::Setup(format!("{} is not a 64-bit ELF file", path.display()));
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 {
        return Err(bad());
    }
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(data[32..40].try_into().unwrap()) as usize;
    let phentsize = u16_at(54);
    let phnum = u16_at(56);
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        if o + 4 > data.len() {
            return Err(bad());
        }
        if u32::from_le_bytes(data[o..o + 4].try_into().unwrap()) == 3 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Absolute paths of every library `ldd` lists for `bin` (loader included).
pub(super) fn ldd_libs(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .map_err(Error::io("running ldd (package libc-bin)"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("not a dynamic executable") || text.contains("statically linked") {
        return Ok(Vec::new());
    }
    if !out.status.success() {
        return Err(Error::Setup(format!(
            "ldd {} failed: {}{}",
            bin.display(),
            text,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        if line.contains("not found") {
            return Err(Error::Setup(format!(
                "ldd {}: a library is not found: {}",
                bin.display(),
                line.trim()
            )));
        }
        // "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        if let Some(p) = line.split_whitespace().find(|t| t.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    if libs.is_empty() {
        return Err(Error::Setup(format!(
            "ldd {} listed no libraries: {text}",
            bin.display()
        )));
    }
    Ok(libs)
}

/// Module resolution from `modules.dep`: returns relative paths in load order. Modules the
/// kernel has built in (`modules.builtin`) need nothing; `modules.dep` may then be absent (a
/// kernel package unpacked without `depmod`, whose virtio-fs is built in).
pub(super) fn resolve_modules(moddir: &Path, wanted: &[String]) -> Result<Vec<String>> {
    let dep_path = moddir.join("modules.dep");
    let dep = match fs::read_to_string(&dep_path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io(format!("reading {}", dep_path.display()))(e)),
    };
    fn mod_name(rel: &str) -> String {
        let base = rel.rsplit('/').next().unwrap_or(rel);
        let base = base.split(".ko").next().unwrap_or(base);
        base.replace('-', "_")
    }
    let mut table: HashMap<String, (String, Vec<String>)> = HashMap::new();
    for line in dep.lines() {
        let Some((m, deps)) = line.split_once(':') else {
            continue;
        };
        let deps = deps.split_whitespace().map(str::to_string).collect();
        table.insert(mod_name(m), (m.to_string(), deps));
    }
    let builtin: HashSet<String> = fs::read_to_string(moddir.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .map(mod_name)
        .collect();
    let by_path: HashMap<String, String> = table
        .iter()
        .map(|(n, (p, _))| (p.clone(), n.clone()))
        .collect();

    fn visit(
        name: &str,
        table: &HashMap<String, (String, Vec<String>)>,
        by_path: &HashMap<String, String>,
        done: &mut HashSet<String>,
        order: &mut Vec<String>,
        depth: usize,
    ) -> Result<()> {
        if done.contains(name) {
            return Ok(());
        }
        if depth > 64 {
            return Err(Error::Setup(format!("module dependency loop at {name}")));
        }
        let (path, deps) = table
            .get(name)
            .ok_or_else(|| Error::Setup(format!("module {name} missing from modules.dep")))?;
        for d in deps {
            let dn = by_path.get(d).cloned().unwrap_or_else(|| d.clone());
            visit(&dn, table, by_path, done, order, depth + 1)?;
        }
        done.insert(name.to_string());
        order.push(path.clone());
        Ok(())
    }

    let mut done = HashSet::new();
    let mut order = Vec::new();
    for w in wanted {
        let n = w.replace('-', "_");
        if builtin.contains(&n) && !table.contains_key(&n) {
            continue;
        }
        if !table.contains_key(&n) {
            if dep.is_empty() {
                return Err(missing(
                    format!("kernel module {w} ({} is absent)", dep_path.display()),
                    "linux-image-cloud-amd64",
                    "the guest kernel's modules are not installed and it is not built in",
                ));
            }
            return Err(Error::Setup(format!(
                "kernel module {w} is neither in {} nor built in",
                dep_path.display()
            )));
        }
        visit(&n, &table, &by_path, &mut done, &mut order, 0)?;
    }
    Ok(order)
}

/// Reads a module, decompressing `.ko.xz` / `.ko.zst` / `.ko.gz` on the host.
pub(super) fn read_module(path: &Path) -> Result<Vec<u8>> {
    let s = path.to_string_lossy();
    let (tool, package) = if s.ends_with(".ko") {
        return fs::read(path).map_err(Error::io(format!("reading {s}")));
    } else if s.ends_with(".xz") {
        ("xz", "xz-utils")
    } else if s.ends_with(".zst") {
        ("zstd", "zstd")
    } else if s.ends_with(".gz") {
        ("gzip", "gzip")
    } else {
        return Err(Error::Setup(format!("unknown module compression: {s}")));
    };
    let out = Command::new(tool)
        .arg("-dc")
        .arg(path)
        .output()
        .map_err(|e| {
            missing(
                tool,
                package,
                format!("cannot run {tool} to decompress {s}: {e}"),
            )
        })?;
    if !out.status.success() {
        return Err(Error::Setup(format!(
            "{tool} -dc {s} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Initramfs, Stack};

    #[test]
    fn built_in_modules_need_no_modules_dep() {
        let dir = tempfile::tempdir().unwrap();
        let wanted = ["virtio_pci".to_string(), "virtiofs".to_string()];
        // A kernel package unpacked without depmod: only modules.builtin.
        fs::write(
            dir.path().join("modules.builtin"),
            "kernel/drivers/virtio/virtio_pci.ko\nkernel/fs/fuse/virtiofs.ko\n",
        )
        .unwrap();
        assert!(resolve_modules(dir.path(), &wanted).unwrap().is_empty());
        // Not built in and no modules.dep: a loud error naming the module and the package.
        let e = resolve_modules(dir.path(), &["vsock".into()])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("vsock") && e.contains("linux-image-cloud-amd64"),
            "{e}"
        );
    }

    /// The backports kernel has virtio-fs built in: its initramfs carries no module and boots
    /// with an empty load list (the harness fails loudly if the stack is not installed).
    #[test]
    fn backports_initramfs_has_no_modules() {
        let stack = Stack::Backports.install().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let i = Initramfs::builder()
            .kernel(stack.kernel.clone())
            .cache_dir(dir.path())
            .build()
            .unwrap();
        let listing = Command::new("cpio")
            .args(["-t", "--quiet", "-F"])
            .arg(i.path())
            .output()
            .expect("cpio (package cpio)");
        let l = String::from_utf8_lossy(&listing.stdout);
        assert!(
            !l.contains(".ko"),
            "modules in a built-in kernel's initramfs"
        );
        assert!(l.lines().any(|x| x == "etc/guest-vm/modules"), "{l}");
    }
}
