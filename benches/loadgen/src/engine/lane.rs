//! One submitter per request queue: its in-flight slots (fixed guest buffers), the chains it
//! publishes on its queue, and the completions it takes back from that queue. Lanes share the
//! session behind a mutex, held only to publish, kick and collect used entries; a lane waits
//! for its queue's call eventfd without it, and reads replies and READ data in place.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::fence;
use std::sync::MutexGuard;

use super::*;

/// A completion: (slot, its request, when seen, reply body length or the error).
pub(super) type Done = (usize, InFlight, Instant, Result<u32, String>);

/// Fixed guest buffers of one in-flight slot.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    /// InHeader + arguments.
    pub(super) inbuf: GuestBuf,
    /// OutHeader + reply body.
    pub(super) out: GuestBuf,
    /// WRITE payload (pre-filled with the write file's pattern).
    pub(super) data: GuestBuf,
}

/// One request in flight.
#[derive(Debug, Clone, Copy)]
pub(super) struct InFlight {
    pub(super) unique: u64,
    pub(super) submitted: Instant,
    pub(super) offset: u64,
    pub(super) len: u32,
    pub(super) step: MetaStep,
}

/// The opened files every lane uses.
#[derive(Debug, Clone, Copy)]
pub(super) struct Files {
    /// (nodeid, fh) of the read file.
    pub(super) read_file: (u64, u64),
    /// (nodeid, fh) of the write file.
    pub(super) write_file: (u64, u64),
    /// Nodeid of the metadata directory.
    pub(super) meta_dir: u64,
}

/// What the lanes of one workload share.
pub(super) struct Ctx<'a> {
    pub(super) cfg: &'a Config,
    pub(super) fs: &'a Mutex<FuseSession>,
    pub(super) files: Files,
    pub(super) clock: Clock,
}

impl Ctx<'_> {
    pub(super) fn lock(&self) -> Res<MutexGuard<'_, FuseSession>> {
        self.fs
            .lock()
            .map_err(|_| Fatal("a submitter thread panicked holding the session".into()))
    }
}

/// The submitter of one request queue.
pub(super) struct Lane {
    /// Its virtqueue index (1 = the first request queue).
    pub(super) queue: usize,
    /// A duplicate of the queue's call eventfd (waited on without the session lock).
    call: OwnedFd,
    /// A duplicate of the vhost-user socket (a hang-up ends a wait at once).
    conn: OwnedFd,
    /// Host address of guest address 0 (the mapping lives as long as the session).
    host_base: u64,
    pub(super) slots: Vec<Slot>,
    pub(super) free: Vec<usize>,
    head_slot: Vec<usize>,
    pub(super) inflight: Vec<Option<InFlight>>,
    /// Returned chains not yet handled: (slot, used length). Held by slot, not by head:
    /// the head's descriptor may be reused by the next request before this one is handled.
    ready: VecDeque<(usize, u32)>,
    rng: u64,
    pub(super) reads: u64,
}

fn dup(fd: i32) -> Res<OwnedFd> {
    // SAFETY: dup of an fd this process holds open; the new fd is owned by the result.
    let d = unsafe { libc::dup(fd) };
    if d < 0 {
        return fatal(format!("dup: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `d` is a fresh fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(d) })
}

impl Lane {
    /// The lane of request queue `queue`: `cfg.queue_depth` slots of guest buffers.
    pub(super) fn new(
        fs: &mut FuseSession,
        cfg: &Config,
        queue: usize,
        max_bs: usize,
    ) -> Res<Lane> {
        let fe = fs.frontend();
        let call = dup(fe.queue(queue)?.call_fd().as_raw_fd())?;
        let conn = dup(fe.vhost().as_raw_fd())?;
        let host_base = fe.mem().host_addr(0);
        let mut slots = Vec::with_capacity(cfg.queue_depth);
        let mut tmp = vec![0u8; max_bs];
        pattern::fill(&mut tmp, WRITE_ID, 0);
        for _ in 0..cfg.queue_depth {
            let inbuf = fe.alloc(4096)?;
            let out = fe.alloc(OUT_HEADER_LEN + max_bs)?;
            let data = fe.alloc(max_bs)?;
            fe.mem().write(data.addr, &tmp)?;
            slots.push(Slot { inbuf, out, data });
        }
        // Lane 1 keeps the seed of a one-queue run; the others get their own streams.
        let rng = (cfg.seed ^ (queue as u64 - 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
        Ok(Lane {
            queue,
            call,
            conn,
            host_base,
            free: (0..cfg.queue_depth).rev().collect(),
            head_slot: vec![usize::MAX; 1024],
            inflight: vec![None; cfg.queue_depth],
            ready: VecDeque::new(),
            slots,
            rng,
            reads: 0,
        })
    }

    /// Run workload `w` on this lane until the clock's end (and everything is back).
    pub(super) fn run(&mut self, w: Workload, cx: &Ctx) -> Res<Measure> {
        let mut m = Measure::new(cx.clock, self.queue, cx.cfg.interval);
        match w {
            Workload::Meta => self.run_meta(cx, &mut m)?,
            Workload::Churn => self.run_churn(cx, &mut m)?,
            _ => self.run_data(cx, w, &mut m)?,
        }
        Ok(m)
    }

    pub(super) fn next_rand(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Put a request in slot `s`: `args` readable after the header, then `data` (a readable
    /// span of the slot's data buffer), then OutHeader + `reply_len` bytes writable.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn submit(
        &mut self,
        cx: &Ctx,
        s: usize,
        opcode: Opcode,
        nodeid: u64,
        args: &[&[u8]],
        data_len: u32,
        reply_len: u32,
    ) -> Res<u64> {
        let slot = self.slots[s];
        let args_len: usize = args.iter().map(|a| a.len()).sum();
        if IN_HEADER_LEN + args_len > slot.inbuf.len as usize {
            return fatal("request arguments too long");
        }
        let mut descs: Vec<(u64, u32, u16)> = Vec::with_capacity(args.len() + 4);
        descs.push((slot.inbuf.addr, IN_HEADER_LEN as u32, 0));
        let mut off = slot.inbuf.addr + IN_HEADER_LEN as u64;
        for a in args {
            descs.push((off, a.len() as u32, 0));
            off += a.len() as u64;
        }
        if data_len > 0 {
            descs.push((slot.data.addr, data_len, 0));
        }
        let w = vufs_frontend::VIRTQ_DESC_F_WRITE;
        descs.push((slot.out.addr, OUT_HEADER_LEN as u32, w));
        if reply_len > 0 {
            descs.push((slot.out.addr + OUT_HEADER_LEN as u64, reply_len, w));
        }
        let data = ChainData {
            bufs: Vec::new(),
            writable: vec![(slot.out.addr, OUT_HEADER_LEN as u32)],
        };
        let mut fs = cx.lock()?;
        let unique = fs.next_unique();
        let h = InHeader {
            len: (IN_HEADER_LEN + args_len) as u32 + data_len,
            opcode: opcode as u32,
            unique,
            nodeid,
            uid: 0,
            gid: 0,
            pid: 1,
            padding: 0,
        };
        let fe = fs.frontend();
        let mem = fe.mem();
        mem.write(slot.inbuf.addr, h.as_slice())?;
        let mut off = slot.inbuf.addr + IN_HEADER_LEN as u64;
        for a in args {
            mem.write(off, a)?;
            off += a.len() as u64;
        }
        // Published without a kick: `flush` kicks once per batch (if the daemon asked).
        let (q, mem) = fe.queue_mut(self.queue)?;
        let tok = q.push_chain(mem, &descs, data)?;
        self.head_slot[tok.head as usize] = s;
        Ok(unique)
    }

    /// Notify the daemon of everything published on this queue since the last flush.
    pub(super) fn flush(&mut self, cx: &Ctx) -> Res<()> {
        let mut fs = cx.lock()?;
        let (q, mem) = fs.frontend().queue_mut(self.queue)?;
        q.notify(mem)?;
        Ok(())
    }

    /// Collect what the daemon returned on this queue; if nothing and `timeout` > 0, arm the
    /// call notification and wait for it (at most `timeout`). Whether anything is ready.
    fn collect(&mut self, cx: &Ctx, timeout: Duration) -> Res<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let mut fs = cx.lock()?;
                let (q, mem) = fs.frontend().queue_mut(self.queue)?;
                while let Some(u) = q.poll_used(mem)? {
                    self.take_used(u.token.head, u.len)?;
                }
                if !self.ready.is_empty() {
                    return Ok(true);
                }
                if timeout.is_zero() {
                    return Ok(false);
                }
                if q.event_idx() {
                    let at = q.layout().used_event_addr();
                    mem.store_u16(at, q.last_used(), std::sync::atomic::Ordering::Release)?;
                }
                // used_event store before re-reading used.idx (pairs with the device's fence).
                fence(std::sync::atomic::Ordering::SeqCst);
                if q.used_idx(mem)? != q.last_used() {
                    continue;
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            if self.wait_call(deadline - now)? {
                // One last look: the daemon may have completed before it went away.
                let mut fs = cx.lock()?;
                let (q, mem) = fs.frontend().queue_mut(self.queue)?;
                while let Some(u) = q.poll_used(mem)? {
                    self.take_used(u.token.head, u.len)?;
                }
                if self.ready.is_empty() {
                    return fatal("waiting for a reply: the daemon hung up");
                }
                return Ok(true);
            }
        }
    }

    /// Note a returned chain (its head) as ready, by its slot.
    fn take_used(&mut self, head: u16, len: u32) -> Res<()> {
        let s = *self
            .head_slot
            .get(head as usize)
            .ok_or_else(|| Fatal("used id out of range".into()))?;
        if self.inflight.get(s).is_none_or(Option::is_none) {
            return fatal(format!("completion for idle slot {s} (head {head})"));
        }
        self.ready.push_back((s, len));
        Ok(())
    }

    /// Sleep until the call eventfd fires (drained), the daemon hangs up (true), or
    /// `timeout`.
    fn wait_call(&self, timeout: Duration) -> Res<bool> {
        let mut pfds = [
            libc::pollfd {
                fd: self.call.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.conn.as_raw_fd(),
                events: libc::POLLRDHUP,
                revents: 0,
            },
        ];
        let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: two valid pollfds for the duration of the call.
        let r = unsafe { libc::poll(pfds.as_mut_ptr(), 2, ms) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                return Ok(false);
            }
            return fatal(format!("poll: {e}"));
        }
        if pfds[0].revents != 0 {
            let mut v = 0u64;
            // SAFETY: reading 8 bytes into a local u64 from a non-blocking eventfd; EAGAIN
            // (someone drained it already) is fine.
            unsafe { libc::read(self.call.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
        }
        Ok(pfds[1].revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0)
    }

    /// Wait for one completion: (slot, in-flight record, Ok(reply body length) or the error).
    /// Blocks up to the reply timeout when `block`, else returns `None` if nothing is there.
    pub(super) fn complete(&mut self, cx: &Ctx, block: bool) -> Res<Option<Done>> {
        if self.ready.is_empty() {
            let t = if block {
                cx.cfg.reply_timeout
            } else {
                Duration::ZERO
            };
            if !self.collect(cx, t)? {
                if block {
                    return fatal(format!(
                        "waiting for a reply on queue {}: none within {t:?}",
                        self.queue
                    ));
                }
                return Ok(None);
            }
        }
        let Some((s, used_len)) = self.ready.pop_front() else {
            return Ok(None);
        };
        let now = Instant::now();
        let Some(inf) = self.inflight.get_mut(s).and_then(Option::take) else {
            return fatal(format!("completion for idle slot {s}"));
        };
        self.free.push(s);
        let out = self.slots[s].out;
        let r = (|| {
            if (used_len as usize) < OUT_HEADER_LEN {
                return Err(format!("used len {used_len} < OutHeader"));
            }
            let h: OutHeader =
                parse_obj(self.guest(out, 0, OUT_HEADER_LEN as u32)).map_err(|e| e.to_string())?;
            if h.len != used_len {
                return Err(format!("OutHeader.len {} != used len {used_len}", h.len));
            }
            if h.unique != inf.unique {
                return Err(format!("unique {} != {}", h.unique, inf.unique));
            }
            if h.error != 0 {
                return Err(format!(
                    "errno {} ({})",
                    -h.error,
                    std::io::Error::from_raw_os_error(-h.error)
                ));
            }
            Ok(used_len - OUT_HEADER_LEN as u32)
        })();
        Ok(Some((s, inf, now, r)))
    }

    /// `len` bytes at `off` in `buf`, one of this lane's slot buffers.
    fn guest(&self, buf: GuestBuf, off: u64, len: u32) -> &[u8] {
        assert!(off + len as u64 <= buf.len);
        // SAFETY: the span lies inside one of this lane's buffers in the mapped guest memory
        // (checked above), which the session keeps mapped; the daemon has returned the chain
        // (or the slot is free), so nobody writes it while we read.
        unsafe {
            std::slice::from_raw_parts((self.host_base + buf.addr + off) as *const u8, len as usize)
        }
    }

    /// The reply body of slot `s` (valid until the slot is reused).
    pub(super) fn body(&self, s: usize, len: u32) -> &[u8] {
        self.guest(self.slots[s].out, OUT_HEADER_LEN as u64, len)
    }

    /// The WRITE payload of slot `s`, to re-tag before it is submitted.
    pub(super) fn data_mut(&mut self, s: usize, len: u32) -> &mut [u8] {
        let slot = self.slots[s];
        assert!(len as u64 <= slot.data.len);
        // SAFETY: inside this lane's data buffer in the mapped guest memory; the slot is
        // free, so the daemon does not read it now, and no other lane uses it.
        unsafe {
            std::slice::from_raw_parts_mut(
                (self.host_base + slot.data.addr) as *mut u8,
                len as usize,
            )
        }
    }
}
