//! vhost-user connection: feature negotiation, memory table, vring setup, and the
//! chain-level submit/wait API shared by the FUSE layer and raw/hostile chains.

use std::collections::{HashSet, VecDeque};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use vhost::vhost_user::message::{VhostUserConfigFlags, VhostUserHeaderFlag};
use vhost::vhost_user::{
    Frontend as VuFrontend, VhostUserFrontend, VhostUserProtocolFeatures, VhostUserVirtioFeatures,
};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};

use crate::error::{Error, Result};
use crate::memory::{BufferPool, GuestBuf, GuestMem};
use crate::virtqueue::{ChainData, QueueLayout, SplitQueue, Token, UsedChain};

/// virtio-fs queue 0: high priority (FORGET, BATCH_FORGET, INTERRUPT).
pub const HIPRIO_QUEUE: usize = 0;
/// virtio-fs queue 1: the (first) request queue.
pub const REQUEST_QUEUE: usize = 1;

/// VIRTIO_RING_F_INDIRECT_DESC feature bit.
pub const VIRTIO_RING_F_INDIRECT_DESC: u64 = 1 << 28;
/// VIRTIO_RING_F_EVENT_IDX feature bit.
pub const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << 29;
/// VHOST_USER_F_PROTOCOL_FEATURES feature bit.
pub const VHOST_USER_F_PROTOCOL_FEATURES: u64 = 1 << 30;
/// VIRTIO_F_VERSION_1 feature bit.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// How to connect; `ConnectOptions::default()` suits the protocol tests.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Guest memory size in bytes (default 128 MiB). Rings take a few pages, the rest is
    /// the buffer pool.
    pub mem_size: usize,
    /// Entries per queue, a power of two (default 256; 1024 for deep queues).
    pub queue_size: u16,
    /// Number of queues to set up: hiprio + request queues (default 2).
    pub num_queues: usize,
    /// Negotiate VIRTIO_RING_F_EVENT_IDX when offered (default true).
    pub event_idx: bool,
    /// Negotiate VIRTIO_RING_F_INDIRECT_DESC when offered (default true).
    pub indirect_desc: bool,
    /// Honour the daemon's kick suppression (default true); false kicks on every submit.
    pub suppress_kicks: bool,
    /// Read/write timeout on the vhost-user socket (default 5 s).
    pub socket_timeout: Duration,
    /// Default wait for replies (default 10 s).
    pub timeout: Duration,
    /// Negotiate CONFIGURE_MEM_SLOTS when offered, for ADD_MEM_REG/REM_MEM_REG (default false).
    pub mem_slots: bool,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            mem_size: 128 << 20,
            queue_size: 256,
            num_queues: 2,
            event_idx: true,
            indirect_desc: true,
            suppress_kicks: true,
            socket_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            mem_slots: false,
        }
    }
}

/// A chain returned by the daemon, with the bytes it wrote.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The chain's token.
    pub token: Token,
    /// Used length reported by the daemon.
    pub used_len: u32,
    /// Contents of the chain's writable buffers, in chain order, truncated to
    /// `min(used_len, writable_capacity)`.
    pub reply: Vec<u8>,
    /// Total length of the writable buffers we allocated for the chain.
    pub writable_capacity: u64,
}

/// A connected vhost-user frontend with guest memory and live virtqueues.
pub struct Frontend {
    vu: VuFrontend,
    mem: GuestMem,
    pool: BufferPool,
    queues: Vec<SplitQueue>,
    offered_features: u64,
    features: u64,
    protocol_features: VhostUserProtocolFeatures,
    timeout: Duration,
    done: VecDeque<Completion>,
    abandoned: HashSet<Token>,
}

impl std::fmt::Debug for Frontend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frontend")
            .field("mem", &self.mem)
            .field("queues", &self.queues)
            .field("features", &format_args!("{:#x}", self.features))
            .field("protocol_features", &self.protocol_features)
            .finish()
    }
}

fn vu<T>(op: &'static str, r: vhost::Result<T>) -> Result<T> {
    r.map_err(|source| Error::Vhost { op, source })
}

impl Frontend {
    /// Connect with default options. Fails at once (no retry) if nobody listens.
    pub fn connect(path: impl AsRef<Path>) -> Result<Self> {
        Self::connect_with(path, &ConnectOptions::default())
    }

    /// Connect and bring the device up: features, owner, protocol features, memory
    /// table, then for each queue NUM/BASE/ADDR/CALL/KICK and ENABLE.
    pub fn connect_with(path: impl AsRef<Path>, opts: &ConnectOptions) -> Result<Self> {
        let path = path.as_ref();
        if opts.num_queues == 0 || opts.num_queues > 64 {
            return Err(Error::InvalidArgument(format!(
                "num_queues {} not in 1..=64",
                opts.num_queues
            )));
        }
        let stream = UnixStream::connect(path).map_err(|source| Error::Connect {
            path: path.to_owned(),
            source,
        })?;
        let sock_err = |source| Error::Connect {
            path: path.to_owned(),
            source,
        };
        stream
            .set_read_timeout(Some(opts.socket_timeout))
            .map_err(sock_err)?;
        stream
            .set_write_timeout(Some(opts.socket_timeout))
            .map_err(sock_err)?;
        let mut vu_fe = VuFrontend::from_stream(stream, opts.num_queues as u64);

        let offered = vu("GET_FEATURES", vu_fe.get_features())?;
        if offered & VIRTIO_F_VERSION_1 == 0 {
            return Err(Error::MissingFeature("VIRTIO_F_VERSION_1"));
        }
        if offered & VHOST_USER_F_PROTOCOL_FEATURES == 0 {
            return Err(Error::MissingFeature("VHOST_USER_F_PROTOCOL_FEATURES"));
        }
        vu("SET_OWNER", vu_fe.set_owner())?;
        let pf_offered = vu("GET_PROTOCOL_FEATURES", vu_fe.get_protocol_features())?;
        let mut want = VhostUserProtocolFeatures::REPLY_ACK | VhostUserProtocolFeatures::CONFIG;
        if opts.mem_slots {
            want |= VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS;
        }
        let pf = pf_offered & want;
        vu("SET_PROTOCOL_FEATURES", vu_fe.set_protocol_features(pf))?;
        if pf.contains(VhostUserProtocolFeatures::REPLY_ACK) {
            // Every later message waits for the daemon's ack: without it a kick can
            // overtake SET_VRING_ENABLE and be lost.
            vu_fe.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
        }

        let mut features = VIRTIO_F_VERSION_1 | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
        if opts.event_idx {
            features |= offered & VIRTIO_RING_F_EVENT_IDX;
        }
        if opts.indirect_desc {
            features |= offered & VIRTIO_RING_F_INDIRECT_DESC;
        }
        vu("SET_FEATURES", vu_fe.set_features(features))?;
        let event_idx = features & VIRTIO_RING_F_EVENT_IDX != 0;

        let ring_bytes = QueueLayout::total_len(opts.queue_size) * opts.num_queues as u64;
        if (opts.mem_size as u64) < ring_bytes + (1 << 20) {
            return Err(Error::InvalidArgument(format!(
                "mem_size {} too small for the rings plus 1 MiB of buffers",
                opts.mem_size
            )));
        }
        let mem = GuestMem::new(opts.mem_size)?;
        vu("SET_MEM_TABLE", vu_fe.set_mem_table(&[mem.region_info()]))?;

        let mut queues = Vec::with_capacity(opts.num_queues);
        let mut base = 0;
        for i in 0..opts.num_queues {
            let layout = QueueLayout::new(base, opts.queue_size);
            base = layout.end();
            let mut q = SplitQueue::new(&mem, i as u16, layout, event_idx)?;
            q.set_suppress_kicks(opts.suppress_kicks);
            start_ring(&mut vu_fe, &mem, &q)?;
            queues.push(q);
        }
        let pool = BufferPool::new(base, mem.size() as u64);
        Ok(Frontend {
            vu: vu_fe,
            mem,
            pool,
            queues,
            offered_features: offered,
            features,
            protocol_features: pf,
            timeout: opts.timeout,
            done: VecDeque::new(),
            abandoned: HashSet::new(),
        })
    }

    /// Virtio features the daemon offered.
    pub fn offered_features(&self) -> u64 {
        self.offered_features
    }
    /// Virtio features we acked.
    pub fn features(&self) -> u64 {
        self.features
    }
    /// vhost-user protocol features we acked.
    pub fn protocol_features(&self) -> VhostUserProtocolFeatures {
        self.protocol_features
    }
    /// Guest memory.
    pub fn mem(&self) -> &GuestMem {
        &self.mem
    }
    /// Default reply timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
    /// Change the default reply timeout.
    pub fn set_timeout(&mut self, t: Duration) {
        self.timeout = t;
    }
    /// Number of queues set up.
    pub fn num_queues(&self) -> usize {
        self.queues.len()
    }
    /// The underlying vhost-user connection, for sending further control messages.
    pub fn vhost(&mut self) -> &mut VuFrontend {
        &mut self.vu
    }

    fn check_queue(&self, q: usize) -> Result<()> {
        if q < self.queues.len() {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!("no queue {q}")))
        }
    }

    /// A queue's driver (read-only).
    pub fn queue(&self, q: usize) -> Result<&SplitQueue> {
        self.check_queue(q)?;
        Ok(&self.queues[q])
    }

    /// A queue's driver and guest memory, for ring-level pokes
    /// (`SplitQueue::poke_avail_head`, `poke_avail_idx`, `write_desc`, `kick_now`, ...).
    pub fn queue_mut(&mut self, q: usize) -> Result<(&mut SplitQueue, &GuestMem)> {
        self.check_queue(q)?;
        Ok((&mut self.queues[q], &self.mem))
    }

    /// Replace the daemon's memory table (SET_MEM_TABLE); with REPLY_ACK, fails on a refusal.
    /// The frontend's own guest memory is [`GuestMem::region_info`].
    pub fn set_mem_table(&mut self, regions: &[VhostUserMemoryRegionInfo]) -> Result<()> {
        vu("SET_MEM_TABLE", self.vu.set_mem_table(regions))
    }

    /// Add one region to the daemon's memory table (ADD_MEM_REG; needs
    /// [`ConnectOptions::mem_slots`]); with REPLY_ACK, fails on a refusal.
    pub fn add_mem_region(&mut self, region: &VhostUserMemoryRegionInfo) -> Result<()> {
        vu("ADD_MEM_REG", self.vu.add_mem_region(region))
    }

    /// Read the device config space (needs the CONFIG protocol feature).
    pub fn read_config(&mut self, offset: u32, len: u32) -> Result<Vec<u8>> {
        if !self
            .protocol_features
            .contains(VhostUserProtocolFeatures::CONFIG)
        {
            return Err(Error::MissingFeature("VHOST_USER_PROTOCOL_F_CONFIG"));
        }
        // GET_CONFIG has its own reply; don't also ask for an ack.
        self.vu.set_hdr_flags(VhostUserHeaderFlag::empty());
        let buf = vec![0u8; len as usize];
        let r = self
            .vu
            .get_config(offset, len, VhostUserConfigFlags::empty(), &buf);
        if self
            .protocol_features
            .contains(VhostUserProtocolFeatures::REPLY_ACK)
        {
            self.vu.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
        }
        vu("GET_CONFIG", r).map(|(_, payload)| payload)
    }

    // ---- buffers -------------------------------------------------------------------

    /// Allocate a guest buffer from the pool.
    pub fn alloc(&mut self, len: usize) -> Result<GuestBuf> {
        self.pool.alloc(len)
    }
    /// Return a guest buffer to the pool.
    pub fn free(&mut self, buf: GuestBuf) {
        self.pool.free(buf)
    }
    /// Bytes of the buffer pool in use (leak checks in tests).
    pub fn pool_in_use(&self) -> u64 {
        self.pool.in_use()
    }

    // ---- submit / wait ---------------------------------------------------------------

    /// Publish a well-formed chain of `(guest addr, len, flags)` descriptors (linked in
    /// order) and kick. `data.bufs` are freed and `data.writable` read back on completion.
    pub fn submit(
        &mut self,
        q: usize,
        descs: &[(u64, u32, u16)],
        data: ChainData,
    ) -> Result<Token> {
        self.check_queue(q)?;
        let queue = &mut self.queues[q];
        let t = queue.push_chain(&self.mem, descs, data)?;
        queue.notify(&self.mem)?;
        Ok(t)
    }

    /// Turn a used chain into a [`Completion`], freeing its buffers.
    fn complete(&mut self, u: UsedChain) -> Completion {
        let cap: u64 = u.data.writable.iter().map(|w| w.1 as u64).sum();
        let mut want = (u.len as u64).min(cap) as usize;
        let mut reply = vec![0u8; want];
        let mut off = 0;
        for &(addr, len) in &u.data.writable {
            if want == 0 {
                break;
            }
            let n = (len as usize).min(want);
            // Writable spans come from our own pool, so reads stay in bounds.
            if self.mem.read(addr, &mut reply[off..off + n]).is_err() {
                reply.truncate(off);
                break;
            }
            off += n;
            want -= n;
        }
        for b in u.data.bufs {
            self.pool.free(b);
        }
        Completion {
            token: u.token,
            used_len: u.len,
            reply,
            writable_capacity: cap,
        }
    }

    /// Wait for a used chain on queue `q`, dropping abandoned ones.
    fn next_used(&mut self, q: usize, deadline: Instant) -> Result<Completion> {
        loop {
            let conn = Some(self.vu.as_raw_fd());
            let u = self.queues[q].wait_used_watching(&self.mem, deadline, conn)?;
            let abandoned = self.abandoned.remove(&u.token);
            let c = self.complete(u);
            if !abandoned {
                return Ok(c);
            }
        }
    }

    /// Wait (up to `timeout`) for the chain `token` to be returned. Other chains that
    /// complete meanwhile are kept for later `wait`/`wait_any` calls.
    pub fn wait(&mut self, token: Token, timeout: Duration) -> Result<Completion> {
        if let Some(pos) = self.done.iter().position(|c| c.token == token) {
            if let Some(c) = self.done.remove(pos) {
                return Ok(c);
            }
        }
        let q = token.queue as usize;
        self.check_queue(q)?;
        if !self.queues[q].is_in_flight(token) || self.abandoned.contains(&token) {
            return Err(Error::UnknownToken(token));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let c = self.next_used(q, deadline)?;
            if c.token == token {
                return Ok(c);
            }
            self.done.push_back(c);
        }
    }

    /// Wait for any chain on queue `q` (completed-but-unclaimed ones first).
    pub fn wait_any(&mut self, q: usize, timeout: Duration) -> Result<Completion> {
        self.wait_any_matching(q, timeout, |_| true)
    }

    /// Wait for any chain on queue `q` whose token satisfies `want`; others that
    /// complete meanwhile are kept for later.
    pub fn wait_any_matching(
        &mut self,
        q: usize,
        timeout: Duration,
        mut want: impl FnMut(&Token) -> bool,
    ) -> Result<Completion> {
        self.check_queue(q)?;
        if let Some(pos) = self
            .done
            .iter()
            .position(|c| c.token.queue as usize == q && want(&c.token))
        {
            if let Some(c) = self.done.remove(pos) {
                return Ok(c);
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            let c = self.next_used(q, deadline)?;
            if want(&c.token) {
                return Ok(c);
            }
            self.done.push_back(c);
        }
    }

    /// Stop caring about `token`: when (if) the daemon returns it, its buffers are freed
    /// and it is not reported.
    pub fn abandon(&mut self, token: Token) {
        if let Some(pos) = self.done.iter().position(|c| c.token == token) {
            self.done.remove(pos);
            return;
        }
        if let Some(q) = self.queues.get(token.queue as usize) {
            if q.is_in_flight(token) {
                self.abandoned.insert(token);
            }
        }
    }

    /// Collect whatever the daemon has returned so far on every queue without
    /// blocking (abandoned chains are freed, others kept for `wait`).
    pub fn reap(&mut self) -> Result<()> {
        for q in 0..self.queues.len() {
            while let Some(u) = self.queues[q].poll_used(&self.mem)? {
                let abandoned = self.abandoned.remove(&u.token);
                let c = self.complete(u);
                if !abandoned {
                    self.done.push_back(c);
                }
            }
        }
        Ok(())
    }

    /// Stop queue `q` and start it over, as QEMU does for a guest's device reset or reboot:
    /// GET_VRING_BASE (the daemon must finish every chain it took before it answers), then
    /// collect what it returned, zero the ring and set it up again from index 0. Returns the
    /// avail index the daemon reported and how many chains it never returned (0 unless the
    /// daemon loses requests). Completions are kept for `wait`/`wait_any`.
    pub fn restart_queue(&mut self, q: usize) -> Result<(u16, usize)> {
        self.check_queue(q)?;
        // GET_VRING_BASE has its own reply; don't also ask for an ack.
        self.vu.set_hdr_flags(VhostUserHeaderFlag::empty());
        let r = self.vu.get_vring_base(q);
        if self
            .protocol_features
            .contains(VhostUserProtocolFeatures::REPLY_ACK)
        {
            self.vu.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
        }
        let base = vu("GET_VRING_BASE", r)?;
        while let Some(u) = self.queues[q].poll_used(&self.mem)? {
            let abandoned = self.abandoned.remove(&u.token);
            let c = self.complete(u);
            if !abandoned {
                self.done.push_back(c);
            }
        }
        let lost = self.queues[q].restart(&self.mem)?;
        let n = lost.len();
        for d in lost {
            for b in d.bufs {
                self.pool.free(b);
            }
        }
        start_ring(&mut self.vu, &self.mem, &self.queues[q])?;
        Ok((base as u16, n))
    }

    /// Kick queue `q` unconditionally.
    pub fn kick(&self, q: usize) -> Result<()> {
        self.check_queue(q)?;
        self.queues[q].kick_now()
    }
}

/// SET_VRING_NUM/BASE(0)/ADDR/CALL/KICK and ENABLE for queue `q`.
fn start_ring(vu_fe: &mut VuFrontend, mem: &GuestMem, q: &SplitQueue) -> Result<()> {
    let i = q.index() as usize;
    let layout = q.layout();
    let size = q.size();
    vu("SET_VRING_NUM", vu_fe.set_vring_num(i, size))?;
    vu("SET_VRING_BASE", vu_fe.set_vring_base(i, 0))?;
    let cfg = VringConfigData {
        queue_max_size: size,
        queue_size: size,
        flags: 0,
        desc_table_addr: mem.host_addr(layout.desc),
        used_ring_addr: mem.host_addr(layout.used),
        avail_ring_addr: mem.host_addr(layout.avail),
        log_addr: None,
    };
    vu("SET_VRING_ADDR", vu_fe.set_vring_addr(i, &cfg))?;
    vu("SET_VRING_CALL", vu_fe.set_vring_call(i, q.call_fd()))?;
    vu("SET_VRING_KICK", vu_fe.set_vring_kick(i, q.kick_fd()))?;
    vu("SET_VRING_ENABLE", vu_fe.set_vring_enable(i, true))?;
    Ok(())
}
