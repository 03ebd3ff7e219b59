//! VMM arguments that attach the daemon's socket as a virtio-fs device with tag `kataShared`,
//! with the shared memory backend of the VM's size vhost-user needs. The argument strings are
//! the `vmm-args` crate's (shared with the guest test harness); this module picks the VMM,
//! the tag and chardev id, and completes a user's VMM command.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};

/// The guest mount tag Kata uses.
pub const TAG: &str = "kataShared";
/// The QEMU chardev id used for the daemon's socket.
pub const QEMU_CHARDEV_ID: &str = "char-kataShared";
/// Guest RAM when the VMM command gives none.
pub const DEFAULT_MEMORY_MIB: u64 = 1024;

/// A VMM this crate can wire the device into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Vmm {
    /// QEMU (`[hypervisor.qemu]`).
    Qemu,
    /// Cloud Hypervisor (`[hypervisor.clh]`).
    CloudHypervisor,
}

impl Vmm {
    /// The VMM for a configuration's hypervisor section name.
    pub fn from_hypervisor(name: &str) -> Result<Vmm> {
        match name {
            "qemu" => Ok(Vmm::Qemu),
            "clh" | "cloud-hypervisor" => Ok(Vmm::CloudHypervisor),
            o => Err(Error::Vmm(format!(
                "no device wiring for hypervisor {o:?} (supported: qemu, clh)"
            ))),
        }
    }
}

/// What the device arguments need.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeviceSpec {
    /// The daemon's vhost-user socket.
    pub socket: PathBuf,
    /// Virtqueue size.
    pub queue_size: u32,
    /// Request queues (1: Kata's; the daemon serves up to 16).
    pub request_queues: u32,
    /// Guest RAM in MiB (the shared backend's size).
    pub memory_mib: u64,
}

/// The virtio-fs device and shared-memory arguments for `vmm`.
pub fn device_args(vmm: Vmm, spec: &DeviceSpec) -> Vec<String> {
    let mut v = memory_args(vmm, spec.memory_mib);
    v.extend(fs_args(
        vmm,
        &spec.socket,
        spec.queue_size,
        spec.request_queues,
    ));
    v
}

/// Only the shared memory backend arguments.
pub fn memory_args(vmm: Vmm, memory_mib: u64) -> Vec<String> {
    match vmm {
        Vmm::Qemu => vmm_args::qemu::shared_memory(memory_mib),
        Vmm::CloudHypervisor => vmm_args::clh::shared_memory(memory_mib),
    }
}

/// Only the virtio-fs device arguments, with `request_queues` request queues.
pub fn fs_args(vmm: Vmm, socket: &Path, queue_size: u32, request_queues: u32) -> Vec<String> {
    match vmm {
        Vmm::Qemu => vmm_args::qemu::fs_device_with_queues(
            &vmm_args::qemu::FsDevice {
                chardev_id: QEMU_CHARDEV_ID,
                socket,
                tag: TAG,
                queue_size,
                chardev_opts: "",
            },
            request_queues,
        ),
        Vmm::CloudHypervisor => {
            vmm_args::clh::fs_device_with_queues(socket, TAG, queue_size, request_queues)
        }
    }
}

/// Parses a QEMU size (`512`, `512M`, `2G`, `1048576k`; no suffix = MiB, suffixes binary) to MiB.
pub fn parse_qemu_size_mib(s: &str) -> Result<u64> {
    let bad = || Error::Vmm(format!("cannot parse memory size {s:?}"));
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, suffix) = s.split_at(digits_end);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let bytes_per_unit: u64 = match suffix {
        "" | "M" | "m" | "MB" | "MiB" => 1 << 20,
        "G" | "g" | "GB" | "GiB" => 1 << 30,
        "T" | "t" | "TB" | "TiB" => 1 << 40,
        "K" | "k" | "KB" | "KiB" => 1 << 10,
        "B" | "b" => 1,
        _ => return Err(bad()),
    };
    let bytes = n.checked_mul(bytes_per_unit).ok_or_else(bad)?;
    if bytes % (1 << 20) != 0 || bytes == 0 {
        return Err(Error::Vmm(format!(
            "memory size {s:?} is not a positive whole number of MiB"
        )));
    }
    Ok(bytes >> 20)
}

/// The guest RAM of a QEMU command line (`-m 2G`, `-m size=2G,maxmem=...`), if given.
pub fn qemu_memory_mib(args: &[String]) -> Result<Option<u64>> {
    let mut found = None;
    let mut i = 0;
    while i < args.len() {
        if args[i] == "-m" || args[i] == "--m" {
            let v = args
                .get(i + 1)
                .ok_or_else(|| Error::Vmm("-m needs a value".into()))?;
            let first = v.split(',').next().unwrap_or("");
            let size = first.strip_prefix("size=").unwrap_or(first);
            // `-m maxmem=..,size=..` puts size later.
            let size = if size.contains('=') {
                v.split(',')
                    .find_map(|p| p.strip_prefix("size="))
                    .ok_or_else(|| Error::Vmm(format!("-m {v}: no size")))?
            } else {
                size
            };
            found = Some(parse_qemu_size_mib(size)?);
            i += 1;
        }
        i += 1;
    }
    Ok(found)
}

/// Completes a user's VMM command (`args` without the program) with the virtio-fs device and a
/// shared memory backend. For QEMU the RAM size is taken from `-m` (default 1 GiB, then
/// `-m 1024M` is added). For Cloud Hypervisor an existing `--memory` gets `shared=on` (its
/// size is kept), otherwise `--memory size=1024M,shared=on` is added. Returns the full
/// argument list and the memory size used.
pub fn complete_command(
    vmm: Vmm,
    args: &[String],
    socket: &Path,
    queue_size: u32,
    request_queues: u32,
) -> Result<(Vec<String>, u64)> {
    let mut out: Vec<String> = args.to_vec();
    match vmm {
        Vmm::Qemu => {
            if args
                .iter()
                .any(|a| a.contains("vhost-user-fs") || a.starts_with("memory-backend"))
            {
                return Err(Error::Vmm(
                    "the QEMU command already has a vhost-user-fs device or memory backend; \
                     leave both to virtiofs-sandbox"
                        .into(),
                ));
            }
            let mib = match qemu_memory_mib(args)? {
                Some(m) => m,
                None => {
                    out.push("-m".into());
                    out.push(format!("{DEFAULT_MEMORY_MIB}M"));
                    DEFAULT_MEMORY_MIB
                }
            };
            out.extend(device_args(
                vmm,
                &DeviceSpec {
                    socket: socket.to_path_buf(),
                    queue_size,
                    request_queues,
                    memory_mib: mib,
                },
            ));
            Ok((out, mib))
        }
        Vmm::CloudHypervisor => {
            let mut mib = None;
            let mut i = 0;
            while i < out.len() {
                if out[i] == "--memory" {
                    let v = out
                        .get(i + 1)
                        .cloned()
                        .ok_or_else(|| Error::Vmm("--memory needs a value".into()))?;
                    let mut parts: Vec<String> = v
                        .split(',')
                        .filter(|p| !p.starts_with("shared="))
                        .map(str::to_string)
                        .collect();
                    let size = parts
                        .iter()
                        .find_map(|p| p.strip_prefix("size="))
                        .unwrap_or("512M");
                    mib = Some(parse_qemu_size_mib(size)?);
                    parts.push("shared=on".into());
                    out[i + 1] = parts.join(",");
                    i += 1;
                }
                i += 1;
            }
            let mib = match mib {
                Some(m) => m,
                None => {
                    out.extend(memory_args(vmm, DEFAULT_MEMORY_MIB));
                    DEFAULT_MEMORY_MIB
                }
            };
            out.extend(fs_args(vmm, socket, queue_size, request_queues));
            Ok((out, mib))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn qemu_device() {
        let a = device_args(
            Vmm::Qemu,
            &DeviceSpec {
                socket: "/run/v/s.sock".into(),
                queue_size: 1024,
                request_queues: 1,
                memory_mib: 2048,
            },
        );
        assert_eq!(
            a,
            s(&[
                "-object",
                "memory-backend-memfd,id=mem,size=2048M,share=on",
                "-numa",
                "node,memdev=mem",
                "-chardev",
                "socket,id=char-kataShared,path=/run/v/s.sock",
                "-device",
                "vhost-user-fs-pci,chardev=char-kataShared,tag=kataShared,queue-size=1024"
            ])
        );
    }

    #[test]
    fn clh_device() {
        let a = device_args(
            Vmm::CloudHypervisor,
            &DeviceSpec {
                socket: "/s".into(),
                queue_size: 512,
                request_queues: 1,
                memory_mib: 1024,
            },
        );
        assert_eq!(
            a,
            s(&[
                "--memory",
                "size=1024M,shared=on",
                "--fs",
                "tag=kataShared,socket=/s,num_queues=1,queue_size=512"
            ])
        );
    }

    #[test]
    fn request_queues_reach_both_vmms() {
        let spec = DeviceSpec {
            socket: "/s".into(),
            queue_size: 1024,
            request_queues: 2,
            memory_mib: 1024,
        };
        let q = device_args(Vmm::Qemu, &spec);
        assert_eq!(
            q.last().unwrap(),
            "vhost-user-fs-pci,chardev=char-kataShared,tag=kataShared,queue-size=1024,\
             num-request-queues=2"
        );
        let c = device_args(Vmm::CloudHypervisor, &spec);
        assert_eq!(
            c.last().unwrap(),
            "tag=kataShared,socket=/s,num_queues=2,queue_size=1024"
        );
        let (a, _) = complete_command(Vmm::Qemu, &[], Path::new("/s"), 1024, 4).unwrap();
        assert!(
            a.last().unwrap().ends_with(",num-request-queues=4"),
            "{a:?}"
        );
    }

    #[test]
    fn qemu_memory_detection() {
        assert_eq!(qemu_memory_mib(&s(&["-smp", "2"])).unwrap(), None);
        assert_eq!(qemu_memory_mib(&s(&["-m", "512"])).unwrap(), Some(512));
        assert_eq!(qemu_memory_mib(&s(&["-m", "2G"])).unwrap(), Some(2048));
        assert_eq!(
            qemu_memory_mib(&s(&["-m", "size=1024M,slots=2,maxmem=4G"])).unwrap(),
            Some(1024)
        );
        assert_eq!(
            qemu_memory_mib(&s(&["-m", "slots=2,size=3G"])).unwrap(),
            Some(3072)
        );
        assert!(qemu_memory_mib(&s(&["-m", "lots"])).is_err());
        assert!(qemu_memory_mib(&s(&["-m"])).is_err());
    }

    #[test]
    fn complete_qemu() {
        let (a, mib) =
            complete_command(Vmm::Qemu, &s(&["-kernel", "k"]), Path::new("/s"), 1024, 1).unwrap();
        assert_eq!(mib, 1024);
        assert_eq!(&a[..4], &s(&["-kernel", "k", "-m", "1024M"])[..]);
        assert!(a.contains(&"memory-backend-memfd,id=mem,size=1024M,share=on".to_string()));
        let (a, mib) =
            complete_command(Vmm::Qemu, &s(&["-m", "768M"]), Path::new("/s"), 1024, 1).unwrap();
        assert_eq!(mib, 768);
        assert!(a.contains(&"memory-backend-memfd,id=mem,size=768M,share=on".to_string()));
        assert!(complete_command(
            Vmm::Qemu,
            &s(&["-device", "vhost-user-fs-pci"]),
            Path::new("/s"),
            1024,
            1
        )
        .is_err());
    }

    #[test]
    fn complete_clh() {
        let (a, mib) = complete_command(
            Vmm::CloudHypervisor,
            &s(&["--memory", "size=2G,shared=off"]),
            Path::new("/s"),
            1024,
            1,
        )
        .unwrap();
        assert_eq!(mib, 2048);
        assert_eq!(a[1], "size=2G,shared=on");
        let (a, _) = complete_command(
            Vmm::CloudHypervisor,
            &s(&["--cpus", "boot=1"]),
            Path::new("/s"),
            1024,
            1,
        )
        .unwrap();
        assert!(a.contains(&"size=1024M,shared=on".to_string()));
    }

    #[test]
    fn hypervisor_names() {
        assert_eq!(Vmm::from_hypervisor("qemu").unwrap(), Vmm::Qemu);
        assert_eq!(Vmm::from_hypervisor("clh").unwrap(), Vmm::CloudHypervisor);
        assert!(Vmm::from_hypervisor("firecracker").is_err());
    }
}
