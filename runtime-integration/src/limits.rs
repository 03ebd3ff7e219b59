//! The daemon's rate-limit flags as this crate handles them. The `--fs-*` flag table, the
//! operator's limits read from an argument list (last flag wins) and the only-tighten rule are
//! the shared `limits-api` crate's ([`limits_api::FLAGS`], [`RateLimits::from_args`],
//! [`limits_api::tighten::check`]); this module adds what a pod annotation needs on top: its
//! JSON list of flags, and the rule applied to *every* flag a pod gives (a later lower value
//! does not excuse an earlier higher one), with messages naming the flag and the operator's
//! value.
//!
//! The configuration (checking the operator's `virtio_fs_extra_args`) and the annotations
//! (checking a pod's) use it; it uses neither.

use limits_api::tighten::{self, Loosening};
use limits_api::Field;
pub use limits_api::{Flag, LimitFlags, RateLimits, FLAGS};

/// One validated pod rate-limit flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodFlag {
    /// The flag.
    pub flag: &'static Flag,
    /// The value as written, e.g. `5M`.
    pub raw: String,
    /// The parsed value.
    pub value: u64,
}

impl PodFlag {
    /// The normalised `--flag=value` argument.
    pub fn arg(&self) -> String {
        format!("{}={}", self.flag, self.raw)
    }
}

/// Parses a `virtio_fs_extra_args` annotation value: a JSON array of rate-limit flags only.
/// Errors are plain messages (the caller names the annotation).
pub fn parse_pod_extra_args(json: &str) -> std::result::Result<Vec<PodFlag>, String> {
    let args: Vec<String> = serde_json::from_str(json)
        .map_err(|e| format!("not a JSON array of strings ({e}): {json}"))?;
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (name, value) = match a.split_once('=') {
            Some((f, v)) => (f, Some(v.to_string())),
            None => (a.as_str(), None),
        };
        let Some(flag) = Flag::find(name) else {
            let names: Vec<&str> = FLAGS.iter().map(|f| f.name).collect();
            return Err(format!(
                "{a:?} is not allowed: a pod may only set the rate-limit flags {}",
                names.join(", ")
            ));
        };
        let raw = match value {
            Some(v) => v,
            None => match it.next() {
                Some(v) if !v.starts_with('-') => v.clone(),
                _ => return Err(format!("{flag} needs a value (\"{flag}=N\")")),
            },
        };
        let value = ratelimit::parse_quantity(&raw).map_err(|e| format!("{flag}={raw}: {e}"))?;
        out.push(PodFlag { flag, raw, value });
    }
    Ok(out)
}

/// Checks that every one of `pod`'s flags only tightens `operator`
/// ([`limits_api::tighten::check`]), and that a pod burst is non-zero and has a size. Plain
/// message on failure.
pub fn check_tightening(operator: &RateLimits, pod: &[PodFlag]) -> std::result::Result<(), String> {
    let mut merged = *operator;
    for p in pod {
        merged.set(p.flag, p.value);
    }
    for p in pod {
        let stem = limits_api::flags::stem(p.flag.bucket);
        let op = operator.get(p.flag.bucket);
        let arg = p.arg();
        if p.flag.field == Field::Burst && p.value == 0 {
            return Err(format!("{arg}: a burst must be greater than 0"));
        }
        tighten::check(op, p.flag.field, p.value).map_err(|l| match l {
            Loosening::RemovesLimit { operator_size } => format!(
                "{arg} would remove the operator's limit (--fs-{stem}-size={operator_size}); a pod may only tighten it"
            ),
            Loosening::SizeAbove { operator_size } => format!(
                "{arg} is above the operator's limit --fs-{stem}-size={operator_size}; a pod may only tighten it"
            ),
            Loosening::BurstAbove { operator_burst } => format!(
                "{arg} is above the operator's burst ({operator_burst}); a pod may only tighten it"
            ),
        })?;
        if p.flag.field == Field::Burst
            && !op.is_limited()
            && !merged.get(p.flag.bucket).is_limited()
        {
            return Err(format!("{arg} needs a non-zero --fs-{stem}-size"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_limits_last_wins() {
        let l = RateLimits::from_args(&[
            "--fs-bw-size=1M",
            "--xattr",
            "--fs-bw-size",
            "2Ki",
            "--fs-ops-burst=3",
        ])
        .unwrap();
        assert_eq!(l.bw.size, Some(2048));
        assert_eq!(l.ops.burst, Some(3));
        assert!(RateLimits::from_args(&["--fs-bw-size"]).is_err());
    }
}
