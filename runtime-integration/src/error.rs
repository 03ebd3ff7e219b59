//! The crate's error type.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong between a configuration file and a running daemon.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file could not be read or is not TOML.
    #[error("{file}: {message}")]
    ConfigFile {
        /// The configuration file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// One key of the hypervisor section has a wrong type or value.
    #[error("{file}: [{section}] {key}: {message}")]
    ConfigKey {
        /// The configuration file.
        file: PathBuf,
        /// The section, e.g. `hypervisor.qemu`.
        section: String,
        /// The key, e.g. `virtio_fs_queue_size`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// `install` or `uninstall` refused (nothing was changed) or could not finish.
    #[error("{0}")]
    Install(String),
    /// A configured or requested feature this integration does not provide.
    #[error("not supported: {0}")]
    NotSupported(String),
    /// A pod annotation was rejected.
    #[error("annotation {name}: {message}")]
    Annotation {
        /// The full annotation name.
        name: String,
        /// Why it was rejected.
        message: String,
    },
    /// A sandbox id that cannot name a state directory.
    #[error("invalid sandbox id {id:?}: {reason}")]
    InvalidSandboxId {
        /// The id as given.
        id: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A sandbox with this id already has a live daemon.
    #[error("sandbox {id} already has a running virtiofsd (pid {pid})")]
    AlreadyRunning {
        /// The sandbox id.
        id: String,
        /// The live daemon's pid.
        pid: u32,
    },
    /// The daemon exited while starting.
    #[error("virtiofsd exited during start-up ({status}); its last output:\n{output}")]
    DaemonExited {
        /// Exit status description.
        status: String,
        /// The daemon's last log lines.
        output: String,
    },
    /// The daemon did not become ready in time (it was killed).
    #[error(
        "virtiofsd did not become ready within {timeout:?} (killed); its last output:\n{output}"
    )]
    NotReady {
        /// The readiness timeout.
        timeout: Duration,
        /// The daemon's last log lines.
        output: String,
    },
    /// Wrong VMM arguments or an unsupported VMM.
    #[error("VMM: {0}")]
    Vmm(String),
    /// A state directory that may not be used (a link, another user's, or writable by
    /// others).
    #[error("state directory {path} refused: {message}")]
    StateDir {
        /// The state directory.
        path: PathBuf,
        /// Why it is refused.
        message: String,
    },
    /// A corrupt or unreadable state file.
    #[error("state {path}: {message}")]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A sandbox that has no running daemon (or no API socket) for a live request.
    #[error("sandbox {id} is not running ({state})")]
    NotRunning {
        /// The sandbox id.
        id: String,
        /// Its state (`not-found`, `gone`, ...) and why.
        state: String,
    },
    /// The daemon's control API failed or refused a request.
    #[error(
        "API {}: {}{message}",
        socket.display(),
        status.map(|s| format!("HTTP {s}: ")).unwrap_or_default()
    )]
    Api {
        /// The API socket.
        socket: PathBuf,
        /// The HTTP status, if the daemon answered.
        status: Option<u16>,
        /// What went wrong (the daemon's `error` message for a refused request).
        message: String,
    },
    /// An operating-system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// An [`Error::Io`] maker for `map_err`.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
