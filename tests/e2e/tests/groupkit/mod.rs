//! What the node-group tests share: the group file's directory and the group flags.

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A root-only directory for the group file.
pub fn group_dir() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let p = d.path().join("group");
    (d, p)
}

pub fn group_args(path: &Path, rate: u64) -> Vec<String> {
    vec![
        format!("--fs-group={}", path.display()),
        format!("--fs-group-bw-size={rate}"),
        format!("--fs-group-bw-burst={}", rate / 4),
    ]
}
