//! FUSE-over-virtio encoding/decoding and a typed session.
//!
//! Requests are laid out like the Linux virtio-fs driver does: one readable
//! descriptor for the `InHeader`, one per argument (WRITE data is the last
//! argument), then a writable descriptor for the `OutHeader` and one for the reply
//! body. All buffers of a request live in one pool allocation per direction.

use std::collections::HashMap;
use std::mem::size_of;
use std::path::Path;
use std::time::Duration;

pub use fuse_backend_rs::abi::fuse_abi::{
    Attr, AttrOut, BatchForgetIn, CreateIn, Dirent, Direntplus, EntryOut, FlushIn, ForgetIn,
    ForgetOne, FsOptions, FsyncIn, GetattrIn, GetxattrIn, GetxattrOut, InHeader, InitIn, InitOut,
    Kstatfs, LinkIn, MkdirIn, MknodIn, Opcode, OpenIn, OpenOut, OutHeader, ReadIn, ReleaseIn,
    Rename2In, RenameIn, SetattrIn, SetattrValid, SetxattrIn, StatfsOut, WriteIn, WriteOut,
    ROOT_ID,
};
use vm_memory::ByteValued;

use crate::error::{Error, Result};
use crate::vhost::{Completion, ConnectOptions, Frontend, HIPRIO_QUEUE, REQUEST_QUEUE};
use crate::virtqueue::{ChainData, Token, VIRTQ_DESC_F_WRITE};

/// `sizeof(struct fuse_in_header)`.
pub const IN_HEADER_LEN: usize = size_of::<InHeader>();
/// `sizeof(struct fuse_out_header)`.
pub const OUT_HEADER_LEN: usize = size_of::<OutHeader>();
/// FUSE protocol minor version we announce in INIT (no INIT_EXT needed).
pub const INIT_MINOR: u32 = 31;

/// Encode a whole request (header + arguments) into bytes: a starting point for
/// hostile tests that then corrupt it. `len` in the header is the true total length.
pub fn encode_request(unique: u64, opcode: u32, nodeid: u64, args: &[&[u8]]) -> Vec<u8> {
    let len = IN_HEADER_LEN + args.iter().map(|a| a.len()).sum::<usize>();
    let h = InHeader {
        len: len as u32,
        opcode,
        unique,
        nodeid,
        ..Default::default()
    };
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(h.as_slice());
    for a in args {
        v.extend_from_slice(a);
    }
    v
}

/// `name` followed by the NUL terminator FUSE expects.
pub fn cstr(name: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(name.len() + 1);
    v.extend_from_slice(name);
    v.push(0);
    v
}

/// Read a POD value from the front of `b` (error if `b` is shorter).
pub fn parse_obj<T: ByteValued + Default>(b: &[u8]) -> Result<T> {
    if b.len() < size_of::<T>() {
        return Err(Error::BadReply(format!(
            "reply body {} bytes, need {} for {}",
            b.len(),
            size_of::<T>(),
            std::any::type_name::<T>()
        )));
    }
    let mut v = T::default();
    v.as_mut_slice().copy_from_slice(&b[..size_of::<T>()]);
    Ok(v)
}

/// A FUSE reply as received.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The out header (already checked against used length and unique).
    pub header: OutHeader,
    /// Everything after the header.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body on success, [`Error::Errno`] on an error reply.
    pub fn into_result(self) -> Result<Vec<u8>> {
        if self.header.error != 0 {
            Err(Error::Errno {
                errno: -self.header.error,
            })
        } else {
            Ok(self.body)
        }
    }
}

/// Validate a completion as a FUSE reply to `unique`: used length ≥ out header,
/// `OutHeader.len == used_len`, used length within the writable buffers, unique
/// matches, error in `-4095..=0`.
pub fn parse_reply(c: &Completion, unique: u64) -> Result<Reply> {
    let header = parse_reply_header(c, unique)?;
    Ok(Reply {
        header,
        body: c.reply[OUT_HEADER_LEN..].to_vec(),
    })
}

/// The checks of [`parse_reply`], returning only the header.
pub fn parse_reply_header(c: &Completion, unique: u64) -> Result<OutHeader> {
    if (c.used_len as u64) > c.writable_capacity {
        return Err(Error::BadReply(format!(
            "used len {} exceeds writable buffers ({} bytes)",
            c.used_len, c.writable_capacity
        )));
    }
    if (c.used_len as usize) < OUT_HEADER_LEN || c.reply.len() < OUT_HEADER_LEN {
        return Err(Error::BadReply(format!(
            "used len {} shorter than the out header",
            c.used_len
        )));
    }
    let header: OutHeader = parse_obj(&c.reply)?;
    if header.len != c.used_len {
        return Err(Error::BadReply(format!(
            "OutHeader.len {} != used len {}",
            header.len, c.used_len
        )));
    }
    if header.unique != unique {
        return Err(Error::BadReply(format!(
            "unique {} != expected {}",
            header.unique, unique
        )));
    }
    if header.error > 0 || header.error < -4095 {
        return Err(Error::BadReply(format!("error field {}", header.error)));
    }
    Ok(header)
}

/// [`parse_reply`] consuming the completion (no second copy of the body).
pub fn parse_reply_owned(c: Completion, unique: u64) -> Result<Reply> {
    let header = parse_reply_header(&c, unique)?;
    let mut body = c.reply;
    body.drain(..OUT_HEADER_LEN);
    Ok(Reply { header, body })
}

/// One directory entry from READDIR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Inode number.
    pub ino: u64,
    /// Offset cookie of the next entry.
    pub off: u64,
    /// `DT_*` type.
    pub type_: u32,
    /// Raw name.
    pub name: Vec<u8>,
}

/// One directory entry from READDIRPLUS.
#[derive(Debug, Clone)]
pub struct DirEntryPlus {
    /// Lookup result (nodeid 0 = no lookup count taken).
    pub entry: EntryOut,
    /// The dirent part.
    pub dirent: DirEntry,
}

fn pad8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// Parse a READDIR reply body.
pub fn parse_dirents(mut b: &[u8]) -> Result<Vec<DirEntry>> {
    let mut v = Vec::new();
    while !b.is_empty() {
        let d: Dirent = parse_obj(b)?;
        let (de, used) = dirent_at(b, 0, d)?;
        v.push(de);
        b = &b[used.min(b.len())..];
    }
    Ok(v)
}

fn dirent_at(b: &[u8], at: usize, d: Dirent) -> Result<(DirEntry, usize)> {
    let name_start = at + size_of::<Dirent>();
    let name_end = name_start
        .checked_add(d.namelen as usize)
        .filter(|&e| e <= b.len())
        .ok_or_else(|| Error::BadReply(format!("dirent namelen {} overruns body", d.namelen)))?;
    Ok((
        DirEntry {
            ino: d.ino,
            off: d.off,
            type_: d.type_,
            name: b[name_start..name_end].to_vec(),
        },
        pad8(name_end),
    ))
}

/// Parse a READDIRPLUS reply body.
pub fn parse_direntplus(mut b: &[u8]) -> Result<Vec<DirEntryPlus>> {
    let mut v = Vec::new();
    while !b.is_empty() {
        let dp: Direntplus = parse_obj(b)?;
        let (de, used) = dirent_at(b, size_of::<EntryOut>(), dp.dirent)?;
        v.push(DirEntryPlus {
            entry: dp.entry_out,
            dirent: de,
        });
        b = &b[used.min(b.len())..];
    }
    Ok(v)
}

/// Result of GETXATTR/LISTXATTR: the size (when asked with size 0) or the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XattrReply {
    /// Size needed (request had size 0).
    Size(u32),
    /// Value / NUL-separated name list.
    Data(Vec<u8>),
}

/// A submitted request not yet claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pending {
    /// Chain token.
    pub token: Token,
    /// FUSE unique.
    pub unique: u64,
    /// FUSE opcode.
    pub opcode: u32,
}

/// Typed FUSE session over a [`Frontend`]. Nodeid 1 ([`ROOT_ID`]) is the root.
///
/// Synchronous helpers (`lookup`, `read`, ...) send on the request queue and wait;
/// for pipelining use [`submit`](Self::submit) / [`wait_any_reply`](Self::wait_any_reply).
pub struct FuseSession {
    fe: Frontend,
    unique: u64,
    uid: u32,
    gid: u32,
    pid: u32,
    compact: bool,
    init_out: Option<InitOut>,
    pending: HashMap<Token, Pending>,
}

impl std::fmt::Debug for FuseSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FuseSession")
            .field("fe", &self.fe)
            .field("unique", &self.unique)
            .field("init_out", &self.init_out)
            .field("pending", &self.pending.len())
            .finish()
    }
}

/// Error if the daemon rejected it, otherwise `()`.
fn unit(r: Reply) -> Result<()> {
    r.into_result().map(|_| ())
}

impl FuseSession {
    /// Wrap a connected frontend (INIT not yet sent).
    pub fn new(fe: Frontend) -> Self {
        FuseSession {
            fe,
            unique: 0,
            uid: 0,
            gid: 0,
            pid: 1,
            compact: false,
            init_out: None,
            pending: HashMap::new(),
        }
    }

    /// Connect with default options (INIT not yet sent).
    pub fn connect(path: impl AsRef<Path>) -> Result<Self> {
        Ok(Self::new(Frontend::connect(path)?))
    }

    /// Connect with `opts` (INIT not yet sent).
    pub fn connect_with(path: impl AsRef<Path>, opts: &ConnectOptions) -> Result<Self> {
        Ok(Self::new(Frontend::connect_with(path, opts)?))
    }

    /// The frontend, e.g. for raw chains on the same connection.
    pub fn frontend(&mut self) -> &mut Frontend {
        &mut self.fe
    }

    /// Give the frontend back.
    pub fn into_frontend(self) -> Frontend {
        self.fe
    }

    /// uid/gid/pid put in every InHeader (default 0/0/1).
    pub fn set_creds(&mut self, uid: u32, gid: u32, pid: u32) {
        (self.uid, self.gid, self.pid) = (uid, gid, pid);
    }

    /// Use 1 readable + 1 writable descriptor per request instead of the kernel-like
    /// split (fewer descriptors for deep queues).
    pub fn set_compact_chains(&mut self, on: bool) {
        self.compact = on;
    }

    /// The daemon's INIT reply, once [`init`](Self::init) succeeded.
    pub fn init_out(&self) -> Option<&InitOut> {
        self.init_out.as_ref()
    }

    /// Largest WRITE payload the daemon accepts (after INIT; 4 KiB before).
    pub fn max_write(&self) -> u32 {
        self.init_out.map(|i| i.max_write).unwrap_or(4096)
    }

    /// Next request unique (also useful to build raw requests).
    pub fn next_unique(&mut self) -> u64 {
        self.unique += 1;
        self.unique
    }

    // ---- generic submit / wait ---------------------------------------------------------

    /// Submit a request on queue `q`: InHeader + `args` readable, and (when
    /// `reply_size` is `Some(n)`) an OutHeader plus `n` bytes of body writable.
    /// `None` makes a no-reply chain (FORGET style).
    pub fn submit_on(
        &mut self,
        q: usize,
        opcode: u32,
        nodeid: u64,
        args: &[&[u8]],
        reply_size: Option<usize>,
    ) -> Result<Pending> {
        let unique = self.next_unique();
        let args_len: usize = args.iter().map(|a| a.len()).sum();
        let in_len = IN_HEADER_LEN + args_len;
        let header = InHeader {
            len: in_len as u32,
            opcode,
            unique,
            nodeid,
            uid: self.uid,
            gid: self.gid,
            pid: self.pid,
            padding: 0,
        };
        let in_buf = self.fe.alloc(in_len)?;
        let out = match reply_size {
            Some(n) => match self.fe.alloc(OUT_HEADER_LEN + n) {
                Ok(b) => Some((b, n)),
                Err(e) => {
                    self.fe.free(in_buf);
                    return Err(e);
                }
            },
            None => None,
        };
        let r = self.fill_and_submit(q, in_buf, in_len, &header, args, out);
        if r.is_err() {
            self.fe.free(in_buf);
            if let Some((b, _)) = out {
                self.fe.free(b);
            }
        }
        let token = r?;
        let p = Pending {
            token,
            unique,
            opcode,
        };
        self.pending.insert(token, p);
        Ok(p)
    }

    fn fill_and_submit(
        &mut self,
        q: usize,
        in_buf: crate::memory::GuestBuf,
        in_len: usize,
        header: &InHeader,
        args: &[&[u8]],
        out: Option<(crate::memory::GuestBuf, usize)>,
    ) -> Result<Token> {
        let mem = self.fe.mem();
        let mut descs: Vec<(u64, u32, u16)> = Vec::with_capacity(args.len() + 3);
        mem.write(in_buf.addr, header.as_slice())?;
        descs.push((in_buf.addr, IN_HEADER_LEN as u32, 0));
        let mut off = IN_HEADER_LEN as u64;
        for a in args.iter().filter(|a| !a.is_empty()) {
            mem.write(in_buf.addr + off, a)?;
            descs.push((in_buf.addr + off, a.len() as u32, 0));
            off += a.len() as u64;
        }
        if self.compact {
            descs.clear();
            descs.push((in_buf.addr, in_len as u32, 0));
        }
        let mut data = ChainData {
            bufs: vec![in_buf],
            writable: Vec::new(),
        };
        if let Some((b, n)) = out {
            data.bufs.push(b);
            if self.compact || n == 0 {
                let l = (OUT_HEADER_LEN + n) as u32;
                descs.push((b.addr, l, VIRTQ_DESC_F_WRITE));
                data.writable.push((b.addr, l));
            } else {
                let body = b.addr + OUT_HEADER_LEN as u64;
                descs.push((b.addr, OUT_HEADER_LEN as u32, VIRTQ_DESC_F_WRITE));
                descs.push((body, n as u32, VIRTQ_DESC_F_WRITE));
                data.writable.push((b.addr, OUT_HEADER_LEN as u32));
                data.writable.push((body, n as u32));
            }
        }
        self.fe.submit(q, &descs, data)
    }

    /// [`submit_on`](Self::submit_on) the request queue, expecting a reply body of up to
    /// `reply_size` bytes.
    pub fn submit(
        &mut self,
        opcode: u32,
        nodeid: u64,
        args: &[&[u8]],
        reply_size: usize,
    ) -> Result<Pending> {
        self.submit_on(REQUEST_QUEUE, opcode, nodeid, args, Some(reply_size))
    }

    fn check(&mut self, p: Pending, c: Completion) -> Result<Reply> {
        self.pending.remove(&p.token);
        parse_reply_owned(c, p.unique)
    }

    /// Wait for the reply to `p` (up to `timeout`). On timeout `p` stays pending: wait
    /// again or [`abandon`](Self::abandon) it.
    pub fn wait_reply_timeout(&mut self, p: Pending, timeout: Duration) -> Result<Reply> {
        let c = self.fe.wait(p.token, timeout)?;
        self.check(p, c)
    }

    /// Wait for the reply to `p` with the default timeout.
    pub fn wait_reply(&mut self, p: Pending) -> Result<Reply> {
        let t = self.fe.timeout();
        self.wait_reply_timeout(p, t)
    }

    /// Wait for whichever pending request-queue reply comes first. The outer error is a
    /// transport error (timeout, bad used id); the inner result is that request's reply.
    pub fn wait_any_reply(&mut self) -> Result<(Pending, Result<Reply>)> {
        if self.pending.is_empty() {
            return Err(Error::InvalidArgument("no request pending".into()));
        }
        let t = self.fe.timeout();
        let pending = &self.pending;
        let c = self
            .fe
            .wait_any_matching(REQUEST_QUEUE, t, |tok| pending.contains_key(tok))?;
        let p = self
            .pending
            .remove(&c.token)
            .ok_or(Error::UnknownToken(c.token))?;
        let r = parse_reply_owned(c, p.unique);
        Ok((p, r))
    }

    /// Number of submitted, unclaimed requests.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Give up on `p` (its buffers are freed if the daemon ever returns it).
    pub fn abandon(&mut self, p: Pending) {
        self.pending.remove(&p.token);
        self.fe.abandon(p.token);
    }

    /// Send a request on the request queue and wait; the reply body on success.
    pub fn request(
        &mut self,
        opcode: u32,
        nodeid: u64,
        args: &[&[u8]],
        reply_size: usize,
    ) -> Result<Vec<u8>> {
        self.call(opcode, nodeid, args, reply_size)?.into_result()
    }

    /// Send a request and wait; the checked reply (error replies included).
    pub fn call(
        &mut self,
        opcode: u32,
        nodeid: u64,
        args: &[&[u8]],
        reply_size: usize,
    ) -> Result<Reply> {
        let p = self.submit(opcode, nodeid, args, reply_size)?;
        let r = self.wait_reply(p);
        if matches!(r, Err(Error::Timeout { .. })) {
            self.abandon(p);
        }
        r
    }

    fn typed<T: ByteValued + Default>(
        &mut self,
        opcode: Opcode,
        nodeid: u64,
        args: &[&[u8]],
    ) -> Result<T> {
        let body = self.request(opcode as u32, nodeid, args, size_of::<T>())?;
        parse_obj(&body)
    }

    fn no_reply(&mut self, opcode: Opcode, nodeid: u64, args: &[&[u8]]) -> Result<()> {
        let p = self.submit_on(HIPRIO_QUEUE, opcode as u32, nodeid, args, None)?;
        let t = self.fe.timeout();
        let r = self.fe.wait(p.token, t);
        self.pending.remove(&p.token);
        match r {
            Ok(_) => Ok(()),
            Err(e) => {
                self.fe.abandon(p.token);
                Err(e)
            }
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_sizes() {
        assert_eq!(IN_HEADER_LEN, 40);
        assert_eq!(OUT_HEADER_LEN, 16);
        assert_eq!(size_of::<EntryOut>(), 128);
        assert_eq!(size_of::<AttrOut>(), 104);
        assert_eq!(size_of::<WriteIn>(), 40);
        assert_eq!(size_of::<Dirent>(), 24);
        assert_eq!(size_of::<InitOut>(), 64);
    }

    #[test]
    fn encode_lookup() {
        let v = encode_request(7, Opcode::Lookup as u32, 1, &[&cstr(b"abc")]);
        assert_eq!(v.len(), 44);
        let h: InHeader = parse_obj(&v).unwrap();
        assert_eq!((h.len, h.opcode, h.unique, h.nodeid), (44, 1, 7, 1));
        assert_eq!(&v[40..], b"abc\0");
    }

    fn dirent_bytes(ino: u64, off: u64, ty: u32, name: &[u8]) -> Vec<u8> {
        let d = Dirent {
            ino,
            off,
            namelen: name.len() as u32,
            type_: ty,
        };
        let mut v = d.as_slice().to_vec();
        v.extend_from_slice(name);
        v.resize(pad8(v.len()), 0);
        v
    }

    #[test]
    fn parse_readdir() {
        let mut b = dirent_bytes(5, 1, 4, b".");
        b.extend(dirent_bytes(6, 2, 8, b"file-name"));
        let e = parse_dirents(&b).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].name, b"file-name");
        assert_eq!((e[1].ino, e[1].off, e[1].type_), (6, 2, 8));
        // Truncated name is an error, not a panic.
        let mut bad = dirent_bytes(5, 1, 4, b"abcdef");
        bad.truncate(26);
        assert!(parse_dirents(&bad).is_err());
    }

    #[test]
    fn parse_readdirplus() {
        let mut dp = Direntplus::default();
        dp.entry_out.nodeid = 9;
        dp.dirent = Dirent {
            ino: 9,
            off: 1,
            namelen: 3,
            type_: 8,
        };
        let mut b = dp.as_slice().to_vec();
        b.extend_from_slice(b"xyz");
        b.resize(pad8(b.len()), 0);
        let e = parse_direntplus(&b).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].entry.nodeid, 9);
        assert_eq!(e[0].dirent.name, b"xyz");
    }

    fn completion(reply: Vec<u8>, used_len: u32, cap: u64) -> Completion {
        Completion {
            token: Token {
                queue: 1,
                head: 0,
                serial: 1,
            },
            used_len,
            reply,
            writable_capacity: cap,
        }
    }

    #[test]
    fn reply_checks() {
        let h = OutHeader {
            len: 20,
            error: 0,
            unique: 3,
        };
        let mut b = h.as_slice().to_vec();
        b.extend_from_slice(&[1, 2, 3, 4]);
        let r = parse_reply(&completion(b.clone(), 20, 64), 3).unwrap();
        assert_eq!(r.body, vec![1, 2, 3, 4]);
        // unique mismatch
        assert!(parse_reply(&completion(b.clone(), 20, 64), 4).is_err());
        // len mismatch
        assert!(parse_reply(&completion(b.clone(), 24, 64), 3).is_err());
        // used len beyond the buffers
        assert!(parse_reply(&completion(b, 20, 16), 3).is_err());
        // error reply -> errno
        let h = OutHeader {
            len: 16,
            error: -libc::ENOENT,
            unique: 5,
        };
        let r = parse_reply(&completion(h.as_slice().to_vec(), 16, 16), 5).unwrap();
        assert_eq!(r.into_result().unwrap_err().errno(), Some(libc::ENOENT));
        // short
        assert!(parse_reply(&completion(vec![0; 8], 8, 16), 5).is_err());
    }
}
