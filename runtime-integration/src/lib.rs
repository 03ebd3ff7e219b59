//! Runtime integration for the virtio-fs daemon: one `virtiofsd` per Kata sandbox, configured
//! from Kata's `configuration.toml` and the pod's annotations.
//!
//! Seams (each usable and testable alone):
//! * [`config`]: the virtio-fs keys of a `[hypervisor.<name>]` section ([`VirtioFsConfig`]).
//! * [`limits`]: the `--fs-*` rate-limit flags and the rule that a pod may only *tighten* the
//!   operator's limits.
//! * [`annotations`]: pod annotations applied to a configuration (using [`limits`]).
//! * [`command`]: the daemon's argv in Kata's Go-runtime or runtime-rs style.
//! * [`supervisor`]: spawn, readiness, exit notice, stop, stale state.
//! * [`statedir`]: the state directory's checks (owner, mode) and link-safe file access.
//! * [`vmm`]: the QEMU / Cloud Hypervisor device and shared-memory arguments.
//! * [`api`]: a client for the daemon's HTTP control socket (live rate limits, statistics).
//! * [`metrics`]: one Prometheus endpoint for all the sandboxes of a state directory.
//! * [`cli`]: the `virtiofs-sandbox` command.
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use std::path::Path;
//! use runtime_integration::{annotations, supervisor::{StartOptions, Supervisor}, VirtioFsConfig};
//!
//! # fn main() -> runtime_integration::Result<()> {
//! let cfg = VirtioFsConfig::load("/opt/kata/share/defaults/kata-containers/configuration.toml", "qemu")?;
//! let mut pod = BTreeMap::new();
//! pod.insert(annotations::VIRTIO_FS_EXTRA_ARGS.to_string(), r#"["--fs-bw-size=5M"]"#.to_string());
//! let cfg = annotations::apply(&cfg, &pod)?;
//! let sup = Supervisor::new("/run/virtiofs-sandbox");
//! let mut daemon = sup.start("pod1", &cfg, Path::new("/run/kata/pod1/shared"), &StartOptions::default(),
//!     Some(Box::new(|ev| eprintln!("virtiofsd exited: {}", ev.describe()))))?;
//! println!("socket {}", daemon.socket().display());
//! daemon.stop(std::time::Duration::from_secs(2))?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod annotations;
pub mod api;
pub mod cli;
pub mod command;
pub mod config;
mod error;
pub mod limits;
pub mod metrics;
pub mod statedir;
pub mod supervisor;
pub mod vmm;

pub use command::{CommandOptions, LaunchStyle};
pub use config::{CacheMode, SharedFs, VirtioFsConfig};
pub use error::{Error, Result};
pub use supervisor::{Daemon, ExitEvent, StartOptions, StopOutcome, Supervisor};
pub use vmm::Vmm;
