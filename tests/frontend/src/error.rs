//! Error type shared by every layer of the frontend.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while driving a vhost-user-fs daemon.
///
/// A FUSE error reply from the daemon is [`Error::Errno`]; use [`Error::errno`] to
/// match on it in tests (`assert_eq!(e.errno(), Some(libc::ENOENT))`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Connecting to the daemon's unix socket failed.
    #[error("cannot connect to vhost-user socket {path:?}: {source}")]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// A vhost-user control message failed (socket error, timeout, NACK, ...).
    #[error("vhost-user {op} failed: {source}")]
    Vhost {
        /// The request that failed.
        op: &'static str,
        /// Underlying error.
        source: vhost::Error,
    },
    /// The daemon does not offer a feature we cannot do without.
    #[error("daemon does not offer required feature: {0}")]
    MissingFeature(&'static str),
    /// Setting up guest memory failed.
    #[error("guest memory: {0}")]
    Memory(String),
    /// An access to guest memory was out of bounds.
    #[error("guest memory access at {addr:#x} (+{len}) out of bounds")]
    GuestAccess {
        /// Guest address.
        addr: u64,
        /// Access length.
        len: usize,
    },
    /// The buffer pool in guest memory cannot satisfy an allocation.
    #[error("out of guest buffer memory (wanted {wanted} bytes)")]
    OutOfGuestMemory {
        /// Requested size.
        wanted: usize,
    },
    /// Not enough free descriptors in the queue.
    #[error("queue {queue}: not enough free descriptors (need {need}, have {have})")]
    QueueFull {
        /// Queue index.
        queue: usize,
        /// Descriptors needed.
        need: usize,
        /// Descriptors free.
        have: usize,
    },
    /// Waiting for the daemon timed out.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What we were waiting for.
        what: &'static str,
        /// The timeout.
        after: Duration,
    },
    /// The daemon put an id in the used ring that is not an in-flight chain head.
    #[error("queue {queue}: daemon returned unknown used id {id} (len {len})")]
    BadUsedId {
        /// Queue index.
        queue: usize,
        /// The bogus id.
        id: u32,
        /// The used length it came with.
        len: u32,
    },
    /// The daemon closed the vhost-user connection (exited or crashed) while we waited.
    #[error("daemon closed the vhost-user connection")]
    Disconnected,
    /// A token that is neither in flight nor completed was waited for.
    #[error("unknown or already consumed token {0:?}")]
    UnknownToken(crate::token::Token),
    /// An eventfd / poll operation failed.
    #[error("eventfd: {0}")]
    EventFd(io::Error),
    /// The daemon answered the FUSE request with an error (positive errno).
    #[error("FUSE error reply: errno {errno} ({})", io::Error::from_raw_os_error(*errno))]
    Errno {
        /// Positive errno value.
        errno: i32,
    },
    /// The daemon's reply is malformed (length/unique mismatch, short body, ...).
    #[error("bad reply: {0}")]
    BadReply(String),
    /// The caller passed something unusable.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// The errno of a FUSE error reply, `None` for any other error.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Errno { errno } => Some(*errno),
            _ => None,
        }
    }

    /// True for [`Error::Disconnected`].
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Error::Disconnected)
    }

    /// True for [`Error::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    /// True when the daemon answered a control message with a failure (a non-zero REPLY_ACK),
    /// as opposed to the connection failing.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Error::Vhost {
                source: vhost::Error::VhostUserProtocol(
                    vhost::vhost_user::Error::BackendInternalError
                ),
                ..
            }
        )
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;
