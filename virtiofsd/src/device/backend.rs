//! The vhost-user-fs device: pops descriptor chains, serves them, completes them.
//!
//! Queue 0 is hiprio (FORGET, BATCH_FORGET, INTERRUPT), queue 1 carries every other request.
//! A chain is inspected ([`crate::fuse::request`]) on the vring thread, then served there
//! (`--thread-pool-size=0`) or on the worker pool. Whatever the filesystem does with it, the
//! guest gets a reply when one is due: decode errors and panics become EINVAL/EIO replies.
//! Only a corrupt ring (head index out of range, avail index jumping past the queue size, a head
//! published again while in flight) stops the device, through [`Fatal`], with a message.

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use fuse_backend_rs::abi::fuse_abi::OutHeader;
use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::transport::{Reader, VirtioFsWriter, Writer};
use log::{debug, error, warn};
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost_user_backend::{VhostUserBackend, VringT};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use virtio_queue::{DescriptorChain, QueueOwnedT, QueueT};
use vm_memory::Address;
use vm_memory::{
    Bytes, GuestAddress, GuestAddressSpace, GuestMemory, GuestMemoryLoadGuard, GuestMemoryMmap,
    GuestMemoryRegion,
};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};

use crate::control::stats::Stats;
use crate::device::pool::Pool;
use crate::device::throttle::Limiter;
use crate::device::vring::{FsVring, GuestMem};
use crate::fuse::fs::Fs;
use crate::fuse::request::{self, Cost, Policy, QueueKind, Session, Verdict};

/// One chain popped from a ring, with the memory it lives in.
pub type Chain = DescriptorChain<GuestMemoryLoadGuard<GuestMemoryMmap<()>>>;

/// Largest queue the device accepts (the virtio maximum; Kata uses 1024).
pub const MAX_QUEUE_SIZE: usize = 32768;
const HIPRIO: u16 = 0;
const REQUESTS: u16 = 1;
const NUM_QUEUES: usize = 2;
/// Epoll event id of the throttle timer (ids up to NUM_QUEUES are the library's).
pub const TIMER_EVENT: u16 = NUM_QUEUES as u16 + 1;

/// A condition that stops the device: the ring itself cannot be trusted any more.
#[derive(Debug, thiserror::Error)]
pub enum Fatal {
    /// The avail index moved further than the queue size, or the ring is unreadable.
    #[error("virtqueue {queue} is corrupt: {err}")]
    Ring {
        queue: u16,
        err: virtio_queue::Error,
    },
    /// A head index outside the descriptor table.
    #[error("virtqueue {queue} is corrupt: head index {head} >= queue size {size}")]
    Head { queue: u16, head: u16, size: u16 },
    /// A head published again while its chain is still in flight.
    #[error("virtqueue {queue} is corrupt: head {head} published again while still in flight")]
    Reposted { queue: u16, head: u16 },
    /// More chains in flight than the ring has entries (QEMU: "Virtqueue size exceeded").
    #[error("virtqueue {queue} is corrupt: {inflight} chains in flight, queue size {size}")]
    Exceeded {
        queue: u16,
        inflight: usize,
        size: u16,
    },
}

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
    pub fn inspect(&self, chain: &Chain, queue: QueueKind) -> Verdict {
        let v = match ChainBytes::new(chain) {
            Some(mut r) => match request::inspect(&mut r, queue, &self.session, self.policy) {
                Verdict::Serve {
                    unique,
                    opcode,
                    cost,
                } => Verdict::Serve {
                    unique,
                    opcode,
                    cost: match cost {
                        Cost::Read(_) => cost.within_room(writable_len(chain)),
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

    /// Carries out a verdict; returns the number of bytes written to the chain. A served
    /// request moves at most the bytes it was charged for ([`crate::device::budget`]), and the
    /// statistics count what it really moved.
    pub fn serve(&self, chain: &Chain, verdict: Verdict) -> u32 {
        match verdict {
            Verdict::Drop => 0,
            Verdict::Reject { unique, errno, .. } => reply_error(chain, unique, errno),
            Verdict::Serve { cost, .. } => {
                let (len, moved) = crate::device::budget::serving(cost.bytes(), || {
                    self.serve_request(chain, verdict)
                });
                self.stats.record(cost, moved);
                len
            }
        }
    }

    fn serve_request(&self, chain: &Chain, verdict: Verdict) -> u32 {
        match verdict {
            Verdict::Drop | Verdict::Reject { .. } => 0,
            Verdict::Serve { unique, opcode, .. } => {
                let mem = chain.memory();
                let res = Reader::from_descriptor_chain(mem, chain.clone()).and_then(|r| {
                    VirtioFsWriter::new(mem, chain.clone()).map(|w| (r, Writer::from(w)))
                });
                let (r, w) = match res {
                    Ok(rw) => rw,
                    Err(e) => {
                        warn!("request {unique}: bad descriptor chain: {e}");
                        return reply_error(chain, unique, libc::EINVAL);
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
                    reply_error(chain, unique, errno)
                }
            }
        }
    }
}

/// Total length of a chain's device-writable descriptors (saturating; the chain is re-read from
/// guest memory, so the serving path caps what it moves again).
fn writable_len(chain: &Chain) -> u64 {
    chain
        .clone()
        .writable()
        .fold(0u64, |n, d| n.saturating_add(u64::from(d.len())))
}

/// The readable part of a chain, read in place from guest memory without the allocation the
/// library's `Reader` makes. Refuses the chains `Reader` refuses: a readable descriptor outside
/// guest memory or crossing a region's end, or lengths that overflow.
pub struct ChainBytes<'a> {
    mem: &'a GuestMemoryMmap<()>,
    descs: virtio_queue::DescriptorChainRwIter<GuestMemoryLoadGuard<GuestMemoryMmap<()>>>,
    cur: (u64, usize),
    left: usize,
}

impl<'a> ChainBytes<'a> {
    /// The readable bytes of `chain`, or None if `Reader` would refuse it.
    pub fn new(chain: &'a Chain) -> Option<Self> {
        let mem = chain.memory();
        let mut total = 0usize;
        for d in chain.clone().readable() {
            total = total.checked_add(d.len() as usize)?;
            let region = mem.find_region(d.addr())?;
            let offset = d.addr().checked_offset_from(region.start_addr())?;
            if offset.checked_add(u64::from(d.len()))? > region.len() {
                return None;
            }
        }
        Some(ChainBytes {
            mem,
            descs: chain.clone().readable(),
            cur: (0, 0),
            left: total,
        })
    }
}

impl request::Source for ChainBytes<'_> {
    fn available_bytes(&self) -> usize {
        self.left
    }

    fn read_exact(&mut self, mut buf: &mut [u8]) -> io::Result<()> {
        while !buf.is_empty() {
            if self.cur.1 == 0 {
                let d = self.descs.next().ok_or(io::ErrorKind::UnexpectedEof)?;
                self.cur = (d.addr().raw_value(), d.len() as usize);
                continue;
            }
            let n = self.cur.1.min(buf.len());
            let (head, rest) = buf.split_at_mut(n);
            self.mem
                .read_slice(head, GuestAddress(self.cur.0))
                .map_err(io::Error::other)?;
            self.cur = (self.cur.0 + n as u64, self.cur.1 - n);
            self.left -= n;
            buf = rest;
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
fn reply_error(chain: &Chain, unique: u64, errno: i32) -> u32 {
    let header = OutHeader {
        len: std::mem::size_of::<OutHeader>() as u32,
        error: -errno,
        unique,
    };
    let written = VirtioFsWriter::new(chain.memory(), chain.clone())
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

/// Puts a served chain in the used ring and notifies the guest if it asked to be (EVENT_IDX)
/// or always (without it): one acquisition of the ring's lock, which the vring thread and every
/// worker contend for.
pub fn complete(vring: &FsVring, head: u16, len: u32) {
    vring.inflight().release(head);
    {
        let mut ring = vring.get_mut();
        match ring.add_used(head, len) {
            Err(e) => error!("cannot complete descriptor {head}: {e}"),
            Ok(()) if !ring.needs_notification().unwrap_or(true) => {}
            Ok(()) => {
                if let Err(e) = ring.signal_used_queue() {
                    error!("cannot signal the used queue: {e}");
                }
            }
        }
    }
    vring.inflight().done();
}

/// The `VhostUserBackend` of the daemon.
pub struct FsBackend {
    handler: Arc<Handler>,
    limiter: Arc<Limiter>,
    drain_hooked: std::sync::Once,
    pool: Option<Pool>,
    mem: Mutex<GuestMem>,
    event_idx: std::sync::atomic::AtomicBool,
    fatal: Box<dyn Fn(Fatal) + Send + Sync>,
    config_tag: Option<Vec<u8>>,
}

impl FsBackend {
    /// A backend serving through `handler`, on `threads` pool workers (0: on the vring thread).
    /// `fatal` is called when a ring is corrupt; the caller stops the daemon.
    pub fn new(
        handler: Arc<Handler>,
        limiter: Arc<Limiter>,
        threads: usize,
        mem: GuestMem,
        fatal: Box<dyn Fn(Fatal) + Send + Sync>,
    ) -> io::Result<Self> {
        let pool = match threads {
            0 => None,
            n => Some(Pool::new(n, handler.clone())?),
        };
        Ok(FsBackend {
            handler,
            limiter,
            drain_hooked: std::sync::Once::new(),
            pool,
            mem: Mutex::new(mem),
            event_idx: Default::default(),
            fatal,
            config_tag: None,
        })
    }

    /// Advertise the CONFIG protocol feature with this tag (virtio-fs config space).
    pub fn with_tag(mut self, tag: Option<&str>) -> Self {
        self.config_tag = tag.map(|t| {
            let mut v = t.as_bytes().to_vec();
            v.resize(36, 0);
            v.extend_from_slice(&1u32.to_le_bytes()); // num_request_queues
            v
        });
        self
    }

    /// Pops every available chain, counting them in flight. Stops at ring corruption.
    fn pop_all(&self, vring: &FsVring, queue: u16) -> Result<Vec<Chain>, Fatal> {
        let mem = self.mem.lock().unwrap().memory();
        let mut state = vring.get_mut();
        let q = state.get_queue_mut();
        let size = q.size();
        let iter = match q.iter(mem) {
            Ok(it) => it,
            Err(virtio_queue::Error::QueueNotReady) => return Ok(Vec::new()),
            Err(err) => return Err(Fatal::Ring { queue, err }),
        };
        let chains: Vec<Chain> = iter.collect();
        vring.inflight().add(chains.len());
        if let Some(c) = chains.iter().find(|c| c.head_index() >= size) {
            return Err(Fatal::Head {
                queue,
                head: c.head_index(),
                size,
            });
        }
        // A guest that re-publishes heads it has not got back could make the daemon hold
        // chains without end: that is ring corruption, like a head out of range.
        let inflight = vring.inflight();
        if let Some(c) = chains.iter().find(|c| !inflight.claim(c.head_index())) {
            return Err(Fatal::Reposted {
                queue,
                head: c.head_index(),
            });
        }
        if inflight.count() > usize::from(size) {
            return Err(Fatal::Exceeded {
                queue,
                inflight: inflight.count(),
                size,
            });
        }
        Ok(chains)
    }

    /// Serves an admitted chain on the pool, or inline. Each completion is signalled at once
    /// (if the guest asked, with EVENT_IDX): the driver refills the ring while the rest of the
    /// batch is served, instead of waiting for the whole batch.
    fn dispatch(&self, chain: Chain, verdict: Verdict, vring: &FsVring) {
        match (&self.pool, verdict) {
            (Some(pool), Verdict::Serve { cost, .. }) if cost != Cost::Free => {
                pool.submit(chain, verdict, vring.clone());
            }
            _ => {
                let len = self.handler.serve(&chain, verdict);
                complete(vring, chain.head_index(), len);
            }
        }
    }

    /// When the request ring stops (GET_VRING_BASE), every parked chain is finished before the
    /// ring position is reported, so none is lost or completed into a ring that was reset. Those
    /// the buckets can pay are served; the others get EIO and are not performed (a reset must
    /// not be a way around the limits).
    fn hook_drain(&self, vring: &FsVring) {
        self.drain_hooked.call_once(|| {
            let (handler, limiter) = (self.handler.clone(), self.limiter.clone());
            vring.inflight().on_stop(Box::new(move || {
                let parked = limiter.drain();
                let (paid, refused) = (parked.paid.len(), parked.refused.len());
                if paid + refused > 0 {
                    log::info!(
                        "ring stop: serving {paid} parked request(s) the limits can pay, \
                         failing {refused} with EIO"
                    );
                }
                for p in &parked.paid {
                    let len = handler.serve(&p.chain, p.verdict);
                    complete(&p.vring, p.chain.head_index(), len);
                }
                for p in &parked.refused {
                    let len = match p.verdict {
                        Verdict::Serve { unique, .. } => reply_error(&p.chain, unique, libc::EIO),
                        _ => 0,
                    };
                    complete(&p.vring, p.chain.head_index(), len);
                }
            }));
        });
    }

    /// Serves the parked chains whose tokens now exist (all from the request ring).
    fn on_timer(&self) {
        for p in self.limiter.on_timer() {
            self.dispatch(p.chain, p.verdict, &p.vring);
        }
    }

    fn process(&self, vring: &FsVring, queue: u16) -> Result<(), Fatal> {
        if queue == REQUESTS {
            self.hook_drain(vring);
        }
        let kind = if queue == HIPRIO {
            QueueKind::Hiprio
        } else {
            QueueKind::Request
        };
        let event_idx = self.event_idx.load(std::sync::atomic::Ordering::Relaxed);
        loop {
            if event_idx {
                let _ = vring.disable_notification();
            }
            let chains = self.pop_all(vring, queue)?;
            for chain in chains {
                let verdict = self.handler.inspect(&chain, kind);
                match verdict {
                    Verdict::Serve { cost, .. } => {
                        if let Some(chain) = self.limiter.admit(cost, chain, verdict, vring) {
                            self.dispatch(chain, verdict, vring);
                        }
                    }
                    _ => self.dispatch(chain, verdict, vring),
                }
            }
            if !event_idx || !vring.enable_notification().unwrap_or(false) {
                return Ok(());
            }
        }
    }
}

impl VhostUserBackend for FsBackend {
    type Bitmap = ();
    type Vring = FsVring;

    fn num_queues(&self) -> usize {
        NUM_QUEUES
    }

    fn max_queue_size(&self) -> usize {
        MAX_QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        (1 << VIRTIO_F_VERSION_1)
            | (1 << VIRTIO_RING_F_INDIRECT_DESC)
            | (1 << VIRTIO_RING_F_EVENT_IDX)
            | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        let base = VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS;
        match self.config_tag {
            Some(_) => base | VhostUserProtocolFeatures::CONFIG,
            None => base,
        }
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        let cfg = self.config_tag.as_deref().unwrap_or_default();
        let start = (offset as usize).min(cfg.len());
        let end = start.saturating_add(size as usize).min(cfg.len());
        cfg[start..end].to_vec()
    }

    fn set_event_idx(&self, enabled: bool) {
        self.event_idx
            .store(enabled, std::sync::atomic::Ordering::Relaxed);
    }

    fn update_memory(&self, mem: GuestMem) -> io::Result<()> {
        *self.mem.lock().unwrap() = mem;
        Ok(())
    }

    /// SET_FEATURES starts every (re)start of the device, e.g. after a guest reboot: a new
    /// FUSE session begins, so the next INIT is accepted.
    fn acked_features(&self, _features: u64) {
        self.handler.session().reset();
    }

    fn reset_device(&self) {
        self.handler.session().reset();
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        new_event_consumer_and_notifier(EventFlag::NONBLOCK).ok()
    }

    fn handle_event(
        &self,
        device_event: u16,
        evset: EventSet,
        vrings: &[FsVring],
        _thread_id: usize,
    ) -> io::Result<()> {
        if evset != EventSet::IN {
            return Err(io::Error::other(format!("unexpected event set {evset:?}")));
        }
        if device_event == TIMER_EVENT {
            self.on_timer();
            return Ok(());
        }
        let Some(vring) = vrings.get(device_event as usize) else {
            return Err(io::Error::other(format!("unknown event {device_event}")));
        };
        if device_event == REQUESTS || device_event == HIPRIO {
            if let Err(f) = self.process(vring, device_event) {
                error!("{f}; stopping the device");
                (self.fatal)(f);
                return Err(io::Error::other("corrupt virtqueue"));
            }
        }
        Ok(())
    }
}
