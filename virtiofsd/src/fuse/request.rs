//! Inspection of one FUSE request before it reaches the filesystem.
//!
//! A guest kernel can put any bytes in a descriptor chain. [`inspect`] reads the in-header and,
//! for the opcodes that carry names or offsets, the fixed part of the body, and decides whether
//! the request is served, answered with an error, or dropped (requests that never get a reply).
//! It also reports what the request costs (READ/WRITE payload size) for the rate limiter, so the
//! request is peeked once.
//!
//! This is the first wall between the guest and the host: names with `/`, `.`/`..` (outside
//! LOOKUP), empty or overlong names, interior NULs and offsets beyond `i64::MAX` never reach
//! the passthrough filesystem, in every sandbox mode.

use std::mem::size_of;

use fuse_backend_rs::abi::fuse_abi::OutHeader;
use fuse_backend_rs::abi::fuse_abi::{
    CreateIn, FallocateIn, InHeader, InitIn, LinkIn, LseekIn, MkdirIn, MknodIn, Opcode, ReadIn,
    Rename2In, RenameIn, SetxattrIn, WriteIn,
};
use fuse_backend_rs::transport::Reader;
use vm_memory::bitmap::BitmapSlice;
use vm_memory::ByteValued;

use crate::fuse::session::Session;

/// The readable bytes of a request, front to back: the library's `Reader`, or the
/// allocation-free `handler::ChainBytes` the vring thread inspects with.
pub trait Source {
    /// Readable bytes left.
    fn available_bytes(&self) -> usize;
    /// Fills `buf` or fails.
    fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()>;
    /// Reads one plain-data object.
    fn read_obj<T: ByteValued + Default>(&mut self) -> std::io::Result<T> {
        let mut v = T::default();
        self.read_exact(v.as_mut_slice())?;
        Ok(v)
    }
}

impl<S: BitmapSlice> Source for Reader<'_, S> {
    fn available_bytes(&self) -> usize {
        Reader::available_bytes(self)
    }
    fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        std::io::Read::read_exact(self, buf)
    }
}

/// Longest name one path component may have (Linux `NAME_MAX`).
pub const NAME_MAX: usize = 255;
/// Longest symlink target (Linux `PATH_MAX` without the NUL).
pub const PATH_MAX: usize = 4095;

use crate::fuse::xattr::{XATTR_NAME_MAX, XATTR_SIZE_MAX};

/// Opcode numbers as `u32` constants, for matching.
mod op {
    use super::Opcode;
    pub const LOOKUP: u32 = Opcode::Lookup as u32;
    pub const FORGET: u32 = Opcode::Forget as u32;
    pub const SYMLINK: u32 = Opcode::Symlink as u32;
    pub const MKNOD: u32 = Opcode::Mknod as u32;
    pub const MKDIR: u32 = Opcode::Mkdir as u32;
    pub const UNLINK: u32 = Opcode::Unlink as u32;
    pub const RMDIR: u32 = Opcode::Rmdir as u32;
    pub const RENAME: u32 = Opcode::Rename as u32;
    pub const LINK: u32 = Opcode::Link as u32;
    pub const READ: u32 = Opcode::Read as u32;
    pub const WRITE: u32 = Opcode::Write as u32;
    pub const INIT: u32 = Opcode::Init as u32;
    pub const CREATE: u32 = Opcode::Create as u32;
    pub const INTERRUPT: u32 = Opcode::Interrupt as u32;
    pub const DESTROY: u32 = Opcode::Destroy as u32;
    pub const BATCH_FORGET: u32 = Opcode::BatchForget as u32;
    pub const FALLOCATE: u32 = Opcode::Fallocate as u32;
    pub const RENAME2: u32 = Opcode::Rename2 as u32;
    pub const LSEEK: u32 = Opcode::Lseek as u32;
    pub const COPY_FILE_RANGE: u32 = 47;
    pub const SETXATTR: u32 = Opcode::Setxattr as u32;
    pub const READDIR: u32 = Opcode::Readdir as u32;
    pub const READDIRPLUS: u32 = Opcode::Readdirplus as u32;
}

/// Which virtio-fs queue a request arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueKind {
    /// Queue 0: FORGET, BATCH_FORGET and INTERRUPT only; never throttled.
    Hiprio,
    /// Queue 1 and up: every other request.
    Request,
}

/// What a request will move, charged by the rate limiter before it is served. Every opcode that
/// moves file data is charged by its bytes: READ and WRITE (COPY_FILE_RANGE is refused with
/// ENOSYS until it has a cost here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cost {
    /// READ of this many bytes: the size asked for, at most the chain's writable room for data
    /// (see [`Cost::within_room`]).
    Read(u32),
    /// WRITE carrying this many payload bytes.
    Write(u32),
    /// Any other request on the request queue.
    Other,
    /// Hiprio traffic: never charged.
    Free,
}

impl Cost {
    /// The cost of a request whose chain has `writable` device-writable bytes: a READ can move
    /// no more than what fits after the reply header, so it is charged (and served) by that.
    pub fn within_room(self, writable: u64) -> Cost {
        match self {
            Cost::Read(n) => {
                let room = writable.saturating_sub(size_of::<OutHeader>() as u64);
                Cost::Read(n.min(u32::try_from(room).unwrap_or(u32::MAX)))
            }
            other => other,
        }
    }

    /// The bytes this request may move (0 for requests that move no file data).
    pub fn bytes(self) -> u32 {
        match self {
            Cost::Read(n) | Cost::Write(n) => n,
            Cost::Other | Cost::Free => 0,
        }
    }
}

/// The decision about one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Hand the request to the filesystem server.
    Serve {
        /// The request's id, echoed in the reply.
        unique: u64,
        /// The FUSE opcode.
        opcode: u32,
        /// What the limits charge for it.
        cost: Cost,
    },
    /// Answer with this errno without touching the filesystem.
    Reject {
        /// The request's id, echoed in the reply.
        unique: u64,
        /// The FUSE opcode.
        opcode: u32,
        /// The error replied.
        errno: i32,
    },
    /// No reply is possible or expected (FORGET, INTERRUPT, an unreadable header).
    Drop,
}

/// Inspection switches. `check_names: false` exists only so tests can prove the hostile-name
/// tests fail without the check (a seeded bug); the CLI never sets it.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Validate every name a guest sends.
    pub check_names: bool,
    /// Refuse every mutating request with EROFS.
    pub readonly: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            check_names: true,
            readonly: false,
        }
    }
}

/// Whether an opcode never gets a reply.
pub fn is_reply_less(opcode: u32) -> bool {
    matches!(opcode, op::FORGET | op::BATCH_FORGET | op::INTERRUPT)
}

/// Inspects the request that `r` reads from; `r` is consumed (use a separate reader to serve).
/// `readable` is the number of readable bytes in the chain.
pub fn inspect(
    r: &mut impl Source,
    queue: QueueKind,
    session: &Session,
    policy: Policy,
) -> Verdict {
    let readable = r.available_bytes();
    let Ok(h) = r.read_obj::<InHeader>() else {
        return Verdict::Drop;
    };
    let reject = |errno| {
        if is_reply_less(h.opcode) {
            Verdict::Drop
        } else {
            Verdict::Reject {
                unique: h.unique,
                opcode: h.opcode,
                errno,
            }
        }
    };
    let len = h.len as usize;
    if len < size_of::<InHeader>() || len > readable {
        return reject(libc::EINVAL);
    }
    let body_len = len - size_of::<InHeader>();

    match queue {
        QueueKind::Hiprio if !is_reply_less(h.opcode) => return reject(libc::EINVAL),
        QueueKind::Hiprio => {
            return if session.is_initialized() {
                serve(&h, Cost::Free)
            } else {
                Verdict::Drop
            };
        }
        QueueKind::Request => {}
    }

    // Session order: INIT first and once; DESTROY ends the session.
    match (h.opcode, session.is_initialized()) {
        (op::INIT, true) => return reject(libc::EIO),
        (op::INIT, false) => {
            // An unreadable INIT body gets the library's error reply; the session then allows
            // only the smallest sizes.
            let flags = read_fixed::<InitIn>(r, body_len).map_or(0, |i| i.flags);
            session.start(flags);
            return serve(&h, Cost::Other);
        }
        (_, false) => return reject(libc::EIO),
        (op::DESTROY, true) => {
            session.reset();
            return serve(&h, Cost::Other);
        }
        _ => {}
    }

    // Holes in the opcode numbering never reach the library: it turns opcodes below 50 into
    // its `Opcode` enum by transmute when tracing, and these are not values of that enum.
    if matches!(h.opcode, 0 | 7 | 19) {
        return reject(libc::ENOSYS);
    }

    if policy.readonly && mutates(h.opcode) {
        return reject(libc::EROFS);
    }

    match check_body(r, &h, body_len, policy, session.max_io()) {
        Ok(cost) => serve(&h, cost),
        Err(errno) => reject(errno),
    }
}

fn serve(h: &InHeader, cost: Cost) -> Verdict {
    Verdict::Serve {
        unique: h.unique,
        opcode: h.opcode,
        cost,
    }
}

/// Opcodes that change the filesystem (refused under `--readonly`). OPEN and CREATE with write
/// access are handled by the filesystem wrapper, which sees the flags.
pub fn mutates(opcode: u32) -> bool {
    use fuse_backend_rs::abi::fuse_abi::Opcode as O;
    [
        O::Setattr as u32,
        op::SYMLINK,
        op::MKNOD,
        op::MKDIR,
        op::UNLINK,
        op::RMDIR,
        op::RENAME,
        op::LINK,
        op::WRITE,
        O::Setxattr as u32,
        O::Removexattr as u32,
        op::CREATE,
        op::FALLOCATE,
        op::RENAME2,
        op::COPY_FILE_RANGE,
        51, // TMPFILE
    ]
    .contains(&opcode)
}

/// Checks the body of opcodes with names, offsets or sizes; returns the request's cost. A READ
/// or WRITE larger than the session's negotiated maximum (`max_io`) gets EINVAL.
fn check_body<R: Source>(
    r: &mut R,
    h: &InHeader,
    body_len: usize,
    policy: Policy,
    (max_read, max_write): (u32, u32),
) -> Result<Cost, i32> {
    let names = |r: &mut R, fixed: usize, count: usize, dots_ok: bool| {
        if !policy.check_names {
            return Ok(());
        }
        let rest = body_len.checked_sub(fixed).ok_or(libc::EINVAL)?;
        if rest > count * (NAME_MAX + 1) {
            return Err(libc::ENAMETOOLONG);
        }
        skip(r, fixed)?;
        let mut buf = vec![0u8; rest];
        r.read_exact(&mut buf).map_err(|_| libc::EINVAL)?;
        check_names(&buf, count, dots_ok)
    };
    match h.opcode {
        op::LOOKUP => names(r, 0, 1, true)?,
        op::UNLINK | op::RMDIR => names(r, 0, 1, false)?,
        op::MKDIR => names(r, size_of::<MkdirIn>(), 1, false)?,
        op::MKNOD => names(r, size_of::<MknodIn>(), 1, false)?,
        op::CREATE => names(r, size_of::<CreateIn>(), 1, false)?,
        op::LINK => names(r, size_of::<LinkIn>(), 1, false)?,
        op::RENAME => names(r, size_of::<RenameIn>(), 2, false)?,
        op::RENAME2 => names(r, size_of::<Rename2In>(), 2, false)?,
        op::SYMLINK if policy.check_names => {
            let mut buf = vec![0u8; body_len.min(NAME_MAX + PATH_MAX + 2 + 1)];
            r.read_exact(&mut buf).map_err(|_| libc::EINVAL)?;
            if body_len > buf.len() {
                return Err(libc::ENAMETOOLONG);
            }
            check_symlink(&buf)?;
        }
        op::READ => {
            let rd: ReadIn = read_fixed(r, body_len)?;
            check_range(rd.offset, u64::from(rd.size))?;
            if rd.size > max_read {
                return Err(libc::EINVAL);
            }
            return Ok(Cost::Read(rd.size));
        }
        op::WRITE => {
            let wr: WriteIn = read_fixed(r, body_len)?;
            check_range(wr.offset, u64::from(wr.size))?;
            if body_len - size_of::<WriteIn>() < wr.size as usize || wr.size > max_write {
                return Err(libc::EINVAL);
            }
            return Ok(Cost::Write(wr.size));
        }
        // The library allocates the size a directory read asks for: no more than a READ may.
        op::READDIR | op::READDIRPLUS => {
            let rd: ReadIn = read_fixed(r, body_len)?;
            if rd.size > max_read {
                return Err(libc::EINVAL);
            }
        }
        op::FALLOCATE => {
            let fa: FallocateIn = read_fixed(r, body_len)?;
            check_range(fa.offset, fa.length)?;
        }
        op::LSEEK => {
            let ls: LseekIn = read_fixed(r, body_len)?;
            check_range(ls.offset, 0)?;
        }
        // It moves file data, so it may be served only once it is charged by its bytes (and
        // capped like READ and WRITE). The library does not serve it either.
        op::COPY_FILE_RANGE => return Err(libc::ENOSYS),
        // Linux's limits, before the library copies the body: a value above XATTR_SIZE_MAX is
        // E2BIG, a name above XATTR_NAME_MAX is ERANGE.
        op::SETXATTR => {
            let sx: SetxattrIn = read_fixed(r, body_len)?;
            if sx.size > XATTR_SIZE_MAX {
                return Err(libc::E2BIG);
            }
            let name_len = (body_len - size_of::<SetxattrIn>()).saturating_sub(sx.size as usize);
            if name_len > XATTR_NAME_MAX + 1 {
                return Err(libc::ERANGE);
            }
        }
        _ => {}
    }
    Ok(Cost::Other)
}

fn read_fixed<T: ByteValued + Default>(r: &mut impl Source, body_len: usize) -> Result<T, i32> {
    if body_len < size_of::<T>() {
        return Err(libc::EINVAL);
    }
    r.read_obj::<T>().map_err(|_| libc::EINVAL)
}

fn skip(r: &mut impl Source, n: usize) -> Result<(), i32> {
    let mut buf = [0u8; 64];
    let mut left = n;
    while left > 0 {
        let k = left.min(buf.len());
        r.read_exact(&mut buf[..k]).map_err(|_| libc::EINVAL)?;
        left -= k;
    }
    Ok(())
}

/// A file range must stay within `0..=i64::MAX` (the host's `off_t`).
fn check_range(offset: u64, len: u64) -> Result<(), i32> {
    match offset.checked_add(len) {
        Some(end) if end <= i64::MAX as u64 => Ok(()),
        _ => Err(libc::EINVAL),
    }
}

/// `buf` must be exactly `count` NUL-terminated names, each a valid path component.
fn check_names(buf: &[u8], count: usize, dots_ok: bool) -> Result<(), i32> {
    if buf.last() != Some(&0) {
        return Err(libc::EINVAL);
    }
    let parts: Vec<&[u8]> = buf[..buf.len() - 1].split(|b| *b == 0).collect();
    if parts.len() != count {
        return Err(libc::EINVAL);
    }
    parts
        .iter()
        .try_for_each(|name| check_component(name, dots_ok))
}

/// One path component: 1..=NAME_MAX bytes, no `/`, no NUL, and not `.`/`..` unless allowed.
pub fn check_component(name: &[u8], dots_ok: bool) -> Result<(), i32> {
    if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
        return Err(libc::EINVAL);
    }
    if name.len() > NAME_MAX {
        return Err(libc::ENAMETOOLONG);
    }
    if !dots_ok && (name == b"." || name == b"..") {
        return Err(libc::EINVAL);
    }
    Ok(())
}

/// SYMLINK carries `name\0target\0`: the name is a component; the target is any non-empty
/// path without NUL (the guest kernel resolves it, never the daemon).
fn check_symlink(buf: &[u8]) -> Result<(), i32> {
    if buf.last() != Some(&0) {
        return Err(libc::EINVAL);
    }
    let mut parts = buf[..buf.len() - 1].splitn(2, |b| *b == 0);
    let name = parts.next().unwrap_or_default();
    let target = parts.next().ok_or(libc::EINVAL)?;
    check_component(name, false)?;
    if target.is_empty() || target.contains(&0) {
        return Err(libc::EINVAL);
    }
    if target.len() > PATH_MAX {
        return Err(libc::ENAMETOOLONG);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fuse_backend_rs::abi::fuse_abi::FsOptions;

    impl Source for &[u8] {
        fn available_bytes(&self) -> usize {
            self.len()
        }
        fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
            std::io::Read::read_exact(self, buf)
        }
    }

    #[test]
    fn components() {
        assert_eq!(check_component(b"a", false), Ok(()));
        assert_eq!(check_component(b"", false), Err(libc::EINVAL));
        assert_eq!(check_component(b"..", false), Err(libc::EINVAL));
        assert_eq!(check_component(b".", false), Err(libc::EINVAL));
        assert_eq!(check_component(b"..", true), Ok(()));
        assert_eq!(check_component(b"../x", true), Err(libc::EINVAL));
        assert_eq!(check_component(b"a\0b", false), Err(libc::EINVAL));
        assert_eq!(
            check_component(&[b'x'; 256], false),
            Err(libc::ENAMETOOLONG)
        );
        assert_eq!(check_component(&[b'x'; 255], false), Ok(()));
    }

    #[test]
    fn name_lists() {
        assert_eq!(check_names(b"a\0", 1, false), Ok(()));
        assert_eq!(check_names(b"a", 1, false), Err(libc::EINVAL));
        assert_eq!(check_names(b"a\0b\0", 1, false), Err(libc::EINVAL));
        assert_eq!(check_names(b"a\0b\0", 2, false), Ok(()));
        assert_eq!(check_names(b"a\0\0", 2, false), Err(libc::EINVAL));
        assert_eq!(check_names(b"a\0../b\0", 2, false), Err(libc::EINVAL));
    }

    #[test]
    fn symlinks() {
        assert_eq!(check_symlink(b"l\0/etc/passwd\0"), Ok(()));
        assert_eq!(check_symlink(b"l\0\0"), Err(libc::EINVAL));
        assert_eq!(check_symlink(b"../l\0t\0"), Err(libc::EINVAL));
        assert_eq!(check_symlink(b"l\0t"), Err(libc::EINVAL));
    }

    /// A request body in memory.
    struct Body<'a>(&'a [u8]);

    impl Source for Body<'_> {
        fn available_bytes(&self) -> usize {
            self.0.len()
        }
        fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
            let (head, rest) = self
                .0
                .split_at_checked(buf.len())
                .ok_or(std::io::ErrorKind::UnexpectedEof)?;
            buf.copy_from_slice(head);
            self.0 = rest;
            Ok(())
        }
    }

    fn setxattr(name_len: usize, value_len: usize, claimed: u32) -> Result<Cost, i32> {
        let sx = SetxattrIn {
            size: claimed,
            flags: 0,
        };
        let mut body = sx.as_slice().to_vec();
        body.extend(vec![b'n'; name_len]);
        body.push(0);
        body.extend(vec![b'v'; value_len]);
        let h = InHeader {
            opcode: op::SETXATTR,
            ..Default::default()
        };
        check_body(
            &mut Body(&body),
            &h,
            body.len(),
            Policy::default(),
            (1 << 20, 1 << 20),
        )
    }

    #[test]
    fn setxattr_limits() {
        assert_eq!(setxattr(10, 65536, 65536), Ok(Cost::Other));
        assert_eq!(setxattr(10, 65537, 65537), Err(libc::E2BIG));
        // A claimed size above the limit, whatever the body carries.
        assert_eq!(setxattr(10, 1, u32::MAX), Err(libc::E2BIG));
        assert_eq!(setxattr(255, 1, 1), Ok(Cost::Other));
        assert_eq!(setxattr(256, 1, 1), Err(libc::ERANGE));
        // A body shorter than the fixed part.
        let h = InHeader {
            opcode: op::SETXATTR,
            ..Default::default()
        };
        assert_eq!(
            check_body(
                &mut Body(&[0; 4]),
                &h,
                4,
                Policy::default(),
                (1 << 20, 1 << 20)
            ),
            Err(libc::EINVAL)
        );
    }

    /// A READ or WRITE above the session's maximum, a READDIR buffer above the READ maximum,
    /// and COPY_FILE_RANGE (no cost yet) are refused; within the limits the cost is what moves.
    #[test]
    fn sizes_are_capped() {
        let init = Session::default();
        init.start(FsOptions::MAX_PAGES.bits() as u32);
        let page = fuse_backend_rs::transport::pagesize() as u32;
        assert_eq!(init.max_io(), (256 * page, 256 * page));
        assert_eq!(Session::negotiated_max(0), (32 * page, 4096));
        let bw = FsOptions::BIG_WRITES.bits() as u32;
        assert_eq!(Session::negotiated_max(bw), (32 * page, 256 * page));
        let run = |opcode: u32, body: &[u8]| {
            let mut req = Vec::new();
            let h = InHeader {
                len: (size_of::<InHeader>() + body.len()) as u32,
                opcode,
                unique: 9,
                nodeid: 1,
                ..Default::default()
            };
            req.extend_from_slice(h.as_slice());
            req.extend_from_slice(body);
            let mut r: &[u8] = &req;
            inspect(&mut r, QueueKind::Request, &init, Policy::default())
        };
        let rd = |size: u32| {
            let mut b = ReadIn {
                size,
                ..Default::default()
            }
            .as_slice()
            .to_vec();
            b.truncate(size_of::<ReadIn>());
            b
        };
        let cost = |v: Verdict| match v {
            Verdict::Serve { cost, .. } => Ok(cost),
            Verdict::Reject { errno, .. } => Err(errno),
            Verdict::Drop => Err(0),
        };
        let max = 256 * page;
        assert_eq!(cost(run(op::READ, &rd(max))), Ok(Cost::Read(max)));
        assert_eq!(cost(run(op::READ, &rd(max + 1))), Err(libc::EINVAL));
        assert_eq!(cost(run(op::READ, &rd(u32::MAX))), Err(libc::EINVAL));
        let mut wr = WriteIn {
            size: max + 1,
            ..Default::default()
        }
        .as_slice()
        .to_vec();
        wr.resize(size_of::<WriteIn>() + max as usize + 1, 0);
        assert_eq!(cost(run(op::WRITE, &wr)), Err(libc::EINVAL));
        assert_eq!(cost(run(op::COPY_FILE_RANGE, &[0; 56])), Err(libc::ENOSYS));
        assert_eq!(cost(run(op::READDIR, &rd(4096))), Ok(Cost::Other));
        assert_eq!(cost(run(op::READDIRPLUS, &rd(max + 1))), Err(libc::EINVAL));
        assert_eq!(cost(run(op::READDIR, &rd(u32::MAX))), Err(libc::EINVAL));
        // The cost of a READ is bounded by its chain's room after the reply header.
        assert_eq!(Cost::Read(max).within_room(16 + 4096), Cost::Read(4096));
        assert_eq!(Cost::Read(100).within_room(1 << 40), Cost::Read(100));
        assert_eq!(Cost::Read(100).within_room(3), Cost::Read(0));
        assert_eq!(Cost::Write(100).within_room(0), Cost::Write(100));
    }

    #[test]
    fn ranges() {
        assert_eq!(check_range(0, 4096), Ok(()));
        assert_eq!(check_range(i64::MAX as u64, 0), Ok(()));
        assert_eq!(check_range(1 << 63, 0), Err(libc::EINVAL));
        assert_eq!(check_range(u64::MAX, 1), Err(libc::EINVAL));
        assert_eq!(check_range(i64::MAX as u64, 1), Err(libc::EINVAL));
    }
}
