//! The validated daemon configuration: what every layer is started from, whatever parsed it.
//!
//! Plain data, no parsing: the command line (module `cli`) builds a [`Config`].

use std::os::unix::io::RawFd;
use std::path::PathBuf;

use ratelimit::{Bucket, Limit};

/// A validated daemon configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Listen,
    pub shared_dir: PathBuf,
    pub tag: Option<String>,
    pub cache: CacheMode,
    pub readdirplus: bool,
    pub writeback: bool,
    pub allow_direct_io: bool,
    pub xattr: bool,
    pub readonly: bool,
    pub killpriv_v2: bool,
    pub announce_submounts: bool,
    pub inode_file_handles: InodeFileHandles,
    pub rlimit_nofile: Option<u64>,
    pub thread_pool_size: usize,
    pub log_level: LogLevel,
    pub syslog: bool,
    pub limits: Limits,
    pub sandbox: SandboxMode,
    pub seccomp: SeccompAction,
    pub modcaps: Vec<CapChange>,
    pub api_socket: Option<PathBuf>,
}

/// Where the vhost-user connection comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// Create a socket at this path (optionally owned by a group).
    Path {
        path: PathBuf,
        group: Option<String>,
    },
    /// Accept on this inherited, listening socket.
    Fd(RawFd),
}

/// The configured limits (size 0: unlimited).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// READ + WRITE bytes per second.
    pub bw: Limit,
    /// READ bytes per second.
    pub read_bw: Limit,
    /// WRITE bytes per second.
    pub write_bw: Limit,
    /// Requests per second on the request queue.
    pub ops: Limit,
}

impl Limits {
    /// The bucket each field configures.
    pub fn buckets(&self) -> [(Bucket, Limit); 4] {
        [
            (Bucket::Bw, self.bw),
            (Bucket::ReadBw, self.read_bw),
            (Bucket::WriteBw, self.write_bw),
            (Bucket::Ops, self.ops),
        ]
    }

    /// Whether no limit is set.
    pub fn is_unlimited(&self) -> bool {
        self.buckets().iter().all(|(_, l)| l.is_unlimited())
    }
}

impl std::fmt::Display for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_unlimited() {
            return write!(f, "none");
        }
        let mut first = true;
        for (b, l) in self.buckets().iter().filter(|(_, l)| !l.is_unlimited()) {
            let unit = if *b == Bucket::Ops { "req" } else { "B" };
            let sep = if first { "" } else { ", " };
            write!(f, "{sep}{b} {} {unit}/s (burst {} {unit})", l.size, l.burst)?;
            first = false;
        }
        Ok(())
    }
}

/// How long the guest may cache entries and attributes, and whether it may cache file data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheMode {
    /// No caching; metadata timeouts 0; READDIRPLUS off.
    Never,
    /// Metadata cached for 86400 s; file data not cached.
    Metadata,
    /// Close-to-open consistency; metadata timeouts 1 s (default).
    Auto,
    /// Data and metadata cached; timeouts 86400 s.
    Always,
}

/// When inodes are referenced by file handles instead of O_PATH descriptors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InodeFileHandles {
    /// Always O_PATH descriptors.
    Never,
    /// File handles where the daemon can open them, else descriptors (default).
    Prefer,
    /// File handles or fail at start.
    Mandatory,
}

/// Log verbosity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
    Off,
}

/// Process isolation mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SandboxMode {
    /// Namespaces + pivot_root into the shared directory (default; needs root).
    Namespace,
    /// New pid and mount namespaces + chroot into the shared directory (needs root).
    Chroot,
    /// No sandbox.
    None,
}

/// What happens on a system call outside the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeccompAction {
    /// No filter.
    None,
    /// Kill the process (default).
    Kill,
    /// Log it and let it through.
    Log,
    /// Send SIGSYS.
    Trap,
}

/// One `--modcaps` change: `+name` adds, `-name` removes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapChange {
    pub add: bool,
    pub name: String,
}
