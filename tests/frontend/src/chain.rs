//! Raw and deliberately malformed descriptor chains.
//!
//! A chain is a list of [`Desc`]; each names its buffer ([`DescKind`]) and where its
//! `next` points ([`Link`]). Buffers of kind `Readable`/`Writable`/`Indirect` are
//! allocated from the guest buffer pool; `Raw` ones are written verbatim, so they can
//! point anywhere (outside guest memory, into the rings, ...).
//!
//! ```no_run
//! # use vufs_frontend::{Frontend, Desc, Link, REQUEST_QUEUE};
//! # use std::time::Duration;
//! # fn f(fe: &mut Frontend) -> vufs_frontend::Result<()> {
//! // A two-descriptor loop: 0 -> 1 -> 0.
//! let chain = [Desc::readable(vec![0u8; 40]), Desc::writable(4096).link(Link::To(0))];
//! match fe.send_chain(REQUEST_QUEUE, &chain, Duration::from_secs(2)) {
//!     Ok(c) => println!("used len {}", c.used_len),
//!     Err(e) if e.is_timeout() => println!("dropped"),
//!     Err(e) => return Err(e),
//! }
//! # Ok(()) }
//! ```

use std::time::Duration;

use crate::error::{Error, Result};
use crate::memory::GuestBuf;
use crate::vhost::{Completion, Frontend};
use crate::virtqueue::{
    ChainData, RawDescriptor, Token, DESC_SIZE, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT,
    VIRTQ_DESC_F_WRITE,
};

/// Where a descriptor's `next` field points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// To the following entry of the same list; the last entry ends the chain.
    Auto,
    /// To entry `i` of the same list (a loop when `i` is not after this one).
    To(usize),
    /// `NEXT` set with this literal table index (may be ≥ queue size, or another chain's).
    Raw(u16),
    /// No `NEXT` flag: the chain ends here even if more entries follow.
    End,
}

/// The buffer a descriptor describes.
#[derive(Debug, Clone)]
pub enum DescKind {
    /// Device-readable buffer holding these bytes (zero length allowed).
    Readable(Vec<u8>),
    /// Device-writable buffer of this many zeroed bytes; its contents are returned in
    /// [`Completion::reply`].
    Writable(u32),
    /// Verbatim `addr`/`len`/`flags` (the `NEXT` bit is still governed by the [`Link`]).
    Raw {
        /// Guest address.
        addr: u64,
        /// Length.
        len: u32,
        /// Flags (WRITE, INDIRECT, ...).
        flags: u16,
    },
    /// An indirect table built from these entries (their links are table-relative).
    /// `len` overrides the table length (default `16 × entries`): odd, zero or huge.
    Indirect {
        /// Entries of the table.
        table: Vec<Desc>,
        /// Length to put in the descriptor instead of `16 × table.len()`.
        len: Option<u32>,
    },
}

/// One descriptor of a raw chain.
#[derive(Debug, Clone)]
pub struct Desc {
    /// Buffer.
    pub kind: DescKind,
    /// `next` target.
    pub link: Link,
    /// Flags OR-ed in (e.g. `VIRTQ_DESC_F_WRITE` on a readable buffer).
    pub extra_flags: u16,
}

impl Desc {
    fn new(kind: DescKind) -> Self {
        Desc {
            kind,
            link: Link::Auto,
            extra_flags: 0,
        }
    }
    /// Readable buffer with `bytes`.
    pub fn readable(bytes: impl Into<Vec<u8>>) -> Self {
        Self::new(DescKind::Readable(bytes.into()))
    }
    /// Writable buffer of `len` bytes.
    pub fn writable(len: u32) -> Self {
        Self::new(DescKind::Writable(len))
    }
    /// Verbatim descriptor (address may be outside guest memory).
    pub fn raw(addr: u64, len: u32, flags: u16) -> Self {
        Self::new(DescKind::Raw { addr, len, flags })
    }
    /// Indirect table holding `table`.
    pub fn indirect(table: Vec<Desc>) -> Self {
        Self::new(DescKind::Indirect { table, len: None })
    }
    /// Indirect table holding `table` but advertising length `len`.
    pub fn indirect_with_len(table: Vec<Desc>, len: u32) -> Self {
        Self::new(DescKind::Indirect {
            table,
            len: Some(len),
        })
    }
    /// Set where `next` points.
    pub fn link(mut self, link: Link) -> Self {
        self.link = link;
        self
    }
    /// OR extra flag bits into the descriptor.
    pub fn flags(mut self, extra: u16) -> Self {
        self.extra_flags |= extra;
        self
    }
}

/// Resolve one list (top-level chain or indirect table) into raw descriptors.
/// `ids[i]` is the index entry `i` is stored at (queue ids, or 0..n in a table).
fn build_list(
    fe: &mut Frontend,
    list: &[Desc],
    ids: &[u16],
    data: &mut ChainData,
) -> Result<Vec<RawDescriptor>> {
    let mut out = Vec::with_capacity(list.len());
    for (i, d) in list.iter().enumerate() {
        let (addr, len, mut flags) = match &d.kind {
            DescKind::Readable(bytes) => {
                let b = fe.alloc(bytes.len())?;
                data.bufs.push(b);
                fe.mem().write(b.addr, bytes)?;
                (b.addr, bytes.len() as u32, 0)
            }
            DescKind::Writable(len) => {
                let b = fe.alloc(*len as usize)?;
                data.bufs.push(b);
                fe.mem().fill(b.addr, *len as usize, 0)?;
                data.writable.push((b.addr, *len));
                (b.addr, *len, VIRTQ_DESC_F_WRITE)
            }
            DescKind::Raw { addr, len, flags } => (*addr, *len, *flags),
            DescKind::Indirect { table, len } => {
                let b = fe.alloc((table.len() as u64 * DESC_SIZE) as usize)?;
                data.bufs.push(b);
                let table_ids: Vec<u16> = (0..table.len() as u16).collect();
                let entries = build_list(fe, table, &table_ids, data)?;
                for (j, e) in entries.iter().enumerate() {
                    fe.mem().write_obj(b.addr + j as u64 * DESC_SIZE, *e)?;
                }
                let l = len.unwrap_or((table.len() as u64 * DESC_SIZE) as u32);
                (b.addr, l, VIRTQ_DESC_F_INDIRECT)
            }
        };
        flags |= d.extra_flags;
        let next = match d.link {
            Link::Auto if i + 1 < list.len() => Some(ids[i + 1]),
            Link::Auto | Link::End => None,
            Link::To(j) => Some(*ids.get(j).ok_or_else(|| {
                Error::InvalidArgument(format!("Link::To({j}) outside a list of {}", list.len()))
            })?),
            Link::Raw(n) => Some(n),
        };
        let (flags, next) = match next {
            Some(n) => (flags | VIRTQ_DESC_F_NEXT, n),
            None => (flags & !VIRTQ_DESC_F_NEXT, 0),
        };
        out.push(RawDescriptor {
            addr,
            len,
            flags,
            next,
        });
    }
    Ok(out)
}

impl Frontend {
    /// Publish an arbitrary (possibly malformed) chain on queue `q` and kick.
    /// The first entry is the head. Returns its token for [`Frontend::wait`].
    pub fn post_chain(&mut self, q: usize, chain: &[Desc]) -> Result<Token> {
        if chain.is_empty() {
            return Err(Error::InvalidArgument("empty chain".into()));
        }
        let ids = {
            let (queue, _) = self.queue_mut(q)?;
            queue.alloc_ids(chain.len())?
        };
        let mut data = ChainData::default();
        let built = build_list(self, chain, &ids, &mut data);
        let result = built.and_then(|descs| {
            let (queue, mem) = self.queue_mut(q)?;
            for (id, d) in ids.iter().zip(&descs) {
                queue.write_desc(mem, *id, *d)?;
            }
            Ok(())
        });
        if let Err(e) = result {
            self.release_chain(q, ids, data.bufs);
            return Err(e);
        }
        let (queue, mem) = self.queue_mut(q)?;
        let token = queue.publish(mem, ids[0], ids, data)?;
        queue.notify(mem)?;
        Ok(token)
    }

    fn release_chain(&mut self, q: usize, ids: Vec<u16>, bufs: Vec<GuestBuf>) {
        for b in bufs {
            self.free(b);
        }
        if let Ok((queue, _)) = self.queue_mut(q) {
            queue.release_ids(ids);
        }
    }

    /// [`post_chain`](Self::post_chain) and wait up to `timeout` for the daemon to return
    /// it. On timeout the chain is abandoned (freed if it ever comes back) and
    /// [`Error::Timeout`] is returned: the test decides whether that is acceptable.
    pub fn send_chain(
        &mut self,
        q: usize,
        chain: &[Desc],
        timeout: Duration,
    ) -> Result<Completion> {
        let token = self.post_chain(q, chain)?;
        match self.wait(token, timeout) {
            Ok(c) => Ok(c),
            Err(e) => {
                self.abandon(token);
                Err(e)
            }
        }
    }

    /// Send `payload` as one readable descriptor (zero length allowed) followed, when
    /// `writable_len > 0`, by one writable descriptor of that size.
    pub fn send_raw(
        &mut self,
        q: usize,
        payload: &[u8],
        writable_len: u32,
        timeout: Duration,
    ) -> Result<Completion> {
        let mut chain = vec![Desc::readable(payload)];
        if writable_len > 0 {
            chain.push(Desc::writable(writable_len));
        }
        self.send_chain(q, &chain, timeout)
    }
}
