//! The FUSE layer: the request wall (`request`) and the session it checks against
//! (`session`), the handler that serves one chain, and the filesystem (`fs`, configured by
//! `options`, with `xattr` and `mounts`).

pub mod fs;
pub mod handler;
pub mod mounts;
pub mod options;
pub mod request;
pub mod session;
pub mod xattr;
