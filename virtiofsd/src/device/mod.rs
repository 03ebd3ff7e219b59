//! The vhost-user layer: vrings, the backend that pops and completes chains, the worker pool and
//! the limiter glue.

pub mod backend;
pub mod budget;
pub mod pool;
pub mod throttle;
pub mod vring;
