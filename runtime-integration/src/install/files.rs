//! File primitives of the installer: hashes, atomic writes, backups by hard link.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The SHA-256 of `bytes`, lower-case hex.
pub fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// The bytes of `path`, or `None` if it does not exist.
pub fn read_opt(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", path.display()))(e)),
    }
}

/// The SHA-256 of `path`'s bytes, or `None` if it does not exist.
pub fn sha256_of(path: &Path) -> Result<Option<String>> {
    Ok(read_opt(path)?.map(|b| sha256(&b)))
}

/// The temporary name used for writing `dest` inside `dir`.
fn temp_path(dest: &Path, dir: &Path) -> PathBuf {
    let name = dest.file_name().unwrap_or_default().to_string_lossy();
    dir.join(format!(".{name}.virtiofs-sandbox-tmp"))
}

/// Writes `bytes` to `dest` atomically: a temporary file in `tmp_dir` (which must be on the
/// same filesystem, and where nothing reads partial files), synced, then renamed over
/// `dest`, and the directory synced. The file gets `mode`.
pub fn write_atomic(dest: &Path, tmp_dir: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp = temp_path(dest, tmp_dir);
    let ctx = |what: &str| format!("{what} {}", tmp.display());
    let _ = std::fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(Error::io(ctx("creating")))?;
    f.write_all(bytes).map_err(Error::io(ctx("writing")))?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(Error::io(ctx("chmod")))?;
    f.sync_all().map_err(Error::io(ctx("syncing")))?;
    drop(f);
    if let Err(e) = std::fs::rename(&tmp, dest) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(format!(
            "renaming {} to {}",
            tmp.display(),
            dest.display()
        ))(e));
    }
    sync_dir(dest.parent().unwrap_or(Path::new("/")));
    Ok(())
}

/// Best-effort fsync of a directory (makes a rename durable).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Keeps `path`'s current file at `backup`: a hard link (same bytes, mode and owner, and
/// atomic), or a copy where links are not possible. An existing `backup` is replaced.
pub fn backup(path: &Path, backup: &Path) -> Result<()> {
    let _ = std::fs::remove_file(backup);
    if std::fs::hard_link(path, backup).is_ok() {
        sync_dir(backup.parent().unwrap_or(Path::new("/")));
        return Ok(());
    }
    let bytes = std::fs::read(path).map_err(Error::io(format!("reading {}", path.display())))?;
    let mode = std::fs::metadata(path)
        .map_err(Error::io(format!("stat {}", path.display())))?
        .permissions()
        .mode()
        & 0o7777;
    write_atomic(
        backup,
        backup.parent().unwrap_or(Path::new("/")),
        &bytes,
        mode,
    )
}

/// The permission bits of `path`, or `default` when it does not exist.
pub fn mode_or(path: &Path, default: u32) -> u32 {
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(default)
}

/// Moves `from` over `to` atomically (a restore from a backup).
pub fn restore(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(Error::io(format!(
        "restoring {} from {}",
        to.display(),
        from.display()
    )))?;
    sync_dir(to.parent().unwrap_or(Path::new("/")));
    Ok(())
}
