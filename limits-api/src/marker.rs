//! How a file is recognised as this project's daemon without running it: the daemon binary
//! embeds `MARKER_PREFIX <version> MARKER_SUFFIX` (the `virtiofsd` crate's `BUILD_MARKER`),
//! and `virtiofs-sandbox` (install, the node exporter) searches a file's bytes for it.
//! Reading a marker is safe on any file; running an unknown binary as root to ask its
//! `--version` is not.

/// Starts the marker (a NUL first, so it never continues another string).
pub const MARKER_PREFIX: &str = "\0virtiofsd-ratelimit-build:version=";
/// Ends the marker.
pub const MARKER_SUFFIX: &str = ";virtiofsd-ratelimit-build\0";
/// Longest version accepted between the two.
pub const MAX_VERSION_LEN: usize = 64;

/// The version in the first marker found in `bytes`, if any. A version is 1 to
/// [`MAX_VERSION_LEN`] of `0-9 A-Z a-z . + ~ -`.
pub fn find_version(bytes: &[u8]) -> Option<String> {
    let prefix = MARKER_PREFIX.as_bytes();
    let suffix = MARKER_SUFFIX.as_bytes();
    let mut from = 0;
    while let Some(i) = find(&bytes[from..], prefix) {
        let start = from + i + prefix.len();
        let rest = &bytes[start..];
        let n = rest
            .iter()
            .take(MAX_VERSION_LEN + 1)
            .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'~' | b'-'))
            .count();
        if (1..=MAX_VERSION_LEN).contains(&n) && rest[n..].starts_with(suffix) {
            return Some(String::from_utf8_lossy(&rest[..n]).into_owned());
        }
        from = from + i + 1;
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut at = 0;
    while let Some(p) = hay[at..].iter().position(|&b| b == first) {
        let i = at + p;
        if hay[i..].starts_with(needle) {
            return Some(i);
        }
        at = i + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_only_whole_markers() {
        let m = format!("junk{MARKER_PREFIX}1.2.3-rc1{MARKER_SUFFIX}more");
        assert_eq!(find_version(m.as_bytes()).as_deref(), Some("1.2.3-rc1"));
        // The prefix and suffix as separate strings (as in the tools that search) do not match.
        let apart = format!("{MARKER_PREFIX}{MARKER_SUFFIX}{MARKER_PREFIX}x y{MARKER_SUFFIX}");
        assert_eq!(find_version(apart.as_bytes()), None);
        let long = format!("{MARKER_PREFIX}{}{MARKER_SUFFIX}", "9".repeat(65));
        assert_eq!(find_version(long.as_bytes()), None);
        let second = format!("{MARKER_PREFIX}bad!{MARKER_PREFIX}0.1.0{MARKER_SUFFIX}");
        assert_eq!(find_version(second.as_bytes()).as_deref(), Some("0.1.0"));
        assert_eq!(find_version(b""), None);
    }
}
