//! Command line: parsed with clap, validated into a [`Config`] before anything starts.
//!
//! Accepts upstream virtiofsd 1.14's flags, including the legacy `-o` forms Kata's runtime-rs
//! still passes. Every value error exits with status 2 and a message naming the flag. A
//! repeated flag is not an error: the last one wins, because Kata appends
//! `virtio_fs_extra_args` after its own.

pub mod group;
pub mod pod_args;

use std::os::unix::io::RawFd;
use std::path::PathBuf;

use clap::builder::PossibleValue;
use clap::{Parser, ValueEnum};
use ratelimit::Limit;

use crate::config::{
    CacheMode, Config, InodeFileHandles, Limits, Listen, LogLevel, SandboxMode, SeccompAction,
    Share,
};
use crate::confine::caps::parse_modcaps;
use pod_args::BOUNDARY;

/// How the rate-limit flags behave; shown after `--help`.
const LIMITS_HELP: &str = "\
Rate limits (token buckets, per daemon = per sandbox):
  --fs-bw-size=N       sustained READ+WRITE payload bytes per second (absent or 0: unlimited)
  --fs-bw-burst=N      bucket capacity in bytes (default: the size); the bucket starts full and
                       refills continuously at the size rate (unlike Firecracker's non-refilling
                       one_time_burst). A burst without a size is an error.
  --fs-read-bw-*/--fs-write-bw-*  the same for one direction; a request pays its direction's
                       bucket and the combined one together, never one then the other.
  --fs-ops-size/-burst requests per second on the request queue (one op per request).
  Values: integers with an optional unit k/K/M/G (x1000) or Ki/Mi/Gi (x1024), e.g. 10M.
  Charged before the work: READ by the size asked (at most its buffers' room), WRITE by its
  payload; READ/WRITE above 1 MiB (the negotiated max) get EINVAL. FORGET and INTERRUPT (hiprio
  queue) are never throttled. A request larger than the burst is admitted as debt, never
  refused. A throttled request waits off the vring thread, so other requests keep flowing; a
  device reset fails (EIO) the waiting requests the buckets cannot pay.
  Reads served from the guest's page cache never reach the daemon and are not counted;
  writeback and mmap writes are.

Node groups (one budget shared by several daemons):
  --fs-group=PATH      join (or create) the group; --fs-group-bw-size/-burst and
                       --fs-group-ops-size/-burst give its budget, which must equal the values it
                       was created with. Busy members share it in proportion to --fs-weight
                       (weighted max-min: what one does not use goes to the others; alone, a
                       member may use all of it). The daemon's own --fs-* limits still cap it.";

/// A `--fs-*` value: an integer with an optional unit.
pub(crate) fn quantity(s: &str) -> Result<u64, String> {
    ratelimit::parse_quantity(s).map_err(|e| e.to_string())
}

/// clap's view of a [`crate::config`] enum (kept out of the plain data): its values, aliases
/// and the help `--help` lists for each.
macro_rules! value_enum {
    ($t:ty { $($v:expr => $name:literal $([alias $alias:literal])? $(: $help:literal)?),* $(,)? }) => {
        impl ValueEnum for $t {
            fn value_variants<'a>() -> &'a [Self] {
                &[$($v),*]
            }

            fn to_possible_value(&self) -> Option<PossibleValue> {
                let all: &[(Self, PossibleValue)] = &[$((
                    $v,
                    PossibleValue::new($name) $(.alias($alias))? $(.help($help))?,
                )),*];
                all.iter().find(|(v, _)| v == self).map(|(_, p)| p.clone())
            }
        }
    };
}

value_enum!(CacheMode {
    CacheMode::Never => "never": "No caching; metadata timeouts 0; READDIRPLUS off",
    CacheMode::Metadata => "metadata": "Metadata cached for 86400 s; file data not cached",
    CacheMode::Auto => "auto": "Close-to-open consistency; metadata timeouts 1 s (default)",
    CacheMode::Always => "always": "Data and metadata cached; timeouts 86400 s",
});

value_enum!(InodeFileHandles {
    InodeFileHandles::Never => "never": "Always O_PATH descriptors",
    InodeFileHandles::Prefer => "prefer" [alias "fallback"]:
        "File handles where the daemon can open them, else descriptors (default)",
    InodeFileHandles::Mandatory => "mandatory": "File handles or fail at start",
});

value_enum!(LogLevel {
    LogLevel::Error => "error",
    LogLevel::Warn => "warn",
    LogLevel::Info => "info",
    LogLevel::Debug => "debug",
    LogLevel::Trace => "trace",
    LogLevel::Off => "off",
});

value_enum!(SandboxMode {
    SandboxMode::Namespace => "namespace":
        "Namespaces + pivot_root into the shared directory (default; needs root)",
    SandboxMode::Chroot => "chroot":
        "New pid and mount namespaces + chroot into the shared directory (needs root)",
    SandboxMode::None => "none": "No sandbox",
});

value_enum!(SeccompAction {
    SeccompAction::None => "none": "No filter",
    SeccompAction::Kill => "kill": "Kill the process (default)",
    SeccompAction::Log => "log": "Log it and let it through",
    SeccompAction::Trap => "trap": "Send SIGSYS",
});

/// Upstream flags this daemon does not implement: rejected by name, never silently ignored.
const UNSUPPORTED: &[&str] = &[
    "posix-acl",
    "security-label",
    "xattrmap",
    "allow-mmap",
    "migration-mode",
    "migration-on-error",
    "migration-verify-handles",
    "migration-confirm-paths",
    "uid-map",
    "gid-map",
    "translate-uid",
    "translate-gid",
    "preserve-noatime",
];

/// `virtiofsd`: a vhost-user virtio-fs device backend with per-sandbox I/O rate limits.
///
/// A drop-in for upstream virtiofsd 1.14 as Kata Containers launches it.
#[derive(Debug, Parser)]
#[command(
    name = "virtiofsd",
    version,
    args_override_self = true,
    override_usage = "virtiofsd --shared-dir <DIR> (--socket-path <PATH> | --fd <FD>) [OPTIONS]",
    after_help = LIMITS_HELP
)]
pub struct Cli {
    /// Directory exported to the guest.
    #[arg(long, value_name = "DIR")]
    pub shared_dir: Option<PathBuf>,

    /// vhost-user socket path to create and listen on. A `<PATH>.pid` lock file guards it.
    #[arg(long, alias = "socket", value_name = "PATH")]
    pub socket_path: Option<PathBuf>,

    /// An already-listening vhost-user socket inherited as this descriptor (Kata: --fd=3).
    #[arg(long, value_name = "FD")]
    pub fd: Option<RawFd>,

    /// Group that owns the vhost-user socket (with --socket-path).
    #[arg(long, value_name = "GROUP")]
    pub socket_group: Option<String>,

    /// Tag advertised in the device config space (enables the vhost-user CONFIG feature; QEMU
    /// 7.1–8.0 crash on it, so it is off unless given). 1–36 bytes.
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,

    /// Caching policy the guest may use: auto (1 s), always / metadata (86400 s), never (0 s).
    #[arg(long, value_enum, default_value_t = CacheMode::Auto)]
    pub cache: CacheMode,

    /// Disable READDIRPLUS.
    #[arg(long)]
    pub no_readdirplus: bool,

    /// Enable the guest's writeback cache.
    #[arg(long)]
    pub writeback: bool,

    /// Honour O_DIRECT from guest applications.
    #[arg(long)]
    pub allow_direct_io: bool,

    /// Enable extended attributes.
    #[arg(long)]
    pub xattr: bool,

    /// Refuse every change to the shared directory (EROFS).
    #[arg(long)]
    pub readonly: bool,

    /// Enable FUSE_HANDLE_KILLPRIV_V2.
    #[arg(long, overrides_with = "no_killpriv_v2")]
    pub killpriv_v2: bool,

    /// Disable FUSE_HANDLE_KILLPRIV_V2 (default).
    #[arg(long, overrides_with = "killpriv_v2")]
    pub no_killpriv_v2: bool,

    /// Show mount points inside the shared directory to the guest as submounts (default).
    #[arg(long, overrides_with = "no_announce_submounts")]
    pub announce_submounts: bool,

    /// Do not announce submounts.
    #[arg(long, overrides_with = "announce_submounts")]
    pub no_announce_submounts: bool,

    /// Reference inodes by file handles: never, prefer (fall back to descriptors), mandatory.
    #[arg(long, value_enum, default_value_t = InodeFileHandles::Prefer, require_equals = true)]
    pub inode_file_handles: InodeFileHandles,

    /// Maximum open files (0 leaves the limit alone) [default: min(1000000, nr_open)].
    #[arg(long, value_name = "N")]
    pub rlimit_nofile: Option<u64>,

    /// Worker threads serving requests; 0 serves them on the vring thread.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub thread_pool_size: usize,

    /// Request queues offered to the VMM (1-16; not an upstream flag; default: the CPUs this
    /// daemon may run on, at most 16). The VMM sets up as many as it wants up to this (QEMU
    /// `num-request-queues`, Cloud Hypervisor `num_queues`); with --tag the config space
    /// announces this many. Each has a vring thread from the start.
    #[arg(long, default_value_t = default_request_queues(), value_name = "N")]
    pub max_request_queues: usize,

    /// Isolation: namespace (new mount/pid/net/ipc/uts namespaces, pivot into the shared
    /// directory), chroot (new mount/pid namespaces, chroot into it), or none (unprivileged use).
    #[arg(long, value_enum, default_value_t = DEFAULT_SANDBOX)]
    pub sandbox: SandboxMode,

    /// Action on a system call outside the daemon's allowlist: kill, log, trap, none.
    #[arg(long, value_enum, default_value_t = DEFAULT_SECCOMP)]
    pub seccomp: SeccompAction,

    /// Change the kept capabilities, e.g. --modcaps=+sys_admin:-mknod.
    #[arg(long, value_name = "+CAP:-CAP")]
    pub modcaps: Option<String>,

    /// Log level.
    #[arg(long, value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// Log to syslog when a syslog socket exists (else stderr).
    #[arg(long)]
    pub syslog: bool,

    /// Print the vhost-user backend capabilities (JSON) and exit.
    #[arg(long)]
    pub print_capabilities: bool,

    /// HTTP/JSON control socket for live limits and statistics; `auto` puts it at
    /// `<vhost-user socket path>.api` (with --fd, the inherited socket's own path).
    #[arg(long, value_name = "PATH|auto")]
    pub api_socket: Option<PathBuf>,

    /// Sustained READ+WRITE bytes per second (0: unlimited). See "Rate limits" below.
    #[arg(long, value_parser = quantity, value_name = "BYTES")]
    pub fs_bw_size: Option<u64>,

    /// READ+WRITE bucket capacity in bytes [default: the size].
    #[arg(long, value_parser = quantity, value_name = "BYTES")]
    pub fs_bw_burst: Option<u64>,

    /// Sustained READ bytes per second (0: unlimited).
    #[arg(long, value_parser = quantity, value_name = "BYTES")]
    pub fs_read_bw_size: Option<u64>,

    /// READ bucket capacity in bytes [default: the size].
    #[arg(long, value_parser = quantity, value_name = "BYTES")]
    pub fs_read_bw_burst: Option<u64>,

    /// Sustained WRITE bytes per second (0: unlimited).
    #[arg(long, value_parser = quantity, value_name = "BYTES")]
    pub fs_write_bw_size: Option<u64>,

    /// WRITE bucket capacity in bytes [default: the size].
    #[arg(long, value_parser = quantity, value_name = "BYTES")]
    pub fs_write_bw_burst: Option<u64>,

    /// Sustained requests per second on the request queue (0: unlimited).
    #[arg(long, value_parser = quantity, value_name = "REQUESTS")]
    pub fs_ops_size: Option<u64>,

    /// Request bucket capacity [default: the size].
    #[arg(long, value_parser = quantity, value_name = "REQUESTS")]
    pub fs_ops_burst: Option<u64>,

    /// The node-group flags.
    #[command(flatten)]
    pub group: group::GroupArgs,

    /// Legacy options, comma separated: source=DIR, cache=none|auto|always|metadata,
    /// loglevel=LEVEL, xattr, no_xattr, readdirplus, no_readdirplus, writeback, no_writeback,
    /// allow_direct_io, no_allow_direct_io, announce_submounts, killpriv_v2, no_killpriv_v2,
    /// no_posix_lock, no_flock, no_posix_acl, no_security_label.
    #[arg(short = 'o', value_name = "OPTIONS")]
    pub compat_options: Vec<String>,

    /// Legacy: log level debug.
    #[arg(short = 'd')]
    pub compat_debug: bool,

    /// Legacy: run in the foreground (always the case).
    #[arg(short = 'f')]
    pub compat_foreground: bool,

    /// Ends the operator's arguments (put it last in Kata's `virtio_fs_extra_args`): every
    /// argument after it comes from a pod and may only tighten the `--fs-*` limits; anything
    /// else there exits 2. Kata's own trailing `--xattr` is accepted.
    #[arg(long = "pod-args-follow", num_args = 0.., allow_hyphen_values = true,
          value_name = "POD ARGS")]
    pub pod_args: Option<Vec<String>>,

    /// Upstream flags this daemon does not implement (rejected with a message).
    #[arg(long = "unsupported", hide = true, num_args = 0..=1, require_equals = true,
          value_name = "V", aliases = UNSUPPORTED)]
    pub unsupported: Vec<String>,
}

/// Default isolation.
pub const DEFAULT_SANDBOX: SandboxMode = SandboxMode::Namespace;
/// Default seccomp action.
pub const DEFAULT_SECCOMP: SeccompAction = SeccompAction::Kill;

/// A command-line value that cannot be used; the message names the flag.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn usage<T>(m: impl Into<String>) -> Result<T, UsageError> {
    Err(UsageError(m.into()))
}

/// Maximum tag length (virtio-fs config space).
pub const MAX_TAG_LEN: usize = 36;

impl Cli {
    /// Applies the legacy `-o` options on top of the flags (as upstream: they win).
    fn apply_compat(&mut self) -> Result<(), UsageError> {
        if self.compat_debug {
            self.log_level = LogLevel::Debug;
        }
        for opt in self
            .compat_options
            .clone()
            .iter()
            .flat_map(|o| o.split(','))
        {
            let bad = |v: &str| usage(format!("-o {opt}: invalid value '{v}'"));
            match opt.split_once('=') {
                Some(("source", v)) => self.shared_dir = Some(v.into()),
                Some(("cache", v)) => {
                    self.cache = match v {
                        "none" | "never" => CacheMode::Never,
                        "auto" => CacheMode::Auto,
                        "always" => CacheMode::Always,
                        "metadata" => CacheMode::Metadata,
                        _ => return bad(v),
                    }
                }
                Some(("sandbox", v)) => {
                    self.sandbox = match v {
                        "namespace" => SandboxMode::Namespace,
                        "chroot" => SandboxMode::Chroot,
                        "none" => SandboxMode::None,
                        _ => return bad(v),
                    }
                }
                Some(("modcaps", v)) => self.modcaps = Some(v.to_owned()),
                Some(("loglevel", v)) => {
                    self.log_level = match v {
                        "debug" => LogLevel::Debug,
                        "info" => LogLevel::Info,
                        "warn" => LogLevel::Warn,
                        "err" => LogLevel::Error,
                        _ => return bad(v),
                    }
                }
                Some((k, _)) => {
                    return usage(format!("-o {k}=...: not supported by this virtiofsd"))
                }
                None => match opt {
                    "xattr" => self.xattr = true,
                    "no_xattr" => self.xattr = false,
                    "readdirplus" => self.no_readdirplus = false,
                    "no_readdirplus" => self.no_readdirplus = true,
                    "writeback" => self.writeback = true,
                    "no_writeback" => self.writeback = false,
                    "allow_direct_io" => self.allow_direct_io = true,
                    "no_allow_direct_io" => self.allow_direct_io = false,
                    "announce_submounts" => {
                        self.announce_submounts = true;
                        self.no_announce_submounts = false;
                    }
                    "killpriv_v2" => {
                        self.killpriv_v2 = true;
                        self.no_killpriv_v2 = false;
                    }
                    "no_killpriv_v2" => {
                        self.killpriv_v2 = false;
                        self.no_killpriv_v2 = true;
                    }
                    "no_posix_lock" | "no_flock" | "no_posix_acl" | "no_security_label" | "" => {}
                    _ => return usage(format!("-o {opt}: not supported by this virtiofsd")),
                },
            }
        }
        Ok(())
    }

    /// Checks what clap cannot: required combinations, paths, descriptors, unsupported flags.
    pub fn into_config(mut self) -> Result<Config, UsageError> {
        if seeded_trust_pod_args() && self.pod_args.is_some() {
            // Upstream's behaviour: the boundary ignored, every argument parsed alike.
            let args = std::env::args().filter(|a| a != BOUNDARY);
            self = Cli::try_parse_from(args).map_err(|e| UsageError(e.to_string()))?;
        }
        // The pod's arguments first: a refused one is named as the pod's, whatever it is.
        if let Some(tokens) = self.pod_args.take() {
            if std::env::args().any(|a| a.starts_with(&format!("{BOUNDARY}="))) {
                return usage(format!(
                    "{BOUNDARY} takes no value: put it last in virtio_fs_extra_args"
                ));
            }
            pod_args::apply(&mut self, &tokens)?;
        }
        if let Some(flag) = unsupported_flag_used() {
            return usage(format!("--{flag} is not supported by this virtiofsd"));
        }
        self.apply_compat()?;
        let listen = match (self.socket_path, self.fd) {
            (Some(path), None) => Listen::Path {
                path,
                group: self.socket_group,
            },
            (None, Some(fd)) if self.socket_group.is_some() => {
                let _ = fd;
                return usage("--socket-group cannot be used with --fd");
            }
            (None, Some(fd)) => {
                check_listening_fd(fd)?;
                Listen::Fd(fd)
            }
            (Some(_), Some(_)) => return usage("--socket-path and --fd are mutually exclusive"),
            (None, None) => return usage("one of --socket-path or --fd is required"),
        };
        let Some(shared_dir) = self.shared_dir else {
            return usage("--shared-dir is required");
        };
        match std::fs::metadata(&shared_dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return usage(format!(
                    "--shared-dir={}: not a directory",
                    shared_dir.display()
                ))
            }
            Err(e) => return usage(format!("--shared-dir={}: {e}", shared_dir.display())),
        }
        // The sandbox rebuilds this exact path inside its new root.
        let shared_dir = std::fs::canonicalize(&shared_dir)
            .map_err(|e| UsageError(format!("--shared-dir={}: {e}", shared_dir.display())))?;
        let modcaps = match &self.modcaps {
            Some(m) => parse_modcaps(m).map_err(|e| UsageError(format!("--modcaps={m}: {e}")))?,
            None => Vec::new(),
        };
        if let Some(tag) = &self.tag {
            if tag.is_empty() || tag.len() > MAX_TAG_LEN {
                return usage(format!("--tag={tag}: must be 1 to {MAX_TAG_LEN} bytes"));
            }
        }
        if !(1..=crate::config::MAX_REQUEST_QUEUES).contains(&self.max_request_queues) {
            return usage(format!(
                "--max-request-queues={}: must be 1 to {}",
                self.max_request_queues,
                crate::config::MAX_REQUEST_QUEUES
            ));
        }
        let limits = Limits {
            bw: limit("bw", self.fs_bw_size, self.fs_bw_burst)?,
            read_bw: limit("read-bw", self.fs_read_bw_size, self.fs_read_bw_burst)?,
            write_bw: limit("write-bw", self.fs_write_bw_size, self.fs_write_bw_burst)?,
            ops: limit("ops", self.fs_ops_size, self.fs_ops_burst)?,
        };
        let group = self.group.config()?;
        let weight = self.group.weight()?;
        let api_socket = match self.api_socket {
            Some(p) if p.as_os_str() == "auto" => Some(auto_api_socket(&listen)?),
            other => other,
        };
        Ok(Config {
            api_socket,
            sandbox: self.sandbox,
            seccomp: self.seccomp,
            modcaps,
            limits,
            group,
            weight,
            listen,
            shared_dir,
            tag: self.tag,
            share: Share {
                cache: self.cache,
                readdirplus: !self.no_readdirplus,
                writeback: self.writeback,
                allow_direct_io: self.allow_direct_io,
                xattr: self.xattr,
                readonly: self.readonly,
                killpriv_v2: self.killpriv_v2,
                announce_submounts: !self.no_announce_submounts,
                inode_file_handles: self.inode_file_handles,
            },
            rlimit_nofile: self.rlimit_nofile,
            thread_pool_size: self.thread_pool_size,
            request_queues: self.max_request_queues,
            log_level: self.log_level,
            syslog: self.syslog,
        })
    }
}

/// Seeded bug for the pod-argument tests: builds with the `seeded-bugs` feature ignore the
/// boundary when this variable is set, so the tests can show they catch a daemon without it.
fn seeded_trust_pod_args() -> bool {
    cfg!(feature = "seeded-bugs")
        && std::env::var_os("VIRTIOFSD_SEEDED_BUG_TRUST_POD_ARGS").is_some()
}

/// `--api-socket=auto`: beside the vhost-user socket, `<path>.api`.
fn auto_api_socket(listen: &Listen) -> Result<PathBuf, UsageError> {
    let vhost = match listen {
        Listen::Path { path, .. } => path.clone(),
        Listen::Fd(fd) => socket_path_of(*fd).ok_or_else(|| {
            UsageError(format!(
                "--api-socket=auto: the socket passed as --fd={fd} has no path"
            ))
        })?,
    };
    let mut p = vhost.into_os_string();
    p.push(".api");
    Ok(p.into())
}

/// The filesystem path a listening Unix socket is bound to.
fn socket_path_of(fd: RawFd) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: sockaddr_un is plain data; getsockname writes at most `len` bytes.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    let rc = unsafe { libc::getsockname(fd, &mut addr as *mut _ as *mut libc::sockaddr, &mut len) };
    if rc != 0 || addr.sun_family != libc::AF_UNIX as libc::sa_family_t {
        return None;
    }
    let bytes: Vec<u8> = addr
        .sun_path
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    (!bytes.is_empty()).then(|| PathBuf::from(std::ffi::OsStr::from_bytes(&bytes)))
}

/// One bucket from `--fs-<name>-size` / `--fs-<name>-burst`.
fn limit(name: &str, size: Option<u64>, burst: Option<u64>) -> Result<Limit, UsageError> {
    match (size.unwrap_or(0), burst) {
        (0, None) => Ok(Limit::UNLIMITED),
        (0, Some(_)) => usage(format!(
            "--fs-{name}-burst needs a non-zero --fs-{name}-size"
        )),
        (_, Some(0)) => usage(format!("--fs-{name}-burst must be greater than 0")),
        (size, burst) => Ok(Limit::with_burst(size, burst.unwrap_or(size))),
    }
}

/// The first unsupported upstream flag on the command line, by its real name.
fn unsupported_flag_used() -> Option<&'static str> {
    std::env::args().skip(1).find_map(|a| {
        let name = a.strip_prefix("--")?.split('=').next()?;
        UNSUPPORTED.iter().copied().find(|u| *u == name)
    })
}

/// What `--print-capabilities` prints: the vhost-user backend program conventions.
pub const CAPABILITIES: &str = "{\n  \"type\": \"fs\"\n}";

/// `--fd=N` must be a listening socket, or the daemon would wait forever.
fn check_listening_fd(fd: RawFd) -> Result<(), UsageError> {
    let mut accepting: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `accepting`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            &mut accepting as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return usage(format!("--fd={fd}: not a socket: {e}"));
    }
    if accepting == 0 {
        return usage(format!("--fd={fd}: socket is not listening"));
    }
    Ok(())
}

/// `--max-request-queues`' default: one request queue per CPU the daemon may run on (a queue
/// beyond that adds a vring thread, about 14 KiB resident, and no parallelism), at most
/// [`crate::config::MAX_REQUEST_QUEUES`].
pub fn default_request_queues() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, crate::config::MAX_REQUEST_QUEUES)
}
