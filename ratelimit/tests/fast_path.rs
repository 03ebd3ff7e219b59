//! Property test: with nothing parked, [`Throttle::try_admit`] (which takes a fast path when
//! every bucket it pays into is known to be full) decides and charges exactly as the rule it
//! implements, modelled here with plain [`TokenBucket::admits`] + [`TokenBucket::charge`]:
//! admitted iff every bucket admits, then every bucket charged. Time steps include the exact
//! nanosecond at which a bucket becomes full again, and one nanosecond either side of it.

use std::time::Duration;

use proptest::prelude::*;
use ratelimit::{Bucket, Class, Limit, Nanos, Throttle, TokenBucket};

mod common;
use common::cost;

const MIB: u64 = 1 << 20;

fn limit() -> impl Strategy<Value = Limit> {
    prop_oneof![
        1 => Just(Limit::UNLIMITED),
        4 => (
            prop_oneof![1u64..=1000, 1000u64..=100 * MIB, 100 * MIB..=100_000_000_000],
            prop_oneof![Just(None), (0u64..=4 * MIB).prop_map(Some)],
        )
            .prop_map(|(size, burst)| Limit::with_burst(size, burst.unwrap_or(size))),
    ]
}

/// How the clock moves before a step.
#[derive(Debug, Clone)]
enum Gap {
    /// By this many nanoseconds.
    Ns(u64),
    /// To the instant the bucket becomes full, plus `-1`, `0` or `+1` ns.
    UntilFull(Bucket, i8),
}

#[derive(Debug, Clone)]
enum Step {
    Request(Class, u64),
    /// A live limit change of one bucket.
    SetLimit(Bucket, Limit),
}

fn bucket() -> impl Strategy<Value = Bucket> {
    prop_oneof![
        Just(Bucket::Bw),
        Just(Bucket::ReadBw),
        Just(Bucket::WriteBw),
        Just(Bucket::Ops)
    ]
}

fn gap() -> impl Strategy<Value = Gap> {
    prop_oneof![
        2 => Just(Gap::Ns(0)),
        3 => (0u64..=20_000_000).prop_map(Gap::Ns),
        4 => (bucket(), -1i8..=1).prop_map(|(b, d)| Gap::UntilFull(b, d)),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let class = prop_oneof![Just(Class::Read), Just(Class::Write), Just(Class::Other)];
    prop_oneof![
        12 => (class, prop_oneof![1u64..=64, 1u64..=2 * MIB]).prop_map(|(c, n)| Step::Request(c, n)),
        1 => (bucket(), limit()).prop_map(|(b, l)| Step::SetLimit(b, l)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn fast_path_decides_and_charges_as_the_rule(
        limits in [limit(), limit(), limit(), limit()],
        steps in prop::collection::vec((gap(), step()), 1..120),
    ) {
        let t0 = Nanos::now();
        let mut th: Throttle<()> = Throttle::new(t0);
        let mut model: [TokenBucket; 4] = Bucket::ALL.map(|b| TokenBucket::new(limits[b.index()], t0));
        for b in Bucket::ALL {
            th = th.with_limit(b, limits[b.index()], t0);
        }
        let mut now = t0;
        for (i, (gap, step)) in steps.into_iter().enumerate() {
            now = match gap {
                Gap::Ns(ns) => now + Duration::from_nanos(ns),
                Gap::UntilFull(b, d) => {
                    let full = now + model[b.index()].time_until(u64::MAX, now);
                    match d {
                        -1 if full > now => full - Duration::from_nanos(1),
                        1 => full + Duration::from_nanos(1),
                        _ => full,
                    }
                }
            };
            match step {
                Step::Request(class, n) => {
                    let c = cost(class, n);
                    // The buckets the request pays into (a non-zero amount) decide.
                    let expected = Bucket::ALL
                        .iter()
                        .all(|b| c.get(*b) == 0 || model[b.index()].admits(c.get(*b), now));
                    if expected {
                        for b in Bucket::ALL {
                            model[b.index()].charge(c.get(b), now);
                        }
                    }
                    prop_assert_eq!(th.try_admit(class, c, now), expected, "step {}", i);
                }
                Step::SetLimit(b, l) => {
                    th.set_limit(b, l, now);
                    model[b.index()].set_limit(l, now);
                }
            }
            // Whole-token levels now and a little later; the exact sub-token state is checked
            // by the decisions of the later steps (taken at the exact instants of refill).
            for b in Bucket::ALL {
                let m = &model[b.index()];
                for t in [now, now + Duration::from_nanos(777)] {
                    prop_assert_eq!(th.level(b, t), m.level(t), "step {} {}", i, b);
                }
            }
        }
        prop_assert_eq!(th.parked(), 0);
    }
}
