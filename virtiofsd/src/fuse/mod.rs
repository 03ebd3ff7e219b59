//! The FUSE layer: the hostile-input wall, the passthrough filesystem, its xattrs and mounts.

pub mod fs;
pub mod mounts;
pub mod request;
pub mod xattr;
