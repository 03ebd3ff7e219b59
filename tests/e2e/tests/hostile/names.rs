//! The name cases: names that try to leave the share or break the wall, each with the errno
//! it must get and what the seeded build (no name checks) shows instead.

use super::*;

/// What the seeded build (no name checks at all) is expected to show for a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Seeded {
    /// The write lands outside the share: the canaries must see it.
    Escapes,
    /// The name is no longer rejected as it must be (wrong or no error, or the share changes).
    Accepted,
    /// A second wall still rejects it with the same errno: fuse-backend-rs's decoder (no NUL,
    /// `/` in LOOKUP) or the host kernel (NAME_MAX, `rmdir(".")`). Shown in the table.
    SecondWall(&'static str),
}

pub(super) struct NameCase {
    pub(super) what: &'static str,
    pub(super) errno: i32,
    pub(super) seeded: Seeded,
    pub(super) run: fn(&mut FuseSession, &Fx) -> vufs_frontend::Result<()>,
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

pub(super) fn name_cases() -> Vec<NameCase> {
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
pub(super) fn run_name_case(
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
