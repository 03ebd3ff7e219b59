//! `vufs-testkit`: what every test of the real daemon needs, written once.
//!
//! - [`daemon_bin`]: the `virtiofsd` binary, built with cargo on first use (a no-op when it is
//!   up to date), so `cargo test` and `cargo nextest run` work from a clean checkout;
//! - [`Launch`] and [`Daemon`]: one spawner for every way a test or the load generator starts a
//!   daemon (socket path, inherited fd 3, another user, a pinned CPU, stderr captured or to a
//!   file), killed when dropped and with the test process;
//! - [`Scratch`]: a scratch directory with `share/` exported and canaries in `outside/`;
//! - [`api`]: one HTTP request on the daemon's control socket.
//!
//! Used by `tests/e2e`, `runtime-integration`'s tests and `benches/loadgen`.

#![deny(missing_docs)]

pub mod api;
mod build;
mod daemon;
mod scratch;

pub use build::{daemon_bin, workspace_root, Build};
pub use daemon::{pin_command, pin_self, Daemon, Launch, READY_LINE};
pub use scratch::Scratch;
