//! Cost of a group member's admission (tick when due, shared-bucket check, charge) with the
//! member alone and with 100 members joined (live leases, all backlogged). Time advances 1 µs
//! per request, so a tick (which reads every slot) falls every 50 000 requests, as at
//! 50 000 requests per 50 ms.
//!
//! Run: `cargo bench -p ratelimit --bench group`.

use std::hint::black_box;

use std::sync::atomic::Ordering;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ratelimit::group::{file, Budget, Member, Region};
use ratelimit::Limit;

const NOW0: u64 = 10_000_000_000;

fn group_with(members: usize) -> (Member, Region) {
    let region = Region::anonymous();
    let budget = Budget {
        bw: Limit::new(u64::MAX / 4),
        ops: Limit::new(u64::MAX / 4),
    };
    file::init(&region, budget, 0);
    let mut others: Vec<Member> = (0..members.saturating_sub(1))
        .map(|i| Member::new(region, 100 + i as u64, budget, 0, i as u64 + 2))
        .collect();
    for m in &mut others {
        m.tick(NOW0, [true; 2]);
    }
    let mut me = Member::new(region, 100, budget, 0, 1);
    me.tick(NOW0, [true; 2]);
    drop(others); // their slots stay claimed; the bench renews their leases below
    let live = (0..ratelimit::group::SLOTS)
        .filter(|s| ratelimit::group::live(&region, *s, NOW0))
        .count();
    assert_eq!(live, members, "every member holds a live slot");
    (me, region)
}

fn admission(c: &mut Criterion) {
    let mut g = c.benchmark_group("group_admit");
    g.throughput(Throughput::Elements(1));
    for n in [1usize, 100] {
        g.bench_function(format!("{n}_members"), |b| {
            let (mut me, region) = group_with(n);
            let mut now = NOW0;
            b.iter(|| {
                now += 1_000;
                if now % 100_000_000 == 0 {
                    // The others renew their leases (as they would, each in its own process).
                    for s in (0..n).filter(|s| Some(*s) != me.slot()) {
                        region
                            .slot(s, 1)
                            .store(now + 500_000_000, Ordering::Relaxed);
                    }
                }
                if me.tick_due(now) {
                    me.tick(now, [true; 2]);
                }
                let cost = black_box([4096, 1]);
                if me.admits(cost, now) {
                    me.charge(cost, now);
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, admission);
criterion_main!(benches);
