//! The vhost-user layer: the backend that pops chains and has them served, the chain type and
//! its completion, vrings with in-flight accounting, the worker pool, and the limiter glue
//! (`throttle`: what the limits charge and where chains wait; `budget`: what a served request
//! may move).

pub mod backend;
pub mod budget;
pub mod chain;
pub mod group;
pub mod pool;
pub mod throttle;
pub mod vring;
