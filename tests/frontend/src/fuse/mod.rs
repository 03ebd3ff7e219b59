//! FUSE-over-virtio encoding/decoding and a typed session.
//!
//! Requests are laid out like the Linux virtio-fs driver does: one readable
//! descriptor for the `InHeader`, one per argument (WRITE data is the last
//! argument), then a writable descriptor for the `OutHeader` and one for the reply
//! body. All buffers of a request live in one pool allocation per direction.

mod session;
mod wire;

pub use fuse_backend_rs::abi::fuse_abi::{
    Attr, AttrOut, BatchForgetIn, CreateIn, Dirent, Direntplus, EntryOut, FlushIn, ForgetIn,
    ForgetOne, FsOptions, FsyncIn, GetattrIn, GetxattrIn, GetxattrOut, InHeader, InitIn, InitOut,
    Kstatfs, LinkIn, MkdirIn, MknodIn, Opcode, OpenIn, OpenOut, OutHeader, ReadIn, ReleaseIn,
    Rename2In, RenameIn, SetattrIn, SetattrValid, SetxattrIn, StatfsOut, WriteIn, WriteOut,
    ROOT_ID,
};
pub use session::{FuseSession, Pending};
pub use wire::*;
