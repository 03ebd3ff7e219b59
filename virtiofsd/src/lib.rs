#![deny(missing_docs)]
//! A vhost-user virtio-fs backend with per-sandbox I/O rate limits.
//!
//! One folder per layer; a module imports only modules drawn below it (no import cycle between
//! files: `tests/layers.rs` checks it).
//!
//! ```text
//! main → cli (flags, -o compat, cli::pod_args) ........... → config (plain data, at the bottom)
//! daemon (start-up order) → setup, confine/, control/, device/, fuse/
//!   setup     logging, pid lock, sockets, rlimit, ShareOptions from Config
//!   confine/  sandbox → signals; caps; seccomp
//!   control/  api → stats, device::throttle
//!   device/   backend → pool (generic), throttle → chain → vring;  backend → fuse::handler
//!   fuse/     handler → fs → options, xattr, mounts;  handler → request → xattr
//!             fs, handler → device::budget;  handler → device::chain;  handler, throttle → stats
//! ```
//!
//! One request: the guest kicks the request queue, vhost-user-backend's epoll thread calls
//! [`device::backend::FsBackend`], which pops the chain and counts it in flight
//! ([`device::vring`]). [`fuse::handler::Handler::inspect`] reads its header in place and asks
//! the wall ([`fuse::request`]) for a verdict and a cost; [`device::throttle::Limiter::admit`]
//! charges the cost or parks the chain until its timer fires. The chain is then served inline
//! or on the [`device::pool`]: [`fuse::handler::Handler::serve`] runs the FUSE server on
//! [`fuse::fs::SharedFs`] within the bytes charged ([`device::budget`]), counts it in
//! [`control::stats`], and [`device::chain::complete`] puts it in the used ring.

pub mod cli;
pub mod config;
pub mod confine;
pub mod control;
pub mod daemon;
pub mod device;
pub mod fuse;
pub mod setup;
