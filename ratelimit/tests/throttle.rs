//! Scheduler behaviour, driven by a fake clock (no sleeps).

use std::time::Duration;

use ratelimit::{Bucket, Class, Clock, Cost, FakeClock, Limit, Nanos, Throttle};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

fn read(n: u64) -> Cost {
    Cost::new()
        .with(Bucket::ReadBw, n)
        .with(Bucket::Bw, n)
        .with(Bucket::Ops, 1)
}

fn write(n: u64) -> Cost {
    Cost::new()
        .with(Bucket::WriteBw, n)
        .with(Bucket::Bw, n)
        .with(Bucket::Ops, 1)
}

fn meta() -> Cost {
    Cost::new().with(Bucket::Ops, 1)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
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

/// [`Throttle::release_into`] into a new vector.
fn release<T>(th: &mut Throttle<T>, now: Nanos) -> Vec<T> {
    let mut out = Vec::new();
    th.release_into(now, &mut out);
    out
}

/// Whether no bucket is limited.
fn unlimited<T>(th: &Throttle<T>) -> bool {
    Bucket::ALL.iter().all(|b| th.limit(*b).is_unlimited())
}

fn admitted<T: std::fmt::Debug>(a: Option<T>) -> T {
    a.expect("expected admitted, got parked")
}

fn parked<T: std::fmt::Debug>(a: Option<T>) {
    assert!(a.is_none(), "expected parked, got {a:?}");
}

#[test]
fn unlimited_admits_everything() {
    let clock = FakeClock::new();
    let mut th = Throttle::new(clock.now());
    assert!(unlimited(&th));
    for i in 0..1000u32 {
        assert_eq!(
            admitted(submit(&mut th, i, Class::Read, read(MIB), clock.now())),
            i
        );
    }
    assert_eq!(th.parked(), 0);
    assert_eq!(th.next_deadline(clock.now()), None);
    assert_eq!(th.level(Bucket::Bw, clock.now()), None);
    // A limit added live starts empty: nothing passes before its tokens accrue. Limiting only
    // ops leaves byte costs free but counts operations.
    th.set_limit(Bucket::Ops, Limit::new(2), clock.now());
    assert_eq!(th.level(Bucket::Ops, clock.now()), Some(0));
    parked(submit(&mut th, 1, Class::Write, write(MIB), clock.now()));
    assert_eq!(th.next_deadline(clock.now()), Some(clock.now() + ms(500)));
    clock.advance(ms(500));
    assert_eq!(release(&mut th, clock.now()), vec![1]);
    assert_eq!(th.level(Bucket::Ops, clock.now()), Some(0));
}

#[test]
fn over_burst_request_is_paid_as_debt() {
    let clock = FakeClock::new();
    let t0 = clock.now();
    let mut th =
        Throttle::new(t0).with_limit(Bucket::Bw, Limit::with_burst(10 * MIB, 64 * KIB), t0);
    admitted(submit(&mut th, 1, Class::Read, read(MIB), t0));
    assert_eq!(th.level(Bucket::Bw, t0), Some(64 * KIB as i64 - MIB as i64));
    parked(submit(&mut th, 2, Class::Read, read(MIB), t0));
    // Debt (1 MiB - 64 KiB) plus a full burst (64 KiB) at 10 MiB/s: exactly 100 ms.
    let deadline = th.next_deadline(t0).unwrap();
    assert_eq!(deadline - t0, ms(100));
    assert!(release(&mut th, deadline - Duration::from_nanos(1)).is_empty());
    assert_eq!(release(&mut th, deadline), vec![2]);
}

#[test]
fn exact_deadline() {
    let clock = FakeClock::new();
    let t0 = clock.now();
    let mut th = Throttle::new(t0).with_limit(Bucket::Ops, Limit::new(3), t0);
    for i in 0..3 {
        admitted(submit(&mut th, i, Class::Other, meta(), t0));
    }
    parked(submit(&mut th, 3, Class::Other, meta(), t0));
    let d = th.next_deadline(t0).unwrap();
    assert_eq!(d - t0, Duration::from_nanos(333_333_334));
    clock.set(d - Duration::from_nanos(1));
    assert!(release(&mut th, clock.now()).is_empty());
    assert_eq!(
        th.next_deadline(clock.now()),
        Some(d),
        "deadline does not move"
    );
    clock.advance(Duration::from_nanos(1));
    assert_eq!(release(&mut th, clock.now()), vec![3]);
    assert_eq!(th.next_deadline(clock.now()), None);
}

#[test]
fn combined_bucket_admission_is_atomic() {
    let clock = FakeClock::new();
    let t0 = clock.now();
    let mut th = Throttle::new(t0)
        .with_limit(Bucket::ReadBw, Limit::new(1000), t0)
        .with_limit(Bucket::WriteBw, Limit::new(1000), t0)
        .with_limit(Bucket::Bw, Limit::new(500), t0);
    // Fits read_bw but not bw: parked, and read_bw is not touched.
    admitted(submit(&mut th, "r0", Class::Read, read(400), t0));
    parked(submit(&mut th, "r1", Class::Read, read(400), t0));
    assert_eq!(th.level(Bucket::ReadBw, t0), Some(600));
    assert_eq!(th.level(Bucket::Bw, t0), Some(100));
    // Same for a write: write_bw stays full.
    parked(submit(&mut th, "w0", Class::Write, write(200), t0));
    assert_eq!(th.level(Bucket::WriteBw, t0), Some(1000));
    // bw reaches 400 for r1 after 600 ms; then w0 (200) after another 400 ms.
    let d = th.next_deadline(t0).unwrap();
    assert_eq!(d - t0, ms(600));
    assert_eq!(release(&mut th, d), vec!["r1"]);
    assert_eq!(
        th.level(Bucket::ReadBw, d),
        Some(600),
        "refilled to 1000, charged 400"
    );
    let d2 = th.next_deadline(d).unwrap();
    assert_eq!(d2 - t0, ms(1000));
    assert_eq!(release(&mut th, d2), vec!["w0"]);
    assert_eq!(th.level(Bucket::WriteBw, d2), Some(800));
}

#[test]
fn fifo_within_a_class() {
    let clock = FakeClock::new();
    let t0 = clock.now();
    let mut th = Throttle::new(t0).with_limit(Bucket::ReadBw, Limit::new(100), t0);
    admitted(submit(&mut th, 0, Class::Read, read(100), t0));
    parked(submit(&mut th, 1, Class::Read, read(100), t0));
    // A tiny read would fit nothing either, and must not overtake anyway.
    parked(submit(&mut th, 2, Class::Read, read(1), t0));
    parked(submit(&mut th, 3, Class::Read, read(50), t0));
    // Even once the bucket could afford item 2 alone, it stays behind item 1.
    assert!(release(&mut th, t0 + ms(500)).is_empty());
    let mut out = Vec::new();
    let mut now = t0;
    while let Some(d) = th.next_deadline(now) {
        now = d;
        assert!(
            th.release_into(now, &mut out) > 0,
            "every deadline releases something"
        );
    }
    assert_eq!(out, vec![1, 2, 3]);
    assert_eq!(now - t0, ms(1510));
}

#[test]
fn throttled_write_does_not_delay_reads_or_metadata() {
    let clock = FakeClock::new();
    let t0 = clock.now();
    let mut th = Throttle::new(t0)
        .with_limit(Bucket::WriteBw, Limit::new(100), t0)
        .with_limit(Bucket::ReadBw, Limit::new(100 * MIB), t0)
        .with_limit(Bucket::Bw, Limit::new(200 * MIB), t0)
        .with_limit(Bucket::Ops, Limit::new(1_000_000), t0);
    admitted(submit(&mut th, "w0", Class::Write, write(100), t0));
    parked(submit(&mut th, "w1", Class::Write, write(100), t0));
    parked(submit(&mut th, "w2", Class::Write, write(100), t0));
    // Reads and metadata with tokens flow while the writes wait for write_bw.
    for i in 0..50 {
        let t = t0 + ms(i);
        assert_eq!(submit(&mut th, "r", Class::Read, read(MIB), t), Some("r"));
        assert_eq!(submit(&mut th, "m", Class::Other, meta(), t), Some("m"));
    }
    assert_eq!(th.parked(), 2, "the two writes, and only they, wait");
    assert_eq!(th.next_deadline(t0 + ms(50)), Some(t0 + ms(1000)));
}

#[test]
fn shared_bucket_does_not_starve_a_parked_write() {
    // Reads alone would use all of bw: 100 units every 100 ms at 1000/s with a 100 burst.
    let clock = FakeClock::new();
    let t0 = clock.now();
    let mut th = Throttle::new(t0)
        .with_limit(Bucket::Bw, Limit::with_burst(1000, 100), t0)
        .with_limit(Bucket::WriteBw, Limit::new(100), t0);
    admitted(submit(&mut th, 0, Class::Write, write(100), t0));
    let mut released: Vec<(u32, Duration)> = Vec::new();
    let mut now = t0;
    for k in 1..=30u32 {
        let t = t0 + ms(100 * u64::from(k));
        // Deadlines strictly before the arrival; at the arrival instant the read is submitted
        // first (the adversarial order for the write).
        while let Some(d) = th.next_deadline(now).filter(|d| *d < t) {
            now = d;
            for id in release(&mut th, now) {
                released.push((id, now - t0));
            }
        }
        now = t;
        if k == 2 {
            // The write arrives when write_bw holds 20 of 100: it waits until t0 + 1 s.
            parked(submit(&mut th, 1, Class::Write, write(100), t0 + ms(200)));
        }
        if let Some(id) = submit(&mut th, 100 + k, Class::Read, read(100), now) {
            released.push((id, now - t0));
        }
        for id in release(&mut th, now) {
            released.push((id, now - t0));
        }
    }
    while let Some(d) = th.next_deadline(now) {
        now = d;
        for id in release(&mut th, now) {
            released.push((id, now - t0));
        }
    }
    // The write leaves at its deadline, though a read arrived at that very instant.
    assert!(released.contains(&(1, ms(1000))), "{released:?}");
    // Reads were not delayed before then: bw had enough for them and for the write.
    for k in 1..=9u32 {
        assert!(released.contains(&(100 + k, ms(100 * u64::from(k)))), "{k}");
    }
    // Every read got out, in order.
    let reads: Vec<u32> = released
        .iter()
        .map(|r| r.0)
        .filter(|id| *id >= 100)
        .collect();
    assert_eq!(reads, (101..=130).collect::<Vec<_>>());
    assert_eq!(th.parked(), 0);
}

#[test]
fn drain_pays_what_one_burst_of_debt_covers_and_refuses_the_rest() {
    let clock = FakeClock::new();
    let t0 = clock.now();
    let mut th = Throttle::new(t0).with_limit(Bucket::Bw, Limit::with_burst(1000, 1000), t0);
    admitted(submit(&mut th, 0, Class::Write, write(1000), t0)); // the bucket is now empty
    let classes = [Class::Read, Class::Write, Class::Other];
    let sizes = [300, 300, 300, 300, 300, 100];
    for (i, n) in sizes.iter().enumerate() {
        let c = classes[i % 3];
        let cost = if c == Class::Other { meta() } else { write(*n) };
        parked(submit(&mut th, i + 1, c, cost.with(Bucket::Bw, *n), t0));
    }
    assert_eq!(th.parked(), 6);
    // Arrival order across classes; each is paid while level + burst covers it: 0, -300,
    // -600, -900 (refused: 100 < 300), 100 covers the last one, ending at -burst.
    let d = th.drain(t0);
    assert_eq!(d.paid, vec![1, 2, 3, 6]);
    assert_eq!(d.refused, vec![4, 5]);
    assert_eq!(
        th.level(Bucket::Bw, t0),
        Some(-1000),
        "at most one burst of debt"
    );
    assert_eq!(th.parked(), 0);
    assert_eq!(th.next_deadline(t0), None);
    // A second stop at once pays nothing: the debt must be paid back first.
    parked(submit(&mut th, 7, Class::Write, write(1), t0));
    let d = th.drain(t0);
    assert_eq!((d.paid, d.refused), (vec![], vec![7]));
    assert_eq!(th.level(Bucket::Bw, t0), Some(-1000));
    // Normal admission needs the debt repaid and the request's own tokens.
    parked(submit(&mut th, 8, Class::Write, write(500), t0));
    assert_eq!(th.next_deadline(t0), Some(t0 + ms(1500)));
}

#[test]
fn set_limit_mid_queue_applies_to_parked_items() {
    let clock = FakeClock::new();
    let t0 = clock.now();
    let mut th = Throttle::new(t0).with_limit(Bucket::WriteBw, Limit::new(10), t0);
    admitted(submit(&mut th, 0, Class::Write, write(10), t0));
    for i in 1..=3 {
        parked(submit(&mut th, i, Class::Write, write(10), t0));
    }
    assert_eq!(th.next_deadline(t0), Some(t0 + ms(1000)));
    // Faster and resized: no tokens are handed out; the level (0.1 unit after 10 ms) is kept
    // and refills at the new 20/s from there.
    let t1 = t0 + ms(10);
    th.set_limit(Bucket::WriteBw, Limit::new(20), t1);
    assert_eq!(th.limit(Bucket::WriteBw), Limit::with_burst(20, 20));
    assert!(release(&mut th, t1).is_empty());
    assert_eq!(th.next_deadline(t1), Some(t1 + ms(495)));
    let t2 = t1 + ms(495);
    assert_eq!(release(&mut th, t2), vec![1]);
    assert_eq!(th.next_deadline(t2), Some(t2 + ms(500)));
    // Lifting the limit releases the rest immediately; new items may not overtake them.
    th.set_limit(Bucket::WriteBw, Limit::UNLIMITED, t2);
    parked(submit(&mut th, 4, Class::Write, write(10), t2));
    assert_eq!(release(&mut th, t2), vec![2, 3, 4]);
    assert!(unlimited(&th));
    assert_eq!(submit(&mut th, 5, Class::Write, write(10), t2), Some(5));
}

#[test]
fn try_admit_charges_only_what_it_admits_and_park_queues_in_order() {
    let clock = FakeClock::new();
    let mut th = Throttle::<u32>::new(clock.now()).with_limit(
        Bucket::Bw,
        Limit::with_burst(MIB, MIB),
        clock.now(),
    );
    assert!(th.try_admit(Class::Read, read(MIB), clock.now()));
    assert_eq!(th.level(Bucket::Bw, clock.now()), Some(0));
    // Refused: nothing charged, nothing queued; the caller parks it.
    assert!(!th.try_admit(Class::Read, read(MIB / 2), clock.now()));
    assert_eq!(th.level(Bucket::Bw, clock.now()), Some(0));
    assert_eq!(th.parked(), 0);
    th.park(1, Class::Read, read(MIB / 2));
    // A later read may not pass the parked one, even once tokens exist.
    clock.advance(ms(600));
    assert!(!th.try_admit(Class::Read, read(KIB), clock.now()));
    let mut out = Vec::new();
    th.release_into(clock.now(), &mut out);
    assert_eq!(out, vec![1]);
    assert!(th.try_admit(Class::Read, read(KIB), clock.now()));
}

#[test]
fn drain_where_empties_only_the_picked_items_and_keeps_the_others_in_order() {
    let clock = FakeClock::new();
    let t0 = clock.now();
    let mut th = Throttle::new(t0).with_limit(Bucket::Bw, Limit::with_burst(1000, 1000), t0);
    admitted(submit(&mut th, (0, 0), Class::Write, write(1000), t0));
    // (ring, id): rings 1 and 2 interleaved, each 400 bytes.
    for id in 1..=6u32 {
        let ring = 1 + id % 2;
        let c = if id % 3 == 0 {
            Class::Read
        } else {
            Class::Write
        };
        let cost = if c == Class::Read {
            read(400)
        } else {
            write(400)
        };
        parked(submit(&mut th, (ring, id), c, cost, t0));
    }
    // Ring 2 stops: its items 1, 3, 5 in arrival order; two fit in one burst of debt.
    let d = th.drain_where(t0, |(ring, _)| *ring == 2);
    assert_eq!(d.paid, vec![(2, 1), (2, 3)]);
    assert_eq!(d.refused, vec![(2, 5)]);
    assert_eq!(th.parked(), 3, "ring 1's items stay parked");
    // Ring 1's items still leave normally, in order, once the debt is repaid.
    let mut out = Vec::new();
    th.release_into(t0 + ms(3000), &mut out);
    th.release_into(t0 + ms(4000), &mut out);
    assert_eq!(out, vec![(1, 2), (1, 4), (1, 6)]);
}
