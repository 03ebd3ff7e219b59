//! Serves one FUSE request from a descriptor chain: inspects it through the request wall
//! ([`crate::fuse::request`]), runs it on the filesystem within the bytes it was charged for
//! ([`crate::device::budget`]), and writes an error reply when the filesystem could not.

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use fuse_backend_rs::abi::fuse_abi::OutHeader;
use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::transport::{Reader, VirtioFsWriter, Writer};
use log::{debug, error, warn};
use virtio_queue::desc::split::Descriptor;
use vm_memory::{
    Address, GuestMemory, GuestMemoryMmap, GuestMemoryRegion, MemoryRegionAddress, VolatileSlice,
};

use crate::control::stats::Stats;
use crate::device::budget;
use crate::device::chain::{Chain, Descs};
use crate::fuse::fs::Fs;
use crate::fuse::request::{self, Cost, Policy, QueueKind, Verdict};
use crate::fuse::session::Session;

/// Serves FUSE requests from chains: shared by the vring thread and the pool workers.
pub struct Handler {
    server: Server<Fs>,
    session: Session,
    policy: Policy,
    stats: Arc<Stats>,
}

impl Handler {
    /// A handler serving `fs` under `policy`, counting what it serves in `stats`.
    pub fn new(fs: Fs, policy: Policy, stats: Arc<Stats>) -> Self {
        Handler {
            server: Server::new(fs),
            session: Session::default(),
            policy,
            stats,
        }
    }

    /// The FUSE session (INIT state).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Decides what to do with a chain; cheap (reads the header and small bodies only, straight
    /// from guest memory). A READ costs at most the data its chain's writable part can hold.
    /// Walks the chain itself; [`Handler::inspect_walked`] takes the walk already made.
    pub fn inspect(&self, chain: &Chain, queue: QueueKind) -> Verdict {
        self.inspect_walked(chain, &Descs::walk(chain), queue)
    }

    /// [`Handler::inspect`] of a chain whose descriptors `descs` were read once already.
    pub fn inspect_walked(&self, chain: &Chain, descs: &Descs, queue: QueueKind) -> Verdict {
        let v = match ChainBytes::new(chain.memory(), descs) {
            Some(mut r) => match request::inspect(&mut r, queue, &self.session, self.policy) {
                Verdict::Serve {
                    unique,
                    opcode,
                    cost,
                } => Verdict::Serve {
                    unique,
                    opcode,
                    cost: match cost {
                        Cost::Read(_) => cost.within_room(writable_len(descs)),
                        other => other,
                    },
                },
                v => v,
            },
            None => {
                warn!("unreadable descriptor chain {}", chain.head_index());
                seeded::bad_request("unreadable descriptor chain");
                Verdict::Drop
            }
        };
        seeded::check_verdict(chain, v);
        v
    }

    /// Carries out a verdict for a chain of virtqueue `queue`; returns the number of bytes
    /// written to the chain. A served request moves at most the bytes it was charged for
    /// ([`crate::device::budget`]), and the statistics count what it really moved.
    /// Walks the chain itself; [`Handler::serve_walked`] takes the walk already made.
    pub fn serve(&self, chain: &Chain, verdict: Verdict, queue: u16) -> u32 {
        match verdict {
            Verdict::Drop => 0,
            _ => self.serve_walked(chain, &Descs::walk(chain), verdict, queue),
        }
    }

    /// [`Handler::serve`] of a chain whose descriptors `descs` were read once already.
    pub fn serve_walked(&self, chain: &Chain, descs: &Descs, verdict: Verdict, queue: u16) -> u32 {
        match verdict {
            Verdict::Drop => 0,
            Verdict::Reject { unique, errno, .. } => {
                reply_error_walked(chain.memory(), descs, unique, errno)
            }
            Verdict::Serve { cost, .. } => {
                let (len, moved) =
                    budget::serving(cost.bytes(), || self.serve_request(chain, descs, verdict));
                self.stats.record(queue, cost, moved);
                len
            }
        }
    }

    fn serve_request(&self, chain: &Chain, descs: &Descs, verdict: Verdict) -> u32 {
        match verdict {
            Verdict::Drop | Verdict::Reject { .. } => 0,
            Verdict::Serve { unique, opcode, .. } => {
                let mem = chain.memory();
                let res = Reader::from_descriptors(mem, descs.readable()).and_then(|r| {
                    VirtioFsWriter::from_descriptors(mem, descs.writable())
                        .map(|w| (r, Writer::from(w)))
                });
                let (r, w) = match res {
                    Ok(rw) => rw,
                    Err(e) => {
                        warn!("request {unique}: bad descriptor chain: {e}");
                        return reply_error_walked(mem, descs, unique, libc::EINVAL);
                    }
                };
                seeded::check_opcode(opcode);
                let out = catch_unwind(AssertUnwindSafe(|| {
                    self.server.handle_message(r, w, None, None)
                }));
                let errno = match out {
                    Ok(Ok(n)) => return u32::try_from(n).unwrap_or(0),
                    Ok(Err(e)) => {
                        debug!("request {unique} (opcode {opcode}) failed: {e}");
                        seeded::bad_request("request failed to decode");
                        errno_of(&e)
                    }
                    Err(_) => {
                        error!("request {unique} (opcode {opcode}) panicked; replying EIO");
                        libc::EIO
                    }
                };
                if request::is_reply_less(opcode) {
                    0
                } else {
                    reply_error_walked(mem, descs, unique, errno)
                }
            }
        }
    }
}

/// Total length of a chain's device-writable descriptors (saturating; the serving path caps
/// what it moves again).
fn writable_len(descs: &Descs) -> u64 {
    descs
        .writable()
        .fold(0u64, |n, d| n.saturating_add(u64::from(d.len())))
}

/// The readable part of a chain, read in place from guest memory without the allocation the
/// library's `Reader` makes. Refuses the chains `Reader` refuses: a readable descriptor outside
/// guest memory or crossing a region's end, or lengths that overflow.
pub struct ChainBytes<'a> {
    mem: &'a GuestMemoryMmap<()>,
    descs: &'a Descs,
    /// Index of the next descriptor to look at.
    next: usize,
    /// What is left of the current readable descriptor.
    cur: VolatileSlice<'a, ()>,
    left: usize,
}

impl<'a> ChainBytes<'a> {
    /// The readable bytes of the chain whose descriptors are `descs`, in `mem`, or None if
    /// `Reader` would refuse it.
    pub fn new(mem: &'a GuestMemoryMmap<()>, descs: &'a Descs) -> Option<Self> {
        let mut total = 0usize;
        for d in descs.readable() {
            total = total.checked_add(d.len() as usize)?;
            region_slice(mem, d)?;
        }
        Some(ChainBytes {
            mem,
            descs,
            next: 0,
            cur: VolatileSlice::from(&mut [][..]),
            left: total,
        })
    }
}

/// The guest memory a descriptor points at, if it lies within one region.
fn region_slice<'a>(mem: &'a GuestMemoryMmap<()>, d: Descriptor) -> Option<VolatileSlice<'a, ()>> {
    let region = mem.find_region(d.addr())?;
    let offset = d.addr().checked_offset_from(region.start_addr())?;
    if offset.checked_add(u64::from(d.len()))? > region.len() {
        return None;
    }
    region
        .get_slice(MemoryRegionAddress(offset), d.len() as usize)
        .ok()
}

impl request::Source for ChainBytes<'_> {
    fn available_bytes(&self) -> usize {
        self.left
    }

    fn read_exact(&mut self, mut buf: &mut [u8]) -> io::Result<()> {
        while !buf.is_empty() {
            if self.cur.is_empty() {
                let d = *self
                    .descs
                    .as_slice()
                    .get(self.next)
                    .ok_or(io::ErrorKind::UnexpectedEof)?;
                self.next += 1;
                if !d.is_write_only() {
                    self.cur = region_slice(self.mem, d).ok_or(io::ErrorKind::InvalidData)?;
                }
                continue;
            }
            let n = self.cur.copy_to(buf);
            self.cur = self.cur.offset(n).map_err(io::Error::other)?;
            self.left -= n;
            buf = &mut buf[n..];
        }
        Ok(())
    }
}

/// Seeded bug for the malformed-request tests: built with the `seeded-bugs` feature and run
/// with `VIRTIOFSD_SEEDED_BUG_EXIT_ON_BAD_REQUEST` set, the daemon exits with status 1 on the
/// first request it cannot decode, as upstream virtiofsd does. Release builds cannot.
#[cfg(feature = "seeded-bugs")]
mod seeded {
    use super::{Chain, Reader, Verdict};
    use fuse_backend_rs::abi::fuse_abi::{InHeader, Opcode};

    pub fn bad_request(what: &str) {
        if std::env::var_os("VIRTIOFSD_SEEDED_BUG_EXIT_ON_BAD_REQUEST").is_some() {
            log::error!("SEEDED BUG: exiting on a bad request ({what})");
            std::process::exit(1);
        }
    }

    /// Rejections (other than --readonly's EROFS) and dropped chains that needed a reply.
    pub fn check_verdict(chain: &Chain, v: Verdict) {
        match v {
            Verdict::Reject { errno, .. } if errno != libc::EROFS => bad_request("rejected"),
            Verdict::Drop => {
                let h = Reader::from_descriptor_chain(chain.memory(), chain.clone())
                    .ok()
                    .and_then(|mut r| r.read_obj::<InHeader>().ok());
                if !h.is_some_and(|h| super::request::is_reply_less(h.opcode)) {
                    bad_request("dropped");
                }
            }
            _ => {}
        }
    }

    pub fn check_opcode(opcode: u32) {
        if opcode >= Opcode::MaxOpcode as u32 {
            bad_request("unknown opcode");
        }
    }

    pub fn no_reply_room() {
        bad_request("no room for the reply");
    }
}

#[cfg(not(feature = "seeded-bugs"))]
mod seeded {
    use super::{Chain, Verdict};
    pub fn bad_request(_: &str) {}
    pub fn check_verdict(_: &Chain, _: Verdict) {}
    pub fn check_opcode(_: u32) {}
    pub fn no_reply_room() {}
}

fn errno_of(e: &fuse_backend_rs::Error) -> i32 {
    use fuse_backend_rs::Error as E;
    match e {
        E::DecodeMessage(_)
        | E::MissingParameter
        | E::InvalidCString(_)
        | E::InvalidHeaderLength
        | E::InvalidXattrSize(_)
        | E::InvalidMessage(_) => libc::EINVAL,
        _ => libc::EIO,
    }
}

/// Writes a bare error reply; returns its length, or 0 when the chain has no room for it.
pub fn reply_error(chain: &Chain, unique: u64, errno: i32) -> u32 {
    reply_error_walked(chain.memory(), &Descs::walk(chain), unique, errno)
}

/// [`reply_error`] into a chain whose descriptors `descs` were read once already.
fn reply_error_walked(mem: &GuestMemoryMmap<()>, descs: &Descs, unique: u64, errno: i32) -> u32 {
    let header = OutHeader {
        len: std::mem::size_of::<OutHeader>() as u32,
        error: -errno,
        unique,
    };
    let written = VirtioFsWriter::from_descriptors(mem, descs.writable())
        .map(|mut w| w.write_obj(header).is_ok())
        .unwrap_or(false);
    match written {
        true => header.len,
        false => {
            warn!("request {unique}: no room for the error reply");
            seeded::no_reply_room();
            0
        }
    }
}
