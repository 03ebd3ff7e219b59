//! Cost of the limiter on the request path: what one request pays in `Throttle::try_admit` when
//! no bucket is limited, when limits are set far above the offered rate (admitted at once,
//! the "not binding" case the daemon benchmark measures end to end), when requests park and
//! are released at their deadline, and the raw token bucket.
//!
//! Run: `cargo bench -p ratelimit --bench throttle`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ratelimit::{Bucket, Class, Cost, Limit, Nanos, Throttle, TokenBucket};

fn read_cost(n: u64) -> Cost {
    Cost::new()
        .with(Bucket::ReadBw, n)
        .with(Bucket::Bw, n)
        .with(Bucket::Ops, 1)
}

fn write_cost(n: u64) -> Cost {
    Cost::new()
        .with(Bucket::WriteBw, n)
        .with(Bucket::Bw, n)
        .with(Bucket::Ops, 1)
}

fn try_admit(c: &mut Criterion) {
    let mut g = c.benchmark_group("try_admit");
    g.throughput(Throughput::Elements(1));

    // No limits configured: the fast path every request takes on an unlimited sandbox.
    g.bench_function("unlimited", |b| {
        let t0 = Nanos::now();
        let mut th: Throttle<u64> = Throttle::new(t0);
        b.iter(|| assert!(th.try_admit(Class::Read, black_box(read_cost(4096)), t0)))
    });

    // Limits far above the offered rate (100 GB/s, 100 M ops/s): always admitted, but every
    // bucket is refilled and charged.
    g.bench_function("limited_not_binding", |b| {
        let t0 = Nanos::now();
        let mut th: Throttle<u64> = Throttle::new(t0)
            .with_limit(Bucket::Bw, Limit::new(100_000_000_000), t0)
            .with_limit(Bucket::Ops, Limit::new(100_000_000), t0);
        let mut i = 0u64;
        let mut now = t0;
        b.iter(|| {
            i += 1;
            now += Duration::from_micros(10);
            let cost = if i % 2 == 0 {
                read_cost(4096)
            } else {
                write_cost(1 << 20)
            };
            assert!(
                th.try_admit(Class::Read, black_box(cost), now),
                "limit far above the rate"
            );
        })
    });
    g.finish();
}

fn park_release(c: &mut Criterion) {
    let mut g = c.benchmark_group("park_release");
    const N: u64 = 64;
    g.throughput(Throughput::Elements(N));
    // A binding limit: N requests park, then are released one deadline at a time (what the
    // daemon's timer does): try_admit (+ park) + next_deadline + release per request.
    g.bench_function("64_binding", |b| {
        b.iter_batched(
            || {
                let t0 = Nanos::now();
                let th: Throttle<u64> = Throttle::new(t0).with_limit(
                    Bucket::Bw,
                    Limit::with_burst(10_000_000, 1 << 20),
                    t0,
                );
                (th, t0)
            },
            |(mut th, t0)| {
                let mut released = Vec::with_capacity(N as usize);
                for i in 0..N {
                    let class = if i % 3 == 0 {
                        Class::Write
                    } else {
                        Class::Read
                    };
                    if th.try_admit(class, read_cost(1 << 20), t0) {
                        released.push(i);
                    } else {
                        th.park(i, class, read_cost(1 << 20));
                    }
                }
                let mut now = t0;
                while let Some(d) = th.next_deadline(now) {
                    now = d.max(now);
                    th.release_into(now, &mut released);
                }
                assert_eq!(released.len(), N as usize);
                released
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn bucket(c: &mut Criterion) {
    let mut g = c.benchmark_group("token_bucket");
    g.throughput(Throughput::Elements(1));
    g.bench_function("admits_and_charge", |b| {
        let t0 = Nanos::now();
        let mut tb = TokenBucket::new(Limit::new(1_000_000_000), t0);
        let mut now = t0;
        b.iter(|| {
            now += Duration::from_micros(5);
            let n = black_box(4096);
            if tb.admits(n, now) {
                tb.charge(n, now);
            }
        })
    });
    g.bench_function("time_until", |b| {
        let t0 = Nanos::now();
        let mut tb = TokenBucket::new(Limit::new(10_000_000), t0);
        tb.charge(50_000_000, t0);
        b.iter(|| black_box(tb.time_until(black_box(1 << 20), t0)))
    });
    g.finish();
}

criterion_group!(benches, try_admit, park_release, bucket);
criterion_main!(benches);
