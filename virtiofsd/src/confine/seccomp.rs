//! `--seccomp`: an allowlist of exactly the system calls the daemon makes, loaded after the
//! sandbox and capabilities are set up and before any thread starts (threads inherit it).
//!
//! The list covers the passthrough filesystem (per-request credential switching included),
//! the vhost-user socket and epoll loop, the worker pool, the throttle's timerfd, logging to
//! stderr or syslog, and signal handling. The whole end-to-end suite runs under `kill`.

use std::io;

use crate::config::SeccompAction;
use libseccomp::{ScmpAction, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};

/// The system calls the daemon needs (x86_64 and aarch64 names; unknown names are skipped).
const ALLOWED: &[&str] = &[
    // Files: the passthrough filesystem.
    "openat",
    "open",
    "close",
    "close_range",
    "read",
    "write",
    "pread64",
    "pwrite64",
    "readv",
    "writev",
    "preadv",
    "pwritev",
    "preadv2",
    "pwritev2",
    "lseek",
    "fstat",
    "newfstatat",
    "statx",
    "fstatfs",
    "statfs",
    "getdents64",
    "mkdirat",
    "mknodat",
    "unlinkat",
    "renameat",
    "renameat2",
    "linkat",
    "symlinkat",
    "readlinkat",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchownat",
    "ftruncate",
    "utimensat",
    "fallocate",
    "fsync",
    "fdatasync",
    "syncfs",
    "fgetxattr",
    "fsetxattr",
    "flistxattr",
    "fremovexattr",
    "getxattr",
    "setxattr",
    "listxattr",
    "removexattr",
    "lgetxattr",
    "lsetxattr",
    "llistxattr",
    "lremovexattr",
    "name_to_handle_at",
    "open_by_handle_at",
    "copy_file_range",
    "fcntl",
    "flock",
    "dup",
    "dup3",
    "ioctl",
    "umask",
    "fchdir",
    "chdir",
    "getcwd",
    // Credentials: requests run with the guest caller's uid/gid.
    "setresuid",
    "setresgid",
    "setfsuid",
    "setfsgid",
    "setgroups",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "capget",
    "capset",
    "prctl",
    // Memory.
    "mmap",
    "munmap",
    "mprotect",
    "madvise",
    "mremap",
    "brk",
    // Threads, time, signals.
    "clone",
    "clone3",
    "futex",
    "set_robust_list",
    "rseq",
    "sched_getaffinity",
    "sched_yield",
    "gettid",
    "getpid",
    "exit",
    "exit_group",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sigaltstack",
    "tgkill",
    "restart_syscall",
    "nanosleep",
    "clock_nanosleep",
    "clock_gettime",
    "gettimeofday",
    "getrandom",
    "prlimit64",
    "uname",
    // vhost-user socket, epoll loop, eventfds, the throttle timer, syslog.
    "recvmsg",
    "sendmsg",
    "recvfrom",
    "sendto",
    "accept4",
    "accept",
    "connect",
    "socket",
    "getsockopt",
    "setsockopt",
    "getsockname",
    "shutdown",
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    "eventfd2",
    "timerfd_create",
    "timerfd_settime",
    "timerfd_gettime",
    "poll",
    "ppoll",
    "pipe2",
    "socketpair",
    // Exit: the socket file is removed.
    "unlink",
    "unlinkat",
];

/// Test builds only: `VIRTIOFSD_TEST_FORBIDDEN_SYSCALL=1` makes one call outside the list
/// right after the filter is loaded, to show what each action does.
#[cfg(feature = "seeded-bugs")]
fn test_forbidden_syscall() {
    if std::env::var_os("VIRTIOFSD_TEST_FORBIDDEN_SYSCALL").is_some() {
        log::warn!("TEST HOOK: calling a forbidden system call (acct)");
        // SAFETY: acct(NULL) only turns process accounting off (and is not allowed here).
        let rc = unsafe { libc::acct(std::ptr::null()) };
        log::warn!("TEST HOOK: forbidden system call returned {rc}; still running");
    }
}

/// Loads the filter for `action` on the calling thread (and threads started after).
pub fn apply(action: SeccompAction) -> io::Result<()> {
    load(action)?;
    #[cfg(feature = "seeded-bugs")]
    test_forbidden_syscall();
    Ok(())
}

fn load(action: SeccompAction) -> io::Result<()> {
    let default = match action {
        SeccompAction::None => return Ok(()),
        SeccompAction::Kill => ScmpAction::KillProcess,
        SeccompAction::Log => ScmpAction::Log,
        SeccompAction::Trap => ScmpAction::Trap,
    };
    let err = |e: libseccomp::error::SeccompError| io::Error::other(format!("seccomp: {e}"));
    let mut filter = ScmpFilterContext::new(default).map_err(err)?;
    for name in ALLOWED {
        if let Ok(sc) = ScmpSyscall::from_name(name) {
            filter.add_rule(ScmpAction::Allow, sc).map_err(err)?;
        }
    }
    // `unshare(CLONE_FS)` only: a worker thread's own working directory, for xattr calls
    // through `/proc/self/fd` (see `xattr`). No namespace can be created this way.
    let clone_fs = ScmpArgCompare::new(0, ScmpCompareOp::Equal, libc::CLONE_FS as u64);
    let unshare = ScmpSyscall::from_name("unshare").map_err(err)?;
    filter
        .add_rule_conditional(ScmpAction::Allow, unshare, &[clone_fs])
        .map_err(err)?;
    filter.load().map_err(err)
}
