//! [`SplitQueue`]: the driver state of one split virtqueue, its well-behaved path and the
//! ring-level corruption primitives.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::*;
use crate::error::{Error, Result};
use crate::memory::GuestMem;

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
        self.put_avail(mem, head)?;
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
        self.put_avail(mem, head)
    }

    /// Puts `head` in the next avail slot, then (descriptors and ring entry first) bumps
    /// `avail.idx`.
    fn put_avail(&mut self, mem: &GuestMem, head: u16) -> Result<()> {
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
