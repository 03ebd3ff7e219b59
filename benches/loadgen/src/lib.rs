//! `vufs-loadgen`: a VM-less load generator for any vhost-user-fs daemon, on the project's
//! frontend crate (`vufs-frontend`), and the pieces of the bench runner (`vufs-bench`).
//!
//! See `benches/README.md` for the measurement method and `benches/run.sh` for the command.

#![deny(missing_docs)]

pub mod daemon;
pub mod engine;
pub mod pattern;
pub mod plot;
pub mod procfs;
pub mod report;
pub mod stats;

pub use engine::{Config, Generator, RunReport, Workload, WorkloadResult};
