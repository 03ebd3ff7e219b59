//! Starting a vhost-user-fs daemon for a measurement or a test: pinned to a CPU if asked,
//! stderr to a file, killed (SIGKILL) when the handle is dropped. The spawner is the tests'
//! own ([`vufs_testkit::Launch`]); this adds the measurement's conventions.

use std::fs;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

pub use vufs_testkit::{pin_command, pin_self};

/// A running daemon (a [`vufs_testkit::Daemon`] with its stderr in a file); SIGKILLed and
/// reaped on drop.
pub struct Daemon(vufs_testkit::Daemon);

impl Daemon {
    /// Spawn `bin --socket-path=SOCKET --shared-dir=SHARED ARGS...` on `cpu`, stderr to `log`,
    /// after removing a stale socket and pid file a previous run left behind.
    pub fn start(
        bin: &Path,
        socket: &Path,
        shared: &Path,
        args: &[String],
        cpu: Option<usize>,
        log: &Path,
    ) -> std::io::Result<Daemon> {
        let _ = fs::remove_file(socket);
        let mut pidfile = socket.as_os_str().to_owned();
        pidfile.push(".pid");
        let _ = fs::remove_file(&pidfile);
        vufs_testkit::Launch::new(bin)
            .socket_path(socket)
            .args([format!("--shared-dir={}", shared.display())])
            .args(args)
            .cpu(cpu)
            .stderr_to(log)
            .spawn()
            .map(Daemon)
    }

    /// Wait for it to exit by itself (at most `timeout`); SIGKILL it otherwise.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let st = self.0.wait_exit(timeout);
        if st.is_none() {
            self.0.kill();
        }
        st
    }
}

impl Deref for Daemon {
    type Target = vufs_testkit::Daemon;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.0.kill();
        let _ = fs::remove_file(&self.0.socket);
    }
}
