//! A vhost-user-fs **frontend** without a VM: it plays the guest kernel's virtio-fs
//! driver against any vhost-user-fs daemon's unix socket.
//!
//! Layers (each usable on its own):
//! - [`memory`]: memfd-backed guest memory shared via `SET_MEM_TABLE`, and a
//!   first-fit buffer pool inside it (no mapping per request).
//! - [`virtqueue`]: a split-ring driver (descriptor table, avail/used rings,
//!   EVENT_IDX, kick/call eventfds, timeouts) plus ring-corruption primitives.
//! - [`vhost`]: [`Frontend`] — connect, negotiate, set up queues 0 (hiprio) and 1
//!   (requests), submit chains and wait for them by token or any-first.
//! - [`fuse`]: FUSE encoding/decoding and [`FuseSession`] with typed operations
//!   returning [`Result`]; a daemon error reply is [`Error::Errno`].
//! - [`chain`]: arbitrary/malformed descriptor chains ([`Desc`], [`Link`]).
//!
//! Nothing here waits forever: every wait has a timeout and returns
//! [`Error::Timeout`].
//!
//! # Example
//!
//! ```no_run
//! use vufs_frontend::{FuseSession, ROOT_ID};
//!
//! # fn main() -> vufs_frontend::Result<()> {
//! let mut fs = FuseSession::connect("/tmp/vfsd.sock")?;
//! fs.init()?;
//! let (entry, open) = fs.create(ROOT_ID, b"hello", 0o644, libc::O_RDWR as u32)?;
//! let n = fs.write(entry.nodeid, open.fh, 0, &vec![7u8; 1 << 20])?;
//! assert_eq!(n, 1 << 20);
//! let data = fs.read(entry.nodeid, open.fh, 0, 1 << 20)?;
//! assert_eq!(data.len(), 1 << 20);
//! fs.release(entry.nodeid, open.fh, libc::O_RDWR as u32)?;
//! fs.forget(entry.nodeid, 1)?;
//! assert_eq!(fs.lookup(ROOT_ID, b"missing").unwrap_err().errno(), Some(libc::ENOENT));
//!
//! // Pipelining: several requests in flight, completions in any order.
//! let h = fs.lookup(ROOT_ID, b"hello")?;
//! let o = fs.open(h.nodeid, libc::O_RDONLY as u32)?;
//! let mut inflight = Vec::new();
//! for i in 0..8u64 {
//!     inflight.push(fs.submit_read(h.nodeid, o.fh, i * 4096, 4096)?);
//! }
//! while fs.pending_count() > 0 {
//!     let (_pending, reply) = fs.wait_any_reply()?;
//!     let _bytes = reply?.into_result()?;
//! }
//!
//! // Hostile input on the same connection.
//! use std::time::Duration;
//! use vufs_frontend::{Desc, REQUEST_QUEUE};
//! let fe = fs.frontend();
//! let r = fe.send_chain(REQUEST_QUEUE, &[Desc::readable(vec![0u8; 10]), Desc::writable(256)],
//!                       Duration::from_secs(2));
//! # let _ = r;
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

pub mod chain;
pub mod error;
pub mod fuse;
pub mod memory;
pub mod token;
pub mod vhost;
pub mod virtqueue;

/// A memory region as sent in SET_MEM_TABLE / ADD_MEM_REG.
pub use ::vhost::VhostUserMemoryRegionInfo;
pub use chain::{Desc, DescKind, Link};
pub use error::{Error, Result};
pub use fuse::{
    encode_request, parse_reply, DirEntry, DirEntryPlus, FuseSession, Pending, Reply, XattrReply,
    ROOT_ID,
};
pub use memory::{BufferPool, GuestBuf, GuestMem};
pub use vhost::{Completion, ConnectOptions, Frontend, HIPRIO_QUEUE, REQUEST_QUEUE};
pub use virtqueue::{
    RawDescriptor, SplitQueue, Token, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE,
};
