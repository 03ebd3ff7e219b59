//! Helpers shared by the property tests: what a request costs, and the window bound check.
// Each test binary uses only part of this module.
#![allow(dead_code)]

use std::time::Duration;

use ratelimit::{Bucket, Class, Cost, Nanos};

/// Unit·ns per unit.
pub const NS: u128 = 1_000_000_000;

/// What the daemon charges a request of `class` moving `n` bytes: the bytes in `bw` and in the
/// direction's bucket, and one op (metadata pays the op only).
pub fn cost(class: Class, n: u64) -> Cost {
    match class {
        Class::Read => Cost::new()
            .with(Bucket::ReadBw, n)
            .with(Bucket::Bw, n)
            .with(Bucket::Ops, 1),
        Class::Write => Cost::new()
            .with(Bucket::WriteBw, n)
            .with(Bucket::Bw, n)
            .with(Bucket::Ops, 1),
        Class::Other => Cost::new().with(Bucket::Ops, 1),
    }
}

/// The first window `[t_i, t_j]` of `events` (admission instant and units, in time order) that
/// admitted more than `slack + size·T` (`slack` in unit·ns, exact): its units and length `T`.
/// `None` when every window keeps the bound.
pub fn window_excess(events: &[(Nanos, u128)], size: u64, slack: u128) -> Option<(u128, Duration)> {
    for (i, first) in events.iter().enumerate() {
        let mut sum = 0u128;
        for e in &events[i..] {
            sum += e.1;
            let t = e.0 - first.0;
            if sum * NS > slack + size as u128 * t.as_nanos() {
                return Some((sum, t));
            }
        }
    }
    None
}
