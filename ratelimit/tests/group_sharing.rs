//! The sharing arithmetic of `ratelimit::group` on a fake clock: several members in one region,
//! each enforcing its share with a local bucket as the daemon does, the shared bucket as the
//! hard cap. Nothing sleeps; time is a number.

use proptest::prelude::*;
use ratelimit::group::{file, Budget, Member, Region, TICK};
use ratelimit::{Limit, Nanos, TokenBucket};
use std::time::Duration;

const MS: u64 = 1_000_000;
const REQ: u64 = 32 * 1024;

struct Sim {
    members: Vec<(Member, TokenBucket, u64)>, // member, local bucket, bytes in the window
    region: Region,
    origin: Nanos,
    now: u64,
}

impl Sim {
    fn new(rate: u64, weights: &[u64]) -> Sim {
        let region = Region::anonymous();
        let budget = Budget {
            bw: Limit::new(rate),
            ops: Limit::UNLIMITED,
        };
        file::init(&region, budget, 0);
        let origin = Nanos::now();
        let members = weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let m = Member::new(region, *w, budget, 0, i as u64 + 1);
                (m, TokenBucket::new(Limit::new(rate), origin), 0)
            })
            .collect();
        Sim {
            members,
            region,
            origin,
            now: 1000 * MS,
        }
    }

    /// Runs `dur`; `wants(i, t)` says whether member i has demand at time t (ns).
    fn run(&mut self, dur: Duration, wants: &dyn Fn(usize, u64) -> bool) {
        let end = self.now + dur.as_nanos() as u64;
        while self.now < end {
            let t = self.origin + Duration::from_nanos(self.now);
            for (i, (m, local, bytes)) in self.members.iter_mut().enumerate() {
                if !wants(i, self.now) {
                    let _ = m.tick(self.now, [false; 2]);
                    continue;
                }
                if let Some([bw, _]) = m.tick(self.now, [true; 2]) {
                    local.set_limit(Limit::with_burst(bw, (bw / 20).max(REQ)), t);
                }
                // Bounded: at most 64 requests a step per member.
                for _ in 0..64 {
                    if !(local.admits(REQ, t) && m.admits([REQ, 1], self.now)) {
                        break;
                    }
                    local.charge(REQ, t);
                    m.charge([REQ, 1], self.now);
                    *bytes += REQ;
                }
            }
            self.now += MS;
        }
    }

    fn take_window(&mut self) -> Vec<u64> {
        self.members
            .iter_mut()
            .map(|(_, _, b)| std::mem::take(b))
            .collect()
    }
}

fn within(got: f64, want: f64, tol: f64) -> bool {
    (got - want).abs() <= want * tol
}

/// A member's bytes in a window against its share: within `tol`, or within one request (a
/// member is admitted a whole request at a time, so a window's edges can cut one off; with a
/// share of a few requests a window that one request is already more than 10 %).
fn share_within(got: f64, want: f64, tol: f64) -> bool {
    within(got, want, tol) || (got - want).abs() <= REQ as f64
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Backlogged members share by weight (±10 % over 2 s after the first second), and the sum
    /// never exceeds burst + rate·T + one request per member.
    #[test]
    fn backlogged_members_share_by_weight(
        weights in proptest::collection::vec(1u64..=400, 1..=5),
        rate_mib in 4u64..=64,
    ) {
        let rate = rate_mib << 20;
        let mut sim = Sim::new(rate, &weights);
        sim.run(Duration::from_secs(1), &|_, _| true);
        sim.take_window();
        sim.run(Duration::from_secs(2), &|_, _| true);
        let got = sim.take_window();
        let total: u64 = got.iter().sum();
        let bound = rate + 2 * rate + weights.len() as u64 * REQ;
        prop_assert!(total <= bound, "sum {total} above {bound}");
        prop_assert!(total as f64 >= 2.0 * rate as f64 * 0.97, "not work-conserving: {total}");
        let wsum: u64 = weights.iter().sum();
        for (i, w) in weights.iter().enumerate() {
            let want = 2.0 * rate as f64 * *w as f64 / wsum as f64;
            prop_assert!(share_within(got[i] as f64, want, 0.10),
                "member {i} (weight {w}): {} vs {want}", got[i]);
        }
    }

    /// A member that stops leaves its share to the others within a lease and a tick.
    #[test]
    fn a_silent_member_is_forgotten(weights in proptest::collection::vec(1u64..=400, 2..=4)) {
        let rate = 16u64 << 20;
        let mut sim = Sim::new(rate, &weights);
        sim.run(Duration::from_secs(1), &|_, _| true);
        // Member 0 goes silent (killed: it never ticks again).
        let stop = sim.now;
        sim.members[0].0 = Member::new(Region::anonymous(), 1, Budget::default(), 0, 99);
        sim.run(Duration::from_secs(1), &|i, _| i != 0);
        sim.take_window();
        let _ = stop;
        sim.run(Duration::from_secs(2), &|i, _| i != 0);
        let got = sim.take_window();
        let rest: u64 = weights[1..].iter().sum();
        for (i, w) in weights.iter().enumerate().skip(1) {
            let want = 2.0 * rate as f64 * *w as f64 / rest as f64;
            prop_assert!(share_within(got[i] as f64, want, 0.10),
                "member {i}: {} vs {want}", got[i]);
        }
    }
}

#[test]
fn a_lone_member_gets_the_whole_rate_and_idle_ones_do_not_count() {
    let rate = 8u64 << 20;
    let mut sim = Sim::new(rate, &[100, 100, 100]);
    sim.run(Duration::from_secs(1), &|i, _| i == 1);
    sim.take_window();
    sim.run(Duration::from_secs(2), &|i, _| i == 1);
    let got = sim.take_window();
    assert!(within(got[1] as f64, 2.0 * rate as f64, 0.03), "{got:?}");
    assert_eq!(got[0] + got[2], 0);
    assert!(TICK < Duration::from_millis(100));
}

#[test]
fn a_corrupt_slot_skews_but_cannot_uncap_or_stop_others() {
    use std::sync::atomic::Ordering;
    let rate = 8u64 << 20;
    let mut sim = Sim::new(rate, &[100, 100]);
    sim.run(Duration::from_secs(1), &|_, _| true);
    let mine: Vec<_> = sim.members.iter().map(|m| m.0.slot().unwrap()).collect();
    // Garbage everywhere but the two honest slots: live-looking leases with absurd weights and
    // demands, a zeroed live budget, a shared bucket word at the end of time.
    let words = sim.region.words();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for (i, w) in words.iter().enumerate() {
        let in_honest = mine.iter().any(|s| {
            let start = 64 + s * 16;
            (start..start + 16).contains(&i)
        });
        if i < 4 || in_honest {
            continue;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w.store(x, Ordering::Relaxed);
    }
    for s in (0..ratelimit::group::SLOTS).filter(|s| !mine.contains(s)) {
        sim.region
            .slot(s, 1)
            .store(sim.now + 100 * MS, Ordering::Relaxed); // lease: live
        sim.region.slot(s, 0).store(7, Ordering::Relaxed);
    }
    for w in &words[9..13] {
        w.store(0, Ordering::Relaxed); // live budget zeroed: "unlimited"?
    }
    words[13].store(u64::MAX, Ordering::Relaxed);
    sim.take_window();
    sim.run(Duration::from_secs(3), &|_, _| true);
    let got = sim.take_window();
    // Not uncapped: the members' own flags stand in for the zeroed budget.
    assert!(got.iter().sum::<u64>() <= 4 * rate, "{got:?}");
    // Not stopped: each still moves data (skewed shares have a floor; debt is clamped).
    assert!(got.iter().all(|b| *b > 0), "{got:?}");
}
