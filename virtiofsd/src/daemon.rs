//! Start-up and lifetime: open the share, take the socket, serve one frontend, exit.
//!
//! Exit status: 2 when the `--fs-group` file is refused; 0 when the frontend disconnects or on SIGTERM/SIGINT; 1 when the shared
//! directory cannot be opened, the socket cannot be used, or a virtqueue is corrupt.

use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;

use log::{error, info};
use vhost::vhost_user::Error as VuError;
use vhost_user_backend::{Error as DaemonError, VhostUserDaemon};
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;

use crate::config::{Config, GroupConfig, Listen, SandboxMode};
use crate::confine::{caps, sandbox, seccomp, signals};
use crate::control::api;
use crate::control::stats::Stats;
use crate::device::backend::{FsBackend, TIMER_EVENT};
use crate::device::group::Group;
use crate::device::throttle::Limiter;
use crate::fuse::handler::Handler;
use crate::fuse::request::Policy;
use crate::setup::{self, Cleanup, PidFile};
use ratelimit::group::Member;

/// Seeded bug for the hostile-input tests: builds with the `seeded-bugs` feature turn name
/// validation off when this variable is set. Release builds cannot.
fn name_checks_enabled() -> bool {
    !(cfg!(feature = "seeded-bugs")
        && std::env::var_os("VIRTIOFSD_SEEDED_BUG_NO_NAME_CHECKS").is_some())
}

/// This member's weight; with the `seeded-bugs` feature and
/// `VIRTIOFSD_SEEDED_BUG_GROUP_EQUAL_WEIGHTS` set, the default 100 whatever `--fs-weight` says
/// (for the guest group test).
fn weight(cfg: &Config) -> u64 {
    let equal = cfg!(feature = "seeded-bugs")
        && std::env::var_os("VIRTIOFSD_SEEDED_BUG_GROUP_EQUAL_WEIGHTS").is_some();
    if equal {
        100
    } else {
        cfg.weight
    }
}

/// Maps the group of `g` (creating it if it does not exist) and becomes a member.
fn join_group(g: &GroupConfig, cfg: &Config) -> Result<Group, ratelimit::group::file::GroupError> {
    let mapped = ratelimit::group::file::join(&g.path, g.budget)?;
    let nonce = ratelimit::group::file::monotonic_ns() ^ (u64::from(std::process::id()) << 40);
    let member = Member::new(mapped.region, weight(cfg), g.budget, mapped.epoch, nonce);
    info!(
        "group {}: {} (weight {})",
        g.path.display(),
        if mapped.created { "created" } else { "joined" },
        cfg.weight
    );
    Ok(Group::new(member, &cfg.limits))
}

/// Runs the daemon until the frontend goes away; returns the exit status.
pub fn run(cfg: Config) -> i32 {
    setup::close_inherited(match cfg.listen {
        Listen::Fd(fd) => Some(fd),
        Listen::Path { .. } => None,
    });
    // Released once the handlers exist (after the sandbox's fork, in both processes).
    signals::hold_termination_signals(true);
    setup::logging(cfg.log_level, cfg.syslog);
    // The group file is mapped before anything starts (its descriptor closed at once): a
    // refused group is a bad flag, exit 2.
    let group = match cfg.group.as_ref().map(|g| join_group(g, &cfg)).transpose() {
        Ok(g) => g,
        Err(e) => {
            error!("{e}");
            return 2;
        }
    };
    // The pid lock comes before the socket: a second daemon must not unlink a live socket.
    let pid_file = match &cfg.listen {
        Listen::Path { path, .. } => match PidFile::lock(path) {
            Ok(p) => Some(p),
            Err(e) => {
                error!("{e}");
                return 1;
            }
        },
        Listen::Fd(_) => None,
    };
    let mut ours: Vec<PathBuf> = match (&cfg.listen, &pid_file) {
        (Listen::Path { path, .. }, Some(p)) => vec![path.clone(), p.path().to_path_buf()],
        _ => Vec::new(),
    };
    ours.extend(cfg.api_socket.clone());
    let cleanup = Arc::new(Cleanup::new(&ours, pid_file));
    let code = serve(&cfg, group, &cleanup).unwrap_or_else(|e| {
        error!("{e}");
        1
    });
    cleanup.exit(code)
}

/// Everything after the pid lock, in order: socket, sandbox, capabilities, seccomp, threads,
/// then serving one frontend. Returns the exit status; an error is logged and exits 1.
fn serve(cfg: &Config, group: Option<Group>, cleanup: &Arc<Cleanup>) -> Result<i32, String> {
    let policy = Policy {
        check_names: name_checks_enabled(),
        readonly: cfg.share.readonly,
    };
    if !policy.check_names {
        log::warn!("SEEDED BUG: guest names are not validated (test build)");
    }
    setup::rlimit_nofile(cfg.rlimit_nofile).map_err(|e| e.to_string())?;
    let mut listener = setup::listener(&cfg.listen)
        .map_err(|e| format!("cannot listen on the vhost-user socket: {e}"))?;
    // The control socket is outside the shared directory: bound before the sandbox too.
    let api_listener = cfg
        .api_socket
        .as_deref()
        .map(api::bind)
        .transpose()
        .map_err(|e| format!("--api-socket: {e}"))?;

    // Isolation, before any thread exists: a sandbox forks, and only the child
    // returns here; the parent waits, cleans up and exits with the child's status.
    let listener_fd = listener.as_raw_fd();
    let sandboxed = cfg.sandbox != SandboxMode::None;
    let fs = sandbox::enter(
        cfg.sandbox,
        &cfg.shared_dir,
        |root| crate::fuse::fs::open(&cfg.share, sandboxed, policy.check_names, root),
        sandbox::Sides {
            // The confined child: the parent outside holds the host's directories and removes.
            child: || cleanup.release(),
            parent_exited: |status| {
                // SAFETY: the parent never serves; only the child keeps the listening socket.
                unsafe { libc::close(listener_fd) };
                cleanup.exit(status)
            },
        },
    );
    let fs = fs
        .and_then(|mut fs| fs.import().map(|()| fs))
        .map_err(|e| format!("cannot open --shared-dir {}: {e}", cfg.shared_dir.display()))?;
    let file_handles =
        crate::fuse::options::use_file_handles(cfg.share.inode_file_handles, sandboxed)
            .unwrap_or(false);
    caps::drop_all_but(&caps::kept(file_handles, &cfg.modcaps)).map_err(|e| e.to_string())?;
    seccomp::apply(cfg.seccomp).map_err(|e| e.to_string())?;
    let on_signal = cleanup.clone();
    signals::exit_on_termination(move || on_signal.exit(0))
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    // Pending signals are delivered now, to the handler (before any serving thread exists).
    signals::hold_termination_signals(false);

    let stats = Arc::new(Stats::default());
    info!(
        "serving up to {} request queue(s), one vring thread each",
        cfg.request_queues
    );
    let handler = Arc::new(Handler::new(fs, policy, stats.clone()));
    let limiter = Limiter::new(cfg.limits, group, stats.clone())
        .map(Arc::new)
        .map_err(|e| format!("cannot create the throttle timer: {e}"))?;
    info!("rate limits: {}", cfg.limits);
    if let (Some(l), Some(path)) = (api_listener, &cfg.api_socket) {
        let api = api::Api {
            limiter: limiter.clone(),
            stats: stats.clone(),
        };
        api::spawn(l, api).map_err(|e| format!("cannot start the API: {e}"))?;
        info!("API listening on {}", path.display());
    }
    let mem = GuestMemoryAtomic::new(GuestMemoryMmap::new());
    let on_fatal = {
        let cleanup = cleanup.clone();
        Box::new(move |_| cleanup.exit(1))
    };
    let threads = cfg.thread_pool_size;
    let backend = FsBackend::new(
        handler,
        limiter.clone(),
        threads,
        cfg.request_queues,
        mem.clone(),
        on_fatal,
    )
    .map_err(|e| format!("cannot start {threads} worker threads: {e}"))?;
    let backend = Arc::new(backend.with_tag(cfg.tag.as_deref()));
    let mut daemon = VhostUserDaemon::new("virtiofsd".into(), backend, mem)
        .map_err(|e| format!("cannot create the vhost-user daemon: {e}"))?;
    daemon.get_epoll_handlers()[0]
        .register_listener(limiter.timer_fd(), EventSet::IN, u64::from(TIMER_EVENT))
        .map_err(|e| format!("cannot watch the throttle timer: {e}"))?;

    // Start-up's freed heap (clap's command tree, the seccomp filter, ...) stays resident below
    // glibc's trim threshold; give it back before serving (88 KiB measured, benches/README.md).
    // SAFETY: malloc_trim only releases free heap memory; no pointer is invalidated.
    unsafe { libc::malloc_trim(0) };
    info!("Waiting for vhost-user socket connection...");
    daemon
        .start(&mut listener)
        .map_err(|e| format!("cannot accept the vhost-user connection: {e}"))?;
    info!("Client connected, servicing requests");
    let res = daemon.wait();
    for h in daemon.get_epoll_handlers() {
        h.send_exit_event();
    }
    match res {
        Ok(())
        | Err(DaemonError::HandleRequest(VuError::Disconnected))
        | Err(DaemonError::HandleRequest(VuError::PartialMessage)) => {
            info!("frontend disconnected; exiting");
            Ok(0)
        }
        Err(e) => Err(format!("vhost-user connection failed: {e}")),
    }
}
