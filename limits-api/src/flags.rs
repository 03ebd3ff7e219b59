//! The `--fs-*` flag table: four buckets, a size and a burst each.
//!
//! | flag | bucket | field | unit |
//! |---|---|---|---|
//! | `--fs-bw-size`, `--fs-bw-burst` | `bw` (READ + WRITE) | size (per second), burst | bytes |
//! | `--fs-read-bw-size`, `--fs-read-bw-burst` | `read_bw` | size, burst | bytes |
//! | `--fs-write-bw-size`, `--fs-write-bw-burst` | `write_bw` | size, burst | bytes |
//! | `--fs-ops-size`, `--fs-ops-burst` | `ops` (requests on the request queue) | size, burst | requests |
//!
//! A size of 0 (or no size) is unlimited; a burst defaults to the size. Values are quantities
//! such as `10M` or `4Ki` ([`ratelimit::parse_quantity`]).

use ratelimit::Bucket;
use serde::{Deserialize, Serialize};

/// Which value of a bucket a flag sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// `--fs-<stem>-size`: the refill rate per second (0: unlimited).
    Size,
    /// `--fs-<stem>-burst`: the bucket's capacity.
    Burst,
}

/// What a bucket counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    /// File data bytes (READ and WRITE payloads).
    Bytes,
    /// Requests on the request queue.
    Requests,
}

impl Unit {
    /// The unit of `bucket`.
    pub const fn of(bucket: Bucket) -> Unit {
        match bucket {
            Bucket::Ops => Unit::Requests,
            _ => Unit::Bytes,
        }
    }

    /// The placeholder `--help` shows for a value (`BYTES`, `REQUESTS`).
    pub const fn value_name(self) -> &'static str {
        match self {
            Unit::Bytes => "BYTES",
            Unit::Requests => "REQUESTS",
        }
    }

    /// The short symbol for logs (`B`, `req`).
    pub const fn symbol(self) -> &'static str {
        match self {
            Unit::Bytes => "B",
            Unit::Requests => "req",
        }
    }
}

/// One rate-limit flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flag {
    /// The flag as written, e.g. `--fs-bw-size`.
    pub name: &'static str,
    /// The bucket it configures.
    pub bucket: Bucket,
    /// Whether it sets the size or the burst.
    pub field: Field,
}

impl Flag {
    /// The long name without the leading dashes, e.g. `fs-bw-size`.
    pub fn long(&self) -> &'static str {
        &self.name[2..]
    }

    /// What its value counts.
    pub const fn unit(&self) -> Unit {
        Unit::of(self.bucket)
    }

    /// The flag of `bucket`'s `field`.
    pub fn of(bucket: Bucket, field: Field) -> &'static Flag {
        FLAGS
            .iter()
            .find(|f| f.bucket == bucket && f.field == field)
            .expect("the table has every bucket's size and burst")
    }

    /// The flag named `name` (`--fs-bw-size`, with the dashes), if it is one of [`FLAGS`].
    pub fn find(name: &str) -> Option<&'static Flag> {
        FLAGS.iter().find(|f| f.name == name)
    }
}

impl std::fmt::Display for Flag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// The stem of `bucket`'s flags: `bw`, `read-bw`, `write-bw`, `ops` (`--fs-<stem>-size`).
pub const fn stem(bucket: Bucket) -> &'static str {
    match bucket {
        Bucket::Bw => "bw",
        Bucket::ReadBw => "read-bw",
        Bucket::WriteBw => "write-bw",
        Bucket::Ops => "ops",
    }
}

const fn flag(name: &'static str, bucket: Bucket, field: Field) -> Flag {
    Flag {
        name,
        bucket,
        field,
    }
}

/// The eight rate-limit flags, bucket by bucket ([`Bucket::ALL`] order), size before burst.
pub const FLAGS: [Flag; 8] = [
    flag("--fs-bw-size", Bucket::Bw, Field::Size),
    flag("--fs-bw-burst", Bucket::Bw, Field::Burst),
    flag("--fs-read-bw-size", Bucket::ReadBw, Field::Size),
    flag("--fs-read-bw-burst", Bucket::ReadBw, Field::Burst),
    flag("--fs-write-bw-size", Bucket::WriteBw, Field::Size),
    flag("--fs-write-bw-burst", Bucket::WriteBw, Field::Burst),
    flag("--fs-ops-size", Bucket::Ops, Field::Size),
    flag("--fs-ops-burst", Bucket::Ops, Field::Burst),
];

/// One bucket's values as a command line gives them (`None`: flag absent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitFlags {
    /// `--fs-<stem>-size` (0 = unlimited).
    pub size: Option<u64>,
    /// `--fs-<stem>-burst`.
    pub burst: Option<u64>,
}

impl LimitFlags {
    /// The sustained rate (0 = unlimited).
    pub fn rate(&self) -> u64 {
        self.size.unwrap_or(0)
    }

    /// The effective bucket capacity, as the daemon computes it (the burst, else the size).
    pub fn effective_burst(&self) -> u64 {
        self.burst.unwrap_or(self.rate())
    }

    /// Whether this bucket is limited (a non-zero size).
    pub fn is_limited(&self) -> bool {
        self.rate() != 0
    }

    /// The value of `field`.
    pub fn get(&self, field: Field) -> Option<u64> {
        match field {
            Field::Size => self.size,
            Field::Burst => self.burst,
        }
    }

    /// The value of `field`, for writing.
    pub fn get_mut(&mut self, field: Field) -> &mut Option<u64> {
        match field {
            Field::Size => &mut self.size,
            Field::Burst => &mut self.burst,
        }
    }
}

/// The four buckets' flags, the last occurrence of a flag winning (as in the daemon's parser).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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

impl RateLimits {
    /// The flags of `bucket`.
    pub fn get(&self, bucket: Bucket) -> LimitFlags {
        match bucket {
            Bucket::Bw => self.bw,
            Bucket::ReadBw => self.read_bw,
            Bucket::WriteBw => self.write_bw,
            Bucket::Ops => self.ops,
        }
    }

    /// The flags of `bucket`, for writing.
    pub fn get_mut(&mut self, bucket: Bucket) -> &mut LimitFlags {
        match bucket {
            Bucket::Bw => &mut self.bw,
            Bucket::ReadBw => &mut self.read_bw,
            Bucket::WriteBw => &mut self.write_bw,
            Bucket::Ops => &mut self.ops,
        }
    }

    /// Sets the value of `flag`.
    pub fn set(&mut self, flag: &Flag, value: u64) {
        *self.get_mut(flag.bucket).get_mut(flag.field) = Some(value);
    }

    /// The value `flag` was given, if any.
    pub fn value(&self, flag: &Flag) -> Option<u64> {
        self.get(flag.bucket).get(flag.field)
    }

    /// Every bucket with its flags, in [`Bucket::ALL`] order.
    pub fn buckets(&self) -> [(Bucket, LimitFlags); 4] {
        Bucket::ALL.map(|b| (b, self.get(b)))
    }

    /// Collects the rate-limit flags of a daemon argument list, both `--flag=V` and
    /// `--flag V` (other arguments are skipped; the last occurrence wins). A value that does
    /// not parse, or a flag without a value, is an error naming the flag.
    pub fn from_args<S: AsRef<str>>(args: &[S]) -> Result<RateLimits, String> {
        let mut out = RateLimits::default();
        let mut it = args.iter().map(AsRef::as_ref);
        while let Some(a) = it.next() {
            let (name, value) = match a.split_once('=') {
                Some((f, v)) => (f, Some(v)),
                None => (a, None),
            };
            let Some(flag) = Flag::find(name) else {
                continue;
            };
            let value = match value.or_else(|| it.next()) {
                Some(v) => v,
                None => return Err(format!("{flag} needs a value")),
            };
            let n = ratelimit::parse_quantity(value).map_err(|e| format!("{flag}={value}: {e}"))?;
            out.set(flag, n);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_each_bucket_s_size_and_burst_once() {
        for b in Bucket::ALL {
            for field in [Field::Size, Field::Burst] {
                let f = Flag::of(b, field);
                let suffix = match field {
                    Field::Size => "size",
                    Field::Burst => "burst",
                };
                assert_eq!(f.name, format!("--fs-{}-{suffix}", stem(b)));
                assert_eq!(Flag::find(f.name), Some(f));
                assert_eq!(f.long(), &f.name[2..]);
            }
        }
        assert_eq!(Flag::find("--fs-bw"), None);
        assert_eq!(Flag::of(Bucket::Ops, Field::Size).unit(), Unit::Requests);
        assert_eq!(Flag::of(Bucket::ReadBw, Field::Burst).unit(), Unit::Bytes);
    }

    #[test]
    fn from_args_last_wins_in_both_forms() {
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
        assert_eq!(l.read_bw, LimitFlags::default());
        let e = RateLimits::from_args(&["--fs-bw-size"]).unwrap_err();
        assert_eq!(e, "--fs-bw-size needs a value");
        let e = RateLimits::from_args(&["--fs-ops-size=1.5"]).unwrap_err();
        assert!(e.starts_with("--fs-ops-size=1.5: "), "{e}");
    }
}
