#![deny(missing_docs)]
//! A vhost-user virtio-fs backend with per-sandbox I/O rate limits.
//!
//! One folder per concern (`device/` vhost-user, `fuse/` FUSE, `confine/` isolation, `control/`
//! the API), one file per module. Each line below imports only lines below it, so there is no
//! import cycle between files (`tests/layers.rs` fails on one):
//!
//! ```text
//! main ─→ cli (flags, -o compat, pod_args) ─→ confine::caps, config;  main ─→ daemon
//! daemon         the start-up order: setup, sandbox, caps, seccomp, API, backend, serve
//! control::api   ─→ stats, device::throttle, setup
//! device::backend  ─→ pool (generic over its job), throttle, chain, vring, fuse::{handler, request}
//! device::throttle ─→ chain, vring, control::stats, fuse::request, config
//! fuse::handler  ─→ fs, request, device::chain, device::budget, control::stats
//! control::stats ─→ fuse::request
//! setup          ─→ fuse::options, config       (logging, pid lock, sockets, Cleanup)
//! fuse::fs       ─→ options, xattr, mounts, device::budget, config
//! fuse::request  ─→ xattr                       (the hostile-input wall)
//! device::chain  ─→ vring                       (a popped chain and its completion)
//! confine::sandbox ─→ signals, config;  confine::{caps, seccomp} ─→ config
//! leaves: device::{pool, vring, budget}, fuse::{options ─→ config, xattr, mounts}, signals
//! config         plain data, imports nothing
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
