//! Runtime integration for the virtio-fs daemon: one `virtiofsd` per Kata sandbox, configured
//! from Kata's `configuration.toml` and the pod's annotations.
//!
//! Seams (each usable and testable alone):
//! * [`config`]: the virtio-fs keys of a `[hypervisor.<name>]` section ([`VirtioFsConfig`]).
//! * [`limits`]: the `--fs-*` rate-limit flags and the rule that a pod may only *tighten* the
//!   operator's limits.
//! * [`annotations`]: pod annotations applied to a configuration (using [`limits`]).
//! * [`command`]: the daemon's argv in Kata's Go-runtime or runtime-rs style.
//! * [`supervisor`]: spawn, readiness, exit notice, stop, stale state (one file per concern:
//!   process watching, state files, logs, readiness, launch, the daemon handle).
//! * [`statedir`]: the state directory's checks (owner, mode) and link-safe file access.
//! * [`vmm`]: the QEMU / Cloud Hypervisor device and shared-memory arguments.
//! * [`api`]: a client for the daemon's HTTP control socket (live rate limits, statistics).
//! * [`metrics`]: one Prometheus endpoint for all the sandboxes of a state directory.
//! * [`daemon_binaries`]: the exporter's build-info series (which binary each daemon path holds).
//! * [`dropin`]: a base configuration plus its `config.d/` drop-ins, merged as Kata merges them.
//! * [`install`]: `install` / `uninstall` of this daemon into a Kata configuration.
//! * [`cli`]: the `virtiofs-sandbox` command.
//!
//! Libraries, and why:
//! * `limits-api` (this workspace): the `--fs-*` flag table, the only-tighten rule and the
//!   `/api/v1` wire types, defined once for the daemon, this crate and the tests.
//! * Daemon API client ([`api`]): the blocking Unix-socket exchange stays hand-written (one
//!   request per connection, a deadline over connect+write+read, a response size cap), and the
//!   response head and chunk sizes are parsed by `httparse` (the daemon's server parser):
//!   `hyper` 1 + `hyper-util` + `tokio` measured 18 more crates and an async runtime per call
//!   for the same bounds, and `ureq` has no Unix sockets.
//! * `configuration.toml` ([`config`]): serde derive + `serde_path_to_error`, so a wrong type
//!   names its key (integers keep the message "expected an integer").
//! * Processes and signals ([`supervisor`], [`cli`]): `rustix` (already in the lockfile) for
//!   pidfd_open, pidfd_send_signal, poll, kill, pipe2, setsid and PR_SET_PDEATHSIG. The signal
//!   mask and sigwait stay on `libc`: rustix has them only in its `runtime` module, meant for
//!   libc implementations, and the lockfile's `nix` is 0.24.
//! * Prometheus ([`metrics`]): the exporter's own families are encoded by the `prometheus`
//!   crate's text encoder (format 0.0.4), as the daemon's are. Not `prometheus-client`: its only
//!   text encoder is OpenMetrics, whose counters (`# TYPE x counter` over `x_total`) `promtool
//!   check metrics` reads as series without help. The daemons' families are relayed as written.
//! * The exporter's HTTP server: `tiny_http` (blocking, small; one scrape per thread).
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

#![deny(missing_docs)]

pub mod annotations;
pub mod api;
pub mod cli;
pub mod command;
pub mod config;
pub mod daemon_binaries;
pub mod dropin;
mod error;
pub mod group_args;
pub mod install;
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
