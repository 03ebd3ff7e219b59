//! The daemon's rate-limit flags as this crate handles them: the `--fs-*` flag table, the
//! operator's limits read from an argument list (last flag wins, as the daemon's parser), a
//! pod's `--fs-*` flags, and the rule that a pod may only *tighten* the operator's limits.
//!
//! The configuration (checking the operator's `virtio_fs_extra_args`) and the annotations
//! (checking a pod's) use it; it uses neither.

use serde::Serialize;

/// The daemon's rate-limit flags a pod may set.
pub const RATE_LIMIT_FLAGS: [&str; 8] = [
    "--fs-bw-size",
    "--fs-bw-burst",
    "--fs-read-bw-size",
    "--fs-read-bw-burst",
    "--fs-write-bw-size",
    "--fs-write-bw-burst",
    "--fs-ops-size",
    "--fs-ops-burst",
];

/// One bucket's settings as given on a command line (`None`: flag absent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LimitFlags {
    /// `--fs-<kind>-size` (0 = unlimited).
    pub size: Option<u64>,
    /// `--fs-<kind>-burst`.
    pub burst: Option<u64>,
}

impl LimitFlags {
    /// The sustained rate (0 = unlimited).
    pub fn rate(&self) -> u64 {
        self.size.unwrap_or(0)
    }

    /// The effective bucket capacity, as the daemon computes it (burst, else the size).
    pub fn effective_burst(&self) -> u64 {
        self.burst.unwrap_or(self.rate())
    }
}

/// The four buckets' flags, last occurrence winning (like the daemon's clap parser).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RateLimits {
    /// `--fs-bw-*`
    pub bw: LimitFlags,
    /// `--fs-read-bw-*`
    pub read_bw: LimitFlags,
    /// `--fs-write-bw-*`
    pub write_bw: LimitFlags,
    /// `--fs-ops-*`
    pub ops: LimitFlags,
}

/// Which bucket a flag configures and whether it is the size or the burst.
fn flag_slot<'a>(limits: &'a mut RateLimits, flag: &str) -> Option<(&'a mut Option<u64>, bool)> {
    let (kind, is_size) = match flag.strip_prefix("--fs-")? {
        "bw-size" => (&mut limits.bw, true),
        "bw-burst" => (&mut limits.bw, false),
        "read-bw-size" => (&mut limits.read_bw, true),
        "read-bw-burst" => (&mut limits.read_bw, false),
        "write-bw-size" => (&mut limits.write_bw, true),
        "write-bw-burst" => (&mut limits.write_bw, false),
        "ops-size" => (&mut limits.ops, true),
        "ops-burst" => (&mut limits.ops, false),
        _ => return None,
    };
    Some(if is_size {
        (&mut kind.size, true)
    } else {
        (&mut kind.burst, false)
    })
}

/// Whether `flag` (without `=value`) is one of [`RATE_LIMIT_FLAGS`].
pub fn is_rate_limit_flag(flag: &str) -> bool {
    RATE_LIMIT_FLAGS.contains(&flag)
}

impl RateLimits {
    /// Collects the rate-limit flags of a daemon argument list (other arguments are skipped;
    /// both `--flag=V` and `--flag V`); a value that does not parse is an error.
    pub fn from_args<S: AsRef<str>>(args: &[S]) -> std::result::Result<RateLimits, String> {
        let mut out = RateLimits::default();
        let mut i = 0;
        while i < args.len() {
            let a = args[i].as_ref();
            let (flag, value) = match a.split_once('=') {
                Some((f, v)) => (f, Some(v.to_string())),
                None => (a, None),
            };
            if is_rate_limit_flag(flag) {
                let value = match value {
                    Some(v) => v,
                    None => {
                        i += 1;
                        match args.get(i) {
                            Some(v) => v.as_ref().to_string(),
                            None => return Err(format!("{flag} needs a value")),
                        }
                    }
                };
                let n = ratelimit::parse_quantity(&value)
                    .map_err(|e| format!("{flag}={value}: {e}"))?;
                let (slot, _) = flag_slot(&mut out, flag).expect("known flag");
                *slot = Some(n);
            }
            i += 1;
        }
        Ok(out)
    }

    /// The buckets with their flag stems, for messages.
    pub fn kinds(&self) -> [(&'static str, LimitFlags); 4] {
        [
            ("bw", self.bw),
            ("read-bw", self.read_bw),
            ("write-bw", self.write_bw),
            ("ops", self.ops),
        ]
    }
}

/// One validated pod rate-limit flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodFlag {
    /// The flag, e.g. `--fs-bw-size`.
    pub flag: String,
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
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let (flag, value) = match a.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        if !is_rate_limit_flag(&flag) {
            return Err(format!(
                "{a:?} is not allowed: a pod may only set the rate-limit flags {}",
                RATE_LIMIT_FLAGS.join(", ")
            ));
        }
        let raw = match value {
            Some(v) => v,
            None => {
                i += 1;
                match args.get(i) {
                    Some(v) if !v.starts_with('-') => v.clone(),
                    _ => return Err(format!("{flag} needs a value (\"{flag}=N\")")),
                }
            }
        };
        let value = ratelimit::parse_quantity(&raw).map_err(|e| format!("{flag}={raw}: {e}"))?;
        out.push(PodFlag { flag, raw, value });
        i += 1;
    }
    Ok(out)
}

/// Checks that `pod` only tightens `operator`. Plain message on failure.
pub fn check_tightening(operator: &RateLimits, pod: &[PodFlag]) -> std::result::Result<(), String> {
    let mut merged = *operator;
    for p in pod {
        let (slot, _) = flag_slot(&mut merged, &p.flag).expect("validated flag");
        *slot = Some(p.value);
    }
    for p in pod {
        let stem = p
            .flag
            .trim_start_matches("--fs-")
            .trim_end_matches("-size")
            .trim_end_matches("-burst");
        let op = operator
            .kinds()
            .into_iter()
            .find(|(k, _)| *k == stem)
            .map(|(_, l)| l)
            .expect("known kind");
        let is_size = p.flag.ends_with("-size");
        let arg = p.arg();
        if is_size {
            if op.rate() > 0 && p.value == 0 {
                return Err(format!(
                    "{arg} would remove the operator's limit (--fs-{stem}-size={}); a pod may only tighten it",
                    op.rate()
                ));
            }
            if op.rate() > 0 && p.value > op.rate() {
                return Err(format!(
                    "{arg} is above the operator's limit --fs-{stem}-size={}; a pod may only tighten it",
                    op.rate()
                ));
            }
        } else {
            if p.value == 0 {
                return Err(format!("{arg}: a burst must be greater than 0"));
            }
            if op.rate() > 0 && p.value > op.effective_burst() {
                return Err(format!(
                    "{arg} is above the operator's burst ({}); a pod may only tighten it",
                    op.effective_burst()
                ));
            }
            if op.rate() == 0 {
                let merged_kind = merged
                    .kinds()
                    .into_iter()
                    .find(|(k, _)| *k == stem)
                    .map(|(_, l)| l)
                    .expect("known kind");
                if merged_kind.rate() == 0 {
                    return Err(format!("{arg} needs a non-zero --fs-{stem}-size"));
                }
            }
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
