//! Which daemon binary a path holds, found by reading it (never by running it): this
//! project's daemon carries a build marker ([`limits_api::marker`]).

use std::io::Read;
use std::path::Path;

/// Files larger than this are not searched (no daemon is that big).
pub const MAX_BINARY_BYTES: u64 = 512 << 20;

/// What a daemon path holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BinaryKind {
    /// This project's rate-limiting daemon, with its version.
    RateLimited(String),
    /// A file without the marker (upstream virtiofsd, say, after a Kata upgrade).
    Other,
    /// Nothing there (or not a readable regular file).
    Missing,
}

impl BinaryKind {
    /// The `kind` label value: `rate-limited`, `other` or `missing`.
    pub fn label(&self) -> &'static str {
        match self {
            BinaryKind::RateLimited(_) => "rate-limited",
            BinaryKind::Other => "other",
            BinaryKind::Missing => "missing",
        }
    }

    /// The version label value (empty unless rate-limited).
    pub fn version(&self) -> &str {
        match self {
            BinaryKind::RateLimited(v) => v,
            _ => "",
        }
    }
}

/// Identifies the file at `path` by its build marker.
pub fn identify(path: &Path) -> BinaryKind {
    let Ok(meta) = std::fs::metadata(path) else {
        return BinaryKind::Missing;
    };
    if !meta.is_file() {
        return BinaryKind::Missing;
    }
    let Ok(f) = std::fs::File::open(path) else {
        return BinaryKind::Missing;
    };
    let mut bytes = Vec::new();
    if f.take(MAX_BINARY_BYTES).read_to_end(&mut bytes).is_err() {
        return BinaryKind::Missing;
    }
    identify_bytes(&bytes)
}

/// Identifies a binary's bytes.
pub fn identify_bytes(bytes: &[u8]) -> BinaryKind {
    match limits_api::marker::find_version(bytes) {
        Some(v) => BinaryKind::RateLimited(v),
        None => BinaryKind::Other,
    }
}
