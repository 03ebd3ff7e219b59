//! The install record: what `install` wrote and what it replaced, by SHA-256, so `uninstall`
//! restores exactly that and refuses when someone else changed a file since.
//!
//! It lives beside the resolved base file ([`RECORD_NAME`]), never in `config.d/` (Kata
//! reads every entry there as TOML). It holds no time stamps, so writing the same install
//! again gives the same bytes.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The record's file name, in the directory of the resolved base configuration.
pub const RECORD_NAME: &str = "virtiofs-sandbox-install.json";
/// The record format's version.
pub const RECORD_VERSION: u32 = 1;

/// One file `install` changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// The file.
    pub path: PathBuf,
    /// Its SHA-256 before the first install (`None`: it did not exist).
    pub before_sha256: Option<String>,
    /// Where the replaced file is kept (`None`: nothing was replaced).
    pub backup: Option<PathBuf>,
    /// The SHA-256 `install` left it with.
    pub after_sha256: String,
}

/// Everything one configuration's install changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// [`RECORD_VERSION`].
    pub version: u32,
    /// The configuration given to `install`.
    pub config: PathBuf,
    /// The daemon binary (installed at `path`).
    pub daemon: FileRecord,
    /// The configuration files written (the drop-in, or the base file in place).
    pub files: Vec<FileRecord>,
    /// Directories `install` created (removed again when empty).
    pub created_dirs: Vec<PathBuf>,
}

impl Record {
    /// The record path for a configuration whose resolved base file is `resolved`.
    pub fn path_for(resolved: &Path) -> PathBuf {
        resolved
            .parent()
            .unwrap_or(Path::new("/"))
            .join(RECORD_NAME)
    }

    /// Reads the record at `path` (`None` if there is none).
    pub fn load(path: &Path) -> Result<Option<Record>> {
        let Some(bytes) = super::files::read_opt(path)? else {
            return Ok(None);
        };
        let r: Record = serde_json::from_slice(&bytes).map_err(|e| {
            Error::Install(format!("{}: not an install record: {e}", path.display()))
        })?;
        if r.version != RECORD_VERSION {
            return Err(Error::Install(format!(
                "{}: record version {} (this tool writes {RECORD_VERSION})",
                path.display(),
                r.version
            )));
        }
        Ok(Some(r))
    }

    /// The record's bytes (pretty JSON and a newline; deterministic).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("serialise the record");
        v.push(b'\n');
        v
    }

    /// The entry of `path` among the configuration files, if any.
    pub fn file(&self, path: &Path) -> Option<&FileRecord> {
        self.files.iter().find(|f| f.path == path)
    }
}
