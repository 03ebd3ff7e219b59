//! Cost of the limiter on the request path: what one request pays in `Throttle::submit` when
//! no bucket is limited, when limits are set far above the offered rate (admitted at once,
//! the "not binding" case the daemon benchmark measures end to end), when requests park and
//! are released at their deadline, and the raw token bucket.
//!
//! Run: `cargo bench -p ratelimit --bench throttle`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ratelimit::{Admission, Bucket, Class, Cost, Limit, Throttle, TokenBucket};

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

fn submit(c: &mut Criterion) {
    let mut g = c.benchmark_group("submit");
    g.throughput(Throughput::Elements(1));

    // No limits configured: the fast path every request takes on an unlimited sandbox.
    g.bench_function("unlimited", |b| {
        let t0 = Instant::now();
        let mut th: Throttle<u64> = Throttle::new(t0);
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            match th.submit(i, Class::Read, black_box(read_cost(4096)), t0) {
                Admission::Admitted(x) => black_box(x),
                Admission::Parked => unreachable!(),
            }
        })
    });

    // Limits far above the offered rate (100 GB/s, 100 M ops/s): always admitted, but every
    // bucket is refilled and charged.
    g.bench_function("limited_not_binding", |b| {
        let t0 = Instant::now();
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
            match th.submit(i, Class::Read, black_box(cost), now) {
                Admission::Admitted(x) => black_box(x),
                Admission::Parked => unreachable!("limit far above the rate"),
            }
        })
    });
    g.finish();
}

fn park_release(c: &mut Criterion) {
    let mut g = c.benchmark_group("park_release");
    const N: u64 = 64;
    g.throughput(Throughput::Elements(N));
    // A binding limit: N requests park, then are released one deadline at a time (what the
    // daemon's timer does): submit + next_deadline + release per request.
    g.bench_function("64_binding", |b| {
        b.iter_batched(
            || {
                let t0 = Instant::now();
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
                    if let Admission::Admitted(x) = th.submit(i, class, read_cost(1 << 20), t0) {
                        released.push(x);
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
    g.bench_function("try_consume", |b| {
        let t0 = Instant::now();
        let mut tb = TokenBucket::new(Limit::new(1_000_000_000), t0);
        let mut now = t0;
        b.iter(|| {
            now += Duration::from_micros(5);
            black_box(tb.try_consume(black_box(4096), now))
        })
    });
    g.bench_function("time_until", |b| {
        let t0 = Instant::now();
        let mut tb = TokenBucket::new(Limit::new(10_000_000), t0);
        tb.charge(50_000_000, t0);
        b.iter(|| black_box(tb.time_until(black_box(1 << 20), t0)))
    });
    g.finish();
}

criterion_group!(benches, submit, park_release, bucket);
criterion_main!(benches);
