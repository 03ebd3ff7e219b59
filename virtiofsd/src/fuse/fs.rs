//! The filesystem the guest sees: fuse-backend-rs's passthrough over the shared directory,
//! wrapped by [`SharedFs`] for what the library lacks: submount announcement, `--readonly`
//! opens, switching READDIRPLUS off, extended attributes that act on the named inode
//! ([`crate::fuse::xattr`]), and clearing SUID/SGID on a write that asks for it.

use std::ffi::CStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use fuse_backend_rs::abi::fuse_abi::{
    stat64, statvfs64, CreateIn, FsOptions, OpenOptions, SetattrValid, WRITE_KILL_PRIV,
};
use fuse_backend_rs::abi::virtio_fs::RemovemappingOne;
use fuse_backend_rs::api::filesystem::{
    Context, DirEntry, Entry, FileLock, FileSystem, GetxattrReply, IoctlData, ListxattrReply,
    ZeroCopyReader, ZeroCopyWriter,
};
use fuse_backend_rs::passthrough::PassthroughFs;
use fuse_backend_rs::transport::FsCacheReqHandler;

use crate::config::{CacheMode, Share};
use crate::fuse::mounts::MountPoints;
use crate::fuse::options::passthrough_config;
use crate::fuse::xattr::Xattrs;

/// The filesystem type served to the guest.
pub type Fs = SharedFs;

/// `fuse_attr.flags` bit telling the guest an entry is the root of another mount.
const FUSE_ATTR_SUBMOUNT: u32 = 1;

/// Directories whose device is remembered for submount checks, at most.
const DIR_DEV_CACHE: usize = 100_000;

/// Creates the filesystem whose root will be `root_dir` (the shared directory's path as seen
/// after the sandbox is entered); call [`SharedFs::import`] once that path is right.
///
/// `sandboxed`: the daemon runs in a namespace or chroot sandbox (no file handles then).
/// `check_names: false` turns off the library's own name validation too; only tests use it,
/// to prove the hostile-name tests catch a daemon without checks.
pub fn open(opts: &Share, sandboxed: bool, check_names: bool, root_dir: &Path) -> io::Result<Fs> {
    let pt = passthrough_config(opts, sandboxed, check_names, root_dir)?;
    let inner = PassthroughFs::new(pt)?;
    // Opened now, while /proc is reachable; the mount table itself is opened in `import`.
    let proc_self = match opts.announce_submounts {
        true => Some(std::fs::File::open("/proc/self")?),
        false => None,
    };
    let xattrs = opts.xattr.then(Xattrs::open).transpose()?;
    Ok(SharedFs {
        inner,
        dir_devs: Default::default(),
        proc_self,
        mounts: None,
        xattrs,
        killpriv_v2: std::sync::atomic::AtomicBool::new(false),
        announce_submounts: opts.announce_submounts,
        // `never` also disables READDIRPLUS, as upstream.
        readdirplus: opts.readdirplus && opts.cache != CacheMode::Never,
        readonly: opts.readonly,
    })
}

/// Passthrough plus the behaviour upstream virtiofsd has and the library lacks.
pub struct SharedFs {
    inner: PassthroughFs<()>,
    dir_devs: std::sync::RwLock<std::collections::HashMap<u64, u64>>,
    proc_self: Option<std::fs::File>,
    mounts: Option<MountPoints>,
    /// The xattr calls (`None` without `--xattr`: ENOSYS).
    xattrs: Option<Xattrs>,
    /// HANDLE_KILLPRIV_V2 was negotiated: the guest then flags truncating opens itself.
    killpriv_v2: std::sync::atomic::AtomicBool,
    announce_submounts: bool,
    readdirplus: bool,
    readonly: bool,
}

impl SharedFs {
    fn xattrs(&self) -> io::Result<&Xattrs> {
        self.xattrs
            .as_ref()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOSYS))
    }

    /// For a WRITE whose writer lacks CAP_FSETID (the guest then sets
    /// `FUSE_WRITE_KILL_SUIDGID`; it does so for every such direct-I/O write, negotiated or
    /// not), or a truncating open by such a caller: clears SUID, and SGID when group-execute is
    /// set, as a local Linux filesystem does. The check is one `fstat` of the open file; the
    /// mode is changed only when one of those bits is set.
    fn kill_suidgid(&self, ctx: &Context, inode: u64, handle: u64) -> io::Result<()> {
        let (st, _) = self.inner.getattr(ctx, inode, Some(handle))?;
        let mut kill = st.st_mode & libc::S_ISUID;
        if st.st_mode & (libc::S_ISGID | libc::S_IXGRP) == libc::S_ISGID | libc::S_IXGRP {
            kill |= libc::S_ISGID;
        }
        if kill == 0 {
            return Ok(());
        }
        // SAFETY: stat64 is plain data; only st_mode is read with SetattrValid::MODE.
        let mut attr: stat64 = unsafe { std::mem::zeroed() };
        attr.st_mode = st.st_mode & !kill & 0o7777;
        self.inner
            .setattr(ctx, inode, attr, Some(handle), SetattrValid::MODE)
            .map(drop)
    }

    /// Opens the root directory (by the path given to [`open`]) and, for submount
    /// announcement, the mount table as seen from the final root.
    pub fn import(&mut self) -> io::Result<()> {
        self.inner.import()?;
        if let Some(proc_self) = self.proc_self.take() {
            self.mounts = Some(MountPoints::open(&proc_self)?);
        }
        Ok(())
    }

    /// The device of directory `inode`, from the cache of directories handed out, else stat.
    fn dev_of(&self, ctx: &Context, inode: u64) -> io::Result<u64> {
        if let Some(dev) = self.dir_devs.read().unwrap().get(&inode) {
            return Ok(*dev);
        }
        let dev = self.inner.getattr(ctx, inode, None)?.0.st_dev;
        self.remember_dir(inode, dev);
        Ok(dev)
    }

    /// Notes a directory's device for later submount checks of its entries. Nodeids are never
    /// reused, so a stale entry is harmless; the cache is emptied when it grows too large.
    fn remember_dir(&self, inode: u64, dev: u64) {
        let mut m = self.dir_devs.write().unwrap();
        if m.len() >= DIR_DEV_CACHE {
            m.clear();
        }
        m.insert(inode, dev);
    }

    fn note_entry(&self, e: &Entry) {
        if self.announce_submounts && e.attr.st_mode & libc::S_IFMT == libc::S_IFDIR {
            self.remember_dir(e.inode, e.attr.st_dev);
        }
    }

    /// Marks `entry` as a submount when it is on another device than its parent, or is a
    /// directory that is a mount point (a bind mount from the same filesystem).
    fn mark_submount(&self, entry: &mut Entry, parent_dev: u64) {
        if entry.inode == 0 {
            return;
        }
        let other_dev = entry.attr.st_dev != parent_dev;
        let is_dir = entry.attr.st_mode & libc::S_IFMT == libc::S_IFDIR;
        let mount_point = || match &self.mounts {
            Some(m) if m.any() => self
                .inner
                .readlinkat_proc_file(entry.inode)
                .is_ok_and(|p| m.contains(p.as_os_str().as_bytes())),
            _ => false,
        };
        if other_dev || (is_dir && mount_point()) {
            entry.attr_flags |= FUSE_ATTR_SUBMOUNT;
        }
    }
}

/// Methods of [`FileSystem`] that [`SharedFs`] hands to the passthrough unchanged: each
/// `fn name(&self, arg: Type, ...) -> Ret;` becomes `self.inner.name(arg, ...)`.
macro_rules! forward {
    ($(fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) $(-> $ret:ty)?;)*) => {
        $(
            fn $name(&self $(, $arg: $ty)*) $(-> $ret)? {
                self.inner.$name($($arg),*)
            }
        )*
    };
}

impl FileSystem for SharedFs {
    type Inode = u64;
    type Handle = u64;

    /// Passthrough asks only for READDIRPLUS; a daemon must also ask for the basics, or the
    /// kernel falls back to 4 KiB writes and serialised directory operations.
    fn init(&self, capable: FsOptions) -> io::Result<FsOptions> {
        let mut opts = self.inner.init(capable)?;
        self.killpriv_v2.store(
            opts.contains(FsOptions::HANDLE_KILLPRIV_V2),
            std::sync::atomic::Ordering::Relaxed,
        );
        opts |= FsOptions::ASYNC_READ
            | FsOptions::PARALLEL_DIROPS
            | FsOptions::BIG_WRITES
            | FsOptions::AUTO_INVAL_DATA
            | FsOptions::ASYNC_DIO
            | FsOptions::ATOMIC_O_TRUNC
            | FsOptions::MAX_PAGES
            | FsOptions::INIT_EXT;
        // No DAX window: never let the guest think per-file DAX is available.
        opts.remove(FsOptions::PERFILE_DAX);
        if !self.readdirplus {
            opts.remove(FsOptions::DO_READDIRPLUS | FsOptions::READDIRPLUS_AUTO);
        }
        if self.announce_submounts && capable.contains(FsOptions::SUBMOUNTS) {
            opts |= FsOptions::SUBMOUNTS;
        }
        Ok(opts)
    }

    fn lookup(&self, ctx: &Context, parent: u64, name: &CStr) -> io::Result<Entry> {
        let mut entry = self.inner.lookup(ctx, parent, name)?;
        if self.announce_submounts {
            match self.dev_of(ctx, parent) {
                Ok(dev) => self.mark_submount(&mut entry, dev),
                Err(e) => log::debug!("submount check of {parent}: {e}"),
            }
            self.note_entry(&entry);
        }
        Ok(entry)
    }

    fn readdirplus(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry, Entry) -> io::Result<usize>,
    ) -> io::Result<()> {
        if !self.readdirplus {
            return Err(io::Error::from_raw_os_error(libc::ENOSYS));
        }
        let dev = match self.announce_submounts {
            true => Some(self.dev_of(ctx, inode)?),
            false => None,
        };
        let mut add = |d: DirEntry, mut e: Entry| {
            if let Some(dev) = dev.filter(|_| d.name != b"." && d.name != b"..") {
                self.mark_submount(&mut e, dev);
                self.note_entry(&e);
            }
            add_entry(d, e)
        };
        self.inner
            .readdirplus(ctx, inode, handle, size, offset, &mut add)
    }

    fn open(
        &self,
        ctx: &Context,
        inode: u64,
        flags: u32,
        fuse_flags: u32,
    ) -> io::Result<(Option<u64>, OpenOptions, Option<u32>)> {
        let f = flags as i32;
        if self.readonly && ((f & libc::O_ACCMODE) != libc::O_RDONLY || f & libc::O_TRUNC != 0) {
            return Err(io::Error::from_raw_os_error(libc::EROFS));
        }
        let opened = self.inner.open(ctx, inode, flags, fuse_flags)?;
        // An open(O_TRUNC) with ATOMIC_O_TRUNC: without KILLPRIV_V2 the guest neither clears
        // the bits nor says whether the caller has CAP_FSETID; a caller other than root is
        // taken not to have it.
        if let (true, Some(h)) = (f & libc::O_TRUNC != 0 && ctx.uid != 0, opened.0) {
            if !self.killpriv_v2.load(std::sync::atomic::Ordering::Relaxed) {
                if let Err(e) = self.kill_suidgid(ctx, inode, h) {
                    let _ = self.inner.release(ctx, inode, flags, h, false, false, None);
                    return Err(e);
                }
            }
        }
        Ok(opened)
    }

    fn batch_forget(&self, ctx: &Context, requests: Vec<(u64, u64)>) {
        self.inner.batch_forget(ctx, requests)
    }

    fn read(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        w: &mut dyn ZeroCopyWriter,
        size: u32,
        offset: u64,
        lock_owner: Option<u64>,
        flags: u32,
    ) -> io::Result<usize> {
        // No more than the request was charged for, nor than its chain can hold.
        let room = u32::try_from(w.available_bytes()).unwrap_or(u32::MAX);
        let size = size.min(crate::device::budget::allowed()).min(room);
        let n = self
            .inner
            .read(ctx, inode, handle, w, size, offset, lock_owner, flags)?;
        crate::device::budget::moved(n);
        Ok(n)
    }

    fn write(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        r: &mut dyn ZeroCopyReader,
        size: u32,
        offset: u64,
        lock_owner: Option<u64>,
        delayed_write: bool,
        flags: u32,
        fuse_flags: u32,
    ) -> io::Result<usize> {
        // The guest changed the request after it was charged.
        if size > crate::device::budget::allowed() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // Handled here whether or not KILLPRIV_V2 was negotiated, and taken off the request:
        // the library's own handling drops and restores CAP_FSETID around every flagged write
        // (capget/capset calls), even when the file has neither bit.
        if fuse_flags & WRITE_KILL_PRIV != 0 {
            self.kill_suidgid(ctx, inode, handle)?;
        }
        let n = self.inner.write(
            ctx,
            inode,
            handle,
            r,
            size,
            offset,
            lock_owner,
            delayed_write,
            flags,
            fuse_flags & !WRITE_KILL_PRIV,
        )?;
        crate::device::budget::moved(n);
        Ok(n)
    }

    fn setxattr(
        &self,
        ctx: &Context,
        inode: u64,
        name: &CStr,
        value: &[u8],
        flags: u32,
    ) -> io::Result<()> {
        self.xattrs()?
            .set(&self.inner, ctx, inode, name, value, flags)
    }

    fn getxattr(
        &self,
        ctx: &Context,
        inode: u64,
        name: &CStr,
        size: u32,
    ) -> io::Result<GetxattrReply> {
        self.xattrs()?.get(&self.inner, ctx, inode, name, size)
    }

    fn listxattr(&self, ctx: &Context, inode: u64, size: u32) -> io::Result<ListxattrReply> {
        self.xattrs()?.list(&self.inner, ctx, inode, size)
    }

    fn removexattr(&self, ctx: &Context, inode: u64, name: &CStr) -> io::Result<()> {
        self.xattrs()?.remove(&self.inner, ctx, inode, name)
    }

    fn readdir(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry) -> io::Result<usize>,
    ) -> io::Result<()> {
        self.inner
            .readdir(ctx, inode, handle, size, offset, add_entry)
    }

    // Everything else is the passthrough's own.
    forward! {
        fn destroy(&self);
        fn forget(&self, ctx: &Context, inode: u64, count: u64);
        fn getattr(
            &self,
            ctx: &Context,
            inode: u64,
            handle: Option<u64>,
        ) -> io::Result<(stat64, Duration)>;
        fn setattr(
            &self,
            ctx: &Context,
            inode: u64,
            attr: stat64,
            handle: Option<u64>,
            valid: SetattrValid,
        ) -> io::Result<(stat64, Duration)>;
        fn readlink(&self, ctx: &Context, inode: u64) -> io::Result<Vec<u8>>;
        fn symlink(
            &self,
            ctx: &Context,
            linkname: &CStr,
            parent: u64,
            name: &CStr,
        ) -> io::Result<Entry>;
        fn mknod(
            &self,
            ctx: &Context,
            inode: u64,
            name: &CStr,
            mode: u32,
            rdev: u32,
            umask: u32,
        ) -> io::Result<Entry>;
        fn mkdir(
            &self,
            ctx: &Context,
            parent: u64,
            name: &CStr,
            mode: u32,
            umask: u32,
        ) -> io::Result<Entry>;
        fn unlink(&self, ctx: &Context, parent: u64, name: &CStr) -> io::Result<()>;
        fn rmdir(&self, ctx: &Context, parent: u64, name: &CStr) -> io::Result<()>;
        fn rename(
            &self,
            ctx: &Context,
            olddir: u64,
            oldname: &CStr,
            newdir: u64,
            newname: &CStr,
            flags: u32,
        ) -> io::Result<()>;
        fn link(
            &self,
            ctx: &Context,
            inode: u64,
            newparent: u64,
            newname: &CStr,
        ) -> io::Result<Entry>;
        fn create(
            &self,
            ctx: &Context,
            parent: u64,
            name: &CStr,
            args: CreateIn,
        ) -> io::Result<(Entry, Option<u64>, OpenOptions, Option<u32>)>;
        fn flush(&self, ctx: &Context, inode: u64, handle: u64, lock_owner: u64) -> io::Result<()>;
        fn fsync(&self, ctx: &Context, inode: u64, datasync: bool, handle: u64) -> io::Result<()>;
        fn fallocate(
            &self,
            ctx: &Context,
            inode: u64,
            handle: u64,
            mode: u32,
            offset: u64,
            length: u64,
        ) -> io::Result<()>;
        fn release(
            &self,
            ctx: &Context,
            inode: u64,
            flags: u32,
            handle: u64,
            flush: bool,
            flock_release: bool,
            lock_owner: Option<u64>,
        ) -> io::Result<()>;
        fn statfs(&self, ctx: &Context, inode: u64) -> io::Result<statvfs64>;
        fn opendir(
            &self,
            ctx: &Context,
            inode: u64,
            flags: u32,
        ) -> io::Result<(Option<u64>, OpenOptions)>;
        fn fsyncdir(
            &self,
            ctx: &Context,
            inode: u64,
            datasync: bool,
            handle: u64,
        ) -> io::Result<()>;
        fn releasedir(&self, ctx: &Context, inode: u64, flags: u32, handle: u64) -> io::Result<()>;
        fn setupmapping(
            &self,
            ctx: &Context,
            inode: u64,
            handle: u64,
            foffset: u64,
            len: u64,
            flags: u64,
            moffset: u64,
            vu_req: &mut dyn FsCacheReqHandler,
        ) -> io::Result<()>;
        fn removemapping(
            &self,
            ctx: &Context,
            inode: u64,
            requests: Vec<RemovemappingOne>,
            vu_req: &mut dyn FsCacheReqHandler,
        ) -> io::Result<()>;
        fn access(&self, ctx: &Context, inode: u64, mask: u32) -> io::Result<()>;
        fn lseek(
            &self,
            ctx: &Context,
            inode: u64,
            handle: u64,
            offset: u64,
            whence: u32,
        ) -> io::Result<u64>;
        fn getlk(
            &self,
            ctx: &Context,
            inode: u64,
            handle: u64,
            owner: u64,
            lock: FileLock,
            flags: u32,
        ) -> io::Result<FileLock>;
        fn setlk(
            &self,
            ctx: &Context,
            inode: u64,
            handle: u64,
            owner: u64,
            lock: FileLock,
            flags: u32,
        ) -> io::Result<()>;
        fn setlkw(
            &self,
            ctx: &Context,
            inode: u64,
            handle: u64,
            owner: u64,
            lock: FileLock,
            flags: u32,
        ) -> io::Result<()>;
        fn ioctl(
            &self,
            ctx: &Context,
            inode: u64,
            handle: u64,
            flags: u32,
            cmd: u32,
            data: IoctlData,
            out_size: u32,
        ) -> io::Result<IoctlData<'_>>;
        fn bmap(&self, ctx: &Context, inode: u64, block: u64, blocksize: u32) -> io::Result<u64>;
        fn poll(
            &self,
            ctx: &Context,
            inode: u64,
            handle: u64,
            khandle: u64,
            flags: u32,
            events: u32,
        ) -> io::Result<u32>;
        fn notify_reply(&self) -> io::Result<()>;
        fn id_remap(&self, ctx: &mut Context) -> io::Result<()>;
    }
}
