//! The validated daemon configuration: what every layer is started from, whatever parsed it.
//!
//! Plain data, no parsing: the command line (module `cli`) builds a [`Config`].

use std::os::unix::io::RawFd;
use std::path::PathBuf;

use ratelimit::{Bucket, Limit};

/// The most request queues the device offers (besides hiprio): the default of
/// `--max-request-queues`. Each has its own vring thread, created with the daemon.
pub const MAX_REQUEST_QUEUES: usize = 16;

/// A validated daemon configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the vhost-user connection comes from (`--socket-path` or `--fd`).
    pub listen: Listen,
    /// The exported directory, canonical (`--shared-dir`).
    pub shared_dir: PathBuf,
    /// The tag advertised in the device config space (`--tag`).
    pub tag: Option<String>,
    /// The shared directory's filesystem settings (`--cache`, `--xattr`, ...).
    pub share: Share,
    /// `RLIMIT_NOFILE` to set (`--rlimit-nofile`; None: the default, 0: unchanged).
    pub rlimit_nofile: Option<u64>,
    /// Worker threads (`--thread-pool-size`; 0: serve on the vring thread).
    pub thread_pool_size: usize,
    /// Request queues offered to the VMM (`--max-request-queues`, 1 to [`MAX_REQUEST_QUEUES`]).
    pub request_queues: usize,
    /// Log verbosity (`--log-level`).
    pub log_level: LogLevel,
    /// Log to syslog when it exists (`--syslog`).
    pub syslog: bool,
    /// The rate limits at start-up (`--fs-*`).
    pub limits: Limits,
    /// The node group this daemon is a member of (`--fs-group=PATH` and its budget).
    pub group: Option<GroupConfig>,
    /// The share under contention in a group (`--fs-weight`, default 100).
    pub weight: u64,
    /// Process isolation (`--sandbox`).
    pub sandbox: SandboxMode,
    /// Action on a system call outside the allowlist (`--seccomp`).
    pub seccomp: SeccompAction,
    /// Changes to the kept capabilities (`--modcaps`).
    pub modcaps: Vec<CapChange>,
    /// The control socket's path (`--api-socket`, `auto` resolved).
    pub api_socket: Option<PathBuf>,
}

/// The settings of the shared directory's filesystem: what the FUSE layer is opened with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    /// Caching policy (`--cache`): how long the guest caches entries and attributes, and
    /// whether it caches data.
    pub cache: CacheMode,
    /// READDIRPLUS offered (not `--no-readdirplus`).
    pub readdirplus: bool,
    /// The guest's writeback cache (`--writeback`).
    pub writeback: bool,
    /// O_DIRECT from guest applications honoured (`--allow-direct-io`).
    pub allow_direct_io: bool,
    /// Extended attributes (`--xattr`).
    pub xattr: bool,
    /// Every change refused with EROFS (`--readonly`).
    pub readonly: bool,
    /// FUSE_HANDLE_KILLPRIV_V2 offered (`--killpriv-v2`).
    pub killpriv_v2: bool,
    /// Mount points shown to the guest as submounts (`--announce-submounts`).
    pub announce_submounts: bool,
    /// When inodes are referenced by file handles (`--inode-file-handles`).
    pub inode_file_handles: InodeFileHandles,
}

/// Where the vhost-user connection comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// Create a socket at this path (optionally owned by a group).
    Path {
        /// The socket's path.
        path: PathBuf,
        /// The group that owns it (`--socket-group`).
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
            let unit = limits_api::Unit::of(*b).symbol();
            let sep = if first { "" } else { ", " };
            write!(f, "{sep}{b} {} {unit}/s (burst {} {unit})", l.size, l.burst)?;
            first = false;
        }
        Ok(())
    }
}

/// A node group's configuration (`--fs-group*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// The group's shared state file.
    pub path: PathBuf,
    /// The budget this daemon's flags give (checked against the group's creation values).
    pub budget: ratelimit::group::Budget,
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
    /// Errors.
    Error,
    /// Warnings and above.
    Warn,
    /// Informational messages and above (default).
    Info,
    /// Debugging detail and above.
    Debug,
    /// Everything.
    Trace,
    /// No logging.
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
    /// Added (`+`) or removed (`-`).
    pub add: bool,
    /// The capability's name, lower case, without `cap_`.
    pub name: String,
}
