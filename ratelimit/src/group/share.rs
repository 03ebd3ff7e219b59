//! Weighted max-min sharing ("water filling"): the capacity is split in proportion to the
//! weights, except that a member wanting less than its proportion gets what it wants and the
//! rest is split among the others, again by weight, until nothing is left or everyone is served.
//!
//! Pure arithmetic on at most [`crate::group::SLOTS`] entries: bounded whatever the inputs.

/// Weights are clamped to this range.
pub const WEIGHT_RANGE: (u64, u64) = (1, 10_000);

/// One member's published values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// Weight (clamped to [`WEIGHT_RANGE`]).
    pub weight: u64,
    /// Units per second it wants (`u64::MAX`: as much as it can get).
    pub demand: u64,
}

/// The shares of `claims` in `capacity` units/s, in the same order. Work-conserving: the
/// shares sum to `min(capacity, Σ demand)` (up to rounding down, less than one unit per
/// member); no share exceeds its demand; among members whose demand is not met, shares are
/// proportional to the weights (up to that rounding).
pub fn max_min(capacity: u64, claims: &[Claim]) -> Vec<u64> {
    let n = claims.len();
    let mut share = vec![0u64; n];
    let w = |i: usize| claims[i].weight.clamp(WEIGHT_RANGE.0, WEIGHT_RANGE.1) as u128;
    // Order by demand per unit of weight: the least hungry are filled first.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_unstable_by(|&a, &b| {
        (claims[a].demand as u128 * w(b)).cmp(&(claims[b].demand as u128 * w(a)))
    });
    let mut left = capacity as u128;
    let mut weight_left: u128 = (0..n).map(w).sum();
    for &i in &order {
        if weight_left == 0 {
            break;
        }
        let fair = left * w(i) / weight_left;
        let s = fair.min(claims[i].demand as u128);
        share[i] = s as u64;
        left -= s;
        weight_left -= w(i);
    }
    share
}

/// The share member `me` (index into `claims`) should enforce on itself: its max-min share
/// as if it wanted everything. It grows to that at once when its demand grows; the others
/// follow when they see its published demand.
pub fn own_share(capacity: u64, claims: &mut [Claim], me: usize) -> u64 {
    let Some(c) = claims.get_mut(me) else {
        return capacity;
    };
    let published = c.demand;
    c.demand = u64::MAX;
    let s = max_min(capacity, claims)[me];
    claims[me].demand = published;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(weight: u64, demand: u64) -> Claim {
        Claim { weight, demand }
    }

    #[test]
    fn proportional_when_all_backlogged() {
        let s = max_min(400, &[c(1, u64::MAX), c(1, u64::MAX), c(2, u64::MAX)]);
        assert_eq!(s, vec![100, 100, 200]);
    }

    #[test]
    fn the_unused_rest_goes_to_the_others() {
        let s = max_min(400, &[c(1, 10), c(1, u64::MAX), c(2, u64::MAX)]);
        assert_eq!(s, vec![10, 130, 260]);
        assert_eq!(max_min(400, &[c(100, u64::MAX)]), vec![400]);
        assert_eq!(max_min(400, &[c(1, 5), c(1, 5)]), vec![5, 5]);
    }

    #[test]
    fn own_share_assumes_it_wants_everything() {
        let mut claims = [c(1, 0), c(1, u64::MAX)];
        assert_eq!(own_share(100, &mut claims, 0), 50);
        assert_eq!(claims[0].demand, 0, "published demand kept");
        assert_eq!(own_share(100, &mut [c(1, 0)], 0), 100);
    }
}
