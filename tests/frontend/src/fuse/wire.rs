//! The bytes of FUSE requests and replies: encoding a request, checking a reply's header,
//! parsing reply bodies and directory listings.

use std::mem::size_of;

use vm_memory::ByteValued;

use super::*;
use crate::error::{Error, Result};
use crate::vhost::Completion;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtqueue::Token;

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
