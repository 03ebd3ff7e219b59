//! The sandbox directory's names and `state.json`: what is recorded about a running daemon,
//! and reading, writing and removing it without following symbolic links.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::command::LaunchStyle;
use crate::error::{Error, Result};
use crate::statedir::{open_sandbox_dir, read_at, write_at, SandboxDir};

/// The socket's file name in the sandbox directory.
pub const SOCKET_NAME: &str = "virtiofsd.sock";
/// The API socket's file name in the sandbox directory.
pub const API_SOCKET_NAME: &str = "api.sock";
/// The log's file name in the sandbox directory.
pub const LOG_NAME: &str = "virtiofsd.log";
/// The state file's name in the sandbox directory.
pub const STATE_NAME: &str = "state.json";
/// Longest accepted sandbox id.
pub const MAX_ID_LEN: usize = 128;
/// Default state directory of the CLI.
pub const DEFAULT_STATE_DIR: &str = "/run/virtiofs-sandbox";

/// Checks that `id` can name a directory: 1..=128 characters of `[A-Za-z0-9._-]`, starting with
/// a letter or digit (so no `/`, no `.`/`..`, no hidden names).
pub fn validate_sandbox_id(id: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::InvalidSandboxId {
            id: id.to_string(),
            reason: reason.to_string(),
        })
    };
    if id.is_empty() {
        return bad("empty");
    }
    if id.len() > MAX_ID_LEN {
        return bad(&format!("longer than {MAX_ID_LEN} characters"));
    }
    if id.contains('/') {
        return bad("contains '/'");
    }
    if id.contains("..") {
        return bad("contains '..'");
    }
    if !id.as_bytes()[0].is_ascii_alphanumeric() {
        return bad("must start with a letter or digit");
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return bad(&format!(
            "character {c:?} is not allowed (only A-Z a-z 0-9 . _ -)"
        ));
    }
    Ok(())
}

/// What `state.json` records about a running daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxState {
    /// The sandbox id.
    pub sandbox_id: String,
    /// The daemon's pid.
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat` (clock ticks since boot) at start: a reused pid has
    /// another value.
    pub start_time: u64,
    /// The vhost-user socket.
    pub socket: PathBuf,
    /// The daemon's HTTP control socket (absent in states written without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_socket: Option<PathBuf>,
    /// The daemon's log.
    pub log: PathBuf,
    /// The launch style.
    pub launch: LaunchStyle,
    /// The daemon binary.
    pub daemon: PathBuf,
    /// The daemon's arguments (without argv\[0\]).
    pub args: Vec<String>,
    /// The shared directory.
    pub shared_dir: PathBuf,
    /// Seconds since the Unix epoch at start.
    pub started_at: u64,
}

/// The files of one sandbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SandboxPaths {
    /// `<state-dir>/<id>`
    pub dir: PathBuf,
    /// The vhost-user socket.
    pub socket: PathBuf,
    /// The daemon's HTTP control socket (used when [`super::StartOptions::api_socket`] is set).
    pub api_socket: PathBuf,
    /// The daemon log.
    pub log: PathBuf,
    /// The state file.
    pub state: PathBuf,
}

/// A sandbox's state as seen by [`super::Supervisor::status`].
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// The sandbox id.
    pub sandbox_id: String,
    /// `running`, `gone`, `pid-reused` or `not-found`/`corrupt` (see `detail`).
    pub state: String,
    /// The recorded pid.
    pub pid: Option<u32>,
    /// The socket.
    pub socket: Option<PathBuf>,
    /// The API socket.
    pub api_socket: Option<PathBuf>,
    /// The log.
    pub log: Option<PathBuf>,
    /// The daemon's argv (without argv\[0\]).
    pub args: Vec<String>,
    /// The launch style.
    pub launch: Option<LaunchStyle>,
    /// Seconds since the epoch at start.
    pub started_at: Option<u64>,
    /// Explanation for non-running states.
    pub detail: Option<String>,
}

/// Reads the state file of sandbox `id` below the opened state directory `state`.
pub(super) fn read_state_in(
    state: &OwnedFd,
    id: &str,
    p: &SandboxPaths,
) -> Result<Option<SandboxState>> {
    let dir = match open_sandbox_dir(state, id, &p.dir)? {
        SandboxDir::Missing => return Ok(None),
        SandboxDir::Symlink => {
            return Err(Error::State {
                path: p.dir.clone(),
                message: "the sandbox directory is a symbolic link (not followed)".into(),
            })
        }
        SandboxDir::Dir(fd) => fd,
    };
    match read_at(&dir, STATE_NAME) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Error::State {
                path: p.state.clone(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Err(Error::State {
            path: p.state.clone(),
            message: "a symbolic link (not followed)".into(),
        }),
        Err(e) => Err(Error::io(format!("reading {}", p.state.display()))(e)),
    }
}

/// Writes `st` as the sandbox's state file.
pub(super) fn write_state(dir: &OwnedFd, paths: &SandboxPaths, st: &SandboxState) -> Result<()> {
    let data = serde_json::to_vec_pretty(st).expect("state serialises");
    write_at(dir, STATE_NAME, &data)
        .map_err(Error::io(format!("writing {}", paths.state.display())))
}

/// Removes the sandbox directory (a symbolic link there is removed, not followed).
pub(super) fn remove_files(paths: &SandboxPaths) {
    if fs::symlink_metadata(&paths.dir).is_ok() {
        if let Err(e) = fs::remove_dir_all(&paths.dir) {
            log::warn!("removing {}: {e}", paths.dir.display());
        }
    }
}

/// Seconds since the Unix epoch.
pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_ids() {
        for good in ["abc", "0123456789abcdef", "pod-1.a_b", &"a".repeat(128)] {
            validate_sandbox_id(good).unwrap();
        }
        for (bad, why) in [
            ("", "empty"),
            ("a/b", "'/'"),
            ("..", "'..'"),
            ("a..b", "'..'"),
            (".hidden", "start"),
            ("-rf", "start"),
            ("a b", "' '"),
            ("a\nb", "'\\n'"),
            ("pod\u{e9}", "not allowed"),
            (&"a".repeat(129), "longer"),
        ] {
            let e = validate_sandbox_id(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }
}
