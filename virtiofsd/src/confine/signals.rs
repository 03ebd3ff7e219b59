//! The signal mask the sandbox's fork needs: termination signals held from start-up until
//! whoever handles them (the daemon's handler, or the sandbox parent's forwarding) exists.

/// Holds (blocks, so they stay pending) or releases SIGTERM, SIGINT and SIGHUP in this thread.
///
/// They are held from start-up until the handler that turns them into a clean exit exists.
/// Otherwise a signal during start-up kills the daemon without removing its socket, or, sent
/// to the sandboxed child (pid 1 of its pid namespace, which the kernel protects from signals
/// it has no handler for), is dropped and the daemon never exits. Threads inherit the mask:
/// release it before starting the threads that must see these signals.
pub fn hold_termination_signals(hold: bool) {
    // SAFETY: sigemptyset/sigaddset initialise the set; pthread_sigmask only reads it.
    unsafe {
        let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(set.as_mut_ptr());
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(set.as_mut_ptr(), sig);
        }
        let how = if hold {
            libc::SIG_BLOCK
        } else {
            libc::SIG_UNBLOCK
        };
        libc::pthread_sigmask(how, set.as_ptr(), std::ptr::null_mut());
    }
}

/// Starts the thread that turns SIGTERM or SIGINT into `exit` (a clean exit: the daemon's
/// files removed). Release [`hold_termination_signals`] after this, before serving threads.
pub fn exit_on_termination(exit: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                log::info!("signal {sig}: exiting");
                exit();
            }
        })?;
    Ok(())
}
