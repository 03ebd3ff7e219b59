//! A scratch directory for one daemon: `share/` is exported, `outside/` holds canaries the
//! guest must never touch.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::{daemon_bin, Build, Daemon};

/// A scratch area: `share/` is exported; `outside/` holds canaries the guest must never touch.
pub struct Scratch {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
    /// The shared directory.
    pub share: PathBuf,
    /// A sibling directory outside the share.
    pub outside: PathBuf,
}

impl Scratch {
    /// Creates the layout with a canary file `outside/canary` and a `share/sub/` directory.
    pub fn new() -> Scratch {
        let s = Scratch::empty();
        std::fs::create_dir(s.share.join("sub")).unwrap();
        std::fs::write(s.outside.join("canary"), b"canary").unwrap();
        s
    }

    /// An empty `share/` and `outside/` (for workloads that own the whole share).
    pub fn empty() -> Scratch {
        let dir = tempfile::tempdir().expect("tempdir");
        let share = dir.path().join("share");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&share).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        Scratch {
            dir,
            share,
            outside,
        }
    }

    /// A socket path inside the scratch dir.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("vhost.sock")
    }

    /// The control socket `--api-socket=auto` gives a daemon on [`Scratch::socket`].
    pub fn api_socket(&self) -> PathBuf {
        self.dir.path().join("vhost.sock.api")
    }

    /// Starts `build` serving `share/` on [`Scratch::socket`] with `args`, and waits for the
    /// socket (see [`Daemon::start`]).
    pub fn start(&self, build: Build, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let share = format!("--shared-dir={}", self.share.display());
        let mut all = vec![share.as_str()];
        all.extend_from_slice(args);
        Daemon::start(&daemon_bin(build), &self.socket(), &all, env)
    }

    /// [`Scratch::start`] of the normal build with `--api-socket=auto` (see
    /// [`Scratch::api_socket`]) before `args`, and waits until it is ready.
    pub fn start_with_api(&self, args: &[&str]) -> Daemon {
        let mut all = vec!["--api-socket=auto"];
        all.extend_from_slice(args);
        let mut d = self.start(Build::Normal, &all, &[]);
        d.wait_ready();
        d
    }

    /// Every entry below `outside/` (relative paths), to compare before and after an attack.
    pub fn outside_listing(&self) -> Vec<String> {
        let mut out = Vec::new();
        list(&self.outside, &self.outside, &mut out);
        out.sort();
        out
    }

    /// Entries in the scratch root other than share/, outside/ and the daemon's own files.
    pub fn stray_root_entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                ![
                    "share",
                    "outside",
                    "vhost.sock",
                    "vhost.sock.pid",
                    "vhost.sock.api",
                ]
                .contains(&n.as_str())
            })
            .collect();
        v.sort();
        v
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

fn list(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let mut content = String::new();
        if p.is_file() {
            let _ = std::fs::File::open(&p).and_then(|mut f| f.read_to_string(&mut content));
        }
        out.push(format!(
            "{} {content}",
            p.strip_prefix(root).unwrap().display()
        ));
        if p.is_dir() {
            list(root, &p, out);
        }
    }
}
