//! Confinement: the sandbox, capabilities, seccomp, and the signal mask the sandbox's fork needs.

pub mod caps;
pub mod sandbox;
pub mod seccomp;
pub mod signals;
