//! The vhost-user-fs device: pops descriptor chains, has them served, completes them.
//!
//! Queue 0 is hiprio (FORGET, BATCH_FORGET, INTERRUPT); queues 1 to N carry every other request
//! (N is `--max-request-queues`; the VMM sets up as many of them as it wants). Each vring
//! thread pops its own queues: thread 0 hiprio and queue 1, thread k queue k + 1. The library
//! numbers a thread's events by the queue's place *within that thread* (every thread but the
//! first sees its queue as event 0), so [`QueueMap`] turns (thread, event) into the queue index.
//! The limits are one set of buckets for the whole device, whatever queue a request came from.
//! A chain is inspected by the FUSE [`Handler`] on the vring thread, admitted by the
//! [`Limiter`] (or parked there), then served on the vring thread (`--thread-pool-size=0`) or on
//! the worker [`Pool`]. Whatever the filesystem does with it, the guest gets a reply when one is
//! due: decode errors and panics become EINVAL/EIO replies.
//! Only a corrupt ring (head index out of range, avail index jumping past the queue size, a head
//! published again while in flight) stops the device, through [`Fatal`], with a message.

use std::io;
use std::sync::{Arc, Mutex};

use log::error;
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost_user_backend::{VhostUserBackend, VringT};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use virtio_queue::{QueueOwnedT, QueueT};
use vm_memory::GuestAddressSpace;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};

use crate::config::MAX_REQUEST_QUEUES;
use crate::device::chain::{complete, Chain, Descs};
use crate::device::pool::Pool;
use crate::device::throttle::{Admission, Limiter};
use crate::device::vring::{FsVring, GuestMem, MAX_QUEUE_SIZE};
use crate::fuse::handler::{reply_error, Handler};
use crate::fuse::request::{Cost, QueueKind, Verdict};

const HIPRIO: u16 = 0;
/// Epoll event id of the throttle timer: above every id the library uses (a thread's queues
/// and, at `num_queues`, its exit event), whatever the queue count.
pub const TIMER_EVENT: u16 = MAX_REQUEST_QUEUES as u16 + 2;

/// Which queue each vring thread's events stand for: thread 0 serves hiprio and request queue
/// 1, thread k (k ≥ 1) request queue k + 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMap {
    threads: Vec<Vec<u16>>,
}

impl QueueMap {
    /// The map for hiprio plus `request_queues` request queues (at least 1).
    pub fn new(request_queues: usize) -> Self {
        let n = request_queues.clamp(1, MAX_REQUEST_QUEUES) as u16;
        let mut threads = vec![vec![HIPRIO, 1]];
        threads.extend((2..=n).map(|q| vec![q]));
        QueueMap { threads }
    }

    /// Queues in all: hiprio plus the request queues.
    pub fn num_queues(&self) -> usize {
        self.threads.iter().map(Vec::len).sum()
    }

    /// The library's `queues_per_thread`: one bit mask of queue indexes per thread.
    pub fn masks(&self) -> Vec<u64> {
        self.threads
            .iter()
            .map(|qs| qs.iter().fold(0u64, |m, q| m | 1 << q))
            .collect()
    }

    /// The queue index of event `event` on thread `thread` (the event is the queue's place
    /// among that thread's queues, in index order).
    pub fn queue(&self, thread: usize, event: u16) -> Option<u16> {
        if seeded_event_is_queue() {
            return Some(event);
        }
        self.threads.get(thread)?.get(usize::from(event)).copied()
    }
}

/// Seeded bug for the multi-queue test (`seeded-bugs` builds only): the library's event number
/// is taken for the queue index, so every request queue past the first arrives as hiprio.
fn seeded_event_is_queue() -> bool {
    seeded("VIRTIOFSD_SEEDED_BUG_EVENT_INDEX")
}

/// Whether the seeded bug `var` is switched on (`seeded-bugs` builds only). The multi-queue
/// ones: `..._EVENT_INDEX` (above), `..._UNCHARGED_QUEUES` (only queue 1 pays the limits, as
/// with a limiter per queue that was never wired) and `..._TIMER_RING` (released chains
/// complete into the timer thread's first ring, not their own).
fn seeded(var: &str) -> bool {
    cfg!(feature = "seeded-bugs") && std::env::var_os(var).is_some()
}

/// A condition that stops the device: the ring itself cannot be trusted any more.
#[derive(Debug, thiserror::Error)]
pub enum Fatal {
    /// The avail index moved further than the queue size, or the ring is unreadable.
    #[error("virtqueue {queue} is corrupt: {err}")]
    Ring {
        /// The queue's index.
        queue: u16,
        /// What the queue library found.
        err: virtio_queue::Error,
    },
    /// A head index outside the descriptor table.
    #[error("virtqueue {queue} is corrupt: head index {head} >= queue size {size}")]
    Head {
        /// The queue's index.
        queue: u16,
        /// The head index published.
        head: u16,
        /// The queue's size.
        size: u16,
    },
    /// A head published again while its chain is still in flight.
    #[error("virtqueue {queue} is corrupt: head {head} published again while still in flight")]
    Reposted {
        /// The queue's index.
        queue: u16,
        /// The head index published again.
        head: u16,
    },
    /// More chains in flight than the ring has entries (QEMU: "Virtqueue size exceeded").
    #[error("virtqueue {queue} is corrupt: {inflight} chains in flight, queue size {size}")]
    Exceeded {
        /// The queue's index.
        queue: u16,
        /// Chains popped and not completed.
        inflight: usize,
        /// The queue's size.
        size: u16,
    },
}

/// A chain handed to a pool worker, with what it needs to finish it.
struct Job {
    chain: Chain,
    descs: Descs,
    verdict: Verdict,
    vring: FsVring,
    queue: u16,
}

/// The `VhostUserBackend` of the daemon.
pub struct FsBackend {
    handler: Arc<Handler>,
    limiter: Arc<Limiter>,
    queues: QueueMap,
    /// Per queue: its ring-stop hook is installed.
    drain_hooked: Box<[std::sync::Once]>,
    pool: Option<Pool<Job>>,
    mem: Mutex<GuestMem>,
    event_idx: std::sync::atomic::AtomicBool,
    fatal: Box<dyn Fn(Fatal) + Send + Sync>,
    config_tag: Option<Vec<u8>>,
}

impl FsBackend {
    /// A backend serving `request_queues` request queues through `handler`, on `threads` pool
    /// workers shared by every queue (0: on the vring threads). `fatal` is called when a ring
    /// is corrupt; the caller stops the daemon.
    pub fn new(
        handler: Arc<Handler>,
        limiter: Arc<Limiter>,
        threads: usize,
        request_queues: usize,
        mem: GuestMem,
        fatal: Box<dyn Fn(Fatal) + Send + Sync>,
    ) -> io::Result<Self> {
        let pool = match threads {
            0 => None,
            n => {
                let handler = handler.clone();
                Some(Pool::new(n, move |job: Job| {
                    let len = handler.serve_walked(&job.chain, &job.descs, job.verdict, job.queue);
                    complete(&job.vring, job.chain.head_index(), len);
                })?)
            }
        };
        let queues = QueueMap::new(request_queues);
        Ok(FsBackend {
            handler,
            limiter,
            drain_hooked: (0..queues.num_queues())
                .map(|_| std::sync::Once::new())
                .collect(),
            queues,
            pool,
            mem: Mutex::new(mem),
            event_idx: Default::default(),
            fatal,
            config_tag: None,
        })
    }

    /// Advertise the CONFIG protocol feature with this tag (virtio-fs config space), announcing
    /// as many request queues as the device serves.
    pub fn with_tag(mut self, tag: Option<&str>) -> Self {
        let request_queues = self.queues.num_queues() as u32 - 1;
        self.config_tag = tag.map(|t| {
            let mut v = t.as_bytes().to_vec();
            v.resize(36, 0);
            v.extend_from_slice(&request_queues.to_le_bytes()); // num_request_queues
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
    /// `descs`: the chain's descriptors as inspection read them (None: read them again, for a
    /// chain that was parked).
    fn dispatch(
        &self,
        chain: Chain,
        descs: Option<Descs>,
        verdict: Verdict,
        vring: &FsVring,
        queue: u16,
    ) {
        if matches!(verdict, Verdict::Drop) {
            complete(vring, chain.head_index(), 0);
            return;
        }
        let descs = descs.unwrap_or_else(|| Descs::walk(&chain));
        match (&self.pool, verdict) {
            (Some(pool), Verdict::Serve { cost, .. }) if cost != Cost::Free => {
                pool.submit(Job {
                    chain,
                    descs,
                    verdict,
                    vring: vring.clone(),
                    queue,
                });
            }
            _ => {
                let len = self.handler.serve_walked(&chain, &descs, verdict, queue);
                complete(vring, chain.head_index(), len);
            }
        }
    }

    /// When a request ring stops (GET_VRING_BASE), every chain parked from it is finished
    /// before the ring position is reported, so none is lost or completed into a ring that was
    /// reset. Those the buckets can pay are served; the others get EIO and are not performed (a
    /// reset must not be a way around the limits). Other rings' parked chains stay parked.
    fn hook_drain(&self, vring: &FsVring, queue: u16) {
        let Some(once) = self.drain_hooked.get(usize::from(queue)) else {
            return;
        };
        once.call_once(|| {
            let (handler, limiter) = (self.handler.clone(), self.limiter.clone());
            let ring = vring.clone();
            vring.inflight().on_stop(Box::new(move || {
                let parked = limiter.drain(&ring);
                let (paid, refused) = (parked.paid.len(), parked.refused.len());
                if paid + refused > 0 {
                    log::info!(
                        "ring stop of queue {queue}: serving {paid} parked request(s) the limits can pay, \
                         failing {refused} with EIO"
                    );
                }
                for p in &parked.paid {
                    let len = handler.serve(&p.chain, p.verdict, p.vring.queue());
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

    /// Serves the parked chains whose tokens now exist, each into the ring it came from.
    /// (`wrong_ring`: the seeded bug completing them into another.)
    fn on_timer(&self, wrong_ring: Option<&FsVring>) {
        for p in self.limiter.on_timer() {
            let queue = p.vring.queue();
            self.dispatch(
                p.chain,
                None,
                p.verdict,
                wrong_ring.unwrap_or(&p.vring),
                queue,
            );
        }
    }

    fn process(&self, vring: &FsVring, queue: u16) -> Result<(), Fatal> {
        if queue != HIPRIO {
            vring.set_queue(queue);
            self.hook_drain(vring, queue);
        }
        let kind = if queue == HIPRIO {
            QueueKind::Hiprio
        } else {
            QueueKind::Request
        };
        let event_idx = self.event_idx.load(std::sync::atomic::Ordering::Relaxed);
        let uncharged = queue > 1 && seeded("VIRTIOFSD_SEEDED_BUG_UNCHARGED_QUEUES");
        loop {
            if event_idx {
                let _ = vring.disable_notification();
            }
            let chains = self.pop_all(vring, queue)?;
            for chain in chains {
                let descs = Descs::walk(&chain);
                let verdict = self.handler.inspect_walked(&chain, &descs, kind);
                match verdict {
                    Verdict::Serve { .. } if uncharged => {
                        self.dispatch(chain, Some(descs), verdict, vring, queue)
                    }
                    Verdict::Serve { cost, .. } => match self.limiter.admit(cost) {
                        Admission::Go => self.dispatch(chain, Some(descs), verdict, vring, queue),
                        Admission::Wait(w) => w.park(chain, verdict, vring),
                    },
                    _ => self.dispatch(chain, Some(descs), verdict, vring, queue),
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
        self.queues.num_queues()
    }

    fn queues_per_thread(&self) -> Vec<u64> {
        self.queues.masks()
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
        thread_id: usize,
    ) -> io::Result<()> {
        if evset != EventSet::IN {
            return Err(io::Error::other(format!("unexpected event set {evset:?}")));
        }
        if device_event == TIMER_EVENT {
            let seeded_ring = seeded("VIRTIOFSD_SEEDED_BUG_TIMER_RING");
            self.on_timer(vrings.first().filter(|_| seeded_ring));
            return Ok(());
        }
        // `vrings` are this thread's only, indexed by the event.
        let (Some(vring), Some(queue)) = (
            vrings.get(usize::from(device_event)),
            self.queues.queue(thread_id, device_event),
        ) else {
            return Err(io::Error::other(format!(
                "unknown event {device_event} on vring thread {thread_id}"
            )));
        };
        if let Err(f) = self.process(vring, queue) {
            error!("{f}; stopping the device");
            (self.fatal)(f);
            return Err(io::Error::other("corrupt virtqueue"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_map_to_queues_per_thread() {
        let m = QueueMap::new(4);
        assert_eq!(m.num_queues(), 5);
        assert_eq!(m.masks(), vec![0b11, 1 << 2, 1 << 3, 1 << 4]);
        assert_eq!(m.queue(0, 0), Some(HIPRIO));
        assert_eq!(m.queue(0, 1), Some(1));
        // Every later thread sees its one queue as event 0.
        assert_eq!(m.queue(1, 0), Some(2));
        assert_eq!(m.queue(3, 0), Some(4));
        assert_eq!(m.queue(3, 1), None);
        assert_eq!(m.queue(4, 0), None);
        let one = QueueMap::new(1);
        assert_eq!((one.num_queues(), one.masks()), (2, vec![0b11]));
        assert!(usize::from(TIMER_EVENT) > QueueMap::new(MAX_REQUEST_QUEUES).num_queues());
    }
}
