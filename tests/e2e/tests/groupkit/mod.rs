//! What the node-group tests share: the group file's directory, the group flags, and two
//! members of one group.

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use vufs_testkit::{Build, Daemon, Scratch};

/// A root-only directory for the group file.
pub fn group_dir() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let p = d.path().join("group");
    (d, p)
}

/// The flags that make a daemon a member of the group in `path` of `rate` bytes/s (burst a
/// quarter of it).
pub fn group_args(path: &Path, rate: u64) -> Vec<String> {
    vec![
        format!("--fs-group={}", path.display()),
        format!("--fs-group-bw-size={rate}"),
        format!("--fs-group-bw-burst={}", rate / 4),
    ]
}

/// Two daemons of `build` (with `env`), each on a scratch directory of its own, members of
/// one new group of `rate` bytes/s, each with `--api-socket=auto` and `extra`, both ready.
/// Dropping it stops both, then removes the directories.
pub struct TwoMembers {
    _da: Daemon,
    _db: Daemon,
    /// The members' scratch directories.
    pub a: Scratch,
    pub b: Scratch,
    _group: tempfile::TempDir,
}

impl TwoMembers {
    /// Start both members (see [`TwoMembers`]).
    pub fn start(build: Build, env: &[(&str, &str)], rate: u64, extra: &[String]) -> TwoMembers {
        let (group, path) = group_dir();
        let start = |s: &Scratch| {
            let mut args = vec!["--api-socket=auto".to_string()];
            args.extend(group_args(&path, rate));
            args.extend_from_slice(extra);
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut d = s.start(build, &refs, env);
            d.wait_ready();
            d
        };
        let (a, b) = (Scratch::new(), Scratch::new());
        let (da, db) = (start(&a), start(&b));
        TwoMembers {
            _da: da,
            _db: db,
            a,
            b,
            _group: group,
        }
    }
}
