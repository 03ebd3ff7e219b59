//! The group file: created (mode 0600, by root, in a directory only root can write) or opened
//! and checked, mapped shared, and its descriptor closed: a member keeps only the mapping.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::group::layout::{hdr, Region, FILE_SIZE, MAGIC, SLOTS, VERSION, WORDS};
use crate::group::member::Budget;

/// Why a group file was refused.
#[derive(Debug)]
pub enum GroupError {
    /// The file's creation budget differs from this member's flags.
    Mismatch {
        /// The path.
        path: PathBuf,
        /// This member's flags.
        ours: Budget,
        /// The group's creation values.
        theirs: Budget,
    },
    /// The file (or its directory) is not what a group file must be.
    Refused {
        /// The path.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

impl std::fmt::Display for GroupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GroupError::Mismatch { path, ours, theirs } => write!(
                f,
                "--fs-group={}: the group was created with {} but this daemon has {}",
                path.display(),
                show(theirs),
                show(ours)
            ),
            GroupError::Refused { path, why } => {
                write!(f, "--fs-group={}: refused: {why}", path.display())
            }
        }
    }
}

impl std::error::Error for GroupError {}

/// The budget as its flags would write it.
pub fn show(b: &Budget) -> String {
    format!(
        "--fs-group-bw-size={} --fs-group-bw-burst={} --fs-group-ops-size={} --fs-group-ops-burst={}",
        b.bw.size, b.bw.burst, b.ops.size, b.ops.burst
    )
}

/// A mapped, checked group: its region and the epoch read at join.
#[derive(Debug, Clone, Copy)]
pub struct Mapped {
    /// The mapping.
    pub region: Region,
    /// The header's epoch (`CLOCK_MONOTONIC` ns at creation).
    pub epoch: u64,
    /// Whether this call created the file.
    pub created: bool,
}

/// `CLOCK_MONOTONIC` now, in ns: the same clock in every namespace of the machine, and the
/// one the daemon's limiter reads ([`crate::Nanos::now`]).
pub fn monotonic_ns() -> u64 {
    crate::Nanos::now().as_ns()
}

fn refused(path: &Path, why: impl Into<String>) -> GroupError {
    GroupError::Refused {
        path: path.to_path_buf(),
        why: why.into(),
    }
}

/// Checks that `path`'s directory is owned by root and writable by no one else.
fn check_dir(path: &Path) -> Result<(), GroupError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let m = std::fs::metadata(dir).map_err(|e| refused(path, format!("directory: {e}")))?;
    if m.uid() != 0 || m.mode() & 0o022 != 0 {
        return Err(refused(
            path,
            format!(
                "directory {} must be owned by root and writable only by it (uid {}, mode {:o})",
                dir.display(),
                m.uid(),
                m.mode() & 0o7777
            ),
        ));
    }
    Ok(())
}

/// Checks an open group file: a regular file of root's, mode 0600, [`FILE_SIZE`] bytes.
fn check_file(path: &Path, f: &File) -> Result<(), GroupError> {
    let m = f.metadata().map_err(|e| refused(path, e.to_string()))?;
    if !m.file_type().is_file() {
        return Err(refused(path, "not a regular file"));
    }
    if m.uid() != 0 {
        return Err(refused(path, format!("owned by uid {}, not root", m.uid())));
    }
    if m.mode() & 0o7777 != 0o600 {
        return Err(refused(
            path,
            format!("mode {:o}, not 600", m.mode() & 0o7777),
        ));
    }
    if m.len() != FILE_SIZE as u64 {
        return Err(refused(
            path,
            format!("size {} bytes, not {FILE_SIZE}", m.len()),
        ));
    }
    Ok(())
}

fn map(path: &Path, f: &File) -> Result<Region, GroupError> {
    // SAFETY: a fresh shared mapping of the whole file; never unmapped (the process keeps it).
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            FILE_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(refused(
            path,
            format!("mmap: {}", io::Error::last_os_error()),
        ));
    }
    // SAFETY: FILE_SIZE bytes, page aligned, live for the process; AtomicU64 has u64's layout.
    let words = unsafe { std::slice::from_raw_parts(p as *const AtomicU64, WORDS) };
    Ok(Region::new(words))
}

/// Writes a new group's header into `region`: the magic last.
pub fn init(region: &Region, budget: Budget, epoch: u64) {
    region.hdr(hdr::VERSION).store(VERSION, Ordering::Relaxed);
    region
        .hdr(hdr::SIZE)
        .store(FILE_SIZE as u64, Ordering::Relaxed);
    region
        .hdr(hdr::SLOTS)
        .store(SLOTS as u64, Ordering::Relaxed);
    region.hdr(hdr::EPOCH).store(epoch, Ordering::Relaxed);
    for (i, w) in budget.words().iter().enumerate() {
        region.hdr(hdr::CREATION + i).store(*w, Ordering::Relaxed);
        region.hdr(hdr::LIVE + i).store(*w, Ordering::Relaxed);
    }
    region.hdr(hdr::MAGIC).store(MAGIC, Ordering::Release);
}

/// Checks a mapped header (magic, version, size, slots, epoch) and returns the epoch.
pub fn check_header(path: &Path, region: &Region, now_ns: u64) -> Result<u64, GroupError> {
    let magic = region.hdr(hdr::MAGIC).load(Ordering::Acquire);
    if magic != MAGIC {
        return Err(refused(path, format!("bad magic {magic:#018x}")));
    }
    let v = region.load(hdr::VERSION);
    if v != VERSION {
        return Err(refused(
            path,
            format!("version {v}, this daemon knows {VERSION}"),
        ));
    }
    if region.load(hdr::SIZE) != FILE_SIZE as u64 || region.load(hdr::SLOTS) != SLOTS as u64 {
        return Err(refused(
            path,
            "header size or slot count does not match the file",
        ));
    }
    let epoch = region.load(hdr::EPOCH);
    if epoch > now_ns {
        return Err(refused(
            path,
            "epoch in the future (not created on this boot?)",
        ));
    }
    Ok(epoch)
}

/// The creation budget written in the header.
pub fn creation(region: &Region) -> Budget {
    Budget::from_words(std::array::from_fn(|i| region.load(hdr::CREATION + i)))
}

/// Opens (or creates) the group at `path` for a member whose flags give `budget`: checks the
/// directory, the file, the header and the creation values; maps it; closes the descriptor.
pub fn join(path: &Path, budget: Budget) -> Result<Mapped, GroupError> {
    check_dir(path)?;
    let created = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path);
    let (file, created) = match created {
        Ok(f) => {
            f.set_len(FILE_SIZE as u64)
                .map_err(|e| refused(path, e.to_string()))?;
            (f, true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => (open_existing(path)?, false),
        Err(e) => return Err(refused(path, format!("create: {e}"))),
    };
    check_file(path, &file)?;
    let region = map(path, &file)?;
    drop(file);
    let now = monotonic_ns();
    if created {
        init(&region, budget, now);
    } else {
        // The creator writes the magic last; give it a moment.
        for _ in 0..100 {
            if region.hdr(hdr::MAGIC).load(Ordering::Acquire) == MAGIC {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let epoch = check_header(path, &region, monotonic_ns())?;
    let theirs = creation(&region);
    if theirs != budget {
        return Err(GroupError::Mismatch {
            path: path.to_path_buf(),
            ours: budget,
            theirs,
        });
    }
    Ok(Mapped {
        region,
        epoch,
        created,
    })
}

/// Opens an existing group file for inspection or a live change (`virtiofs-sandbox group`).
pub fn open(path: &Path) -> Result<Mapped, GroupError> {
    check_dir(path)?;
    let file = open_existing(path)?;
    check_file(path, &file)?;
    let region = map(path, &file)?;
    drop(file);
    let epoch = check_header(path, &region, monotonic_ns())?;
    Ok(Mapped {
        region,
        epoch,
        created: false,
    })
}

fn open_existing(path: &Path) -> Result<File, GroupError> {
    let open = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
    };
    let f = open().map_err(|e| refused(path, format!("open: {e}")))?;
    // A creator between create and set_len: wait for the size briefly.
    for _ in 0..100 {
        if f.metadata().map(|m| m.len()).unwrap_or(0) != 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(f)
}
