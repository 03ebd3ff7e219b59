//! Start-up and lifetime: open the share, take the socket, serve one frontend, exit.
//!
//! Exit status: 0 when the frontend disconnects or on SIGTERM/SIGINT; 1 when the shared
//! directory cannot be opened, the socket cannot be used, or a virtqueue is corrupt.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use log::{error, info};
use vhost::vhost_user::Error as VuError;
use vhost_user_backend::{Error as DaemonError, VhostUserDaemon};
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};

use crate::backend::{FsBackend, Handler, TIMER_EVENT};
use crate::cli::{Config, Listen};
use crate::request::Policy;
use crate::setup::{self, PidFile};
use crate::stats::Stats;
use crate::throttle::Limiter;
use crate::{api, caps, sandbox, seccomp};
use std::os::unix::io::AsRawFd;
use vmm_sys_util::epoll::EventSet;

/// Files we created (socket, pid lock), removed on every exit path we control. Each is held as
/// (directory fd, name), so removal works after the sandbox has changed the root.
#[derive(Default)]
struct Cleanup {
    files: Vec<(std::fs::File, std::ffi::CString)>,
}

impl Cleanup {
    fn new(paths: &[&Path]) -> Cleanup {
        let files = paths
            .iter()
            .filter_map(|p| {
                let dir = std::fs::File::open(p.parent()?).ok()?;
                let name = std::ffi::CString::new(p.file_name()?.as_bytes()).ok()?;
                Some((dir, name))
            })
            .collect();
        Cleanup { files }
    }

    fn exit(&self, code: i32) -> ! {
        for (dir, name) in &self.files {
            // SAFETY: unlinkat on a directory fd we own and a valid C string.
            unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) };
        }
        std::process::exit(code)
    }
}

/// Seeded bug for the hostile-input tests: builds with the `seeded-bugs` feature turn name
/// validation off when this variable is set. Release builds cannot.
fn name_checks_enabled() -> bool {
    !(cfg!(feature = "seeded-bugs")
        && std::env::var_os("VIRTIOFSD_SEEDED_BUG_NO_NAME_CHECKS").is_some())
}

/// Runs the daemon until the frontend goes away; returns the exit status.
pub fn run(cfg: Config) -> i32 {
    setup::logging(cfg.log_level, cfg.syslog);
    let policy = Policy {
        check_names: name_checks_enabled(),
        readonly: cfg.readonly,
    };
    if !policy.check_names {
        log::warn!("SEEDED BUG: guest names are not validated (test build)");
    }
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
    let mut ours: Vec<&Path> = match (&cfg.listen, &pid_file) {
        (Listen::Path { path, .. }, Some(p)) => vec![path, p.path()],
        _ => Vec::new(),
    };
    ours.extend(cfg.api_socket.as_deref());
    let cleanup = Arc::new(Cleanup::new(&ours));
    if let Err(e) = setup::rlimit_nofile(cfg.rlimit_nofile) {
        error!("{e}");
        return 1;
    }
    let mut listener = match setup::listener(&cfg.listen) {
        Ok(l) => l,
        Err(e) => {
            error!("cannot listen on the vhost-user socket: {e}");
            return 1;
        }
    };

    // The control socket is outside the shared directory: bound before the sandbox too.
    let api_listener = match cfg.api_socket.as_deref().map(api::bind).transpose() {
        Ok(l) => l,
        Err(e) => {
            error!("--api-socket: {e}");
            cleanup.exit(1);
        }
    };

    // Isolation, before any thread exists: the namespace sandbox forks, and only the child
    // returns here; the parent waits, cleans up and exits with the child's status.
    let listener_fd = listener.as_raw_fd();
    let fs = sandbox::enter(
        cfg.sandbox,
        &cfg.shared_dir,
        |root| crate::fs::open(&cfg, policy.check_names, root),
        |status| {
            // SAFETY: the parent never serves; only the child keeps the listening socket.
            unsafe { libc::close(listener_fd) };
            cleanup.exit(status)
        },
    );
    let fs = match fs.and_then(|mut fs| fs.import().map(|()| fs)) {
        Ok(fs) => fs,
        Err(e) => {
            error!("cannot open --shared-dir {}: {e}", cfg.shared_dir.display());
            cleanup.exit(1);
        }
    };
    let file_handles = crate::fs::use_file_handles(&cfg).unwrap_or(false);
    if let Err(e) = caps::drop_all_but(&caps::kept(file_handles, &cfg.modcaps)) {
        error!("{e}");
        cleanup.exit(1);
    }
    if let Err(e) = seccomp::apply(cfg.seccomp) {
        error!("{e}");
        cleanup.exit(1);
    }
    if let Err(e) = spawn_signal_handler(cleanup.clone()) {
        error!("cannot install signal handlers: {e}");
        cleanup.exit(1);
    }

    let handler = Arc::new(Handler::new(fs, policy));
    let stats = Arc::new(Stats::default());
    let limiter = match Limiter::new(cfg.limits, stats.clone()) {
        Ok(l) => Arc::new(l),
        Err(e) => {
            error!("cannot create the throttle timer: {e}");
            return 1;
        }
    };
    info!("rate limits: {}", cfg.limits);
    if let Some(l) = api_listener {
        let api = api::Api {
            limiter: limiter.clone(),
            stats: stats.clone(),
        };
        if let Err(e) = api::spawn(l, api) {
            error!("cannot start the API: {e}");
            cleanup.exit(1);
        }
        info!(
            "API listening on {}",
            cfg.api_socket.as_ref().unwrap().display()
        );
    }
    let mem = GuestMemoryAtomic::new(GuestMemoryMmap::new());
    let on_fatal = {
        let cleanup = cleanup.clone();
        Box::new(move |_| cleanup.exit(1))
    };
    let backend = match FsBackend::new(
        handler,
        limiter.clone(),
        stats,
        cfg.thread_pool_size,
        mem.clone(),
        on_fatal,
    ) {
        Ok(b) => Arc::new(b.with_tag(cfg.tag.as_deref())),
        Err(e) => {
            error!("cannot start {} worker threads: {e}", cfg.thread_pool_size);
            return 1;
        }
    };
    let mut daemon = match VhostUserDaemon::new("virtiofsd".into(), backend, mem) {
        Ok(d) => d,
        Err(e) => {
            error!("cannot create the vhost-user daemon: {e}");
            return 1;
        }
    };

    let timer = daemon.get_epoll_handlers()[0].register_listener(
        limiter.timer_fd(),
        EventSet::IN,
        u64::from(TIMER_EVENT),
    );
    if let Err(e) = timer {
        error!("cannot watch the throttle timer: {e}");
        return 1;
    }

    info!("Waiting for vhost-user socket connection...");
    if let Err(e) = daemon.start(&mut listener) {
        error!("cannot accept the vhost-user connection: {e}");
        return 1;
    }
    info!("Client connected, servicing requests");
    let res = daemon.wait();
    for h in daemon.get_epoll_handlers() {
        h.send_exit_event();
    }
    drop(listener);
    let code = match res {
        Ok(())
        | Err(DaemonError::HandleRequest(VuError::Disconnected))
        | Err(DaemonError::HandleRequest(VuError::PartialMessage)) => {
            info!("frontend disconnected; exiting");
            0
        }
        Err(e) => {
            error!("vhost-user connection failed: {e}");
            1
        }
    };
    cleanup.exit(code)
}

fn spawn_signal_handler(cleanup: Arc<Cleanup>) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                info!("signal {sig}: exiting");
                cleanup.exit(0);
            }
        })?;
    Ok(())
}
