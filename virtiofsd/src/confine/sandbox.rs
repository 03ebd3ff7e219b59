//! `--sandbox`: the second wall around the shared directory (name checks are the first).
//!
//! - `namespace` (default, as upstream) and `chroot`: the process forks into a new pid
//!   namespace. The parent stays outside: it forwards SIGTERM/SIGINT/SIGHUP, waits, removes the
//!   socket and pid file, and exits with the child's status. The child (pid 1 of the new pid
//!   namespace, killed if the parent dies) unshares the mount namespace (`namespace` also the
//!   net, ipc and uts namespaces), marks every mount a slave, so bind mounts the runtime adds
//!   under the shared directory later still reach the guest, and mounts a procfs of its own
//!   pid namespace with `subset=pid` on /proc: the only procfs it ever holds (for
//!   `/proc/self/fd` and the mount table) shows its own process and nothing of the host's, no
//!   other process, no `/proc/sys`, no `/proc/sysrq-trigger`. It then prepares the
//!   filesystem and pivots (`namespace`) or chroots (`chroot`) into the shared directory.
//!
//! In both, the filesystem's root is opened only after the root has changed, as `/`: the
//! shared directory is then the process root, where the kernel stops `..`, and the library's
//! re-import of its root at every FUSE INIT finds it. The caller closes, in the child, every
//! descriptor of the host it opened before (the parent keeps what it needs for clean-up).
//! - `none`: no isolation (rootless setups); names are still checked.
//!
//! Everything here runs before any thread is started (fork and threads do not mix).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::config::SandboxMode;
use crate::confine::signals;

fn check(rc: libc::c_int, what: &str) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("sandbox: {what}: {e}")))
    }
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::ErrorKind::InvalidInput.into())
}

fn mount(
    src: Option<&Path>,
    dst: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&std::ffi::CStr>,
) -> io::Result<()> {
    let src = src.map(cstr).transpose()?;
    let dst_c = cstr(dst)?;
    let fstype = fstype.map(|t| CString::new(t).unwrap());
    // SAFETY: all pointers are valid NUL-terminated strings or null.
    let rc = unsafe {
        libc::mount(
            src.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            dst_c.as_ptr(),
            fstype.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            data.map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        )
    };
    check(rc, &format!("mount {}", dst.display()))
}

/// What a sandbox mode needs that only root has.
pub fn needs_root(mode: SandboxMode) -> bool {
    mode != SandboxMode::None
}

/// What each side of the sandbox's fork does: the confined `child`, first, lets go of what
/// only the parent needs; the parent outside runs `parent_exited(status)` once the child has
/// exited (removing what must go), then exits with that status.
pub struct Sides<C: FnOnce(), E: FnOnce(i32)> {
    /// Runs in the confined child, first.
    pub child: C,
    /// Runs in the parent once the child has exited, with its status.
    pub parent_exited: E,
}

/// Enters `mode` around `shared_dir`. `prepare(root)` runs where the filesystem must be
/// created (in the child, after its /proc is mounted, before the root changes) and gets the
/// path its root will have once inside (`/` in a sandbox); the caller imports the root after
/// this returns. In a sandbox only the child returns; each side runs its hooks of `sides`.
pub fn enter<T>(
    mode: SandboxMode,
    shared_dir: &Path,
    prepare: impl FnOnce(&Path) -> io::Result<T>,
    sides: Sides<impl FnOnce(), impl FnOnce(i32)>,
) -> io::Result<T> {
    // SAFETY: geteuid has no preconditions.
    if needs_root(mode) && unsafe { libc::geteuid() } != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("--sandbox={mode:?} needs root; use --sandbox=none to run unprivileged")
                .to_lowercase(),
        ));
    }
    let root = Path::new("/");
    let unshare = match mode {
        SandboxMode::None => return prepare(shared_dir),
        SandboxMode::Chroot => libc::CLONE_NEWNS,
        SandboxMode::Namespace => {
            libc::CLONE_NEWNS | libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS
        }
    };
    fork_into_namespaces(unshare, sides)?;
    mount(None, root, None, libc::MS_SLAVE | libc::MS_REC, None)?;
    mount(
        Some(Path::new("proc")),
        Path::new("/proc"),
        Some("proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some(c"subset=pid"),
    )?;
    let t = prepare(root)?;
    match mode {
        SandboxMode::Namespace => pivot_into(shared_dir)?,
        _ => {
            let dir = cstr(shared_dir)?;
            // SAFETY: valid path strings.
            check(unsafe { libc::chroot(dir.as_ptr()) }, "chroot")?;
            check(unsafe { libc::chdir(c"/".as_ptr()) }, "chdir /")?;
        }
    }
    Ok(t)
}

/// Forks into a new pid namespace, then unshares `flags` in the child only (the parent keeps
/// the host's mounts, to clean up). Returns in the child only.
fn fork_into_namespaces(
    flags: libc::c_int,
    sides: Sides<impl FnOnce(), impl FnOnce(i32)>,
) -> io::Result<()> {
    // SAFETY: CLONE_NEWPID only affects children created after this call.
    check(
        unsafe { libc::unshare(libc::CLONE_NEWPID) },
        "unshare pid namespace",
    )?;
    // SAFETY: no threads exist yet (see the module docs), so the child may run Rust code.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            // Kata stops the daemon with SIGKILL to the pid it started (the parent): the child
            // must die with it. (getppid() is 0 here, outside our pid namespace, so a parent
            // that died before this call cannot be detected; the window is a few instructions.)
            // SAFETY: prctl has no memory-safety preconditions.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            (sides.child)();
            // SAFETY: unshare with namespace flags only affects this process.
            check(unsafe { libc::unshare(flags) }, "unshare")
        }
        child => {
            let status = wait_child(child);
            (sides.parent_exited)(status);
            std::process::exit(status)
        }
    }
}

/// The parent: forward termination signals to the child, wait, return its exit status.
/// (After unshare(CLONE_NEWPID) this process cannot start threads: the forwarding happens in
/// the signal handler itself, with kill(2), which is async-signal-safe.)
fn wait_child(child: libc::pid_t) -> i32 {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    for sig in [SIGTERM, SIGINT, SIGHUP] {
        // SAFETY: the handler only calls kill(2).
        let res = unsafe {
            signal_hook::low_level::register(sig, move || {
                libc::kill(child, sig);
            })
        };
        if let Err(e) = res {
            log::warn!("cannot forward signal {sig} to the sandboxed daemon: {e}");
        }
    }
    // Held since start-up (see signals::hold_termination_signals): forward what arrived. The
    // child still holds them until its own handler exists, so none is lost.
    signals::hold_termination_signals(false);
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes the status of our own child.
        let rc = unsafe { libc::waitpid(child, &mut status, 0) };
        if rc == child {
            break;
        }
        if rc < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return 1;
        }
    }
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}

/// Bind-mounts `dir` on itself (recursively: submounts come along, as slaves) and makes it
/// the root; the old root is detached.
fn pivot_into(dir: &Path) -> io::Result<()> {
    mount(Some(dir), dir, None, libc::MS_BIND | libc::MS_REC, None)?;
    let d = cstr(dir)?;
    // SAFETY: valid path strings; pivot_root(".", ".") stacks the old root under the new one,
    // which is then detached.
    unsafe {
        check(libc::chdir(d.as_ptr()), "chdir")?;
        let dot = c".".as_ptr();
        check(
            libc::syscall(libc::SYS_pivot_root, dot, dot) as libc::c_int,
            "pivot_root",
        )?;
        check(libc::umount2(dot, libc::MNT_DETACH), "umount old root")?;
        check(libc::chdir(c"/".as_ptr()), "chdir /")?;
    }
    Ok(())
}
