//! Reading what a guest job printed: named sections, md5sum lines, key=value words.

use super::*;

/// Splits a job's stdout at lines `@@@NAME` into named sections.
pub(super) fn sections(stdout: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut cur: Option<String> = None;
    for line in stdout.lines() {
        if let Some(name) = line.strip_prefix("@@@") {
            cur = Some(name.trim().to_string());
            out.insert(name.trim().to_string(), String::new());
        } else if let Some(c) = &cur {
            let s = out.get_mut(c).unwrap();
            s.push_str(line);
            s.push('\n');
        }
    }
    out
}

pub(super) fn section<'a>(secs: &'a BTreeMap<String, String>, name: &str, stdout: &str) -> &'a str {
    secs.get(name)
        .unwrap_or_else(|| panic!("no section {name} in guest stdout:\n{stdout}"))
}

/// `md5sum` output (`HASH  NAME` lines) as name → hash.
pub(super) fn parse_md5(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let (h, n) = l.split_once(char::is_whitespace)?;
            Some((n.trim().to_string(), h.to_string()))
        })
        .collect()
}

/// Runs coreutils `md5sum` on the host over `names` in `dir`.
pub(super) fn host_md5(dir: &Path, names: &[&str]) -> BTreeMap<String, String> {
    let out = Command::new("md5sum")
        .current_dir(dir)
        .args(names)
        .output()
        .expect("run md5sum on the host");
    assert!(
        out.status.success(),
        "host md5sum failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_md5(&String::from_utf8_lossy(&out.stdout))
}

/// `key=value` words anywhere in `text`.
pub(super) fn kv(text: &str, key: &str) -> Option<String> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_string)
}

pub(super) fn mb_s(bytes_per_s: f64) -> f64 {
    bytes_per_s / 1e6
}
