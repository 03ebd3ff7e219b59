//! Hostile input from the guest against the real daemon binary: names that try to leave the
//! share, nodeids and handles never handed out, malformed descriptor chains and FUSE bodies,
//! session-order violations, floods, and ring corruption.
//!
//! After every case: a good GETATTR(ROOT) must succeed, the daemon must be alive, nothing may
//! have changed outside the share (`outside/`, the scratch root) or inside it.
//!
//! Every case also runs against a seeded bug (a `seeded-bugs` build of the daemon), to prove
//! the checks are not vacuous: with `VIRTIOFSD_SEEDED_BUG_NO_NAME_CHECKS` the name cases must
//! fail their check (and the escapes must be seen by the canaries); with
//! `VIRTIOFSD_SEEDED_BUG_EXIT_ON_BAD_REQUEST` every malformed request must kill the daemon.

mod common;
#[path = "hostile/malformed.rs"]
mod malformed;
#[path = "hostile/names.rs"]
mod names;

use std::time::{Duration, Instant};

use common::{bytes, Build, Env, T};
use vufs_frontend::fuse::{
    CreateIn, GetattrIn, InHeader, LinkIn, MkdirIn, Opcode, ReadIn, Rename2In, RenameIn, SetattrIn,
    WriteIn,
};
use vufs_frontend::{
    encode_request, parse_reply, ConnectOptions, Desc, Error, FuseSession, Link, HIPRIO_QUEUE,
    REQUEST_QUEUE, ROOT_ID, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_WRITE,
};

const NO_NAME_CHECKS: (&str, &str) = ("VIRTIOFSD_SEEDED_BUG_NO_NAME_CHECKS", "1");
const EXIT_ON_BAD: (&str, &str) = ("VIRTIOFSD_SEEDED_BUG_EXIT_ON_BAD_REQUEST", "1");
const RDWR: u32 = libc::O_RDWR as u32;

use malformed::*;
use names::*;

/// Nodeids looked up before the cases run.
struct Fx {
    /// `share/f` (contents "f-data").
    f: u64,
    /// An open read-write handle on `f`.
    f_fh: u64,
    /// `share/sub`.
    sub: u64,
    /// `share/g` (contents "g-data").
    g: u64,
}

/// A fresh daemon with the fixture files, INIT done, fixture looked up.
fn setup(build: Build, args: &[&str], env: &[(&str, &str)]) -> (Env, FuseSession, Fx) {
    let e = Env::start(build, args, env);
    std::fs::write(e.host("f"), b"f-data").unwrap();
    std::fs::write(e.host("g"), b"g-data").unwrap();
    std::fs::create_dir(e.host("sub/empty")).unwrap();
    let mut fs = e.session();
    let f = fs.lookup(ROOT_ID, b"f").unwrap().nodeid;
    let f_fh = fs.open(f, RDWR).unwrap().fh;
    let sub = fs.lookup(ROOT_ID, b"sub").unwrap().nodeid;
    let g = fs.lookup(ROOT_ID, b"g").unwrap().nodeid;
    (e, fs, Fx { f, f_fh, sub, g })
}

fn errno_of<T>(r: vufs_frontend::Result<T>) -> Result<Option<i32>, String> {
    match r {
        Ok(_) => Ok(None),
        Err(Error::Errno { errno }) => Ok(Some(errno)),
        Err(e) => Err(format!("no FUSE reply: {e}")),
    }
}

fn mkdir_in() -> Vec<u8> {
    bytes(&MkdirIn {
        mode: 0o755,
        umask: 0,
    })
}

fn mknod_fifo_in() -> Vec<u8> {
    // struct fuse_mknod_in { mode, rdev, umask, padding }
    [libc::S_IFIFO | 0o644, 0, 0, 0]
        .iter()
        .flat_map(|v: &u32| v.to_le_bytes())
        .collect()
}

fn create_in() -> Vec<u8> {
    bytes(&CreateIn {
        flags: RDWR,
        mode: 0o644,
        umask: 0,
        fuse_flags: 0,
    })
}

/// A raw request with a name body exactly as given (no NUL added).
fn raw(fs: &mut FuseSession, op: Opcode, nodeid: u64, args: &[&[u8]]) -> vufs_frontend::Result<()> {
    fs.request(op as u32, nodeid, args, 256).map(|_| ())
}

fn long_name() -> Vec<u8> {
    vec![b'x'; 256]
}

// ------------------------------------------------------------------------------------------
// Names

/// Every sandbox mode, each with the seccomp filter that kills: name checks are the first
/// wall whatever the sandbox.
const SANDBOXES: [&[&str]; 3] = [
    &["--sandbox=namespace", "--seccomp=kill"],
    &["--sandbox=chroot", "--seccomp=kill"],
    &["--sandbox=none", "--seccomp=kill"],
];

#[test]
fn hostile_names_are_rejected() {
    for mode in SANDBOXES {
        eprintln!("== {mode:?}");
        hostile_names_are_rejected_in(mode);
    }
}

fn hostile_names_are_rejected_in(mode: &[&str]) {
    let (mut e, mut fs, fx) = setup(Build::Normal, mode, &[]);
    let mut failures = Vec::new();
    for c in name_cases() {
        let (errno, host, _, serving) = run_name_case(&mut e, &mut fs, &fx, &c);
        eprintln!("{:40} -> {:?}", c.what, errno.map(errno_name));
        if errno != Some(c.errno) {
            failures.push(format!(
                "{}: got {:?}, want {}",
                c.what,
                errno.map(errno_name),
                errno_name(c.errno)
            ));
        }
        if let Err(m) = host.and(serving) {
            failures.push(format!("{}: {m}", c.what));
        }
    }
    assert!(failures.is_empty(), "{mode:?}:\n{}", failures.join("\n"));
    // The fixture handle still reads the right file.
    assert_eq!(fs.read(fx.f, fx.f_fh, 0, 64).unwrap(), b"f-data");
}

/// Same cases against a daemon without name checks: each must fail the check above.
#[test]
fn hostile_names_seeded_bug_is_caught() {
    let mut failures = Vec::new();
    for c in name_cases() {
        let (mut e, mut fs, fx) = setup(Build::Seeded, &["--sandbox=none"], &[NO_NAME_CHECKS]);
        let (errno, host, escaped, serving) = run_name_case(&mut e, &mut fs, &fx, &c);
        let check_passes = errno == Some(c.errno) && host.is_ok() && serving.is_ok();
        eprintln!(
            "seeded {:40} -> {:?} host: {:?}",
            c.what,
            errno.map(errno_name),
            host
        );
        let ok = match c.seeded {
            Seeded::Escapes => escaped && !check_passes,
            Seeded::Accepted => !check_passes,
            Seeded::SecondWall(_) => check_passes,
        };
        if !ok {
            failures.push(format!(
                "{}: expected {:?} with the seeded bug, got {:?} (host {:?}, escaped {escaped})",
                c.what,
                c.seeded,
                errno.map(errno_name),
                host
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The sandbox is the second wall: with name checks seeded off, the cases that escape without
/// a sandbox stay inside the shared directory under `namespace` and `chroot`.
#[test]
fn hostile_names_seeded_bug_is_contained_by_the_sandbox() {
    let mut failures = Vec::new();
    for mode in ["--sandbox=namespace", "--sandbox=chroot"] {
        for c in name_cases()
            .into_iter()
            .filter(|c| matches!(c.seeded, Seeded::Escapes))
        {
            let (mut e, mut fs, fx) =
                setup(Build::Seeded, &[mode, "--seccomp=kill"], &[NO_NAME_CHECKS]);
            let (errno, _, escaped, serving) = run_name_case(&mut e, &mut fs, &fx, &c);
            eprintln!("{mode} seeded {:40} -> {:?}", c.what, errno.map(errno_name));
            if escaped {
                failures.push(format!("{mode}: {} escaped the shared directory", c.what));
            }
            if let Err(m) = serving {
                failures.push(format!("{mode}: {}: {m}", c.what));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn lookup_dotdot_at_the_root_is_the_root() {
    for build in [Build::Normal, Build::Seeded] {
        let (mut e, mut fs, fx) = setup(build, &[], &[NO_NAME_CHECKS]);
        let before = e.snapshot();
        let share_ino =
            std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&e.s.share).unwrap());
        for name in [&b".."[..], b"."] {
            let en = fs.lookup(ROOT_ID, name).unwrap();
            assert_eq!(
                en.attr.ino, share_ino,
                "{build:?} LOOKUP {name:?} at the root"
            );
            // ... and what it names lists the share, not its parent.
            let od = fs.opendir(en.nodeid).unwrap();
            let names: Vec<Vec<u8>> = fs
                .readdir(en.nodeid, od.fh, 0, 4096)
                .unwrap()
                .into_iter()
                .map(|d| d.name)
                .collect();
            assert!(names.contains(&b"f".to_vec()), "{names:?}");
            assert!(!names.contains(&b"outside".to_vec()), "{names:?}");
            fs.releasedir(en.nodeid, od.fh).unwrap();
        }
        // ".." below the root is the parent, as usual.
        let up = fs.lookup(fx.sub, b"..").unwrap();
        assert_eq!(up.attr.ino, share_ino);
        e.still_serving(&mut fs).unwrap();
        assert_eq!(before.compare(&e.snapshot()), Ok(()));
    }
}

/// A symlink the host put in the share, pointing outside: the daemon never follows it.
#[test]
fn host_symlinks_out_of_the_share_are_not_followed() {
    let (mut e, mut fs, _) = setup(Build::Normal, &[], &[]);
    let target = e.s.outside.join("canary");
    std::os::unix::fs::symlink(&target, e.host("esc")).unwrap();
    std::os::unix::fs::symlink("../outside", e.host("escdir")).unwrap();
    let before = e.snapshot();
    let l = fs.lookup(ROOT_ID, b"esc").unwrap();
    assert_eq!(l.attr.mode & libc::S_IFMT, libc::S_IFLNK);
    assert_eq!(
        fs.readlink(l.nodeid).unwrap(),
        target.as_os_str().as_encoded_bytes()
    );
    for flags in [libc::O_RDONLY, libc::O_WRONLY | libc::O_TRUNC, libc::O_RDWR] {
        let r = fs.open(l.nodeid, flags as u32);
        assert!(
            r.is_err(),
            "OPEN of a symlink with flags {flags:#o} succeeded"
        );
    }
    // SETATTR(size) of the symlink's nodeid: refused, the canary keeps its bytes.
    let t = fs.truncate(l.nodeid, 0, None);
    assert_eq!(
        t.as_ref().err().and_then(|e| e.errno()),
        Some(libc::EBADF),
        "{t:?}"
    );
    let d = fs.lookup(ROOT_ID, b"escdir").unwrap();
    assert_eq!(d.attr.mode & libc::S_IFMT, libc::S_IFLNK);
    for name in [&b"canary"[..], b"x"] {
        let r = fs.lookup(d.nodeid, name);
        assert!(r.is_err(), "LOOKUP through a symlink succeeded");
        let r = fs.create(d.nodeid, name, 0o644, RDWR);
        assert!(r.is_err(), "CREATE through a symlink succeeded");
    }
    e.still_serving(&mut fs).unwrap();
    assert_eq!(before.compare(&e.snapshot()), Ok(()));
}

// ------------------------------------------------------------------------------------------
// Nodeids and handles

#[test]
fn unknown_nodeids_and_handles_are_ebadf() {
    let (mut e, mut fs, fx) = setup(Build::Normal, &[], &[]);
    let before = e.snapshot();
    const BOGUS: u64 = 0xdead_beef;
    let ebadf = Some(libc::EBADF);
    let od = fs.opendir(ROOT_ID).unwrap();
    let got = [
        ("GETATTR bogus nodeid", fs.getattr(BOGUS).err()),
        ("LOOKUP in bogus nodeid", fs.lookup(BOGUS, b"f").err()),
        ("MKDIR in bogus nodeid", fs.mkdir(BOGUS, b"d", 0o755).err()),
        (
            "CREATE in bogus nodeid",
            fs.create(BOGUS, b"c", 0o644, RDWR).err(),
        ),
        ("OPEN bogus nodeid", fs.open(BOGUS, RDWR).err()),
        ("OPENDIR bogus nodeid", fs.opendir(BOGUS).err()),
        ("UNLINK in bogus nodeid", fs.unlink(BOGUS, b"f").err()),
        ("LINK bogus nodeid", fs.link(BOGUS, ROOT_ID, b"l").err()),
        ("READ unknown fh", fs.read(fx.f, 0xdead, 0, 16).err()),
        ("WRITE unknown fh", fs.write(fx.f, 0xdead, 0, b"x").err()),
        ("RELEASE unknown fh", fs.release(fx.f, 0xdead, RDWR).err()),
        ("FSYNC unknown fh", fs.fsync(fx.f, 0xdead, false).err()),
        (
            "READ fh on bogus nodeid",
            fs.read(BOGUS, fx.f_fh, 0, 16).err(),
        ),
        (
            "READDIR unknown fh",
            fs.readdir(ROOT_ID, 0xdead, 0, 4096).err(),
        ),
        (
            "READ with a directory fh",
            fs.read(fx.f, od.fh, 0, 16).err(),
        ),
    ];
    let mut bad = Vec::new();
    for (what, err) in &got {
        let errno = err.as_ref().and_then(|e| e.errno());
        eprintln!("{what:30} -> {:?}", errno.map(errno_name));
        if errno != ebadf {
            bad.push(format!("{what}: {err:?}"));
        }
    }
    assert!(bad.is_empty(), "want EBADF:\n{}", bad.join("\n"));
    e.still_serving(&mut fs).unwrap();
    assert_eq!(before.compare(&e.snapshot()), Ok(()));
    assert_eq!(fs.read(fx.f, fx.f_fh, 0, 64).unwrap(), b"f-data");
}

/// A handle used with another inode's nodeid: passthrough checks the pair and answers EBADF,
/// so no data of one file shows up as (or is written into) the other.
#[test]
fn handle_of_another_inode() {
    let (mut e, mut fs, fx) = setup(Build::Normal, &[], &[]);
    let before = e.snapshot();
    let r = fs.read(fx.g, fx.f_fh, 0, 64);
    assert_eq!(
        r.as_ref().err().and_then(|e| e.errno()),
        Some(libc::EBADF),
        "{r:?}"
    );
    let w = fs.write(fx.g, fx.f_fh, 0, b"XXXX");
    assert_eq!(
        w.as_ref().err().and_then(|e| e.errno()),
        Some(libc::EBADF),
        "{w:?}"
    );
    let t = fs.truncate(fx.g, 1, Some(fx.f_fh));
    assert_eq!(
        t.as_ref().err().and_then(|e| e.errno()),
        Some(libc::EBADF),
        "{t:?}"
    );
    let rel = fs.release(fx.g, fx.f_fh, RDWR);
    assert_eq!(
        rel.as_ref().err().and_then(|e| e.errno()),
        Some(libc::EBADF),
        "{rel:?}"
    );
    // Neither file changed.
    assert_eq!(before.compare(&e.snapshot()), Ok(()));
    // f's handle is still good for f.
    assert_eq!(fs.read(fx.f, fx.f_fh, 0, 64).unwrap(), b"f-data");
    e.still_serving(&mut fs).unwrap();
}

// ------------------------------------------------------------------------------------------
// Malformed chains and bodies

#[test]
fn malformed_requests_get_error_replies() {
    for mode in SANDBOXES {
        eprintln!("== {mode:?}");
        malformed_requests_get_error_replies_in(mode);
    }
}

fn malformed_requests_get_error_replies_in(mode: &[&str]) {
    let (mut e, mut fs, fx) = setup(Build::Normal, mode, &[]);
    let mut failures = Vec::new();
    for m in malformed_cases() {
        let before = e.snapshot();
        let start = Instant::now();
        let seen = send_mal(&mut fs, &fx, &m);
        eprintln!("{:45} -> {:?} ({:?})", m.what, seen, start.elapsed());
        if !seen_matches(&seen, m.expect) {
            failures.push(format!("{}: got {seen:?}, want {:?}", m.what, m.expect));
        }
        if let Err(msg) = e.still_serving(&mut fs) {
            failures.push(format!("{}: {msg}", m.what));
            break;
        }
        if let Err(msg) = before.compare(&e.snapshot()) {
            failures.push(format!("{}: {msg}", m.what));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(fs.read(fx.f, fx.f_fh, 0, 64).unwrap(), b"f-data");
    assert!(!e.d.stderr().contains("panicked"), "{}", e.d.stderr());
}

/// The same requests with trace logging on (the library formats every opcode it gets).
#[test]
fn malformed_requests_with_trace_logging() {
    let (mut e, mut fs, fx) = setup(Build::Normal, &["--log-level=trace"], &[]);
    for m in malformed_cases() {
        let seen = send_mal(&mut fs, &fx, &m);
        if !seen_matches(&seen, m.expect) {
            let st = e.d.wait_exit(Duration::from_secs(2));
            let err = e.d.stderr();
            let tail: Vec<&str> = err.lines().rev().take(5).collect();
            panic!(
                "{}: {seen:?}; daemon exit {st:?}; stderr tail: {tail:?}",
                m.what
            );
        }
        e.still_serving(&mut fs)
            .unwrap_or_else(|msg| panic!("{}: {msg}", m.what));
    }
}

/// Seeded bug: a daemon that exits on the first request it cannot decode (as upstream does)
/// must fail the "still serving" check for every malformed case.
#[test]
fn malformed_requests_seeded_bug_is_caught() {
    let mut failures = Vec::new();
    // The chains the daemon serves (loops bounded by the queue size, reply buffers first)
    // are not bad requests: the seed leaves them alone.
    for m in malformed_cases()
        .iter()
        .filter(|m| m.expect != Expect::Served)
    {
        let (mut e, mut fs, fx) = setup(Build::Seeded, &[], &[EXIT_ON_BAD]);
        fs.frontend().set_timeout(Duration::from_secs(2));
        let seen = send_mal(&mut fs, &fx, m);
        let serving = e.still_serving(&mut fs);
        let st = e.d.wait_exit(Duration::from_secs(5));
        eprintln!("seeded {:45} -> {seen:?}, exit {st:?}", m.what);
        if serving.is_ok() || st.and_then(|s| s.code()) != Some(1) {
            failures.push(format!(
                "{}: the seeded daemon survived ({seen:?}, exit {st:?})",
                m.what
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ------------------------------------------------------------------------------------------
// Session order

fn before_init(build: Build, env: &[(&str, &str)]) -> (Env, FuseSession, Result<(), String>) {
    let e = Env::start(build, &[], env);
    let mut fs = e.connect_with(ConnectOptions {
        timeout: Duration::from_secs(2),
        ..Default::default()
    });
    let r = fs.getattr(ROOT_ID).map(|_| ());
    let mut problems = Vec::new();
    if r.as_ref().err().and_then(|e| e.errno()) != Some(libc::EIO) {
        problems.push(format!("GETATTR before INIT: {r:?}"));
    }
    let r = fs.lookup(ROOT_ID, b"f").map(|_| ());
    if r.as_ref().err().and_then(|e| e.errno()) != Some(libc::EIO) {
        problems.push(format!("LOOKUP before INIT: {r:?}"));
    }
    let r = fs.mkdir(ROOT_ID, b"early", 0o755).map(|_| ());
    if r.as_ref().err().and_then(|e| e.errno()) != Some(libc::EIO) {
        problems.push(format!("MKDIR before INIT: {r:?}"));
    }
    let res = match problems.is_empty() {
        true => Ok(()),
        false => Err(problems.join("; ")),
    };
    (e, fs, res)
}

#[test]
fn requests_before_init_are_eio_then_init_works() {
    let (mut e, mut fs, r) = before_init(Build::Normal, &[]);
    r.unwrap();
    assert!(!e.host("early").exists());
    // FORGET before INIT is dropped (no reply due), not fatal.
    fs.forget(5, 1).unwrap();
    let o = fs.init().unwrap();
    assert_eq!(o.major, 7);
    e.still_serving(&mut fs).unwrap();
    fs.mkdir(ROOT_ID, b"late", 0o755).unwrap();
    assert!(e.host("late").is_dir());
}

#[test]
fn init_twice_is_eio_and_the_session_goes_on() {
    let (mut e, mut fs, _) = setup(Build::Normal, &[], &[]);
    let r = fs.init();
    assert_eq!(r.unwrap_err().errno(), Some(libc::EIO));
    e.still_serving(&mut fs).unwrap();
    fs.mkdir(ROOT_ID, b"after", 0o755).unwrap();
    assert!(e.host("after").is_dir());
}

#[test]
fn session_order_seeded_bug_is_caught() {
    let (mut e, _fs, _) = before_init(Build::Seeded, &[EXIT_ON_BAD]);
    let st = e.d.wait_exit(Duration::from_secs(5));
    assert_eq!(st.and_then(|s| s.code()), Some(1), "request before INIT");

    let (mut e, mut fs, _) = setup(Build::Seeded, &[], &[EXIT_ON_BAD]);
    fs.frontend().set_timeout(Duration::from_secs(2));
    let _ = fs.init();
    assert!(e.still_serving(&mut fs).is_err(), "INIT twice");
    assert_eq!(e.d.wait_exit(T).and_then(|s| s.code()), Some(1));
}

// ------------------------------------------------------------------------------------------
// Flood

fn flood(e: &mut Env, fs: &mut FuseSession, fx: &Fx) -> Result<usize, String> {
    let cases = malformed_cases();
    let names = name_cases();
    let mut served = 0;
    for i in 0..1000 {
        if i % 2 == 0 {
            let m = &cases[(i / 2) % cases.len()];
            let seen = send_mal(fs, fx, m);
            if !seen_matches(&seen, m.expect) {
                return Err(format!("request {i} ({}): {seen:?}", m.what));
            }
        } else {
            let c = &names[(i / 2) % names.len()];
            match errno_of((c.run)(fs, fx)) {
                Ok(Some(errno)) if errno == c.errno => {}
                other => return Err(format!("request {i} ({}): {other:?}", c.what)),
            }
        }
        served += 1;
        if !e.d.alive() {
            return Err(format!("daemon died after {served} bad requests"));
        }
    }
    e.still_serving(fs)?;
    Ok(served)
}

#[test]
fn a_flood_of_bad_requests_then_a_good_one() {
    let (mut e, mut fs, fx) = setup(Build::Normal, &["--thread-pool-size=2"], &[]);
    let before = e.snapshot();
    let start = Instant::now();
    assert_eq!(flood(&mut e, &mut fs, &fx), Ok(1000));
    eprintln!("1000 bad requests in {:?}", start.elapsed());
    // A good request after the flood.
    let (en, h) = fs.create(ROOT_ID, b"good", 0o644, RDWR).unwrap();
    assert_eq!(fs.write(en.nodeid, h.fh, 0, b"good").unwrap(), 4);
    assert_eq!(std::fs::read(e.host("good")).unwrap(), b"good");
    std::fs::remove_file(e.host("good")).unwrap();
    assert_eq!(before.compare(&e.snapshot()), Ok(()));
    let mut fs = fs;
    fs.frontend().reap().unwrap();
}

#[test]
fn a_flood_seeded_bug_is_caught() {
    let (mut e, mut fs, fx) = setup(Build::Seeded, &[], &[EXIT_ON_BAD]);
    fs.frontend().set_timeout(Duration::from_secs(2));
    assert!(flood(&mut e, &mut fs, &fx).is_err());
    assert_eq!(e.d.wait_exit(T).and_then(|s| s.code()), Some(1));
}

// ------------------------------------------------------------------------------------------
// Ring corruption

fn corrupt(how: &str) -> (Option<std::process::ExitStatus>, String, Duration) {
    let (mut e, mut fs, _) = setup(Build::Normal, &["--thread-pool-size=2"], &[]);
    let start = Instant::now();
    {
        let fe = fs.frontend();
        let (q, mem) = fe.queue_mut(REQUEST_QUEUE).unwrap();
        match how {
            "head" => q.poke_avail_head(mem, 1000).unwrap(),
            _ => {
                let i = q.avail_idx();
                q.poke_avail_idx(mem, i.wrapping_add(q.size() + 5)).unwrap();
            }
        }
        q.kick_now().unwrap();
    }
    let st = e.d.wait_exit(Duration::from_secs(5));
    (st, e.d.stderr(), start.elapsed())
}

#[test]
fn head_index_beyond_the_queue_stops_the_daemon() {
    let (st, stderr, took) = corrupt("head");
    let st = st.unwrap_or_else(|| panic!("daemon still running 5 s later:\n{stderr}"));
    assert_eq!(st.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("virtqueue 1 is corrupt: head index 1000 >= queue size 256"),
        "{stderr}"
    );
    eprintln!("exited in {took:?}");
}

#[test]
fn avail_index_jump_stops_the_daemon() {
    let (st, stderr, took) = corrupt("idx");
    let st = st.unwrap_or_else(|| panic!("daemon still running 5 s later:\n{stderr}"));
    assert_eq!(st.code(), Some(1), "{stderr}");
    assert!(stderr.contains("virtqueue 1 is corrupt"), "{stderr}");
    eprintln!("exited in {took:?}");
}

fn errno_name(e: i32) -> String {
    let n = match e {
        libc::EINVAL => "EINVAL",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOENT => "ENOENT",
        libc::EBADF => "EBADF",
        libc::EIO => "EIO",
        libc::ENOSYS => "ENOSYS",
        libc::EEXIST => "EEXIST",
        libc::EISDIR => "EISDIR",
        libc::ENOTDIR => "ENOTDIR",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::EBUSY => "EBUSY",
        libc::ELOOP => "ELOOP",
        libc::EPERM => "EPERM",
        libc::EXDEV => "EXDEV",
        _ => return format!("errno {e}"),
    };
    n.to_string()
}
