//! `guest-vm`: a harness that boots a real Linux guest under QEMU against a
//! vhost-user-fs socket and runs a shell job on the virtio-fs share.
//!
//! The guest is the host's Debian cloud kernel (`/boot/vmlinuz-*-cloud-amd64`)
//! with an initramfs built on the host from busybox-static, fio (plus every
//! library it links) and the virtio-fs kernel modules. The base initramfs is
//! built once and cached (see [`Initramfs::cached`]); each run appends a tiny
//! cpio archive carrying the job script.
//!
//! ```no_run
//! use guest_vm::GuestRun;
//! # fn main() -> Result<(), guest_vm::Error> {
//! let out = GuestRun::new()
//!     .socket("/tmp/vfsd.sock")
//!     .script("echo hello > /mnt/f && cat /mnt/f")
//!     .run()?;
//! assert_eq!(out.status, 0);
//! assert_eq!(out.stdout, "hello\n");
//! # Ok(()) }
//! ```
//!
//! Host requirements (Debian package names): `qemu-system-x86`,
//! `linux-image-cloud-amd64`, `busybox-static`, `fio`. A missing one is a loud
//! [`Error::MissingPackage`], never a silent skip.

#![deny(missing_docs)]

pub mod cpio;
mod error;
pub mod fio;
mod initramfs;
mod kernel;
mod results;
mod stack;
mod vm;

pub use error::{Error, Result};
pub use initramfs::{find_kernel, Initramfs, InitramfsBuilder, Kernel};
pub use results::JobRun;
pub use stack::{stacks_dir, Stack, StackInstall};
pub use vm::{probe_kvm, Accel, GuestOutput, GuestRun, Vm};

/// A process-wide lock for tests that boot guests: TCG guests on a 2-core
/// machine should not run concurrently (cargo runs a binary's tests in
/// parallel threads). Hold the guard for the lifetime of the guest.
pub fn serial_guard() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Quotes `s` for a POSIX shell (single quotes, `'` escaped as `'\''`).
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("abc/d.e"), "abc/d.e");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
