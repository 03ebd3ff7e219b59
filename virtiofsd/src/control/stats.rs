//! Counters since start, for the API's `/api/v1/stats` and `/metrics`.
//!
//! Lock-free: a served request costs two relaxed atomic additions. A throttle wait is observed
//! into the Prometheus histogram of `/metrics` (which also holds the count and total) and into
//! a finer log-linear one (8 steps per power of two of microseconds, ≤ 9 % error) for the p99.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use limits_api::wire::metrics::THROTTLE_WAIT_SECONDS;
use limits_api::wire::{Bytes, QueueStats, Requests, StatsView, Throttled};
use prometheus::{Histogram, HistogramOpts};

use crate::config::MAX_REQUEST_QUEUES;
use crate::fuse::request::Cost;

const SUB: u32 = 8; // steps per octave
const BUCKETS: usize = 64 * SUB as usize;

/// Upper bounds of the throttle wait histogram, in seconds: 100 µs doubling to 13 s (and +Inf).
fn wait_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(1e-4, 2.0, 18).expect("valid bucket parameters")
}

/// The histogram [`Stats::record_wait`] observes every throttle wait into.
pub fn wait_histogram() -> Histogram {
    let opts = HistogramOpts::new(
        THROTTLE_WAIT_SECONDS,
        "Time throttled requests waited for rate-limit tokens.",
    )
    .buckets(wait_buckets());
    Histogram::with_opts(opts).expect("valid histogram options")
}

/// What the daemon has done since it started.
pub struct Stats {
    start: Instant,
    requests: [AtomicU64; 3],
    bytes: [AtomicU64; 2],
    /// Per virtqueue (hiprio and every request queue the device can have): requests, bytes.
    queues: Box<[[AtomicU64; 2]]>,
    /// Every wait, for `/metrics`, and their count and sum for both endpoints.
    wait_histogram: Histogram,
    waits: Box<[AtomicU64]>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            start: Instant::now(),
            requests: Default::default(),
            bytes: Default::default(),
            queues: (0..=MAX_REQUEST_QUEUES)
                .map(|_| Default::default())
                .collect(),
            wait_histogram: wait_histogram(),
            waits: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// Histogram bucket of a wait in microseconds: octave × 8 + the next three bits.
fn bucket(us: u64) -> usize {
    if us < u64::from(SUB) {
        return us as usize;
    }
    let octave = 63 - us.leading_zeros(); // ≥ 3
    let step = (us >> (octave - 3)) & 7;
    ((octave - 2) * SUB + step as u32) as usize
}

/// Upper bound (µs) of a bucket.
fn bucket_top(i: usize) -> u64 {
    if i < SUB as usize {
        return i as u64 + 1;
    }
    let octave = i as u32 / SUB + 2;
    let step = i as u64 % u64::from(SUB);
    ((8 + step + 1) << (octave - 3)).saturating_sub(1).max(1)
}

impl Stats {
    /// Counts one request served from virtqueue `queue`, of the kind `cost` says, that moved
    /// `bytes` bytes of file data (what was served, not what was asked for).
    pub fn record(&self, queue: u16, cost: Cost, bytes: u64) {
        if let Some([requests, moved]) = self.queues.get(usize::from(queue)) {
            requests.fetch_add(1, Relaxed);
            moved.fetch_add(bytes, Relaxed);
        }
        match cost {
            Cost::Read(_) => {
                self.requests[0].fetch_add(1, Relaxed);
                self.bytes[0].fetch_add(bytes, Relaxed);
            }
            Cost::Write(_) => {
                self.requests[1].fetch_add(1, Relaxed);
                self.bytes[1].fetch_add(bytes, Relaxed);
            }
            Cost::Other => {
                self.requests[2].fetch_add(1, Relaxed);
            }
            Cost::Free => {}
        }
    }

    /// Counts one request that waited `wait` for its tokens.
    pub fn record_wait(&self, wait: Duration) {
        self.wait_histogram.observe(wait.as_secs_f64());
        let us = u64::try_from(wait.as_micros()).unwrap_or(u64::MAX);
        self.waits[bucket(us).min(BUCKETS - 1)].fetch_add(1, Relaxed);
    }

    /// The 99th percentile of throttle waits (0 when nothing waited).
    fn wait_p99(&self) -> Duration {
        let counts: Vec<u64> = self.waits.iter().map(|c| c.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return Duration::ZERO;
        }
        let rank = total - total / 100; // at least 99 % at or below
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Duration::from_micros(bucket_top(i));
            }
        }
        Duration::ZERO
    }

    /// The throttle waits, as `/metrics` encodes them.
    pub fn wait_histogram(&self) -> &Histogram {
        &self.wait_histogram
    }

    /// A copy of every counter.
    pub fn snapshot(&self) -> StatsView {
        StatsView {
            uptime_seconds: self.start.elapsed().as_secs_f64(),
            requests: Requests {
                read: self.requests[0].load(Relaxed),
                write: self.requests[1].load(Relaxed),
                metadata: self.requests[2].load(Relaxed),
            },
            bytes: Bytes {
                read: self.bytes[0].load(Relaxed),
                write: self.bytes[1].load(Relaxed),
            },
            throttled: Throttled {
                requests: self.wait_histogram.get_sample_count(),
                wait_seconds_total: self.wait_histogram.get_sample_sum(),
                wait_seconds_p99: self.wait_p99().as_secs_f64(),
            },
            queues: self.queues(),
        }
    }

    /// Queues 0 and 1, then every queue that has carried a request (in index order).
    fn queues(&self) -> Vec<QueueStats> {
        self.queues
            .iter()
            .enumerate()
            .map(|(i, [r, b])| QueueStats {
                queue: i as u16,
                requests: r.load(Relaxed),
                bytes: b.load(Relaxed),
            })
            .filter(|q| q.queue <= 1 || q.requests > 0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_bound_their_values() {
        let mut last = 0;
        for us in [0u64, 1, 7, 8, 9, 15, 16, 100, 1000, 499_999, 1 << 40] {
            let b = bucket(us);
            assert!(b >= last, "bucket({us}) = {b} < {last}");
            last = b;
            assert!(
                bucket_top(b) >= us,
                "top of bucket({us}) = {} < {us}",
                bucket_top(b)
            );
            assert!(
                bucket_top(b) as f64 <= us as f64 * 1.13 + 1.0,
                "bucket({us}) too coarse"
            );
        }
    }

    #[test]
    fn counts_requests_bytes_and_p99() {
        let s = Stats::default();
        s.record(1, Cost::Read(8192), 4096); // a short read: what moved counts
        s.record(3, Cost::Write(10), 10);
        s.record(1, Cost::Write(20), 20);
        s.record(1, Cost::Other, 0);
        s.record(0, Cost::Free, 0);
        for _ in 0..99 {
            s.record_wait(Duration::from_millis(1));
        }
        s.record_wait(Duration::from_millis(500));
        let snap = s.snapshot();
        assert_eq!(
            snap.requests,
            Requests {
                read: 1,
                write: 2,
                metadata: 1
            }
        );
        assert_eq!(
            snap.bytes,
            Bytes {
                read: 4096,
                write: 30
            }
        );
        let q = |queue, requests, bytes| QueueStats {
            queue,
            requests,
            bytes,
        };
        assert_eq!(
            snap.queues,
            vec![q(0, 1, 0), q(1, 3, 4116), q(3, 1, 10)],
            "queue 2 carried nothing and is left out"
        );
        assert_eq!(snap.throttled.requests, 100);
        assert!((snap.throttled.wait_seconds_total - 0.599).abs() < 1e-9);
        let p99 = snap.throttled.wait_seconds_p99;
        assert!((0.001..0.0012).contains(&p99), "p99 {p99}");
    }
}

#[cfg(test)]
mod histogram_tests {
    use super::*;

    #[test]
    fn waits_land_in_their_buckets() {
        let h = wait_histogram();
        for ms in [1, 1, 3, 500] {
            h.observe(f64::from(ms) / 1000.0);
        }
        let b = wait_buckets();
        assert_eq!(b.first(), Some(&1e-4));
        assert!(b.last().unwrap() > &10.0, "{b:?}");
        assert_eq!(h.get_sample_count(), 4);
        assert!((h.get_sample_sum() - 0.505).abs() < 1e-9);
    }
}
