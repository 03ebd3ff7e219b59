//! `/api/v1/group`: the node group as this member sees it, and live changes of the group's
//! budget (for every member at once) or of this member's weight; and the group's families of
//! `/metrics`.

use limits_api::group::{GroupUpdate, GroupView};
use limits_api::wire::metrics::{
    GROUP_BYTES_TOTAL, GROUP_LEVEL, GROUP_SHARE, GROUP_SIZE, GROUP_WAITS_TOTAL, GROUP_WEIGHT,
};
use limits_api::wire::BucketView;
use prometheus::core::Collector;
use prometheus::{Gauge, GaugeVec, IntCounter, Opts};
use ratelimit::group::Budget;
use ratelimit::Limit;

use crate::device::group::Group;
use crate::device::throttle::Limiter;

/// The group's view, or None when the daemon is in no group.
pub fn view(limiter: &Limiter) -> Option<GroupView> {
    limiter.with_group(|g| group_view(g))
}

fn group_view(g: &Group) -> GroupView {
    let b = g.budget();
    let [lbw, lops] = g.levels();
    let v = |l: Limit, level: Option<i64>| BucketView {
        size: l.size,
        burst: l.burst,
        level,
    };
    let [share_bw, share_ops] = g.member.shares();
    let t = g.member.totals();
    GroupView {
        bw: v(b.bw, lbw.1),
        ops: v(b.ops, lops.1),
        weight: g.member.weight(),
        share_bw,
        share_ops,
        slot: g.member.slot().map(|s| s as u64),
        bytes: t[0],
        waits: t[2],
    }
}

/// Applies a PATCH body; an error names the field.
pub fn patch(limiter: &Limiter, body: &[u8]) -> Result<Option<GroupView>, String> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let u: GroupUpdate = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        match path.as_str() {
            "." | "" => e.inner().to_string(),
            _ => format!("{path}: {}", e.inner()),
        }
    })?;
    if let Some(w) = u.weight {
        if !limits_api::group::WEIGHT_RANGE.contains(&w) {
            return Err(format!("weight: {w} is not in 1..=10000"));
        }
    }
    let bucket = |name: &str, u: Option<limits_api::wire::BucketUpdate>, cur: Limit| {
        let Some(u) = u else { return Ok(cur) };
        let size = u.size.unwrap_or(cur.size);
        let burst = u
            .burst
            .unwrap_or(if u.size.is_some() { size } else { cur.burst });
        match (size, burst) {
            (0, _) if !cur.is_unlimited() => Err(format!(
                "{name}.size: a group bucket cannot be removed live"
            )),
            (0, _) => Err(format!("{name}: the group was created without this bucket")),
            (_, 0) => Err(format!("{name}.burst must be greater than 0")),
            _ if cur.is_unlimited() => {
                Err(format!("{name}: the group was created without this bucket"))
            }
            _ => Ok(Limit::with_burst(size, burst)),
        }
    };
    limiter
        .with_group(|g| {
            let cur = g.budget();
            let new = Budget {
                bw: bucket("bw", u.bw, cur.bw)?,
                ops: bucket("ops", u.ops, cur.ops)?,
            };
            if !g.member.believes(&new) {
                return Err(format!(
                    "{}: every value must be within 1/{f}..{f} times the group's creation value",
                    ratelimit::group::file::show(&new),
                    f = ratelimit::group::LIVE_FACTOR
                ));
            }
            if new != cur {
                g.set_budget(new);
                log::info!(
                    "group budget changed: {}",
                    ratelimit::group::file::show(&new)
                );
            }
            if let Some(w) = u.weight {
                g.member.set_weight(w);
            }
            Ok(group_view(g))
        })
        .transpose()
}

/// The group's metric families for `/metrics` (none outside a group).
pub fn collectors(limiter: &Limiter) -> Vec<Box<dyn Collector>> {
    let Some(v) = view(limiter) else {
        return Vec::new();
    };
    let gauge = |name: &str, help: &str| {
        GaugeVec::new(Opts::new(name, help), &["bucket"]).expect("valid gauge")
    };
    let size = gauge(GROUP_SIZE, "The node group's live rate per second.");
    let level = gauge(
        GROUP_LEVEL,
        "Tokens in the group's shared bucket (negative in debt).",
    );
    let share = gauge(GROUP_SHARE, "This member's share of the group, per second.");
    for (b, bv, sh) in [("bw", v.bw, v.share_bw), ("ops", v.ops, v.share_ops)] {
        if bv.size == 0 {
            continue;
        }
        size.with_label_values(&[b]).set(bv.size as f64);
        share.with_label_values(&[b]).set(sh as f64);
        if let Some(l) = bv.level {
            level.with_label_values(&[b]).set(l as f64);
        }
    }
    let weight = Gauge::new(GROUP_WEIGHT, "This member's weight in the group.").expect("gauge");
    weight.set(v.weight as f64);
    let bytes = IntCounter::new(GROUP_BYTES_TOTAL, "Bytes this member took from the group.")
        .expect("counter");
    bytes.inc_by(v.bytes);
    let waits =
        IntCounter::new(GROUP_WAITS_TOTAL, "This member's requests that waited.").expect("counter");
    waits.inc_by(v.waits);
    vec![
        Box::new(size),
        Box::new(level),
        Box::new(share),
        Box::new(weight),
        Box::new(bytes),
        Box::new(waits),
    ]
}
