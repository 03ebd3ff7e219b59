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
        assert!(e.to_string().contains("--fs-weight=101 is above the operator's 100"));
        assert!(is_operator_only("--fs-group"));
        assert!(is_operator_only("--fs-group-ops-burst"));
        assert!(!is_operator_only("--fs-weight") && !is_operator_only("--fs-bw-size"));
    }
}
