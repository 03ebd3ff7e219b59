//! The group's shared token bucket: one atomic word per bucket, changed by compare-and-swap.
//!
//! The word is the instant `z` at which the bucket is (or was) empty, in ticks of 1/16 ns since
//! the group's epoch. At time `t` the level is `rate · (t − z)`, capped at `burst` (so a `z`
//! far in the past is a full bucket), negative while `z` is in the future (debt): level and time
//! packed in one word. Charging `n` units moves `z` forward by `n / rate` (rounded up to the
//! tick, so rounding never gives more than the rate). Nothing is held: a member killed between
//! two instructions leaves a consistent word behind.
//!
//! Every input is untrusted: a `z` more than [`MAX_DEBT`] ahead is taken as `now + MAX_DEBT`
//! and written back so (a corrupt peer can make others wait that long, never forever; honest
//! debt beyond two seconds of the rate, which only requests bigger than the rate can make, is
//! forgiven), the
//! CAS loop gives up after [`MAX_CAS`] attempts and charges with one `fetch_add`, and a rate
//! or burst of 0 is replaced by the member's own flag values.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::bucket::Limit;

/// Ticks per nanosecond.
pub const TICKS_PER_NS: u128 = 16;
const TICKS_PER_SEC: u128 = 1_000_000_000 * TICKS_PER_NS;
/// The most debt a reader believes: a word further ahead is clamped to this.
pub const MAX_DEBT: Duration = Duration::from_secs(2);
/// Compare-and-swap attempts before charging unconditionally.
pub const MAX_CAS: usize = 64;

/// A time in ticks since the epoch.
pub fn ticks(ns_since_epoch: u64) -> u64 {
    u64::try_from(ns_since_epoch as u128 * TICKS_PER_NS).unwrap_or(u64::MAX)
}

/// One shared bucket: its word and the limit in force.
pub struct SharedBucket<'a> {
    /// The empty-at word.
    pub word: &'a AtomicU64,
    /// The live limit (size > 0, burst > 0; see the module docs).
    pub limit: Limit,
}

/// Ticks `n` units take at `size` units/s, rounded up.
fn span(n: u64, size: u64) -> u128 {
    (n as u128 * TICKS_PER_SEC).div_ceil(size.max(1) as u128)
}

impl SharedBucket<'_> {
    /// The effective empty-at instant for a read word `z` at `t`: not before "full", not
    /// beyond [`MAX_DEBT`] ahead.
    fn effective(&self, z: u64, t: u64) -> u128 {
        let full = (t as u128).saturating_sub(span(self.limit.burst, self.limit.size));
        let cap = t as u128 + ticks(MAX_DEBT.as_nanos() as u64) as u128;
        (z as u128).clamp(full, cap.max(full))
    }

    /// The effective word at `t`; a word beyond the debt cap is repaired to the cap (once: a
    /// lost race leaves it to the next reader), so that time can pay it off.
    fn read(&self, t: u64) -> u128 {
        let seen = self.word.load(Ordering::Relaxed);
        let z = self.effective(seen, t);
        if (seen as u128) > z {
            let _ =
                self.word
                    .compare_exchange(seen, clamp64(z), Ordering::AcqRel, Ordering::Relaxed);
        }
        z
    }

    /// Whole units in the bucket at `t` (ticks), negative in debt.
    pub fn level(&self, t: u64) -> i64 {
        let z = self.read(t);
        let size = self.limit.size.max(1) as i128;
        let level = (t as i128 - z as i128) * size / TICKS_PER_SEC as i128;
        level.clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }

    /// Whether `n` units are admitted at `t`: the level is at least `min(n, burst)`.
    fn admits_z(&self, z: u128, n: u64, t: u64) -> bool {
        z + span(n.min(self.limit.burst), self.limit.size) <= t as u128
    }

    /// Takes `n` units at `t` if the bucket admits them (atomically); false changes nothing.
    pub fn try_take(&self, n: u64, t: u64) -> bool {
        if n == 0 {
            return true;
        }
        let mut seen = self.word.load(Ordering::Relaxed);
        for _ in 0..MAX_CAS {
            let z = self.effective(seen, t);
            if !self.admits_z(z, n, t) {
                return false;
            }
            let new = clamp64(z + span(n, self.limit.size));
            match self
                .word
                .compare_exchange_weak(seen, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now_seen) => seen = now_seen,
            }
        }
        self.force(n, t);
        true
    }

    /// Charges `n` units at `t` whatever the level (into debt).
    pub fn force(&self, n: u64, t: u64) {
        if n == 0 {
            return;
        }
        let mut seen = self.word.load(Ordering::Relaxed);
        for _ in 0..MAX_CAS {
            let new = clamp64(self.effective(seen, t) + span(n, self.limit.size));
            match self
                .word
                .compare_exchange_weak(seen, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(now_seen) => seen = now_seen,
            }
        }
        self.word
            .fetch_add(clamp64(span(n, self.limit.size)), Ordering::AcqRel);
    }

    /// How long from `t` until `n` units are admitted, if nothing else is charged.
    pub fn time_until(&self, n: u64, t: u64) -> Duration {
        let z = self.read(t);
        let ready = z + span(n.min(self.limit.burst), self.limit.size);
        let ticks = ready.saturating_sub(t as u128);
        Duration::from_nanos(clamp64(ticks.div_ceil(TICKS_PER_NS)))
    }

    /// Re-expresses the level at `t` under `new` (capped at its burst), so a live change of
    /// the rate neither creates nor destroys tokens.
    pub fn rebase(&self, new: Limit, t: u64) {
        let level = self.level(t) as i128;
        let level = level.min(new.burst as i128);
        let size = new.size.max(1) as i128;
        let z = t as i128 - level * TICKS_PER_SEC as i128 / size;
        self.word
            .store(z.clamp(0, u64::MAX as i128) as u64, Ordering::Release);
    }
}

fn clamp64(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000 * 16;

    #[test]
    fn starts_full_refills_and_runs_into_debt() {
        let w = AtomicU64::new(0);
        let b = SharedBucket {
            word: &w,
            limit: Limit::with_burst(1000, 500),
        };
        let t = 100 * S;
        assert_eq!(b.level(t), 500, "a word in the past is a full bucket");
        assert!(b.try_take(500, t));
        assert!(!b.try_take(1, t));
        assert_eq!(b.time_until(100, t), Duration::from_millis(100));
        assert!(b.try_take(100, t + S / 10));
        b.force(1000, t + S / 10);
        assert_eq!(b.level(t + S / 10), -1000);
        // Over-burst: waits for min(n, burst).
        assert_eq!(
            b.time_until(10_000, t + S / 10),
            Duration::from_millis(1500)
        );
    }

    #[test]
    fn corrupt_words_are_clamped() {
        let w = AtomicU64::new(u64::MAX);
        let b = SharedBucket {
            word: &w,
            limit: Limit::new(1000),
        };
        assert!(b.time_until(1, S) <= MAX_DEBT + Duration::from_millis(1));
        assert!(!b.try_take(1, S));
        b.force(u64::MAX, S); // no overflow, no panic
        assert!(b.level(S) >= -(1000 * MAX_DEBT.as_secs() as i64) - 1);
    }

    #[test]
    fn rebase_keeps_the_level() {
        let w = AtomicU64::new(0);
        let b = SharedBucket {
            word: &w,
            limit: Limit::new(1000),
        };
        let t = 10 * S;
        b.force(1300, t); // level -300
        b.rebase(Limit::new(3000), t);
        let b2 = SharedBucket {
            word: &w,
            limit: Limit::new(3000),
        };
        assert_eq!(b2.level(t), -300);
        assert_eq!(b2.time_until(300, t), Duration::from_millis(200));
    }
}
