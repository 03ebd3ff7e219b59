//! Start-up and lifetime: open the share, take the socket, serve one frontend, exit.
//!
//! Exit status: 0 when the frontend disconnects or on SIGTERM/SIGINT; 1 when the shared
//! directory cannot be opened, the socket cannot be used, or a virtqueue is corrupt.

use std::os::unix::io::FromRawFd;
use std::path::PathBuf;
use std::sync::Arc;

use log::{error, info};
use vhost::vhost_user::{Error as VuError, Listener};
use vhost_user_backend::{Error as DaemonError, VhostUserDaemon};
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};

use crate::backend::{FsBackend, Handler};
use crate::cli::{Config, Listen, LogLevel};
use crate::request::Policy;

/// Things to remove on any exit path we control.
#[derive(Default)]
struct Cleanup {
    socket: Option<PathBuf>,
}

impl Cleanup {
    fn exit(&self, code: i32) -> ! {
        if let Some(p) = &self.socket {
            let _ = std::fs::remove_file(p);
        }
        std::process::exit(code)
    }
}

/// Sets up logging to stderr at `level` (RUST_LOG, if set, refines it).
pub fn init_logging(level: LogLevel) {
    let filter = match level {
        LogLevel::Error => log::LevelFilter::Error,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Trace => log::LevelFilter::Trace,
        LogLevel::Off => log::LevelFilter::Off,
    };
    let _ = env_logger::Builder::new()
        .filter_level(filter)
        .parse_env("RUST_LOG")
        .try_init();
}

/// Seeded bug for the hostile-input tests: builds with the `seeded-bugs` feature turn name
/// validation off when this variable is set. Release builds cannot.
fn name_checks_enabled() -> bool {
    !(cfg!(feature = "seeded-bugs")
        && std::env::var_os("VIRTIOFSD_SEEDED_BUG_NO_NAME_CHECKS").is_some())
}

/// Runs the daemon until the frontend goes away; returns the exit status.
pub fn run(cfg: Config) -> i32 {
    init_logging(cfg.log_level);
    let policy = Policy {
        check_names: name_checks_enabled(),
        ..Policy::default()
    };
    if !policy.check_names {
        log::warn!("SEEDED BUG: guest names are not validated (test build)");
    }
    let fs = match crate::fs::open(&cfg, policy.check_names) {
        Ok(fs) => fs,
        Err(e) => {
            error!("cannot open --shared-dir {}: {e}", cfg.shared_dir.display());
            return 1;
        }
    };

    let cleanup = Arc::new(Cleanup {
        socket: match &cfg.listen {
            Listen::Path(p) => Some(p.clone()),
            Listen::Fd(_) => None,
        },
    });
    if let Err(e) = spawn_signal_handler(cleanup.clone()) {
        error!("cannot install signal handlers: {e}");
        return 1;
    }

    let handler = Arc::new(Handler::new(fs, policy));
    let mem = GuestMemoryAtomic::new(GuestMemoryMmap::new());
    let on_fatal = {
        let cleanup = cleanup.clone();
        Box::new(move |_| cleanup.exit(1))
    };
    let backend = match FsBackend::new(handler, cfg.thread_pool_size, mem.clone(), on_fatal) {
        Ok(b) => Arc::new(b),
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

    let mut listener = match &cfg.listen {
        Listen::Path(p) => match Listener::new(p, true) {
            Ok(l) => l,
            Err(e) => {
                error!("cannot listen on {}: {e}", p.display());
                return 1;
            }
        },
        // SAFETY: the fd was checked to be a listening socket and is owned from here on.
        Listen::Fd(fd) => unsafe { Listener::from_raw_fd(*fd) },
    };

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
    match res {
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
    }
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
