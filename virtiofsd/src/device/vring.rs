//! A vring that knows how many of its requests are still being served.
//!
//! vhost-user stops a ring with GET_VRING_BASE and reads back the next available index: every
//! request popped before that must already be in the used ring, or it is lost or completed into a
//! ring the guest has since reset. The handler does not tell the backend about the stop; it calls
//! `set_queue_ready(false)` on the vring, so [`FsVring`] wraps the library's `VringRwLock` and
//! makes that call wait until every popped request (served inline, on the pool, or parked by the
//! rate limiter) has been completed.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use vhost_user_backend::{VringRwLock, VringStateGuard, VringStateMutGuard, VringT};
use virtio_queue::Error as VirtQueError;
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};

/// Largest queue the device accepts (the virtio maximum; Kata uses 1024).
pub const MAX_QUEUE_SIZE: usize = 32768;

/// Guest memory as the daemon maps it (no dirty bitmap: no migration).
pub type GuestMem = GuestMemoryAtomic<GuestMemoryMmap<()>>;

/// How long a ring stop waits for in-flight requests before giving up with an error log.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Requests popped from a ring and not yet completed, and what to do when the ring stops.
/// The count is an atomic (touched twice per request); the lock and condvar serve only a stop
/// waiting for it to reach zero, and a completion touches them only while a stop waits (a
/// condvar's notify is a futex syscall even with no waiter: once per emptied batch otherwise).
/// Which heads are in flight is a bit set (4 KiB per ring), so a head the guest publishes again
/// while it is in flight is caught before it is served twice.
pub struct Inflight {
    count: AtomicUsize,
    heads: Box<[AtomicU64]>,
    lock: Mutex<()>,
    idle: Condvar,
    /// Stops waiting on `idle`.
    waiters: AtomicUsize,
    on_stop: Mutex<Vec<Box<dyn Fn() + Send + Sync>>>,
    /// The ring's virtqueue index, once the backend has processed it (the library creates
    /// rings without telling them).
    queue: AtomicU16,
}

impl Default for Inflight {
    fn default() -> Self {
        Inflight {
            count: AtomicUsize::new(0),
            heads: (0..MAX_QUEUE_SIZE.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
            lock: Mutex::default(),
            idle: Condvar::default(),
            waiters: AtomicUsize::new(0),
            on_stop: Mutex::default(),
            queue: AtomicU16::new(0),
        }
    }
}

impl Inflight {
    /// Marks descriptor head `head` in flight; false if it already was (the guest published a
    /// chain it has not got back) or is out of range.
    pub fn claim(&self, head: u16) -> bool {
        let Some(word) = self.heads.get(usize::from(head) / 64) else {
            return false;
        };
        let bit = 1u64 << (head % 64);
        word.fetch_or(bit, Ordering::AcqRel) & bit == 0
    }

    /// Marks `head` no longer in flight. Called before the chain is put in the used ring, so
    /// the guest can never see it returned while it is still marked.
    pub fn release(&self, head: u16) {
        if let Some(word) = self.heads.get(usize::from(head) / 64) {
            word.fetch_and(!(1u64 << (head % 64)), Ordering::AcqRel);
        }
    }

    /// Counts `n` newly popped requests.
    pub fn add(&self, n: usize) {
        self.count.fetch_add(n, Ordering::SeqCst);
    }

    /// Counts one completed request.
    pub fn done(&self) {
        let prev = self
            .count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
                Some(c.saturating_sub(1))
            })
            .unwrap_or(0);
        // SeqCst on both sides: either this load sees a stop's `waiters` increment, or that stop's
        // next look at the count sees this decrement and does not wait.
        if prev <= 1 && self.waiters.load(Ordering::SeqCst) > 0 {
            // Taken so the wake-up cannot fall between a waiter's check and its wait.
            let _g = self.lock.lock().unwrap();
            self.idle.notify_all();
        }
    }

    /// Requests currently in flight.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Registers a callback run when the ring stops, before waiting (e.g. release parked requests).
    pub fn on_stop(&self, f: Box<dyn Fn() + Send + Sync>) {
        self.on_stop.lock().unwrap().push(f);
    }

    fn drain(&self) {
        for f in self.on_stop.lock().unwrap().iter() {
            f();
        }
        let g = self.lock.lock().unwrap();
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let (_g, res) = self
            .idle
            .wait_timeout_while(g, DRAIN_TIMEOUT, |_| self.count() > 0)
            .unwrap();
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        if res.timed_out() {
            log::error!(
                "ring stop: {} request(s) still in flight after {DRAIN_TIMEOUT:?}",
                self.count()
            );
            // The restarted ring may reuse every head.
            for w in self.heads.iter() {
                w.store(0, Ordering::Release);
            }
        }
    }
}

/// `VringRwLock` plus in-flight accounting; see the module docs.
#[derive(Clone)]
pub struct FsVring {
    inner: VringRwLock<GuestMem>,
    inflight: Arc<Inflight>,
}

impl FsVring {
    /// The ring's in-flight accounting.
    pub fn inflight(&self) -> &Arc<Inflight> {
        &self.inflight
    }

    /// The ring's virtqueue index (0 until [`Self::set_queue`]).
    pub fn queue(&self) -> u16 {
        self.inflight.queue.load(Ordering::Relaxed)
    }

    /// Records the ring's virtqueue index.
    pub fn set_queue(&self, queue: u16) {
        self.inflight.queue.store(queue, Ordering::Relaxed);
    }

    /// Whether `other` is a handle to the same ring.
    pub fn same_ring(&self, other: &FsVring) -> bool {
        Arc::ptr_eq(&self.inflight, &other.inflight)
    }
}

impl<'a> VringStateGuard<'a, GuestMem> for FsVring {
    type G = <VringRwLock<GuestMem> as VringStateGuard<'a, GuestMem>>::G;
}

impl<'a> VringStateMutGuard<'a, GuestMem> for FsVring {
    type G = <VringRwLock<GuestMem> as VringStateMutGuard<'a, GuestMem>>::G;
}

impl VringT<GuestMem> for FsVring {
    fn new(mem: GuestMem, max_queue_size: u16) -> Result<Self, VirtQueError> {
        Ok(FsVring {
            inner: VringRwLock::new(mem, max_queue_size)?,
            inflight: Arc::default(),
        })
    }
    fn get_ref(&self) -> <Self as VringStateGuard<'_, GuestMem>>::G {
        self.inner.get_ref()
    }
    fn get_mut(&self) -> <Self as VringStateMutGuard<'_, GuestMem>>::G {
        self.inner.get_mut()
    }
    fn add_used(&self, desc_index: u16, len: u32) -> Result<(), VirtQueError> {
        self.inner.add_used(desc_index, len)
    }
    fn signal_used_queue(&self) -> io::Result<()> {
        self.inner.signal_used_queue()
    }
    fn enable_notification(&self) -> Result<bool, VirtQueError> {
        self.inner.enable_notification()
    }
    fn disable_notification(&self) -> Result<(), VirtQueError> {
        self.inner.disable_notification()
    }
    fn needs_notification(&self) -> Result<bool, VirtQueError> {
        self.inner.needs_notification()
    }
    fn set_enabled(&self, enabled: bool) {
        self.inner.set_enabled(enabled)
    }
    fn set_queue_info(&self, desc: u64, avail: u64, used: u64) -> Result<(), VirtQueError> {
        self.inner.set_queue_info(desc, avail, used)
    }
    fn queue_next_avail(&self) -> u16 {
        self.inner.queue_next_avail()
    }
    fn set_queue_next_avail(&self, base: u16) {
        self.inner.set_queue_next_avail(base)
    }
    fn set_queue_next_used(&self, idx: u16) {
        self.inner.set_queue_next_used(idx)
    }
    fn queue_used_idx(&self) -> Result<u16, VirtQueError> {
        self.inner.queue_used_idx()
    }
    fn set_queue_size(&self, num: u16) {
        self.inner.set_queue_size(num)
    }
    fn set_queue_event_idx(&self, enabled: bool) {
        self.inner.set_queue_event_idx(enabled)
    }
    /// Stopping a ring (`false`) first stops popping, then waits for in-flight requests.
    fn set_queue_ready(&self, ready: bool) {
        self.inner.set_queue_ready(ready);
        if !ready {
            self.inflight.drain();
        }
    }
    fn set_kick(&self, file: Option<File>) {
        self.inner.set_kick(file)
    }
    fn read_kick(&self) -> io::Result<bool> {
        self.inner.read_kick()
    }
    fn set_call(&self, file: Option<File>) {
        self.inner.set_call(file)
    }
    fn set_err(&self, file: Option<File>) {
        self.inner.set_err(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A stop waiting for the last in-flight request returns when it completes, however the
    /// completion and the stop's wait interleave (a lost wake-up would hang for DRAIN_TIMEOUT).
    #[test]
    fn a_stop_returns_when_the_last_request_completes() {
        let inflight = Arc::new(Inflight::default());
        let start = Instant::now();
        for i in 0..2000u32 {
            inflight.add(2);
            let i2 = Arc::clone(&inflight);
            let stop = std::thread::spawn(move || i2.drain());
            inflight.done();
            if i % 2 == 0 {
                std::thread::yield_now();
            }
            inflight.done();
            stop.join().unwrap();
            assert_eq!(inflight.count(), 0);
        }
        assert!(
            start.elapsed() < DRAIN_TIMEOUT,
            "a stop waited out its timeout: a wake-up was lost"
        );
    }

    /// With no stop waiting, completing a batch touches neither the lock nor the condvar.
    #[test]
    fn completions_without_a_stop_leave_the_lock_alone() {
        let inflight = Inflight::default();
        let held = inflight.lock.lock().unwrap();
        inflight.add(3);
        for _ in 0..3 {
            inflight.done(); // would deadlock on the held lock if it took it
        }
        drop(held);
        assert_eq!(inflight.count(), 0);
    }
}
