//! The node-group flags and their pod rule.
//!
//! | flag | what | from a pod |
//! |---|---|---|
//! | `--fs-group=PATH` | member of the group whose shared state is PATH | refused |
//! | `--fs-group-bw-size`, `--fs-group-bw-burst` | the group's READ+WRITE bucket (bytes) | refused |
//! | `--fs-group-ops-size`, `--fs-group-ops-burst` | the group's request bucket | refused |
//! | `--fs-weight=N` | the member's share under contention (1..=10000, default 100) | only ≤ the operator's |
//!
//! A pod could throttle every other tenant with a lower group budget, or take more than its
//! share with a higher weight: the budget is the operator's alone, and a pod (a flag after
//! `--pod-args-follow`, or the supervisor's annotation) may only lower its weight.

/// `--fs-group`.
pub const GROUP: &str = "--fs-group";
/// `--fs-weight`.
pub const WEIGHT: &str = "--fs-weight";
/// The group's budget flags, bw size and burst then ops size and burst.
pub const BUDGET_FLAGS: [&str; 4] = [
    "--fs-group-bw-size",
    "--fs-group-bw-burst",
    "--fs-group-ops-size",
    "--fs-group-ops-burst",
];
/// The weight when `--fs-weight` is absent.
pub const DEFAULT_WEIGHT: u64 = 100;
/// The weights a flag may give.
pub const WEIGHT_RANGE: std::ops::RangeInclusive<u64> = 1..=10_000;

/// Whether `name` (with its dashes, without a value) is `--fs-group` or a budget flag: what a
/// pod may never give.
pub fn is_operator_only(name: &str) -> bool {
    name == GROUP || BUDGET_FLAGS.contains(&name)
}

/// Why a pod's weight was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightAbove {
    /// The operator's weight (its flag, or the default).
    pub operator: u64,
    /// The pod's.
    pub pod: u64,
}

impl std::fmt::Display for WeightAbove {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{WEIGHT}={} is above the operator's {}: a pod may only lower its weight",
            self.pod, self.operator
        )
    }
}

/// The only-lower rule for the weight: `pod` applies if it is at most `operator`.
pub fn check_weight(operator: u64, pod: u64) -> Result<u64, WeightAbove> {
    if pod <= operator {
        Ok(pod)
    } else {
        Err(WeightAbove { operator, pod })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_may_only_lower_its_weight() {
        assert_eq!(check_weight(100, 50), Ok(50));
        assert_eq!(check_weight(100, 100), Ok(100));
        let e = check_weight(100, 101).unwrap_err();
        assert!(e
            .to_string()
            .contains("--fs-weight=101 is above the operator's 100"));
        assert!(is_operator_only("--fs-group"));
        assert!(is_operator_only("--fs-group-ops-burst"));
        assert!(!is_operator_only("--fs-weight") && !is_operator_only("--fs-bw-size"));
    }
}

/// The path of the group endpoint: `GET` shows the group, `PATCH` changes its live budget
/// (for every member) or this member's weight.
pub const GROUP_PATH: &str = "/api/v1/group";

/// `GET /api/v1/group` (and a PATCH's answer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupView {
    /// The group's live bw bucket, with the shared level.
    pub bw: crate::wire::BucketView,
    /// The group's live ops bucket, with the shared level.
    pub ops: crate::wire::BucketView,
    /// This member's weight.
    pub weight: u64,
    /// The bw share this member enforces on itself (bytes/s; 0: bucket not limited).
    pub share_bw: u64,
    /// The ops share this member enforces on itself (requests/s).
    pub share_ops: u64,
    /// The slot it holds (absent while it has had no demand).
    pub slot: Option<u64>,
    /// Bytes admitted by this member.
    pub bytes: u64,
    /// Requests that waited.
    pub waits: u64,
}

/// A `PATCH /api/v1/group` body; unknown fields are refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupUpdate {
    /// The group's bw bucket (size 0 is refused: a group bucket cannot be removed live).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bw: Option<crate::wire::BucketUpdate>,
    /// The group's ops bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops: Option<crate::wire::BucketUpdate>,
    /// This member's weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u64>,
}
