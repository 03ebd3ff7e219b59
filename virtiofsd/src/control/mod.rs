//! The control plane: the HTTP API and the statistics it serves.

pub mod api;
pub mod stats;
