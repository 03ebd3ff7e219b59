//! `virtiofs-sandbox run`: the daemon and a VMM wired to it, torn down together, with the
//! termination signals forwarded to the VMM.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::process::{set_parent_process_death_signal, Signal};

use super::StartArgs;
use crate::error::{Error, Result};
use crate::supervisor::{
    reset_signal_mask, ChildWatch, CleanExitCause, Daemon, ExitEvent, Supervisor,
};
use crate::vmm::{self, Vmm};

/// A safety net only: how long a VMM that closed its virtio-fs connection (so the daemon
/// exited 0) may take to exit before it is taken for hung and killed.
pub const VMM_EXIT_AFTER_DISCONNECT: Duration = Duration::from_secs(10);

enum Event {
    Daemon(ExitEvent),
    Vmm(ExitEvent),
    Signal(i32),
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

fn spawn_vmm(
    program: &str,
    args: &[String],
    tx: mpsc::Sender<Event>,
) -> Result<std::sync::Arc<ChildWatch>> {
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::inherit());
    // SAFETY: async-signal-safe calls only.
    unsafe {
        cmd.pre_exec(|| {
            reset_signal_mask();
            let _ = set_parent_process_death_signal(Some(Signal::KILL));
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(Error::io(format!("starting the VMM {program}")))?;
    Ok(ChildWatch::spawn(
        child,
        Some(Box::new(move |ev| {
            let _ = tx.send(Event::Vmm(ev));
        })),
    ))
}

/// Runs `vmm_cmd` wired to a daemon started from `a`; returns the exit status.
pub(super) fn run(a: StartArgs, vmm_cmd: Vec<String>) -> Result<i32> {
    // Block the termination signals before any thread exists; one thread takes them with
    // sigwait and the VMM gets them forwarded. Children get an empty mask back.
    let set = signal_set();
    // SAFETY: changing this thread's mask; threads spawned later inherit it.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    let (tx, rx) = mpsc::channel::<Event>();
    {
        let tx = tx.clone();
        std::thread::spawn(move || loop {
            let mut sig = 0;
            // SAFETY: waits for one of the blocked signals.
            if unsafe { libc::sigwait(&set, &mut sig) } == 0 && tx.send(Event::Signal(sig)).is_err()
            {
                return;
            }
        });
    }

    let cfg = a.config()?;
    let (program, user_args) = vmm_cmd.split_first().expect("clap requires a VMM");
    if let Some(reason) = cfg.no_daemon_reason() {
        eprintln!("virtiofs-sandbox: {reason}; running the VMM unchanged");
        let w = spawn_vmm(program, user_args, tx)?;
        return Ok(wait_vmm_only(&rx, &w));
    }
    let vmm_kind = Vmm::from_hypervisor(&cfg.hypervisor)?;
    let sup = Supervisor::new(&a.state_dir);
    let mut opts = a.options();
    opts.die_with_parent = true;
    let dtx = tx.clone();
    let mut daemon = sup.start(
        &a.sandbox_id,
        &cfg,
        &a.shared_dir,
        &opts,
        Some(Box::new(move |ev| {
            let _ = dtx.send(Event::Daemon(ev));
        })),
    )?;
    let (args, mib) = match vmm::complete_command(
        vmm_kind,
        user_args,
        daemon.socket(),
        cfg.virtio_fs_queue_size,
        a.request_queues,
    ) {
        Ok(x) => x,
        Err(e) => {
            let _ = daemon.stop(Duration::from_secs(2));
            return Err(e);
        }
    };
    eprintln!(
        "virtiofs-sandbox: sandbox {}: virtiofsd pid {} on {} ({} MiB shared guest RAM; API {}); starting {program}",
        a.sandbox_id,
        daemon.pid(),
        daemon.socket().display(),
        mib,
        daemon.paths().api_socket.display()
    );
    let vmm = match spawn_vmm(program, &args, tx) {
        Ok(w) => w,
        Err(e) => {
            let _ = daemon.stop(Duration::from_secs(2));
            return Err(e);
        }
    };
    loop {
        match rx.recv() {
            Ok(Event::Signal(sig)) => {
                vmm.signal(sig);
            }
            Ok(Event::Daemon(ev)) => return Ok(daemon_exited(ev, &mut daemon, &vmm, &rx)),
            Ok(Event::Vmm(ev)) => {
                if let Err(e) = daemon.stop(Duration::from_secs(2)) {
                    eprintln!("virtiofs-sandbox: stopping virtiofsd: {e}");
                }
                return Ok(ev.shell_code());
            }
            Err(_) => return Ok(1),
        }
    }
}

/// `run`'s answer to the daemon's exit, decided by its cause. A daemon that exited 0 because
/// its frontend closed the connection (or without saying why) was left by a VMM on its way
/// out: the VMM's own exit status is the result (a VMM still running
/// [`VMM_EXIT_AFTER_DISCONNECT`] later is killed). A daemon that failed, was killed, or was
/// stopped by a signal while the VMM runs took the guest's filesystem away: the VMM is killed
/// at once and `run` fails.
fn daemon_exited(
    ev: ExitEvent,
    daemon: &mut Daemon,
    vmm: &ChildWatch,
    rx: &mpsc::Receiver<Event>,
) -> i32 {
    let stop_daemon = |daemon: &mut Daemon| {
        if let Err(e) = daemon.stop(Duration::from_secs(1)) {
            eprintln!("virtiofs-sandbox: stopping virtiofsd: {e}");
        }
    };
    if let Some(v) = vmm.exit() {
        stop_daemon(daemon);
        return v.shell_code();
    }
    let cause = (ev.code == Some(0)).then(|| daemon.clean_exit_cause());
    let reason = match cause {
        Some(CleanExitCause::FrontendDisconnected | CleanExitCause::Unknown) => {
            let deadline = Instant::now() + VMM_EXIT_AFTER_DISCONNECT;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(Event::Signal(sig)) => {
                        vmm.signal(sig);
                    }
                    Ok(Event::Vmm(v)) => {
                        stop_daemon(daemon);
                        return v.shell_code();
                    }
                    Ok(Event::Daemon(_)) => {}
                    Err(_) => break,
                }
            }
            format!(
                "exited ({}, {}), but the VMM (pid {}) was still running {:?} later: taken \
                 for hung",
                ev.describe(),
                match cause {
                    Some(CleanExitCause::FrontendDisconnected) => "the VMM closed its connection",
                    _ => "no cause in its log",
                },
                vmm.pid(),
                VMM_EXIT_AFTER_DISCONNECT
            )
        }
        Some(CleanExitCause::Signal) => format!(
            "was stopped by a signal ({}) while the VMM was running",
            ev.describe()
        ),
        None => format!("exited ({}) while the VMM was running", ev.describe()),
    };
    vmm.signal(Signal::KILL.as_raw());
    eprintln!(
        "virtiofs-sandbox: virtiofsd (pid {}) {reason}; VMM killed. Daemon log tail:\n{}",
        ev.pid,
        daemon.log_tail(20)
    );
    let code = vmm
        .wait_timeout(Duration::from_secs(5))
        .map(|e| e.shell_code())
        .unwrap_or(1);
    stop_daemon(daemon);
    if code == 0 {
        1
    } else {
        code
    }
}

fn wait_vmm_only(rx: &mpsc::Receiver<Event>, vmm: &ChildWatch) -> i32 {
    loop {
        match rx.recv() {
            Ok(Event::Signal(sig)) => {
                vmm.signal(sig);
            }
            Ok(Event::Vmm(ev)) => return ev.shell_code(),
            Ok(Event::Daemon(_)) => {}
            Err(_) => return 1,
        }
    }
}
