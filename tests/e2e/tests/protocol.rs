//! The FUSE protocol as a guest kernel speaks it, against the real daemon binary over its
//! vhost-user socket (no VM): every reply is checked, and so is the host side of the share.

mod common;
#[path = "protocol/host.rs"]
mod host;
#[path = "protocol/init.rs"]
mod init;
#[path = "protocol/submounts.rs"]
mod submounts;

use std::collections::HashMap;
use std::mem::size_of;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use common::{bytes, cstr, pattern, Build, Env, MountGuard, Scratch};
use host::*;
use init::*;
use submounts::*;
use vufs_frontend::fuse::{
    parse_obj, EntryOut, FsOptions, InitIn, InitOut, Opcode, WriteOut, INIT_MINOR,
};
use vufs_frontend::{ConnectOptions, FuseSession, XattrReply, ROOT_ID};

const MIB: usize = 1 << 20;
const FUSE_ATTR_SUBMOUNT: u32 = 1;
const SETXATTR_EXT: u64 = 1 << 29;
const RDWR: u32 = libc::O_RDWR as u32;

#[test]
fn init_reply_as_a_linux_guest_sees_it() {
    let env = Env::start(Build::Normal, &[], &[]);
    let mut fs = env.connect_with(ConnectOptions::default());
    let o = init_like_linux(&mut fs);
    let f = init_flags(&o);
    assert_eq!(o.major, 7);
    assert!(o.minor >= INIT_MINOR, "minor {}", o.minor);
    assert!(o.max_write as usize >= MIB, "max_write {}", o.max_write);
    assert!(o.max_pages >= 256, "max_pages {}", o.max_pages);
    for want in [
        FsOptions::ASYNC_READ,
        FsOptions::BIG_WRITES,
        FsOptions::MAX_PAGES,
        FsOptions::PARALLEL_DIROPS,
        FsOptions::DO_READDIRPLUS,
        FsOptions::ATOMIC_O_TRUNC,
        FsOptions::AUTO_INVAL_DATA,
        FsOptions::SUBMOUNTS,
    ] {
        assert!(f.contains(want), "INIT reply lacks {want:?}: {f:?}");
    }
    // Nothing the daemon was not asked for (no --writeback, no --killpriv-v2) and nothing
    // that would change the request layout it parses.
    for unwanted in [
        FsOptions::WRITEBACK_CACHE,
        FsOptions::ZERO_MESSAGE_OPEN,
        FsOptions::ZERO_MESSAGE_OPENDIR,
        FsOptions::HANDLE_KILLPRIV_V2,
    ] {
        assert!(!f.contains(unwanted), "INIT reply has {unwanted:?}: {f:?}");
    }
    assert_eq!(
        u64::from(o.flags) & SETXATTR_EXT,
        0,
        "SETXATTR_EXT accepted"
    );
    assert_eq!(o.flags2 & 1, 0, "SECURITY_CTX must not be accepted");

    // The negotiated session works, including a write of max_write bytes.
    let (e, h) = fs.create(ROOT_ID, b"after-init", 0o644, RDWR).unwrap();
    let data = pattern(o.max_write as usize, 5);
    assert_eq!(fs.write(e.nodeid, h.fh, 0, &data).unwrap(), o.max_write);
    assert!(std::fs::read(env.host("after-init")).unwrap() == data);
}

#[test]
fn default_init_offers_1mib_writes_and_submounts_only_when_asked() {
    let env = Env::start(Build::Normal, &[], &[]);
    let mut fs = env.connect_with(ConnectOptions::default());
    let o = fs.init().unwrap();
    assert_eq!(o.major, 7);
    assert!(o.max_write as usize >= MIB, "max_write {}", o.max_write);
    // The frontend's default INIT does not offer SUBMOUNTS: it must not come back.
    assert!(!init_flags(&o).contains(FsOptions::SUBMOUNTS));
    assert!(!init_flags(&o).contains(FsOptions::WRITEBACK_CACHE));
}

#[test]
fn file_ops_reach_the_host() {
    let env = Env::start(Build::Normal, &[], &[]);
    let mut fs = env.session();
    assert_eq!(
        fs.lookup(ROOT_ID, b"missing").unwrap_err().errno(),
        Some(libc::ENOENT)
    );
    let root = fs.getattr(ROOT_ID).unwrap();
    assert_eq!(root.attr.mode & libc::S_IFMT, libc::S_IFDIR);
    assert_eq!(
        root.attr.ino,
        std::fs::metadata(&env.s.share).unwrap().ino()
    );

    // CREATE + WRITE + FLUSH + FSYNC + READ.
    let (e, h) = fs.create(ROOT_ID, b"file", 0o640, RDWR).unwrap();
    assert_ne!(e.nodeid, 0);
    assert_eq!(e.attr.ino, host_ino(&env, "file"));
    assert_eq!(e.attr.mode & 0o777, 0o640);
    let data = pattern(10_000, 1);
    assert_eq!(fs.write(e.nodeid, h.fh, 0, &data).unwrap(), 10_000);
    fs.flush(e.nodeid, h.fh, 0).unwrap();
    fs.fsync(e.nodeid, h.fh, false).unwrap();
    fs.fsync(e.nodeid, h.fh, true).unwrap();
    assert!(std::fs::read(env.host("file")).unwrap() == data);
    assert!(fs.read(e.nodeid, h.fh, 0, 10_000).unwrap() == data);
    // Short read at EOF, empty read past it.
    assert_eq!(
        fs.read(e.nodeid, h.fh, 9_990, 4096).unwrap(),
        &data[9_990..]
    );
    assert!(fs.read(e.nodeid, h.fh, 20_000, 4096).unwrap().is_empty());
    // The host changes the file: READ sees it.
    std::fs::write(env.host("file"), b"host wrote this").unwrap();
    assert_eq!(fs.read(e.nodeid, h.fh, 0, 64).unwrap(), b"host wrote this");

    // SETATTR: truncate (with and without fh) and chmod; GETATTR agrees with the host.
    assert_eq!(fs.truncate(e.nodeid, 4, Some(h.fh)).unwrap().attr.size, 4);
    assert_eq!(std::fs::read(env.host("file")).unwrap(), b"host");
    assert_eq!(fs.truncate(e.nodeid, 8192, None).unwrap().attr.size, 8192);
    assert_eq!(std::fs::metadata(env.host("file")).unwrap().len(), 8192);
    let m = fs.chmod(e.nodeid, 0o600).unwrap();
    assert_eq!(m.attr.mode & 0o7777, 0o600);
    assert_eq!(
        std::fs::metadata(env.host("file"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o600
    );
    let a = fs.getattr(e.nodeid).unwrap();
    assert_eq!(a.attr.size, 8192);
    assert_eq!(a.attr.ino, host_ino(&env, "file"));
    fs.release(e.nodeid, h.fh, RDWR).unwrap();

    // LOOKUP finds the same node; OPEN read-only reads the host's bytes.
    let l = fs.lookup(ROOT_ID, b"file").unwrap();
    assert_eq!(l.nodeid, e.nodeid);
    assert_eq!(l.attr.size, 8192);
    let o = fs.open(l.nodeid, libc::O_RDONLY as u32).unwrap();
    assert_eq!(fs.read(l.nodeid, o.fh, 0, 4).unwrap(), b"host");
    // A read-only handle cannot write.
    assert_eq!(
        fs.write(l.nodeid, o.fh, 0, b"x").unwrap_err().errno(),
        Some(libc::EBADF)
    );
    fs.release(l.nodeid, o.fh, libc::O_RDONLY as u32).unwrap();
    assert_eq!(std::fs::read(env.host("file")).unwrap()[..4], *b"host");

    // OPEN with O_TRUNC truncates on the host.
    let o = fs
        .open(l.nodeid, (libc::O_WRONLY | libc::O_TRUNC) as u32)
        .unwrap();
    assert_eq!(std::fs::metadata(env.host("file")).unwrap().len(), 0);
    fs.release(l.nodeid, o.fh, libc::O_WRONLY as u32).unwrap();
    assert_eq!(fs.frontend().pool_in_use(), 0, "guest buffers leaked");
}

#[test]
fn directory_ops_reach_the_host() {
    let env = Env::start(Build::Normal, &[], &[]);
    std::fs::write(env.host("sub/existing"), b"hello").unwrap();
    let mut fs = env.session();

    let dir = fs.mkdir(ROOT_ID, b"dir", 0o750).unwrap();
    let md = std::fs::metadata(env.host("dir")).unwrap();
    assert!(md.is_dir());
    assert_eq!(md.permissions().mode() & 0o777, 0o750);
    assert_eq!(dir.attr.ino, md.ino());
    assert_eq!(
        fs.mkdir(ROOT_ID, b"dir", 0o755).unwrap_err().errno(),
        Some(libc::EEXIST)
    );

    let (f, h) = fs.create(dir.nodeid, b"f", 0o644, RDWR).unwrap();
    fs.write(f.nodeid, h.fh, 0, b"data").unwrap();
    fs.release(f.nodeid, h.fh, RDWR).unwrap();
    assert_eq!(std::fs::read(env.host("dir/f")).unwrap(), b"data");

    // LINK: a second name for the same inode.
    let l = fs.link(f.nodeid, ROOT_ID, b"hardlink").unwrap();
    assert_eq!(l.nodeid, f.nodeid);
    assert_eq!(l.attr.nlink, 2);
    assert_eq!(host_ino(&env, "hardlink"), host_ino(&env, "dir/f"));

    // SYMLINK + READLINK: the target is stored verbatim, never resolved by the daemon.
    let s = fs.symlink(ROOT_ID, b"sym", b"dir/f").unwrap();
    assert_eq!(s.attr.mode & libc::S_IFMT, libc::S_IFLNK);
    assert_eq!(fs.readlink(s.nodeid).unwrap(), b"dir/f");
    assert_eq!(
        std::fs::read_link(env.host("sym")).unwrap().as_os_str(),
        "dir/f"
    );

    // RENAME across directories.
    fs.rename(dir.nodeid, b"f", ROOT_ID, b"moved").unwrap();
    assert!(!env.host("dir/f").exists());
    assert_eq!(std::fs::read(env.host("moved")).unwrap(), b"data");
    assert_eq!(
        fs.rename(ROOT_ID, b"nope", ROOT_ID, b"x")
            .unwrap_err()
            .errno(),
        Some(libc::ENOENT)
    );

    // OPENDIR / READDIR / READDIRPLUS / RELEASEDIR.
    let od = fs.opendir(ROOT_ID).unwrap();
    let mut names: Vec<Vec<u8>> = fs
        .readdir(ROOT_ID, od.fh, 0, 4096)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    names.sort();
    // Like upstream virtiofsd (and crosvm), "." and ".." are not listed.
    let want: Vec<Vec<u8>> = ["dir", "hardlink", "moved", "sub", "sym"]
        .iter()
        .map(|n| n.as_bytes().to_vec())
        .collect();
    assert_eq!(names, want);
    let plus = fs.readdirplus(ROOT_ID, od.fh, 0, 16384).unwrap();
    let mut forgets = Vec::new();
    for p in &plus {
        let name = String::from_utf8(p.dirent.name.clone()).unwrap();
        assert_eq!(p.entry.attr.ino, host_ino(&env, &name), "{name}");
        assert_eq!(p.dirent.ino, p.entry.attr.ino, "{name}");
        if p.entry.nodeid != 0 {
            forgets.push((p.entry.nodeid, 1));
        }
    }
    let moved = plus.iter().find(|p| p.dirent.name == b"moved").unwrap();
    assert_eq!(moved.entry.nodeid, f.nodeid);
    assert_eq!(moved.entry.attr.size, 4);
    assert_eq!(moved.dirent.type_, libc::DT_REG as u32);
    assert_eq!(plus.len(), 5);
    fs.batch_forget(&forgets).unwrap();
    fs.releasedir(ROOT_ID, od.fh).unwrap();
    // A subdirectory: entries from the host.
    let sub = fs.lookup(ROOT_ID, b"sub").unwrap();
    let od = fs.opendir(sub.nodeid).unwrap();
    let ents = fs.readdir(sub.nodeid, od.fh, 0, 4096).unwrap();
    assert!(ents.iter().any(|e| e.name == b"existing"));
    fs.releasedir(sub.nodeid, od.fh).unwrap();

    // UNLINK / RMDIR.
    assert_eq!(
        fs.rmdir(ROOT_ID, b"moved").unwrap_err().errno(),
        Some(libc::ENOTDIR)
    );
    fs.unlink(ROOT_ID, b"moved").unwrap();
    fs.unlink(ROOT_ID, b"hardlink").unwrap();
    fs.unlink(ROOT_ID, b"sym").unwrap();
    fs.rmdir(ROOT_ID, b"dir").unwrap();
    for gone in ["moved", "hardlink", "sym", "dir"] {
        assert!(
            std::fs::symlink_metadata(env.host(gone)).is_err(),
            "{gone} still on the host"
        );
    }
    assert_eq!(
        fs.unlink(ROOT_ID, b"moved").unwrap_err().errno(),
        Some(libc::ENOENT)
    );
    assert_eq!(fs.frontend().pool_in_use(), 0, "guest buffers leaked");
}

#[test]
fn xattrs_with_the_flag() {
    let env = Env::start(Build::Normal, &["--xattr"], &[]);
    std::fs::write(env.host("x"), b"").unwrap();
    let mut fs = env.session();
    let e = fs.lookup(ROOT_ID, b"x").unwrap();
    fs.setxattr(e.nodeid, b"user.k", b"value", 0).unwrap();
    let host = xattr_get(&env.host("x"), "user.k");
    assert_eq!(host.as_deref(), Some(&b"value"[..]));
    assert_eq!(
        fs.getxattr(e.nodeid, b"user.k", 0).unwrap(),
        XattrReply::Size(5)
    );
    assert_eq!(
        fs.getxattr(e.nodeid, b"user.k", 64).unwrap(),
        XattrReply::Data(b"value".to_vec())
    );
    assert_eq!(
        fs.getxattr(e.nodeid, b"user.k", 2).unwrap_err().errno(),
        Some(libc::ERANGE)
    );
    match fs.listxattr(e.nodeid, 0).unwrap() {
        XattrReply::Size(n) => assert!(n >= 7, "{n}"),
        other => panic!("{other:?}"),
    }
    match fs.listxattr(e.nodeid, 256).unwrap() {
        XattrReply::Data(d) => assert!(d.windows(7).any(|w| w == b"user.k\0"), "{d:?}"),
        other => panic!("{other:?}"),
    }
    // XATTR_CREATE on an existing name.
    assert_eq!(
        fs.setxattr(e.nodeid, b"user.k", b"v2", libc::XATTR_CREATE as u32)
            .unwrap_err()
            .errno(),
        Some(libc::EEXIST)
    );
    fs.removexattr(e.nodeid, b"user.k").unwrap();
    assert_eq!(xattr_get(&env.host("x"), "user.k"), None);
    assert_eq!(
        fs.getxattr(e.nodeid, b"user.k", 64).unwrap_err().errno(),
        Some(libc::ENODATA)
    );
}

#[test]
fn xattrs_without_the_flag_are_enosys() {
    let env = Env::start(Build::Normal, &[], &[]);
    std::fs::write(env.host("x"), b"").unwrap();
    let mut fs = env.session();
    let e = fs.lookup(ROOT_ID, b"x").unwrap();
    let errs = [
        fs.setxattr(e.nodeid, b"user.k", b"v", 0)
            .unwrap_err()
            .errno(),
        fs.getxattr(e.nodeid, b"user.k", 64).unwrap_err().errno(),
        fs.listxattr(e.nodeid, 256).unwrap_err().errno(),
        fs.removexattr(e.nodeid, b"user.k").unwrap_err().errno(),
    ];
    // ENOSYS makes the guest kernel stop sending xattr requests (it sets no_xattr).
    assert_eq!(errs, [Some(libc::ENOSYS); 4]);
    assert_eq!(xattr_get(&env.host("x"), "user.k"), None);
}

#[test]
fn statfs_matches_the_host() {
    let env = Env::start(Build::Normal, &[], &[]);
    let mut fs = env.session();
    let st = fs.statfs(ROOT_ID).unwrap();
    let p = std::ffi::CString::new(env.s.share.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: statvfs into a zeroed struct.
    let mut h: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(p.as_ptr(), &mut h) }, 0);
    assert_eq!(u64::from(st.bsize), h.f_bsize);
    assert_eq!(st.blocks, h.f_blocks);
    assert_eq!(u64::from(st.namelen), h.f_namemax);
    assert_eq!(u64::from(st.frsize), h.f_frsize);
}

#[test]
fn one_mib_read_and_write_are_byte_exact() {
    let env = Env::start(Build::Normal, &[], &[]);
    let mut fs = env.session();
    let (e, h) = fs.create(ROOT_ID, b"big", 0o644, RDWR).unwrap();
    let data = pattern(MIB, 7);
    // Unaligned offset, one request of exactly 1 MiB.
    assert_eq!(fs.write(e.nodeid, h.fh, 123, &data).unwrap() as usize, MIB);
    let host = std::fs::read(env.host("big")).unwrap();
    assert_eq!(host.len(), MIB + 123);
    assert!(host[..123].iter().all(|b| *b == 0));
    assert!(
        host[123..] == data[..],
        "host file differs from what was written"
    );

    // A host-written 1 MiB file read in one request.
    let other = pattern(MIB, 11);
    std::fs::write(env.host("hostbig"), &other).unwrap();
    let l = fs.lookup(ROOT_ID, b"hostbig").unwrap();
    let o = fs.open(l.nodeid, libc::O_RDONLY as u32).unwrap();
    let back = fs.read(l.nodeid, o.fh, 0, MIB as u32).unwrap();
    assert_eq!(back.len(), MIB);
    assert!(back == other, "1 MiB READ differs from the host file");
    let back = fs.read(e.nodeid, h.fh, 123, MIB as u32).unwrap();
    assert!(back == data);
}

#[test]
fn forget_and_batch_forget_on_hiprio() {
    let env = Env::start(Build::Normal, &[], &[]);
    for i in 0..20 {
        std::fs::write(env.host(&format!("f{i}")), format!("{i}")).unwrap();
    }
    let mut fs = env.session();
    let mut ids = Vec::new();
    for i in 0..20 {
        let a = fs.lookup(ROOT_ID, format!("f{i}").as_bytes()).unwrap();
        let b = fs.lookup(ROOT_ID, format!("f{i}").as_bytes()).unwrap();
        assert_eq!(a.nodeid, b.nodeid);
        ids.push(a.nodeid);
    }
    // Two lookups each: FORGET one of them, then BATCH_FORGET the rest.
    for &id in &ids[..10] {
        fs.forget(id, 1).unwrap();
        fs.getattr(id).expect("one reference left");
    }
    fs.forget(ids[10], 2).unwrap();
    let batch: Vec<(u64, u64)> = ids[..10]
        .iter()
        .map(|&i| (i, 1))
        .chain(ids[11..].iter().map(|&i| (i, 2)))
        .collect();
    fs.batch_forget(&batch).unwrap();
    // Every reference is gone: the nodeids are forgotten (the daemon dropped its inodes).
    for &id in &ids {
        assert_eq!(fs.getattr(id).unwrap_err().errno(), Some(libc::EBADF));
    }
    // The daemon still answers, and a fresh LOOKUP works for each name.
    fs.getattr(ROOT_ID).unwrap();
    for i in 0..20 {
        let e = fs.lookup(ROOT_ID, format!("f{i}").as_bytes()).unwrap();
        let o = fs.open(e.nodeid, libc::O_RDONLY as u32).unwrap();
        assert_eq!(
            fs.read(e.nodeid, o.fh, 0, 16).unwrap(),
            format!("{i}").as_bytes()
        );
    }
    // FORGET of an unknown nodeid and an over-count are harmless.
    fs.forget(0xdead_beef, 1).unwrap();
    fs.batch_forget(&[(0xdead_beef, 5), (ids[0], 1000)])
        .unwrap();
    fs.getattr(ROOT_ID).unwrap();
    assert!(!env.d.stderr().contains("panicked"), "{}", env.d.stderr());
}

#[test]
fn pipelined_requests_on_a_thread_pool() {
    let env = Env::start(Build::Normal, &["--thread-pool-size=4"], &[]);
    let opts = ConnectOptions {
        queue_size: 1024,
        ..Default::default()
    };
    let mut fs = env.connect_with(opts);
    fs.init().unwrap();
    let (e, h) = fs.create(ROOT_ID, b"pipe", 0o644, RDWR).unwrap();
    const BS: usize = 64 * 1024;
    const N: usize = 32;
    let data = pattern(BS * N, 13);
    // 32 writes in flight at once, in a scrambled order.
    let mut by_token = HashMap::new();
    for k in 0..N {
        let blk = (k * 7) % N;
        let p = fs
            .submit_write(
                e.nodeid,
                h.fh,
                (blk * BS) as u64,
                &data[blk * BS..(blk + 1) * BS],
            )
            .unwrap();
        by_token.insert(p.token, blk);
    }
    assert_eq!(fs.pending_count(), N);
    let mut seen = Vec::new();
    while fs.pending_count() > 0 {
        let (p, r) = fs.wait_any_reply().unwrap();
        let w: WriteOut = parse_obj(&r.unwrap().into_result().unwrap()).unwrap();
        assert_eq!(w.size as usize, BS);
        seen.push(by_token[&p.token]);
    }
    seen.sort();
    assert_eq!(seen, (0..N).collect::<Vec<_>>());
    assert!(std::fs::read(env.host("pipe")).unwrap() == data);

    // 32 reads + 32 GETATTRs + LOOKUPs in flight together; each checked by what it asked.
    enum Want {
        Block(usize),
        Attr,
        Entry,
    }
    let mut want = HashMap::new();
    for blk in (0..N).rev() {
        let p = fs
            .submit_read(e.nodeid, h.fh, (blk * BS) as u64, BS as u32)
            .unwrap();
        want.insert(p.token, Want::Block(blk));
        let g = vufs_frontend::fuse::GetattrIn::default();
        let p = fs
            .submit(Opcode::Getattr as u32, e.nodeid, &[&bytes(&g)], 104)
            .unwrap();
        want.insert(p.token, Want::Attr);
        let p = fs
            .submit(Opcode::Lookup as u32, ROOT_ID, &[&cstr(b"pipe")], 128)
            .unwrap();
        want.insert(p.token, Want::Entry);
    }
    let mut lookups = 0;
    while fs.pending_count() > 0 {
        let (p, r) = fs.wait_any_reply().unwrap();
        let body = r.unwrap().into_result().unwrap();
        match want[&p.token] {
            Want::Block(b) => assert!(body == data[b * BS..(b + 1) * BS], "block {b}"),
            Want::Attr => {
                let a: vufs_frontend::fuse::AttrOut = parse_obj(&body).unwrap();
                assert_eq!(a.attr.size as usize, BS * N);
            }
            Want::Entry => {
                let en: EntryOut = parse_obj(&body).unwrap();
                assert_eq!(en.nodeid, e.nodeid);
                lookups += 1;
            }
        }
    }
    assert_eq!(lookups, N);
    fs.forget(e.nodeid, N as u64).unwrap();
    assert_eq!(fs.frontend().pool_in_use(), 0, "guest buffers leaked");
}

#[test]
fn exits_zero_when_the_frontend_disconnects() {
    let mut env = Env::start(Build::Normal, &[], &[]);
    let mut fs = env.session();
    fs.getattr(ROOT_ID).unwrap();
    drop(fs);
    let st = env
        .d
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("daemon still running 10 s after disconnect"));
    assert_eq!(st.code(), Some(0), "stderr:\n{}", env.d.stderr());
    assert!(!env.s.socket().exists(), "socket left behind");
}

#[test]
fn readonly_refuses_every_change() {
    let env = Env::start(Build::Normal, &["--readonly", "--xattr"], &[]);
    std::fs::write(env.host("file"), b"original").unwrap();
    std::fs::create_dir(env.host("emptydir")).unwrap();
    let before = env.snapshot();
    let mut fs = env.session();
    let f = fs.lookup(ROOT_ID, b"file").unwrap();
    let rofs = Some(libc::EROFS);

    let o = fs.open(f.nodeid, libc::O_RDONLY as u32).unwrap();
    assert_eq!(fs.read(f.nodeid, o.fh, 0, 64).unwrap(), b"original");
    assert_eq!(fs.write(f.nodeid, o.fh, 0, b"X").unwrap_err().errno(), rofs);
    for flags in [
        libc::O_WRONLY,
        libc::O_RDWR,
        libc::O_RDONLY | libc::O_TRUNC,
        libc::O_WRONLY | libc::O_APPEND,
    ] {
        assert_eq!(
            fs.open(f.nodeid, flags as u32).unwrap_err().errno(),
            rofs,
            "open flags {flags:#o}"
        );
    }
    assert_eq!(
        fs.create(ROOT_ID, b"new", 0o644, RDWR).unwrap_err().errno(),
        rofs
    );
    assert_eq!(fs.mkdir(ROOT_ID, b"d", 0o755).unwrap_err().errno(), rofs);
    assert_eq!(fs.unlink(ROOT_ID, b"file").unwrap_err().errno(), rofs);
    assert_eq!(fs.rmdir(ROOT_ID, b"emptydir").unwrap_err().errno(), rofs);
    assert_eq!(fs.truncate(f.nodeid, 0, None).unwrap_err().errno(), rofs);
    assert_eq!(fs.chmod(f.nodeid, 0o777).unwrap_err().errno(), rofs);
    assert_eq!(
        fs.rename(ROOT_ID, b"file", ROOT_ID, b"renamed")
            .unwrap_err()
            .errno(),
        rofs
    );
    assert_eq!(
        fs.rename2(ROOT_ID, b"file", ROOT_ID, b"renamed", 0)
            .unwrap_err()
            .errno(),
        rofs
    );
    assert_eq!(fs.link(f.nodeid, ROOT_ID, b"hl").unwrap_err().errno(), rofs);
    assert_eq!(
        fs.symlink(ROOT_ID, b"sl", b"file").unwrap_err().errno(),
        rofs
    );
    assert_eq!(
        fs.setxattr(f.nodeid, b"user.k", b"v", 0)
            .unwrap_err()
            .errno(),
        rofs
    );
    assert_eq!(
        fs.removexattr(f.nodeid, b"user.k").unwrap_err().errno(),
        rofs
    );
    // Reading metadata still works.
    fs.getattr(f.nodeid).unwrap();
    let od = fs.opendir(ROOT_ID).unwrap();
    assert_eq!(fs.readdir(ROOT_ID, od.fh, 0, 4096).unwrap().len(), 3);
    fs.release(f.nodeid, o.fh, libc::O_RDONLY as u32).unwrap();
    assert_eq!(before.compare(&env.snapshot()), Ok(()));
}

#[test]
fn readdirplus_follows_cache_and_flag() {
    assert!(readdirplus_offered(&[]), "default must offer READDIRPLUS");
    assert!(readdirplus_offered(&["--cache=auto"]));
    assert!(readdirplus_offered(&["--cache=always"]));
    assert!(
        !readdirplus_offered(&["--cache=never"]),
        "--cache=never must disable READDIRPLUS"
    );
    assert!(
        !readdirplus_offered(&["--no-readdirplus"]),
        "--no-readdirplus must disable READDIRPLUS"
    );
    assert!(!readdirplus_offered(&["-o", "no_readdirplus"]));
}

#[test]
fn tag_is_in_the_config_space() {
    let env = Env::start(Build::Normal, &["--tag=mytag"], &[]);
    let mut fs = env.connect_with(ConnectOptions::default());
    let fe = fs.frontend();
    assert!(
        fe.protocol_features().bits() & PROTOCOL_F_CONFIG != 0,
        "CONFIG not negotiated with --tag"
    );
    let cfg = fe.read_config(0, 40).unwrap();
    assert_eq!(cfg.len(), 40);
    assert_eq!(&cfg[..5], b"mytag");
    assert!(
        cfg[5..36].iter().all(|b| *b == 0),
        "tag not NUL padded: {cfg:?}"
    );
    // num_request_queues: as many as the device serves (--max-request-queues, default one per
    // CPU this process may run on, at most 16).
    let cpus = std::thread::available_parallelism().unwrap().get().min(16) as u32;
    assert_eq!(u32::from_le_bytes(cfg[36..40].try_into().unwrap()), cpus);
    fs.init().unwrap();
    fs.getattr(ROOT_ID).unwrap();

    let env = Env::start(
        Build::Normal,
        &["--tag=mytag", "--max-request-queues=3"],
        &[],
    );
    let mut fs = env.connect_with(ConnectOptions::default());
    let cfg = fs.frontend().read_config(0, 40).unwrap();
    assert_eq!(u32::from_le_bytes(cfg[36..40].try_into().unwrap()), 3);

    let env = Env::start(Build::Normal, &[], &[]);
    let mut fs = env.connect_with(ConnectOptions::default());
    assert!(
        fs.frontend().protocol_features().bits() & PROTOCOL_F_CONFIG == 0,
        "CONFIG offered without --tag"
    );
    assert!(fs.frontend().read_config(0, 40).is_err());
    fs.init().unwrap();
}

/// VHOST_USER_PROTOCOL_F_CONFIG.
const PROTOCOL_F_CONFIG: u64 = 1 << 9;

#[test]
fn submounts_are_announced() {
    let (init, mnt, plain, ents) = submount_flags(&[], true);
    assert!(init.contains(FsOptions::SUBMOUNTS), "{init:?}");
    assert_eq!(
        mnt & FUSE_ATTR_SUBMOUNT,
        FUSE_ATTR_SUBMOUNT,
        "LOOKUP of the mount point"
    );
    assert_eq!(plain & FUSE_ATTR_SUBMOUNT, 0, "plain directory marked");
    assert_eq!(
        flags_of(&ents, b"mnt") & FUSE_ATTR_SUBMOUNT,
        FUSE_ATTR_SUBMOUNT
    );
    assert_eq!(flags_of(&ents, b"plain") & FUSE_ATTR_SUBMOUNT, 0);
    assert_eq!(flags_of(&ents, b"sub") & FUSE_ATTR_SUBMOUNT, 0);
    // Same with the explicit flag.
    let (init, mnt, _, _) = submount_flags(&["--announce-submounts"], true);
    assert!(init.contains(FsOptions::SUBMOUNTS));
    assert_eq!(mnt & FUSE_ATTR_SUBMOUNT, FUSE_ATTR_SUBMOUNT);
}

#[test]
fn submounts_not_announced_when_disabled() {
    let (init, mnt, _, ents) = submount_flags(&["--no-announce-submounts"], true);
    assert!(!init.contains(FsOptions::SUBMOUNTS), "{init:?}");
    assert_eq!(mnt & FUSE_ATTR_SUBMOUNT, 0);
    assert_eq!(flags_of(&ents, b"mnt") & FUSE_ATTR_SUBMOUNT, 0);
}

#[test]
fn submounts_flag_needs_the_guest_to_offer_it() {
    let (init, _, _, _) = submount_flags(&[], false);
    assert!(!init.contains(FsOptions::SUBMOUNTS), "{init:?}");
}
