//! INIT as a Linux guest sends it, and the flags a reply grants.

use super::*;

/// The INIT flags a Linux 6.1 virtio-fs mount offers (fs/fuse/inode.c, `auto_submounts` on).
pub(super) fn linux_6_1_flags() -> u64 {
    let o = FsOptions::ASYNC_READ
        | FsOptions::POSIX_LOCKS
        | FsOptions::ATOMIC_O_TRUNC
        | FsOptions::EXPORT_SUPPORT
        | FsOptions::BIG_WRITES
        | FsOptions::DONT_MASK
        | FsOptions::SPLICE_WRITE
        | FsOptions::SPLICE_MOVE
        | FsOptions::SPLICE_READ
        | FsOptions::FLOCK_LOCKS
        | FsOptions::HAS_IOCTL_DIR
        | FsOptions::AUTO_INVAL_DATA
        | FsOptions::DO_READDIRPLUS
        | FsOptions::READDIRPLUS_AUTO
        | FsOptions::ASYNC_DIO
        | FsOptions::WRITEBACK_CACHE
        | FsOptions::ZERO_MESSAGE_OPEN
        | FsOptions::PARALLEL_DIROPS
        | FsOptions::HANDLE_KILLPRIV
        | FsOptions::POSIX_ACL
        | FsOptions::ABORT_ERROR
        | FsOptions::MAX_PAGES
        | FsOptions::CACHE_SYMLINKS
        | FsOptions::ZERO_MESSAGE_OPENDIR
        | FsOptions::EXPLICIT_INVAL_DATA
        | FsOptions::HANDLE_KILLPRIV_V2
        | FsOptions::INIT_EXT
        | FsOptions::SUBMOUNTS;
    // FUSE_SETXATTR_EXT (bit 29, unnamed in FsOptions); flags2: FUSE_SECURITY_CTX.
    o.bits() | SETXATTR_EXT | (1 << 32)
}

/// INIT as Linux 6.1 sends it (minor 37, `fuse_init_in` with the INIT_EXT tail).
pub(super) fn init_like_linux(fs: &mut FuseSession) -> InitOut {
    let flags = linux_6_1_flags();
    let init = InitIn {
        major: 7,
        minor: 37,
        max_readahead: 128 * 1024,
        flags: flags as u32,
    };
    let mut ext = [0u32; 12];
    ext[0] = (flags >> 32) as u32;
    let body = fs
        .request(
            Opcode::Init as u32,
            0,
            &[&bytes(&init), &bytes(&ext)],
            size_of::<InitOut>(),
        )
        .expect("INIT");
    assert_eq!(body.len(), size_of::<InitOut>(), "full fuse_init_out");
    parse_obj(&body).unwrap()
}

pub(super) fn init_flags(o: &InitOut) -> FsOptions {
    FsOptions::from_bits_truncate(u64::from(o.flags) | (u64::from(o.flags2) << 32))
}

pub(super) fn readdirplus_offered(args: &[&str]) -> bool {
    let env = Env::start(Build::Normal, args, &[]);
    let mut fs = env.connect_with(ConnectOptions::default());
    let o = fs.init().unwrap();
    init_flags(&o).contains(FsOptions::DO_READDIRPLUS)
}
