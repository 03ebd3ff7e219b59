//! Error type of the harness.

use std::io;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while building an initramfs or running a guest.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A host tool or file is missing; the message names the Debian package.
    #[error(
        "guest-vm: {what} is missing ({detail}); install the Debian package \
         `{package}` (apt-get install -y {package})"
    )]
    MissingPackage {
        /// What was looked for.
        what: String,
        /// Debian package providing it.
        package: &'static str,
        /// Why it was judged missing.
        detail: String,
    },
    /// A guest stack (QEMU + kernel, see [`crate::Stack`]) is not installed or incomplete.
    #[error("guest-vm: the {stack} guest stack is not usable: {detail}")]
    StackMissing {
        /// The stack's name (`debian12`, `backports`).
        stack: &'static str,
        /// What is missing and how to install it.
        detail: String,
    },
    /// An I/O error with context.
    #[error("guest-vm: {context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Invalid configuration or an unexpected host state.
    #[error("guest-vm: {0}")]
    Setup(String),
    /// QEMU did not exit within the timeout and was killed with SIGKILL.
    #[error(
        "guest-vm: guest did not finish within {timeout:?}; QEMU killed (work dir {work_dir})\n\
         --- console tail ---\n{console_tail}\n--- results tail ---\n{results_tail}\n\
         --- qemu stderr ---\n{qemu_stderr}"
    )]
    Timeout {
        /// The timeout that was exceeded.
        timeout: std::time::Duration,
        /// Last lines of the guest console (ttyS0).
        console_tail: String,
        /// Last bytes of the results port (ttyS1).
        results_tail: String,
        /// QEMU's stderr.
        qemu_stderr: String,
        /// Run directory (deleted unless kept).
        work_dir: String,
    },
    /// QEMU exited with a failure status.
    #[error(
        "guest-vm: QEMU failed ({status})\n--- qemu stderr ---\n{qemu_stderr}\n\
         --- console tail ---\n{console_tail}"
    )]
    QemuFailed {
        /// Exit status as text.
        status: String,
        /// QEMU's stderr.
        qemu_stderr: String,
        /// Last lines of the guest console.
        console_tail: String,
    },
    /// The guest could not mount the virtio-fs share.
    #[error("guest-vm: guest could not mount the virtio-fs share: {message}\n--- console tail ---\n{console_tail}")]
    MountFailed {
        /// The mount error as reported by the guest.
        message: String,
        /// Last lines of the guest console.
        console_tail: String,
    },
    /// QEMU exited but the guest reported no job result.
    #[error(
        "guest-vm: QEMU exited without a job result from the guest\n\
         --- console tail ---\n{console_tail}\n--- results tail ---\n{results_tail}\n\
         --- qemu stderr ---\n{qemu_stderr}"
    )]
    NoResult {
        /// Last lines of the guest console.
        console_tail: String,
        /// Last bytes of the results port.
        results_tail: String,
        /// QEMU's stderr.
        qemu_stderr: String,
    },
    /// A QMP / monitor command failed.
    #[error("guest-vm: QMP: {0}")]
    Qmp(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}
