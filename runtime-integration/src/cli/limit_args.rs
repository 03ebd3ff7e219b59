//! The `limits` subcommand's flags: the daemon's own `--fs-*` flags and units (built from the
//! shared table, [`limits_api::FLAGS`]), turned into a PATCH of the buckets given.

use clap::{Arg, ArgMatches, Args, Command, FromArgMatches};
use limits_api::{Field, RateLimits, Unit, FLAGS};
use ratelimit::Bucket;

use crate::api::{BucketUpdate, RateLimitUpdate};
use crate::error::{Error, Result};

fn quantity(s: &str) -> std::result::Result<u64, String> {
    ratelimit::parse_quantity(s).map_err(|e| e.to_string())
}

/// The `limits` flags given: one value per `--fs-*` flag of [`FLAGS`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LimitArgs {
    /// The values given (absent: not given).
    pub limits: RateLimits,
}

/// The `--help` line of a flag.
fn help(bucket: Bucket, field: Field) -> String {
    let what = match bucket {
        Bucket::Bw => "Total bandwidth",
        Bucket::ReadBw => "Read bandwidth",
        Bucket::WriteBw => "Write bandwidth",
        Bucket::Ops => "Request",
    };
    match (Unit::of(bucket), field) {
        (Unit::Bytes, Field::Size) => format!("{what}, bytes/s (0 removes the limit)"),
        (Unit::Bytes, Field::Burst) => format!("{what} burst, bytes"),
        (Unit::Requests, Field::Size) => "Requests/s (0 removes the limit)".into(),
        (Unit::Requests, Field::Burst) => format!("{what} burst"),
    }
}

impl Args for LimitArgs {
    fn augment_args(cmd: Command) -> Command {
        FLAGS.iter().fold(cmd, |cmd, f| {
            cmd.arg(
                Arg::new(f.long())
                    .long(f.long())
                    .value_name("Q")
                    .value_parser(quantity)
                    .help(help(f.bucket, f.field)),
            )
        })
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for LimitArgs {
    fn from_arg_matches(m: &ArgMatches) -> std::result::Result<Self, clap::Error> {
        let mut limits = RateLimits::default();
        for f in &FLAGS {
            if let Some(v) = m.get_one::<u64>(f.long()) {
                limits.set(f, *v);
            }
        }
        Ok(LimitArgs { limits })
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> std::result::Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl LimitArgs {
    /// The PATCH body. A burst without a size takes the bucket's size from `current` (the
    /// daemon's GET answer), which is only fetched when needed.
    pub fn update(
        &self,
        current: impl FnOnce() -> Result<serde_json::Value>,
    ) -> Result<RateLimitUpdate> {
        let mut u = RateLimitUpdate::default();
        let mut current = Some(current);
        let mut fetched: Option<serde_json::Value> = None;
        for (bucket, given) in self.limits.buckets() {
            let name = bucket.name();
            let stem = limits_api::flags::stem(bucket);
            let size = match (given.size, given.burst) {
                (None, None) => continue,
                (Some(s), _) => s,
                (None, Some(_)) => {
                    if fetched.is_none() {
                        fetched = Some((current.take().expect("fetched once"))()?);
                    }
                    match fetched.as_ref().and_then(|v| v[name]["size"].as_u64()) {
                        Some(s) if s > 0 => s,
                        _ => {
                            return Err(Error::NotSupported(format!(
                            "--fs-{stem}-burst on an unlimited bucket: give --fs-{stem}-size too"
                        )))
                        }
                    }
                }
            };
            *u.get_mut(bucket) = Some(BucketUpdate {
                size: Some(size),
                burst: given.burst,
            });
        }
        Ok(u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;
    use std::cell::Cell;

    use crate::cli::{Cli, Cmd};
    fn parse(args: &[&str]) -> LimitArgs {
        let mut v = vec!["virtiofs-sandbox", "limits", "pod"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v).unwrap().command {
            Cmd::Limits { limits, .. } => limits,
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn limit_flags_become_a_patch_of_the_buckets_given() {
        let gets = Cell::new(0);
        let current = || {
            gets.set(gets.get() + 1);
            Ok(json!({"bw": {"size": 7, "burst": 9}, "ops": {"size": 0, "burst": 0}}))
        };
        let u = parse(&[
            "--fs-bw-size=2M",
            "--fs-read-bw-size",
            "4Ki",
            "--fs-read-bw-burst=8Ki",
        ])
        .update(current)
        .unwrap();
        assert_eq!(gets.get(), 0, "no GET when every burst has its size");
        assert_eq!(
            serde_json::to_string(&u).unwrap(),
            r#"{"bw":{"size":2000000},"read_bw":{"size":4096,"burst":8192}}"#
        );
        // A burst alone keeps the current size (one GET for all buckets).
        let u = parse(&["--fs-bw-burst=1k"]).update(current).unwrap();
        assert_eq!(gets.get(), 1);
        assert_eq!(
            u.bw,
            Some(BucketUpdate {
                size: Some(7),
                burst: Some(1000)
            })
        );
        let e = parse(&["--fs-ops-burst=5"]).update(current).unwrap_err();
        assert!(e.to_string().contains("give --fs-ops-size too"), "{e}");
        assert!(parse(&[]).update(current).unwrap().is_empty());
        for bad in ["--fs-bw-size=-1", "--fs-ops-size=1.5", "--fs-bw-burst=10X"] {
            let v = ["virtiofs-sandbox", "limits", "pod", bad];
            assert!(Cli::try_parse_from(v).is_err(), "{bad}");
        }
    }
}
