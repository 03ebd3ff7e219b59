//! A split virtqueue driver (the guest side) over [`GuestMem`].
//!
//! Layout (virtio 1.x, split ring), all little-endian:
//! - descriptor table: `size` × 16 bytes (`addr u64, len u32, flags u16, next u16`)
//! - avail ring: `flags u16, idx u16, ring[size] u16, used_event u16`
//! - used ring: `flags u16, idx u16, ring[size] {id u32, len u32}, avail_event u16`
//!
//! Besides the well-behaved path ([`SplitQueue::push_chain`], [`SplitQueue::wait_used`]) it
//! exposes the primitives needed to build malformed chains and corrupt the avail ring.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use vm_memory::ByteValued;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::error::{Error, Result};
use crate::memory::{GuestBuf, GuestMem};

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

/// Identifies one submitted chain. Unique for the lifetime of a [`SplitQueue`]
/// (the serial never repeats even though head indices are recycled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token {
    /// Queue index.
    pub queue: u16,
    /// Head descriptor index.
    pub head: u16,
    /// Submission serial number.
    pub serial: u64,
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

struct InFlight {
    serial: u64,
    ids: Vec<u16>,
    data: ChainData,
}

/// Driver state of one split virtqueue.
pub struct SplitQueue {
    index: u16,
    layout: QueueLayout,
    event_idx: bool,
    suppress_kicks: bool,
    kick: EventFd,
    call: EventFd,
    free_ids: Vec<u16>,
    inflight: Vec<Option<InFlight>>,
    next_avail: u16,
    last_kicked: u16,
    last_used: u16,
    serial: u64,
}

impl std::fmt::Debug for SplitQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SplitQueue")
            .field("index", &self.index)
            .field("layout", &self.layout)
            .field("event_idx", &self.event_idx)
            .field("free", &self.free_ids.len())
            .field("next_avail", &self.next_avail)
            .field("last_used", &self.last_used)
            .finish()
    }
}

enum Wake {
    Call,
    Conn,
    Timeout,
}

/// True if the peer of socket `fd` has hung up (EOF pending or error).
fn peer_closed(fd: Option<RawFd>) -> bool {
    let Some(fd) = fd else { return false };
    let mut b = 0u8;
    // SAFETY: peeking one byte into a valid local buffer.
    let r = unsafe {
        libc::recv(
            fd,
            (&mut b as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if r == 0 {
        return true;
    }
    if r < 0 {
        let e = std::io::Error::last_os_error();
        return !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
        );
    }
    false
}

/// `vring_need_event` from the virtio spec.
pub fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

impl SplitQueue {
    /// Create the driver for queue `index` and zero its rings in `mem`.
    pub fn new(mem: &GuestMem, index: u16, layout: QueueLayout, event_idx: bool) -> Result<Self> {
        if layout.size == 0 || layout.size > MAX_QUEUE_SIZE || !layout.size.is_power_of_two() {
            return Err(Error::InvalidArgument(format!(
                "queue size {} is not a power of two in 1..=32768",
                layout.size
            )));
        }
        if !mem.contains(layout.desc, (layout.end() - layout.desc) as usize) {
            return Err(Error::InvalidArgument(
                "queue does not fit in guest memory".into(),
            ));
        }
        mem.fill(layout.desc, (layout.end() - layout.desc) as usize, 0)?;
        let kick = EventFd::new(EFD_NONBLOCK).map_err(Error::EventFd)?;
        let call = EventFd::new(EFD_NONBLOCK).map_err(Error::EventFd)?;
        let size = layout.size;
        Ok(SplitQueue {
            index,
            layout,
            event_idx,
            suppress_kicks: true,
            kick,
            call,
            free_ids: (0..size).rev().collect(),
            inflight: (0..size).map(|_| None).collect(),
            next_avail: 0,
            last_kicked: 0,
            last_used: 0,
            serial: 0,
        })
    }

    /// Queue index (0 = hiprio, 1 = requests for virtio-fs).
    pub fn index(&self) -> u16 {
        self.index
    }
    /// Guest addresses of the rings.
    pub fn layout(&self) -> QueueLayout {
        self.layout
    }
    /// Queue size.
    pub fn size(&self) -> u16 {
        self.layout.size
    }
    /// Whether VIRTIO_RING_F_EVENT_IDX is in use.
    pub fn event_idx(&self) -> bool {
        self.event_idx
    }
    /// Kick eventfd (given to the daemon with SET_VRING_KICK).
    pub fn kick_fd(&self) -> &EventFd {
        &self.kick
    }
    /// Call eventfd (given to the daemon with SET_VRING_CALL).
    pub fn call_fd(&self) -> &EventFd {
        &self.call
    }
    /// Number of free descriptors.
    pub fn free_descriptors(&self) -> usize {
        self.free_ids.len()
    }
    /// Number of chains submitted and not yet returned (O(queue size)).
    pub fn in_flight(&self) -> usize {
        self.inflight.iter().filter(|f| f.is_some()).count()
    }

    /// Whether `token` was submitted on this queue and not yet returned.
    pub fn is_in_flight(&self, token: Token) -> bool {
        token.queue == self.index
            && self
                .inflight
                .get(token.head as usize)
                .and_then(|f| f.as_ref())
                .is_some_and(|f| f.serial == token.serial)
    }
    /// Our shadow of `avail.idx` (next value to publish from).
    pub fn avail_idx(&self) -> u16 {
        self.next_avail
    }
    /// Next used index we will consume.
    pub fn last_used(&self) -> u16 {
        self.last_used
    }
    /// When false, every publish kicks; when true (default) kicks follow the daemon's
    /// `avail_event` / `NO_NOTIFY` suppression like a real driver.
    pub fn set_suppress_kicks(&mut self, on: bool) {
        self.suppress_kicks = on;
    }

    /// Take `n` free descriptor ids (not yet linked or written).
    pub fn alloc_ids(&mut self, n: usize) -> Result<Vec<u16>> {
        if n == 0 || n > self.free_ids.len() {
            return Err(Error::QueueFull {
                queue: self.index as usize,
                need: n,
                have: self.free_ids.len(),
            });
        }
        let at = self.free_ids.len() - n;
        let mut ids = self.free_ids.split_off(at);
        ids.reverse();
        Ok(ids)
    }

    /// Give back ids taken with [`alloc_ids`](Self::alloc_ids) that were never published.
    pub fn release_ids(&mut self, ids: Vec<u16>) {
        self.free_ids.extend(ids.into_iter().rev());
    }

    /// Write descriptor table entry `id` verbatim (any id below the queue size).
    pub fn write_desc(&self, mem: &GuestMem, id: u16, d: RawDescriptor) -> Result<()> {
        if id >= self.layout.size {
            return Err(Error::InvalidArgument(format!(
                "descriptor id {id} >= queue size"
            )));
        }
        mem.write_obj(self.layout.desc_addr(id), d)
    }

    /// Read descriptor table entry `id`.
    pub fn read_desc(&self, mem: &GuestMem, id: u16) -> Result<RawDescriptor> {
        if id >= self.layout.size {
            return Err(Error::InvalidArgument(format!(
                "descriptor id {id} >= queue size"
            )));
        }
        mem.read_obj(self.layout.desc_addr(id))
    }

    /// Make the chain starting at `head` available. `ids` are all descriptor ids the
    /// chain owns (freed when it is returned); `data` comes back in [`UsedChain`].
    /// Does not kick: call [`notify`](Self::notify).
    pub fn publish(
        &mut self,
        mem: &GuestMem,
        head: u16,
        ids: Vec<u16>,
        data: ChainData,
    ) -> Result<Token> {
        if head >= self.layout.size || self.inflight[head as usize].is_some() {
            return Err(Error::InvalidArgument(format!(
                "head {head} is out of range or already in flight"
            )));
        }
        self.serial += 1;
        let serial = self.serial;
        self.inflight[head as usize] = Some(InFlight { serial, ids, data });
        let slot = self.next_avail % self.layout.size;
        mem.store_u16(self.layout.avail_ring_addr(slot), head, Ordering::Relaxed)?;
        self.next_avail = self.next_avail.wrapping_add(1);
        // Descriptors and ring entry before the index.
        fence(Ordering::Release);
        mem.store_u16(
            self.layout.avail_idx_addr(),
            self.next_avail,
            Ordering::Release,
        )?;
        Ok(Token {
            queue: self.index,
            head,
            serial,
        })
    }

    /// Write `descs` linked in order (NEXT flags and `next` fields are set here) and
    /// publish them as one chain. `flags` of each entry should hold only WRITE/INDIRECT.
    pub fn push_chain(
        &mut self,
        mem: &GuestMem,
        descs: &[(u64, u32, u16)],
        data: ChainData,
    ) -> Result<Token> {
        let ids = self.alloc_ids(descs.len())?;
        for (i, &(addr, len, flags)) in descs.iter().enumerate() {
            let last = i + 1 == descs.len();
            let d = RawDescriptor {
                addr,
                len,
                flags: if last {
                    flags & !VIRTQ_DESC_F_NEXT
                } else {
                    flags | VIRTQ_DESC_F_NEXT
                },
                next: if last { 0 } else { ids[i + 1] },
            };
            if let Err(e) = self.write_desc(mem, ids[i], d) {
                self.release_ids(ids);
                return Err(e);
            }
        }
        let head = ids[0];
        self.publish(mem, head, ids, data)
    }

    /// Kick the daemon if it asked to be notified about what was published since the
    /// last kick (always kicks when kick suppression is off).
    pub fn notify(&mut self, mem: &GuestMem) -> Result<()> {
        // Our avail idx store must be visible before we read the suppression state.
        fence(Ordering::SeqCst);
        let new = self.next_avail;
        let old = self.last_kicked;
        if new == old {
            return Ok(());
        }
        let kick = if !self.suppress_kicks {
            true
        } else if self.event_idx {
            let event = mem.load_u16(self.layout.avail_event_addr(), Ordering::Acquire)?;
            need_event(event, new, old)
        } else {
            let flags = mem.load_u16(self.layout.used_flags_addr(), Ordering::Acquire)?;
            flags & VRING_USED_F_NO_NOTIFY == 0
        };
        self.last_kicked = new;
        if kick {
            self.kick_now()?;
        }
        Ok(())
    }

    /// Write the kick eventfd unconditionally.
    pub fn kick_now(&self) -> Result<()> {
        self.kick.write(1).map_err(Error::EventFd)
    }

    /// The daemon's current `used.idx`.
    pub fn used_idx(&self, mem: &GuestMem) -> Result<u16> {
        mem.load_u16(self.layout.used_idx_addr(), Ordering::Acquire)
    }

    /// Consume one used entry if there is one. A used id that is not an in-flight
    /// head yields [`Error::BadUsedId`] (the entry is consumed).
    pub fn poll_used(&mut self, mem: &GuestMem) -> Result<Option<UsedChain>> {
        let used_idx = self.used_idx(mem)?;
        if used_idx == self.last_used {
            return Ok(None);
        }
        let slot = self.last_used % self.layout.size;
        let addr = self.layout.used_elem_addr(slot);
        let id: u32 = mem.read_obj(addr)?;
        let len: u32 = mem.read_obj(addr + 4)?;
        self.last_used = self.last_used.wrapping_add(1);
        let entry = if id < self.layout.size as u32 {
            self.inflight[id as usize].take()
        } else {
            None
        };
        let Some(f) = entry else {
            return Err(Error::BadUsedId {
                queue: self.index as usize,
                id,
                len,
            });
        };
        self.free_ids.extend(f.ids.iter().rev());
        Ok(Some(UsedChain {
            token: Token {
                queue: self.index,
                head: id as u16,
                serial: f.serial,
            },
            len,
            data: f.data,
        }))
    }

    /// Wait until the daemon returns any chain, or `deadline` passes ([`Error::Timeout`]).
    pub fn wait_used(&mut self, mem: &GuestMem, deadline: Instant) -> Result<UsedChain> {
        self.wait_used_watching(mem, deadline, None)
    }

    /// Like [`wait_used`](Self::wait_used), but also watch `conn` (the vhost-user socket):
    /// if the daemon hangs up, fail at once with [`Error::Disconnected`].
    pub fn wait_used_watching(
        &mut self,
        mem: &GuestMem,
        deadline: Instant,
        mut conn: Option<RawFd>,
    ) -> Result<UsedChain> {
        let start = Instant::now();
        loop {
            if let Some(u) = self.poll_used(mem)? {
                return Ok(u);
            }
            if self.event_idx {
                mem.store_u16(
                    self.layout.used_event_addr(),
                    self.last_used,
                    Ordering::Release,
                )?;
            }
            // used_event store before re-reading used.idx (pairs with the device's fence).
            fence(Ordering::SeqCst);
            if self.used_idx(mem)? != self.last_used {
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout {
                    what: "used buffer",
                    after: deadline.saturating_duration_since(start),
                });
            }
            match self.wait_call_or(deadline - now, conn)? {
                Wake::Conn => {
                    if peer_closed(conn) {
                        // One last look: the daemon may have completed before dying.
                        if let Some(u) = self.poll_used(mem)? {
                            return Ok(u);
                        }
                        return Err(Error::Disconnected);
                    }
                    // Unexpected data on the socket: stop watching it for this wait.
                    conn = None;
                }
                Wake::Call | Wake::Timeout => {}
            }
        }
    }

    /// Sleep until the call eventfd fires or `timeout` passes; drains the eventfd.
    /// Returns whether the eventfd fired.
    pub fn wait_call(&self, timeout: Duration) -> Result<bool> {
        Ok(matches!(self.wait_call_or(timeout, None)?, Wake::Call))
    }

    fn wait_call_or(&self, timeout: Duration, conn: Option<RawFd>) -> Result<Wake> {
        let mut pfds = [
            libc::pollfd {
                fd: self.call.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: conn.unwrap_or(-1),
                events: libc::POLLIN | libc::POLLRDHUP,
                revents: 0,
            },
        ];
        let n = if conn.is_some() { 2 } else { 1 };
        let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: `n` valid pollfds for the duration of the call.
        let r = unsafe { libc::poll(pfds.as_mut_ptr(), n, ms) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                return Ok(Wake::Timeout);
            }
            return Err(Error::EventFd(e));
        }
        if pfds[0].revents != 0 {
            // Non-blocking read; EAGAIN just means someone drained it already.
            let _ = self.call.read();
            return Ok(Wake::Call);
        }
        if n == 2 && pfds[1].revents != 0 {
            return Ok(Wake::Conn);
        }
        Ok(Wake::Timeout)
    }

    // ---- ring-level corruption helpers -------------------------------------------------

    /// Put an arbitrary `head` value (e.g. ≥ queue size) in the next avail slot and
    /// bump `avail.idx` by one, without any in-flight bookkeeping. No kick.
    pub fn poke_avail_head(&mut self, mem: &GuestMem, head: u16) -> Result<()> {
        let slot = self.next_avail % self.layout.size;
        mem.store_u16(self.layout.avail_ring_addr(slot), head, Ordering::Relaxed)?;
        self.next_avail = self.next_avail.wrapping_add(1);
        fence(Ordering::Release);
        mem.store_u16(
            self.layout.avail_idx_addr(),
            self.next_avail,
            Ordering::Release,
        )
    }

    /// Write `avail.idx` verbatim (e.g. jump by more than the queue size). Our shadow
    /// follows, so later submissions continue from there. No kick.
    pub fn poke_avail_idx(&mut self, mem: &GuestMem, idx: u16) -> Result<()> {
        self.next_avail = idx;
        fence(Ordering::Release);
        mem.store_u16(self.layout.avail_idx_addr(), idx, Ordering::Release)
    }

    /// Write `avail.flags` verbatim.
    pub fn poke_avail_flags(&mut self, mem: &GuestMem, flags: u16) -> Result<()> {
        mem.store_u16(self.layout.avail_flags_addr(), flags, Ordering::Release)
    }

    /// Start the ring over after the device stopped it (GET_VRING_BASE), as a driver does on
    /// a device reset: rings zeroed, every descriptor free, indices at 0. Token serials go on
    /// (tokens stay unique). Returns the data of chains the device never returned.
    pub fn restart(&mut self, mem: &GuestMem) -> Result<Vec<ChainData>> {
        let layout = self.layout;
        mem.fill(layout.desc, (layout.end() - layout.desc) as usize, 0)?;
        let lost = self.take_inflight();
        self.free_ids = (0..layout.size).rev().collect();
        self.next_avail = 0;
        self.last_kicked = 0;
        self.last_used = 0;
        Ok(lost)
    }

    /// Forget an in-flight chain without waiting (its descriptors stay reserved, its
    /// data is returned so buffers can be freed). Used when the queue is abandoned.
    pub fn take_inflight(&mut self) -> Vec<ChainData> {
        self.inflight
            .iter_mut()
            .filter_map(|f| f.take().map(|f| f.data))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_offsets() {
        let l = QueueLayout::new(0, 256);
        assert_eq!(l.desc, 0);
        assert_eq!(l.avail, 4096);
        assert_eq!(l.used, 8192);
        assert_eq!(l.avail_ring_addr(3), 4096 + 4 + 6);
        assert_eq!(l.used_event_addr(), 4096 + 4 + 512);
        assert_eq!(l.used_elem_addr(1), 8192 + 4 + 8);
        assert_eq!(l.avail_event_addr(), 8192 + 4 + 2048);
        assert_eq!(l.end(), QueueLayout::total_len(256));
        let l = QueueLayout::new(1, 1024);
        assert_eq!(l.desc, 4096);
        assert_eq!(l.avail, 4096 + 16384);
        assert_eq!(std::mem::size_of::<RawDescriptor>(), 16);
    }

    #[test]
    fn need_event_matches_spec() {
        assert!(need_event(0, 1, 0));
        assert!(!need_event(5, 3, 2));
        assert!(need_event(2, 3, 2));
        assert!(need_event(65535, 0, 65535));
    }

    /// Play the device by hand: the driver's ring writes land where virtio says.
    #[test]
    fn chain_publish_and_used() {
        let mem = GuestMem::new(1 << 20).unwrap();
        let l = QueueLayout::new(0, 8);
        let mut q = SplitQueue::new(&mem, 1, l, true).unwrap();
        let t = q
            .push_chain(
                &mem,
                &[(0x10000, 40, 0), (0x20000, 16, VIRTQ_DESC_F_WRITE)],
                ChainData::default(),
            )
            .unwrap();
        assert_eq!(
            mem.load_u16(l.avail_idx_addr(), Ordering::Acquire).unwrap(),
            1
        );
        let head = mem
            .load_u16(l.avail_ring_addr(0), Ordering::Acquire)
            .unwrap();
        assert_eq!(head, t.head);
        let d0 = q.read_desc(&mem, head).unwrap();
        assert_eq!(
            (d0.addr, d0.len, d0.flags),
            (0x10000, 40, VIRTQ_DESC_F_NEXT)
        );
        let d1 = q.read_desc(&mem, d0.next).unwrap();
        assert_eq!(
            (d1.addr, d1.len, d1.flags),
            (0x20000, 16, VIRTQ_DESC_F_WRITE)
        );
        assert_eq!(q.free_descriptors(), 6);

        // Kick: avail_event is 0 and we moved 0 -> 1, so a kick is due.
        q.notify(&mem).unwrap();
        assert_eq!(q.kick_fd().read().unwrap(), 1);

        // Nothing used yet: times out quickly and publishes used_event.
        let e = q
            .wait_used(&mem, Instant::now() + Duration::from_millis(20))
            .unwrap_err();
        assert!(e.is_timeout());
        assert_eq!(
            mem.load_u16(l.used_event_addr(), Ordering::Acquire)
                .unwrap(),
            0
        );

        // Device returns it.
        mem.write_obj(l.used_elem_addr(0), head as u32).unwrap();
        mem.write_obj(l.used_elem_addr(0) + 4, 16u32).unwrap();
        mem.store_u16(l.used_idx_addr(), 1, Ordering::Release)
            .unwrap();
        let u = q
            .wait_used(&mem, Instant::now() + Duration::from_secs(1))
            .unwrap();
        assert_eq!(u.token, t);
        assert_eq!(u.len, 16);
        assert_eq!(q.free_descriptors(), 8);

        // A bogus used id is reported, not trusted.
        mem.write_obj(l.used_elem_addr(1), 7u32).unwrap();
        mem.store_u16(l.used_idx_addr(), 2, Ordering::Release)
            .unwrap();
        assert!(matches!(
            q.poll_used(&mem),
            Err(Error::BadUsedId { id: 7, .. })
        ));
    }

    #[test]
    fn queue_full_and_bad_size() {
        let mem = GuestMem::new(1 << 20).unwrap();
        assert!(SplitQueue::new(&mem, 0, QueueLayout::new(0, 100), false).is_err());
        let mut q = SplitQueue::new(&mem, 0, QueueLayout::new(0, 2), false).unwrap();
        let descs = [(0x10000, 1, 0); 3];
        assert!(matches!(
            q.push_chain(&mem, &descs, ChainData::default()),
            Err(Error::QueueFull { .. })
        ));
        assert_eq!(q.free_descriptors(), 2);
    }
}
