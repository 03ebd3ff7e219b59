//! Time: [`Nanos`], a point in time as whole nanoseconds, and where it comes from. Everything
//! else in the crate takes `now` as an argument, so the clock is only needed by whoever drives
//! the limiter (the daemon uses [`MonotonicClock`], tests [`FakeClock`]).

use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A point in time: nanoseconds since the origin of a monotonic clock (`CLOCK_MONOTONIC`'s for
/// [`MonotonicClock`]). A plain `u64`, so comparing two is one instruction and a deadline is
/// one addition. Arithmetic saturates: at `0` and at `u64::MAX` ns, about 584 years after the
/// origin (an `Instant` would panic there instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Nanos(u64);

impl Nanos {
    /// The clock's origin.
    pub const ZERO: Nanos = Nanos(0);
    /// The latest representable point.
    pub const MAX: Nanos = Nanos(u64::MAX);

    /// The point `ns` nanoseconds after the origin.
    pub const fn from_ns(ns: u64) -> Self {
        Nanos(ns)
    }

    /// Nanoseconds since the origin.
    pub const fn as_ns(self) -> u64 {
        self.0
    }

    /// `CLOCK_MONOTONIC` now (the same clock in every namespace of the machine).
    #[inline]
    pub fn now() -> Self {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        // CLOCK_MONOTONIC is non-negative and far below 584 years: no overflow.
        Nanos(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
    }

    /// Nanoseconds from `earlier` to `self`, 0 if `earlier` is later.
    #[inline]
    pub const fn ns_since(self, earlier: Nanos) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    #[inline]
    pub const fn saturating_duration_since(self, earlier: Nanos) -> Duration {
        Duration::from_nanos(self.ns_since(earlier))
    }

    /// `self + ns` nanoseconds, `None` past [`Nanos::MAX`].
    #[inline]
    pub const fn checked_add_ns(self, ns: u64) -> Option<Nanos> {
        match self.0.checked_add(ns) {
            Some(t) => Some(Nanos(t)),
            None => None,
        }
    }

    /// `self + d`, `None` past [`Nanos::MAX`].
    #[inline]
    pub fn checked_add(self, d: Duration) -> Option<Nanos> {
        self.checked_add_ns(u64::try_from(d.as_nanos()).ok()?)
    }
}

/// Saturating nanoseconds of a duration.
fn ns_of(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Add<Duration> for Nanos {
    type Output = Nanos;
    /// Saturates at [`Nanos::MAX`].
    fn add(self, d: Duration) -> Nanos {
        Nanos(self.0.saturating_add(ns_of(d)))
    }
}

impl AddAssign<Duration> for Nanos {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Duration> for Nanos {
    type Output = Nanos;
    /// Saturates at [`Nanos::ZERO`].
    fn sub(self, d: Duration) -> Nanos {
        Nanos(self.0.saturating_sub(ns_of(d)))
    }
}

impl SubAssign<Duration> for Nanos {
    fn sub_assign(&mut self, d: Duration) {
        *self = *self - d;
    }
}

impl Sub<Nanos> for Nanos {
    type Output = Duration;
    /// The time from `earlier` to `self`, zero if `earlier` is later (as `Instant` does).
    fn sub(self, earlier: Nanos) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

/// A monotonic source of [`Nanos`].
pub trait Clock: Send + Sync {
    /// The current point in time. Must never go backwards.
    fn now(&self) -> Nanos;
}

/// The real monotonic clock (`CLOCK_MONOTONIC`, [`Nanos::now`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    #[inline]
    fn now(&self) -> Nanos {
        Nanos::now()
    }
}

/// A manually driven clock for tests. Clones share the same time.
///
/// It starts at a fixed origin ([`FakeClock::start`]) and only moves when told to.
#[derive(Debug, Clone)]
pub struct FakeClock {
    origin: Nanos,
    offset_ns: Arc<AtomicU64>,
}

impl Default for FakeClock {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeClock {
    /// A new fake clock whose time is its origin (the monotonic clock's now).
    pub fn new() -> Self {
        FakeClock {
            origin: Nanos::now(),
            offset_ns: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The origin: the point the clock showed when it was created.
    pub fn start(&self) -> Nanos {
        self.origin
    }

    /// Time elapsed since the origin.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.offset_ns.load(Ordering::SeqCst))
    }

    /// Moves the clock forward by `d` (saturating at [`Nanos::MAX`]).
    pub fn advance(&self, d: Duration) {
        let d = ns_of(d);
        let _ = self
            .offset_ns
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |o| {
                Some(o.saturating_add(d))
            });
    }

    /// Sets the clock to `t` (a point before the origin is taken as the origin). Setting it
    /// backwards is allowed here so tests can replay, but a real clock never does that.
    pub fn set(&self, t: Nanos) {
        self.offset_ns
            .store(t.ns_since(self.origin), Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Nanos {
        self.origin + self.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_clock_is_shared_and_manual() {
        let c = FakeClock::new();
        let c2 = c.clone();
        assert_eq!(c.now(), c.start());
        c.advance(Duration::from_millis(5));
        assert_eq!(c2.now(), c.start() + Duration::from_millis(5));
        c2.set(c.start() + Duration::from_nanos(7));
        assert_eq!(c.elapsed(), Duration::from_nanos(7));
        assert!(MonotonicClock.now() <= MonotonicClock.now());
    }

    #[test]
    fn nanos_arithmetic_saturates() {
        let t = Nanos::from_ns(10);
        assert_eq!(t + Duration::from_nanos(5), Nanos::from_ns(15));
        assert_eq!(t - Duration::from_nanos(50), Nanos::ZERO);
        assert_eq!(Nanos::MAX + Duration::from_secs(1), Nanos::MAX);
        assert_eq!(t - Nanos::from_ns(3), Duration::from_nanos(7));
        assert_eq!(Nanos::from_ns(3) - t, Duration::ZERO);
        assert_eq!(Nanos::MAX.checked_add_ns(1), None);
        assert_eq!(t.checked_add(Duration::MAX), None);
        assert_eq!(
            t.checked_add(Duration::from_nanos(1)),
            Some(Nanos::from_ns(11))
        );
        let m = Nanos::now();
        assert!(m.as_ns() > 0 && m <= Nanos::now());
    }
}
