//! Atomic multi-bucket admission and a per-class scheduler of parked items.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use crate::bucket::{Limit, TokenBucket};
use crate::clock::Nanos;

/// The buckets a [`Throttle`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bucket {
    /// Combined bandwidth (bytes read + bytes written).
    Bw,
    /// Read bandwidth.
    ReadBw,
    /// Write bandwidth.
    WriteBw,
    /// Operations (requests) of any kind.
    Ops,
}

impl Bucket {
    /// Every bucket, in index order.
    pub const ALL: [Bucket; 4] = [Bucket::Bw, Bucket::ReadBw, Bucket::WriteBw, Bucket::Ops];

    /// Dense index, `0..4`.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Stable lower-case name (`bw`, `read_bw`, `write_bw`, `ops`) for logs and APIs.
    pub const fn name(self) -> &'static str {
        match self {
            Bucket::Bw => "bw",
            Bucket::ReadBw => "read_bw",
            Bucket::WriteBw => "write_bw",
            Bucket::Ops => "ops",
        }
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A queue of a [`Throttle`]: items of one class leave in arrival order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// Reads (typically pay into `ReadBw`, `Bw`, `Ops`).
    Read,
    /// Writes (typically pay into `WriteBw`, `Bw`, `Ops`).
    Write,
    /// Everything else, e.g. metadata (typically pays into `Ops`).
    Other,
}

impl Class {
    /// Every class, in index order.
    pub const ALL: [Class; 3] = [Class::Read, Class::Write, Class::Other];

    /// Dense index, `0..3`.
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// What a request costs in each bucket (units; `0` = does not pay into that bucket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Cost {
    amounts: [u64; 4],
    /// Bit set of the buckets with a non-zero amount (bit `i`: the bucket of index `i`).
    mask: u8,
}

impl Cost {
    /// A cost of nothing anywhere.
    pub const fn new() -> Self {
        Cost {
            amounts: [0; 4],
            mask: 0,
        }
    }

    /// This cost with `amount` units in `bucket` (replacing any previous amount there).
    pub const fn with(mut self, bucket: Bucket, amount: u64) -> Self {
        self.amounts[bucket.index()] = amount;
        self.mask = (self.mask & !bucket.bit()) | (((amount != 0) as u8) << bucket.index());
        self
    }

    /// The amount charged to `bucket`.
    pub const fn get(&self, bucket: Bucket) -> u64 {
        self.amounts[bucket.index()]
    }

    /// The buckets with a non-zero amount: only they decide whether the cost is admitted (a
    /// bucket in debt does not hold back what does not pay into it).
    fn paid(&self) -> impl Iterator<Item = Bucket> + '_ {
        bits(self.mask).map(|i| Bucket::ALL[i])
    }

    /// Bit set of the buckets with a non-zero amount.
    #[inline]
    fn mask(&self) -> u8 {
        self.mask
    }
}

/// The indices of the bits set in `mask` (a bucket mask: every index is below 4), lowest first.
#[inline]
fn bits(mut mask: u8) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if mask == 0 {
            return None;
        }
        let i = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        // A bucket mask has bits 0..4 only; `& 3` lets the compiler drop the bounds checks.
        Some(i & 3)
    })
}

/// What [`Throttle::drain`] hands back, each list in arrival order.
#[derive(Debug, PartialEq, Eq)]
pub struct Drained<T> {
    /// Charged: serve them.
    pub paid: Vec<T>,
    /// Not charged, because the buckets could not pay them: fail them without performing them.
    pub refused: Vec<T>,
}

#[derive(Debug)]
struct Parked<T> {
    item: T,
    cost: Cost,
    /// Global arrival sequence number, across classes.
    seq: u64,
}

/// A waiting class head as seen by newer items: what it needs and when it will be ready.
#[derive(Clone, Copy)]
struct Claim {
    cost: Cost,
    deadline: Nanos,
}

/// Waits beyond what a `Nanos` can hold only arise from absurd configurations; cap them.
const MAX_WAIT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Buckets plus per-class FIFO queues of waiting items of type `T`.
///
/// # Admission
/// An item is admitted when *every* bucket it pays into admits its amount (see
/// [`TokenBucket::admits`]); then all of them are charged together. Nothing is ever charged for
/// an item that is still waiting, and there is no polling: [`Throttle::next_deadline`] is exact.
///
/// # Ordering and fairness
/// * Items of one [`Class`] leave in arrival order; an item arriving while its class queue is
///   non-empty goes to the back.
/// * Classes are queued separately, so a class whose buckets have tokens is not delayed by
///   another class's waiting items through a bucket the two do not share.
/// * **Deadline reservation (no starvation).** Every item has a global arrival number. The head
///   of a class queue has a *deadline*: the first instant at which all its buckets would admit
///   it if nothing else were charged. A newer item may take tokens from a bucket that an older
///   waiting head also pays into only if that bucket will still hold enough for the head at the
///   head's deadline; otherwise the newer item waits. So newer items only borrow tokens the head
///   does not need before its deadline, the oldest waiting item always leaves at a deadline that
///   never moves later (unless limits change), and every item is eventually admitted. Example: a write waiting for
///   `write_bw` lets reads use `bw` freely, except for the write's share that `bw` must hold
///   when `write_bw` is ready; a continuous stream of reads cannot starve it.
///
/// Heads are considered oldest first, so among heads competing for a bucket the older goes first.
///
/// # Cost when unlimited
/// If none of the buckets an item pays into is limited and nothing is parked, [`Throttle::try_admit`]
/// returns true after a few comparisons, without touching any queue or allocating.
///
/// # Cost when the limits do not bind
/// With nothing parked, the throttle remembers the instant (a `u64` of nanoseconds) from which
/// every limited bucket is full again. From then on each of them admits whatever an item costs,
/// exactly as the refill would find, so the item is charged from the capacities without
/// computing any refill: two comparisons, and per bucket it pays into a store of the level and
/// of the instant, taken with the time the bucket needs to be full again from a memo of its last
/// charge from full (computed, with one division, only when the amount differs from the last
/// one: a run of requests of one size computes it once), then one addition. Anything else takes
/// the exact slow path (out of line), which computes that instant again.
#[derive(Debug)]
pub struct Throttle<T> {
    buckets: [TokenBucket; 4],
    /// Bit set of buckets with a limit.
    limited: u8,
    queues: [VecDeque<Parked<T>>; 3],
    parked: usize,
    next_seq: u64,
    /// Every limited bucket is full at any instant from this one on, and was last updated no
    /// later; [`UNKNOWN`] when not known (after any change but the fast path's own).
    full_from: Nanos,
}

/// [`Throttle`]'s `full_from` when it is not known (a real instant is never that late; one that
/// is only takes the exact slow path).
const UNKNOWN: Nanos = Nanos::MAX;

impl<T> Throttle<T> {
    /// A throttle with every bucket unlimited.
    pub fn new(now: Nanos) -> Self {
        Throttle {
            buckets: std::array::from_fn(|_| TokenBucket::new(Limit::UNLIMITED, now)),
            limited: 0,
            queues: std::array::from_fn(|_| VecDeque::new()),
            parked: 0,
            next_seq: 0,
            full_from: now,
        }
    }

    /// This throttle with `bucket` limited to `limit` and full at `now`: the initial
    /// configuration. (Later changes go through [`Throttle::set_limit`], which never fills.)
    pub fn with_limit(mut self, bucket: Bucket, limit: Limit, now: Nanos) -> Self {
        self.buckets[bucket.index()] = TokenBucket::new(limit, now);
        self.mark_limited(bucket, limit);
        if self.full_from != UNKNOWN {
            self.full_from = self.full_from.max(now);
        }
        self
    }

    /// Changes the limit of one bucket live, by the rule of [`TokenBucket::set_limit`]: the
    /// bucket keeps its level (capped at the new burst) and any debt, a bucket that was
    /// unlimited starts empty, and no change creates tokens. Parked items are judged by the new
    /// limits from the next [`Throttle::release_into`] on (call it, and re-arm the timer, after
    /// changing limits).
    pub fn set_limit(&mut self, bucket: Bucket, limit: Limit, now: Nanos) {
        self.buckets[bucket.index()].set_limit(limit, now);
        self.mark_limited(bucket, limit);
        self.full_from = UNKNOWN;
    }

    fn mark_limited(&mut self, bucket: Bucket, limit: Limit) {
        if limit.is_unlimited() {
            self.limited &= !bucket.bit();
        } else {
            self.limited |= bucket.bit();
        }
    }

    /// The limit of `bucket`.
    pub fn limit(&self, bucket: Bucket) -> Limit {
        self.buckets[bucket.index()].limit()
    }

    /// Whole tokens in `bucket` at `now` (negative in debt); `None` if it is unlimited.
    pub fn level(&self, bucket: Bucket, now: Nanos) -> Option<i64> {
        self.buckets[bucket.index()].level(now)
    }

    /// Whether `bucket` would hold a charge of `n` at `now` (`false` when it is unlimited).
    pub fn holds(&self, bucket: Bucket, n: u64, now: Nanos) -> bool {
        !self.buckets[bucket.index()].admits(n, now)
    }

    /// The cost of each class queue's head (what waits first), oldest first.
    pub fn head_costs(&self) -> impl Iterator<Item = Cost> + '_ {
        self.heads_by_age().map(|c| self.head(c).cost)
    }

    /// Number of items parked, all classes together.
    pub fn parked(&self) -> usize {
        self.parked
    }

    /// The instant from which every bucket admits `cost`, if nothing else is charged.
    fn ready_at(&self, cost: &Cost, now: Nanos) -> Nanos {
        let wait = cost
            .paid()
            .map(|b| self.buckets[b.index()].time_until(cost.get(b), now))
            .max()
            .unwrap_or_default();
        now.checked_add(wait).unwrap_or(now + MAX_WAIT)
    }

    /// Whether every bucket admits `cost` at `now`.
    fn admits(&self, cost: &Cost, now: Nanos) -> bool {
        cost.paid()
            .all(|b| self.buckets[b.index()].admits(cost.get(b), now))
    }

    /// Whether charging `cost` at `now` leaves every bucket able to serve `claim` by its deadline.
    fn leaves_enough(&self, cost: &Cost, claim: &Claim, now: Nanos) -> bool {
        Bucket::ALL.iter().all(|b| {
            self.buckets[b.index()].lends(cost.get(*b), claim.cost.get(*b), claim.deadline, now)
        })
    }

    /// Whether an item costing `cost`, newer than every claim, may be admitted at `now`.
    fn may_admit(&self, cost: &Cost, older: &[Option<Claim>], now: Nanos) -> bool {
        self.admits(cost, now)
            && older
                .iter()
                .flatten()
                .all(|c| self.leaves_enough(cost, c, now))
    }

    fn charge(&mut self, cost: &Cost, now: Nanos) {
        self.full_from = UNKNOWN;
        for b in Bucket::ALL {
            self.buckets[b.index()].charge(cost.get(b), now);
        }
    }

    /// The instant from which every limited bucket is full, if each was last updated no later
    /// than `now` (exact: `now` plus the longest [`TokenBucket::time_until`] full).
    fn full_from_now(&self, now: Nanos) -> Option<Nanos> {
        let mut wait = Duration::ZERO;
        for i in bits(self.limited) {
            let bucket = &self.buckets[i];
            if bucket.last() > now {
                return None;
            }
            wait = wait.max(bucket.time_until(u64::MAX, now));
        }
        now.checked_add(wait)
    }

    /// Classes with a non-empty queue, oldest head first.
    fn heads_by_age(&self) -> impl Iterator<Item = usize> {
        let mut heads: [(u64, usize); 3] = [(u64::MAX, usize::MAX); 3];
        for (c, q) in self.queues.iter().enumerate() {
            if let Some(p) = q.front() {
                heads[c] = (p.seq, c);
            }
        }
        heads.sort_unstable();
        heads.into_iter().filter(|h| h.1 != usize::MAX).map(|h| h.1)
    }

    fn head(&self, class: usize) -> &Parked<T> {
        self.queues[class]
            .front()
            .expect("class queue is non-empty")
    }

    /// Admits (and charges) a request of `class` costing `cost` at `now` if its class queue is
    /// empty, every bucket admits it, and it leaves enough for the waiting heads of other
    /// classes (see the type docs). Otherwise it changes nothing and returns false: the caller
    /// then [`Self::park`]s the item, so an item is built only for requests that wait.
    pub fn try_admit(&mut self, class: Class, cost: Cost, now: Nanos) -> bool {
        self.try_admit_gated(class, cost, now, &mut |_| true)
    }

    /// [`Self::try_admit`] with an outside gate: once the buckets would admit `cost`, `gate`
    /// is asked (and may charge something of its own, e.g. a group's shared bucket); if it
    /// says no, nothing is charged here either.
    #[inline]
    pub fn try_admit_gated(
        &mut self,
        class: Class,
        cost: Cost,
        now: Nanos,
        gate: &mut impl FnMut(&Cost) -> bool,
    ) -> bool {
        let pays = cost.mask() & self.limited;
        if self.parked == 0 {
            if pays == 0 {
                return gate(&cost);
            }
            if now >= self.full_from && self.full_from != UNKNOWN {
                // Fast path: every limited bucket is full now, so each admits (as the slow path
                // would find) and is charged from its capacity, no refill needed.
                if !gate(&cost) {
                    return false;
                }
                let mut refill = 0;
                for i in bits(pays) {
                    refill = refill.max(self.buckets[i].charge_full(cost.amounts[i], now));
                }
                // The others stay full; the paying ones are full again after their refill (a
                // refill that does not fit, `u64::MAX`, saturates to UNKNOWN).
                self.full_from = Nanos::from_ns(now.as_ns().saturating_add(refill));
                return true;
            }
            return self.try_admit_refilling(&cost, pays, now, gate);
        }
        self.try_admit_behind_parked(class, &cost, now, gate)
    }

    /// [`Self::try_admit_gated`] with nothing parked, when not every limited bucket is known to
    /// be full: admitted when every bucket `pays` holds enough (there is no claim to leave room
    /// for). Each bucket's refill is computed once, for the check and the charge.
    #[inline(never)]
    fn try_admit_refilling(
        &mut self,
        cost: &Cost,
        pays: u8,
        now: Nanos,
        gate: &mut impl FnMut(&Cost) -> bool,
    ) -> bool {
        // Buckets refilled together share their last update: the elapsed time is computed
        // once for them.
        let mut holds = true;
        let mut since: Option<(Nanos, u64)> = None;
        for i in bits(pays) {
            let bucket = &mut self.buckets[i];
            let elapsed = match since {
                Some((last, e)) if last == bucket.last() => e,
                _ => {
                    let e = bucket.elapsed_ns(now);
                    since = Some((bucket.last(), e));
                    e
                }
            };
            holds &= bucket.refill_admits_after(cost.amounts[i], now, elapsed);
        }
        let admitted = holds && gate(cost);
        if admitted {
            for i in bits(pays) {
                self.buckets[i].charge_refilled(cost.amounts[i]);
            }
        }
        self.full_from = self.full_from_now(now).unwrap_or(UNKNOWN);
        admitted
    }

    /// [`Self::try_admit_gated`] while something is parked: only with an empty class queue, and
    /// leaving enough for the older waiting heads (see the type docs).
    #[inline(never)]
    fn try_admit_behind_parked(
        &mut self,
        class: Class,
        cost: &Cost,
        now: Nanos,
        gate: &mut impl FnMut(&Cost) -> bool,
    ) -> bool {
        if !self.queues[class.index()].is_empty() {
            return false;
        }
        let mut older = [None; 3];
        for (slot, q) in older.iter_mut().zip(&self.queues) {
            *slot = q.front().map(|h| Claim {
                cost: h.cost,
                deadline: self.ready_at(&h.cost, now),
            });
        }
        if self.may_admit(cost, &older, now) && gate(cost) {
            self.charge(cost, now);
            return true;
        }
        false
    }

    /// Parks `item` at the back of its class queue, whatever the tokens (after
    /// [`Self::try_admit`] refused it).
    pub fn park(&mut self, item: T, class: Class, cost: Cost) {
        self.queues[class.index()].push_back(Parked {
            item,
            cost,
            seq: self.next_seq,
        });
        self.next_seq += 1;
        self.parked += 1;
    }

    /// Releases every parked item admissible at `now`, charging each, oldest class head first,
    /// and appends them to `out`. Returns how many were released.
    pub fn release_into(&mut self, now: Nanos, out: &mut Vec<T>) -> usize {
        self.release_into_gated(now, out, &mut |_| true)
    }

    /// [`Self::release_into`] with an outside gate asked for each head the buckets would
    /// release (see [`Self::try_admit_gated`]); a head it refuses stays parked and waits as if
    /// its buckets had refused it.
    pub fn release_into_gated(
        &mut self,
        now: Nanos,
        out: &mut Vec<T>,
        gate: &mut dyn FnMut(&Cost) -> bool,
    ) -> usize {
        let before = out.len();
        'again: while self.parked > 0 {
            let mut older = [None; 3];
            for (i, c) in self.heads_by_age().enumerate() {
                let cost = self.head(c).cost;
                if self.may_admit(&cost, &older, now) && gate(&cost) {
                    let p = self.queues[c]
                        .pop_front()
                        .expect("class queue is non-empty");
                    self.parked -= 1;
                    self.charge(&p.cost, now);
                    out.push(p.item);
                    continue 'again;
                }
                older[i] = Some(Claim {
                    cost,
                    deadline: self.ready_at(&cost, now),
                });
            }
            break;
        }
        out.len() - before
    }

    /// The earliest instant at which [`Throttle::release_into`] will release something, assuming
    /// nothing is submitted meanwhile; `None` when nothing is parked. At or before `now` means
    /// "release now". Exact to the nanosecond (rounded up): arm a one-shot timer for it.
    pub fn next_deadline(&self, now: Nanos) -> Option<Nanos> {
        // (claim of the head at its own deadline, instant it can actually leave)
        let mut older: Vec<(Claim, Nanos)> = Vec::with_capacity(3);
        for c in self.heads_by_age() {
            let cost = self.head(c).cost;
            let own = self.ready_at(&cost, now);
            // At `own` its buckets admit it; if it would then take what an older head needs,
            // it cannot leave before that head has (waiting longer does not help: see `lends`).
            let leaves = older
                .iter()
                .filter(|(claim, _)| !self.leaves_enough(&cost, claim, own))
                .map(|(_, leaves)| *leaves)
                .fold(own, Nanos::max);
            older.push((
                Claim {
                    cost,
                    deadline: own,
                },
                leaves,
            ));
        }
        older.into_iter().map(|(_, leaves)| leaves).min()
    }

    /// Empties the queues for a stopped or reset ring, in global arrival order. Each item is
    /// charged if every bucket it pays into can pay it while going at most one burst further
    /// into debt than normal admission allows ([`TokenBucket::admits_at_stop`]); such items are
    /// `paid` and may be served. The others are `refused`, charged nothing, and must not be
    /// performed. Nothing is lost or duplicated; the throttle is left empty.
    ///
    /// So a stop never gives work away: over any window, a bucket admits at most
    /// `2·burst + size·T + one request`, however many stops the window holds.
    pub fn drain(&mut self, now: Nanos) -> Drained<T> {
        self.drain_where(now, |_| true)
    }

    /// [`Throttle::drain`] for the items `pick` selects only (e.g. those of one stopped ring):
    /// they are judged and charged the same way, in arrival order; the others stay parked in
    /// their order. Call `next_deadline` and re-arm the timer afterwards.
    pub fn drain_where(&mut self, now: Nanos, mut pick: impl FnMut(&T) -> bool) -> Drained<T> {
        let mut all: Vec<Parked<T>> = Vec::new();
        for q in &mut self.queues {
            let (take, keep): (VecDeque<_>, VecDeque<_>) = q.drain(..).partition(|p| pick(&p.item));
            *q = keep;
            all.extend(take);
        }
        all.sort_unstable_by_key(|p| p.seq);
        self.parked -= all.len();
        let mut out = Drained {
            paid: Vec::new(),
            refused: Vec::new(),
        };
        for p in all {
            let payable = p
                .cost
                .paid()
                .all(|b| self.buckets[b.index()].admits_at_stop(p.cost.get(b), now));
            if payable {
                self.charge(&p.cost, now);
                out.paid.push(p.item);
            } else {
                out.refused.push(p.item);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_has_the_bit_of_each_paid_bucket() {
        for b in Bucket::ALL {
            assert_eq!(Cost::new().with(b, 7).mask(), b.bit(), "{b}");
            assert_eq!(Cost::new().with(b, 7).with(b, 0), Cost::new(), "{b}");
            assert_eq!(Cost::new().with(b, 7).paid().collect::<Vec<_>>(), [b]);
        }
        let all = Bucket::ALL.iter().fold(Cost::new(), |c, b| c.with(*b, 1));
        assert_eq!(all.mask(), 0b1111);
        assert_eq!(all.paid().collect::<Vec<_>>(), Bucket::ALL);
        assert_eq!(Cost::new().mask(), 0);
        assert_eq!(bits(0b1010).collect::<Vec<_>>(), [1, 3]);
    }

    /// A bucket in debt holds back only what pays into it, also while something is parked and
    /// at a stop: metadata (ops only) is not kept waiting by `bw` debt a big write left.
    #[test]
    fn debt_holds_back_only_what_pays_into_the_bucket() {
        let t0 = Nanos::now();
        let mut th: Throttle<u32> =
            Throttle::new(t0).with_limit(Bucket::Bw, Limit::with_burst(1000, 100), t0);
        let write = |n| {
            Cost::new()
                .with(Bucket::Bw, n)
                .with(Bucket::WriteBw, n)
                .with(Bucket::Ops, 1)
        };
        let meta = Cost::new().with(Bucket::Ops, 1);
        assert!(
            th.try_admit(Class::Write, write(1000), t0),
            "from full, into debt"
        );
        assert!(!th.try_admit(Class::Write, write(1000), t0));
        th.park(1, Class::Write, write(1000));
        assert!(
            th.try_admit(Class::Other, meta, t0),
            "bw debt does not stop metadata"
        );
        th.park(2, Class::Other, meta);
        let mut out = Vec::new();
        th.release_into(t0, &mut out);
        assert_eq!(out, vec![2], "a parked metadata request leaves at once");
        th.park(3, Class::Other, meta);
        th.charge(&write(5000), t0); // far more than one burst of debt
        let d = th.drain(t0);
        assert_eq!((d.paid, d.refused), (vec![3], vec![1]));
    }
}
