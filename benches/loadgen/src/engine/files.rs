//! The generator's files on the host: laid out with the pattern, checked afterwards; and the
//! generator-only calibration.

use super::*;

fn host_file_ok(path: &Path, size: u64, id: u8) -> bool {
    let Ok(mut f) = fs::File::open(path) else {
        return false;
    };
    if f.metadata().map(|m| m.len()).unwrap_or(0) != size {
        return false;
    }
    let mut b = vec![0u8; pattern::BLOCK];
    for off in [0, size - pattern::BLOCK as u64] {
        if f.seek(SeekFrom::Start(off)).is_err() || f.read_exact(&mut b).is_err() {
            return false;
        }
        if pattern::verify(&b, id, off).is_some() {
            return false;
        }
    }
    true
}

/// Write the pattern file `id` of `size` bytes at `path` on the host (unless it is already
/// there: right size and first/last blocks right).
pub fn prepare_host_file(path: &Path, size: u64, id: u8) -> std::io::Result<()> {
    if host_file_ok(path, size, id) {
        return Ok(());
    }
    let mut f = fs::File::create(path)?;
    let mut b = vec![0u8; 1 << 20];
    let mut off = 0;
    while off < size {
        let n = (size - off).min(b.len() as u64) as usize;
        pattern::fill(&mut b[..n], id, off);
        f.write_all(&b[..n])?;
        off += n as u64;
    }
    f.sync_all()?;
    Ok(())
}

/// Check a whole host file against pattern `id`: `None` if right, else the first problem.
pub fn check_host_file(path: &Path, id: u8) -> Option<String> {
    let mut f = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return Some(format!("{}: {e}", path.display())),
    };
    let mut b = vec![0u8; 1 << 20];
    let mut off = 0u64;
    loop {
        let n = match f.read(&mut b) {
            Ok(0) => return None,
            Ok(n) => n,
            Err(e) => return Some(format!("{}: {e}", path.display())),
        };
        if let Some(i) = pattern::verify(&b[..n], id, off) {
            return Some(format!(
                "{}: wrong byte at offset {}",
                path.display(),
                off + i as u64
            ));
        }
        off += n as u64;
    }
}

/// Prepare the generator's files in `shared_dir` on the host.
pub fn prepare_host(shared_dir: &Path, file_size: u64) -> std::io::Result<()> {
    let dir = shared_dir.join(DIR);
    fs::create_dir_all(dir.join(META_DIR))?;
    prepare_host_file(&dir.join(READ_FILE), file_size, READ_ID)?;
    prepare_host_file(&dir.join(WRITE_FILE), file_size, WRITE_ID)?;
    Ok(())
}

/// Generator-only calibration: how fast this machine's generator can produce and check data
/// without any daemon (pattern re-tagging for writes, verification for reads), for
/// `secs` per block size. Returns (block size, MiB/s of read verification, MiB/s of write
/// preparation).
pub fn calibrate(block_sizes: &[u32], secs: f64) -> Vec<(u32, f64, f64)> {
    let mut out = Vec::new();
    for &bs in block_sizes {
        let mut b = vec![0u8; bs as usize];
        pattern::fill(&mut b, READ_ID, 0);
        let run = |f: &mut dyn FnMut(u64)| {
            let t = Instant::now();
            let mut n = 0u64;
            while t.elapsed().as_secs_f64() < secs {
                for _ in 0..16 {
                    f(n);
                    n += 1;
                }
            }
            (n * bs as u64) as f64 / t.elapsed().as_secs_f64() / (1 << 20) as f64
        };
        let mut bad = 0u64;
        let verify = run(&mut |i| {
            let off = (i % 64) * bs as u64;
            pattern::retag(&mut b, READ_ID, off);
            bad += pattern::verify(std::hint::black_box(&b), READ_ID, off).is_some() as u64;
        });
        assert_eq!(bad, 0);
        let write = run(&mut |i| {
            pattern::retag(std::hint::black_box(&mut b), WRITE_ID, (i % 64) * bs as u64);
        });
        out.push((bs, verify, write));
    }
    out
}
