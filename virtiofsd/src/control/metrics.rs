//! `GET /metrics`: the statistics and the limits in the Prometheus text format 0.0.4, encoded
//! by the `prometheus` crate. The family names are [`limits_api::wire::metrics`].
//!
//! Library choice: `prometheus` (TextEncoder, format 0.0.4) rather than `prometheus-client`,
//! whose only text encoder is OpenMetrics (`# TYPE x counter` over `x_total` samples, `# EOF`):
//! served as 0.0.4 its counters parse as untyped series without help (`promtool check metrics`:
//! "virtiofsd_requests_total no help text"), and the 0.0.4 relabelling of `virtiofs-sandbox
//! metrics` would have to learn a second format.

use limits_api::wire::metrics::{
    BYTES_TOTAL, RATELIMIT_BURST, RATELIMIT_LEVEL, RATELIMIT_SIZE, REQUESTS_TOTAL,
    THROTTLE_WAIT_SECONDS,
};
use prometheus::core::Collector;
use prometheus::{GaugeVec, Histogram, HistogramOpts, IntCounterVec, Opts, Registry, TextEncoder};

use crate::control::stats::Stats;
use crate::device::throttle::Limiter;

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

/// The text exposition of `stats` and `limiter`'s buckets.
pub fn encode(stats: &Stats, limiter: &Limiter) -> String {
    let registry = Registry::new();
    let s = stats.snapshot();
    let counter = |name: &str, help: &str, kinds: &[(&str, u64)]| -> Box<dyn Collector> {
        let c = IntCounterVec::new(Opts::new(name, help), &["kind"]).expect("valid counter");
        for (kind, v) in kinds {
            c.with_label_values(&[kind]).inc_by(*v);
        }
        Box::new(c)
    };
    let r = &s.requests;
    let families: Vec<Box<dyn Collector>> = vec![
        counter(
            REQUESTS_TOTAL,
            "FUSE requests served on the request queue, by kind.",
            &[
                ("read", r.read),
                ("write", r.write),
                ("metadata", r.metadata),
            ],
        ),
        counter(
            BYTES_TOTAL,
            "File bytes READs and WRITEs moved (served, not asked for).",
            &[("read", s.bytes.read), ("write", s.bytes.write)],
        ),
        Box::new(stats.wait_histogram().clone()),
    ];
    let gauge = |name: &str, help: &str| {
        GaugeVec::new(Opts::new(name, help), &["bucket"]).expect("valid gauge")
    };
    let size = gauge(
        RATELIMIT_SIZE,
        "Configured refill rate per second (0: unlimited).",
    );
    let burst = gauge(RATELIMIT_BURST, "Configured bucket capacity.");
    let level = gauge(
        RATELIMIT_LEVEL,
        "Tokens in the bucket now (negative while in debt; absent when unlimited).",
    );
    for (b, limit, lvl) in limiter.levels() {
        size.with_label_values(&[b.name()]).set(limit.size as f64);
        burst.with_label_values(&[b.name()]).set(limit.burst as f64);
        if let Some(v) = lvl {
            level.with_label_values(&[b.name()]).set(v as f64);
        }
    }
    let gauges: [Box<dyn Collector>; 3] = [Box::new(size), Box::new(burst), Box::new(level)];
    for c in families.into_iter().chain(gauges) {
        registry.register(c).expect("distinct family names");
    }
    let mut out = String::new();
    if let Err(e) = TextEncoder::new().encode_utf8(&registry.gather(), &mut out) {
        log::warn!("api: encoding /metrics: {e}");
    }
    out
}

#[cfg(test)]
mod tests {
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
