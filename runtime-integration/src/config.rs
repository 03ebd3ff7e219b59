//! Kata's `configuration.toml`: the virtio-fs keys of one `[hypervisor.<name>]` section.
//!
//! Only these keys are read; every other key and section is ignored:
//!
//! | key | default (Kata's shipped value) |
//! |---|---|
//! | `shared_fs` | `"virtio-fs"` (also `"virtio-9p"`, `"none"`; `"virtio-fs-nydus"` is not supported) |
//! | `virtio_fs_daemon` | `"/opt/kata/libexec/virtiofsd"` |
//! | `valid_virtio_fs_daemon_paths` | `["/opt/kata/libexec/virtiofsd"]` |
//! | `virtio_fs_cache` | `"auto"` (`never`, `metadata`, `auto`, `always`; empty → `auto`) |
//! | `virtio_fs_cache_size` | `0` (DAX window in MiB; anything else is rejected: the daemon has no DAX) |
//! | `virtio_fs_queue_size` | `1024` (a power of two, 1..=1024) |
//! | `virtio_fs_extra_args` | `["--thread-pool-size=1", "--announce-submounts"]` |
//! | `enable_annotations` | `[]` (regexes of hypervisor annotation names a pod may set) |
//!
//! A key with a wrong type or value is an [`Error::ConfigKey`] naming the file, the section and
//! the key. [`VirtioFsConfig::load`] reads the base file plus its `config.d/` drop-ins merged as
//! Kata merges them ([`crate::dropin`]), and names the file that set a bad key;
//! [`VirtioFsConfig::from_toml_str`] reads one text alone.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::limits::RateLimits;

/// Kata's shipped daemon path (kata-deploy installs under `/opt/kata`).
pub const DEFAULT_DAEMON: &str = "/opt/kata/libexec/virtiofsd";
/// Kata's shipped `virtio_fs_extra_args`.
pub const DEFAULT_EXTRA_ARGS: [&str; 2] = ["--thread-pool-size=1", "--announce-submounts"];
/// Kata's shipped queue size, also the maximum.
pub const MAX_QUEUE_SIZE: u32 = 1024;

/// How the sandbox's root filesystem is shared with the guest (`shared_fs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SharedFs {
    /// `virtio-fs`: one virtiofsd per sandbox (this crate's business).
    VirtioFs,
    /// `virtio-9p`: QEMU's built-in 9p server; no daemon.
    Virtio9p,
    /// `none`: nothing shared; no daemon.
    None,
}

impl SharedFs {
    /// Parses a `shared_fs` value. `virtio-fs-nydus` is an [`Error::NotSupported`]; any other
    /// unknown value is a plain message (the caller names the key).
    pub fn parse(value: &str) -> std::result::Result<SharedFs, ParseFailure> {
        match value {
            "virtio-fs" => Ok(SharedFs::VirtioFs),
            "virtio-9p" => Ok(SharedFs::Virtio9p),
            "none" => Ok(SharedFs::None),
            "virtio-fs-nydus" => Err(ParseFailure::NotSupported(
                "shared_fs = \"virtio-fs-nydus\": nydusd is a different daemon; this virtiofsd \
                 cannot serve it (use \"virtio-fs\")"
                    .into(),
            )),
            other => Err(ParseFailure::Invalid(format!(
                "{other:?} is not one of \"virtio-fs\", \"virtio-9p\", \"none\" \
                 (\"virtio-fs-nydus\" is not supported)"
            ))),
        }
    }

    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SharedFs::VirtioFs => "virtio-fs",
            SharedFs::Virtio9p => "virtio-9p",
            SharedFs::None => "none",
        }
    }
}

/// A value that failed to parse: either unsupported (a clear "not supported") or invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseFailure {
    /// A known value this integration does not support.
    NotSupported(String),
    /// A value that is simply wrong.
    Invalid(String),
}

/// The daemon's cache policy (`virtio_fs_cache`, passed as `--cache=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    /// `never`
    Never,
    /// `metadata`
    Metadata,
    /// `auto` (also the empty string)
    Auto,
    /// `always`
    Always,
}

impl CacheMode {
    /// Parses a `virtio_fs_cache` value (empty → `auto`, as Kata does).
    pub fn parse(value: &str) -> std::result::Result<CacheMode, String> {
        match value {
            "never" => Ok(CacheMode::Never),
            "metadata" => Ok(CacheMode::Metadata),
            "auto" | "" => Ok(CacheMode::Auto),
            "always" => Ok(CacheMode::Always),
            other => Err(format!(
                "{other:?} is not one of \"never\", \"metadata\", \"auto\", \"always\""
            )),
        }
    }

    /// The spelling passed to `--cache=`.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheMode::Never => "never",
            CacheMode::Metadata => "metadata",
            CacheMode::Auto => "auto",
            CacheMode::Always => "always",
        }
    }
}

/// The virtio-fs part of one hypervisor section, validated.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VirtioFsConfig {
    /// The file it came from (for messages).
    pub source: PathBuf,
    /// The hypervisor section name (`qemu`, `clh`, ...).
    pub hypervisor: String,
    /// `shared_fs`.
    pub shared_fs: SharedFs,
    /// `virtio_fs_daemon`.
    pub virtio_fs_daemon: PathBuf,
    /// `valid_virtio_fs_daemon_paths` (globs).
    pub valid_virtio_fs_daemon_paths: Vec<String>,
    /// `virtio_fs_cache`.
    pub virtio_fs_cache: CacheMode,
    /// `virtio_fs_cache_size` (always 0 after validation: DAX is rejected).
    pub virtio_fs_cache_size: u32,
    /// `virtio_fs_queue_size`.
    pub virtio_fs_queue_size: u32,
    /// `virtio_fs_extra_args`, appended to the daemon's command line.
    pub virtio_fs_extra_args: Vec<String>,
    /// `enable_annotations` (regexes).
    pub enable_annotations: Vec<String>,
}

impl VirtioFsConfig {
    /// Kata's shipped defaults for `hypervisor`, as if the section had no virtio-fs keys.
    pub fn defaults(source: impl Into<PathBuf>, hypervisor: impl Into<String>) -> Self {
        VirtioFsConfig {
            source: source.into(),
            hypervisor: hypervisor.into(),
            shared_fs: SharedFs::VirtioFs,
            virtio_fs_daemon: PathBuf::from(DEFAULT_DAEMON),
            valid_virtio_fs_daemon_paths: vec![DEFAULT_DAEMON.to_string()],
            virtio_fs_cache: CacheMode::Auto,
            virtio_fs_cache_size: 0,
            virtio_fs_queue_size: MAX_QUEUE_SIZE,
            virtio_fs_extra_args: DEFAULT_EXTRA_ARGS.iter().map(|s| s.to_string()).collect(),
            enable_annotations: Vec::new(),
        }
    }

    /// Reads `path` plus the drop-ins of `config.d/` beside it, merged as Kata merges them
    /// ([`crate::dropin`]), and takes the virtio-fs keys of `[hypervisor.<hypervisor>]`. A key
    /// error names the file that set the key.
    pub fn load(path: impl AsRef<Path>, hypervisor: &str) -> Result<Self> {
        let layers = crate::dropin::Layers::read(path.as_ref())?;
        Self::from_merged(&layers.merge()?, path.as_ref(), hypervisor)
    }

    /// Takes the section from an already merged configuration (`source`: the base file).
    pub fn from_merged(
        merged: &crate::dropin::Merged,
        source: impl AsRef<Path>,
        hypervisor: &str,
    ) -> Result<Self> {
        Self::from_table(&merged.table, source.as_ref(), Some(merged), hypervisor)
    }

    /// Parses TOML `text` alone, without drop-ins (`source` names it in messages).
    pub fn from_toml_str(text: &str, source: impl AsRef<Path>, hypervisor: &str) -> Result<Self> {
        let source = source.as_ref();
        let doc: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| Error::ConfigFile {
                file: source.to_path_buf(),
                message: format!("not valid TOML: {e}"),
            })?;
        Self::from_table(&doc, source, None, hypervisor)
    }

    fn from_table(
        doc: &toml::Table,
        source: &Path,
        merged: Option<&crate::dropin::Merged>,
        hypervisor: &str,
    ) -> Result<Self> {
        let file_err = |message: String| Error::ConfigFile {
            file: source.to_path_buf(),
            message,
        };
        let hv = match doc.get("hypervisor") {
            Some(toml::Value::Table(t)) => t,
            Some(_) => return Err(file_err("`hypervisor` is not a table".into())),
            None => return Err(file_err("no [hypervisor.*] section".into())),
        };
        let section = match hv.get(hypervisor) {
            Some(toml::Value::Table(t)) => t,
            Some(_) => {
                return Err(file_err(format!(
                    "`hypervisor.{hypervisor}` is not a table"
                )))
            }
            None => {
                let have: Vec<&str> = hv.keys().map(String::as_str).collect();
                return Err(file_err(format!(
                    "no [hypervisor.{hypervisor}] section (found: {})",
                    if have.is_empty() {
                        "none".to_string()
                    } else {
                        have.join(", ")
                    }
                )));
            }
        };
        let keys = Keys {
            file: source,
            section: format!("hypervisor.{hypervisor}"),
            merged,
        };
        let raw: Section = serde_path_to_error::deserialize(toml::Value::Table(section.clone()))
            .map_err(|e| {
                let key = match e.path().iter().next() {
                    Some(serde_path_to_error::Segment::Map { key }) => key.clone(),
                    _ => e.path().to_string(),
                };
                keys.err(&key, e.into_inner().message().to_string())
            })?;
        let mut c = VirtioFsConfig::defaults(source, hypervisor);

        if let Some(v) = raw.shared_fs {
            c.shared_fs = SharedFs::parse(&v).map_err(|f| match f {
                ParseFailure::NotSupported(m) => {
                    Error::NotSupported(format!("{}: [{}] {m}", source.display(), keys.section))
                }
                ParseFailure::Invalid(m) => keys.err("shared_fs", m),
            })?;
        }
        if let Some(v) = raw.virtio_fs_daemon {
            if !v.starts_with('/') {
                return Err(keys.err("virtio_fs_daemon", format!("{v:?} is not an absolute path")));
            }
            c.virtio_fs_daemon = PathBuf::from(v);
        }
        if let Some(v) = raw.valid_virtio_fs_daemon_paths {
            for g in &v {
                glob::Pattern::new(g).map_err(|e| {
                    keys.err(
                        "valid_virtio_fs_daemon_paths",
                        format!("{g:?} is not a valid glob: {e}"),
                    )
                })?;
            }
            c.valid_virtio_fs_daemon_paths = v;
        }
        if let Some(v) = raw.virtio_fs_cache {
            c.virtio_fs_cache = CacheMode::parse(&v).map_err(|m| keys.err("virtio_fs_cache", m))?;
        }
        if let Some(v) = raw.virtio_fs_cache_size {
            check_cache_size(v).map_err(|m| keys.err("virtio_fs_cache_size", m))?;
            c.virtio_fs_cache_size = v;
        }
        if let Some(v) = raw.virtio_fs_queue_size {
            check_queue_size(v).map_err(|m| keys.err("virtio_fs_queue_size", m))?;
            c.virtio_fs_queue_size = v;
        }
        if let Some(v) = raw.virtio_fs_extra_args {
            RateLimits::from_args(&v).map_err(|m| keys.err("virtio_fs_extra_args", m))?;
            c.virtio_fs_extra_args = v;
        }
        if let Some(v) = raw.enable_annotations {
            for r in &v {
                regex::Regex::new(r).map_err(|e| {
                    keys.err(
                        "enable_annotations",
                        format!("{r:?} is not a valid regex: {e}"),
                    )
                })?;
            }
            c.enable_annotations = v;
        }
        Ok(c)
    }

    /// Whether this configuration starts a virtio-fs daemon (`shared_fs = "virtio-fs"`).
    pub fn spawns_daemon(&self) -> bool {
        self.shared_fs == SharedFs::VirtioFs
    }

    /// Why no daemon is started, when none is.
    pub fn no_daemon_reason(&self) -> Option<String> {
        match self.shared_fs {
            SharedFs::VirtioFs => None,
            other => Some(format!(
                "shared_fs = \"{}\": no virtio-fs daemon is started for this sandbox",
                other.as_str()
            )),
        }
    }

    /// The operator's rate limits (from `virtio_fs_extra_args`, last flag wins).
    pub fn operator_limits(&self) -> RateLimits {
        RateLimits::from_args(&self.virtio_fs_extra_args).unwrap_or_default()
    }
}

/// `virtio_fs_cache_size` rule: only 0 (no DAX window).
pub fn check_cache_size(v: u32) -> std::result::Result<(), String> {
    if v == 0 {
        Ok(())
    } else {
        Err(format!(
            "{v} MiB DAX window requested, but this virtiofsd does not implement DAX \
             (set virtio_fs_cache_size = 0)"
        ))
    }
}

/// `virtio_fs_queue_size` rule: a power of two, at most 1024.
pub fn check_queue_size(v: u32) -> std::result::Result<(), String> {
    if v == 0 || !v.is_power_of_two() || v > MAX_QUEUE_SIZE {
        Err(format!(
            "{v} is not a power of two between 1 and {MAX_QUEUE_SIZE}"
        ))
    } else {
        Ok(())
    }
}

/// The virtio-fs keys of one section as TOML gives them (any other key is ignored); a key
/// of the wrong type fails with its path (`serde_path_to_error`).
#[derive(Deserialize)]
struct Section {
    shared_fs: Option<String>,
    virtio_fs_daemon: Option<String>,
    valid_virtio_fs_daemon_paths: Option<Vec<String>>,
    virtio_fs_cache: Option<String>,
    #[serde(default, deserialize_with = "integer_u32")]
    virtio_fs_cache_size: Option<u32>,
    #[serde(default, deserialize_with = "integer_u32")]
    virtio_fs_queue_size: Option<u32>,
    virtio_fs_extra_args: Option<Vec<String>>,
    enable_annotations: Option<Vec<String>>,
}

/// A TOML integer that fits a `u32` ("expected an integer" otherwise, or the range).
fn integer_u32<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<u32>, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = u32;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an integer")
        }
        fn visit_i64<E: serde::de::Error>(self, i: i64) -> std::result::Result<u32, E> {
            u32::try_from(i).map_err(|_| E::custom(format!("{i} is out of range (0..=4294967295)")))
        }
        fn visit_u64<E: serde::de::Error>(self, i: u64) -> std::result::Result<u32, E> {
            u32::try_from(i).map_err(|_| E::custom(format!("{i} is out of range (0..=4294967295)")))
        }
    }
    d.deserialize_any(V).map(Some)
}

/// Errors naming the file, the section and the key.
struct Keys<'a> {
    file: &'a Path,
    section: String,
    merged: Option<&'a crate::dropin::Merged>,
}

impl Keys<'_> {
    fn err(&self, key: &str, message: impl Into<String>) -> Error {
        let origin = self
            .merged
            .and_then(|m| m.origin(&format!("{}.{key}", self.section)));
        Error::ConfigKey {
            file: origin.unwrap_or(self.file).to_path_buf(),
            section: self.section.clone(),
            key: key.to_string(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(section: &str) -> Result<VirtioFsConfig> {
        VirtioFsConfig::from_toml_str(
            &format!("[hypervisor.qemu]\npath = \"/usr/bin/qemu\"\n{section}\n[runtime]\nx = 1\n"),
            "/etc/kata/configuration.toml",
            "qemu",
        )
    }

    fn key_err(section: &str) -> (String, String) {
        match load(section).unwrap_err() {
            Error::ConfigKey {
                key,
                message,
                file,
                section,
            } => {
                assert_eq!(file, Path::new("/etc/kata/configuration.toml"));
                assert_eq!(section, "hypervisor.qemu");
                (key, message)
            }
            other => panic!("expected ConfigKey, got {other}"),
        }
    }

    #[test]
    fn defaults_when_keys_absent() {
        let c = load("").unwrap();
        assert_eq!(
            c,
            VirtioFsConfig::defaults("/etc/kata/configuration.toml", "qemu")
        );
        assert!(c.spawns_daemon());
        assert_eq!(c.virtio_fs_queue_size, 1024);
        assert_eq!(c.virtio_fs_cache, CacheMode::Auto);
        assert_eq!(
            c.virtio_fs_extra_args,
            vec!["--thread-pool-size=1", "--announce-submounts"]
        );
        assert!(c.enable_annotations.is_empty());
    }

    #[test]
    fn wrong_types_name_the_key() {
        for (s, k) in [
            ("shared_fs = 1", "shared_fs"),
            ("virtio_fs_daemon = true", "virtio_fs_daemon"),
            (
                "valid_virtio_fs_daemon_paths = \"/x\"",
                "valid_virtio_fs_daemon_paths",
            ),
            (
                "valid_virtio_fs_daemon_paths = [1]",
                "valid_virtio_fs_daemon_paths",
            ),
            ("virtio_fs_cache = 3", "virtio_fs_cache"),
            ("virtio_fs_cache_size = \"0\"", "virtio_fs_cache_size"),
            ("virtio_fs_cache_size = -1", "virtio_fs_cache_size"),
            ("virtio_fs_queue_size = \"1024\"", "virtio_fs_queue_size"),
            ("virtio_fs_queue_size = 1.5", "virtio_fs_queue_size"),
            ("virtio_fs_extra_args = \"--xattr\"", "virtio_fs_extra_args"),
            ("enable_annotations = [true]", "enable_annotations"),
        ] {
            let (key, msg) = key_err(s);
            assert_eq!(key, k, "{s}: {msg}");
        }
        let e = load("virtio_fs_queue_size = \"1024\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/etc/kata/configuration.toml")
                && e.contains("virtio_fs_queue_size")
                && e.contains("expected an integer"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_the_key() {
        for (s, k, needle) in [
            ("virtio_fs_cache = \"fast\"", "virtio_fs_cache", "\"fast\""),
            (
                "virtio_fs_queue_size = 1000",
                "virtio_fs_queue_size",
                "power of two",
            ),
            (
                "virtio_fs_queue_size = 2048",
                "virtio_fs_queue_size",
                "power of two",
            ),
            (
                "virtio_fs_queue_size = 0",
                "virtio_fs_queue_size",
                "power of two",
            ),
            ("virtio_fs_cache_size = 1024", "virtio_fs_cache_size", "DAX"),
            ("shared_fs = \"virtio-foo\"", "shared_fs", "virtio-foo"),
            (
                "virtio_fs_daemon = \"virtiofsd\"",
                "virtio_fs_daemon",
                "absolute",
            ),
            (
                "enable_annotations = [\"(\"]",
                "enable_annotations",
                "regex",
            ),
            (
                "valid_virtio_fs_daemon_paths = [\"/a/[\"]",
                "valid_virtio_fs_daemon_paths",
                "glob",
            ),
            (
                "virtio_fs_extra_args = [\"--fs-bw-size=ten\"]",
                "virtio_fs_extra_args",
                "ten",
            ),
        ] {
            let (key, msg) = key_err(s);
            assert_eq!(key, k, "{s}: {msg}");
            assert!(msg.contains(needle), "{s}: {msg}");
        }
    }

    #[test]
    fn good_values() {
        for q in [1, 2, 256, 512, 1024] {
            assert_eq!(
                load(&format!("virtio_fs_queue_size = {q}"))
                    .unwrap()
                    .virtio_fs_queue_size,
                q
            );
        }
        assert_eq!(
            load("virtio_fs_cache = \"\"").unwrap().virtio_fs_cache,
            CacheMode::Auto
        );
        for m in ["never", "metadata", "auto", "always"] {
            let c = load(&format!("virtio_fs_cache = \"{m}\"")).unwrap();
            assert_eq!(c.virtio_fs_cache.as_str(), m);
        }
        assert_eq!(
            load("virtio_fs_cache_size = 0")
                .unwrap()
                .virtio_fs_cache_size,
            0
        );
    }

    #[test]
    fn shared_fs_modes() {
        for (v, spawns) in [("virtio-fs", true), ("virtio-9p", false), ("none", false)] {
            let c = load(&format!("shared_fs = \"{v}\"")).unwrap();
            assert_eq!(c.spawns_daemon(), spawns);
            assert_eq!(c.no_daemon_reason().is_none(), spawns);
            if !spawns {
                assert!(c.no_daemon_reason().unwrap().contains(v));
            }
        }
        let e = load("shared_fs = \"virtio-fs-nydus\"").unwrap_err();
        assert!(matches!(e, Error::NotSupported(_)), "{e}");
        assert!(e.to_string().contains("not supported") && e.to_string().contains("nydus"));
    }

    #[test]
    fn missing_sections() {
        let e = VirtioFsConfig::from_toml_str("[hypervisor.clh]\n", "/f.toml", "qemu").unwrap_err();
        assert!(
            e.to_string()
                .contains("no [hypervisor.qemu] section (found: clh)"),
            "{e}"
        );
        let e = VirtioFsConfig::from_toml_str("[runtime]\n", "/f.toml", "qemu").unwrap_err();
        assert!(e.to_string().contains("no [hypervisor.*]"), "{e}");
        let e = VirtioFsConfig::from_toml_str("[hypervisor.qemu\n", "/f.toml", "qemu").unwrap_err();
        assert!(e.to_string().starts_with("/f.toml: not valid TOML"), "{e}");
    }
}
