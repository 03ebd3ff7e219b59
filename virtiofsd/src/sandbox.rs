//! `--sandbox`: the second wall around the shared directory (name checks are the first).
//!
//! - `namespace` (default, as upstream): new mount, pid, net, ipc and uts namespaces. The
//!   process forks: the parent stays outside, forwards SIGTERM/SIGINT/SIGHUP, waits, removes the
//!   socket and pid file, and exits with the child's status; the child (pid 1 of the new pid
//!   namespace, killed if the parent dies) marks every mount a slave, so bind mounts the runtime
//!   adds under the shared directory later still reach the guest, mounts a fresh /proc, opens the
//!   filesystem (which keeps /proc/self/fd open), then pivots into a new root.
//! - `chroot`: a private mount namespace (no other namespaces, no fork), then a chroot into
//!   the same kind of new root.
//!
//! The new root is an empty read-only tmpfs holding only the directories of the shared
//! directory's absolute path, with the shared directory bind-mounted (recursively, as a slave)
//! at that same path: the passthrough library re-opens its root by path at every FUSE INIT,
//! and nothing else of the host is reachable.
//! - `none`: no isolation (rootless setups); names are still checked.
//!
//! Everything here runs before any thread is started (fork and threads do not mix).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Process isolation mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SandboxMode {
    /// Namespaces + pivot_root into the shared directory (default; needs root).
    Namespace,
    /// chroot into the shared directory (needs root).
    Chroot,
    /// No sandbox.
    None,
}

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
            std::ptr::null(),
        )
    };
    check(rc, &format!("mount {}", dst.display()))
}

/// What a sandbox mode needs that only root has.
pub fn needs_root(mode: SandboxMode) -> bool {
    mode != SandboxMode::None
}

/// Enters `mode` around `shared_dir`; `open_fs` runs at the point where the filesystem must be
/// opened (after /proc is right, before the root changes). In `namespace` mode only the child
/// returns; the parent calls `on_parent_exit(status)` and exits with the child's status.
pub fn enter<T>(
    mode: SandboxMode,
    shared_dir: &Path,
    open_fs: impl FnOnce() -> io::Result<T>,
    on_parent_exit: impl FnOnce(i32),
) -> io::Result<T> {
    // SAFETY: geteuid has no preconditions.
    if needs_root(mode) && unsafe { libc::geteuid() } != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("--sandbox={mode:?} needs root; use --sandbox=none to run unprivileged")
                .to_lowercase(),
        ));
    }
    match mode {
        SandboxMode::None => open_fs(),
        SandboxMode::Chroot => {
            // SAFETY: a private mount namespace for this process only.
            check(unsafe { libc::unshare(libc::CLONE_NEWNS) }, "unshare")?;
            mount(None, Path::new("/"), None, libc::MS_SLAVE | libc::MS_REC)?;
            let fs = open_fs()?;
            new_root(shared_dir, false)?;
            Ok(fs)
        }
        SandboxMode::Namespace => {
            fork_into_namespaces(on_parent_exit)?;
            mount(None, Path::new("/"), None, libc::MS_SLAVE | libc::MS_REC)?;
            mount(
                Some(Path::new("proc")),
                Path::new("/proc"),
                Some("proc"),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            )?;
            let fs = open_fs()?;
            new_root(shared_dir, true)?;
            Ok(fs)
        }
    }
}

/// Forks into a new pid namespace, then unshares the other namespaces in the child only (the
/// parent keeps the host's mounts, to clean up). Returns in the child only.
fn fork_into_namespaces(on_parent_exit: impl FnOnce(i32)) -> io::Result<()> {
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
            let flags =
                libc::CLONE_NEWNS | libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
            // SAFETY: unshare with namespace flags only affects this process.
            check(unsafe { libc::unshare(flags) }, "unshare")
        }
        child => {
            let status = wait_child(child);
            on_parent_exit(status);
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

/// Builds the new root (see the module docs) on top of /proc, which is no longer needed by
/// path once the filesystem holds /proc/self/fd open, and enters it with pivot_root (the old
/// root is detached) or chroot.
fn new_root(shared_dir: &Path, pivot: bool) -> io::Result<()> {
    let top = Path::new("/proc");
    let tmpfs_flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    mount(Some(Path::new("tmpfs")), top, Some("tmpfs"), tmpfs_flags)?;
    let inside = top.join(shared_dir.strip_prefix("/").unwrap_or(shared_dir));
    std::fs::create_dir_all(&inside)
        .map_err(|e| io::Error::new(e.kind(), format!("sandbox: {}: {e}", inside.display())))?;
    mount(
        Some(shared_dir),
        &inside,
        None,
        libc::MS_BIND | libc::MS_REC,
    )?;
    mount(
        None,
        top,
        None,
        libc::MS_REMOUNT | libc::MS_RDONLY | tmpfs_flags,
    )?;
    let t = cstr(top)?;
    // SAFETY: valid path strings; pivot_root(".", ".") stacks the old root under the new one,
    // which is then detached.
    unsafe {
        check(libc::chdir(t.as_ptr()), "chdir")?;
        let dot = c".".as_ptr();
        if pivot {
            check(
                libc::syscall(libc::SYS_pivot_root, dot, dot) as libc::c_int,
                "pivot_root",
            )?;
            check(libc::umount2(dot, libc::MNT_DETACH), "umount old root")?;
        } else {
            check(libc::chroot(dot), "chroot")?;
        }
        check(libc::chdir(c"/".as_ptr()), "chdir /")?;
    }
    Ok(())
}
