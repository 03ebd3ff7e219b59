//! How the filesystem's settings ([`Share`], from the daemon's configuration) map onto the
//! passthrough library's own.

use std::io;
use std::path::Path;
use std::time::Duration;

use fuse_backend_rs::passthrough::{CachePolicy, Config as PtConfig};

use crate::config::{CacheMode, InodeFileHandles, Share};

/// Entry/attribute timeout for a cache mode (as upstream virtiofsd).
pub fn timeout(cache: CacheMode) -> Duration {
    match cache {
        CacheMode::Never => Duration::ZERO,
        CacheMode::Auto => Duration::from_secs(1),
        CacheMode::Metadata | CacheMode::Always => Duration::from_secs(86400),
    }
}

/// The passthrough library's configuration for `opts`, rooted at `root_dir` (`sandboxed`: the
/// daemon runs in a namespace or chroot sandbox).
///
/// `check_names: false` turns off the library's own name validation too; only tests use it,
/// to prove the hostile-name tests catch a daemon without checks.
pub fn passthrough_config(
    opts: &Share,
    sandboxed: bool,
    check_names: bool,
    root_dir: &Path,
) -> io::Result<PtConfig> {
    let t = timeout(opts.cache);
    Ok(PtConfig {
        root_dir: root_dir.to_string_lossy().into_owned(),
        cache_policy: match opts.cache {
            CacheMode::Never => CachePolicy::Never,
            CacheMode::Metadata => CachePolicy::Metadata,
            CacheMode::Auto => CachePolicy::Auto,
            CacheMode::Always => CachePolicy::Always,
        },
        attr_timeout: t,
        entry_timeout: t,
        xattr: opts.xattr,
        writeback: opts.writeback,
        allow_direct_io: opts.allow_direct_io,
        killpriv_v2: opts.killpriv_v2,
        inode_file_handles: use_file_handles(opts.inode_file_handles, sandboxed)?,
        // `do_import: false` makes the library skip its name checks (it assumes a VFS above).
        do_import: check_names,
        ..Default::default()
    })
}

/// Whether to reference inodes by file handles. Opening a handle needs CAP_DAC_READ_SEARCH:
/// `prefer` falls back to O_PATH descriptors without it; `mandatory` refuses to start.
///
/// In a sandbox, file handles are not used: opening one needs the mount's root by a host path
/// the sandbox no longer has.
pub fn use_file_handles(mode: InodeFileHandles, sandboxed: bool) -> io::Result<bool> {
    if sandboxed {
        return match mode {
            InodeFileHandles::Mandatory => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "--inode-file-handles=mandatory needs --sandbox=none",
            )),
            _ => Ok(false),
        };
    }
    const CAP_DAC_READ_SEARCH: u32 = 2;
    let capable = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))?
                .trim()
                .to_owned();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_DAC_READ_SEARCH) != 0);
    match (mode, capable) {
        (InodeFileHandles::Never, _) => Ok(false),
        (_, true) => Ok(true),
        (InodeFileHandles::Prefer, false) => {
            log::info!("no CAP_DAC_READ_SEARCH: inodes are referenced by O_PATH descriptors");
            Ok(false)
        }
        (InodeFileHandles::Mandatory, false) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "--inode-file-handles=mandatory needs CAP_DAC_READ_SEARCH",
        )),
    }
}
