//! What the daemon, its supervisor (`runtime-integration`) and the tests must agree on, defined
//! once:
//!
//! - [`flags`]: the eight `--fs-*` rate-limit flags (which bucket, size or burst, what unit)
//!   and the values a command line gives them ([`RateLimits`]);
//! - [`group`]: the node-group flags (`--fs-group*`, `--fs-weight`) and their pod rule;
//! - [`tighten`]: the only-tighten rule, by which a pod's limit applies only if it is no looser
//!   than the operator's;
//! - [`wire`]: the JSON bodies of the control API (`/api/v1/ratelimit`, `/api/v1/stats`,
//!   errors), its paths and content types, and the Prometheus metric names of `/metrics`;
//! - [`marker`]: the build marker by which a daemon binary is recognised without running it.
//!
//! No I/O and no parsing beyond the flags' values ([`ratelimit::parse_quantity`]).

#![deny(missing_docs)]

pub mod flags;
pub mod group;
pub mod marker;
pub mod tighten;
pub mod wire;

pub use flags::{Field, Flag, LimitFlags, RateLimits, Unit, FLAGS};
pub use ratelimit::Bucket;
