//! The node exporter's build-info series: which daemon binary each configured
//! `virtio_fs_daemon` path holds, so an upgrade of Kata that puts its own virtiofsd back (or
//! removes the file) shows, and an alert can fire on it.
//!
//! ```text
//! # TYPE virtiofs_sandbox_daemon_binary_info gauge
//! virtiofs_sandbox_daemon_binary_info{kind="rate-limited",path="/opt/kata/libexec/virtiofsd",version="0.1.0"} 1
//! ```
//!
//! `kind` is `rate-limited` (the file carries this project's build marker; `version` is the
//! marker's), `other` (a file without it, e.g. upstream virtiofsd; `version` empty) or
//! `missing` (no readable regular file there; `version` empty). Files are read, never run.
//! The paths are those of every `[hypervisor.*]` section with `shared_fs = "virtio-fs"` in the
//! configurations given (`metrics --config FILE`, base plus drop-ins), read at each scrape;
//! each path is reported once. A configuration that cannot be read is logged and skipped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use prometheus::{GaugeVec, Opts, Registry, TextEncoder};

use crate::config::VirtioFsConfig;
use crate::dropin::Layers;
use crate::install::binary;

/// The family name.
pub const DAEMON_BINARY_INFO: &str = "virtiofs_sandbox_daemon_binary_info";
/// Its labels (the encoder writes them sorted by name, as here).
pub const LABELS: [&str; 3] = ["kind", "path", "version"];

/// The daemon paths the configurations name (sorted, each once).
pub fn configured_paths(configs: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for c in configs {
        let merged = match Layers::read(c).and_then(|l| l.merge()) {
            Ok(m) => m,
            Err(e) => {
                log::warn!("daemon binaries: {e}");
                continue;
            }
        };
        for hv in merged.hypervisors() {
            match VirtioFsConfig::from_merged(&merged, c, &hv) {
                Ok(cfg) if cfg.spawns_daemon() => {
                    out.insert(cfg.virtio_fs_daemon);
                }
                Ok(_) => {}
                Err(e) => log::warn!("daemon binaries: {e}"),
            }
        }
    }
    out
}

/// The family's exposition text for `paths` (empty when there are none).
pub fn encode(paths: &BTreeSet<PathBuf>) -> String {
    if paths.is_empty() {
        return String::new();
    }
    let g = GaugeVec::new(
        Opts::new(
            DAEMON_BINARY_INFO,
            "Which daemon binary a configured virtio_fs_daemon path holds (kind: rate-limited, other, missing).",
        ),
        &LABELS,
    )
    .expect("valid gauge");
    for p in paths {
        let k = identify_cached(p);
        g.with_label_values(&[k.label(), &p.to_string_lossy(), k.version()])
            .set(1.0);
    }
    let r = Registry::new();
    r.register(Box::new(g)).expect("one family");
    let mut out = String::new();
    if let Err(e) = TextEncoder::new().encode_utf8(&r.gather(), &mut out) {
        log::warn!("encoding {DAEMON_BINARY_INFO}: {e}");
    }
    out
}

/// What a file was identified as, by its identity (device, inode, size, mtime, ctime).
type Seen =
    std::collections::HashMap<PathBuf, ((u64, u64, u64, i64, i64, i64, i64), binary::BinaryKind)>;

/// [`binary::identify`], read again only when the file's inode, size or times changed (a
/// release daemon is megabytes; a scrape comes every few seconds).
fn identify_cached(path: &Path) -> binary::BinaryKind {
    use std::os::unix::fs::MetadataExt;
    static SEEN: std::sync::Mutex<Option<Seen>> = std::sync::Mutex::new(None);
    let Ok(m) = std::fs::metadata(path) else {
        return binary::BinaryKind::Missing;
    };
    let id = (
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    );
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let seen = seen.get_or_insert_with(Default::default);
    if let Some((was, kind)) = seen.get(path) {
        if *was == id {
            return kind.clone();
        }
    }
    let kind = binary::identify(path);
    seen.insert(path.to_path_buf(), (id, kind.clone()));
    kind
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_is_reported() {
        let d = tempfile::tempdir().unwrap();
        let ours = d.path().join("ours");
        let marker = format!(
            "ELF..{}9.8.7{}..",
            limits_api::marker::MARKER_PREFIX,
            limits_api::marker::MARKER_SUFFIX
        );
        std::fs::write(&ours, marker).unwrap();
        let other = d.path().join("other");
        std::fs::write(&other, b"\x7fELF upstream").unwrap();
        let missing = d.path().join("missing");
        let text = encode(&[ours.clone(), other.clone(), missing.clone()].into());
        for (p, kind, v) in [
            (&ours, "rate-limited", "9.8.7"),
            (&other, "other", ""),
            (&missing, "missing", ""),
        ] {
            let line = format!(
                "{DAEMON_BINARY_INFO}{{kind=\"{kind}\",path=\"{}\",version=\"{v}\"}} 1\n",
                p.display()
            );
            assert!(text.contains(&line), "{line} not in\n{text}");
        }
        assert!(encode(&BTreeSet::new()).is_empty());
        // A file changed since the last scrape is read again (the cache keys on its identity).
        std::fs::copy(&ours, &other).unwrap();
        let again = encode(&[other.clone()].into());
        assert!(
            again.contains(&format!(
                "kind=\"rate-limited\",path=\"{}\"",
                other.display()
            )),
            "{again}"
        );
    }
}
