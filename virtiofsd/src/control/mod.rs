//! The control plane: the HTTP API, the statistics it serves, and their Prometheus encoding.

pub mod api;
pub mod group_api;
pub mod metrics;
pub mod stats;
