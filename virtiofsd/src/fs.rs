//! The filesystem the guest sees: fuse-backend-rs's passthrough over the shared directory.

use std::io;
use std::time::Duration;

use fuse_backend_rs::passthrough::{CachePolicy, Config as PtConfig, PassthroughFs};

use crate::cli::{CacheMode, Config};

/// The filesystem type served to the guest.
pub type Fs = PassthroughFs<()>;

/// Entry/attribute timeout for a cache mode (as upstream virtiofsd).
pub fn timeout(cache: CacheMode) -> Duration {
    match cache {
        CacheMode::Never => Duration::ZERO,
        CacheMode::Auto => Duration::from_secs(1),
        CacheMode::Metadata | CacheMode::Always => Duration::from_secs(86400),
    }
}

/// Opens the shared directory as a passthrough filesystem.
///
/// `check_names: false` turns off the library's own name validation too; only tests use it,
/// to prove the hostile-name tests catch a daemon without checks.
pub fn open(cfg: &Config, check_names: bool) -> io::Result<Fs> {
    let t = timeout(cfg.cache);
    let pt = PtConfig {
        root_dir: cfg.shared_dir.to_string_lossy().into_owned(),
        cache_policy: match cfg.cache {
            CacheMode::Never => CachePolicy::Never,
            CacheMode::Metadata => CachePolicy::Metadata,
            CacheMode::Auto => CachePolicy::Auto,
            CacheMode::Always => CachePolicy::Always,
        },
        attr_timeout: t,
        entry_timeout: t,
        xattr: cfg.xattr,
        // `do_import: false` makes the library skip its name checks (it assumes a VFS above).
        do_import: check_names,
        ..Default::default()
    };
    let fs = PassthroughFs::new(pt)?;
    fs.import()?;
    Ok(fs)
}
