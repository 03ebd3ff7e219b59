//! Which directories are mount points, for submount announcement.
//!
//! A bind mount from the same filesystem has the same `st_dev` as its parent, so the device
//! alone cannot tell a submount (Kata bind-mounts container root filesystems into the share
//! this way). The mount table can: `mountinfo` is opened once, after the sandbox has changed the
//! root, through a `/proc/self` directory opened before (the kernel renders its paths relative
//! to the root at open time, the same root `/proc/self/fd` links are relative to), and re-read
//! only when the kernel flags a change of the mount table (POLLPRI).

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::io::AsRawFd;
use std::sync::Mutex;

/// The mount points below the process root.
pub struct MountPoints {
    state: Mutex<(File, HashSet<Vec<u8>>)>,
}

impl MountPoints {
    /// Opens this process's mount table through `proc_self` (a `/proc/self` directory).
    pub fn open(proc_self: &File) -> io::Result<MountPoints> {
        // SAFETY: openat on a directory fd we own with a valid C string.
        let fd = unsafe {
            libc::openat(
                proc_self.as_raw_fd(),
                c"mountinfo".as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        let file = unsafe { <File as std::os::unix::io::FromRawFd>::from_raw_fd(fd) };
        let points = read_points(&file)?;
        Ok(MountPoints {
            state: Mutex::new((file, points)),
        })
    }

    /// Whether anything but the root is mounted (if not, no lookup needs a path).
    pub fn any(&self) -> bool {
        let mut st = self.state.lock().unwrap();
        refresh(&mut st);
        !st.1.is_empty()
    }

    /// Whether `path` (as the kernel shows it relative to the root) is a mount point.
    pub fn contains(&self, path: &[u8]) -> bool {
        let mut st = self.state.lock().unwrap();
        refresh(&mut st);
        st.1.contains(path)
    }
}

fn refresh(st: &mut (File, HashSet<Vec<u8>>)) {
    let mut pfd = libc::pollfd {
        fd: st.0.as_raw_fd(),
        events: libc::POLLPRI,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no timeout.
    let changed = unsafe { libc::poll(&mut pfd, 1, 0) } > 0 && pfd.revents != 0;
    if changed {
        match read_points(&st.0) {
            Ok(p) => st.1 = p,
            Err(e) => log::warn!("cannot re-read the mount table: {e}"),
        }
    }
}

/// Mount points (field 5 of mountinfo, octal escapes decoded), without the root itself.
fn read_points(mut file: &File) -> io::Result<HashSet<Vec<u8>>> {
    file.seek(SeekFrom::Start(0))?;
    let mut text = Vec::new();
    file.read_to_end(&mut text)?;
    Ok(parse_points(&text))
}

fn parse_points(text: &[u8]) -> HashSet<Vec<u8>> {
    text.split(|b| *b == b'\n')
        .filter_map(|line| line.split(|b| *b == b' ').nth(4))
        .map(unescape)
        .filter(|p| p != b"/")
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let oct = field
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (field[i], oct) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') << 6 | (d[1] - b'0') << 3 | (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mount_points() {
        let t = b"22 27 0:21 / /proc rw - proc proc rw\n\
                  27 1 254:0 / / rw - ext4 /dev/vda rw\n\
                  30 27 254:0 /src /share/my\\040dir rw - ext4 /dev/vda rw\n";
        let p = parse_points(t);
        assert!(p.contains(&b"/proc"[..]));
        assert!(p.contains(&b"/share/my dir"[..]));
        assert!(!p.contains(&b"/"[..]));
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn reads_this_process() {
        let m = MountPoints::open(&File::open("/proc/self").unwrap()).unwrap();
        assert!(m.contains(b"/proc"));
    }
}
