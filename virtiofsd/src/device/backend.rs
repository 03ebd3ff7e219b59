//! The vhost-user-fs device: pops descriptor chains, has them served, completes them.
//!
//! Queue 0 is hiprio (FORGET, BATCH_FORGET, INTERRUPT), queue 1 carries every other request.
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

use crate::device::chain::{complete, Chain};
use crate::device::pool::Pool;
use crate::device::throttle::Limiter;
use crate::device::vring::{FsVring, GuestMem, MAX_QUEUE_SIZE};
use crate::fuse::handler::{reply_error, Handler};
use crate::fuse::request::{Cost, QueueKind, Verdict};

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
    verdict: Verdict,
    vring: FsVring,
}

/// The `VhostUserBackend` of the daemon.
pub struct FsBackend {
    handler: Arc<Handler>,
    limiter: Arc<Limiter>,
    drain_hooked: std::sync::Once,
    pool: Option<Pool<Job>>,
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
            n => {
                let handler = handler.clone();
                Some(Pool::new(n, move |job: Job| {
                    let len = handler.serve(&job.chain, job.verdict);
                    complete(&job.vring, job.chain.head_index(), len);
                })?)
            }
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
                pool.submit(Job {
                    chain,
                    verdict,
                    vring: vring.clone(),
                });
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
