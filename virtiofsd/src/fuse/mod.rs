//! The FUSE layer: the hostile-input wall, the passthrough filesystem, its xattrs and mounts.

pub mod fs;
pub mod handler;
pub mod mounts;
pub mod options;
pub mod request;
pub mod xattr;
