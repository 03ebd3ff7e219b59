//! Start-up steps run once, in order, before the socket is accepted on: logging, the
//! pid-file lock, the socket itself, the open-files limit, the filesystem's options; and the
//! [`Cleanup`] that removes the daemon's files at exit.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::io::{AsRawFd, FromRawFd, IntoRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use log::{info, warn};
use vhost::vhost_user::Listener;

use crate::config::{Listen, LogLevel};

/// Where syslog listens on Linux.
const SYSLOG_SOCKET: &str = "/dev/log";

fn level_filter(level: LogLevel) -> log::LevelFilter {
    match level {
        LogLevel::Error => log::LevelFilter::Error,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Trace => log::LevelFilter::Trace,
        LogLevel::Off => log::LevelFilter::Off,
    }
}

/// Logs to syslog when asked and a syslog socket exists, else to stderr (RUST_LOG refines it).
pub fn logging(level: LogLevel, syslog: bool) {
    let filter = level_filter(level);
    if syslog && Path::new(SYSLOG_SOCKET).exists() {
        let fmt = syslog::Formatter3164 {
            facility: syslog::Facility::LOG_DAEMON,
            hostname: None,
            process: "virtiofsd".into(),
            pid: std::process::id(),
        };
        if let Ok(logger) = syslog::unix(fmt) {
            if log::set_boxed_logger(Box::new(syslog::BasicLogger::new(logger))).is_ok() {
                log::set_max_level(filter);
                return;
            }
        }
    }
    let _ = env_logger::Builder::new()
        .filter_level(filter)
        .parse_env("RUST_LOG")
        .try_init();
    if syslog {
        warn!("--syslog: no syslog socket at {SYSLOG_SOCKET}; logging to stderr");
    }
}

/// The `<socket>.pid` lock: held for the daemon's life so a second daemon on the same socket
/// path refuses before touching the socket.
pub struct PidFile {
    _file: File,
    path: PathBuf,
}

impl PidFile {
    /// Takes the lock for `socket` and writes our pid into it.
    pub fn lock(socket: &Path) -> io::Result<PidFile> {
        let mut name = socket.as_os_str().to_owned();
        name.push(".pid");
        let path = PathBuf::from(name);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "{} is in use by another virtiofsd (pid {}; lock {})",
                    socket.display(),
                    holder.trim(),
                    path.display()
                ),
            ));
        }
        file.set_len(0)?;
        writeln!(file, "{}", std::process::id())?;
        Ok(PidFile { _file: file, path })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Creates the vhost-user listener: binds the path (after the pid lock) or adopts the fd.
pub fn listener(listen: &Listen) -> io::Result<Listener> {
    let sock = match listen {
        Listen::Path { path, group: None } => bind_socket(path, None, None)?,
        Listen::Path {
            path,
            group: Some(g),
        } => bind_socket(path, Some(0o660), Some(group_id(g)?))?,
        // SAFETY: the fd was checked to be a listening socket; it is ours from here on.
        Listen::Fd(fd) => return Ok(unsafe { Listener::from_raw_fd(*fd) }),
    };
    // SAFETY: a listening socket we own, handed over whole (no path: nothing unlinks it on drop).
    Ok(unsafe { Listener::from_raw_fd(sock.into_raw_fd()) })
}

/// The id of group `group`.
fn group_id(group: &str) -> io::Result<libc::gid_t> {
    let no_such = || {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("--socket-group={group}: no such group"),
        )
    };
    let cname = std::ffi::CString::new(group).map_err(|_| no_such())?;
    // SAFETY: getgrnam returns a pointer to static storage or NULL.
    let gr = unsafe { libc::getgrnam(cname.as_ptr()) };
    if gr.is_null() {
        return Err(no_such());
    }
    // SAFETY: gr is non-null and points to a valid group entry.
    Ok(unsafe { (*gr).gr_gid })
}

/// `sun_path` holds 108 bytes, NUL included.
const SUN_PATH_MAX: usize = 107;

/// Binds a listening Unix socket at `path` (replacing a stale file), with `mode` (else the
/// umask's) and group `gid` (else ours). `path` only ever appears with a listening socket of
/// its final owner and mode behind it: the socket is bound and listening in a fresh private
/// directory beside `path`, given its owner and mode there, then renamed into place (which
/// also replaces a stale socket atomically). A connect the moment the path exists succeeds.
///
/// When the private directory's name is too long for `sun_path`, the socket is bound through
/// `/proc/self/fd/<directory fd>/s` instead: the same detour, a short address.
pub fn bind_socket(
    path: &Path,
    mode: Option<u32>,
    gid: Option<libc::gid_t>,
) -> io::Result<UnixListener> {
    if seeded_bind_in_place() {
        return seeded::bind_in_place(path, mode, gid);
    }
    let parent = path.parent().filter(|d| !d.as_os_str().is_empty());
    let tmpdir = private_dir(parent.unwrap_or(Path::new(".")))?;
    let tmp = tmpdir.join("s");
    let placed = File::open(&tmpdir).and_then(|dir| {
        let addr = match tmp.as_os_str().len() <= SUN_PATH_MAX {
            true => tmp.clone(),
            false => PathBuf::from(format!("/proc/self/fd/{}/s", dir.as_raw_fd())),
        };
        // std's bind is socket + bind + listen: it returns a listening socket.
        let sock = UnixListener::bind(&addr)?;
        if let Some(gid) = gid {
            std::os::unix::fs::chown(&tmp, None, Some(gid))?;
        }
        if let Some(mode) = mode {
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        }
        std::fs::rename(&tmp, path)?;
        Ok(sock)
    });
    let _ = std::fs::remove_file(&tmp);
    let _ = std::fs::remove_dir(&tmpdir);
    placed
}

/// Seeded bug for the start-up tests: builds with the `seeded-bugs` feature bind sockets the
/// old way when this variable is set (in place, a pause between bind and listen, the mode set
/// after). Release builds cannot.
fn seeded_bind_in_place() -> bool {
    cfg!(feature = "seeded-bugs")
        && std::env::var_os("VIRTIOFSD_SEEDED_BUG_BIND_IN_PLACE").is_some()
}

mod seeded {
    use super::*;

    /// The old binding: the path exists from bind(), refuses connections until listen(), and
    /// has the umask's mode until the chmod.
    pub(super) fn bind_in_place(
        path: &Path,
        mode: Option<u32>,
        gid: Option<libc::gid_t>,
    ) -> io::Result<UnixListener> {
        log::warn!(
            "SEEDED BUG: {} bound in place, then listened on",
            path.display()
        );
        let _ = std::fs::remove_file(path);
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
        // SAFETY: plain socket calls on a descriptor we own; the address is NUL-padded.
        unsafe {
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let sock = UnixListener::from_raw_fd(fd);
            let mut addr: libc::sockaddr_un = std::mem::zeroed();
            addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
            if bytes.len() > SUN_PATH_MAX {
                return Err(io::ErrorKind::InvalidInput.into());
            }
            for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
                *d = *s as libc::c_char;
            }
            let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            if libc::bind(fd, std::ptr::addr_of!(addr).cast(), len) != 0 {
                return Err(io::Error::last_os_error());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            if libc::listen(fd, 128) != 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some(gid) = gid {
                std::os::unix::fs::chown(path, None, Some(gid))?;
            }
            if let Some(mode) = mode {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
            }
            Ok(sock)
        }
    }
}

/// A new directory `<dir>/.virtiofsd-XXXXXX`, mode 0700.
fn private_dir(dir: &Path) -> io::Result<PathBuf> {
    let mut template = dir.join(".virtiofsd-XXXXXX").into_os_string().into_vec();
    template.push(0);
    // SAFETY: template is a writable NUL-terminated buffer ending in XXXXXX.
    if unsafe { libc::mkdtemp(template.as_mut_ptr().cast()) }.is_null() {
        return Err(io::Error::last_os_error());
    }
    template.pop();
    Ok(PathBuf::from(std::ffi::OsString::from_vec(template)))
}

/// Closes every descriptor inherited from whoever started us, but stdin, stdout, stderr and
/// `keep` (the `--fd` socket): a leaked descriptor of a host directory or file would otherwise
/// follow the daemon into its sandbox. Run first, before anything of ours is open.
pub fn close_inherited(keep: Option<RawFd>) {
    let ranges: &[(u32, u32)] = match keep.and_then(|k| u32::try_from(k).ok()) {
        Some(k) if k >= 3 => &[(3, k.saturating_sub(1)), (k.saturating_add(1), u32::MAX)],
        _ => &[(3, u32::MAX)],
    };
    for &(first, last) in ranges {
        if first > last {
            continue;
        }
        // SAFETY: close_range only closes descriptors; nothing of ours is open yet.
        let rc = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) };
        if rc != 0 {
            // Kernels before 5.9: close what /proc lists.
            let open: Vec<u32> = std::fs::read_dir("/proc/self/fd")
                .map(|d| {
                    d.flatten()
                        .filter_map(|e| e.file_name().to_str()?.parse().ok())
                })
                .into_iter()
                .flatten()
                .collect();
            for fd in open.into_iter().filter(|fd| (first..=last).contains(fd)) {
                // SAFETY: as above (the directory's own descriptor is already closed).
                unsafe { libc::close(fd as RawFd) };
            }
        }
    }
}

/// Raises RLIMIT_NOFILE: `None` means min(1,000,000, nr_open) best effort; `Some(0)` leaves it.
pub fn rlimit_nofile(requested: Option<u64>) -> io::Result<()> {
    let target = match requested {
        Some(0) => return Ok(()),
        Some(n) => n,
        None => {
            let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(1_000_000u64);
            nr_open.min(1_000_000)
        }
    };
    let lim = libc::rlimit {
        rlim_cur: target,
        rlim_max: target,
    };
    // SAFETY: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0 {
        info!("open files limit: {target}");
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match requested {
        Some(n) => Err(io::Error::new(
            e.kind(),
            format!("--rlimit-nofile={n}: {e}"),
        )),
        None => {
            // Without CAP_SYS_RESOURCE the hard limit cannot rise: take the soft one up to it.
            let mut cur = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit/setrlimit read and write the struct we pass.
            unsafe {
                if libc::getrlimit(libc::RLIMIT_NOFILE, &mut cur) == 0 {
                    cur.rlim_cur = cur.rlim_max;
                    libc::setrlimit(libc::RLIMIT_NOFILE, &cur);
                }
            }
            info!(
                "open files limit: {} (cannot raise to {target}: {e})",
                cur.rlim_cur
            );
            Ok(())
        }
    }
}

/// What the daemon holds of the host's filesystem to clean up: the files we created (socket,
/// pid lock, API socket), each as (directory fd, name) so removal works whatever the root,
/// and the pid lock itself. Only the process outside the sandbox keeps it: the confined child
/// lets go of it ([`Cleanup::release`]), so it holds no descriptor of a host directory, and
/// the parent removes the files once the child has exited.
#[derive(Default)]
pub struct Cleanup {
    held: Mutex<Held>,
}

/// The descriptors [`Cleanup`] holds.
#[derive(Default)]
struct Held {
    /// (directory, name) of each file to remove.
    files: Vec<(std::fs::File, std::ffi::CString)>,
    /// Kept open: the lock lasts as long as the descriptor.
    _lock: Option<PidFile>,
}

impl Cleanup {
    /// Holds `paths` (created by this daemon) for removal, and the pid lock.
    pub fn new(paths: &[PathBuf], pid_file: Option<PidFile>) -> Cleanup {
        let files = paths
            .iter()
            .filter_map(|p| {
                let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
                let dir = std::fs::File::open(dir.unwrap_or(std::path::Path::new("."))).ok()?;
                let name = std::ffi::CString::new(p.file_name()?.as_bytes()).ok()?;
                Some((dir, name))
            })
            .collect();
        Cleanup {
            held: Mutex::new(Held {
                files,
                _lock: pid_file,
            }),
        }
    }

    /// Closes every descriptor held (the confined child: the parent outside cleans up).
    pub fn release(&self) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        *held = Default::default();
    }

    /// Removes the files held and exits with `code`.
    pub fn exit(&self, code: i32) -> ! {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        for (dir, name) in &held.files {
            // SAFETY: unlinkat on a directory fd we own and a valid C string.
            unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) };
        }
        std::process::exit(code)
    }
}
