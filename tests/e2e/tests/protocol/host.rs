//! The host side of the share: inode numbers and extended attributes as the host sees them.

use super::*;

pub(super) fn host_ino(env: &Env, rel: &str) -> u64 {
    std::fs::symlink_metadata(env.host(rel)).unwrap().ino()
}

pub(super) fn xattr_get(path: &std::path::Path, name: &str) -> Option<Vec<u8>> {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and a buffer of the length passed.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (r >= 0).then(|| {
        buf.truncate(r as usize);
        buf
    })
}
