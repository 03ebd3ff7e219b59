//! The QEMU + guest kernel pair a guest boots on: Debian 12's system QEMU 7.2 with its Linux 6.1
//! cloud kernel, or bookworm-backports' QEMU 10 with its Linux 6.12 cloud kernel, unpacked into
//! a cache folder by `scripts/backports-stack.sh` (which `scripts/test.sh` runs).
//!
//! A run picks its stack with [`crate::GuestRun::stack`], else `$GUEST_STACK`
//! ([`Stack::from_env`]). `$GUEST_QEMU` and `$GUEST_KERNEL` (see [`crate::find_kernel`])
//! override the QEMU binary and kernel of the stack chosen by `$GUEST_STACK`, never of one a
//! test names itself. A stack that is not installed is a loud [`Error::StackMissing`].

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::initramfs::host::find_kernel;
use crate::kernel::Kernel;

/// Which QEMU and guest kernel to boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stack {
    /// Debian 12's `qemu-system-x86` (7.2) and `linux-image-cloud-amd64` (6.1, modular virtio).
    Debian12,
    /// bookworm-backports' QEMU (10.x, firmware under its own `usr/share/qemu`) and cloud kernel
    /// (6.12.x, virtio-pci and virtiofs built in), whatever versions were current at install.
    Backports,
}

impl fmt::Display for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Stack {
    /// Both stacks, Debian 12's first.
    pub const ALL: [Stack; 2] = [Stack::Debian12, Stack::Backports];

    /// The name `$GUEST_STACK` takes: `debian12` or `backports`.
    pub fn name(self) -> &'static str {
        match self {
            Stack::Debian12 => "debian12",
            Stack::Backports => "backports",
        }
    }

    /// Parses a [`name`](Self::name).
    pub fn parse(s: &str) -> Result<Stack> {
        match s {
            "debian12" => Ok(Stack::Debian12),
            "backports" => Ok(Stack::Backports),
            o => Err(Error::Setup(format!(
                "GUEST_STACK={o}: expected debian12 or backports"
            ))),
        }
    }

    /// From `$GUEST_STACK`; default [`Stack::Debian12`].
    pub fn from_env() -> Result<Stack> {
        match std::env::var("GUEST_STACK").as_deref() {
            Err(_) | Ok("") => Ok(Stack::Debian12),
            Ok(s) => Stack::parse(s),
        }
    }

    /// Where this stack is installed (QEMU, firmware, kernel), resolved once per process.
    /// `env_overrides`: apply `$GUEST_QEMU` / `$GUEST_KERNEL` (only for the `$GUEST_STACK`
    /// choice).
    pub(crate) fn install_with(self, env_overrides: bool) -> Result<StackInstall> {
        type Cell = OnceLock<std::result::Result<StackInstall, String>>;
        static CELLS: [[Cell; 2]; 2] = [
            [OnceLock::new(), OnceLock::new()],
            [OnceLock::new(), OnceLock::new()],
        ];
        let cell = &CELLS[self as usize][env_overrides as usize];
        cell.get_or_init(|| self.locate(env_overrides).map_err(|e| e.to_string()))
            .clone()
            .map_err(|e| Error::StackMissing {
                stack: self.name(),
                detail: e,
            })
    }

    /// Where this stack is installed, without the environment's overrides.
    pub fn install(self) -> Result<StackInstall> {
        self.install_with(false)
    }

    fn locate(self, env_overrides: bool) -> Result<StackInstall> {
        let mut s = match self {
            Stack::Debian12 => {
                let qemu = PathBuf::from("/usr/bin/qemu-system-x86_64");
                if !qemu.is_file() {
                    return Err(Error::MissingPackage {
                        what: qemu.display().to_string(),
                        package: "qemu-system-x86",
                        detail: "file not found".into(),
                    });
                }
                StackInstall {
                    stack: self,
                    qemu,
                    data_dirs: Vec::new(),
                    kernel: find_kernel()?,
                }
            }
            Stack::Backports => backports_in(&stacks_dir())?,
        };
        if env_overrides {
            if let Some(q) = std::env::var_os("GUEST_QEMU") {
                s.qemu = PathBuf::from(q);
            }
            if std::env::var_os("GUEST_KERNEL").is_some() {
                s.kernel = find_kernel()?;
            }
        }
        Ok(s)
    }
}

/// An installed [`Stack`]: the QEMU binary, its firmware folders and the guest kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackInstall {
    /// Which stack this is.
    pub stack: Stack,
    /// The `qemu-system-x86_64` binary.
    pub qemu: PathBuf,
    /// Firmware/data folders passed as `-L` (empty for the system QEMU).
    pub data_dirs: Vec<PathBuf>,
    /// The guest kernel and where its modules live.
    pub kernel: Kernel,
}

impl StackInstall {
    /// The stack `$GUEST_STACK` names, with the `$GUEST_QEMU` / `$GUEST_KERNEL` overrides.
    pub fn from_env() -> Result<StackInstall> {
        Stack::from_env()?.install_with(true)
    }

    /// The `-L DIR` arguments every QEMU command line of this stack needs.
    pub fn qemu_data_args(&self) -> Vec<String> {
        self.data_dirs
            .iter()
            .flat_map(|d| ["-L".to_string(), d.display().to_string()])
            .collect()
    }

    /// A command for this stack's QEMU, with its `-L` arguments already added.
    pub fn qemu_command(&self) -> Command {
        let mut c = Command::new(&self.qemu);
        c.args(self.qemu_data_args());
        c
    }

    /// The first line of `qemu --version`.
    pub fn qemu_version(&self) -> Result<String> {
        let out = self
            .qemu_command()
            .arg("--version")
            .output()
            .map_err(Error::io(format!(
                "running {} --version",
                self.qemu.display()
            )))?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string())
    }
}

/// The stacks folder: `$VUFS_STACKS_DIR`, else `/var/cache/vufs-stacks` as root, else
/// `~/.cache/vufs-stacks` (as in `scripts/backports-stack.sh`).
pub fn stacks_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("VUFS_STACKS_DIR") {
        return PathBuf::from(d);
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/cache/vufs-stacks");
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    cache.join("vufs-stacks")
}

/// Reads `KEY='value'` lines (the format `scripts/backports-stack.sh` writes).
pub(crate) fn parse_env_file(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(v);
            (k.trim().to_string(), v.to_string())
        })
        .collect()
}

fn backports_in(stacks: &std::path::Path) -> Result<StackInstall> {
    let file = stacks.join("backports/stack.env");
    let text = fs::read_to_string(&file).map_err(|e| {
        Error::Setup(format!(
            "{} is unreadable ({e}): the backports stack is not installed; run \
             scripts/backports-stack.sh (scripts/test.sh does)",
            file.display()
        ))
    })?;
    let env = parse_env_file(&text);
    let get = |k: &str| {
        env.get(k).cloned().ok_or_else(|| {
            Error::Setup(format!(
                "{} has no {k}; rerun scripts/backports-stack.sh",
                file.display()
            ))
        })
    };
    let qemu = PathBuf::from(get("QEMU")?);
    let kernel_path = PathBuf::from(get("KERNEL")?);
    let modules = PathBuf::from(get("KERNEL_MODULES")?);
    let data_dirs: Vec<PathBuf> = get("QEMU_DATA_DIRS")?
        .split(':')
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .collect();
    for p in [&qemu, &kernel_path]
        .into_iter()
        .chain(data_dirs.iter())
        .chain([&modules])
    {
        if !p.exists() {
            return Err(Error::Setup(format!(
                "{} (named in {}) is missing; rerun scripts/backports-stack.sh",
                p.display(),
                file.display()
            )));
        }
    }
    Ok(StackInstall {
        stack: Stack::Backports,
        qemu,
        data_dirs,
        kernel: Kernel::new(kernel_path, get("KERNEL_VERSION")?).with_modules_dir(modules),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_parses() {
        let m = parse_env_file("# c\nQEMU='/a b/q'\nKERNEL_VERSION=6.12.1\n");
        assert_eq!(m["QEMU"], "/a b/q");
        assert_eq!(m["KERNEL_VERSION"], "6.12.1");
        assert!(!m.contains_key("# c"));
    }

    #[test]
    fn missing_backports_stack_says_how_to_install_it() {
        let dir = tempfile::tempdir().unwrap();
        let e = backports_in(dir.path()).unwrap_err().to_string();
        assert!(e.contains("scripts/backports-stack.sh"), "{e}");
        fs::create_dir_all(dir.path().join("backports")).unwrap();
        fs::write(
            dir.path().join("backports/stack.env"),
            "QEMU='/nonexistent/qemu'\nKERNEL='/nonexistent/vmlinuz-x'\nKERNEL_VERSION='x'\n\
             KERNEL_MODULES='/nonexistent'\nQEMU_DATA_DIRS='/nonexistent'\n",
        )
        .unwrap();
        let e = backports_in(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("/nonexistent/qemu") && e.contains("is missing"),
            "{e}"
        );
    }

    #[test]
    fn names_round_trip() {
        for s in Stack::ALL {
            assert_eq!(Stack::parse(s.name()).unwrap(), s);
        }
        assert!(Stack::parse("debian").is_err());
    }
}
