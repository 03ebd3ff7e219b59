//! A WRITE flagged `FUSE_WRITE_KILL_SUIDGID` (the guest's writer lacks CAP_FSETID) clears SUID,
//! and SGID when group-execute is set, without HANDLE_KILLPRIV_V2 negotiated (our default):
//! a Linux guest flags every such direct-I/O write whether or not it was negotiated. So does a
//! truncating open by a caller other than root. The real
//! binary over its socket, in every sandbox mode; the guest-side view is `guest_killpriv`.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Build, Env};
use vufs_frontend::fuse::{parse_obj, Opcode, WriteIn, WriteOut};
use vufs_frontend::{FuseSession, ROOT_ID};

/// `FUSE_WRITE_KILL_SUIDGID` in `fuse_write_in.write_flags`.
const WRITE_KILL_SUIDGID: u32 = 4;

fn write(fs: &mut FuseSession, nodeid: u64, fh: u64, write_flags: u32) {
    let data = b"guest";
    let w = WriteIn {
        fh,
        offset: 0,
        size: data.len() as u32,
        // `write_flags` in the kernel's struct.
        fuse_flags: write_flags,
        ..Default::default()
    };
    let r = fs
        .request(
            Opcode::Write as u32,
            nodeid,
            &[&common::bytes(&w), data],
            std::mem::size_of::<WriteOut>(),
        )
        .unwrap();
    let out: WriteOut = parse_obj(&r).unwrap();
    assert_eq!(out.size, data.len() as u32);
}

#[test]
fn killpriv_flagged_write_clears_suid_and_sgid_with_group_exec() {
    for mode in [
        &["--sandbox=namespace"][..],
        &["--sandbox=chroot"],
        &["--sandbox=none"],
    ] {
        // (mode before, write flags, mode after)
        let cases = [
            (0o4777, WRITE_KILL_SUIDGID, 0o0777),
            (0o2777, WRITE_KILL_SUIDGID, 0o0777),
            (0o6755, WRITE_KILL_SUIDGID, 0o0755),
            (0o2767, WRITE_KILL_SUIDGID, 0o2767),
            (0o0777, WRITE_KILL_SUIDGID, 0o0777),
            (0o4777, 0, 0o4777),
            (0o6777, 0, 0o6777),
        ];
        let env = Env::start(Build::Normal, mode, &[]);
        let mut fs = env.session();
        for (i, (before, flags, want)) in cases.into_iter().enumerate() {
            let name = format!("f{i}");
            let p = env.host(&name);
            std::fs::write(&p, b"host").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(before)).unwrap();
            let id = fs.lookup(ROOT_ID, name.as_bytes()).unwrap().nodeid;
            let fh = fs.open(id, libc::O_RDWR as u32).unwrap().fh;
            write(&mut fs, id, fh, flags);
            let got = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
            assert_eq!(
                got, want,
                "{mode:?}: {before:04o} written with flags {flags}: {got:04o}, want {want:04o}"
            );
            assert_eq!(std::fs::read(&p).unwrap(), b"guest");
            fs.release(id, fh, libc::O_RDWR as u32).unwrap();
        }
        // open(O_TRUNC) (ATOMIC_O_TRUNC: the guest sends no SETATTR): a caller other than
        // root clears the bits; root keeps them.
        for (uid, want) in [(65534, 0o0777), (0, 0o4777)] {
            let name = format!("trunc-{uid}");
            let p = env.host(&name);
            std::fs::write(&p, b"host").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o4777)).unwrap();
            let id = fs.lookup(ROOT_ID, name.as_bytes()).unwrap().nodeid;
            fs.set_creds(uid, uid, 1);
            let flags = (libc::O_WRONLY | libc::O_TRUNC) as u32;
            let fh = fs.open(id, flags).unwrap().fh;
            fs.set_creds(0, 0, 1);
            let got = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
            assert_eq!(got, want, "{mode:?}: O_TRUNC by uid {uid}: {got:04o}");
            assert_eq!(std::fs::metadata(&p).unwrap().len(), 0);
            fs.release(id, fh, flags).unwrap();
        }
    }
}
