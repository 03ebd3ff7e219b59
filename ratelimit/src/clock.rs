//! Time sources. Everything else in the crate takes `now` as an argument, so the clock is only
//! needed by whoever drives the limiter (the daemon uses [`MonotonicClock`], tests [`FakeClock`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A monotonic source of [`Instant`]s.
pub trait Clock: Send + Sync {
    /// The current instant. Must never go backwards.
    fn now(&self) -> Instant;
}

/// The real monotonic clock (`std::time::Instant::now`, i.e. `CLOCK_MONOTONIC` on Linux).
#[derive(Debug, Clone, Copy, Default)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A manually driven clock for tests. Clones share the same time.
///
/// It starts at a fixed origin ([`FakeClock::start`]) and only moves when told to.
#[derive(Debug, Clone)]
pub struct FakeClock {
    origin: Instant,
    offset_ns: Arc<AtomicU64>,
}

impl Default for FakeClock {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeClock {
    /// A new fake clock whose time is its origin.
    pub fn new() -> Self {
        FakeClock {
            origin: Instant::now(),
            offset_ns: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The origin: the instant the clock showed when it was created.
    pub fn start(&self) -> Instant {
        self.origin
    }

    /// Time elapsed since the origin.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.offset_ns.load(Ordering::SeqCst))
    }

    /// Moves the clock forward by `d` (saturating at about 584 years past the origin).
    pub fn advance(&self, d: Duration) {
        let d = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .offset_ns
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |o| {
                Some(o.saturating_add(d))
            });
    }

    /// Sets the clock to `t` (an instant before the origin is taken as the origin). Setting it
    /// backwards is allowed here so tests can replay, but a real clock never does that.
    pub fn set(&self, t: Instant) {
        let d = t.saturating_duration_since(self.origin).as_nanos();
        self.offset_ns
            .store(u64::try_from(d).unwrap_or(u64::MAX), Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
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
}
