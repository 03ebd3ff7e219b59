//! `GET /metrics`: the statistics and the limits in the Prometheus text format 0.0.4, encoded
//! by the `prometheus` crate. The family names are [`limits_api::wire::metrics`].
//!
//! Library choice: `prometheus` (TextEncoder, format 0.0.4) rather than `prometheus-client`,
//! whose only text encoder is OpenMetrics (`# TYPE x counter` over `x_total` samples, `# EOF`):
//! served as 0.0.4 its counters parse as untyped series without help (`promtool check metrics`:
//! "virtiofsd_requests_total no help text"), and the 0.0.4 relabelling of `virtiofs-sandbox
//! metrics` would have to learn a second format.

use limits_api::wire::metrics::{
    BYTES_TOTAL, QUEUE_BYTES_TOTAL, QUEUE_REQUESTS_TOTAL, RATELIMIT_BURST, RATELIMIT_LEVEL,
    RATELIMIT_SIZE, REQUESTS_TOTAL,
};
use prometheus::core::Collector;
use prometheus::{GaugeVec, IntCounterVec, Opts, Registry, TextEncoder};

use crate::control::stats::Stats;
use crate::device::throttle::Limiter;

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
        per_queue(
            QUEUE_REQUESTS_TOTAL,
            "Requests served, by virtqueue (0: hiprio).",
            s.queues.iter().map(|q| (q.queue, q.requests)),
        ),
        per_queue(
            QUEUE_BYTES_TOTAL,
            "File bytes READs and WRITEs moved, by virtqueue.",
            s.queues.iter().map(|q| (q.queue, q.bytes)),
        ),
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
    let group = crate::control::group_api::collectors(limiter);
    for c in families.into_iter().chain(gauges).chain(group) {
        registry.register(c).expect("distinct family names");
    }
    let mut out = String::new();
    if let Err(e) = TextEncoder::new().encode_utf8(&registry.gather(), &mut out) {
        log::warn!("api: encoding /metrics: {e}");
    }
    out
}

/// A counter family labelled `queue`, one series per (queue, value).
fn per_queue(
    name: &str,
    help: &str,
    values: impl Iterator<Item = (u16, u64)>,
) -> Box<dyn Collector> {
    let c = IntCounterVec::new(Opts::new(name, help), &["queue"]).expect("valid counter");
    for (q, v) in values {
        c.with_label_values(&[&q.to_string()]).inc_by(v);
    }
    Box::new(c)
}
