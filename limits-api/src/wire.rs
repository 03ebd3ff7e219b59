//! The control API's wire format: paths, content types, JSON bodies and metric names.
//!
//! - `GET /api/v1/ratelimit` → [`RateLimitView`]; `PUT`/`PATCH` take a [`RateLimitUpdate`]
//!   and answer the new [`RateLimitView`].
//! - `GET /api/v1/stats` → [`StatsView`].
//! - `GET /metrics` → Prometheus text ([`METRICS_CONTENT_TYPE`]) with the families of
//!   [`metrics`].
//! - Any error → its status and an [`ErrorBody`].

use ratelimit::Bucket;
use serde::{Deserialize, Serialize};

/// Path of the rate-limit resource.
pub const RATELIMIT_PATH: &str = "/api/v1/ratelimit";
/// Path of the statistics resource.
pub const STATS_PATH: &str = "/api/v1/stats";
/// Path of the Prometheus metrics.
pub const METRICS_PATH: &str = "/metrics";
/// Content type of the JSON bodies.
pub const JSON_CONTENT_TYPE: &str = "application/json";
/// Content type of `/metrics`: the Prometheus text format 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// One bucket as the API shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketView {
    /// Refill rate per second (0: unlimited).
    pub size: u64,
    /// Capacity.
    pub burst: u64,
    /// Whole tokens now, negative while in debt; `null` when unlimited.
    pub level: Option<i64>,
}

/// Every bucket, by name: the body of `GET /api/v1/ratelimit` and of a PUT/PATCH's answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitView {
    /// READ + WRITE bytes.
    pub bw: BucketView,
    /// READ bytes.
    pub read_bw: BucketView,
    /// WRITE bytes.
    pub write_bw: BucketView,
    /// Requests.
    pub ops: BucketView,
}

impl RateLimitView {
    /// The view of `bucket`.
    pub fn get(&self, bucket: Bucket) -> &BucketView {
        match bucket {
            Bucket::Bw => &self.bw,
            Bucket::ReadBw => &self.read_bw,
            Bucket::WriteBw => &self.write_bw,
            Bucket::Ops => &self.ops,
        }
    }
}

/// One bucket of a PUT/PATCH body; unknown fields are refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketUpdate {
    /// Refill rate per second; 0 removes the limit. Absent: kept (PATCH) or 0 (PUT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Capacity; absent: kept by a PATCH of a limited bucket, else equal to the size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
}

/// A PUT/PATCH body: the buckets given. PATCH leaves the others alone, PUT makes them
/// unlimited. Unknown buckets are refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitUpdate {
    /// READ + WRITE bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bw: Option<BucketUpdate>,
    /// READ bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_bw: Option<BucketUpdate>,
    /// WRITE bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_bw: Option<BucketUpdate>,
    /// Requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops: Option<BucketUpdate>,
}

impl RateLimitUpdate {
    /// Whether no bucket is given.
    pub fn is_empty(&self) -> bool {
        Bucket::ALL.iter().all(|b| self.get(*b).is_none())
    }

    /// The update of `bucket`, if given.
    pub fn get(&self, bucket: Bucket) -> Option<BucketUpdate> {
        match bucket {
            Bucket::Bw => self.bw,
            Bucket::ReadBw => self.read_bw,
            Bucket::WriteBw => self.write_bw,
            Bucket::Ops => self.ops,
        }
    }

    /// The update of `bucket`, for writing.
    pub fn get_mut(&mut self, bucket: Bucket) -> &mut Option<BucketUpdate> {
        match bucket {
            Bucket::Bw => &mut self.bw,
            Bucket::ReadBw => &mut self.read_bw,
            Bucket::WriteBw => &mut self.write_bw,
            Bucket::Ops => &mut self.ops,
        }
    }
}

/// The body of `GET /api/v1/stats`: what the daemon has done since it started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsView {
    /// Seconds since the daemon started.
    pub uptime_seconds: f64,
    /// Requests served on the request queue, by kind.
    pub requests: Requests,
    /// File data moved, by direction.
    pub bytes: Bytes,
    /// Requests that waited for tokens, and how long.
    pub throttled: Throttled,
    /// Per virtqueue: hiprio (0) and request queue 1 always, then every request queue that
    /// has carried a request. Over the request queues they add up to `requests` and `bytes`.
    #[serde(default)]
    pub queues: Vec<QueueStats>,
}

/// What one virtqueue carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    /// The virtqueue index: 0 is hiprio, 1 and up the request queues.
    pub queue: u16,
    /// Requests served from it (on hiprio: FORGET, BATCH_FORGET, INTERRUPT).
    pub requests: u64,
    /// File bytes its READs and WRITEs moved.
    pub bytes: u64,
}

/// Requests served on the request queue, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requests {
    /// READs.
    pub read: u64,
    /// WRITEs.
    pub write: u64,
    /// Every other request.
    pub metadata: u64,
}

/// File bytes READs and WRITEs moved (served, not asked for).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bytes {
    /// Bytes read.
    pub read: u64,
    /// Bytes written.
    pub write: u64,
}

/// Requests that waited for tokens, and how long.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Throttled {
    /// How many waited.
    pub requests: u64,
    /// Their waits added up, in seconds.
    pub wait_seconds_total: f64,
    /// The 99th percentile of the waits since start, in seconds (0 when none waited).
    pub wait_seconds_p99: f64,
}

/// The body of every error answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, naming the field for a bad body.
    pub error: String,
}

/// The metric families of `/metrics`, by their full names (as a sample's name starts).
pub mod metrics {
    /// Counter, label `kind` = `read`, `write`, `metadata`: requests served on the request queue.
    pub const REQUESTS_TOTAL: &str = "virtiofsd_requests_total";
    /// Counter, label `kind` = `read`, `write`: file bytes moved.
    pub const BYTES_TOTAL: &str = "virtiofsd_bytes_total";
    /// Histogram (`_bucket{le}`, `_sum`, `_count`): how long throttled requests waited.
    pub const THROTTLE_WAIT_SECONDS: &str = "virtiofsd_throttle_wait_seconds";
    /// Gauge, label `bucket`: configured refill rate per second (0: unlimited).
    pub const RATELIMIT_SIZE: &str = "virtiofsd_ratelimit_size";
    /// Gauge, label `bucket`: configured capacity.
    pub const RATELIMIT_BURST: &str = "virtiofsd_ratelimit_burst";
    /// Gauge, label `bucket`: tokens now, negative in debt (absent for an unlimited bucket).
    pub const RATELIMIT_LEVEL: &str = "virtiofsd_ratelimit_level";
    /// Counter, label `queue` = the virtqueue index (0: hiprio): requests served from it.
    pub const QUEUE_REQUESTS_TOTAL: &str = "virtiofsd_queue_requests_total";
    /// Counter, label `queue`: file bytes its READs and WRITEs moved.
    pub const QUEUE_BYTES_TOTAL: &str = "virtiofsd_queue_bytes_total";
    /// Gauge, label `bucket` = `bw`, `ops`: the node group's live rate (with `--fs-group`).
    pub const GROUP_SIZE: &str = "virtiofsd_group_size";
    /// Gauge, label `bucket`: tokens in the group's shared bucket now (negative in debt).
    pub const GROUP_LEVEL: &str = "virtiofsd_group_level";
    /// Gauge, label `bucket`: the share of the group this member enforces on itself, per second.
    pub const GROUP_SHARE: &str = "virtiofsd_group_share";
    /// Gauge: this member's weight.
    pub const GROUP_WEIGHT: &str = "virtiofsd_group_weight";
    /// Counter: bytes this member took from the group.
    pub const GROUP_BYTES_TOTAL: &str = "virtiofsd_group_bytes_total";
    /// Counter: this member's requests that waited.
    pub const GROUP_WAITS_TOTAL: &str = "virtiofsd_group_waits_total";
    /// The group families (present only in a member's `/metrics`).
    pub const GROUP_ALL: [&str; 6] = [
        GROUP_SIZE,
        GROUP_LEVEL,
        GROUP_SHARE,
        GROUP_WEIGHT,
        GROUP_BYTES_TOTAL,
        GROUP_WAITS_TOTAL,
    ];
    /// Every family (`/metrics` gives them sorted by name).
    pub const ALL: [&str; 8] = [
        REQUESTS_TOTAL,
        BYTES_TOTAL,
        THROTTLE_WAIT_SECONDS,
        RATELIMIT_SIZE,
        RATELIMIT_BURST,
        RATELIMIT_LEVEL,
        QUEUE_REQUESTS_TOTAL,
        QUEUE_BYTES_TOTAL,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_round_trip_and_refuse_unknown_fields() {
        let u: RateLimitUpdate = serde_json::from_str(r#"{"bw":{"size":2}}"#).unwrap();
        assert_eq!(
            u.bw,
            Some(BucketUpdate {
                size: Some(2),
                burst: None
            })
        );
        assert!(u.ops.is_none() && !u.is_empty());
        assert_eq!(serde_json::to_string(&u).unwrap(), r#"{"bw":{"size":2}}"#);
        assert!(serde_json::from_str::<RateLimitUpdate>(r#"{"bandwidth":{}}"#).is_err());
        assert!(serde_json::from_str::<RateLimitUpdate>(r#"{"bw":{"sise":1}}"#).is_err());
        assert!(serde_json::from_str::<RateLimitUpdate>("{}")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn views_keep_their_field_names() {
        let v = RateLimitView {
            ops: BucketView {
                size: 5,
                burst: 1,
                level: Some(-3),
            },
            ..Default::default()
        };
        let s = serde_json::to_string(&v).unwrap();
        assert!(
            s.contains(r#""ops":{"size":5,"burst":1,"level":-3}"#),
            "{s}"
        );
        assert!(
            s.contains(r#""bw":{"size":0,"burst":0,"level":null}"#),
            "{s}"
        );
        assert_eq!(serde_json::from_str::<RateLimitView>(&s).unwrap(), v);
        let st: StatsView = serde_json::from_str(
            r#"{"uptime_seconds":1.5,"requests":{"read":1,"write":2,"metadata":3},
                "bytes":{"read":4,"write":5},
                "throttled":{"requests":6,"wait_seconds_total":0.5,"wait_seconds_p99":0.25}}"#,
        )
        .unwrap();
        assert_eq!(st.requests.metadata, 3);
        assert!(st.queues.is_empty(), "absent queues parse as none");
        let q = QueueStats {
            queue: 2,
            requests: 7,
            bytes: 4096,
        };
        let text = serde_json::to_string(&q).unwrap();
        assert_eq!(text, r#"{"queue":2,"requests":7,"bytes":4096}"#);
        assert_eq!(st.throttled.wait_seconds_p99, 0.25);
    }
}
