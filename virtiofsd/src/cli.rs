//! Command line: parsed with clap, validated into a [`Config`] before anything starts.
//!
//! Every value error exits with status 2 and a message naming the flag. A repeated flag is not
//! an error: the last one wins, because Kata appends `virtio_fs_extra_args` after its own.

use std::os::unix::io::RawFd;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// How long the guest may cache entries and attributes, and whether it may cache file data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CacheMode {
    /// No caching of data; metadata timeouts 0.
    Never,
    /// Metadata cached for 86400 s; data not cached.
    Metadata,
    /// Close-to-open consistency; metadata timeouts 1 s (default).
    Auto,
    /// Data and metadata cached; timeouts 86400 s.
    Always,
}

/// Process isolation mode. Only `none` exists until the hardening work lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SandboxMode {
    /// No sandbox: the daemon runs in the caller's namespaces (names are still checked).
    None,
}

/// Log verbosity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
    Off,
}

/// `virtiofsd`: a vhost-user virtio-fs device backend with per-sandbox I/O rate limits.
#[derive(Debug, Parser)]
#[command(name = "virtiofsd", version, args_override_self = true)]
pub struct Cli {
    /// vhost-user socket path to create and listen on.
    #[arg(long, alias = "socket", value_name = "PATH")]
    pub socket_path: Option<PathBuf>,

    /// An already-listening vhost-user socket inherited as this file descriptor (Kata: --fd=3).
    #[arg(long, value_name = "FD", conflicts_with = "socket_path")]
    pub fd: Option<RawFd>,

    /// Directory exported to the guest.
    #[arg(long, value_name = "DIR")]
    pub shared_dir: Option<PathBuf>,

    /// Caching policy the guest may use.
    #[arg(long, value_enum, default_value_t = CacheMode::Auto)]
    pub cache: CacheMode,

    /// Worker threads serving requests; 0 serves them on the vring thread.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub thread_pool_size: usize,

    /// Enable extended attributes.
    #[arg(long)]
    pub xattr: bool,

    /// Sandbox mode.
    #[arg(long, value_enum, default_value_t = SandboxMode::None)]
    pub sandbox: SandboxMode,

    /// Log level.
    #[arg(long, value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,
}

/// Where the vhost-user connection comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// Create a socket at this path.
    Path(PathBuf),
    /// Accept on this inherited, listening socket.
    Fd(RawFd),
}

/// A validated daemon configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Listen,
    pub shared_dir: PathBuf,
    pub cache: CacheMode,
    pub thread_pool_size: usize,
    pub xattr: bool,
    pub log_level: LogLevel,
}

/// A command-line value that cannot be used; the message names the flag.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl Cli {
    /// Checks what clap cannot: required combinations, paths, descriptors.
    pub fn into_config(self) -> Result<Config, UsageError> {
        let err = |m: String| Err(UsageError(m));
        let listen = match (self.socket_path, self.fd) {
            (Some(p), None) => Listen::Path(p),
            (None, Some(fd)) => {
                check_listening_fd(fd)?;
                Listen::Fd(fd)
            }
            _ => return err("one of --socket-path or --fd is required".into()),
        };
        let Some(shared_dir) = self.shared_dir else {
            return err("--shared-dir is required".into());
        };
        match std::fs::metadata(&shared_dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return err(format!(
                    "--shared-dir={}: not a directory",
                    shared_dir.display()
                ))
            }
            Err(e) => return err(format!("--shared-dir={}: {e}", shared_dir.display())),
        }
        Ok(Config {
            listen,
            shared_dir,
            cache: self.cache,
            thread_pool_size: self.thread_pool_size,
            xattr: self.xattr,
            log_level: self.log_level,
        })
    }
}

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
        return Err(UsageError(format!("--fd={fd}: not a socket: {e}")));
    }
    if accepting == 0 {
        return Err(UsageError(format!("--fd={fd}: socket is not listening")));
    }
    Ok(())
}
