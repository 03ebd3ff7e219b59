//! Submount announcement for mounts the runtime adds under the shared directory after the
//! daemon started (Kata bind-mounts container root filesystems there), in every sandbox mode —
//! including a bind mount from the same filesystem, whose st_dev equals its parent's.

use std::path::{Path, PathBuf};
use std::process::Command;

use vufs_frontend::{FuseSession, ROOT_ID};
use vufs_testkit::{daemon_bin, Build, Daemon, Scratch};

const FUSE_ATTR_SUBMOUNT: u32 = 1;

fn mount(args: &[&str]) {
    let out = Command::new("mount")
        .args(args)
        .output()
        .expect("run mount");
    assert!(
        out.status.success(),
        "mount {args:?} failed (these tests need root): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Unmounts (lazily, so a failing test never leaves a busy mount) in reverse order.
struct Mounts(Vec<PathBuf>);

impl Drop for Mounts {
    fn drop(&mut self) {
        for p in self.0.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(p).status();
        }
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn late_same_fs_bind_mount_is_announced_in_every_sandbox() {
    for mode in ["namespace", "chroot", "none"] {
        let s = Scratch::new();
        // As on a systemd host, the directory is a shared mount, so the host's later mounts
        // propagate into the daemon's mount namespace.
        let root = s.dir.path().to_path_buf();
        mount(&["--bind", p(&root), p(&root)]);
        let mut guard = Mounts(vec![root.clone()]);
        mount(&["--make-rshared", p(&root)]);
        std::fs::create_dir_all(s.share.join("late")).unwrap();
        std::fs::create_dir_all(s.share.join("src")).unwrap();
        std::fs::write(s.share.join("src/marker"), b"m").unwrap();

        let share = format!("--shared-dir={}", s.share.display());
        let sandbox = format!("--sandbox={mode}");
        let d = Daemon::start(
            &daemon_bin(Build::Normal),
            &s.socket(),
            &[&share, &sandbox],
            &[],
        );
        let mut fs = FuseSession::connect(s.socket()).expect("connect");
        fs.init().unwrap();
        let before = fs.lookup(ROOT_ID, b"late").unwrap();
        assert_eq!(
            before.attr.flags & FUSE_ATTR_SUBMOUNT,
            0,
            "{mode}: not a mount point yet"
        );

        let late = s.share.join("late");
        mount(&["--bind", p(&s.share.join("src")), p(&late)]);
        guard.0.push(late.clone());
        let after = fs.lookup(ROOT_ID, b"late").unwrap();
        assert_ne!(after.nodeid, before.nodeid, "{mode}: the mount is visible");
        assert_eq!(
            after.attr.flags & FUSE_ATTR_SUBMOUNT,
            FUSE_ATTR_SUBMOUNT,
            "{mode}: same-filesystem bind mount not announced as a submount"
        );
        fs.lookup(after.nodeid, b"marker")
            .expect("the mounted content is served");
        // Files are never submounts, and the parent itself is not.
        let src = fs.lookup(ROOT_ID, b"src").unwrap();
        assert_eq!(
            src.attr.flags & FUSE_ATTR_SUBMOUNT,
            0,
            "{mode}: src is not a mount point"
        );
        drop(fs);
        drop(d);
    }
}
