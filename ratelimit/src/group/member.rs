//! One member of a group: its slot (claimed while it has demand), its lease, its published
//! demand, the share it enforces on itself, and its use of the shared buckets.
//!
//! Time is passed in as `CLOCK_MONOTONIC` nanoseconds (system-wide, the same in every pid or
//! mount namespace), so tests drive it by hand.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::bucket::Limit;
use crate::group::layout::{hdr, slot, GroupBucket, Region, SLOTS};
use crate::group::share::{own_share, Claim, WEIGHT_RANGE};
use crate::group::shared::{ticks, SharedBucket};

/// How often a member with demand renews its lease, publishes and recomputes its share.
pub const TICK: Duration = Duration::from_millis(50);
/// How long a lease lasts: a member that stops renewing (idle, or killed) stops counting then.
pub const LEASE: Duration = Duration::from_millis(500);
/// The least demand a member that moved anything in a tick publishes, per bucket.
pub const MIN_DEMAND: [u64; 2] = [64 * 1024, 16];

/// Shares add up to `1 - 1/HEADROOM` of the group's rate (see `compute_shares`).
pub const HEADROOM: u64 = 100;

/// How far a live budget value may be from the creation value (either way) and be believed.
pub const LIVE_FACTOR: u64 = 64;

/// The group's budget: a limit for each group bucket (size 0: that bucket is not limited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Budget {
    /// READ + WRITE bytes.
    pub bw: Limit,
    /// Requests.
    pub ops: Limit,
}

impl Budget {
    /// The limit of `b`.
    pub fn get(&self, b: GroupBucket) -> Limit {
        match b {
            GroupBucket::Bw => self.bw,
            GroupBucket::Ops => self.ops,
        }
    }

    /// The four words of the layout (bw size, bw burst, ops size, ops burst).
    pub fn words(&self) -> [u64; 4] {
        [self.bw.size, self.bw.burst, self.ops.size, self.ops.burst]
    }

    /// From the four words, as read (untrusted: a burst of 0 becomes the size).
    pub fn from_words(w: [u64; 4]) -> Budget {
        let l =
            |size: u64, burst: u64| Limit::with_burst(size, if burst == 0 { size } else { burst });
        Budget {
            bw: l(w[0], w[1]),
            ops: l(w[2], w[3]),
        }
    }
}

/// A member: see the module docs.
#[derive(Debug)]
pub struct Member {
    region: Region,
    nonce: u64,
    weight: u64,
    /// The member's own `--fs-group-*` values: stand-ins for corrupt live values.
    flags: Budget,
    /// The member's own caps per group bucket (0: none): its demand when backlogged.
    own_caps: [u64; 2],
    epoch: u64,
    slot: Option<usize>,
    last_tick: u64,
    window: [u64; 2],
    totals: [u64; 4],
    shares: [u64; 2],
}

impl Member {
    /// A member of the group in `region` (already verified) with `weight`, whose flags gave
    /// `flags`; `epoch` is the header's, read and checked at join; `nonce` identifies its slot
    /// claims (any value unlikely to repeat, never 0).
    pub fn new(region: Region, weight: u64, flags: Budget, epoch: u64, nonce: u64) -> Member {
        let live = Budget::from_words(std::array::from_fn(|i| region.load(hdr::LIVE + i)));
        Member {
            region,
            nonce: nonce.max(1),
            weight: weight.clamp(WEIGHT_RANGE.0, WEIGHT_RANGE.1),
            flags,
            own_caps: [0; 2],
            epoch,
            slot: None,
            last_tick: 0,
            window: [0; 2],
            totals: [0; 4],
            shares: [live.bw.size, live.ops.size],
        }
    }

    /// Whether the members would believe `b` as a live budget: each value within
    /// `1/LIVE_FACTOR..=LIVE_FACTOR` times the flags' (see [`Member::budget`]).
    pub fn believes(&self, b: &Budget) -> bool {
        let within = |v: u64, base: u64| {
            v >= (base / LIVE_FACTOR).max(1) && v <= base.saturating_mul(LIVE_FACTOR)
        };
        [(b.bw, self.flags.bw), (b.ops, self.flags.ops)]
            .iter()
            .all(|(l, f)| f.is_unlimited() || (within(l.size, f.size) && within(l.burst, f.burst)))
    }

    /// The member's weight.
    pub fn weight(&self) -> u64 {
        self.weight
    }

    /// Changes the weight (clamped to [`WEIGHT_RANGE`]).
    pub fn set_weight(&mut self, w: u64) {
        self.weight = w.clamp(WEIGHT_RANGE.0, WEIGHT_RANGE.1);
    }

    /// Sets the member's own caps (bw, ops; 0: none): what it asks for when backlogged.
    pub fn set_own_caps(&mut self, caps: [u64; 2]) {
        self.own_caps = caps;
    }

    /// The slot it holds, if any.
    pub fn slot(&self) -> Option<usize> {
        self.slot
    }

    /// The shares it enforces on itself now (bw, ops; units/s).
    pub fn shares(&self) -> [u64; 2] {
        self.shares
    }

    /// Bytes, requests, waits and wait nanoseconds counted so far.
    pub fn totals(&self) -> [u64; 4] {
        self.totals
    }

    fn since_epoch(&self, now_ns: u64) -> u64 {
        now_ns.saturating_sub(self.epoch)
    }

    /// The live budget, sanitised: a live value outside `1/LIVE_FACTOR..=LIVE_FACTOR` times
    /// the member's own flag value is not believed (the flag value stands in), and a bucket
    /// the flags leave unlimited stays so: a zeroed or garbage word cannot uncap a member.
    pub fn budget(&self) -> Budget {
        let live = Budget::from_words(std::array::from_fn(|i| self.region.load(hdr::LIVE + i)));
        let pick = |l: Limit, f: Limit| {
            let within = |v: u64, base: u64| {
                v >= (base / LIVE_FACTOR).max(1) && v <= base.saturating_mul(LIVE_FACTOR)
            };
            if f.is_unlimited() || !within(l.size, f.size) || !within(l.burst, f.burst) {
                f
            } else {
                l
            }
        };
        Budget {
            bw: pick(live.bw, self.flags.bw),
            ops: pick(live.ops, self.flags.ops),
        }
    }

    fn bucket(&self, b: GroupBucket, budget: &Budget) -> Option<SharedBucket<'static>> {
        let limit = budget.get(b);
        (!limit.is_unlimited()).then(|| SharedBucket {
            word: self
                .region
                .words()
                .get(hdr::BUCKET + b.index())
                .expect("header word"),
            limit,
        })
    }

    /// The shared buckets' whole units at `now_ns` (None: that bucket is not limited).
    pub fn levels(&self, now_ns: u64) -> [Option<i64>; 2] {
        let budget = self.budget();
        let t = ticks(self.since_epoch(now_ns));
        GroupBucket::ALL.map(|b| self.bucket(b, &budget).map(|s| s.level(t)))
    }

    /// Whether the shared buckets admit `cost` (bw bytes, ops) at `now_ns`. Charging after a
    /// yes ([`Self::charge`]) may overshoot by what other members admitted in between: at most
    /// one request per member.
    pub fn admits(&self, cost: [u64; 2], now_ns: u64) -> bool {
        let budget = self.budget();
        let t = ticks(self.since_epoch(now_ns));
        GroupBucket::ALL
            .iter()
            .all(|b| match self.bucket(*b, &budget) {
                Some(s) => s.time_until(cost[b.index()], t).is_zero(),
                None => true,
            })
    }

    /// For each shared bucket (bw, ops), whether it would hold `cost` at `now_ns` (`false`
    /// for a bucket that is not limited).
    pub fn holds(&self, cost: [u64; 2], now_ns: u64) -> [bool; 2] {
        let budget = self.budget();
        let t = ticks(self.since_epoch(now_ns));
        GroupBucket::ALL.map(|b| {
            self.bucket(b, &budget)
                .is_some_and(|s| !s.time_until(cost[b.index()], t).is_zero())
        })
    }

    /// Charges `cost` to the shared buckets and counts it as this member's.
    pub fn charge(&mut self, cost: [u64; 2], now_ns: u64) {
        let budget = self.budget();
        let t = ticks(self.since_epoch(now_ns));
        for b in GroupBucket::ALL {
            if let Some(s) = self.bucket(b, &budget) {
                s.force(cost[b.index()], t);
            }
            self.window[b.index()] = self.window[b.index()].saturating_add(cost[b.index()]);
        }
        self.totals[0] = self.totals[0].saturating_add(cost[0]);
        self.totals[1] = self.totals[1].saturating_add(cost[1]);
    }

    /// Counts a request that waited `ns`.
    pub fn record_wait(&mut self, ns: u64) {
        self.totals[2] += 1;
        self.totals[3] = self.totals[3].saturating_add(ns);
    }

    /// How long until the shared buckets admit `cost` (if nothing else is charged).
    pub fn time_until(&self, cost: [u64; 2], now_ns: u64) -> Duration {
        let budget = self.budget();
        let t = ticks(self.since_epoch(now_ns));
        GroupBucket::ALL
            .iter()
            .filter_map(|b| {
                self.bucket(*b, &budget)
                    .map(|s| s.time_until(cost[b.index()], t))
            })
            .max()
            .unwrap_or_default()
    }

    /// Whether a tick is due at `now_ns`.
    pub fn tick_due(&self, now_ns: u64) -> bool {
        now_ns.saturating_sub(self.last_tick) >= TICK.as_nanos() as u64
    }

    /// Renews the lease, publishes demand and counters and recomputes the share, if a tick is
    /// due (`backlogged[i]`: requests waited on bucket `i` (bw, ops) during the tick). A
    /// backlogged bucket claims all it may (its own cap, or everything); the other claims what
    /// it used, plus a quarter and a floor, so a member whose data waits on bytes leaves the
    /// request budget it does not use to the others. Returns the new shares when they changed.
    /// Without demand (nothing moved, nothing waited) it publishes a demand of 0 and leaves the
    /// lease to expire.
    pub fn tick(&mut self, now_ns: u64, backlogged: [bool; 2]) -> Option<[u64; 2]> {
        if !self.tick_due(now_ns) {
            return None;
        }
        let elapsed = now_ns.saturating_sub(self.last_tick).max(1);
        self.last_tick = now_ns;
        let window = std::mem::take(&mut self.window);
        let has_demand = backlogged.contains(&true) || window.iter().any(|w| *w > 0);
        let demand: [u64; 2] = std::array::from_fn(|i| match (has_demand, backlogged[i]) {
            (false, _) => 0,
            (true, true) if self.own_caps[i] > 0 => self.own_caps[i],
            (true, true) => u64::MAX,
            (true, false) => {
                let rate = window[i] as u128 * 1_000_000_000 / elapsed as u128;
                u64::try_from(rate * 5 / 4)
                    .unwrap_or(u64::MAX)
                    .saturating_add(MIN_DEMAND[i])
            }
        });
        let now = self.since_epoch(now_ns);
        if has_demand {
            self.hold_slot(now);
        }
        if let Some(s) = self.slot {
            let r = &self.region;
            r.slot(s, slot::WEIGHT)
                .store(self.weight, Ordering::Relaxed);
            r.slot(s, slot::DEMAND).store(demand[0], Ordering::Relaxed);
            r.slot(s, slot::DEMAND + 1)
                .store(demand[1], Ordering::Relaxed);
            for (i, w) in [slot::BYTES, slot::OPS, slot::WAITS, slot::WAIT_NS]
                .iter()
                .enumerate()
            {
                r.slot(s, *w).store(self.totals[i], Ordering::Relaxed);
            }
            if has_demand {
                let lease = now.saturating_add(LEASE.as_nanos() as u64);
                r.slot(s, slot::LEASE).store(lease, Ordering::Release);
            }
        }
        let shares = self.compute_shares(now);
        if let Some(s) = self.slot {
            self.region
                .slot(s, slot::SHARE)
                .store(shares[0], Ordering::Relaxed);
            self.region
                .slot(s, slot::SHARE + 1)
                .store(shares[1], Ordering::Relaxed);
        }
        let changed = shares != self.shares;
        self.shares = shares;
        changed.then_some(shares)
    }

    /// The live slots' claims, ours last (bounded by [`SLOTS`]).
    fn claims(&self, now: u64, b: GroupBucket) -> Vec<Claim> {
        let mut out = Vec::with_capacity(8);
        for s in (0..SLOTS).filter(|s| Some(*s) != self.slot) {
            if live(&self.region, s, now) {
                out.push(Claim {
                    weight: self.region.slot(s, slot::WEIGHT).load(Ordering::Relaxed),
                    demand: self
                        .region
                        .slot(s, slot::DEMAND + b.index())
                        .load(Ordering::Relaxed),
                });
            }
        }
        out.push(Claim {
            weight: self.weight,
            demand: u64::MAX,
        });
        out
    }

    fn compute_shares(&self, now: u64) -> [u64; 2] {
        let budget = self.budget();
        GroupBucket::ALL.map(|b| {
            let cap = budget.get(b).size;
            if cap == 0 {
                return 0;
            }
            let mut claims = self.claims(now, b);
            let me = claims.len() - 1;
            // Shares add up to 99 % of the rate: the local buckets bind, and the shared one
            // keeps a little slack, so that no member is systematically the one that finds
            // it empty.
            let cap = cap - cap / HEADROOM;
            // A corrupt peer may shrink our share, never to nothing.
            own_share(cap, &mut claims, me).max(cap / 100_000).max(1)
        })
    }

    /// Keeps a slot: ours if still ours, else the first free one (never claimed, or its lease
    /// expired). With none free the member runs without one (bounded by the shared buckets).
    fn hold_slot(&mut self, now: u64) {
        if let Some(s) = self.slot {
            if self.region.slot(s, slot::CLAIM).load(Ordering::Acquire) == self.nonce {
                return;
            }
            self.slot = None;
        }
        for s in 0..SLOTS {
            let claim = self.region.slot(s, slot::CLAIM);
            let seen = claim.load(Ordering::Acquire);
            if seen != 0 && live(&self.region, s, now) {
                continue;
            }
            if claim
                .compare_exchange(seen, self.nonce, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                self.slot = Some(s);
                return;
            }
        }
    }

    /// Sets the group's live budget at `now_ns` for every member: the shared buckets keep
    /// their levels under the new limits (capped at the new bursts).
    pub fn set_budget(&mut self, new: Budget, now_ns: u64) {
        let t = ticks(self.since_epoch(now_ns));
        let old = self.budget();
        for b in GroupBucket::ALL {
            if let Some(s) = self.bucket(b, &old) {
                if !new.get(b).is_unlimited() {
                    s.rebase(new.get(b), t);
                }
            }
        }
        for (i, w) in new.words().iter().enumerate() {
            self.region.hdr(hdr::LIVE + i).store(*w, Ordering::Release);
        }
        self.region
            .hdr(hdr::GENERATION)
            .fetch_add(1, Ordering::AcqRel);
        self.last_tick = 0; // recompute at the next admission
    }

    /// Leaves the group: the slot stops counting at once.
    pub fn leave(&mut self) {
        if let Some(s) = self.slot.take() {
            self.region.slot(s, slot::LEASE).store(0, Ordering::Release);
            self.region
                .slot(s, slot::DEMAND)
                .store(0, Ordering::Relaxed);
            self.region
                .slot(s, slot::DEMAND + 1)
                .store(0, Ordering::Relaxed);
        }
    }
}

/// Whether slot `s` counts at `now` (ns since the epoch): its lease runs, and not absurdly far.
pub fn live(region: &Region, s: usize, now: u64) -> bool {
    let lease = region.slot(s, slot::LEASE).load(Ordering::Acquire);
    region.slot(s, slot::CLAIM).load(Ordering::Relaxed) != 0
        && lease > now
        && lease <= now.saturating_add(2 * LEASE.as_nanos() as u64)
}
