//! A vhost-user virtio-fs backend with per-sandbox I/O rate limits.
//!
//! Layers, outside in: [`cli`] (flags → validated [`cli::Config`]), [`daemon`] (socket, vhost-user
//! daemon, signals, exit), [`backend`] (vrings: pop, inspect, serve, complete) with [`vring`]
//! (in-flight accounting so a ring stop never loses a request) and [`pool`] (worker threads),
//! [`request`] (the hostile-input wall: names, offsets, sizes, session order), [`budget`] (what
//! the request being served may move) and [`fs`] (the passthrough filesystem, with [`xattr`]).

pub mod api;
pub mod backend;
pub mod budget;
pub mod caps;
pub mod cli;
pub mod daemon;
pub mod fs;
pub mod mounts;
pub mod pool;
pub mod request;
pub mod sandbox;
pub mod seccomp;
pub mod setup;
pub mod stats;
pub mod throttle;
pub mod vring;
pub mod xattr;
