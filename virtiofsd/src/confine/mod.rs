//! Confinement: the sandbox, capabilities and seccomp.

pub mod caps;
pub mod sandbox;
pub mod seccomp;
