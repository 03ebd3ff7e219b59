//! The typed FUSE operations of [`FuseSession`], one method per opcode.

use std::mem::size_of;

use vm_memory::ByteValued;

use super::*;

impl FuseSession {
    // ---- typed operations -------------------------------------------------------------

    /// FUSE_INIT with default flags (async read, big writes, readdirplus, max pages,
    /// parallel dirops) and max_readahead 128 KiB.
    pub fn init(&mut self) -> Result<InitOut> {
        let flags = FsOptions::ASYNC_READ
            | FsOptions::BIG_WRITES
            | FsOptions::DO_READDIRPLUS
            | FsOptions::MAX_PAGES
            | FsOptions::PARALLEL_DIROPS;
        self.init_with(InitIn {
            major: 7,
            minor: INIT_MINOR,
            max_readahead: 128 * 1024,
            flags: flags.bits() as u32,
        })
    }

    /// FUSE_INIT with a caller-chosen `InitIn`. A reply shorter than `InitOut` (old
    /// protocol minor) is zero-extended.
    pub fn init_with(&mut self, init: InitIn) -> Result<InitOut> {
        let body = self.request(
            Opcode::Init as u32,
            0,
            &[init.as_slice()],
            size_of::<InitOut>(),
        )?;
        if body.len() < 8 {
            return Err(Error::BadReply(format!(
                "INIT reply body {} bytes",
                body.len()
            )));
        }
        let mut out = InitOut::default();
        let n = body.len().min(size_of::<InitOut>());
        out.as_mut_slice()[..n].copy_from_slice(&body[..n]);
        self.init_out = Some(out);
        Ok(out)
    }

    /// LOOKUP `name` in `parent`.
    pub fn lookup(&mut self, parent: u64, name: &[u8]) -> Result<EntryOut> {
        self.typed(Opcode::Lookup, parent, &[&cstr(name)])
    }

    /// GETATTR.
    pub fn getattr(&mut self, nodeid: u64) -> Result<AttrOut> {
        let a = GetattrIn::default();
        self.typed(Opcode::Getattr, nodeid, &[a.as_slice()])
    }

    /// SETATTR with a caller-built `SetattrIn`.
    pub fn setattr(&mut self, nodeid: u64, s: &SetattrIn) -> Result<AttrOut> {
        self.typed(Opcode::Setattr, nodeid, &[s.as_slice()])
    }

    /// SETATTR size (truncate); `fh` sets FATTR_FH.
    pub fn truncate(&mut self, nodeid: u64, size: u64, fh: Option<u64>) -> Result<AttrOut> {
        let mut s = SetattrIn {
            valid: SetattrValid::SIZE.bits(),
            size,
            ..Default::default()
        };
        if let Some(fh) = fh {
            s.valid |= fuse_backend_rs::abi::fuse_abi::FATTR_FH;
            s.fh = fh;
        }
        self.setattr(nodeid, &s)
    }

    /// SETATTR mode (chmod).
    pub fn chmod(&mut self, nodeid: u64, mode: u32) -> Result<AttrOut> {
        let s = SetattrIn {
            valid: SetattrValid::MODE.bits(),
            mode,
            ..Default::default()
        };
        self.setattr(nodeid, &s)
    }

    /// CREATE `name` in `parent` with open `flags` (e.g. `libc::O_RDWR`) and `mode`.
    pub fn create(
        &mut self,
        parent: u64,
        name: &[u8],
        mode: u32,
        flags: u32,
    ) -> Result<(EntryOut, OpenOut)> {
        let c = CreateIn {
            flags,
            mode,
            umask: 0,
            fuse_flags: 0,
        };
        let body = self.request(
            Opcode::Create as u32,
            parent,
            &[c.as_slice(), &cstr(name)],
            size_of::<EntryOut>() + size_of::<OpenOut>(),
        )?;
        let e: EntryOut = parse_obj(&body)?;
        let o: OpenOut = parse_obj(&body[size_of::<EntryOut>().min(body.len())..])?;
        Ok((e, o))
    }

    /// OPEN with `flags` (e.g. `libc::O_RDWR`).
    pub fn open(&mut self, nodeid: u64, flags: u32) -> Result<OpenOut> {
        let o = OpenIn {
            flags,
            fuse_flags: 0,
        };
        self.typed(Opcode::Open, nodeid, &[o.as_slice()])
    }

    fn read_in(fh: u64, offset: u64, size: u32) -> ReadIn {
        ReadIn {
            fh,
            offset,
            size,
            ..Default::default()
        }
    }

    /// Submit a READ without waiting (pipelining); the reply body is the data.
    pub fn submit_read(&mut self, nodeid: u64, fh: u64, offset: u64, size: u32) -> Result<Pending> {
        let r = Self::read_in(fh, offset, size);
        self.submit(Opcode::Read as u32, nodeid, &[r.as_slice()], size as usize)
    }

    /// READ up to `size` bytes at `offset`.
    pub fn read(&mut self, nodeid: u64, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        let r = Self::read_in(fh, offset, size);
        self.request(Opcode::Read as u32, nodeid, &[r.as_slice()], size as usize)
    }

    /// Submit a WRITE without waiting (pipelining); parse the reply with [`parse_obj`]
    /// as [`WriteOut`].
    pub fn submit_write(
        &mut self,
        nodeid: u64,
        fh: u64,
        offset: u64,
        data: &[u8],
    ) -> Result<Pending> {
        let w = WriteIn {
            fh,
            offset,
            size: data.len() as u32,
            ..Default::default()
        };
        self.submit(
            Opcode::Write as u32,
            nodeid,
            &[w.as_slice(), data],
            size_of::<WriteOut>(),
        )
    }

    /// WRITE `data` at `offset` in one request; returns the byte count written.
    pub fn write(&mut self, nodeid: u64, fh: u64, offset: u64, data: &[u8]) -> Result<u32> {
        let p = self.submit_write(nodeid, fh, offset, data)?;
        let r = self.wait_reply(p);
        if matches!(r, Err(Error::Timeout { .. })) {
            self.abandon(p);
        }
        let w: WriteOut = parse_obj(&r?.into_result()?)?;
        Ok(w.size)
    }

    /// FSYNC (`datasync` sets FSYNC_FDATASYNC).
    pub fn fsync(&mut self, nodeid: u64, fh: u64, datasync: bool) -> Result<()> {
        let f = FsyncIn {
            fh,
            fsync_flags: datasync as u32,
            padding: 0,
        };
        let r = self.call(Opcode::Fsync as u32, nodeid, &[f.as_slice()], 0)?;
        unit(r)
    }

    /// FLUSH.
    pub fn flush(&mut self, nodeid: u64, fh: u64, lock_owner: u64) -> Result<()> {
        let f = FlushIn {
            fh,
            unused: 0,
            padding: 0,
            lock_owner,
        };
        let r = self.call(Opcode::Flush as u32, nodeid, &[f.as_slice()], 0)?;
        unit(r)
    }

    /// RELEASE a file handle (`flags` = the open flags).
    pub fn release(&mut self, nodeid: u64, fh: u64, flags: u32) -> Result<()> {
        let r = ReleaseIn {
            fh,
            flags,
            ..Default::default()
        };
        let r = self.call(Opcode::Release as u32, nodeid, &[r.as_slice()], 0)?;
        unit(r)
    }

    /// MKDIR.
    pub fn mkdir(&mut self, parent: u64, name: &[u8], mode: u32) -> Result<EntryOut> {
        let m = MkdirIn { mode, umask: 0 };
        self.typed(Opcode::Mkdir, parent, &[m.as_slice(), &cstr(name)])
    }

    /// OPENDIR.
    pub fn opendir(&mut self, nodeid: u64) -> Result<OpenOut> {
        let o = OpenIn {
            flags: libc::O_RDONLY as u32,
            fuse_flags: 0,
        };
        self.typed(Opcode::Opendir, nodeid, &[o.as_slice()])
    }

    /// READDIR with a `size`-byte buffer from offset cookie `offset`.
    pub fn readdir(
        &mut self,
        nodeid: u64,
        fh: u64,
        offset: u64,
        size: u32,
    ) -> Result<Vec<DirEntry>> {
        let r = Self::read_in(fh, offset, size);
        let body = self.request(
            Opcode::Readdir as u32,
            nodeid,
            &[r.as_slice()],
            size as usize,
        )?;
        parse_dirents(&body)
    }

    /// READDIRPLUS with a `size`-byte buffer from offset cookie `offset`. Every entry
    /// with a nonzero nodeid holds a lookup reference (FORGET it).
    pub fn readdirplus(
        &mut self,
        nodeid: u64,
        fh: u64,
        offset: u64,
        size: u32,
    ) -> Result<Vec<DirEntryPlus>> {
        let r = Self::read_in(fh, offset, size);
        let body = self.request(
            Opcode::Readdirplus as u32,
            nodeid,
            &[r.as_slice()],
            size as usize,
        )?;
        parse_direntplus(&body)
    }

    /// RELEASEDIR.
    pub fn releasedir(&mut self, nodeid: u64, fh: u64) -> Result<()> {
        let r = ReleaseIn {
            fh,
            ..Default::default()
        };
        let r = self.call(Opcode::Releasedir as u32, nodeid, &[r.as_slice()], 0)?;
        unit(r)
    }

    /// RENAME `olddir/oldname` to `newdir/newname`.
    pub fn rename(
        &mut self,
        olddir: u64,
        oldname: &[u8],
        newdir: u64,
        newname: &[u8],
    ) -> Result<()> {
        let r = RenameIn { newdir };
        let r = self.call(
            Opcode::Rename as u32,
            olddir,
            &[r.as_slice(), &cstr(oldname), &cstr(newname)],
            0,
        )?;
        unit(r)
    }

    /// RENAME2 with `flags` (RENAME_NOREPLACE, RENAME_EXCHANGE, ...).
    pub fn rename2(
        &mut self,
        olddir: u64,
        oldname: &[u8],
        newdir: u64,
        newname: &[u8],
        flags: u32,
    ) -> Result<()> {
        let r = Rename2In {
            newdir,
            flags,
            padding: 0,
        };
        let r = self.call(
            Opcode::Rename2 as u32,
            olddir,
            &[r.as_slice(), &cstr(oldname), &cstr(newname)],
            0,
        )?;
        unit(r)
    }

    /// LINK: new name `newname` in `newparent` for `oldnodeid`.
    pub fn link(&mut self, oldnodeid: u64, newparent: u64, newname: &[u8]) -> Result<EntryOut> {
        let l = LinkIn { oldnodeid };
        self.typed(Opcode::Link, newparent, &[l.as_slice(), &cstr(newname)])
    }

    /// SYMLINK `name` in `parent` pointing to `target`.
    pub fn symlink(&mut self, parent: u64, name: &[u8], target: &[u8]) -> Result<EntryOut> {
        self.typed(Opcode::Symlink, parent, &[&cstr(name), &cstr(target)])
    }

    /// READLINK (up to 4 KiB).
    pub fn readlink(&mut self, nodeid: u64) -> Result<Vec<u8>> {
        self.request(Opcode::Readlink as u32, nodeid, &[], 4096)
    }

    /// Submit a MKNOD of `name` in `parent` without waiting; the reply body is an [`EntryOut`].
    pub fn submit_mknod(&mut self, parent: u64, name: &[u8], mode: u32) -> Result<Pending> {
        let m = MknodIn {
            mode,
            rdev: 0,
            umask: 0,
            padding: 0,
        };
        self.submit(
            Opcode::Mknod as u32,
            parent,
            &[m.as_slice(), &cstr(name)],
            size_of::<EntryOut>(),
        )
    }

    /// Submit an UNLINK without waiting.
    pub fn submit_unlink(&mut self, parent: u64, name: &[u8]) -> Result<Pending> {
        self.submit(Opcode::Unlink as u32, parent, &[&cstr(name)], 0)
    }

    /// UNLINK.
    pub fn unlink(&mut self, parent: u64, name: &[u8]) -> Result<()> {
        let r = self.call(Opcode::Unlink as u32, parent, &[&cstr(name)], 0)?;
        unit(r)
    }

    /// RMDIR.
    pub fn rmdir(&mut self, parent: u64, name: &[u8]) -> Result<()> {
        let r = self.call(Opcode::Rmdir as u32, parent, &[&cstr(name)], 0)?;
        unit(r)
    }

    /// SETXATTR (`flags`: XATTR_CREATE / XATTR_REPLACE or 0).
    pub fn setxattr(&mut self, nodeid: u64, name: &[u8], value: &[u8], flags: u32) -> Result<()> {
        let s = SetxattrIn {
            size: value.len() as u32,
            flags,
        };
        let r = self.call(
            Opcode::Setxattr as u32,
            nodeid,
            &[s.as_slice(), &cstr(name), value],
            0,
        )?;
        unit(r)
    }

    fn xattr_reply(
        &mut self,
        opcode: Opcode,
        nodeid: u64,
        args: &[&[u8]],
        size: u32,
    ) -> Result<XattrReply> {
        let want = if size == 0 {
            size_of::<GetxattrOut>()
        } else {
            size as usize
        };
        let body = self.request(opcode as u32, nodeid, args, want)?;
        if size == 0 {
            let o: GetxattrOut = parse_obj(&body)?;
            Ok(XattrReply::Size(o.size))
        } else {
            Ok(XattrReply::Data(body))
        }
    }

    /// GETXATTR; `size` 0 asks for the value's size.
    pub fn getxattr(&mut self, nodeid: u64, name: &[u8], size: u32) -> Result<XattrReply> {
        let g = GetxattrIn { size, padding: 0 };
        self.xattr_reply(Opcode::Getxattr, nodeid, &[g.as_slice(), &cstr(name)], size)
    }

    /// LISTXATTR; `size` 0 asks for the list's size.
    pub fn listxattr(&mut self, nodeid: u64, size: u32) -> Result<XattrReply> {
        let g = GetxattrIn { size, padding: 0 };
        self.xattr_reply(Opcode::Listxattr, nodeid, &[g.as_slice()], size)
    }

    /// REMOVEXATTR.
    pub fn removexattr(&mut self, nodeid: u64, name: &[u8]) -> Result<()> {
        let r = self.call(Opcode::Removexattr as u32, nodeid, &[&cstr(name)], 0)?;
        unit(r)
    }

    /// STATFS.
    pub fn statfs(&mut self, nodeid: u64) -> Result<Kstatfs> {
        let s: StatfsOut = self.typed(Opcode::Statfs, nodeid, &[])?;
        Ok(s.st)
    }

    /// ACCESS with `mask` (R_OK, W_OK, X_OK, F_OK).
    pub fn access(&mut self, nodeid: u64, mask: u32) -> Result<()> {
        let a = fuse_backend_rs::abi::fuse_abi::AccessIn { mask, padding: 0 };
        let r = self.call(Opcode::Access as u32, nodeid, &[a.as_slice()], 0)?;
        unit(r)
    }

    /// FORGET on the hiprio queue (no reply); returns once the daemon has returned the
    /// chain to the used ring.
    pub fn forget(&mut self, nodeid: u64, nlookup: u64) -> Result<()> {
        let f = ForgetIn { nlookup };
        self.no_reply(Opcode::Forget, nodeid, &[f.as_slice()])
    }

    /// BATCH_FORGET of `(nodeid, nlookup)` pairs on the hiprio queue (no reply).
    pub fn batch_forget(&mut self, items: &[(u64, u64)]) -> Result<()> {
        let b = BatchForgetIn {
            count: items.len() as u32,
            dummy: 0,
        };
        let mut list = Vec::with_capacity(items.len() * size_of::<ForgetOne>());
        for &(nodeid, nlookup) in items {
            list.extend_from_slice(ForgetOne { nodeid, nlookup }.as_slice());
        }
        self.no_reply(Opcode::BatchForget, 0, &[b.as_slice(), &list])
    }
}
