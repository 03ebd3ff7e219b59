//! What `install` sets in a hypervisor section, written as a drop-in of its own or edited
//! into an existing file with `toml_edit` (comments, order and formatting kept).

use limits_api::{RateLimits, FLAGS};
use toml_edit::{Array, DocumentMut, Item, Table, Value};

use crate::error::{Error, Result};

/// The argument that ends the operator's part of the daemon's command line.
pub const POD_ARGS_FOLLOW: &str = "--pod-args-follow";
/// The annotation `--enable-annotations` lets pods set.
pub const EXTRA_ARGS_ANNOTATION: &str = "virtio_fs_extra_args";

/// The keys `install` sets in one `[hypervisor.<name>]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionValues {
    /// The section name (`qemu`, `clh`, ...).
    pub hypervisor: String,
    /// `virtio_fs_daemon`.
    pub daemon: String,
    /// `valid_virtio_fs_daemon_paths`.
    pub valid_paths: Vec<String>,
    /// `virtio_fs_extra_args`.
    pub extra_args: Vec<String>,
    /// `enable_annotations`, only when asked for.
    pub enable_annotations: Option<Vec<String>>,
}

/// The new `virtio_fs_extra_args`: `current` without `--pod-args-follow` (and without its
/// `--fs-*` flags when `limits` gives any), then the limits given (`--flag=value`, in the
/// flag table's order), then `--pod-args-follow` last.
pub fn extra_args(current: &[String], limits: &RateLimits) -> Vec<String> {
    let replace_limits = FLAGS.iter().any(|f| limits.value(f).is_some());
    let mut out = Vec::new();
    let mut it = current.iter();
    while let Some(a) = it.next() {
        if a == POD_ARGS_FOLLOW {
            continue;
        }
        if replace_limits {
            let name = a.split_once('=').map_or(a.as_str(), |(n, _)| n);
            if FLAGS
                .iter()
                .any(|f| f.long() == name.trim_start_matches("--"))
            {
                if !a.contains('=') {
                    it.next(); // the two-token form's value
                }
                continue;
            }
        }
        out.push(a.clone());
    }
    for f in &FLAGS {
        if let Some(v) = limits.value(f) {
            out.push(format!("--{}={v}", f.long()));
        }
    }
    out.push(POD_ARGS_FOLLOW.to_string());
    out
}

/// `current` plus [`EXTRA_ARGS_ANNOTATION`] (kept once, order kept).
pub fn enable_annotations(current: &[String]) -> Vec<String> {
    let mut v = current.to_vec();
    if !v.iter().any(|r| r == EXTRA_ARGS_ANNOTATION) {
        v.push(EXTRA_ARGS_ANNOTATION.to_string());
    }
    v
}

fn array(items: &[String]) -> Value {
    Value::Array(items.iter().collect::<Array>())
}

fn pairs(s: &SectionValues) -> Vec<(&'static str, Value)> {
    let mut v = vec![
        ("virtio_fs_daemon", Value::from(s.daemon.as_str())),
        ("valid_virtio_fs_daemon_paths", array(&s.valid_paths)),
        ("virtio_fs_extra_args", array(&s.extra_args)),
    ];
    if let Some(a) = &s.enable_annotations {
        v.push(("enable_annotations", array(a)));
    }
    v
}

/// The drop-in `install` writes: a header naming the tool and the undo command, then one
/// section per hypervisor with the keys set.
pub fn dropin_text(config: &str, sections: &[SectionValues]) -> String {
    let mut out = format!(
        "# Written by `virtiofs-sandbox install`: the rate-limiting virtiofsd and its limits.\n\
         # `virtiofs-sandbox uninstall --config {config}` removes it (and restores the daemon).\n\
         # Kata merges config.d/ in file-name order; a later drop-in setting these keys wins.\n"
    );
    for s in sections {
        out.push('\n');
        out.push_str(&format!("[hypervisor.{}]\n", toml_key(&s.hypervisor)));
        for (k, v) in pairs(s) {
            out.push_str(&format!("{k} = {v}\n"));
        }
    }
    out
}

fn toml_key(name: &str) -> String {
    toml_edit::Key::new(name).display_repr().to_string()
}

/// `text` with the keys of `sections` set in place: an existing key keeps its position, its
/// comments and the spacing around its value; a missing key is added at the end of its
/// section; a missing section is added at the end. Everything else stays byte for byte.
pub fn edit_in_place(text: &str, sections: &[SectionValues]) -> Result<String> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| Error::Install(format!("not valid TOML: {e}")))?;
    for s in sections {
        let hv = doc
            .entry("hypervisor")
            .or_insert_with(|| {
                let mut t = Table::new();
                t.set_implicit(true);
                Item::Table(t)
            })
            .as_table_mut()
            .ok_or_else(|| Error::Install("`hypervisor` is not a table".into()))?;
        let sec = hv
            .entry(&s.hypervisor)
            .or_insert_with(|| Item::Table(Table::new()))
            .as_table_mut()
            .ok_or_else(|| {
                Error::Install(format!("`hypervisor.{}` is not a table", s.hypervisor))
            })?;
        for (k, mut v) in pairs(s) {
            match sec.get_mut(k).and_then(Item::as_value_mut) {
                Some(old) => {
                    let d = old.decor().clone();
                    *v.decor_mut() = d;
                    if old.to_string() != v.to_string() {
                        *old = v;
                    }
                }
                None => {
                    sec.insert(k, toml_edit::value(v));
                }
            }
        }
    }
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn extra_args_put_the_limits_and_the_boundary_last() {
        let mut l = RateLimits::default();
        l.set(
            limits_api::Flag::of(ratelimit::Bucket::Bw, limits_api::Field::Size),
            5,
        );
        let cur = strs(&[
            "--thread-pool-size=1",
            "--fs-bw-size=9",
            "--fs-ops-size",
            "7",
            "--pod-args-follow",
            "--announce-submounts",
        ]);
        assert_eq!(
            extra_args(&cur, &l),
            strs(&[
                "--thread-pool-size=1",
                "--announce-submounts",
                "--fs-bw-size=5",
                "--pod-args-follow"
            ])
        );
        // No limits given: the existing ones stay; the boundary is not doubled.
        assert_eq!(
            extra_args(&cur, &RateLimits::default()),
            strs(&[
                "--thread-pool-size=1",
                "--fs-bw-size=9",
                "--fs-ops-size",
                "7",
                "--announce-submounts",
                "--pod-args-follow"
            ])
        );
        let once = extra_args(&cur, &l);
        assert_eq!(extra_args(&once, &l), once, "idempotent");
    }

    #[test]
    fn in_place_keeps_everything_but_the_values() {
        let text = "# head\n[hypervisor.qemu]\n# the daemon\nvirtio_fs_daemon   =   \"/old\" # trailing\npath = \"/q\"\n\n[agent.kata]\n";
        let s = SectionValues {
            hypervisor: "qemu".into(),
            daemon: "/new".into(),
            valid_paths: strs(&["/new"]),
            extra_args: strs(&["--pod-args-follow"]),
            enable_annotations: None,
        };
        let out = edit_in_place(text, std::slice::from_ref(&s)).unwrap();
        assert_eq!(
            out,
            "# head\n[hypervisor.qemu]\n# the daemon\nvirtio_fs_daemon   =   \"/new\" # trailing\npath = \"/q\"\nvalid_virtio_fs_daemon_paths = [\"/new\"]\nvirtio_fs_extra_args = [\"--pod-args-follow\"]\n\n[agent.kata]\n"
        );
        assert_eq!(edit_in_place(&out, &[s]).unwrap(), out, "idempotent");
    }
}
