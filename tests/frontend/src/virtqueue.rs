//! A split virtqueue driver (the guest side) over [`GuestMem`](crate::memory::GuestMem).
//!
//! Layout (virtio 1.x, split ring), all little-endian:
//! - descriptor table: `size` × 16 bytes (`addr u64, len u32, flags u16, next u16`)
//! - avail ring: `flags u16, idx u16, ring[size] u16, used_event u16`
//! - used ring: `flags u16, idx u16, ring[size] {id u32, len u32}, avail_event u16`
//!
//! Besides the well-behaved path ([`SplitQueue::push_chain`], [`SplitQueue::wait_used`]) it
//! exposes the primitives needed to build malformed chains and corrupt the avail ring.

pub use crate::token::Token;
use vm_memory::ByteValued;

use crate::memory::GuestBuf;

/// Descriptor flag: the chain continues at `next`.
pub const VIRTQ_DESC_F_NEXT: u16 = 1;
/// Descriptor flag: the device writes this buffer.
pub const VIRTQ_DESC_F_WRITE: u16 = 2;
/// Descriptor flag: the buffer is a table of descriptors.
pub const VIRTQ_DESC_F_INDIRECT: u16 = 4;
/// Used ring flag: the device does not want kicks (without EVENT_IDX).
pub const VRING_USED_F_NO_NOTIFY: u16 = 1;
/// Size of one descriptor table entry.
pub const DESC_SIZE: u64 = 16;
/// Largest split queue size allowed by virtio.
pub const MAX_QUEUE_SIZE: u16 = 32768;

/// One descriptor table entry exactly as laid out in guest memory.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RawDescriptor {
    /// Guest address of the buffer.
    pub addr: u64,
    /// Length of the buffer.
    pub len: u32,
    /// `VIRTQ_DESC_F_*` flags.
    pub flags: u16,
    /// Index of the next descriptor (when `NEXT` is set).
    pub next: u16,
}

// SAFETY: repr(C), only integer fields, no padding (8+4+2+2 = 16).
unsafe impl ByteValued for RawDescriptor {}

/// Guest addresses of one queue's three parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLayout {
    /// Number of entries.
    pub size: u16,
    /// Descriptor table (16-byte aligned).
    pub desc: u64,
    /// Avail ring (2-byte aligned).
    pub avail: u64,
    /// Used ring (4-byte aligned).
    pub used: u64,
}

fn page_up(x: u64) -> u64 {
    x.div_ceil(4096) * 4096
}

impl QueueLayout {
    /// Lay out a queue of `size` entries at `base` (page aligned parts).
    pub fn new(base: u64, size: u16) -> Self {
        let base = page_up(base);
        let desc = base;
        let avail = desc + page_up(DESC_SIZE * size as u64);
        let used = avail + page_up(6 + 2 * size as u64);
        QueueLayout {
            size,
            desc,
            avail,
            used,
        }
    }

    /// Bytes occupied from the (page aligned) base, rounded up to a page.
    pub fn total_len(size: u16) -> u64 {
        let s = size as u64;
        page_up(DESC_SIZE * s) + page_up(6 + 2 * s) + page_up(6 + 8 * s)
    }

    /// End of the layout (exclusive).
    pub fn end(&self) -> u64 {
        self.used + page_up(6 + 8 * self.size as u64)
    }

    /// Address of descriptor `i`.
    pub fn desc_addr(&self, i: u16) -> u64 {
        self.desc + DESC_SIZE * i as u64
    }
    /// Address of `avail.flags`.
    pub fn avail_flags_addr(&self) -> u64 {
        self.avail
    }
    /// Address of `avail.idx`.
    pub fn avail_idx_addr(&self) -> u64 {
        self.avail + 2
    }
    /// Address of `avail.ring[slot]`.
    pub fn avail_ring_addr(&self, slot: u16) -> u64 {
        self.avail + 4 + 2 * slot as u64
    }
    /// Address of `used_event` (after the avail ring).
    pub fn used_event_addr(&self) -> u64 {
        self.avail + 4 + 2 * self.size as u64
    }
    /// Address of `used.flags`.
    pub fn used_flags_addr(&self) -> u64 {
        self.used
    }
    /// Address of `used.idx`.
    pub fn used_idx_addr(&self) -> u64 {
        self.used + 2
    }
    /// Address of `used.ring[slot]`.
    pub fn used_elem_addr(&self, slot: u16) -> u64 {
        self.used + 4 + 8 * slot as u64
    }
    /// Address of `avail_event` (after the used ring).
    pub fn avail_event_addr(&self) -> u64 {
        self.used + 4 + 8 * self.size as u64
    }
}

/// What the frontend remembers about a chain until the daemon returns it.
#[derive(Debug, Default)]
pub struct ChainData {
    /// Pool buffers to free when the chain completes.
    pub bufs: Vec<GuestBuf>,
    /// Device-writable spans `(addr, len)` in chain order; the reply is read from them.
    pub writable: Vec<(u64, u32)>,
}

/// A chain the daemon has put in the used ring.
#[derive(Debug)]
pub struct UsedChain {
    /// The token it was submitted with.
    pub token: Token,
    /// The used length the daemon reported.
    pub len: u32,
    /// Buffers and writable spans of the chain.
    pub data: ChainData,
}

/// `vring_need_event` from the virtio spec.
pub fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

mod split;

pub use split::SplitQueue;

#[cfg(test)]
mod tests;
