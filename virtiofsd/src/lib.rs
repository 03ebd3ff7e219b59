//! A vhost-user virtio-fs backend with per-sandbox I/O rate limits.
//!
//! Layers, outside in: [`cli`] (flags → validated [`cli::Config`]), [`daemon`] (socket, vhost-user
//! daemon, signals, exit), [`device::backend`] (vrings: pop, inspect, serve, complete) with [`device::vring`]
//! (in-flight accounting so a ring stop never loses a request) and [`device::pool`] (worker threads),
//! [`fuse::request`] (the hostile-input wall: names, offsets, sizes, session order), [`device::budget`] (what
//! the request being served may move) and [`fuse::fs`] (the passthrough filesystem, with [`fuse::xattr`]).

pub mod cli;
pub mod confine;
pub mod control;
pub mod daemon;
pub mod device;
pub mod fuse;
pub mod setup;
