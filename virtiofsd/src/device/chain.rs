//! One descriptor chain popped from a ring, and its completion.
//!
//! Below the backend, the limiter and the FUSE handler: each of them holds, serves or finishes
//! chains, and none needs the others for that.

use log::error;
use smallvec::SmallVec;
use vhost_user_backend::VringT;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::DescriptorChain;
use vm_memory::{GuestMemoryLoadGuard, GuestMemoryMmap};

use crate::device::vring::FsVring;

/// One chain popped from a ring, with the memory it lives in.
pub type Chain = DescriptorChain<GuestMemoryLoadGuard<GuestMemoryMmap<()>>>;

/// The descriptors of one chain, read from guest memory once, at inspection: every later step
/// of the request (the cost's room, the request reader, the reply writer) uses this copy instead
/// of walking the chain in guest memory again, so they all see the same chain even if the guest
/// rewrites its descriptor table meanwhile. Up to 8 descriptors are held inline (a FUSE request
/// has 2 to 6); a longer chain (at most the queue size, as the queue library bounds it) goes on
/// the heap.
#[derive(Clone, Debug, Default)]
pub struct Descs {
    list: SmallVec<[Descriptor; 8]>,
}

impl Descs {
    /// Walks `chain` once (a chain the queue library finds broken ends where it breaks, as in
    /// every reader of the chain).
    pub fn walk(chain: &Chain) -> Self {
        Descs {
            list: chain.clone().collect(),
        }
    }

    /// Every descriptor, in chain order.
    pub fn as_slice(&self) -> &[Descriptor] {
        &self.list
    }

    /// The device-readable descriptors, in chain order.
    pub fn readable(&self) -> impl Iterator<Item = Descriptor> + '_ {
        self.list.iter().copied().filter(|d| !d.is_write_only())
    }

    /// The device-writable descriptors, in chain order.
    pub fn writable(&self) -> impl Iterator<Item = Descriptor> + '_ {
        self.list.iter().copied().filter(|d| d.is_write_only())
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
