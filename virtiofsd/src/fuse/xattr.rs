//! Extended attributes on the inode the guest named, never on a path looked up again.
//!
//! The library's O_PATH descriptors (or file handles) cannot be used with the `f*xattr` calls,
//! and reading an inode's path back and looking it up again lets a rename, a swapped symlink or
//! an unlinked file (whose path reads `name (deleted)`) redirect the call to another file. So:
//!
//! - a regular file or directory is reopened by the library itself (its `setupmapping` entry
//!   point opens the inode through its own `/proc/self/fd/N` magic link or file handle and
//!   calls back with the descriptor), and the `f*xattr` call is made on it in that callback;
//! - any other type (symlinks, fifos, devices, sockets), or a file the daemon may not open for
//!   reading, is opened by its path with `O_PATH|O_NOFOLLOW` and kept only if it is the very
//!   inode the library holds (same device, inode number and type, compared while both
//!   descriptors are open, so the inode cannot have been freed and reused in between). The call
//!   then goes through the magic link `/proc/self/fd/M` of that descriptor: the worker thread
//!   gets a working directory of its own (`unshare(CLONE_FS)`, once), changes it to the
//!   `/proc/self/fd` opened at start-up, uses the following `*xattr` calls on `M`, which jump
//!   to the inode itself, and changes back to `/`. Such an inode that has no path any more
//!   answers ENOENT.
//!
//! The same code runs in every sandbox mode. Sizes are capped as Linux caps them
//! (`XATTR_SIZE_MAX`, `XATTR_LIST_MAX`): a larger GETXATTR/LISTXATTR buffer is clamped (no
//! attribute or list can be larger), a larger SETXATTR value is refused by the request checks.

use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;

use fuse_backend_rs::abi::virtio_fs::RemovemappingOne;
use fuse_backend_rs::api::filesystem::{Context, FileSystem, GetxattrReply, ListxattrReply};
use fuse_backend_rs::passthrough::PassthroughFs;
use fuse_backend_rs::transport::FsCacheReqHandler;

/// Largest attribute value (Linux `XATTR_SIZE_MAX`).
pub const XATTR_SIZE_MAX: u32 = 65536;
/// Largest attribute name list (Linux `XATTR_LIST_MAX`).
pub const XATTR_LIST_MAX: u32 = 65536;
/// Longest attribute name, without its NUL (Linux `XATTR_NAME_MAX`).
pub const XATTR_NAME_MAX: usize = 255;

/// Where an xattr call is made: a descriptor open on the inode, or the name of an O_PATH
/// descriptor's magic link relative to the thread's working directory (`/proc/self/fd`).
enum Target<'a> {
    Fd(RawFd),
    Proc(&'a CStr),
}

/// Which xattr call.
#[derive(Clone, Copy)]
enum Op {
    Set,
    Get,
    List,
    Remove,
}

/// One xattr call with everything it needs owned, so the library's callback can make it:
/// `data` is the value (SETXATTR) or the buffer to fill (GETXATTR, LISTXATTR).
struct Call {
    op: Op,
    name: CString,
    data: Vec<u8>,
    flags: libc::c_int,
}

impl Call {
    /// Makes the call on `t`: the byte count, or the errno.
    fn run(&mut self, t: Target<'_>) -> io::Result<usize> {
        let (name, len, flags) = (self.name.as_ptr(), self.data.len(), self.flags);
        let (value, buf) = (self.data.as_ptr().cast(), self.data.as_mut_ptr().cast());
        // SAFETY: valid C strings, and a buffer of `len` bytes (the kernel writes at most that
        // many).
        let rc = unsafe {
            match (self.op, t) {
                (Op::Set, Target::Fd(fd)) => libc::fsetxattr(fd, name, value, len, flags) as isize,
                (Op::Set, Target::Proc(p)) => {
                    libc::setxattr(p.as_ptr(), name, value, len, flags) as isize
                }
                (Op::Get, Target::Fd(fd)) => libc::fgetxattr(fd, name, buf, len),
                (Op::Get, Target::Proc(p)) => libc::getxattr(p.as_ptr(), name, buf, len),
                (Op::List, Target::Fd(fd)) => libc::flistxattr(fd, buf.cast(), len),
                (Op::List, Target::Proc(p)) => libc::listxattr(p.as_ptr(), buf.cast(), len),
                (Op::Remove, Target::Fd(fd)) => libc::fremovexattr(fd, name) as isize,
                (Op::Remove, Target::Proc(p)) => libc::removexattr(p.as_ptr(), name) as isize,
            }
        };
        usize::try_from(rc).map_err(|_| io::Error::last_os_error())
    }
}

/// The xattr calls, acting on inodes. Created where `/proc/self/fd` is reachable.
pub struct Xattrs {
    proc_fd: OwnedFd,
}

fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

fn check(rc: isize) -> io::Result<usize> {
    usize::try_from(rc).map_err(|_| io::Error::last_os_error())
}

thread_local! {
    /// Whether this thread has its own working directory (after `unshare(CLONE_FS)`).
    static OWN_CWD: Cell<bool> = const { Cell::new(false) };
}

/// Makes a [`Call`] on the descriptor the library opens for a mapping request, while the
/// library holds it open.
struct InCallback {
    call: Call,
    result: Option<io::Result<usize>>,
}

impl FsCacheReqHandler for InCallback {
    fn map(&mut self, _: u64, _: u64, _: u64, _: u64, fd: RawFd) -> io::Result<()> {
        self.result = Some(self.call.run(Target::Fd(fd)));
        Ok(())
    }

    fn unmap(&mut self, _: Vec<RemovemappingOne>) -> io::Result<()> {
        Err(errno(libc::EINVAL))
    }
}

/// `fstat` of a descriptor.
fn stat_of(fd: RawFd) -> io::Result<libc::stat64> {
    let mut st = std::mem::MaybeUninit::<libc::stat64>::zeroed();
    // SAFETY: the kernel writes a stat64 into `st`; the result is checked.
    let rc = unsafe { libc::fstat64(fd, st.as_mut_ptr()) };
    check(rc as isize)?;
    // SAFETY: fstat64 succeeded and filled it.
    Ok(unsafe { st.assume_init() })
}

impl Xattrs {
    /// Opens `/proc/self/fd` (call before the sandbox changes the root).
    pub fn open() -> io::Result<Xattrs> {
        // SAFETY: a constant path; the result is checked.
        let fd = unsafe {
            libc::open(
                c"/proc/self/fd".as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        check(fd as isize)?;
        // SAFETY: a fresh descriptor we own.
        Ok(Xattrs {
            proc_fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Makes `call` on `inode`: on a reopened descriptor for regular files and directories,
    /// through the magic link of a verified O_PATH descriptor otherwise. Returns the byte
    /// count and the call (with its buffer).
    fn on_inode(
        &self,
        fs: &PassthroughFs<()>,
        ctx: &Context,
        inode: u64,
        call: Call,
    ) -> io::Result<(usize, Call)> {
        let mut cb = InCallback { call, result: None };
        // Flags 0: read-only. Only regular files and directories are opened (EBADF otherwise).
        match fs.setupmapping(ctx, inode, 0, 0, 0, 0, 0, &mut cb) {
            Ok(()) => {
                let n = cb.result.unwrap_or_else(|| Err(errno(libc::EIO)))?;
                return Ok((n, cb.call));
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EBADF | libc::EACCES | libc::EPERM)
                ) => {}
            Err(e) => return Err(e),
        }
        let mut call = cb.call;
        let fd = self.open_verified(fs, ctx, inode)?;
        let name = CString::new(fd.as_raw_fd().to_string()).expect("digits");
        self.enter_proc_dir()?;
        let r = call.run(Target::Proc(&name));
        // Back to the root: nothing else on this thread may resolve relative paths from
        // /proc/self/fd (outside a chroot).
        // SAFETY: a constant path.
        unsafe { libc::chdir(c"/".as_ptr()) };
        Ok((r?, call))
    }

    /// Opens `inode` by its path, O_PATH, and keeps it only if it is the inode the library
    /// holds. Our descriptor is open during the comparison, so equal (device, inode, type)
    /// means the same live inode; afterwards it keeps that inode alive.
    fn open_verified(
        &self,
        fs: &PassthroughFs<()>,
        ctx: &Context,
        inode: u64,
    ) -> io::Result<OwnedFd> {
        // A rename between the read-back and the open makes one attempt miss; a few more
        // spare the guest a spurious ENOENT for a file that still has a name.
        let mut last = errno(libc::ENOENT);
        for _ in 0..3 {
            match self.try_open_verified(fs, ctx, inode) {
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => last = e,
                done => return done,
            }
        }
        Err(last)
    }

    fn try_open_verified(
        &self,
        fs: &PassthroughFs<()>,
        ctx: &Context,
        inode: u64,
    ) -> io::Result<OwnedFd> {
        let path = fs.readlinkat_proc_file(inode)?.into_os_string().into_vec();
        if path.first() != Some(&b'/') {
            return Err(errno(libc::ENOENT));
        }
        let path = CString::new(path).map_err(|_| errno(libc::ENOENT))?;
        // SAFETY: a valid C string; the result is checked.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        check(fd as isize)?;
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let ours = stat_of(fd.as_raw_fd())?;
        let (theirs, _) = fs.getattr(ctx, inode, None)?;
        let same = ours.st_dev == theirs.st_dev
            && ours.st_ino == theirs.st_ino
            && ours.st_mode & libc::S_IFMT == theirs.st_mode & libc::S_IFMT;
        match same {
            true => Ok(fd),
            // Renamed, replaced or unlinked since: that path is another file now.
            false => Err(errno(libc::ENOENT)),
        }
    }

    /// Makes `/proc/self/fd` this thread's working directory (a private one).
    fn enter_proc_dir(&self) -> io::Result<()> {
        if !OWN_CWD.get() {
            // SAFETY: unshare(CLONE_FS) only gives this thread its own root/cwd/umask copy.
            check(unsafe { libc::unshare(libc::CLONE_FS) } as isize)?;
            OWN_CWD.set(true);
        }
        // SAFETY: fchdir on a descriptor we own.
        check(unsafe { libc::fchdir(self.proc_fd.as_raw_fd()) } as isize).map(drop)
    }

    /// SETXATTR (the value's size was checked against [`XATTR_SIZE_MAX`] by the request wall).
    pub fn set(
        &self,
        fs: &PassthroughFs<()>,
        ctx: &Context,
        inode: u64,
        name: &CStr,
        value: &[u8],
        flags: u32,
    ) -> io::Result<()> {
        if value.len() > XATTR_SIZE_MAX as usize {
            return Err(errno(libc::E2BIG));
        }
        let call = Call {
            op: Op::Set,
            name: name.to_owned(),
            data: value.to_vec(),
            flags: flags as libc::c_int,
        };
        self.on_inode(fs, ctx, inode, call).map(drop)
    }

    /// GETXATTR; `size` 0 asks for the value's size. A buffer above [`XATTR_SIZE_MAX`] is
    /// clamped to it, as Linux does: no value is larger.
    pub fn get(
        &self,
        fs: &PassthroughFs<()>,
        ctx: &Context,
        inode: u64,
        name: &CStr,
        size: u32,
    ) -> io::Result<GetxattrReply> {
        let call = Call {
            op: Op::Get,
            name: name.to_owned(),
            data: vec![0u8; size.min(XATTR_SIZE_MAX) as usize],
            flags: 0,
        };
        let (n, mut call) = self.on_inode(fs, ctx, inode, call)?;
        call.data.truncate(n);
        Ok(match size {
            0 => GetxattrReply::Count(n as u32),
            _ => GetxattrReply::Value(call.data),
        })
    }

    /// LISTXATTR; `size` 0 asks for the list's size. A buffer above [`XATTR_LIST_MAX`] is
    /// clamped to it, as Linux does.
    pub fn list(
        &self,
        fs: &PassthroughFs<()>,
        ctx: &Context,
        inode: u64,
        size: u32,
    ) -> io::Result<ListxattrReply> {
        let call = Call {
            op: Op::List,
            name: CString::default(),
            data: vec![0u8; size.min(XATTR_LIST_MAX) as usize],
            flags: 0,
        };
        let (n, mut call) = self.on_inode(fs, ctx, inode, call)?;
        call.data.truncate(n);
        Ok(match size {
            0 => ListxattrReply::Count(n as u32),
            _ => ListxattrReply::Names(call.data),
        })
    }

    /// REMOVEXATTR.
    pub fn remove(
        &self,
        fs: &PassthroughFs<()>,
        ctx: &Context,
        inode: u64,
        name: &CStr,
    ) -> io::Result<()> {
        let call = Call {
            op: Op::Remove,
            name: name.to_owned(),
            data: Vec::new(),
            flags: 0,
        };
        self.on_inode(fs, ctx, inode, call).map(drop)
    }
}
