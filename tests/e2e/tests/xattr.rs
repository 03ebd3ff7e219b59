//! Extended attributes act on the inode the guest named, in every sandbox mode: not on a file
//! that now has its name (an unlinked file's path reads `name (deleted)`; a rename or a
//! swapped symlink moves names under a request), and sizes from the guest are capped at 64 KiB
//! before anything is allocated. The real binary over its vhost-user socket (no VM).

mod common;

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{Build, Env};
use vufs_frontend::fuse::{GetxattrIn, Opcode};
use vufs_frontend::{FuseSession, XattrReply, ROOT_ID};

/// Every sandbox mode, with the seccomp filter that kills on a call outside the allowlist.
const SANDBOXES: [&[&str]; 3] = [
    &["--sandbox=namespace", "--seccomp=kill", "--xattr"],
    &["--sandbox=chroot", "--seccomp=kill", "--xattr"],
    &["--sandbox=none", "--seccomp=kill", "--xattr"],
];

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// Host side: `lgetxattr(path, name)`.
fn host_get(path: &Path, name: &str) -> Option<Vec<u8>> {
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and a buffer of the length passed.
    let r = unsafe { libc::lgetxattr(c(path).as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), 256) };
    (r >= 0).then(|| {
        buf.truncate(r as usize);
        buf
    })
}

/// Host side: `fgetxattr(fd, name)` (the file may have no name any more).
fn host_fget(f: &std::fs::File, name: &str) -> Option<Vec<u8>> {
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid fd, C string and a buffer of the length passed.
    let r = unsafe { libc::fgetxattr(f.as_raw_fd(), n.as_ptr(), buf.as_mut_ptr().cast(), 256) };
    (r >= 0).then(|| {
        buf.truncate(r as usize);
        buf
    })
}

/// Host side: `lsetxattr(path, name, value)`.
fn host_set(path: &Path, name: &str, value: &[u8]) {
    let n = CString::new(name).unwrap();
    // SAFETY: valid C strings and a buffer of the length passed.
    let r = unsafe {
        libc::lsetxattr(
            c(path).as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        r,
        0,
        "lsetxattr {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// The names in a LISTXATTR reply.
fn names(r: XattrReply) -> Vec<String> {
    match r {
        XattrReply::Data(d) => d
            .split(|b| *b == 0)
            .filter(|n| !n.is_empty())
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect(),
        other => panic!("LISTXATTR: {other:?}"),
    }
}

fn value(r: Result<XattrReply, vufs_frontend::Error>) -> Result<Vec<u8>, Option<i32>> {
    match r {
        Ok(XattrReply::Data(d)) => Ok(d),
        Ok(other) => panic!("GETXATTR: {other:?}"),
        Err(e) => Err(e.errno()),
    }
}

fn start(mode: &[&str]) -> (Env, FuseSession) {
    let env = Env::start(Build::Normal, mode, &[]);
    let fs = env.session();
    (env, fs)
}

#[test]
fn xattr_on_an_unlinked_file_never_reaches_its_deleted_namesake() {
    for mode in SANDBOXES {
        eprintln!("== {mode:?}");
        unlinked_in(mode);
    }
}

fn unlinked_in(mode: &[&str]) {
    let (mut env, mut fs) = start(mode);
    // A regular file, and a decoy literally named after what its path reads once unlinked.
    let (f, decoy) = (env.host("f"), env.host("f (deleted)"));
    std::fs::write(&f, b"f").unwrap();
    std::fs::write(&decoy, b"decoy").unwrap();
    host_set(&decoy, "user.d", b"decoy");
    // A fifo (not reopenable: the other code path) and its decoy, with security.* values (any
    // type may carry them, and reading them needs no capability).
    let (p, pdecoy) = (env.host("p"), env.host("p (deleted)"));
    for x in [&p, &pdecoy] {
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c(x).as_ptr(), 0o644) }, 0);
    }
    host_set(&p, "security.vufs", b"mine");
    host_set(&pdecoy, "security.vufs", b"decoy");

    // A directory (reopened) and a symlink (through the magic link, which stops at the link:
    // its target's value must not come back).
    std::fs::create_dir(env.host("d")).unwrap();
    std::os::unix::fs::symlink("f", env.host("l")).unwrap();
    host_set(&env.host("l"), "security.vufs", b"link");
    host_set(&f, "security.vufs", b"target");
    let did = fs.lookup(ROOT_ID, b"d").unwrap().nodeid;
    fs.setxattr(did, b"user.dir", b"yes", 0).unwrap();
    assert_eq!(
        host_get(&env.host("d"), "user.dir").as_deref(),
        Some(&b"yes"[..])
    );
    let lid = fs.lookup(ROOT_ID, b"l").unwrap().nodeid;
    assert_eq!(
        value(fs.getxattr(lid, b"security.vufs", 64)),
        Ok(b"link".to_vec())
    );

    let fid = fs.lookup(ROOT_ID, b"f").unwrap().nodeid;
    let pid = fs.lookup(ROOT_ID, b"p").unwrap().nodeid;
    // Through the magic link while the fifo still has its name.
    assert_eq!(
        value(fs.getxattr(pid, b"security.vufs", 64)),
        Ok(b"mine".to_vec())
    );
    assert!(names(fs.listxattr(pid, 256).unwrap()).contains(&"security.vufs".into()));

    let held = std::fs::File::open(&f).unwrap();
    std::fs::remove_file(&f).unwrap();
    std::fs::remove_file(&p).unwrap();

    // The unlinked regular file: every call lands on it, none on the decoy.
    fs.setxattr(fid, b"user.k", b"v", 0).unwrap();
    assert_eq!(host_fget(&held, "user.k").as_deref(), Some(&b"v"[..]));
    assert_eq!(
        host_get(&decoy, "user.k"),
        None,
        "{mode:?}: SETXATTR reached the decoy"
    );
    assert_eq!(value(fs.getxattr(fid, b"user.k", 64)), Ok(b"v".to_vec()));
    assert_eq!(
        value(fs.getxattr(fid, b"user.d", 64)),
        Err(Some(libc::ENODATA))
    );
    let listed = names(fs.listxattr(fid, 256).unwrap());
    assert!(listed.contains(&"user.k".into()), "{listed:?}");
    assert!(
        !listed.contains(&"user.d".into()),
        "{mode:?}: the decoy's list: {listed:?}"
    );
    fs.removexattr(fid, b"user.k").unwrap();
    assert_eq!(host_fget(&held, "user.k"), None);
    assert_eq!(host_get(&decoy, "user.d").as_deref(), Some(&b"decoy"[..]));
    assert_eq!(
        fs.removexattr(fid, b"user.d").unwrap_err().errno(),
        Some(libc::ENODATA)
    );
    assert_eq!(host_get(&decoy, "user.d").as_deref(), Some(&b"decoy"[..]));

    // The unlinked fifo has no path any more: an error, never the decoy's value or list
    // (ENOENT; ESTALE with file handles, where nothing pins the freed inode).
    let gone = [Some(libc::ENOENT), Some(libc::ESTALE)];
    let got = value(fs.getxattr(pid, b"security.vufs", 64));
    assert!(
        matches!(got, Err(e) if gone.contains(&e)),
        "{mode:?}: GETXATTR {got:?}"
    );
    let got = fs.listxattr(pid, 256).map_err(|e| e.errno());
    assert!(
        matches!(got, Err(e) if gone.contains(&e)),
        "{mode:?}: LISTXATTR {got:?}"
    );
    env.still_serving(&mut fs).unwrap();
}

#[test]
fn xattr_stays_on_the_named_inode_while_names_race() {
    for mode in SANDBOXES {
        eprintln!("== {mode:?}");
        racing_in(mode);
    }
}

/// While the host swaps the file's name with another file's and replaces its directory by a
/// symlink to a directory holding a decoy of the same name, the guest sets and reads an
/// attribute on the one inode it looked up.
fn racing_in(mode: &[&str]) {
    let (mut env, mut fs) = start(mode);
    let share = env.s.share.clone();
    std::fs::create_dir(share.join("dir")).unwrap();
    std::fs::create_dir(share.join("other")).unwrap();
    for (rel, who) in [("dir/a", "a"), ("dir/b", "b"), ("other/a", "decoy")] {
        std::fs::write(share.join(rel), who).unwrap();
        host_set(&share.join(rel), "user.who", who.as_bytes());
    }
    // Fifos take the other path (an O_PATH descriptor checked against the library's).
    for (rel, who) in [("dir/p", "p"), ("dir/q", "q"), ("other/p", "decoy")] {
        // SAFETY: a valid C string.
        assert_eq!(
            unsafe { libc::mkfifo(c(&share.join(rel)).as_ptr(), 0o644) },
            0
        );
        host_set(&share.join(rel), "security.vufs", who.as_bytes());
    }
    let target = std::fs::File::open(share.join("dir/a")).unwrap();
    let swapped = std::fs::File::open(share.join("dir/b")).unwrap();
    let decoy = std::fs::File::open(share.join("other/a")).unwrap();
    let dir = fs.lookup(ROOT_ID, b"dir").unwrap().nodeid;
    let a = fs.lookup(dir, b"a").unwrap().nodeid;
    let p = fs.lookup(dir, b"p").unwrap().nodeid;

    let stop = Arc::new(AtomicBool::new(false));
    let swaps = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (d, real) = (share.join("dir"), share.join("dir.real"));
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..2 {
                    std::fs::rename(d.join("a"), d.join("t")).unwrap();
                    std::fs::rename(d.join("b"), d.join("a")).unwrap();
                    std::fs::rename(d.join("t"), d.join("b")).unwrap();
                    std::fs::rename(d.join("p"), d.join("t")).unwrap();
                    std::fs::rename(d.join("q"), d.join("p")).unwrap();
                    std::fs::rename(d.join("t"), d.join("q")).unwrap();
                }
                std::fs::rename(&d, &real).unwrap();
                std::os::unix::fs::symlink("other", &d).unwrap();
                std::fs::remove_file(&d).unwrap();
                std::fs::rename(&real, &d).unwrap();
                n += 1;
            }
            n
        })
    };
    let mut failures = Vec::new();
    let mut fifo_hits = 0;
    for i in 0..1500u32 {
        // The fifo: its own value, or ENOENT when its path moved under the check.
        match value(fs.getxattr(p, b"security.vufs", 64)) {
            Ok(w) if w == b"p" => fifo_hits += 1,
            Err(Some(libc::ENOENT)) => {}
            other => failures.push(format!("#{i} GETXATTR fifo: {other:?}")),
        }
        let v = i.to_string();
        if let Err(e) = fs.setxattr(a, b"user.k", v.as_bytes(), 0) {
            failures.push(format!("#{i} SETXATTR: {e}"));
        }
        match value(fs.getxattr(a, b"user.who", 64)) {
            Ok(w) if w == b"a" => {}
            other => failures.push(format!("#{i} GETXATTR user.who: {other:?}")),
        }
        match value(fs.getxattr(a, b"user.k", 64)) {
            Ok(k) if k == v.as_bytes() => {}
            other => failures.push(format!("#{i} GETXATTR user.k: {other:?} (set {v})")),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = swaps.join().unwrap();
    eprintln!("{rounds} swap rounds; the fifo answered {fifo_hits} of 1500 times");
    assert!(fifo_hits > 0, "the fifo never answered");
    assert!(rounds > 10, "the host barely raced ({rounds} rounds)");
    assert_eq!(host_fget(&target, "user.k").as_deref(), Some(&b"1499"[..]));
    for (f, what) in [
        (&swapped, "the file swapped in"),
        (&decoy, "the symlinked decoy"),
    ] {
        if let Some(v) = host_fget(f, "user.k") {
            failures.push(format!(
                "{what} got user.k = {:?}",
                String::from_utf8_lossy(&v)
            ));
        }
    }
    failures.truncate(10);
    assert!(failures.is_empty(), "{mode:?}:\n{}", failures.join("\n"));
    env.still_serving(&mut fs).unwrap();
}

#[test]
fn xattr_sizes_are_capped_before_allocating() {
    for mode in SANDBOXES {
        eprintln!("== {mode:?}");
        sizes_in(mode);
    }
}

/// The daemon's processes (the namespace sandbox forks one that serves).
fn daemon_pids(root: u32) -> Vec<u32> {
    let kids =
        std::fs::read_to_string(format!("/proc/{root}/task/{root}/children")).unwrap_or_default();
    let mut v = vec![root];
    v.extend(kids.split_whitespace().map(|p| p.parse::<u32>().unwrap()));
    v
}

/// Caps the address space of `pid` at its current size plus `extra` bytes.
fn cap_address_space(pid: u32, extra: u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let lim = libc::rlimit {
        rlim_cur: kib * 1024 + extra,
        rlim_max: kib * 1024 + extra,
    };
    // SAFETY: a valid rlimit struct; no old value asked for.
    let r = unsafe { libc::prlimit(pid as i32, libc::RLIMIT_AS, &lim, std::ptr::null_mut()) };
    assert_eq!(r, 0, "prlimit: {}", std::io::Error::last_os_error());
}

fn sizes_in(mode: &[&str]) {
    let (mut env, mut fs) = start(mode);
    let x = env.host("x");
    std::fs::write(&x, b"").unwrap();
    host_set(&x, "user.k", b"small");
    let id = fs.lookup(ROOT_ID, b"x").unwrap().nodeid;

    // A value above XATTR_SIZE_MAX: E2BIG, nothing set.
    let big = vec![7u8; 65537];
    assert_eq!(
        fs.setxattr(id, b"user.big", &big, 0).unwrap_err().errno(),
        Some(libc::E2BIG)
    );
    assert_eq!(host_get(&x, "user.big"), None);
    // A name above XATTR_NAME_MAX: ERANGE.
    let long = format!("user.{}", "n".repeat(251));
    assert_eq!(
        fs.setxattr(id, long.as_bytes(), b"v", 0)
            .unwrap_err()
            .errno(),
        Some(libc::ERANGE)
    );

    // With no room for a 1 GiB buffer, a 1 GiB GETXATTR/LISTXATTR still gets its answer: the
    // buffer is clamped to 64 KiB as Linux clamps it (no value or list can be larger).
    for pid in daemon_pids(env.d.pid()) {
        cap_address_space(pid, 512 << 20);
    }
    for size in [1u32 << 30, u32::MAX] {
        let g = common::bytes(&GetxattrIn { size, padding: 0 });
        let name = common::cstr(b"user.k");
        let r = fs.request(Opcode::Getxattr as u32, id, &[&g, &name], 4096);
        assert_eq!(
            r.ok().as_deref(),
            Some(&b"small"[..]),
            "{mode:?} GETXATTR size {size}"
        );
        let r = fs.request(Opcode::Listxattr as u32, id, &[&g], 4096);
        let list = names(XattrReply::Data(r.unwrap_or_default()));
        assert!(
            list.contains(&"user.k".into()),
            "{mode:?} LISTXATTR size {size}: {list:?}"
        );
        env.still_serving(&mut fs).unwrap();
    }
}
