//! A daemon as a member of a node group (`--fs-group`): the glue between the limiter and
//! [`ratelimit::group`].
//!
//! The member's own share is enforced by the limiter's `bw` and `ops` buckets, limited to the
//! smaller of the daemon's own limit and its share; the group's shared buckets are asked
//! ([`Group::gate`]) before anything is admitted, and charged with it. A share is recomputed
//! at most every [`ratelimit::group::TICK`], from the admission path or the throttle timer,
//! never by a timer of its own: an idle member does nothing at all.

use std::time::Duration;

use ratelimit::group::{file::monotonic_ns, Budget, GroupBucket, Member};
use ratelimit::{Bucket, Cost, Limit, Nanos, Throttle};

use crate::config::Limits;

/// A member and what the limiter needs to drive it.
#[derive(Debug)]
pub struct Group {
    /// The member.
    pub member: Member,
    /// Per group bucket (bw, ops): whether a request waited on it since the last tick.
    pub backlogged: [bool; 2],
}

/// The group buckets' part of a cost (bw bytes, ops).
pub fn group_cost(cost: &Cost) -> [u64; 2] {
    [cost.get(Bucket::Bw), cost.get(Bucket::Ops)]
}

/// The local bucket enforcing `own` and a `share` (units/s) at once: the smaller rate, and a
/// burst of at most 50 ms at the share (at least `floor` units, at most `own`'s burst).
fn combine(own: Limit, share: u64, floor: u64) -> Limit {
    if share == 0 {
        return own;
    }
    let burst = (share / 20).max(floor);
    if own.is_unlimited() {
        Limit::with_burst(share, burst)
    } else {
        Limit::with_burst(own.size.min(share), own.burst.min(burst))
    }
}

impl Group {
    /// A member's glue; its own caps are `own`'s `bw` and `ops` sizes.
    pub fn new(mut member: Member, own: &Limits) -> Group {
        member.set_own_caps([own.bw.size, own.ops.size]);
        Group {
            member,
            backlogged: [false; 2],
        }
    }

    /// The limits the throttle enforces: `own`, with `bw` and `ops` also at the shares.
    pub fn effective(&self, own: &Limits) -> Limits {
        let [bw, ops] = self.member.shares();
        Limits {
            bw: combine(own.bw, bw, 256 * 1024),
            ops: combine(own.ops, ops, 8),
            ..*own
        }
    }

    /// Ticks if due (renew, publish, recompute) and applies changed shares to `th`.
    pub fn tick<T>(&mut self, th: &mut Throttle<T>, own: &Limits, now: Nanos) {
        let ns = now.as_ns();
        if !self.member.tick_due(ns) {
            return;
        }
        let mut backlogged = std::mem::take(&mut self.backlogged);
        for c in th.head_costs() {
            let held = self.holds(th, &c, now);
            backlogged = std::array::from_fn(|i| backlogged[i] || held[i]);
        }
        if self.member.tick(ns, backlogged).is_some() {
            let eff = self.effective(own);
            th.set_limit(Bucket::Bw, eff.bw, now);
            th.set_limit(Bucket::Ops, eff.ops, now);
        }
    }

    /// Notes which group buckets (bw, ops) hold a request of `cost` that must wait at `now`:
    /// the member's own (which enforce its share) or the shared ones. A request that waits
    /// behind another's queue head, held by neither, is counted when the head's turn is judged.
    pub fn note_wait<T>(&mut self, th: &Throttle<T>, cost: &Cost, now: Nanos) {
        let held = self.holds(th, cost, now);
        self.backlogged = std::array::from_fn(|i| self.backlogged[i] || held[i]);
    }

    /// Per group bucket (bw, ops): whether the local or the shared bucket holds `cost`.
    fn holds<T>(&self, th: &Throttle<T>, cost: &Cost, now: Nanos) -> [bool; 2] {
        let [bw, ops] = self.member.holds(group_cost(cost), now.as_ns());
        [
            bw || th.holds(Bucket::Bw, cost.get(Bucket::Bw), now),
            ops || th.holds(Bucket::Ops, cost.get(Bucket::Ops), now),
        ]
    }

    /// The gate of the throttle: takes `cost` from the shared buckets if they admit it at `now`.
    pub fn gate(&mut self, cost: &Cost, now: Nanos) -> bool {
        let g = group_cost(cost);
        let ns = now.as_ns();
        if self.member.admits(g, ns) {
            self.member.charge(g, ns);
            true
        } else {
            false
        }
    }

    /// How long the waiting heads of `th` need the shared buckets for (the soonest of them),
    /// capped at one tick so that a waiting member keeps its lease and share current.
    pub fn wait<T>(&self, th: &Throttle<T>, now: Nanos) -> Duration {
        let ns = now.as_ns();
        th.head_costs()
            .map(|c| self.member.time_until(group_cost(&c), ns))
            .min()
            .unwrap_or_default()
            .min(ratelimit::group::TICK)
    }

    /// The group's live budget.
    pub fn budget(&self) -> Budget {
        self.member.budget()
    }

    /// The shared buckets' levels now.
    pub fn levels(&self) -> [(GroupBucket, Option<i64>); 2] {
        let l = self.member.levels(monotonic_ns());
        [(GroupBucket::Bw, l[0]), (GroupBucket::Ops, l[1])]
    }

    /// Changes the group's live budget for every member.
    pub fn set_budget(&mut self, b: Budget) {
        self.member.set_budget(b, monotonic_ns());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_bucket_is_the_tighter_of_own_and_share() {
        assert_eq!(combine(Limit::UNLIMITED, 0, 1), Limit::UNLIMITED);
        assert_eq!(
            combine(Limit::UNLIMITED, 2000, 10),
            Limit::with_burst(2000, 100)
        );
        assert_eq!(
            combine(Limit::new(1000), 2000, 10),
            Limit::with_burst(1000, 100)
        );
        assert_eq!(
            combine(Limit::new(5000), 2000, 10),
            Limit::with_burst(2000, 100)
        );
    }
}
