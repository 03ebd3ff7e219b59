//! Kata's configuration as its runtimes read it: the base file plus the drop-ins of the
//! `config.d/` directory beside it, merged.
//!
//! Both runtimes do the same (Go: `decodeDropIns` in `katautils/config.go`; runtime-rs:
//! `kata-types/src/config/drop_in.rs`), and so does this module:
//! * the base path is resolved through symbolic links first (Go `ResolvePath`, Rust
//!   `canonicalize`), and `config.d` is looked for beside the *resolved* file (kata-deploy
//!   links `configuration-qemu.toml` to `runtimes/qemu/configuration-qemu.toml`, whose
//!   `config.d/` holds the drop-ins);
//! * a missing `config.d` means no drop-ins; every entry of it is a drop-in, whatever its name
//!   (no `.toml` filter, dot files included), read in byte order of the file names;
//! * a drop-in is merged key by key: a table merges into the table of the same name, any
//!   other value (arrays included) replaces the earlier one, so later files win;
//! * an entry that is not a file (a directory), or a file that is not valid TOML, fails the
//!   whole load.
//!
//! One difference between the runtimes is kept visible: runtime-rs refuses a symbolic link in
//! `config.d` (it checks the entry's own type), the Go runtime follows it. This module
//! follows it too, so the result is the Go runtime's; [`Layers::symlinked_dropins`] lists them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The name of the drop-in directory beside the resolved base file.
pub const DROPIN_DIR: &str = "config.d";

/// One file of a configuration: its path and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    /// Where it was read from (or would be written to).
    pub path: PathBuf,
    /// The TOML text.
    pub text: String,
}

/// A base file and its drop-ins, in the order Kata merges them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layers {
    /// The path given.
    pub given: PathBuf,
    /// The base file after resolving symbolic links.
    pub resolved: PathBuf,
    /// The base file first, then the drop-ins in file-name order.
    pub files: Vec<Layer>,
    /// Drop-ins that are symbolic links (runtime-rs refuses these).
    pub symlinked_dropins: Vec<PathBuf>,
}

impl Layers {
    /// Reads `base` and the drop-ins of `config.d/` beside its resolved path.
    pub fn read(base: &Path) -> Result<Layers> {
        let file_err = |file: &Path, message: String| Error::ConfigFile {
            file: file.to_path_buf(),
            message,
        };
        let resolved = std::fs::canonicalize(base)
            .map_err(|e| file_err(base, format!("cannot resolve: {e}")))?;
        let text = std::fs::read_to_string(&resolved)
            .map_err(|e| file_err(base, format!("cannot read: {e}")))?;
        let mut files = vec![Layer {
            path: base.to_path_buf(),
            text,
        }];
        let dir = dropin_dir(&resolved);
        let mut symlinked = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => Some(e),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(file_err(&dir, format!("cannot read the directory: {e}"))),
        };
        if let Some(entries) = entries {
            let mut names = Vec::new();
            for e in entries {
                let e = e.map_err(|e| file_err(&dir, format!("cannot read the directory: {e}")))?;
                names.push(e.file_name());
            }
            names.sort();
            for name in names {
                let path = dir.join(&name);
                let meta = std::fs::symlink_metadata(&path)
                    .map_err(|e| file_err(&path, format!("cannot stat: {e}")))?;
                if meta.file_type().is_symlink() {
                    symlinked.push(path.clone());
                }
                let meta = std::fs::metadata(&path)
                    .map_err(|e| file_err(&path, format!("cannot stat: {e}")))?;
                if !meta.is_file() {
                    return Err(file_err(
                        &path,
                        "a drop-in must be a regular file (Kata fails on this entry)".into(),
                    ));
                }
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| file_err(&path, format!("cannot read: {e}")))?;
                files.push(Layer { path, text });
            }
        }
        Ok(Layers {
            given: base.to_path_buf(),
            resolved,
            files,
            symlinked_dropins: symlinked,
        })
    }

    /// The drop-in directory of this configuration.
    pub fn dropin_dir(&self) -> PathBuf {
        dropin_dir(&self.resolved)
    }

    /// These layers with the drop-in at `path` replaced by `text` (or added at its place in
    /// the name order, or removed when `text` is `None`): what Kata would read after writing
    /// it.
    pub fn with_dropin(&self, path: &Path, text: Option<&str>) -> Layers {
        let mut out = self.clone();
        out.files.retain(|l| l.path != path);
        if let Some(text) = text {
            let name = path.file_name().unwrap_or_default().to_os_string();
            let at = out.files[1..]
                .iter()
                .position(|l| l.path.file_name().unwrap_or_default() > name.as_os_str())
                .map_or(out.files.len(), |i| i + 1);
            out.files.insert(
                at,
                Layer {
                    path: path.to_path_buf(),
                    text: text.to_string(),
                },
            );
        }
        out
    }

    /// These layers with the base file's text replaced.
    pub fn with_base(&self, text: &str) -> Layers {
        let mut out = self.clone();
        out.files[0].text = text.to_string();
        out
    }

    /// Parses every layer and merges them as Kata does.
    pub fn merge(&self) -> Result<Merged> {
        let mut table = toml::Table::new();
        let mut origins = BTreeMap::new();
        for layer in &self.files {
            let t: toml::Table =
                layer
                    .text
                    .parse()
                    .map_err(|e: toml::de::Error| Error::ConfigFile {
                        file: layer.path.clone(),
                        message: format!("not valid TOML: {e}"),
                    })?;
            record_origins(&t, "", &layer.path, &mut origins);
            merge_tables(&mut table, t);
        }
        Ok(Merged { table, origins })
    }
}

/// `config.d` beside `resolved_base`.
pub fn dropin_dir(resolved_base: &Path) -> PathBuf {
    resolved_base
        .parent()
        .unwrap_or(Path::new("/"))
        .join(DROPIN_DIR)
}

/// The merged configuration, and which file last set each leaf key.
#[derive(Clone, Debug, PartialEq)]
pub struct Merged {
    /// The merged tree.
    pub table: toml::Table,
    /// Dotted key (`hypervisor.qemu.virtio_fs_daemon`) -> the file that set it last.
    pub origins: BTreeMap<String, PathBuf>,
}

impl Merged {
    /// The file that last set the dotted `key`, if any did.
    pub fn origin(&self, key: &str) -> Option<&Path> {
        self.origins.get(key).map(PathBuf::as_path)
    }

    /// The names of the `[hypervisor.*]` sections.
    pub fn hypervisors(&self) -> Vec<String> {
        match self.table.get("hypervisor") {
            Some(toml::Value::Table(t)) => t.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }
}

fn record_origins(t: &toml::Table, prefix: &str, file: &Path, out: &mut BTreeMap<String, PathBuf>) {
    for (k, v) in t {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(sub) => record_origins(sub, &key, file, out),
            _ => {
                out.insert(key, file.to_path_buf());
            }
        }
    }
}

/// Merges `dropin` into `base`: tables key by key, every other value replaced.
pub fn merge_tables(base: &mut toml::Table, dropin: toml::Table) {
    for (k, v) in dropin {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(d)) => merge_tables(b, d),
            (Some(slot), v) => *slot = v,
            (None, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(s: &str) -> toml::Table {
        s.parse().unwrap()
    }

    #[test]
    fn tables_merge_key_by_key_and_arrays_are_replaced() {
        let mut base = table(
            "[hypervisor.qemu]\npath = \"/q\"\nvirtio_fs_extra_args = [\"a\", \"b\"]\n[runtime]\nx = 1\n",
        );
        merge_tables(
            &mut base,
            table("[hypervisor.qemu]\nvirtio_fs_extra_args = [\"c\"]\n[hypervisor.clh]\np = 2\n"),
        );
        assert_eq!(
            base,
            table("[hypervisor.qemu]\npath = \"/q\"\nvirtio_fs_extra_args = [\"c\"]\n[hypervisor.clh]\np = 2\n[runtime]\nx = 1\n")
        );
        // A table replaces a scalar, and a scalar a table (runtime-rs `merge`).
        let mut b = table("a = 1\n[t]\nk = 1\n");
        merge_tables(&mut b, table("t = 2\n[a]\nk = 3\n"));
        assert_eq!(b, table("t = 2\n[a]\nk = 3\n"));
    }

    #[test]
    fn with_dropin_keeps_name_order() {
        let l = Layers {
            given: "/c/b.toml".into(),
            resolved: "/c/b.toml".into(),
            files: [
                "/c/b.toml",
                "/c/config.d/10-a.toml",
                "/c/config.d/50-z.toml",
            ]
            .iter()
            .map(|p| Layer {
                path: p.into(),
                text: String::new(),
            })
            .collect(),
            symlinked_dropins: vec![],
        };
        let names = |l: &Layers| -> Vec<String> {
            l.files
                .iter()
                .map(|f| f.path.display().to_string())
                .collect()
        };
        let added = l.with_dropin(Path::new("/c/config.d/20-m.toml"), Some("x = 1"));
        assert_eq!(
            names(&added),
            [
                "/c/b.toml",
                "/c/config.d/10-a.toml",
                "/c/config.d/20-m.toml",
                "/c/config.d/50-z.toml"
            ]
        );
        let last = l.with_dropin(Path::new("/c/config.d/90-m.toml"), Some(""));
        assert_eq!(names(&last)[3], "/c/config.d/90-m.toml");
        let gone = added.with_dropin(Path::new("/c/config.d/20-m.toml"), None);
        assert_eq!(names(&gone), names(&l));
    }
}
