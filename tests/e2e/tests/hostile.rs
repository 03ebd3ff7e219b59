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

/// What the seeded build (no name checks at all) is expected to show for a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seeded {
    /// The write lands outside the share: the canaries must see it.
    Escapes,
    /// The name is no longer rejected as it must be (wrong or no error, or the share changes).
    Accepted,
    /// A second wall still rejects it with the same errno: fuse-backend-rs's decoder (no NUL,
    /// `/` in LOOKUP) or the host kernel (NAME_MAX, `rmdir(".")`). Shown in the table.
    SecondWall(&'static str),
}

struct NameCase {
    what: &'static str,
    errno: i32,
    seeded: Seeded,
    run: fn(&mut FuseSession, &Fx) -> vufs_frontend::Result<()>,
}

macro_rules! case {
    ($what:expr, $errno:expr, $seeded:expr, |$fs:ident, $fx:ident| $body:expr) => {
        NameCase {
            what: $what,
            errno: $errno,
            seeded: $seeded,
            run: |$fs: &mut FuseSession, $fx: &Fx| {
                let _ = &$fx;
                $body
            },
        }
    };
}

fn name_cases() -> Vec<NameCase> {
    use libc::{EINVAL, ENAMETOOLONG};
    use Seeded::*;
    const LIB: Seeded = SecondWall("fuse-backend-rs rejects it while decoding");
    const KERNEL: Seeded = SecondWall("the host kernel rejects it with the same errno");
    vec![
        // LOOKUP: "." and ".." are allowed, nothing else.
        case!("LOOKUP ../outside/canary", EINVAL, LIB, |fs, fx| fs
            .lookup(ROOT_ID, b"../outside/canary")
            .map(|_| ())),
        case!("LOOKUP sub/empty", EINVAL, LIB, |fs, fx| fs
            .lookup(ROOT_ID, b"sub/empty")
            .map(|_| ())),
        case!("LOOKUP empty name", EINVAL, Accepted, |fs, fx| fs
            .lookup(ROOT_ID, b"")
            .map(|_| ())),
        case!("LOOKUP 256-byte name", ENAMETOOLONG, KERNEL, |fs, fx| fs
            .lookup(ROOT_ID, &long_name())
            .map(|_| ())),
        case!(
            "LOOKUP f\\0../x (embedded NUL)",
            EINVAL,
            Accepted,
            |fs, fx| fs.lookup(ROOT_ID, b"f\0../x").map(|_| ())
        ),
        case!("LOOKUP unterminated", EINVAL, LIB, |fs, fx| raw(
            fs,
            Opcode::Lookup,
            ROOT_ID,
            &[b"f"]
        )),
        case!(
            "LOOKUP f\\0f\\0 (extra name)",
            EINVAL,
            Accepted,
            |fs, fx| raw(fs, Opcode::Lookup, ROOT_ID, &[b"f\0f\0"])
        ),
        // MKDIR
        case!("MKDIR ../outside/x", EINVAL, Escapes, |fs, fx| fs
            .mkdir(ROOT_ID, b"../outside/x", 0o755)
            .map(|_| ())),
        case!("MKDIR sub/made", EINVAL, Accepted, |fs, fx| fs
            .mkdir(ROOT_ID, b"sub/made", 0o755)
            .map(|_| ())),
        case!("MKDIR .", EINVAL, Accepted, |fs, fx| fs
            .mkdir(ROOT_ID, b".", 0o755)
            .map(|_| ())),
        case!("MKDIR ..", EINVAL, Accepted, |fs, fx| fs
            .mkdir(ROOT_ID, b"..", 0o755)
            .map(|_| ())),
        case!("MKDIR empty name", EINVAL, Accepted, |fs, fx| fs
            .mkdir(ROOT_ID, b"", 0o755)
            .map(|_| ())),
        case!("MKDIR 256-byte name", ENAMETOOLONG, KERNEL, |fs, fx| fs
            .mkdir(ROOT_ID, &long_name(), 0o755)
            .map(|_| ())),
        case!(
            "MKDIR ok\\0../../x (embedded NUL)",
            EINVAL,
            Accepted,
            |fs, fx| fs.mkdir(ROOT_ID, b"ok\0../../x", 0o755).map(|_| ())
        ),
        case!("MKDIR unterminated", EINVAL, LIB, |fs, fx| raw(
            fs,
            Opcode::Mkdir,
            ROOT_ID,
            &[&mkdir_in(), b"abc"]
        )),
        case!("MKDIR a\\0b\\0 (extra name)", EINVAL, Accepted, |fs, fx| {
            raw(fs, Opcode::Mkdir, ROOT_ID, &[&mkdir_in(), b"a\0b\0"])
        }),
        case!("MKDIR .. in sub", EINVAL, Accepted, |fs, fx| fs
            .mkdir(fx.sub, b"..", 0o755)
            .map(|_| ())),
        // MKNOD
        case!("MKNOD ../outside/fifo", EINVAL, Escapes, |fs, fx| raw(
            fs,
            Opcode::Mknod,
            ROOT_ID,
            &[&mknod_fifo_in(), b"../outside/fifo\0"]
        )),
        case!("MKNOD ..", EINVAL, Accepted, |fs, fx| raw(
            fs,
            Opcode::Mknod,
            ROOT_ID,
            &[&mknod_fifo_in(), b"..\0"]
        )),
        case!("MKNOD empty name", EINVAL, Accepted, |fs, fx| raw(
            fs,
            Opcode::Mknod,
            ROOT_ID,
            &[&mknod_fifo_in(), b"\0"]
        )),
        // CREATE
        case!("CREATE ../outside/created", EINVAL, Escapes, |fs, fx| fs
            .create(ROOT_ID, b"../outside/created", 0o644, RDWR)
            .map(|_| ())),
        case!("CREATE sub/made", EINVAL, Accepted, |fs, fx| fs
            .create(ROOT_ID, b"sub/made", 0o644, RDWR)
            .map(|_| ())),
        case!("CREATE .", EINVAL, Accepted, |fs, fx| fs
            .create(ROOT_ID, b".", 0o644, RDWR)
            .map(|_| ())),
        case!("CREATE ..", EINVAL, Accepted, |fs, fx| fs
            .create(ROOT_ID, b"..", 0o644, RDWR)
            .map(|_| ())),
        case!("CREATE empty name", EINVAL, Accepted, |fs, fx| fs
            .create(ROOT_ID, b"", 0o644, RDWR)
            .map(|_| ())),
        case!(
            "CREATE ok\\0x (embedded NUL)",
            EINVAL,
            Accepted,
            |fs, fx| fs.create(ROOT_ID, b"ok\0x", 0o644, RDWR).map(|_| ())
        ),
        case!("CREATE unterminated", EINVAL, LIB, |fs, fx| raw(
            fs,
            Opcode::Create,
            ROOT_ID,
            &[&create_in(), b"new"]
        )),
        // UNLINK
        case!("UNLINK ../outside/canary", EINVAL, Escapes, |fs, fx| fs
            .unlink(ROOT_ID, b"../outside/canary")),
        case!("UNLINK .", EINVAL, Accepted, |fs, fx| fs
            .unlink(ROOT_ID, b".")),
        case!("UNLINK ..", EINVAL, Accepted, |fs, fx| fs
            .unlink(ROOT_ID, b"..")),
        case!("UNLINK empty name", EINVAL, Accepted, |fs, fx| fs
            .unlink(ROOT_ID, b"")),
        case!(
            "UNLINK f\\0x\\0 (extra name)",
            EINVAL,
            Accepted,
            |fs, fx| raw(fs, Opcode::Unlink, ROOT_ID, &[b"f\0x\0"])
        ),
        // RMDIR
        case!("RMDIR sub/empty", EINVAL, Accepted, |fs, fx| fs
            .rmdir(ROOT_ID, b"sub/empty")),
        case!("RMDIR ../outside", EINVAL, Accepted, |fs, fx| fs
            .rmdir(ROOT_ID, b"../outside")),
        case!("RMDIR .", EINVAL, KERNEL, |fs, fx| fs.rmdir(ROOT_ID, b".")),
        case!("RMDIR ..", EINVAL, Accepted, |fs, fx| fs
            .rmdir(ROOT_ID, b"..")),
        case!("RMDIR 256-byte name", ENAMETOOLONG, KERNEL, |fs, fx| fs
            .rmdir(ROOT_ID, &long_name())),
        // RENAME: old and new names.
        case!(
            "RENAME ../outside/canary -> stolen",
            EINVAL,
            Escapes,
            |fs, fx| fs.rename(ROOT_ID, b"../outside/canary", ROOT_ID, b"stolen")
        ),
        case!("RENAME f -> ../outside/pwned", EINVAL, Escapes, |fs, fx| fs
            .rename(ROOT_ID, b"f", ROOT_ID, b"../outside/pwned")),
        case!("RENAME f -> sub/moved", EINVAL, Accepted, |fs, fx| fs
            .rename(ROOT_ID, b"f", ROOT_ID, b"sub/moved")),
        case!("RENAME .. -> x", EINVAL, Accepted, |fs, fx| fs
            .rename(ROOT_ID, b"..", ROOT_ID, b"x")),
        case!("RENAME . -> x", EINVAL, Accepted, |fs, fx| fs
            .rename(ROOT_ID, b".", ROOT_ID, b"x")),
        case!("RENAME f -> ..", EINVAL, Accepted, |fs, fx| fs
            .rename(ROOT_ID, b"f", ROOT_ID, b"..")),
        case!("RENAME f -> .", EINVAL, Accepted, |fs, fx| fs
            .rename(ROOT_ID, b"f", ROOT_ID, b".")),
        case!("RENAME f -> empty", EINVAL, Accepted, |fs, fx| fs
            .rename(ROOT_ID, b"f", ROOT_ID, b"")),
        case!(
            "RENAME f -> 256-byte name",
            ENAMETOOLONG,
            KERNEL,
            |fs, fx| fs.rename(ROOT_ID, b"f", ROOT_ID, &long_name())
        ),
        case!(
            "RENAME f\\0x -> y (embedded NUL)",
            EINVAL,
            Accepted,
            |fs, fx| fs.rename(ROOT_ID, b"f\0x", ROOT_ID, b"y")
        ),
        case!("RENAME f -> y, unterminated", EINVAL, LIB, |fs, fx| raw(
            fs,
            Opcode::Rename,
            ROOT_ID,
            &[&bytes(&RenameIn { newdir: ROOT_ID }), b"f\0y"]
        )),
        case!(
            "RENAME f -> y + extra name",
            EINVAL,
            Accepted,
            |fs, fx| raw(
                fs,
                Opcode::Rename,
                ROOT_ID,
                &[&bytes(&RenameIn { newdir: ROOT_ID }), b"f\0y\0z\0"]
            )
        ),
        // RENAME2
        case!(
            "RENAME2 f -> ../outside/pwned2",
            EINVAL,
            Escapes,
            |fs, fx| fs.rename2(ROOT_ID, b"f", ROOT_ID, b"../outside/pwned2", 0)
        ),
        case!("RENAME2 .. -> y", EINVAL, Accepted, |fs, fx| fs
            .rename2(ROOT_ID, b"..", ROOT_ID, b"y", 0)),
        case!("RENAME2 f -> .", EINVAL, Accepted, |fs, fx| fs
            .rename2(ROOT_ID, b"f", ROOT_ID, b".", 0)),
        case!("RENAME2 f -> sub/moved", EINVAL, Accepted, |fs, fx| fs
            .rename2(fx.sub, b"../f", ROOT_ID, b"sub/moved", 0)),
        // LINK
        case!("LINK f -> ../outside/linked", EINVAL, Escapes, |fs, fx| fs
            .link(fx.f, ROOT_ID, b"../outside/linked")
            .map(|_| ())),
        case!("LINK f -> sub/linked", EINVAL, Accepted, |fs, fx| fs
            .link(fx.f, ROOT_ID, b"sub/linked")
            .map(|_| ())),
        case!("LINK f -> .", EINVAL, Accepted, |fs, fx| fs
            .link(fx.f, ROOT_ID, b".")
            .map(|_| ())),
        case!("LINK f -> ..", EINVAL, Accepted, |fs, fx| fs
            .link(fx.f, ROOT_ID, b"..")
            .map(|_| ())),
        case!("LINK f -> empty", EINVAL, Accepted, |fs, fx| fs
            .link(fx.f, ROOT_ID, b"")
            .map(|_| ())),
        case!(
            "LINK f -> l\\0x (embedded NUL)",
            EINVAL,
            Accepted,
            |fs, fx| fs.link(fx.f, ROOT_ID, b"l\0x").map(|_| ())
        ),
        case!("LINK unterminated", EINVAL, LIB, |fs, fx| raw(
            fs,
            Opcode::Link,
            ROOT_ID,
            &[&bytes(&LinkIn { oldnodeid: fx.f }), b"l"]
        )),
        // SYMLINK: the name is checked; the target is the guest's business but must be sane.
        case!("SYMLINK ../x", EINVAL, Escapes, |fs, fx| fs
            .symlink(ROOT_ID, b"../x", b"target")
            .map(|_| ())),
        case!("SYMLINK sub/sl", EINVAL, Accepted, |fs, fx| fs
            .symlink(ROOT_ID, b"sub/sl", b"target")
            .map(|_| ())),
        case!("SYMLINK .", EINVAL, Accepted, |fs, fx| fs
            .symlink(ROOT_ID, b".", b"target")
            .map(|_| ())),
        case!("SYMLINK ..", EINVAL, Accepted, |fs, fx| fs
            .symlink(ROOT_ID, b"..", b"target")
            .map(|_| ())),
        case!("SYMLINK empty name", EINVAL, Accepted, |fs, fx| fs
            .symlink(ROOT_ID, b"", b"target")
            .map(|_| ())),
        case!("SYMLINK empty target", EINVAL, Accepted, |fs, fx| fs
            .symlink(ROOT_ID, b"sl", b"")
            .map(|_| ())),
        case!(
            "SYMLINK 4096-byte target",
            ENAMETOOLONG,
            KERNEL,
            |fs, fx| fs.symlink(ROOT_ID, b"sl", &[b'a'; 4096]).map(|_| ())
        ),
        case!("SYMLINK 256-byte name", ENAMETOOLONG, KERNEL, |fs, fx| fs
            .symlink(ROOT_ID, &long_name(), b"t")
            .map(|_| ())),
        case!("SYMLINK unterminated target", EINVAL, LIB, |fs, fx| raw(
            fs,
            Opcode::Symlink,
            ROOT_ID,
            &[b"sl\0target"]
        )),
        case!("SYMLINK name only", EINVAL, LIB, |fs, fx| raw(
            fs,
            Opcode::Symlink,
            ROOT_ID,
            &[b"sl\0"]
        )),
    ]
}

/// Runs one name case; returns the errno (None: success) and how the host changed.
fn run_name_case(
    e: &mut Env,
    fs: &mut FuseSession,
    fx: &Fx,
    c: &NameCase,
) -> (Option<i32>, Result<(), String>, bool, Result<(), String>) {
    let before = e.snapshot();
    let errno = errno_of((c.run)(fs, fx)).unwrap_or_else(|m| panic!("{}: {m}", c.what));
    let serving = e.still_serving(fs);
    let now = e.snapshot();
    (errno, before.compare(&now), before.escaped(&now), serving)
}

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

/// What a malformed request must come back as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// An error reply with this errno.
    Errno(i32),
    /// The chain comes back used, with nothing written.
    UsedZero,
    /// Odd but harmless: served like the GETATTR(ROOT) it carries (a 120-byte reply).
    Served,
}

/// How one chain came back.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Errno(i32),
    Ok(u32),
    Used(u32),
    BadReply(String),
    NoCompletion(String),
}

struct Mal {
    what: &'static str,
    queue: usize,
    expect: Expect,
    chain: fn(&Fx, u64, u64) -> Vec<Desc>,
}

fn header(unique: u64, opcode: u32, nodeid: u64, len: u32) -> Vec<u8> {
    bytes(&InHeader {
        len,
        opcode,
        unique,
        nodeid,
        ..Default::default()
    })
}

fn getattr(unique: u64) -> Vec<u8> {
    encode_request(
        unique,
        Opcode::Getattr as u32,
        ROOT_ID,
        &[&bytes(&GetattrIn::default())],
    )
}

fn read_req(unique: u64, fx: &Fx, offset: u64) -> Vec<u8> {
    let r = ReadIn {
        fh: fx.f_fh,
        offset,
        size: 4096,
        ..Default::default()
    };
    encode_request(unique, Opcode::Read as u32, fx.f, &[&bytes(&r)])
}

fn write_req(unique: u64, fx: &Fx, offset: u64, size: u32, data: &[u8]) -> Vec<u8> {
    let w = WriteIn {
        fh: fx.f_fh,
        offset,
        size,
        ..Default::default()
    };
    encode_request(unique, Opcode::Write as u32, fx.f, &[&bytes(&w), data])
}

fn reply_room() -> Desc {
    Desc::writable(4096 + 16)
}

macro_rules! mal {
    ($what:expr, $q:expr, $expect:expr, |$fx:ident, $u:ident, $mem:ident| $body:expr) => {
        Mal {
            what: $what,
            queue: $q,
            expect: $expect,
            chain: |$fx: &Fx, $u: u64, $mem: u64| {
                let _ = (&$fx, $u, $mem);
                $body
            },
        }
    };
}

fn malformed_cases() -> Vec<Mal> {
    use libc::{EINVAL, ENOSYS};
    use Expect::*;
    const Q: usize = REQUEST_QUEUE;
    vec![
        mal!(
            "in-header cut short (10 bytes)",
            Q,
            UsedZero,
            |fx, u, mem| vec![Desc::readable(getattr(u)[..10].to_vec()), reply_room()]
        ),
        mal!(
            "header len beyond the chain",
            Q,
            Errno(EINVAL),
            |fx, u, mem| {
                let mut g = getattr(u);
                g[..4].copy_from_slice(&4096u32.to_le_bytes());
                vec![Desc::readable(g), reply_room()]
            }
        ),
        mal!(
            "header len 8 (< header size)",
            Q,
            Errno(EINVAL),
            |fx, u, mem| {
                let mut g = getattr(u);
                g[..4].copy_from_slice(&8u32.to_le_bytes());
                vec![Desc::readable(g), reply_room()]
            }
        ),
        mal!("header len 0", Q, Errno(EINVAL), |fx, u, mem| vec![
            Desc::readable(header(u, Opcode::Getattr as u32, ROOT_ID, 0)),
            reply_room()
        ]),
        mal!("write-only chain", Q, UsedZero, |fx, u, mem| vec![
            reply_room()
        ]),
        mal!(
            "readable-only chain (no room for a reply)",
            Q,
            UsedZero,
            |fx, u, mem| vec![Desc::readable(getattr(u))]
        ),
        mal!(
            "request in a writable buffer",
            Q,
            UsedZero,
            |fx, u, mem| vec![
                Desc::readable(getattr(u)).flags(VIRTQ_DESC_F_WRITE),
                reply_room()
            ]
        ),
        mal!(
            "reply buffer before the request",
            Q,
            Served,
            |fx, u, mem| vec![reply_room(), Desc::readable(getattr(u))]
        ),
        mal!(
            "readable outside guest memory",
            Q,
            UsedZero,
            |fx, u, mem| vec![Desc::raw(mem + 4096, 56, 0), reply_room()]
        ),
        mal!("readable address wraps", Q, UsedZero, |fx, u, mem| vec![
            Desc::raw(u64::MAX - 8, 56, 0),
            reply_room()
        ]),
        mal!(
            "writable outside guest memory",
            Q,
            UsedZero,
            |fx, u, mem| vec![
                Desc::readable(getattr(u)),
                Desc::raw(mem + 4096, 256, VIRTQ_DESC_F_WRITE)
            ]
        ),
        mal!(
            "writable straddles the end of memory",
            Q,
            UsedZero,
            |fx, u, mem| vec![
                Desc::readable(getattr(u)),
                Desc::raw(mem - 8, 256, VIRTQ_DESC_F_WRITE)
            ]
        ),
        mal!("descriptor loop", Q, Served, |fx, u, mem| vec![
            Desc::readable(getattr(u)),
            reply_room().link(Link::To(0))
        ]),
        mal!("self loop", Q, UsedZero, |fx, u, mem| vec![Desc::readable(
            getattr(u)
        )
        .link(Link::To(0))]),
        mal!("next index >= queue size", Q, UsedZero, |fx, u, mem| vec![
            Desc::readable(getattr(u)).link(Link::Raw(60000))
        ]),
        mal!("nested indirect table", Q, UsedZero, |fx, u, mem| vec![
            Desc::indirect(vec![Desc::indirect(vec![
                Desc::readable(getattr(u)),
                reply_room()
            ])])
        ]),
        mal!(
            "indirect table of 17 bytes",
            Q,
            UsedZero,
            |fx, u, mem| vec![Desc::indirect_with_len(
                vec![Desc::readable(getattr(u)), reply_room()],
                17
            )]
        ),
        mal!("empty indirect table", Q, UsedZero, |fx, u, mem| vec![
            Desc::indirect(vec![])
        ]),
        mal!("huge indirect table", Q, UsedZero, |fx, u, mem| vec![
            Desc::indirect_with_len(
                vec![Desc::readable(getattr(u)), reply_room()],
                u32::MAX - 15
            )
        ]),
        mal!(
            "indirect table outside memory",
            Q,
            UsedZero,
            |fx, u, mem| vec![Desc::raw(mem * 2, 32, VIRTQ_DESC_F_INDIRECT)]
        ),
        mal!("indirect loop", Q, Served, |fx, u, mem| vec![
            Desc::indirect(vec![
                Desc::readable(getattr(u)),
                reply_room().link(Link::To(0))
            ])
        ]),
        mal!(
            "indirect descriptor with NEXT",
            Q,
            UsedZero,
            |fx, u, mem| vec![
                Desc::indirect(vec![Desc::readable(getattr(u))]),
                reply_room()
            ]
        ),
        mal!("zero-length readable", Q, UsedZero, |fx, u, mem| vec![
            Desc::readable(Vec::new()),
            reply_room()
        ]),
        mal!("zero-length writable", Q, UsedZero, |fx, u, mem| vec![
            Desc::readable(getattr(u)),
            Desc::writable(0)
        ]),
        mal!(
            "reply room smaller than the out header",
            Q,
            UsedZero,
            |fx, u, mem| vec![Desc::readable(getattr(u)), Desc::writable(8)]
        ),
        mal!(
            "WRITE size 4096 with 10 bytes",
            Q,
            Errno(EINVAL),
            |fx, u, mem| vec![
                Desc::readable(write_req(u, fx, 0, 4096, &[b'W'; 10])),
                reply_room()
            ]
        ),
        mal!(
            "WRITE with a truncated WriteIn",
            Q,
            Errno(EINVAL),
            |fx, u, mem| {
                let mut w = write_req(u, fx, 0, 0, &[]);
                w.truncate(40 + 20);
                w[..4].copy_from_slice(&60u32.to_le_bytes());
                vec![Desc::readable(w), reply_room()]
            }
        ),
        mal!(
            "READ with a truncated ReadIn",
            Q,
            Errno(EINVAL),
            |fx, u, mem| {
                let mut r = read_req(u, fx, 0);
                r.truncate(40 + 20);
                r[..4].copy_from_slice(&60u32.to_le_bytes());
                vec![Desc::readable(r), reply_room()]
            }
        ),
        mal!(
            "SETATTR with 3 bytes of body",
            Q,
            Errno(EINVAL),
            |fx, u, mem| {
                let s = bytes(&SetattrIn::default());
                vec![
                    Desc::readable(encode_request(u, Opcode::Setattr as u32, fx.f, &[&s[..3]])),
                    reply_room(),
                ]
            }
        ),
        mal!(
            "INIT-less body: OPEN with no OpenIn",
            Q,
            Errno(EINVAL),
            |fx, u, mem| vec![
                Desc::readable(encode_request(u, Opcode::Open as u32, fx.f, &[])),
                reply_room()
            ]
        ),
        mal!(
            "RENAME with a truncated RenameIn",
            Q,
            Errno(EINVAL),
            |fx, u, mem| vec![
                Desc::readable(encode_request(
                    u,
                    Opcode::Rename as u32,
                    ROOT_ID,
                    &[&[1, 0, 0]]
                )),
                reply_room()
            ]
        ),
        mal!(
            "RENAME2 with flags and no names",
            Q,
            Errno(EINVAL),
            |fx, u, mem| {
                let r = Rename2In {
                    newdir: ROOT_ID,
                    flags: 0,
                    padding: 0,
                };
                vec![
                    Desc::readable(encode_request(
                        u,
                        Opcode::Rename2 as u32,
                        ROOT_ID,
                        &[&bytes(&r)],
                    )),
                    reply_room(),
                ]
            }
        ),
        mal!("unknown opcode 9999", Q, Errno(ENOSYS), |fx, u, mem| vec![
            Desc::readable(encode_request(u, 9999, ROOT_ID, &[])),
            reply_room()
        ]),
        mal!("opcode 0", Q, Errno(ENOSYS), |fx, u, mem| vec![
            Desc::readable(encode_request(u, 0, ROOT_ID, &[])),
            reply_room()
        ]),
        mal!(
            "opcode 7 (unassigned)",
            Q,
            Errno(ENOSYS),
            |fx, u, mem| vec![
                Desc::readable(encode_request(u, 7, ROOT_ID, &[])),
                reply_room()
            ]
        ),
        mal!(
            "opcode 19 (unassigned)",
            Q,
            Errno(ENOSYS),
            |fx, u, mem| vec![
                Desc::readable(encode_request(u, 19, ROOT_ID, &[])),
                reply_room()
            ]
        ),
        mal!("opcode u32::MAX", Q, Errno(ENOSYS), |fx, u, mem| vec![
            Desc::readable(encode_request(u, u32::MAX, ROOT_ID, &[])),
            reply_room()
        ]),
        mal!("READ at offset 2^63", Q, Errno(EINVAL), |fx, u, mem| vec![
            Desc::readable(read_req(u, fx, 1 << 63)),
            reply_room()
        ]),
        mal!(
            "READ at offset 2^64-1",
            Q,
            Errno(EINVAL),
            |fx, u, mem| vec![Desc::readable(read_req(u, fx, u64::MAX)), reply_room()]
        ),
        mal!(
            "READ ending past 2^63-1",
            Q,
            Errno(EINVAL),
            |fx, u, mem| vec![
                Desc::readable(read_req(u, fx, i64::MAX as u64 - 100)),
                reply_room()
            ]
        ),
        mal!("WRITE at offset 2^63", Q, Errno(EINVAL), |fx, u, mem| vec![
            Desc::readable(write_req(u, fx, 1 << 63, 4, b"WWWW")),
            reply_room()
        ]),
        mal!(
            "WRITE at offset 2^64-1",
            Q,
            Errno(EINVAL),
            |fx, u, mem| vec![
                Desc::readable(write_req(u, fx, u64::MAX, 4, b"WWWW")),
                reply_room()
            ]
        ),
        mal!("INIT again", Q, Errno(libc::EIO), |fx, u, mem| vec![
            Desc::readable(encode_request(
                u,
                Opcode::Init as u32,
                0,
                &[&[7, 0, 0, 0, 31, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]]
            )),
            reply_room()
        ]),
        // Hiprio carries FORGET, BATCH_FORGET and INTERRUPT only.
        mal!(
            "GETATTR on the hiprio queue",
            HIPRIO_QUEUE,
            Errno(EINVAL),
            |fx, u, mem| vec![Desc::readable(getattr(u)), reply_room()]
        ),
        mal!(
            "hiprio FORGET cut short",
            HIPRIO_QUEUE,
            UsedZero,
            |fx, u, mem| {
                let f = encode_request(u, Opcode::Forget as u32, fx.g, &[&1u64.to_le_bytes()]);
                vec![Desc::readable(f[..30].to_vec())]
            }
        ),
        mal!(
            "hiprio BATCH_FORGET count beyond its body",
            HIPRIO_QUEUE,
            UsedZero,
            |fx, u, mem| {
                let mut body = 1000u32.to_le_bytes().to_vec();
                body.extend_from_slice(&[0; 4]);
                body.extend_from_slice(&fx.g.to_le_bytes());
                body.extend_from_slice(&1u64.to_le_bytes());
                vec![Desc::readable(encode_request(
                    u,
                    Opcode::BatchForget as u32,
                    0,
                    &[&body],
                ))]
            }
        ),
    ]
}

/// Sends one malformed chain and reports how it came back.
fn send_mal(fs: &mut FuseSession, fx: &Fx, m: &Mal) -> Seen {
    let unique = fs.next_unique();
    let mem = ConnectOptions::default().mem_size as u64;
    let chain = (m.chain)(fx, unique, mem);
    match fs.frontend().send_chain(m.queue, &chain, T) {
        Err(e) => Seen::NoCompletion(e.to_string()),
        Ok(c) if c.used_len == 0 => Seen::Used(0),
        Ok(c) => match parse_reply(&c, unique) {
            Ok(r) if r.header.error != 0 => Seen::Errno(-r.header.error),
            Ok(r) => Seen::Ok(r.header.len),
            Err(e) => Seen::BadReply(format!("used len {}: {e}", c.used_len)),
        },
    }
}

fn seen_matches(seen: &Seen, want: Expect) -> bool {
    match (seen, want) {
        (Seen::Errno(e), Expect::Errno(w)) => *e == w,
        (Seen::Used(0), Expect::UsedZero) => true,
        (Seen::Ok(120), Expect::Served) => true,
        _ => false,
    }
}

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
