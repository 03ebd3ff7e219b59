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
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use ratelimit::{Bucket, Class, Clock, Cost, Drained, Limit, MonotonicClock, Nanos, Throttle};
use vmm_sys_util::timerfd::TimerFd;

pub use crate::config::Limits;
use crate::control::stats::Stats;
use crate::device::chain::Chain;
use crate::device::group::Group;
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
    pub since: Nanos,
}

/// What [`Limiter::admit`] decided for a request.
#[must_use = "a request that waits must be parked with `Waiting::park`, or it is never completed"]
pub enum Admission<'a> {
    /// Serve it now: it is charged.
    Go,
    /// It waits for tokens: park its chain (the limiter stays locked until then).
    Wait(Waiting<'a>),
}

/// A request [`Limiter::admit`] did not admit, holding the limiter's lock and the instant it
/// was judged at, so that parking it is the same decision (nothing can be charged between).
pub struct Waiting<'a> {
    st: MutexGuard<'a, State>,
    class: Class,
    cost: Cost,
    now: Nanos,
}

impl Waiting<'_> {
    /// Parks `chain` with what finishing it later needs, and arms the timer for it.
    pub fn park(mut self, chain: Chain, verdict: Verdict, vring: &FsVring) {
        let st = &mut *self.st;
        if let Some(g) = st.group.as_mut() {
            g.note_wait(&st.th, &self.cost, self.now);
        }
        let item = Parked {
            chain,
            verdict,
            vring: vring.clone(),
            since: self.now,
        };
        st.th.park(item, self.class, self.cost);
        arm(&st.th, &mut st.timer, st.group.as_ref(), self.now);
    }
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

/// What the limiter's lock guards.
struct State {
    th: Throttle<Parked>,
    timer: TimerFd,
    /// The daemon's own limits (in a group the throttle's `bw` and `ops` may be tighter).
    own: Limits,
    group: Option<Group>,
}

/// The daemon's throttle: buckets, parked chains, and the timer that releases them.
pub struct Limiter {
    state: Mutex<State>,
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

/// Seeded bug for the group isolation test (`seeded-bugs` builds only): a group member's
/// metadata joins its data queue, so it waits behind the data the group throttles.
fn seeded_group_meta_behind_data() -> bool {
    cfg!(feature = "seeded-bugs")
        && std::env::var_os("VIRTIOFSD_SEEDED_BUG_GROUP_META_BEHIND_DATA").is_some()
}

/// Seeded bug for the multi-queue test (`seeded-bugs` builds only): a ring stop drains every
/// ring's parked requests, so one queue's reset fails another's requests.
fn seeded_drain_all() -> bool {
    cfg!(feature = "seeded-bugs") && std::env::var_os("VIRTIOFSD_SEEDED_BUG_DRAIN_ALL").is_some()
}

impl Limiter {
    /// A limiter enforcing `limits`; its timer must be added to the epoll loop ([`Self::timer_fd`]).
    pub fn new(limits: Limits, group: Option<Group>, stats: Arc<Stats>) -> io::Result<Self> {
        let clock = MonotonicClock;
        let now = clock.now();
        let eff = group.as_ref().map_or(limits, |g| g.effective(&limits));
        let th = eff
            .buckets()
            .into_iter()
            .fold(Throttle::new(now), |th, (b, l)| th.with_limit(b, l, now));
        let timer = TimerFd::new().map_err(io::Error::from)?;
        let grouped = group.is_some();
        // Non-blocking: a timer re-armed after epoll saw it fire must not block the read.
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            let fd = timer.as_raw_fd();
            let flags = libc::fcntl(fd, libc::F_GETFL);
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        Ok(Limiter {
            unlimited: AtomicBool::new(limits.is_unlimited() && group.is_none()),
            state: Mutex::new(State {
                th,
                timer,
                own: limits,
                group,
            }),
            clock,
            one_queue: seeded_one_queue() || (grouped && seeded_group_meta_behind_data()),
            stats,
        })
    }

    /// The timerfd to watch for readability; then call [`Self::on_timer`].
    pub fn timer_fd(&self) -> RawFd {
        self.state.lock().timer.as_raw_fd()
    }

    /// Admits and charges a request costing `cost` now ([`Admission::Go`]), or hands back a
    /// [`Waiting`] that parks its chain. The chain stays with the caller either way, and a parked
    /// item (with its vring handle) is built only for a request that waits: the admitted path
    /// costs a lock and a clock read.
    #[inline]
    pub fn admit(&self, cost: request::Cost) -> Admission<'_> {
        if self.unlimited.load(Ordering::Relaxed) || cost == request::Cost::Free {
            return Admission::Go;
        }
        let mut st = self.state.lock();
        let now = self.clock.now();
        // Built here, not before the lock: only the request's small cost lives across the calls.
        let Some((mut class, cost)) = charge(cost) else {
            return Admission::Go;
        };
        if self.one_queue {
            class = Class::Write;
        }
        let admitted = match st.group {
            None => st.th.try_admit(class, cost, now),
            Some(_) => admit_in_group(&mut st, class, cost, now),
        };
        if admitted {
            return Admission::Go;
        }
        Admission::Wait(Waiting {
            st,
            class,
            cost,
            now,
        })
    }

    /// Releases every parked chain whose tokens now exist, and re-arms the timer.
    pub fn on_timer(&self) -> Vec<Parked> {
        let mut st = self.state.lock();
        let State {
            th,
            timer,
            own,
            group,
        } = &mut *st;
        let _ = timer.wait(); // clears the expiry; EAGAIN if already cleared
        let mut out = Vec::new();
        loop {
            let now = self.clock.now();
            let before = out.len();
            match group {
                Some(g) => {
                    g.tick(th, own, now);
                    th.release_into_gated(now, &mut out, &mut |c| g.gate(c, now));
                }
                None => {
                    th.release_into(now, &mut out);
                }
            }
            match th.next_deadline(now) {
                // In a group the shared buckets may hold the heads back: no busy loop then.
                Some(d) if d <= self.clock.now() && (group.is_none() || out.len() > before) => {
                    continue
                }
                _ => break,
            }
        }
        let now = self.clock.now();
        arm(th, timer, group.as_ref(), now);
        self.record_waits(&out, now, group.as_mut());
        out
    }

    fn record_waits(&self, released: &[Parked], now: Nanos, mut group: Option<&mut Group>) {
        for p in released {
            let waited = now.saturating_duration_since(p.since);
            self.stats.record_wait(waited);
            if let Some(g) = group.as_deref_mut() {
                g.member
                    .record_wait(u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX));
            }
        }
    }

    /// Replaces the limits at once: parked requests are re-judged under them (the timer fires
    /// now). No change creates tokens: a changed bucket keeps its level (capped at the new
    /// burst) and its debt, and a bucket added where none was starts empty.
    pub fn set_limits(&self, limits: Limits) {
        let mut st = self.state.lock();
        let now = self.clock.now();
        let s = &mut *st;
        s.own = limits;
        if let Some(g) = s.group.as_mut() {
            g.member.set_own_caps([limits.bw.size, limits.ops.size]);
        }
        let eff = s.group.as_ref().map_or(limits, |g| g.effective(&limits));
        for (b, l) in eff.buckets() {
            s.th.set_limit(b, l, now);
        }
        self.unlimited.store(
            limits.is_unlimited() && s.group.is_none(),
            Ordering::Relaxed,
        );
        if s.th.parked() > 0 {
            if let Err(e) = s.timer.reset(NS, None) {
                log::error!("cannot arm the throttle timer: {e}");
            }
        }
        log::info!("rate limits changed: {limits}");
    }

    /// Every bucket's limit and current level (None when unlimited).
    pub fn levels(&self) -> [(Bucket, Limit, Option<i64>); 4] {
        let st = self.state.lock();
        let now = self.clock.now();
        Bucket::ALL.map(|b| (b, st.th.limit(b), st.th.level(b, now)))
    }

    /// Every parked chain of `ring`, because that ring is stopping: those the buckets can pay
    /// with at most one burst more debt are charged and come back `paid` (serve them); the rest
    /// come back `refused`, charged nothing (fail them without performing them). Chains of the
    /// other rings stay parked, in their order, and the timer is re-armed for them.
    pub fn drain(&self, ring: &FsVring) -> Drained<Parked> {
        let all = seeded_drain_all();
        let mut st = self.state.lock();
        let State {
            th, timer, group, ..
        } = &mut *st;
        let now = self.clock.now();
        // Paid at a stop from the local buckets only (at most one local burst, see Throttle).
        let out = th.drain_where(now, |p| all || p.vring.same_ring(ring));
        arm(th, timer, group.as_ref(), now);
        self.record_waits(&out.paid, now, group.as_mut());
        self.record_waits(&out.refused, now, group.as_mut());
        out
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.state.lock().own
    }

    /// Runs `f` on the group membership, if any, under the limiter's lock.
    pub fn with_group<R>(&self, f: impl FnOnce(&mut Group) -> R) -> Option<R> {
        self.state.lock().group.as_mut().map(f)
    }
}

/// [`Limiter::admit`] for a group member: tick the share if due, and ask the group's shared
/// buckets too.
#[inline(never)]
fn admit_in_group(st: &mut State, class: Class, cost: Cost, now: Nanos) -> bool {
    let State { th, own, group, .. } = st;
    let Some(g) = group.as_mut() else {
        return th.try_admit(class, cost, now);
    };
    g.tick(th, own, now);
    th.try_admit_gated(class, cost, now, &mut |c| g.gate(c, now))
}

/// Arms `timer` for the next deadline (or disarms it when nothing waits). In a group, the
/// heads may also wait for the shared buckets, and a waiting member wakes at least every tick.
fn arm(th: &Throttle<Parked>, timer: &mut TimerFd, group: Option<&Group>, now: Nanos) {
    let deadline = th.next_deadline(now).map(|d| match group {
        Some(g) => d
            .max(now + g.wait(th, now))
            .min(now + ratelimit::group::TICK),
        None => d,
    });
    let res = match deadline {
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
