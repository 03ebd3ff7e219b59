//! The daemon's command line, in the two styles Kata uses.
//!
//! * **Go runtime** ([`LaunchStyle::Go`], the default):
//!   `--cache=<mode> --shared-dir=<dir> --fd=3 <extra args...> [--xattr]`. The listening
//!   socket is created by the caller and inherited as fd 3.
//! * **runtime-rs** ([`LaunchStyle::Rs`]):
//!   `--socket-path=<sock> --shared-dir=<dir> --cache=<mode> <extra args...> [--xattr]`; the
//!   daemon creates the socket.
//!
//! Neither style passes `--syslog`, although Kata's Go runtime does: the supervisor captures
//! the daemon's stdout and stderr into the per-sandbox log and detects readiness there, and
//! on a host with `/dev/log` `--syslog` would send every line to syslog instead.
//!
//! `--xattr` (appended last, as Kata does): in Go style only for QEMU (Kata's Go runtime adds
//! it on the QEMU path unless the guest's SELinux is disabled); in rs style whenever enabled.
//! [`CommandOptions::xattr`] is that switch (default on).
//!
//! With an API socket ([`daemon_args_with_api`]), `--api-socket=<path>` follows the launch
//! arguments, before the extra args.

use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::config::VirtioFsConfig;

/// The descriptor number of the inherited listening socket in Go style.
pub const GO_LISTEN_FD: i32 = 3;

/// The daemon's flag for its HTTP control socket.
pub const API_SOCKET_FLAG: &str = "--api-socket";

/// Which Kata runtime's launch convention to follow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LaunchStyle {
    /// Kata's Go runtime: we create the socket and pass it as fd 3.
    #[default]
    Go,
    /// Kata's runtime-rs: `--socket-path`; ready when the daemon says so.
    Rs,
}

impl FromStr for LaunchStyle {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "go" => Ok(LaunchStyle::Go),
            "rs" => Ok(LaunchStyle::Rs),
            o => Err(format!("{o:?}: expected \"go\" or \"rs\"")),
        }
    }
}

impl LaunchStyle {
    /// `"go"` or `"rs"`.
    pub fn as_str(self) -> &'static str {
        match self {
            LaunchStyle::Go => "go",
            LaunchStyle::Rs => "rs",
        }
    }
}

/// Options of the command line that are not in the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandOptions {
    /// Launch convention.
    pub style: LaunchStyle,
    /// Add `--xattr` (false when the guest's SELinux is disabled).
    pub xattr: bool,
}

impl Default for CommandOptions {
    fn default() -> Self {
        CommandOptions {
            style: LaunchStyle::Go,
            xattr: true,
        }
    }
}

/// The daemon's arguments (without argv\[0\]). `socket` is only used in rs style.
pub fn daemon_args(
    cfg: &VirtioFsConfig,
    shared_dir: &Path,
    socket: &Path,
    opts: &CommandOptions,
) -> Vec<String> {
    daemon_args_with_api(cfg, shared_dir, socket, None, opts)
}

/// [`daemon_args`] plus `--api-socket=<api_socket>` (the daemon's HTTP control socket) when
/// given.
pub fn daemon_args_with_api(
    cfg: &VirtioFsConfig,
    shared_dir: &Path,
    socket: &Path,
    api_socket: Option<&Path>,
    opts: &CommandOptions,
) -> Vec<String> {
    let cache = format!("--cache={}", cfg.virtio_fs_cache.as_str());
    let shared = format!("--shared-dir={}", shared_dir.display());
    let mut v = match opts.style {
        LaunchStyle::Go => vec![cache, shared, format!("--fd={GO_LISTEN_FD}")],
        LaunchStyle::Rs => vec![format!("--socket-path={}", socket.display()), shared, cache],
    };
    if let Some(api) = api_socket {
        v.push(format!("{API_SOCKET_FLAG}={}", api.display()));
    }
    v.extend(cfg.virtio_fs_extra_args.iter().cloned());
    let xattr = opts.xattr && (opts.style == LaunchStyle::Rs || cfg.hypervisor == "qemu");
    if xattr {
        v.push("--xattr".into());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CacheMode;

    fn cfg(hv: &str) -> VirtioFsConfig {
        let mut c = VirtioFsConfig::defaults("/c.toml", hv);
        c.virtio_fs_cache = CacheMode::Never;
        c.virtio_fs_extra_args = vec!["--thread-pool-size=1".into(), "--fs-bw-size=10M".into()];
        c
    }

    #[test]
    fn go_style() {
        let args = daemon_args(
            &cfg("qemu"),
            Path::new("/run/s/shared"),
            Path::new("/x.sock"),
            &CommandOptions::default(),
        );
        assert_eq!(
            args,
            [
                "--cache=never",
                "--shared-dir=/run/s/shared",
                "--fd=3",
                "--thread-pool-size=1",
                "--fs-bw-size=10M",
                "--xattr"
            ]
        );
        let no_selinux = CommandOptions {
            xattr: false,
            ..Default::default()
        };
        assert!(
            !daemon_args(&cfg("qemu"), Path::new("/d"), Path::new("/s"), &no_selinux)
                .contains(&"--xattr".to_string())
        );
        // The Go runtime adds --xattr on the QEMU path only.
        assert!(!daemon_args(
            &cfg("clh"),
            Path::new("/d"),
            Path::new("/s"),
            &CommandOptions::default()
        )
        .contains(&"--xattr".to_string()));
    }

    #[test]
    fn rs_style() {
        let o = CommandOptions {
            style: LaunchStyle::Rs,
            xattr: true,
        };
        let args = daemon_args(
            &cfg("clh"),
            Path::new("/d"),
            Path::new("/run/s/virtiofsd.sock"),
            &o,
        );
        assert_eq!(
            args,
            [
                "--socket-path=/run/s/virtiofsd.sock",
                "--shared-dir=/d",
                "--cache=never",
                "--thread-pool-size=1",
                "--fs-bw-size=10M",
                "--xattr"
            ]
        );
        assert!(!args.iter().any(|a| a == "--syslog"));
        let o = CommandOptions {
            style: LaunchStyle::Rs,
            xattr: false,
        };
        assert!(
            !daemon_args(&cfg("qemu"), Path::new("/d"), Path::new("/s"), &o)
                .contains(&"--xattr".to_string())
        );
    }

    #[test]
    fn api_socket_follows_the_launch_args() {
        let api = Path::new("/run/s/api.sock");
        let go = daemon_args_with_api(
            &cfg("qemu"),
            Path::new("/d"),
            Path::new("/s"),
            Some(api),
            &CommandOptions::default(),
        );
        assert_eq!(
            go,
            [
                "--cache=never",
                "--shared-dir=/d",
                "--fd=3",
                "--api-socket=/run/s/api.sock",
                "--thread-pool-size=1",
                "--fs-bw-size=10M",
                "--xattr"
            ]
        );
        let o = CommandOptions {
            style: LaunchStyle::Rs,
            xattr: false,
        };
        let rs = daemon_args_with_api(&cfg("clh"), Path::new("/d"), Path::new("/s"), Some(api), &o);
        assert_eq!(rs[3], "--api-socket=/run/s/api.sock", "{rs:?}");
        assert!(
            !daemon_args(&cfg("clh"), Path::new("/d"), Path::new("/s"), &o)
                .iter()
                .any(|a| a.starts_with("--api-socket"))
        );
    }

    #[test]
    fn style_parse() {
        assert_eq!("go".parse::<LaunchStyle>().unwrap(), LaunchStyle::Go);
        assert_eq!("rs".parse::<LaunchStyle>().unwrap(), LaunchStyle::Rs);
        assert!("java".parse::<LaunchStyle>().is_err());
    }
}
