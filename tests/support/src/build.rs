//! The daemon binary under test, built by cargo into this test binary's target directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// Which build of the daemon to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Build {
    /// The daemon as shipped.
    Normal,
    /// Built with the `seeded-bugs` feature: `VIRTIOFSD_SEEDED_BUG_*` variables switch off
    /// checks. Used to prove the hostile tests can fail.
    Seeded,
}

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The target directory this binary was built into (`.../target/<profile>/deps/x` → target)
/// and the profile.
fn target_dir() -> (PathBuf, &'static str) {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test exe in target/<profile>/deps");
    let profile = if profile_dir.ends_with("release") {
        "release"
    } else {
        "debug"
    };
    (
        profile_dir.parent().expect("target dir").to_path_buf(),
        profile,
    )
}

/// Builds (if needed) and returns the daemon binary for `build`. Panics with cargo's output if
/// the build fails.
pub fn daemon_bin(build: Build) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    static NORMAL: OnceLock<PathBuf> = OnceLock::new();
    static SEEDED: OnceLock<PathBuf> = OnceLock::new();
    let cell = match build {
        Build::Normal => &NORMAL,
        Build::Seeded => &SEEDED,
    };
    cell.get_or_init(|| {
        let _g = LOCK.lock().unwrap();
        let (target, profile) = target_dir();
        let target = match build {
            Build::Normal => target,
            Build::Seeded => target.join("seeded"),
        };
        let mut cmd = Command::new(env!("CARGO"));
        cmd.current_dir(workspace_root())
            .args(["build", "--quiet", "-p", "virtiofsd", "--bin", "virtiofsd"])
            .arg("--target-dir")
            .arg(&target);
        if profile == "release" {
            cmd.arg("--release");
        }
        if build == Build::Seeded {
            cmd.args(["--features", "seeded-bugs"]);
        }
        let out = cmd.output().expect("run cargo build");
        assert!(
            out.status.success(),
            "building virtiofsd ({build:?}) failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        target.join(profile).join("virtiofsd")
    })
    .clone()
}
