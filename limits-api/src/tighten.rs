//! The only-tighten rule: a pod's rate-limit value applies only if it is no looser than the
//! operator's.
//!
//! For a bucket the operator limited (a non-zero size): a pod size must be non-zero (0 would
//! remove the limit) and at most the operator's size; a pod burst must be at most the
//! operator's burst, or the operator's size when the operator gave no burst. A bucket the
//! operator left unlimited, the pod may limit as it likes. Refused values are refused, never
//! clamped. The daemon applies it to what follows `--pod-args-follow`, the supervisor to the
//! `virtio_fs_extra_args` annotation.

use ratelimit::Bucket;

use crate::flags::{stem, Field, Flag, LimitFlags, RateLimits};

/// How a pod value would loosen the operator's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loosening {
    /// A size of 0 where the operator set a limit of `operator_size`.
    RemovesLimit {
        /// The operator's size.
        operator_size: u64,
    },
    /// A size above the operator's `operator_size`.
    SizeAbove {
        /// The operator's size.
        operator_size: u64,
    },
    /// A burst above the operator's effective burst.
    BurstAbove {
        /// The operator's burst (its size when it gave none).
        operator_burst: u64,
    },
}

/// Checks a pod's `value` for `field` of a bucket against the operator's flags for it.
pub fn check(operator: LimitFlags, field: Field, value: u64) -> Result<(), Loosening> {
    if !operator.is_limited() {
        return Ok(());
    }
    let operator_size = operator.rate();
    match field {
        Field::Size if value == 0 => Err(Loosening::RemovesLimit { operator_size }),
        Field::Size if value > operator_size => Err(Loosening::SizeAbove { operator_size }),
        Field::Burst if value > operator.effective_burst() => Err(Loosening::BurstAbove {
            operator_burst: operator.effective_burst(),
        }),
        _ => Ok(()),
    }
}

/// A pod value refused by [`apply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The flag.
    pub flag: &'static Flag,
    /// The pod's value.
    pub value: u64,
    /// How it would loosen the operator's limit.
    pub loosening: Loosening,
}

impl Refusal {
    /// The refused argument, `--flag=value`.
    pub fn token(&self) -> String {
        format!("{}={}", self.flag, self.value)
    }

    /// Why, naming the operator's value, e.g. `it is above the operator's --fs-bw-size=10`.
    pub fn reason(&self) -> String {
        let stem = stem(self.flag.bucket);
        match self.loosening {
            Loosening::RemovesLimit { operator_size } => {
                format!("it would remove the operator's limit --fs-{stem}-size={operator_size}")
            }
            Loosening::SizeAbove { operator_size } => {
                format!("it is above the operator's --fs-{stem}-size={operator_size}")
            }
            Loosening::BurstAbove { operator_burst } => {
                format!("it is above the operator's burst {operator_burst} (--fs-{stem}-burst)")
            }
        }
    }
}

/// The operator's flags with the pod's applied, each checked by [`check`] (bucket by bucket,
/// size before burst; the first refusal is returned). A pod size of 0 where the operator set
/// none changes nothing (the bucket stays unlimited).
pub fn apply(operator: &RateLimits, pod: &RateLimits) -> Result<RateLimits, Refusal> {
    let mut out = *operator;
    for bucket in Bucket::ALL {
        let op = operator.get(bucket);
        for field in [Field::Size, Field::Burst] {
            let Some(value) = pod.get(bucket).get(field) else {
                continue;
            };
            let flag = Flag::of(bucket, field);
            check(op, field, value).map_err(|loosening| Refusal {
                flag,
                value,
                loosening,
            })?;
            if field == Field::Burst || value != 0 {
                out.set(flag, value);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OP: LimitFlags = LimitFlags {
        size: Some(10_000_000),
        burst: Some(20_000_000),
    };

    #[test]
    fn a_limited_bucket_only_tightens() {
        assert_eq!(
            check(OP, Field::Size, 10_000_000),
            Ok(()),
            "equal is no looser"
        );
        assert_eq!(check(OP, Field::Size, 1), Ok(()));
        assert_eq!(
            check(OP, Field::Size, 10_000_001),
            Err(Loosening::SizeAbove {
                operator_size: 10_000_000
            })
        );
        assert_eq!(
            check(OP, Field::Size, 0),
            Err(Loosening::RemovesLimit {
                operator_size: 10_000_000
            })
        );
        assert_eq!(check(OP, Field::Burst, 20_000_000), Ok(()));
        assert_eq!(
            check(OP, Field::Burst, 20_000_001),
            Err(Loosening::BurstAbove {
                operator_burst: 20_000_000
            })
        );
    }

    #[test]
    fn the_operator_s_burst_defaults_to_its_size() {
        let op = LimitFlags {
            size: Some(100),
            burst: None,
        };
        assert_eq!(check(op, Field::Burst, 100), Ok(()));
        assert_eq!(
            check(op, Field::Burst, 101),
            Err(Loosening::BurstAbove {
                operator_burst: 100
            })
        );
    }

    #[test]
    fn an_unlimited_bucket_takes_any_pod_value() {
        for op in [
            LimitFlags::default(),
            LimitFlags {
                size: Some(0),
                burst: None,
            },
        ] {
            for field in [Field::Size, Field::Burst] {
                for v in [0, 1, u64::MAX] {
                    assert_eq!(check(op, field, v), Ok(()), "{op:?} {field:?} {v}");
                }
            }
        }
    }

    #[test]
    fn apply_merges_and_names_the_first_refusal() {
        let operator = RateLimits {
            bw: OP,
            ..Default::default()
        };
        let mut pod = RateLimits::default();
        pod.set(Flag::of(Bucket::Bw, Field::Size), 5_000_000);
        pod.set(Flag::of(Bucket::Ops, Field::Size), 100);
        pod.set(Flag::of(Bucket::Ops, Field::Burst), 10);
        pod.set(Flag::of(Bucket::ReadBw, Field::Size), 0);
        let out = apply(&operator, &pod).unwrap();
        assert_eq!(out.bw.size, Some(5_000_000));
        assert_eq!(out.bw.burst, Some(20_000_000), "the operator's burst stays");
        assert_eq!(out.ops.size, Some(100));
        assert_eq!(out.ops.burst, Some(10));
        assert_eq!(
            out.read_bw.size, None,
            "a pod 0 on an unlimited bucket changes nothing"
        );

        pod.set(Flag::of(Bucket::Bw, Field::Burst), 30_000_000);
        let r = apply(&operator, &pod).unwrap_err();
        assert_eq!(r.token(), "--fs-bw-burst=30000000");
        assert_eq!(
            r.reason(),
            "it is above the operator's burst 20000000 (--fs-bw-burst)"
        );
        pod.set(Flag::of(Bucket::Bw, Field::Size), 0);
        let r = apply(&operator, &pod).unwrap_err();
        assert_eq!(r.token(), "--fs-bw-size=0", "size is judged before burst");
        assert_eq!(
            r.reason(),
            "it would remove the operator's limit --fs-bw-size=10000000"
        );
        pod.set(Flag::of(Bucket::Bw, Field::Size), 20_000_000);
        let r = apply(&operator, &pod).unwrap_err();
        assert_eq!(
            r.reason(),
            "it is above the operator's --fs-bw-size=10000000"
        );
    }
}
