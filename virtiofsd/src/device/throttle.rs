//! What the rate limits charge, and where throttled requests wait.
//!
//! Policy: a READ pays its requested size, a WRITE its payload, in the combined `bw` bucket and
//! in its direction's bucket; every request on the request queue pays one op. Hiprio traffic is
//! never charged. A request that cannot run now is parked (with its chain) in the
//! [`ratelimit::Throttle`], per class, and a timerfd in the backend's epoll loop fires at the
//! exact instant the next parked request can run. Nothing sleeps on the vring thread, so
//! requests of other classes keep flowing. When the ring stops, a parked request is served only
//! if the buckets can pay it (going at most one burst further into debt); the others fail with
//! EIO without being performed, so a device reset is no way around the limits.

use std::io;
use std::os::unix::io::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ratelimit::{Bucket, Class, Clock, Cost, Drained, Limit, MonotonicClock, Throttle};
use vmm_sys_util::timerfd::TimerFd;

pub use crate::config::Limits;
use crate::control::stats::Stats;
use crate::device::chain::Chain;
use crate::device::vring::FsVring;
use crate::fuse::request::{self, Verdict};

/// A chain waiting for tokens, with what is needed to finish it later.
pub struct Parked {
    /// The chain, still in flight.
    pub chain: Chain,
    /// What inspection decided (always `Serve`).
    pub verdict: Verdict,
    /// The ring it completes into (it knows its queue index: [`FsVring::queue`]).
    pub vring: FsVring,
    /// When it was parked.
    pub since: Instant,
}

/// The class and cost of a request.
pub fn charge(cost: request::Cost) -> Option<(Class, Cost)> {
    let op = Cost::new().with(Bucket::Ops, 1);
    Some(match cost {
        request::Cost::Free => return None,
        request::Cost::Other => (Class::Other, op),
        request::Cost::Read(n) => (
            Class::Read,
            op.with(Bucket::Bw, n.into()).with(Bucket::ReadBw, n.into()),
        ),
        request::Cost::Write(n) => (
            Class::Write,
            op.with(Bucket::Bw, n.into())
                .with(Bucket::WriteBw, n.into()),
        ),
    })
}

/// The daemon's throttle: buckets, parked chains, and the timer that releases them.
pub struct Limiter {
    state: Mutex<(Throttle<Parked>, TimerFd)>,
    unlimited: AtomicBool,
    clock: MonotonicClock,
    one_queue: bool,
    stats: Arc<Stats>,
}

/// Seeded bug for the isolation tests (`seeded-bugs` builds only): every request joins one
/// queue, so metadata waits behind throttled writes — what the per-class queues prevent.
fn seeded_one_queue() -> bool {
    cfg!(feature = "seeded-bugs") && std::env::var_os("VIRTIOFSD_SEEDED_BUG_ONE_QUEUE").is_some()
}

/// Seeded bug for the multi-queue test (`seeded-bugs` builds only): a ring stop drains every
/// ring's parked requests, so one queue's reset fails another's requests.
fn seeded_drain_all() -> bool {
    cfg!(feature = "seeded-bugs") && std::env::var_os("VIRTIOFSD_SEEDED_BUG_DRAIN_ALL").is_some()
}

impl Limiter {
    /// A limiter enforcing `limits`; its timer must be added to the epoll loop ([`Self::timer_fd`]).
    pub fn new(limits: Limits, stats: Arc<Stats>) -> io::Result<Self> {
        let clock = MonotonicClock;
        let now = clock.now();
        let th = limits
            .buckets()
            .into_iter()
            .fold(Throttle::new(now), |th, (b, l)| th.with_limit(b, l, now));
        let timer = TimerFd::new().map_err(io::Error::from)?;
        // Non-blocking: a timer re-armed after epoll saw it fire must not block the read.
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            let fd = timer.as_raw_fd();
            let flags = libc::fcntl(fd, libc::F_GETFL);
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        Ok(Limiter {
            state: Mutex::new((th, timer)),
            unlimited: AtomicBool::new(limits.is_unlimited()),
            clock,
            one_queue: seeded_one_queue(),
            stats,
        })
    }

    /// The timerfd to watch for readability; then call [`Self::on_timer`].
    pub fn timer_fd(&self) -> RawFd {
        self.state.lock().unwrap().1.as_raw_fd()
    }

    /// Admits a request costing `cost` now (the chain is handed back), or parks it with what
    /// finishing it later needs and arms the timer (None). A parked item (with its vring
    /// handle) is built only for a request that waits: the admitted path costs a lock and a
    /// clock read.
    pub fn admit(
        &self,
        cost: request::Cost,
        chain: Chain,
        verdict: Verdict,
        vring: &FsVring,
    ) -> Option<Chain> {
        if self.unlimited.load(Ordering::Relaxed) {
            return Some(chain);
        }
        let Some((mut class, cost)) = charge(cost) else {
            return Some(chain);
        };
        if self.one_queue {
            class = Class::Write;
        }
        let mut st = self.state.lock().unwrap();
        let now = self.clock.now();
        let (th, timer) = &mut *st;
        if th.try_admit(class, cost, now) {
            return Some(chain);
        }
        let item = Parked {
            chain,
            verdict,
            vring: vring.clone(),
            since: now,
        };
        th.park(item, class, cost);
        arm(th, timer, now);
        None
    }

    /// Releases every parked chain whose tokens now exist, and re-arms the timer.
    pub fn on_timer(&self) -> Vec<Parked> {
        let mut st = self.state.lock().unwrap();
        let (th, timer) = &mut *st;
        let _ = timer.wait(); // clears the expiry; EAGAIN if already cleared
        let mut out = Vec::new();
        loop {
            let now = self.clock.now();
            th.release_into(now, &mut out);
            match th.next_deadline(now) {
                Some(d) if d <= self.clock.now() => continue,
                _ => break,
            }
        }
        let now = self.clock.now();
        arm(th, timer, now);
        self.record_waits(&out, now);
        out
    }

    fn record_waits(&self, released: &[Parked], now: Instant) {
        for p in released {
            self.stats
                .record_wait(now.saturating_duration_since(p.since));
        }
    }

    /// Replaces the limits at once: parked requests are re-judged under them (the timer fires
    /// now). No change creates tokens: a changed bucket keeps its level (capped at the new
    /// burst) and its debt, and a bucket added where none was starts empty.
    pub fn set_limits(&self, limits: Limits) {
        let mut st = self.state.lock().unwrap();
        let now = self.clock.now();
        let (th, timer) = &mut *st;
        for (b, l) in limits.buckets() {
            th.set_limit(b, l, now);
        }
        self.unlimited
            .store(limits.is_unlimited(), Ordering::Relaxed);
        if th.parked() > 0 {
            if let Err(e) = timer.reset(NS, None) {
                log::error!("cannot arm the throttle timer: {e}");
            }
        }
        log::info!("rate limits changed: {limits}");
    }

    /// Every bucket's limit and current level (None when unlimited).
    pub fn levels(&self) -> [(Bucket, Limit, Option<i64>); 4] {
        let st = self.state.lock().unwrap();
        let now = self.clock.now();
        Bucket::ALL.map(|b| (b, st.0.limit(b), st.0.level(b, now)))
    }

    /// Every parked chain of `ring`, because that ring is stopping: those the buckets can pay
    /// with at most one burst more debt are charged and come back `paid` (serve them); the rest
    /// come back `refused`, charged nothing (fail them without performing them). Chains of the
    /// other rings stay parked, in their order, and the timer is re-armed for them.
    pub fn drain(&self, ring: &FsVring) -> Drained<Parked> {
        let all = seeded_drain_all();
        let mut st = self.state.lock().unwrap();
        let (th, timer) = &mut *st;
        let now = self.clock.now();
        let out = th.drain_where(now, |p| all || p.vring.same_ring(ring));
        arm(th, timer, now);
        self.record_waits(&out.paid, now);
        self.record_waits(&out.refused, now);
        out
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        let st = self.state.lock().unwrap();
        Limits {
            bw: st.0.limit(Bucket::Bw),
            read_bw: st.0.limit(Bucket::ReadBw),
            write_bw: st.0.limit(Bucket::WriteBw),
            ops: st.0.limit(Bucket::Ops),
        }
    }
}

/// Arms `timer` for the next deadline (or disarms it when nothing waits).
fn arm(th: &Throttle<Parked>, timer: &mut TimerFd, now: Instant) {
    let res = match th.next_deadline(now) {
        // A zero duration would disarm the timer: fire in 1 ns instead.
        Some(d) => timer.reset(d.saturating_duration_since(now).max(NS), None),
        None => timer.clear(),
    };
    if let Err(e) = res {
        log::error!("cannot arm the throttle timer: {e}");
    }
}

const NS: std::time::Duration = std::time::Duration::from_nanos(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_by_direction_and_one_op() {
        let (c, cost) = charge(request::Cost::Read(4096)).unwrap();
        assert_eq!(c, Class::Read);
        assert_eq!(cost.get(Bucket::Bw), 4096);
        assert_eq!(cost.get(Bucket::ReadBw), 4096);
        assert_eq!(cost.get(Bucket::WriteBw), 0);
        assert_eq!(cost.get(Bucket::Ops), 1);
        let (c, cost) = charge(request::Cost::Write(10)).unwrap();
        assert_eq!(c, Class::Write);
        assert_eq!(cost.get(Bucket::WriteBw), 10);
        assert_eq!(cost.get(Bucket::ReadBw), 0);
        let (c, cost) = charge(request::Cost::Other).unwrap();
        assert_eq!(c, Class::Other);
        assert_eq!(cost.get(Bucket::Bw), 0);
        assert_eq!(cost.get(Bucket::Ops), 1);
        assert!(charge(request::Cost::Free).is_none());
    }

    /// The README's memory bound counts on a parked request being a small fixed record (its
    /// payload stays in guest memory).
    #[test]
    fn a_parked_request_is_a_small_record() {
        assert!(std::mem::size_of::<Parked>() <= 96);
    }

    #[test]
    fn display_lists_only_set_limits() {
        let l = Limits {
            bw: Limit::with_burst(10_000_000, 20_000_000),
            ..Default::default()
        };
        assert_eq!(l.to_string(), "bw 10000000 B/s (burst 20000000 B)");
        assert_eq!(Limits::default().to_string(), "none");
    }
}
