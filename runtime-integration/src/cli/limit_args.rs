//! The `limits` subcommand's flags: the daemon's own `--fs-*` flags and units, turned into a
//! PATCH of the buckets given.

use clap::Args;

use crate::api::{BucketUpdate, RateLimitUpdate, BUCKETS};
use crate::error::{Error, Result};

fn quantity(s: &str) -> std::result::Result<u64, String> {
    ratelimit::parse_quantity(s).map_err(|e| e.to_string())
}

/// The `limits` flags: the daemon's own rate-limit flags and units.
#[derive(Debug, Default, Args)]
pub struct LimitArgs {
    /// Total bandwidth, bytes/s (0 removes the limit).
    #[arg(long, value_name = "Q", value_parser = quantity)]
    pub fs_bw_size: Option<u64>,
    /// Total bandwidth burst, bytes.
    #[arg(long, value_name = "Q", value_parser = quantity)]
    pub fs_bw_burst: Option<u64>,
    /// Read bandwidth, bytes/s (0 removes the limit).
    #[arg(long, value_name = "Q", value_parser = quantity)]
    pub fs_read_bw_size: Option<u64>,
    /// Read bandwidth burst, bytes.
    #[arg(long, value_name = "Q", value_parser = quantity)]
    pub fs_read_bw_burst: Option<u64>,
    /// Write bandwidth, bytes/s (0 removes the limit).
    #[arg(long, value_name = "Q", value_parser = quantity)]
    pub fs_write_bw_size: Option<u64>,
    /// Write bandwidth burst, bytes.
    #[arg(long, value_name = "Q", value_parser = quantity)]
    pub fs_write_bw_burst: Option<u64>,
    /// Requests/s (0 removes the limit).
    #[arg(long, value_name = "Q", value_parser = quantity)]
    pub fs_ops_size: Option<u64>,
    /// Request burst.
    #[arg(long, value_name = "Q", value_parser = quantity)]
    pub fs_ops_burst: Option<u64>,
}

impl LimitArgs {
    /// `(bucket, size, burst)` for each of [`BUCKETS`].
    fn buckets(&self) -> [(&'static str, Option<u64>, Option<u64>); 4] {
        [
            (BUCKETS[0], self.fs_bw_size, self.fs_bw_burst),
            (BUCKETS[1], self.fs_read_bw_size, self.fs_read_bw_burst),
            (BUCKETS[2], self.fs_write_bw_size, self.fs_write_bw_burst),
            (BUCKETS[3], self.fs_ops_size, self.fs_ops_burst),
        ]
    }

    /// The PATCH body. A burst without a size takes the bucket's size from `current` (the
    /// daemon's GET answer), which is only fetched when needed.
    pub fn update(
        &self,
        current: impl FnOnce() -> Result<serde_json::Value>,
    ) -> Result<RateLimitUpdate> {
        let mut u = RateLimitUpdate::default();
        let mut current = Some(current);
        let mut fetched: Option<serde_json::Value> = None;
        for (name, size, burst) in self.buckets() {
            let size = match (size, burst) {
                (None, None) => continue,
                (Some(s), _) => s,
                (None, Some(_)) => {
                    if fetched.is_none() {
                        fetched = Some((current.take().expect("fetched once"))()?);
                    }
                    let flag = format!("--fs-{}-burst", name.replace('_', "-"));
                    match fetched.as_ref().and_then(|v| v[name]["size"].as_u64()) {
                        Some(s) if s > 0 => s,
                        _ => {
                            return Err(Error::NotSupported(format!(
                                "{flag} on an unlimited bucket: give --fs-{}-size too",
                                name.replace('_', "-")
                            )))
                        }
                    }
                }
            };
            *u.bucket_mut(name).expect("known bucket") = Some(BucketUpdate { size, burst });
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
                size: 7,
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
