//! The daemon's log: copying its output with rotation, reading the tail, and why a clean exit
//! happened. Also the pump that carries the output while the daemon runs.

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::pipe::PipeFlags;
use serde::Serialize;

use crate::statedir::read_no_follow;

/// Lines the daemon logs when it exits because its frontend (the VMM) closed the connection:
/// ours, and upstream virtiofsd's.
pub const DISCONNECT_LINES: [&str; 2] = ["frontend disconnected", "Client disconnected"];
/// Log size at which `virtiofsd.log` is rotated to `virtiofsd.log.1`.
pub const DEFAULT_LOG_LIMIT: u64 = 1 << 20;

/// Why a daemon that exited with status 0 stopped, read from the end of its log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CleanExitCause {
    /// Its frontend closed the vhost-user connection (one of [`DISCONNECT_LINES`]).
    FrontendDisconnected,
    /// It was told to stop by a signal (`signal N: exiting`).
    Signal,
    /// The log does not say (e.g. a log level above info).
    Unknown,
}

/// Reads the cause of a clean exit from a log text: the last of the daemon's exit lines wins.
pub fn clean_exit_cause(log: &str) -> CleanExitCause {
    log.lines()
        .rev()
        .find_map(|l| {
            if DISCONNECT_LINES.iter().any(|d| l.contains(d)) {
                Some(CleanExitCause::FrontendDisconnected)
            } else if l.contains("signal ") && l.contains(": exiting") {
                Some(CleanExitCause::Signal)
            } else {
                None
            }
        })
        .unwrap_or(CleanExitCause::Unknown)
}

/// Copies `input` to `path`, rotating to `<path>.1` when the file would exceed `limit` bytes;
/// returns at end of input. Used by the in-process pump thread and the CLI's `__log-pump`.
pub fn pump_log(mut input: impl Read, path: &Path, limit: u64) -> io::Result<()> {
    let open = || crate::statedir::open_log(path);
    let mut out = open()?;
    let mut size = out.metadata()?.len();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mut chunk = &buf[..n];
        if size + chunk.len() as u64 > limit && size > 0 {
            let mut rotated = path.as_os_str().to_owned();
            rotated.push(".1");
            fs::rename(path, &rotated)?;
            out = open()?;
            size = 0;
        }
        if chunk.len() as u64 > limit {
            chunk = &chunk[chunk.len() - limit as usize..];
        }
        out.write_all(chunk)?;
        size += chunk.len() as u64;
    }
}

/// The last `lines` lines of a log and its rotated predecessor.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let mut rotated = path.as_os_str().to_owned();
    rotated.push(".1");
    let mut all = read_no_follow(Path::new(&rotated)).unwrap_or_default();
    all.extend(read_no_follow(path).unwrap_or_default());
    let text = String::from_utf8_lossy(&all);
    let v: Vec<&str> = text.lines().collect();
    let tail = v[v.len().saturating_sub(lines)..].join("\n");
    if tail.is_empty() {
        "(no output)".into()
    } else {
        tail
    }
}

/// What carries the daemon's output into its log while it runs.
pub(super) enum Pump {
    /// A thread of this process (its end-of-input notice).
    Thread(mpsc::Receiver<()>),
    /// A pump process (a detached daemon).
    Process(Child),
    /// None: the daemon writes its log file itself.
    None,
}

impl Pump {
    /// Waits (bounded) until everything the daemon wrote is in the log.
    pub(super) fn settle(&mut self, timeout: Duration) {
        match self {
            Pump::Thread(rx) => {
                let _ = rx.recv_timeout(timeout);
            }
            Pump::Process(c) => {
                let deadline = Instant::now() + timeout;
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = c.try_wait() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            Pump::None => {}
        }
    }

    /// Lets a pump process run on its own; a pump thread's end-of-input notice is returned.
    pub(super) fn release(self) -> Option<mpsc::Receiver<()>> {
        match self {
            Pump::Process(mut c) => {
                std::thread::spawn(move || {
                    let _ = c.wait();
                });
                None
            }
            Pump::Thread(rx) => Some(rx),
            Pump::None => None,
        }
    }
}

/// A pipe whose two ends are closed on exec.
pub(super) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_rotation() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l.log");
        let data: Vec<u8> = (0..2500u32)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        pump_log(&data[..], &p, 4096).unwrap();
        let cur = fs::metadata(&p).unwrap().len();
        let old = fs::metadata(d.path().join("l.log.1")).unwrap().len();
        assert!(cur <= 4096 && old <= 4096, "{cur} {old}");
        assert!(
            log_tail(&p, 1).ends_with("line 2499"),
            "{}",
            log_tail(&p, 2)
        );
        assert_eq!(log_tail(&d.path().join("none"), 3), "(no output)");
    }

    #[test]
    fn clean_exit_causes_from_the_log() {
        use CleanExitCause::*;
        let ours =
            "[INFO] Client connected, servicing requests\n[INFO] frontend disconnected; exiting\n";
        assert_eq!(clean_exit_cause(ours), FrontendDisconnected);
        let upstream = "[INFO virtiofsd] Client disconnected, shutting down\n";
        assert_eq!(clean_exit_cause(upstream), FrontendDisconnected);
        assert_eq!(clean_exit_cause("[INFO] signal 15: exiting\n"), Signal);
        // The last exit line wins.
        assert_eq!(
            clean_exit_cause(&format!("{ours}[INFO] signal 15: exiting\n")),
            Signal
        );
        assert_eq!(clean_exit_cause("[WARN] something\n"), Unknown);
        assert_eq!(clean_exit_cause(""), Unknown);
    }
}
