//! One descriptor chain popped from a ring, and its completion.
//!
//! Below the backend, the limiter and the FUSE handler: each of them holds, serves or finishes
//! chains, and none needs the others for that.

use log::error;
use vhost_user_backend::VringT;
use virtio_queue::DescriptorChain;
use vm_memory::{GuestMemoryLoadGuard, GuestMemoryMmap};

use crate::device::vring::FsVring;

/// One chain popped from a ring, with the memory it lives in.
pub type Chain = DescriptorChain<GuestMemoryLoadGuard<GuestMemoryMmap<()>>>;

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
