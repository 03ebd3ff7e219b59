//! Property tests: rate bound over every window, liveness, FIFO, long-run rate. Fake time only.

use std::time::Duration;

use proptest::prelude::*;
use ratelimit::{Bucket, Class, Cost, Limit, Nanos, Throttle};

mod common;
use common::{cost, window_excess, NS};

const MIB: u64 = 1 << 20;

/// Rates from 1 unit/s to 10^10 units/s, spread over the orders of magnitude.
fn rate() -> impl Strategy<Value = u64> {
    prop_oneof![1u64..=1000, 1000u64..=100 * MIB, 100 * MIB..=10_000_000_000]
}

fn limit() -> impl Strategy<Value = Limit> {
    prop_oneof![
        1 => Just(Limit::UNLIMITED),
        3 => (rate(), prop_oneof![Just(None), (0u64..=4 * MIB).prop_map(Some)])
            .prop_map(|(size, burst)| Limit::with_burst(size, burst.unwrap_or(size))),
    ]
}

fn class() -> impl Strategy<Value = Class> {
    prop_oneof![Just(Class::Read), Just(Class::Write), Just(Class::Other)]
}

/// (gap before arrival in ns, size, class)
fn requests() -> impl Strategy<Value = Vec<(u64, u64, Class)>> {
    prop::collection::vec((0u64..=50_000_000, 1u64..=MIB, class()), 1..80)
}

struct Run {
    /// (instant, request index) in admission order.
    admitted: Vec<(Nanos, usize)>,
}

/// What the daemon does with a request (virtiofsd `device::throttle`): admit it now if
/// [`Throttle::try_admit`] does, else park it. `Some(item)` when admitted.
fn submit<T>(th: &mut Throttle<T>, item: T, class: Class, cost: Cost, now: Nanos) -> Option<T> {
    if th.try_admit(class, cost, now) {
        return Some(item);
    }
    th.park(item, class, cost);
    None
}

/// Releases at every reported deadline up to `until` (all of them if `None`).
fn release_until(
    th: &mut Throttle<usize>,
    now: &mut Nanos,
    until: Option<Nanos>,
    admitted: &mut Vec<(Nanos, usize)>,
) {
    let mut out = Vec::new();
    while let Some(d) = th.next_deadline(*now) {
        if until.is_some_and(|u| d > u) {
            break;
        }
        *now = d.max(*now);
        out.clear();
        let n = th.release_into(*now, &mut out);
        assert!(n > 0, "a reported deadline released nothing");
        admitted.extend(out.iter().map(|id| (*now, *id)));
    }
}

/// Releases at every reported deadline in the next `gap` ns, and moves `now` to its end.
fn release_for(
    th: &mut Throttle<usize>,
    now: &mut Nanos,
    gap: u64,
    admitted: &mut Vec<(Nanos, usize)>,
) {
    let at = *now + Duration::from_nanos(gap);
    release_until(th, now, Some(at), admitted);
    *now = at;
}

/// Submits the requests at their arrival times and calls `release` exactly at every reported
/// deadline, until nothing is parked.
fn drive(th: &mut Throttle<usize>, t0: Nanos, reqs: &[(u64, u64, Class)]) -> Run {
    let mut admitted = Vec::new();
    let mut now = t0;
    let mut arrival = t0;
    for (id, (gap, size, class)) in reqs.iter().enumerate() {
        arrival += Duration::from_nanos(*gap);
        release_until(th, &mut now, Some(arrival), &mut admitted);
        now = arrival;
        if let Some(i) = submit(th, id, *class, cost(*class, *size), now) {
            admitted.push((now, i));
        }
    }
    release_until(th, &mut now, None, &mut admitted);
    assert_eq!(th.parked(), 0);
    Run { admitted }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn window_bound_liveness_and_fifo(
        limits in [limit(), limit(), limit(), limit()],
        reqs in requests(),
    ) {
        let t0 = Nanos::now();
        let mut th = Bucket::ALL
            .iter()
            .zip(limits)
            .fold(Throttle::new(t0), |th, (b, l)| th.with_limit(*b, l, t0));
        let run = drive(&mut th, t0, &reqs);

        // Every request admitted exactly once; FIFO within each class.
        let mut ids: Vec<usize> = run.admitted.iter().map(|a| a.1).collect();
        for c in Class::ALL {
            let in_class: Vec<usize> = ids.iter().copied().filter(|i| reqs[*i].2 == c).collect();
            prop_assert!(in_class.windows(2).all(|w| w[0] < w[1]), "FIFO broken in {c:?}");
        }
        ids.sort_unstable();
        prop_assert_eq!(ids, (0..reqs.len()).collect::<Vec<_>>());
        prop_assert!(run.admitted.windows(2).all(|w| w[0].0 <= w[1].0));

        // In every window [t_i, t_j] each limited bucket admitted at most
        // burst + size·T + (largest request - burst, if positive). Exact, in unit·ns.
        for b in Bucket::ALL {
            let l = th.limit(b);
            if l.is_unlimited() {
                continue;
            }
            let ev: Vec<(Nanos, u128)> = run
                .admitted
                .iter()
                .map(|(t, id)| (*t, cost(reqs[*id].2, reqs[*id].1).get(b) as u128))
                .filter(|e| e.1 > 0)
                .collect();
            let max_req = ev.iter().map(|e| e.1).max().unwrap_or(0);
            let slack = (l.burst as u128 + max_req.saturating_sub(l.burst as u128)) * NS;
            let excess = window_excess(&ev, l.size, slack);
            prop_assert!(excess.is_none(), "{b}: (units, window) {excess:?}");
        }
    }

    #[test]
    fn saturated_long_run_rate_converges(
        size in rate(),
        burst in 0u64..=4 * MIB,
        sizes in prop::collection::vec(1u64..=MIB, 2..200),
    ) {
        let t0 = Nanos::now();
        let mut th = Throttle::new(t0)
            .with_limit(Bucket::Bw, Limit::with_burst(size, burst), t0);
        let reqs: Vec<_> = sizes.iter().map(|s| (0, *s, Class::Read)).collect();
        let run = drive(&mut th, t0, &reqs);
        let (end, last) = *run.admitted.last().unwrap();
        prop_assume!(end > t0, "never saturated: everything fit the burst");
        prop_assert_eq!(last, sizes.len() - 1);
        // Total = burst + size·elapsed - final level - refill lost at the cap. The last item left
        // at its exact deadline, so the final level is in (-largest request, size·1ns); an item
        // that waits for a full bucket may lose under size·1ns of refill to the whole-ns deadline.
        let total = sizes.iter().sum::<u64>() as i128 * NS as i128;
        let ideal = burst as i128 * NS as i128 + size as i128 * (end - t0).as_nanos() as i128;
        let max_req = *sizes.iter().max().unwrap() as i128 * NS as i128;
        prop_assert!(total - ideal <= max_req, "too much: {total} vs {ideal}");
        let lost = size as i128 * sizes.len() as i128;
        prop_assert!(ideal - total < lost, "too little: {total} vs {ideal}");
    }
}

/// One step of a run with live changes and ring stops.
#[derive(Debug, Clone)]
enum Step {
    Submit(u64, Class),
    /// A live change of the `bw` bucket (always limited, so every window is bounded).
    Change(Limit),
    /// A ring stop: every parked item is paid (with at most one burst more debt) or refused.
    Stop,
}

fn limited() -> impl Strategy<Value = Limit> {
    (rate(), 0u64..=4 * MIB).prop_map(|(size, burst)| Limit::with_burst(size, burst))
}

fn steps() -> impl Strategy<Value = Vec<(u64, Step)>> {
    let step = prop_oneof![
        6 => (1u64..=MIB, class()).prop_map(|(n, c)| Step::Submit(n, c)),
        2 => limited().prop_map(Step::Change),
        1 => Just(Step::Stop),
    ];
    prop::collection::vec((0u64..=50_000_000, step), 1..100)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Live changes never create tokens and stops never give work away: in every window each
    /// bucket admitted at most `2·burst + size·T + one request` (burst and size: the largest the
    /// bucket had during the run), every request left exactly once (admitted or refused), and
    /// FIFO holds within each class.
    #[test]
    fn window_bound_across_live_changes_and_stops(
        first in limited(),
        others in [limit(), limit(), limit()],
        steps in steps(),
    ) {
        let t0 = Nanos::now();
        let mut th = Throttle::new(t0).with_limit(Bucket::Bw, first, t0);
        for (b, l) in [Bucket::ReadBw, Bucket::WriteBw, Bucket::Ops].into_iter().zip(others) {
            th = th.with_limit(b, l, t0);
        }
        let mut max = [(0u64, 0u64); 4];
        for b in Bucket::ALL {
            max[b.index()] = (th.limit(b).size, th.limit(b).burst);
        }
        let mut now = t0;
        let mut admitted = Vec::new();
        let mut refused = Vec::new();
        let mut reqs = Vec::new();
        for (gap, step) in &steps {
            release_for(&mut th, &mut now, *gap, &mut admitted);
            match step {
                Step::Submit(n, c) => {
                    let id = reqs.len();
                    reqs.push((*n, *c));
                    if let Some(i) = submit(&mut th, id, *c, cost(*c, *n), now) {
                        admitted.push((now, i));
                    }
                }
                Step::Change(l) => {
                    th.set_limit(Bucket::Bw, *l, now);
                    let m = &mut max[Bucket::Bw.index()];
                    *m = (m.0.max(l.size), m.1.max(l.burst));
                }
                Step::Stop => {
                    let d = th.drain(now);
                    admitted.extend(d.paid.into_iter().map(|i| (now, i)));
                    refused.extend(d.refused);
                }
            }
        }
        release_until(&mut th, &mut now, None, &mut admitted);
        prop_assert_eq!(th.parked(), 0);

        let mut ids: Vec<usize> = admitted.iter().map(|a| a.1).collect();
        for c in Class::ALL {
            let in_class: Vec<usize> = ids.iter().copied().filter(|i| reqs[*i].1 == c).collect();
            prop_assert!(in_class.windows(2).all(|w| w[0] < w[1]), "FIFO broken in {c:?}");
        }
        ids.extend(&refused);
        ids.sort_unstable();
        prop_assert_eq!(ids, (0..reqs.len()).collect::<Vec<_>>());

        for b in Bucket::ALL {
            let (size, burst) = max[b.index()];
            if size == 0 {
                continue;
            }
            let ev: Vec<(Nanos, u128)> = admitted
                .iter()
                .map(|(t, id)| (*t, cost(reqs[*id].1, reqs[*id].0).get(b) as u128))
                .filter(|e| e.1 > 0)
                .collect();
            let max_req = ev.iter().map(|e| e.1).max().unwrap_or(0);
            let slack = (2 * burst as u128 + max_req) * NS;
            let excess = window_excess(&ev, size, slack);
            prop_assert!(excess.is_none(), "{b}: (units, window) {excess:?}");
        }
    }

    /// Without stops, live changes keep the tighter bound `burst + size·T + one request`.
    #[test]
    fn live_changes_keep_the_window_bound(
        first in limited(),
        steps in steps(),
    ) {
        let t0 = Nanos::now();
        let mut th = Throttle::new(t0).with_limit(Bucket::Bw, first, t0);
        let (mut size, mut burst) = (first.size, first.burst);
        let mut now = t0;
        let mut admitted = Vec::new();
        let mut reqs = Vec::new();
        for (gap, step) in &steps {
            release_for(&mut th, &mut now, *gap, &mut admitted);
            match step {
                Step::Submit(n, _) => {
                    reqs.push(*n);
                    let c = Cost::new().with(Bucket::Bw, *n);
                    if let Some(i) = submit(&mut th, reqs.len() - 1, Class::Read, c, now) {
                        admitted.push((now, i));
                    }
                }
                Step::Change(l) => {
                    th.set_limit(Bucket::Bw, *l, now);
                    (size, burst) = (size.max(l.size), burst.max(l.burst));
                }
                Step::Stop => {}
            }
        }
        release_until(&mut th, &mut now, None, &mut admitted);
        prop_assert_eq!(admitted.len(), reqs.len());
        let max_req = reqs.iter().copied().max().unwrap_or(0) as u128;
        let ev: Vec<(Nanos, u128)> = admitted.iter().map(|(t, id)| (*t, reqs[*id] as u128)).collect();
        let excess = window_excess(&ev, size, (burst as u128 + max_req) * NS);
        prop_assert!(excess.is_none(), "(units, window) {excess:?}");
    }
}
