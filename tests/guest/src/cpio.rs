//! A minimal writer for the `newc` (SVR4, no CRC) cpio format, the format the
//! Linux kernel accepts for an initramfs.
//!
//! Entries are streamed to any [`Write`]; [`CpioWriter::finish`] appends the
//! `TRAILER!!!` entry and pads the archive to a 512-byte boundary, so several
//! archives can be concatenated (the kernel unpacks them one after another).

use std::io::{self, Write};

/// `S_IFREG`.
const S_IFREG: u32 = 0o100000;
/// `S_IFDIR`.
const S_IFDIR: u32 = 0o040000;
/// `S_IFLNK`.
const S_IFLNK: u32 = 0o120000;
/// `S_IFCHR`.
const S_IFCHR: u32 = 0o020000;

/// Streams a `newc` cpio archive into `W`.
#[derive(Debug)]
pub struct CpioWriter<W: Write> {
    out: W,
    written: u64,
    next_ino: u32,
    mtime: u32,
}

/// Strips leading `/` so every name is relative, as the kernel expects.
fn normalize(name: &str) -> &str {
    let n = name.trim_start_matches('/');
    if n.is_empty() {
        "."
    } else {
        n
    }
}

impl<W: Write> CpioWriter<W> {
    /// Starts an archive. All entries get owner root:root and mtime 0, so
    /// archives are reproducible.
    pub fn new(out: W) -> Self {
        Self {
            out,
            written: 0,
            next_ino: 1,
            mtime: 0,
        }
    }

    fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self, align: u64) -> io::Result<()> {
        let rem = self.written % align;
        if rem != 0 {
            let zeros = vec![0u8; (align - rem) as usize];
            self.raw(&zeros)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn header(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        size: u64,
        rdev_major: u32,
        rdev_minor: u32,
        ino: u32,
    ) -> io::Result<()> {
        let size: u32 = size.try_into().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cpio newc: {name} is larger than 4 GiB"),
            )
        })?;
        let namesize = name.len() + 1;
        let hdr = format!(
            "070701{ino:08x}{mode:08x}{uid:08x}{gid:08x}{nlink:08x}{mtime:08x}{size:08x}\
             {maj:08x}{min:08x}{rmaj:08x}{rmin:08x}{namesize:08x}{check:08x}",
            uid = 0,
            gid = 0,
            mtime = self.mtime,
            maj = 0,
            min = 0,
            rmaj = rdev_major,
            rmin = rdev_minor,
            check = 0,
        );
        debug_assert_eq!(hdr.len(), 110);
        self.raw(hdr.as_bytes())?;
        self.raw(name.as_bytes())?;
        self.raw(&[0])?;
        self.pad(4)
    }

    fn ino(&mut self) -> u32 {
        let i = self.next_ino;
        self.next_ino += 1;
        i
    }

    /// Adds a directory with permission bits `perm` (e.g. `0o755`).
    pub fn dir(&mut self, name: &str, perm: u32) -> io::Result<()> {
        let ino = self.ino();
        self.header(normalize(name), S_IFDIR | (perm & 0o7777), 2, 0, 0, 0, ino)
    }

    /// Adds a regular file holding `data` with permission bits `perm`.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        let ino = self.ino();
        self.header(
            normalize(name),
            S_IFREG | (perm & 0o7777),
            1,
            data.len() as u64,
            0,
            0,
            ino,
        )?;
        self.raw(data)?;
        self.pad(4)
    }

    /// Adds a symbolic link `name` pointing at `target`.
    pub fn symlink(&mut self, name: &str, target: &str) -> io::Result<()> {
        let ino = self.ino();
        self.header(
            normalize(name),
            S_IFLNK | 0o777,
            1,
            target.len() as u64,
            0,
            0,
            ino,
        )?;
        self.raw(target.as_bytes())?;
        self.pad(4)
    }

    /// Adds a character device node `name` with the given major/minor numbers.
    pub fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        let ino = self.ino();
        self.header(
            normalize(name),
            S_IFCHR | (perm & 0o7777),
            1,
            0,
            major,
            minor,
            ino,
        )
    }

    /// Writes the trailer, pads to 512 bytes and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.header("TRAILER!!!", 0, 1, 0, 0, 0, 0)?;
        self.pad(512)?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.written
    }

    /// True if nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.written == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn sample() -> Vec<u8> {
        let mut w = CpioWriter::new(Vec::new());
        w.dir("/etc", 0o755).unwrap();
        w.file("/etc/hello.txt", 0o644, b"hello world\n").unwrap();
        w.file("etc/empty", 0o600, b"").unwrap();
        w.symlink("/bin", "usr/bin").unwrap();
        w.char_dev("/dev/console", 0o600, 5, 1).unwrap();
        w.finish().unwrap()
    }

    fn cpio_tool() -> &'static str {
        let p = "/usr/bin/cpio";
        assert!(
            std::path::Path::new(p).exists(),
            "{p} is missing: install the Debian package `cpio` (apt-get install cpio)"
        );
        p
    }

    /// Runs `cmd` with `input` on its stdin; asserts it succeeded (with its stderr).
    fn feed(cmd: &mut Command, input: &[u8]) -> std::process::Output {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    #[test]
    fn archive_is_aligned_and_has_trailer() {
        let a = sample();
        assert_eq!(a.len() % 512, 0);
        assert!(a.starts_with(b"070701"));
        let t = b"TRAILER!!!";
        assert!(a.windows(t.len()).any(|w| w == t));
    }

    #[test]
    fn system_cpio_lists_archive() {
        let a = sample();
        let out = feed(
            Command::new(cpio_tool())
                .args(["-t", "-v", "--quiet"])
                .stdout(Stdio::piped()),
            &a,
        );
        let listing = String::from_utf8_lossy(&out.stdout);
        let names: Vec<&str> = listing
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .map(|f| match f.iter().position(|x| *x == "->") {
                Some(p) => f[p - 1],
                None => f[f.len() - 1],
            })
            .collect();
        assert_eq!(
            names,
            ["etc", "etc/hello.txt", "etc/empty", "bin", "dev/console"],
            "{listing}"
        );
        assert!(listing.contains("bin -> usr/bin"), "{listing}");
        assert!(listing.lines().any(|l| l.starts_with('c')), "{listing}");
    }

    #[test]
    fn system_cpio_extracts_contents() {
        let a = sample();
        let dir = tempfile::tempdir().unwrap();
        feed(
            Command::new(cpio_tool())
                .args(["-i", "-d", "--quiet", "--no-absolute-filenames"])
                .arg("--nonmatching")
                .arg("dev/console")
                .current_dir(dir.path()),
            &a,
        );
        assert_eq!(
            std::fs::read(dir.path().join("etc/hello.txt")).unwrap(),
            b"hello world\n"
        );
        assert_eq!(
            std::fs::read_link(dir.path().join("bin")).unwrap(),
            std::path::PathBuf::from("usr/bin")
        );
    }

    #[test]
    fn concatenated_archives_list() {
        let mut a = sample();
        let mut w = CpioWriter::new(Vec::new());
        w.file("job.sh", 0o755, b"echo hi\n").unwrap();
        a.extend(w.finish().unwrap());
        // GNU cpio stops at the first trailer; check the second archive alone.
        let second = &a[sample().len()..];
        assert!(second.starts_with(b"070701"));
    }
}
