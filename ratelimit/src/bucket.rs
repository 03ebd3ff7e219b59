//! A single token bucket with exact integer arithmetic.

use std::time::Duration;

use crate::clock::Nanos;

const NANOS_PER_SEC: i128 = 1_000_000_000;

/// The configuration of one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Limit {
    /// Refill rate in units per second (bytes/s or operations/s). `0` means unlimited.
    pub size: u64,
    /// Capacity in units: the most the bucket can hold, and what a new bucket holds.
    /// `0` is legal and means "no burst": every request is paid entirely as debt.
    pub burst: u64,
}

impl Limit {
    /// No limit: always admits, charges nothing.
    pub const UNLIMITED: Limit = Limit { size: 0, burst: 0 };

    /// `size` units per second with the default burst, which equals `size` (one second's worth).
    pub const fn new(size: u64) -> Self {
        Limit { size, burst: size }
    }

    /// `size` units per second with an explicit `burst` capacity.
    pub const fn with_burst(size: u64, burst: u64) -> Self {
        Limit { size, burst }
    }

    /// Whether this limit is "unlimited" (`size == 0`).
    pub const fn is_unlimited(&self) -> bool {
        self.size == 0
    }
}

/// A token bucket: starts full, refills continuously at `size` units/s up to `burst`, and lets a
/// request bigger than what it holds run into debt (see the crate docs for the admission rule).
///
/// The level is kept in unit·nanoseconds (`tokens × 10⁹`), so refill is `size × elapsed_ns`
/// with no rounding at all; `i128`/`u128` arithmetic covers every `u64` size, burst and request.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    limit: Limit,
    /// Level in unit·ns at `last`; may be negative (debt). Never above `burst × 10⁹`.
    level: i128,
    last: Nanos,
    /// The last charge from full ([`TokenBucket::charge_full`]), so that a run of requests of
    /// one size (the usual case) computes it once.
    from_full: FromFull,
}

/// A charge of `n` units from a full bucket under one limit: the level it leaves and the
/// nanoseconds until the bucket is full again.
#[derive(Debug, Clone, Copy)]
struct FromFull {
    /// Units charged (`0`: nothing computed yet; a charge from full is never of 0 units).
    n: u64,
    /// The level (unit·ns) after the charge.
    level: i128,
    /// `⌈n·10⁹ / size⌉`, or `u64::MAX` if that does not fit 64 bits.
    refill_ns: u64,
}

impl FromFull {
    const NONE: FromFull = FromFull {
        n: 0,
        level: 0,
        refill_ns: u64::MAX,
    };

    fn of(limit: Limit, n: u64) -> Self {
        FromFull {
            n,
            // Both terms are below 2^94: no overflow, and the same as the saturating charge.
            level: capacity(limit) - n as i128 * NANOS_PER_SEC,
            // At that instant the refill covers the deficit, one nanosecond earlier it does not.
            refill_ns: n
                .checked_mul(NANOS_PER_SEC as u64)
                .map_or(u64::MAX, |d| d.div_ceil(limit.size)),
        }
    }
}

impl TokenBucket {
    /// A bucket with `limit`, full at `now`.
    pub fn new(limit: Limit, now: Nanos) -> Self {
        TokenBucket {
            limit,
            level: capacity(limit),
            last: now,
            from_full: FromFull::NONE,
        }
    }

    /// The current configuration.
    pub fn limit(&self) -> Limit {
        self.limit
    }

    /// Whether the bucket is unlimited (`size == 0`).
    pub fn is_unlimited(&self) -> bool {
        self.limit.is_unlimited()
    }

    /// Changes the configuration at `now` without creating tokens: the bucket keeps its current
    /// level (refilled at the old rate up to `now`), capped at the new burst, and keeps any debt;
    /// from then on it refills at the new rate. A bucket that was unlimited starts empty, so
    /// removing a limit and adding it back cannot hand out a burst. Setting the same limit again
    /// changes nothing.
    pub fn set_limit(&mut self, limit: Limit, now: Nanos) {
        if limit == self.limit {
            return;
        }
        let level = if self.is_unlimited() {
            0
        } else {
            self.advance(now);
            self.level
        };
        self.limit = limit;
        self.from_full = FromFull::NONE;
        self.level = level.min(capacity(limit));
        if now > self.last {
            self.last = now;
        }
    }

    /// Level in unit·ns at `now` (not stored). `now` earlier than the last update counts as no
    /// time elapsed.
    fn scaled_level(&self, now: Nanos) -> i128 {
        self.level_after(self.elapsed_ns(now))
    }

    /// Nanoseconds from the last update to `now` (0 if `now` is earlier).
    #[inline]
    pub(crate) fn elapsed_ns(&self, now: Nanos) -> u64 {
        now.ns_since(self.last)
    }

    /// The instant of the last update.
    #[inline]
    pub(crate) fn last(&self) -> Nanos {
        self.last
    }

    /// Level in unit·ns `elapsed` nanoseconds after the last update.
    #[inline]
    fn level_after(&self, elapsed: u64) -> i128 {
        let cap = capacity(self.limit);
        // cap - level >= 0 and < 2^127.
        let deficit = (cap - self.level) as u128;
        // Both factors < 2^64: the product fits u128 (one widening multiply).
        let refill = self.limit.size as u128 * elapsed as u128;
        if refill < deficit {
            self.level + refill as i128
        } else {
            cap
        }
    }

    /// Applies the refill up to `now`.
    #[inline]
    fn advance(&mut self, now: Nanos) {
        self.level = self.scaled_level(now);
        if now > self.last {
            self.last = now;
        }
    }

    /// Whole tokens in the bucket at `now`, rounded down (negative while in debt), saturating at
    /// the `i64` range. `None` when unlimited.
    pub fn level(&self, now: Nanos) -> Option<i64> {
        if self.is_unlimited() {
            return None;
        }
        let whole = self.scaled_level(now).div_euclid(NANOS_PER_SEC);
        Some(whole.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
    }

    /// The level (unit·ns) a request of `n` units needs: `min(n, burst)` tokens.
    fn need(&self, n: u64) -> i128 {
        n.min(self.limit.burst) as i128 * NANOS_PER_SEC
    }

    /// Whether a request of `n` units would be admitted at `now`: the bucket holds at least
    /// `min(n, burst)` tokens. Always true when unlimited.
    pub fn admits(&self, n: u64, now: Nanos) -> bool {
        self.is_unlimited() || self.scaled_level(now) >= self.need(n)
    }

    /// Whether a request of `n` units may be paid at a ring stop: the bucket may go one burst
    /// further into debt than [`TokenBucket::admits`] allows (level + burst ≥ `min(n, burst)`).
    pub fn admits_at_stop(&self, n: u64, now: Nanos) -> bool {
        self.is_unlimited() || self.scaled_level(now) + capacity(self.limit) >= self.need(n)
    }

    /// How long from `now` until a request of `n` units is admitted, assuming nothing else is
    /// charged meanwhile: [`Duration::ZERO`] if it is admitted now, otherwise the exact wait
    /// rounded up to the nanosecond (so at `now + wait` [`TokenBucket::admits`] is true and at
    /// one nanosecond earlier it is false). Saturates at [`Duration::MAX`].
    pub fn time_until(&self, n: u64, now: Nanos) -> Duration {
        if self.is_unlimited() {
            return Duration::ZERO;
        }
        let missing = self.need(n) - self.scaled_level(now);
        if missing <= 0 {
            return Duration::ZERO;
        }
        let ns = (missing as u128).div_ceil(self.limit.size as u128);
        match u64::try_from(ns / NANOS_PER_SEC as u128) {
            Ok(secs) => Duration::new(secs, (ns % NANOS_PER_SEC as u128) as u32),
            Err(_) => Duration::MAX,
        }
    }

    /// Whether taking `take` units now still leaves the bucket able to admit `then_need` units at
    /// `at` (refilling meanwhile, nothing else charged). Used to lend tokens that a waiting item
    /// will not need before its deadline.
    pub(crate) fn lends(&self, take: u64, then_need: u64, at: Nanos, now: Nanos) -> bool {
        if self.is_unlimited() || take == 0 || then_need == 0 {
            return true;
        }
        let after = self.scaled_level(now) - take as i128 * NANOS_PER_SEC;
        let missing = self.need(then_need) - after;
        if missing <= 0 {
            return true;
        }
        // Both factors < 2^64: the product fits u128.
        self.limit.size as u128 * at.ns_since(now) as u128 >= missing as u128
    }

    /// Applies the refill up to `now`, then whether the bucket admits `n` units (as
    /// [`TokenBucket::admits`] at `now`). Refilling changes nothing any query reports: the level
    /// at any later instant is the same, exactly (integer unit·ns), whether or not it happened.
    #[cfg(test)]
    pub(crate) fn refill_admits(&mut self, n: u64, now: Nanos) -> bool {
        self.refill_admits_after(n, now, self.elapsed_ns(now))
    }

    /// [`TokenBucket::refill_admits`] given `elapsed = self.elapsed_ns(now)` (computed once for
    /// several buckets last updated at the same instant).
    #[inline]
    pub(crate) fn refill_admits_after(&mut self, n: u64, now: Nanos, elapsed: u64) -> bool {
        if self.is_unlimited() {
            return true;
        }
        self.level = self.level_after(elapsed);
        if now > self.last {
            self.last = now;
        }
        self.level >= self.need(n)
    }

    /// Charges `n` units of a bucket just refilled by [`TokenBucket::refill_admits`] (the same
    /// as [`TokenBucket::charge`] at that instant, without computing the refill again).
    #[inline]
    pub(crate) fn charge_refilled(&mut self, n: u64) {
        if !self.is_unlimited() {
            self.level = self.level.saturating_sub(n as i128 * NANOS_PER_SEC);
        }
    }

    /// Charges `n` units (`n > 0`) at `now` of a limited bucket known to be full at `now` and
    /// last updated no later: the same state as refilling to `now` and [`TokenBucket::charge`],
    /// computed without the refill. Returns the nanoseconds until it is full again, rounded up
    /// (`⌈n·10⁹ / size⌉`), or `u64::MAX` if that does not fit 64 bits.
    #[inline]
    pub(crate) fn charge_full(&mut self, n: u64, now: Nanos) -> u64 {
        if self.from_full.n != n {
            self.from_full = FromFull::of(self.limit, n);
        }
        self.level = self.from_full.level;
        self.last = now;
        self.from_full.refill_ns
    }

    /// Charges `n` units unconditionally (the level may go, or go further, into debt). A no-op
    /// when unlimited. Check [`TokenBucket::admits`] first for the admission rule.
    pub fn charge(&mut self, n: u64, now: Nanos) {
        if self.is_unlimited() {
            return;
        }
        self.advance(now);
        self.level = self.level.saturating_sub(n as i128 * NANOS_PER_SEC);
    }
}

fn capacity(limit: Limit) -> i128 {
    limit.burst as i128 * NANOS_PER_SEC
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * 1024;

    /// Admits and charges `n` units if the bucket admits them, as a [`crate::Throttle`] does.
    fn take(b: &mut TokenBucket, n: u64, now: Nanos) -> bool {
        let ok = b.admits(n, now);
        if ok {
            b.charge(n, now);
        }
        ok
    }

    /// The one-refill path (`refill_admits` + `charge_refilled`, the throttle's path when
    /// nothing is parked) decides and charges exactly as `admits` + `charge`, step for step,
    /// through refills, debt, a full bucket and a clock that does not move.
    #[test]
    fn one_refill_path_matches_admits_and_charge() {
        let t0 = Nanos::now();
        let limit = Limit::with_burst(1000, 3000);
        let (mut a, mut b) = (TokenBucket::new(limit, t0), TokenBucket::new(limit, t0));
        let mut now = t0;
        let steps = [
            (0, 2500),
            (0, 600),
            (1_000_000, 1),
            (700_000_000, 5000),
            (20 << 30, 10),
        ];
        for (step, (dt, n)) in steps.into_iter().cycle().take(40).enumerate() {
            now += ns(dt);
            let expected = take(&mut a, n, now);
            let got = b.refill_admits(n, now);
            if got {
                b.charge_refilled(n);
            }
            assert_eq!(got, expected, "step {step}");
            assert_eq!(b.level(now), a.level(now), "step {step}");
            assert_eq!(b.level(now + ns(123_456)), a.level(now + ns(123_456)));
        }
    }

    fn ns(n: u64) -> Duration {
        Duration::from_nanos(n)
    }

    #[test]
    fn burst_then_plateau_then_refill() {
        let t0 = Nanos::now();
        let mut b = TokenBucket::new(Limit::with_burst(1000, 4000), t0);
        assert_eq!(b.level(t0), Some(4000));
        for _ in 0..4 {
            assert!(take(&mut b, 1000, t0));
        }
        assert!(!take(&mut b, 1000, t0), "burst exhausted");
        assert_eq!(b.level(t0), Some(0));
        // 1000/s: one unit per ms, continuously.
        assert_eq!(b.time_until(1000, t0), Duration::from_secs(1));
        assert_eq!(b.level(t0 + Duration::from_micros(1500)), Some(1));
        assert!(take(&mut b, 1000, t0 + Duration::from_secs(1)));
        // The plateau: never above burst however long we wait.
        assert_eq!(b.level(t0 + Duration::from_secs(3600)), Some(4000));
    }

    #[test]
    fn no_drift_with_odd_rates() {
        // 3 units/s: 1 unit every 333_333_333.3 ns. 3000 single-unit requests at their exact
        // deadlines take exactly 1000 s minus the 3-unit burst.
        let t0 = Nanos::now();
        let mut b = TokenBucket::new(Limit::with_burst(3, 3), t0);
        let mut t = t0;
        for _ in 0..3003 {
            t += b.time_until(1, t);
            assert!(take(&mut b, 1, t));
        }
        assert_eq!(t - t0, Duration::from_secs(1000));
    }

    #[test]
    fn over_burst_request_runs_into_debt() {
        let t0 = Nanos::now();
        let size = 10 * MIB;
        let mut b = TokenBucket::new(Limit::with_burst(size, 64 * KIB), t0);
        assert!(
            take(&mut b, MIB, t0),
            "over-burst request admitted when full"
        );
        assert_eq!(b.level(t0), Some(-((MIB - 64 * KIB) as i64)));
        // The next one needs the bucket full again: debt + burst = 1 MiB at 10 MiB/s = 100 ms.
        let wait = b.time_until(MIB, t0);
        assert_eq!(wait, Duration::from_millis(100));
        assert!(!b.admits(MIB, t0 + wait - ns(1)));
        assert!(b.admits(MIB, t0 + wait));
        // A small one needs only debt + itself.
        assert_eq!(b.time_until(1, t0), Duration::from_nanos(93_750_096));
    }

    #[test]
    fn exact_deadline_rounds_up() {
        let t0 = Nanos::now();
        // 7 units/s, empty: 1 unit takes 142_857_142.857 ns -> 142_857_143 ns.
        let mut b = TokenBucket::new(Limit::new(7), t0);
        b.charge(7, t0);
        let d = b.time_until(1, t0);
        assert_eq!(d, ns(142_857_143));
        assert!(!b.admits(1, t0 + d - ns(1)));
        assert!(b.admits(1, t0 + d));
    }

    #[test]
    fn extreme_values() {
        let t0 = Nanos::now();
        // size 1
        let mut b = TokenBucket::new(Limit::new(1), t0);
        assert!(take(&mut b, 1, t0));
        assert_eq!(b.time_until(1, t0), Duration::from_secs(1));
        // 10 GB/s: 10 units per ns
        let mut b = TokenBucket::new(Limit::new(10_000_000_000), t0);
        assert!(take(&mut b, 10_000_000_000, t0));
        assert_eq!(b.time_until(10, t0), ns(1));
        assert_eq!(b.time_until(11, t0), ns(2));
        assert_eq!(b.level(t0 + ns(1)), Some(10));
        // huge burst and requests
        let big = u64::MAX / 2;
        let mut b = TokenBucket::new(Limit::with_burst(u64::MAX, big), t0);
        assert_eq!(b.level(t0), Some(big as i64));
        assert!(take(&mut b, u64::MAX, t0));
        assert!(b.level(t0).unwrap() < 0);
        assert!(take(&mut b, u64::MAX, t0 + Duration::from_secs(2)));
        assert_eq!(
            b.level(t0 + Duration::from_secs(1_000_000)),
            Some(big as i64)
        );
        // u64::MAX debt at 1 unit/s: a wait far beyond any timer, without overflow.
        let mut b = TokenBucket::new(Limit::with_burst(1, 0), t0);
        b.charge(u64::MAX, t0);
        assert_eq!(b.time_until(1, t0), Duration::from_secs(u64::MAX));
        // Elapsed time and size both huge: refill saturates at burst.
        let b = TokenBucket::new(Limit::new(u64::MAX), t0);
        assert_eq!(b.level(t0 + Duration::from_secs(1 << 40)), Some(i64::MAX));
    }

    #[test]
    fn unlimited_and_zero_burst() {
        let t0 = Nanos::now();
        let mut b = TokenBucket::new(Limit::UNLIMITED, t0);
        assert!(take(&mut b, u64::MAX, t0));
        assert_eq!(b.level(t0), None);
        assert_eq!(b.time_until(u64::MAX, t0), Duration::ZERO);
        // burst 0: every request is pure debt, the next waits for it to be paid back.
        let mut b = TokenBucket::new(Limit::with_burst(100, 0), t0);
        assert!(take(&mut b, 50, t0));
        assert_eq!(b.time_until(1, t0), Duration::from_millis(500));
    }

    #[test]
    fn set_limit_keeps_the_level_and_never_creates_tokens() {
        let t0 = Nanos::now();
        let mut b = TokenBucket::new(Limit::new(100), t0);
        b.charge(300, t0);
        b.set_limit(Limit::new(100), t0);
        assert_eq!(b.level(t0), Some(-200), "same limit: state kept");
        // Resized: the debt is kept, and refill continues at the new rate from it.
        b.set_limit(Limit::with_burst(200, 50), t0);
        assert_eq!(b.level(t0), Some(-200), "debt kept");
        assert_eq!(b.time_until(50, t0), Duration::from_millis(1250));
        // Rate ±1 from a full bucket: still full, never fuller.
        let mut b = TokenBucket::new(Limit::with_burst(1000, 1000), t0);
        b.charge(400, t0);
        let t1 = t0 + Duration::from_millis(100); // +100 at the old rate
        b.set_limit(Limit::with_burst(1001, 1000), t1);
        assert_eq!(b.level(t1), Some(700));
        b.set_limit(Limit::with_burst(999, 1000), t1);
        assert_eq!(b.level(t1), Some(700), "a change hands out nothing");
        // Tightening caps the level at the new burst.
        b.set_limit(Limit::with_burst(100, 300), t1);
        assert_eq!(b.level(t1), Some(300));
        // Loosening: the new rate from the current level.
        b.set_limit(Limit::with_burst(10_000, 100_000), t1);
        assert_eq!(b.level(t1), Some(300));
        assert_eq!(b.level(t1 + Duration::from_millis(10)), Some(400));
        // Removed and added back: starts empty, whatever it held before.
        b.set_limit(Limit::UNLIMITED, t1);
        assert!(take(&mut b, u64::MAX, t1));
        b.set_limit(Limit::with_burst(10_000, 100_000), t1);
        assert_eq!(b.level(t1), Some(0), "re-added: empty");
        assert!(!b.admits(1, t1));
        assert_eq!(b.time_until(100, t1), Duration::from_millis(10));
    }

    #[test]
    fn a_stop_may_go_one_burst_further_into_debt() {
        let t0 = Nanos::now();
        let mut b = TokenBucket::new(Limit::with_burst(1000, 500), t0);
        b.charge(500, t0); // empty
        assert!(!b.admits(300, t0));
        assert!(b.admits_at_stop(300, t0), "level 0 + burst 500 >= 300");
        b.charge(300, t0);
        assert!(b.admits_at_stop(200, t0), "-300 + 500 >= 200");
        assert!(!b.admits_at_stop(201, t0));
        b.charge(200, t0);
        assert_eq!(b.level(t0), Some(-500), "one burst of debt at most");
        // Bigger than the burst: payable at a stop from an empty bucket, not from debt.
        let mut b = TokenBucket::new(Limit::with_burst(1000, 100), t0);
        b.charge(100, t0);
        assert!(b.admits_at_stop(10_000, t0));
        b.charge(1, t0);
        assert!(!b.admits_at_stop(10_000, t0));
        assert!(TokenBucket::new(Limit::UNLIMITED, t0).admits_at_stop(u64::MAX, t0));
    }
}
