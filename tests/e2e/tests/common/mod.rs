//! Helpers shared by the end-to-end tests: a daemon in its own scratch directory, a FUSE
//! session on it (with a new file), snapshots of the host side, and a tmpfs mount guard.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use vufs_frontend::{ConnectOptions, FuseSession, ROOT_ID};
pub use vufs_testkit::{Build, Daemon, Scratch};

/// Default reply timeout in these tests.
pub const T: Duration = Duration::from_secs(5);

/// A FUSE session with `opts` on the daemon of `s`, after INIT, with a new file `f` in the
/// root open read-write: (session, `f`'s node id, its file handle).
pub fn session_with_file(s: &Scratch, opts: &ConnectOptions) -> (FuseSession, u64, u64) {
    let mut fs = FuseSession::connect_with(s.socket(), opts).unwrap();
    fs.init().unwrap();
    let (e, o) = fs
        .create(ROOT_ID, b"f", 0o644, libc::O_RDWR as u32)
        .unwrap();
    (fs, e.nodeid, o.fh)
}

/// A running daemon serving `share/` of its own scratch directory. Drops the daemon first,
/// then unmounts, then removes the scratch directory.
pub struct Env {
    pub d: Daemon,
    pub mount: Option<MountGuard>,
    pub s: Scratch,
}

impl Env {
    /// Starts `build` on a fresh scratch directory with `args` (plus `--shared-dir`).
    pub fn start(build: Build, args: &[&str], env: &[(&str, &str)]) -> Env {
        Env::launch(Scratch::new(), None, build, args, env)
    }

    /// Starts the daemon on an existing scratch directory (e.g. with a mount inside).
    pub fn launch(
        s: Scratch,
        mount: Option<MountGuard>,
        build: Build,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Env {
        let d = s.start(build, args, env);
        Env { d, mount, s }
    }

    /// Connects (no INIT yet) with a 5 s reply timeout.
    pub fn connect_with(&self, opts: ConnectOptions) -> FuseSession {
        let opts = ConnectOptions { timeout: T, ..opts };
        // The socket only ever appears listening: a refused connection is a bug, not retried.
        FuseSession::connect_with(self.s.socket(), &opts)
            .unwrap_or_else(|e| panic!("connect: {e}\n{}", self.d.stderr()))
    }

    /// Connects and sends the frontend's default INIT.
    pub fn session(&self) -> FuseSession {
        let mut fs = self.connect_with(ConnectOptions::default());
        fs.init()
            .unwrap_or_else(|e| panic!("INIT: {e}\n{}", self.d.stderr()));
        fs
    }

    /// A path inside the share.
    pub fn host(&self, rel: &str) -> PathBuf {
        self.s.share.join(rel)
    }

    /// Everything the host side looks like: outside/, stray entries, the share's tree.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            outside: self.s.outside_listing(),
            stray: self.s.stray_root_entries(),
            share: tree(&self.s.share),
        }
    }

    /// The daemon is alive and answers GETATTR(ROOT).
    pub fn still_serving(&mut self, fs: &mut FuseSession) -> Result<(), String> {
        let r = fs.getattr(ROOT_ID);
        if !self.d.alive() {
            return Err(format!(
                "daemon died ({:?}); stderr:\n{}",
                self.d.try_status(),
                self.d.stderr()
            ));
        }
        match r {
            Ok(a) if a.attr.mode & libc::S_IFMT == libc::S_IFDIR => Ok(()),
            Ok(a) => Err(format!("GETATTR(ROOT) mode {:o}", a.attr.mode)),
            Err(e) => Err(format!("GETATTR(ROOT) after the case failed: {e}")),
        }
    }
}

/// The host side as the guest must not be able to change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub outside: Vec<String>,
    pub stray: Vec<String>,
    pub share: Vec<String>,
}

impl Snapshot {
    /// Describes how `now` differs from `self` (the breach), or `Ok`.
    pub fn compare(&self, now: &Snapshot) -> Result<(), String> {
        let mut msg = Vec::new();
        if self.outside != now.outside {
            msg.push(format!(
                "OUTSIDE CHANGED: {:?} -> {:?}",
                self.outside, now.outside
            ));
        }
        if !now.stray.is_empty() && self.stray != now.stray {
            msg.push(format!("STRAY ROOT ENTRIES: {:?}", now.stray));
        }
        if self.share != now.share {
            msg.push(format!(
                "SHARE CHANGED: {:?} -> {:?}",
                self.share, now.share
            ));
        }
        match msg.is_empty() {
            true => Ok(()),
            false => Err(msg.join("; ")),
        }
    }

    /// Whether `now` shows a write outside the share (the escape cases).
    pub fn escaped(&self, now: &Snapshot) -> bool {
        self.outside != now.outside || (!now.stray.is_empty() && self.stray != now.stray)
    }
}

/// Every entry below `root` with its type and, for files, contents (sorted).
pub fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let md = std::fs::symlink_metadata(&p).unwrap();
            if md.file_type().is_symlink() {
                let t = std::fs::read_link(&p).unwrap();
                out.push(format!("{rel} -> {}", t.display()));
            } else if md.is_dir() {
                out.push(format!("{rel}/"));
                walk(root, &p, out);
            } else {
                let c = std::fs::read(&p).unwrap_or_default();
                out.push(format!("{rel} {:?}", String::from_utf8_lossy(&c)));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// The bytes of a FUSE ABI struct (`repr(C)`, explicit padding, so no uninitialised bytes).
pub fn bytes<T: Copy>(v: &T) -> Vec<u8> {
    // SAFETY: T is a plain-old-data FUSE ABI struct without implicit padding.
    unsafe { std::slice::from_raw_parts(v as *const T as *const u8, std::mem::size_of::<T>()) }
        .to_vec()
}

/// `name` plus its NUL terminator.
pub fn cstr(name: &[u8]) -> Vec<u8> {
    let mut v = name.to_vec();
    v.push(0);
    v
}

/// A reproducible byte pattern.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761).rotate_left(seed) >> 7) as u8)
        .collect()
}

/// A tmpfs mounted at a directory, lazily unmounted on drop (even when the test fails).
pub struct MountGuard {
    pub path: PathBuf,
}

impl MountGuard {
    /// Creates `path` and mounts a tmpfs on it; panics with the reason if that fails.
    pub fn tmpfs(path: &Path) -> MountGuard {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "none"])
            .arg(path)
            .output()
            .expect("run mount(8)");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs at {} (the submount tests need root / CAP_SYS_ADMIN): {}{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        MountGuard {
            path: path.to_path_buf(),
        }
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        let c = std::ffi::CString::new(self.path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: umount2 on a NUL-terminated path we mounted.
        let r = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        if r != 0 {
            eprintln!(
                "umount {}: {}",
                self.path.display(),
                std::io::Error::last_os_error()
            );
        }
    }
}
