//! Safe access to the state directory and the sandbox directories in it.
//!
//! The state directory must be a real directory (not a symbolic link), owned by the running
//! user and writable by nobody else (no `g+w`, no `o+w`): whoever can write there could plant
//! a forged `state.json` that makes `stop` signal any process. Every sandbox directory in it
//! must be the same (the supervisor creates them `0700`).
//!
//! Nothing in it is followed through a symbolic link: sandbox directories are opened relative
//! to the state directory's descriptor with `O_NOFOLLOW`, and files relative to the sandbox
//! directory's descriptor, read with `O_NOFOLLOW`, written to a fresh `O_EXCL` temporary and
//! renamed into place (a rename replaces a link instead of following it). The log is opened
//! with `O_NOFOLLOW`; a link or other non-regular file in its place is removed and replaced.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

use crate::error::{Error, Result};

fn cstr(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `openat(dir, name, flags | O_NOFOLLOW | O_CLOEXEC, mode)`; `dir` None means the working
/// directory (`name` may then be a path, whose last component is not followed).
fn open_at(dir: Option<&OwnedFd>, name: &OsStr, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    let dfd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: a valid C string; the returned descriptor is ours.
    let fd = cvt(unsafe {
        libc::openat(
            dfd,
            c.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })?;
    // SAFETY: a fresh descriptor from the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn unlink_at(dir: &OwnedFd, name: &OsStr, flags: i32) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: a valid descriptor and C string.
    cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), flags) }).map(drop)
}

/// `O_NOFOLLOW | O_DIRECTORY` on a link fails with `ELOOP` or `ENOTDIR`.
fn is_link_or_not_dir(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR))
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// Checks that an open directory is owned by the running user and not group/other writable.
fn check_owner_and_mode(fd: &OwnedFd, what: &str) -> std::result::Result<(), String> {
    let m = File::from(fd.try_clone().map_err(|e| e.to_string())?)
        .metadata()
        .map_err(|e| format!("fstat: {e}"))?;
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if m.uid() != me {
        return Err(format!(
            "{what} is owned by uid {}, not by the running user (uid {me})",
            m.uid()
        ));
    }
    let mode = m.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "{what} has mode {mode:04o}: writable by {} (chmod go-w)",
            match (mode & 0o020 != 0, mode & 0o002 != 0) {
                (true, true) => "its group and others",
                (true, false) => "its group",
                _ => "others",
            }
        ));
    }
    Ok(())
}

/// Opens the state directory `path` (creating it `0755`, with its parents, when `create`).
/// `Ok(None)`: it does not exist (and `create` is false). Refused ([`Error::StateDir`]) when it
/// is a symbolic link or not a directory, owned by another user, or group/other writable.
pub fn open_state_dir(path: &Path, create: bool) -> Result<Option<OwnedFd>> {
    let refuse = |message: String| Error::StateDir {
        path: path.to_path_buf(),
        message,
    };
    if create {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(path)
            .map_err(Error::io(format!("creating {}", path.display())))?;
    }
    let fd = match open_at(
        None,
        path.as_os_str(),
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
    ) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if is_link_or_not_dir(&e) => {
            return Err(refuse(if is_symlink(path) {
                "it is a symbolic link (not followed)".into()
            } else {
                "not a directory".into()
            }))
        }
        Err(e) => return Err(Error::io(format!("opening {}", path.display()))(e)),
    };
    check_owner_and_mode(&fd, "it").map_err(refuse)?;
    Ok(Some(fd))
}

/// What is at a sandbox directory's name.
#[derive(Debug)]
pub enum SandboxDir {
    /// A directory of ours, opened.
    Dir(OwnedFd),
    /// Nothing.
    Missing,
    /// A symbolic link (never followed).
    Symlink,
}

/// Opens sandbox directory `id` of the state directory `state` without following a link. A
/// directory owned by another user or writable by group/others is an error naming `path`.
pub fn open_sandbox_dir(state: &OwnedFd, id: &str, path: &Path) -> Result<SandboxDir> {
    match open_at(
        Some(state),
        OsStr::new(id),
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
    ) {
        Ok(fd) => {
            check_owner_and_mode(&fd, "the sandbox directory").map_err(|message| Error::State {
                path: path.to_path_buf(),
                message,
            })?;
            Ok(SandboxDir::Dir(fd))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(SandboxDir::Missing),
        Err(e) if is_link_or_not_dir(&e) && is_symlink(path) => Ok(SandboxDir::Symlink),
        Err(e) if is_link_or_not_dir(&e) => Err(Error::State {
            path: path.to_path_buf(),
            message: "not a directory".into(),
        }),
        Err(e) => Err(Error::io(format!("opening {}", path.display()))(e)),
    }
}

/// Creates sandbox directory `id` (`0700`) in `state`; `AlreadyExists` if something is there.
pub fn create_sandbox_dir(state: &OwnedFd, id: &str) -> io::Result<()> {
    let c = cstr(OsStr::new(id))?;
    // SAFETY: a valid descriptor and C string.
    cvt(unsafe { libc::mkdirat(state.as_raw_fd(), c.as_ptr(), 0o700) }).map(drop)
}

/// Removes a symbolic link named `id` in `state` (the link, not its target).
pub fn remove_link(state: &OwnedFd, id: &str) -> io::Result<()> {
    unlink_at(state, OsStr::new(id), 0)
}

/// Reads file `name` of `dir` without following a link (`ELOOP` for a link).
pub fn read_at(dir: &OwnedFd, name: &str) -> io::Result<Vec<u8>> {
    let fd = open_at(Some(dir), OsStr::new(name), libc::O_RDONLY, 0)?;
    let mut f = File::from(fd);
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    let mut v = Vec::new();
    f.read_to_end(&mut v)?;
    Ok(v)
}

/// Writes file `name` of `dir` (`0600`) through a fresh temporary `.<name>.tmp` (whatever was
/// at that name is removed first; `O_EXCL`) renamed over `name`: a link at either name is
/// replaced, never followed.
pub fn write_at(dir: &OwnedFd, name: &str, data: &[u8]) -> io::Result<()> {
    let tmp = format!(".{name}.tmp");
    match unlink_at(dir, OsStr::new(&tmp), 0) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let fd = open_at(
        Some(dir),
        OsStr::new(&tmp),
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
        0o600,
    )?;
    File::from(fd).write_all(data)?;
    let (t, n) = (cstr(OsStr::new(&tmp))?, cstr(OsStr::new(name))?);
    // SAFETY: valid descriptors and C strings.
    cvt(unsafe { libc::renameat(dir.as_raw_fd(), t.as_ptr(), dir.as_raw_fd(), n.as_ptr()) })
        .map(drop)
}

/// Reads the file at `path` without following a link in its last component.
pub fn read_no_follow(path: &Path) -> io::Result<Vec<u8>> {
    let mut v = Vec::new();
    File::from(open_at(
        None,
        path.as_os_str(),
        libc::O_RDONLY | libc::O_NONBLOCK,
        0,
    )?)
    .read_to_end(&mut v)?;
    Ok(v)
}

/// Opens the log file at `path` for appending (`0600`), without following a link. A link, or
/// anything but a regular file (a FIFO would block the pump), found there is removed and a
/// fresh file created in its place.
pub fn open_log(path: &Path) -> io::Result<File> {
    let flags = libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_NONBLOCK;
    let replace = |why: &str| -> io::Result<File> {
        log::warn!(
            "{}: {why}; replaced by a new log file (not followed)",
            path.display()
        );
        std::fs::remove_file(path)?;
        let fd = open_at(None, path.as_os_str(), flags | libc::O_EXCL, 0o600)?;
        clear_nonblock(File::from(fd))
    };
    match open_at(None, path.as_os_str(), flags, 0o600) {
        Ok(fd) => {
            let f = File::from(fd);
            if f.metadata()?.is_file() {
                clear_nonblock(f)
            } else {
                drop(f);
                replace("not a regular file")
            }
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => replace("a symbolic link"),
        // A FIFO without a reader.
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => replace("not a regular file"),
        Err(e) => Err(e),
    }
}

fn clear_nonblock(f: File) -> io::Result<File> {
    let fd = f.as_raw_fd();
    // SAFETY: fcntl on our own descriptor.
    let fl = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK) })?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn state_dir_mode_owner_and_links() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state");
        assert!(open_state_dir(&p, false).unwrap().is_none());
        open_state_dir(&p, true).unwrap().unwrap();
        for (mode, who) in [
            (0o777, "its group and others"),
            (0o775, "its group"),
            (0o757, "others"),
            (0o1777, "its group and others"),
        ] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = open_state_dir(&p, true).unwrap_err().to_string();
            assert!(
                e.contains(&format!("mode {mode:04o}: writable by {who}")),
                "{e}"
            );
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
        open_state_dir(&p, false).unwrap().unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        let e = open_state_dir(&link, false).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
    }

    #[test]
    fn files_are_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let dir = d.path().join("sb");
        std::fs::create_dir(&dir).unwrap();
        let fd = open_at(None, dir.as_os_str(), libc::O_RDONLY | libc::O_DIRECTORY, 0).unwrap();
        for name in ["state.json", ".state.json.tmp"] {
            std::os::unix::fs::symlink(&victim, dir.join(name)).unwrap();
        }
        assert_eq!(
            read_at(&fd, "state.json").unwrap_err().raw_os_error(),
            Some(libc::ELOOP)
        );
        write_at(&fd, "state.json", b"new").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(read_at(&fd, "state.json").unwrap(), b"new");
    }
}
