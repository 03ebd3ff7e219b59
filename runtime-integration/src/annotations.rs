//! Pod annotations, applied as Kata applies them, with stricter rules for the daemon's flags.
//!
//! Honoured annotations (prefix `io.katacontainers.config.hypervisor.`):
//! `virtio_fs_daemon`, `virtio_fs_extra_args`, `virtio_fs_cache`, `virtio_fs_cache_size`,
//! `shared_fs`. Annotations outside that prefix, and other hypervisor annotations, are not this
//! crate's business and are ignored.
//!
//! Rules (each violation is an [`Error::Annotation`] naming the annotation):
//! * **Enabled.** The annotation's short name (after the prefix) must fully match one of the
//!   configuration's `enable_annotations` regexes (anchored: `virtio_fs` does *not* enable
//!   `virtio_fs_daemon`; Kata's unanchored match would. The full name also matches.).
//! * **Daemon path.** `virtio_fs_daemon` must be absolute, free of `..`, and match a glob of
//!   `valid_virtio_fs_daemon_paths` (`*` does not cross `/`); an empty list rejects it.
//! * **Extra args.** `virtio_fs_extra_args` is a JSON array of strings appended after the
//!   configuration's extra args (the daemon's last flag wins). Unlike Kata, only the rate-limit
//!   flags `--fs-{bw,read-bw,write-bw,ops}-{size,burst}` are accepted; anything else
//!   (`--shared-dir=/`, `--sandbox=none`, `--fd`, `-o ...`) is rejected. Both `--fs-bw-size=10M`
//!   and the two-token `"--fs-bw-size", "10M"` are accepted; the latter is normalised to the
//!   `=` form. Values use the daemon's own parser ([`ratelimit::parse_quantity`]); the flag
//!   table and the tightening rule are [`crate::limits`]'.
//! * **Only tighten.** Where the operator set a limit, a pod value above it is rejected (not
//!   clamped), and `0` (unlimited) is rejected because it would remove the limit. A pod burst
//!   must not exceed the operator's burst (or, when the operator gave no burst, the operator's
//!   size). Where the operator set no limit, the pod may add one (a burst then needs a size).
//! * **Cache.** `virtio_fs_cache` takes the configuration's values; `virtio_fs_cache_size`
//!   must be 0 (no DAX).
//! * **Shared fs.** Where the configuration's `shared_fs` is `virtio-fs`, the `shared_fs`
//!   annotation may only restate it: `virtio-9p` and `none` start no daemon, so they would
//!   escape the operator's limits. Where the configuration starts no daemon, a pod may choose
//!   `virtio-fs` (its daemon gets the operator's arguments and limits). `virtio-fs-nydus` is
//!   not supported.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::config::{check_cache_size, CacheMode, ParseFailure, SharedFs, VirtioFsConfig};
use crate::error::{Error, Result};
use crate::limits::{check_tightening, parse_pod_extra_args, PodFlag};

/// Prefix of Kata's hypervisor annotations.
pub const PREFIX: &str = "io.katacontainers.config.hypervisor.";
/// `io.katacontainers.config.hypervisor.virtio_fs_daemon`
pub const VIRTIO_FS_DAEMON: &str = "io.katacontainers.config.hypervisor.virtio_fs_daemon";
/// `io.katacontainers.config.hypervisor.virtio_fs_extra_args`
pub const VIRTIO_FS_EXTRA_ARGS: &str = "io.katacontainers.config.hypervisor.virtio_fs_extra_args";
/// `io.katacontainers.config.hypervisor.virtio_fs_cache`
pub const VIRTIO_FS_CACHE: &str = "io.katacontainers.config.hypervisor.virtio_fs_cache";
/// `io.katacontainers.config.hypervisor.virtio_fs_cache_size`
pub const VIRTIO_FS_CACHE_SIZE: &str = "io.katacontainers.config.hypervisor.virtio_fs_cache_size";
/// `io.katacontainers.config.hypervisor.shared_fs`
pub const SHARED_FS: &str = "io.katacontainers.config.hypervisor.shared_fs";

fn enabled(cfg: &VirtioFsConfig, name: &str) -> Result<bool> {
    let short = name.strip_prefix(PREFIX).unwrap_or(name);
    for r in &cfg.enable_annotations {
        let re = regex::Regex::new(&format!("^(?:{r})$")).map_err(|e| Error::ConfigKey {
            file: cfg.source.clone(),
            section: format!("hypervisor.{}", cfg.hypervisor),
            key: "enable_annotations".into(),
            message: format!("{r:?} is not a valid regex: {e}"),
        })?;
        if re.is_match(short) || re.is_match(name) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Checks an annotation-supplied daemon path against `valid_virtio_fs_daemon_paths`.
pub fn check_daemon_path(globs: &[String], path: &str) -> std::result::Result<PathBuf, String> {
    if globs.is_empty() {
        return Err(
            "valid_virtio_fs_daemon_paths is empty, so no daemon path may be set by annotation"
                .into(),
        );
    }
    let p = Path::new(path);
    if !p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!("{path:?} must be an absolute path without \"..\""));
    }
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    for g in globs {
        if let Ok(pat) = glob::Pattern::new(g) {
            if pat.matches_path_with(p, opts) {
                return Ok(p.to_path_buf());
            }
        }
    }
    Err(format!(
        "{path:?} matches none of valid_virtio_fs_daemon_paths {globs:?}"
    ))
}

/// A pod may not move a sandbox off the daemon-backed `virtio-fs` of the configuration: with
/// `virtio-9p` or `none` no daemon starts, so none of the operator's limits would apply.
/// Restating `virtio-fs`, or choosing it where the configuration has no daemon (the daemon
/// then carries the operator's limits), is allowed.
fn check_shared_fs(cfg: &VirtioFsConfig, fs: SharedFs) -> std::result::Result<(), String> {
    if cfg.spawns_daemon() && fs != SharedFs::VirtioFs {
        return Err(format!(
            "{:?} refused: the configuration's shared_fs is \"virtio-fs\", whose daemon \
             enforces the operator's I/O limits; a pod may not switch to a filesystem without \
             one",
            fs.as_str()
        ));
    }
    Ok(())
}

/// Applies the pod's annotations to the operator's configuration and returns the result.
pub fn apply(
    cfg: &VirtioFsConfig,
    annotations: &BTreeMap<String, String>,
) -> Result<VirtioFsConfig> {
    let mut out = cfg.clone();
    let mut pod_flags: Vec<PodFlag> = Vec::new();
    let mut pod_weight: Option<u64> = None;
    for (name, value) in annotations {
        if !name.starts_with(PREFIX) {
            continue;
        }
        let known = [
            VIRTIO_FS_DAEMON,
            VIRTIO_FS_EXTRA_ARGS,
            VIRTIO_FS_CACHE,
            VIRTIO_FS_CACHE_SIZE,
            SHARED_FS,
        ];
        if !known.contains(&name.as_str()) {
            log::debug!("annotation {name}: not a virtio-fs annotation; ignored here");
            continue;
        }
        let reject = |message: String| Error::Annotation {
            name: name.clone(),
            message,
        };
        if !enabled(cfg, name)? {
            return Err(reject(format!(
                "not enabled: no regex in enable_annotations {:?} of [hypervisor.{}] in {} matches {:?}",
                cfg.enable_annotations,
                cfg.hypervisor,
                cfg.source.display(),
                name.strip_prefix(PREFIX).unwrap_or(name)
            )));
        }
        match name.as_str() {
            VIRTIO_FS_DAEMON => {
                out.virtio_fs_daemon =
                    check_daemon_path(&cfg.valid_virtio_fs_daemon_paths, value).map_err(reject)?;
            }
            VIRTIO_FS_EXTRA_ARGS => {
                let op_weight = crate::group_args::operator_weight(&cfg.virtio_fs_extra_args);
                let (weight, value) =
                    crate::group_args::take_pod_weight(value, op_weight).map_err(reject)?;
                pod_weight = weight;
                let flags = parse_pod_extra_args(&value).map_err(reject)?;
                check_tightening(&cfg.operator_limits(), &flags).map_err(reject)?;
                pod_flags = flags;
            }
            VIRTIO_FS_CACHE => {
                out.virtio_fs_cache = CacheMode::parse(value).map_err(reject)?;
            }
            VIRTIO_FS_CACHE_SIZE => {
                let n: u32 = value
                    .trim()
                    .parse()
                    .map_err(|_| reject(format!("{value:?} is not a non-negative integer")))?;
                check_cache_size(n).map_err(reject)?;
                out.virtio_fs_cache_size = n;
            }
            SHARED_FS => {
                let fs = SharedFs::parse(value).map_err(|f| match f {
                    ParseFailure::NotSupported(m) => {
                        Error::NotSupported(format!("annotation {name}: {m}"))
                    }
                    ParseFailure::Invalid(m) => reject(m),
                })?;
                check_shared_fs(cfg, fs).map_err(reject)?;
                out.shared_fs = fs;
            }
            _ => unreachable!(),
        }
    }
    out.virtio_fs_extra_args
        .extend(pod_flags.iter().map(PodFlag::arg));
    out.virtio_fs_extra_args
        .extend(pod_weight.map(|w| format!("{}={w}", limits_api::group::WEIGHT)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(enable: &[&str]) -> VirtioFsConfig {
        let mut c = VirtioFsConfig::defaults("/etc/kata/configuration.toml", "qemu");
        c.enable_annotations = enable.iter().map(|s| s.to_string()).collect();
        c.virtio_fs_extra_args = [
            "--fs-bw-burst=20000000",
            "--fs-bw-size=10000000",
            "--thread-pool-size=1",
            "--announce-submounts",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        c
    }

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn rejected(c: &VirtioFsConfig, name: &str, value: &str) -> String {
        match apply(c, &ann(&[(name, value)])) {
            Err(Error::Annotation { name: n, message }) => {
                assert_eq!(n, name);
                message
            }
            other => panic!("{name}={value}: expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn extra_args_allowed_and_appended_last() {
        let c = cfg(&["virtio_fs_extra_args"]);
        let out = apply(
            &c,
            &ann(&[(VIRTIO_FS_EXTRA_ARGS, r#"["--fs-bw-size=5M"]"#)]),
        )
        .unwrap();
        assert_eq!(out.virtio_fs_extra_args.last().unwrap(), "--fs-bw-size=5M");
        assert_eq!(out.virtio_fs_extra_args.len(), 5);
        assert_eq!(out.operator_limits().bw.size, Some(5_000_000));
        assert_eq!(out.operator_limits().bw.burst, Some(20_000_000));
        // Two-token form is normalised.
        let out = apply(
            &c,
            &ann(&[(
                VIRTIO_FS_EXTRA_ARGS,
                r#"["--fs-bw-size", "5Mi", "--fs-ops-size=100"]"#,
            )]),
        )
        .unwrap();
        assert_eq!(
            &out.virtio_fs_extra_args[4..],
            &["--fs-bw-size=5Mi", "--fs-ops-size=100"]
        );
        // Annotations outside our set are ignored.
        let out = apply(
            &c,
            &ann(&[
                ("io.katacontainers.config.hypervisor.default_memory", "4096"),
                ("foo", "bar"),
            ]),
        )
        .unwrap();
        assert_eq!(out, c);
    }

    #[test]
    fn name_not_enabled() {
        let m = rejected(&cfg(&[]), VIRTIO_FS_EXTRA_ARGS, r#"["--fs-bw-size=5M"]"#);
        assert!(m.contains("not enabled"), "{m}");
        // Anchored: a prefix regex does not enable a longer name.
        let m = rejected(
            &cfg(&["virtio_fs"]),
            VIRTIO_FS_DAEMON,
            "/opt/kata/libexec/virtiofsd",
        );
        assert!(m.contains("not enabled"), "{m}");
        // Regex alternatives and the full name work.
        let c = cfg(&[
            "virtio_fs_(cache|daemon)",
            r"io\.katacontainers\.config\.hypervisor\.shared_fs",
        ]);
        let out = apply(
            &c,
            &ann(&[(VIRTIO_FS_CACHE, "never"), (SHARED_FS, "virtio-fs")]),
        )
        .unwrap();
        assert_eq!(out.virtio_fs_cache, CacheMode::Never);
        assert_eq!(out.shared_fs, SharedFs::VirtioFs);
    }

    #[test]
    fn daemon_path_globs() {
        let mut c = cfg(&["virtio_fs_daemon"]);
        c.valid_virtio_fs_daemon_paths = vec![
            "/opt/kata/libexec/virtiofsd*".into(),
            "/usr/libexec/virtiofsd".into(),
        ];
        let out = apply(
            &c,
            &ann(&[(VIRTIO_FS_DAEMON, "/opt/kata/libexec/virtiofsd-v2")]),
        )
        .unwrap();
        assert_eq!(
            out.virtio_fs_daemon,
            Path::new("/opt/kata/libexec/virtiofsd-v2")
        );
        for bad in [
            "/tmp/evil",
            "/opt/kata/libexec/virtiofsd/../../../tmp/evil",
            "/opt/kata/libexec/virtiofsd-x/evil",
            "virtiofsd",
        ] {
            let m = rejected(&c, VIRTIO_FS_DAEMON, bad);
            assert!(
                m.contains("valid_virtio_fs_daemon_paths") || m.contains("absolute"),
                "{bad}: {m}"
            );
        }
        c.valid_virtio_fs_daemon_paths.clear();
        let m = rejected(&c, VIRTIO_FS_DAEMON, "/opt/kata/libexec/virtiofsd");
        assert!(m.contains("empty"), "{m}");
    }

    #[test]
    fn malformed_json() {
        let c = cfg(&["virtio_fs_extra_args"]);
        for bad in [
            "--fs-bw-size=5M",
            "[\"--fs-bw-size=5M\"",
            "[1]",
            "{\"a\":1}",
        ] {
            let m = rejected(&c, VIRTIO_FS_EXTRA_ARGS, bad);
            assert!(m.contains("JSON array"), "{bad}: {m}");
        }
    }

    #[test]
    fn only_rate_limit_flags() {
        let c = cfg(&["virtio_fs_extra_args"]);
        for bad in [
            "--shared-dir=/",
            "--sandbox=none",
            "--fd=4",
            "--socket-path=/x",
            "-o",
            "--xattr",
            "--fs-foo=1",
            "--thread-pool-size=64",
        ] {
            let m = rejected(
                &c,
                VIRTIO_FS_EXTRA_ARGS,
                &format!("[\"--fs-bw-size=5M\", {bad:?}]"),
            );
            assert!(m.contains(&format!("{bad:?} is not allowed")), "{bad}: {m}");
        }
        let m = rejected(&c, VIRTIO_FS_EXTRA_ARGS, r#"["--fs-bw-size"]"#);
        assert!(m.contains("needs a value"), "{m}");
        let m = rejected(
            &c,
            VIRTIO_FS_EXTRA_ARGS,
            r#"["--fs-bw-size", "--shared-dir=/"]"#,
        );
        assert!(m.contains("needs a value"), "{m}");
        let m = rejected(&c, VIRTIO_FS_EXTRA_ARGS, r#"["--fs-bw-size=5X"]"#);
        assert!(m.contains("--fs-bw-size=5X"), "{m}");
    }

    #[test]
    fn pod_may_only_tighten() {
        let c = cfg(&["virtio_fs_extra_args"]);
        let m = rejected(&c, VIRTIO_FS_EXTRA_ARGS, r#"["--fs-bw-size=20M"]"#);
        assert!(
            m.contains("above the operator's limit --fs-bw-size=10000000"),
            "{m}"
        );
        // Units: 10M == 10000000 is equal, allowed; 10Mi is above.
        apply(
            &c,
            &ann(&[(VIRTIO_FS_EXTRA_ARGS, r#"["--fs-bw-size=10M"]"#)]),
        )
        .unwrap();
        rejected(&c, VIRTIO_FS_EXTRA_ARGS, r#"["--fs-bw-size=10Mi"]"#);
        // A later lower value does not excuse an earlier higher one.
        rejected(
            &c,
            VIRTIO_FS_EXTRA_ARGS,
            r#"["--fs-bw-size=20M", "--fs-bw-size=1M"]"#,
        );
        let m = rejected(&c, VIRTIO_FS_EXTRA_ARGS, r#"["--fs-bw-burst=30M"]"#);
        assert!(m.contains("above the operator's burst (20000000)"), "{m}");
        apply(
            &c,
            &ann(&[(VIRTIO_FS_EXTRA_ARGS, r#"["--fs-bw-burst=5M"]"#)]),
        )
        .unwrap();
        // Unlimited buckets of the operator may be limited by the pod.
        apply(
            &c,
            &ann(&[(
                VIRTIO_FS_EXTRA_ARGS,
                r#"["--fs-ops-size=1000", "--fs-ops-burst=10"]"#,
            )]),
        )
        .unwrap();
        let m = rejected(&c, VIRTIO_FS_EXTRA_ARGS, r#"["--fs-read-bw-burst=1M"]"#);
        assert!(m.contains("needs a non-zero --fs-read-bw-size"), "{m}");
    }

    #[test]
    fn pod_may_not_remove_a_limit() {
        let c = cfg(&["virtio_fs_extra_args"]);
        let m = rejected(&c, VIRTIO_FS_EXTRA_ARGS, r#"["--fs-bw-size=0"]"#);
        assert!(m.contains("would remove the operator's limit"), "{m}");
        let m = rejected(&c, VIRTIO_FS_EXTRA_ARGS, r#"["--fs-bw-burst=0"]"#);
        assert!(m.contains("greater than 0"), "{m}");
        // Without an operator limit, 0 is fine (still unlimited).
        apply(
            &c,
            &ann(&[(VIRTIO_FS_EXTRA_ARGS, r#"["--fs-write-bw-size=0"]"#)]),
        )
        .unwrap();
    }

    #[test]
    fn operator_burst_defaults_to_size() {
        let mut c = cfg(&["virtio_fs_extra_args"]);
        c.virtio_fs_extra_args = vec!["--fs-bw-size".into(), "10M".into()];
        assert_eq!(c.operator_limits().bw.size, Some(10_000_000));
        rejected(&c, VIRTIO_FS_EXTRA_ARGS, r#"["--fs-bw-burst=11M"]"#);
        apply(
            &c,
            &ann(&[(VIRTIO_FS_EXTRA_ARGS, r#"["--fs-bw-burst=10M"]"#)]),
        )
        .unwrap();
    }

    #[test]
    fn cache_and_shared_fs() {
        let c = cfg(&[".*"]);
        let m = rejected(&c, VIRTIO_FS_CACHE, "fast");
        assert!(m.contains("fast"), "{m}");
        let m = rejected(&c, VIRTIO_FS_CACHE_SIZE, "64");
        assert!(m.contains("DAX"), "{m}");
        let m = rejected(&c, VIRTIO_FS_CACHE_SIZE, "x");
        assert!(m.contains("integer"), "{m}");
        apply(&c, &ann(&[(VIRTIO_FS_CACHE_SIZE, "0")])).unwrap();
        let e = apply(&c, &ann(&[(SHARED_FS, "virtio-fs-nydus")])).unwrap_err();
        assert!(matches!(e, Error::NotSupported(_)), "{e}");
    }

    #[test]
    fn shared_fs_may_not_leave_the_daemon_backed_virtio_fs() {
        let c = cfg(&[".*"]);
        assert!(c.spawns_daemon());
        for fs in ["virtio-9p", "none"] {
            let m = rejected(&c, SHARED_FS, fs);
            assert!(
                m.contains(&format!("\"{fs}\" refused")) && m.contains("operator's I/O limits"),
                "{m}"
            );
        }
        let out = apply(&c, &ann(&[(SHARED_FS, "virtio-fs")])).unwrap();
        assert!(out.spawns_daemon());
        // Without a daemon in the configuration a pod may choose virtio-fs (which has one) or
        // the other daemon-less filesystem.
        for (from, to) in [
            (SharedFs::Virtio9p, "virtio-fs"),
            (SharedFs::None, "virtio-9p"),
        ] {
            let mut c = cfg(&[".*"]);
            c.shared_fs = from;
            let out = apply(&c, &ann(&[(SHARED_FS, to)])).unwrap();
            assert_eq!(out.shared_fs.as_str(), to);
        }
    }
}
