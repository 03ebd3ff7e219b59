//! Round-trip cost of the requests the xattr and SUID/SGID changes touch, VM-less, for one or
//! more daemon binaries side by side (rounds alternate between them):
//!
//! - GETXATTR `security.capability` on a file without it (ENODATA): what a Linux guest sends
//!   before each cached write when `--xattr` is on, as Kata does;
//! - a 4 KiB WRITE without and with `FUSE_WRITE_KILL_SUIDGID` on a file without SUID/SGID.
//!
//! `flock /tmp/guest-tests.lock cargo run --release -p e2e --example xattr_cost -- BIN...`

use std::path::Path;
use std::time::Instant;

use vufs_frontend::fuse::{parse_obj, Opcode, WriteIn, WriteOut};
use vufs_frontend::{ConnectOptions, FuseSession, ROOT_ID};
use vufs_testkit::{Daemon, Scratch};

const ROUNDS: usize = 7;

/// Requests per measurement (`XATTR_COST_N`, default 20000).
fn n() -> u32 {
    std::env::var("XATTR_COST_N").map_or(20_000, |v| v.parse().unwrap())
}

struct Run {
    bin: String,
    _s: Scratch,
    _d: Daemon,
    fs: FuseSession,
    x: u64,
    w: u64,
    fh: u64,
}

fn bytes<T: Copy>(v: &T) -> Vec<u8> {
    // SAFETY: a plain FUSE ABI struct without implicit padding.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
}

fn start(bin: &str) -> Run {
    let s = Scratch::new();
    std::fs::write(s.share.join("x"), b"").unwrap();
    std::fs::write(s.share.join("w"), b"").unwrap();
    let share = format!("--shared-dir={}", s.share.display());
    let d = Daemon::start(Path::new(bin), &s.socket(), &[&share, "--xattr"], &[]);
    let mut fs = loop {
        match FuseSession::connect_with(s.socket(), &ConnectOptions::default()) {
            Ok(fs) => break fs,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    };
    fs.init().unwrap();
    let x = fs.lookup(ROOT_ID, b"x").unwrap().nodeid;
    let w = fs.lookup(ROOT_ID, b"w").unwrap().nodeid;
    let fh = fs.open(w, libc::O_RDWR as u32).unwrap().fh;
    Run {
        bin: bin.into(),
        _s: s,
        _d: d,
        fs,
        x,
        w,
        fh,
    }
}

/// Microseconds per request of `n` calls of `f`.
fn time(mut f: impl FnMut(u32)) -> f64 {
    let t = Instant::now();
    for i in 0..n() {
        f(i);
    }
    t.elapsed().as_secs_f64() / f64::from(n()) * 1e6
}

fn write(r: &mut Run, i: u32, flags: u32, data: &[u8]) {
    let w = WriteIn {
        fh: r.fh,
        offset: u64::from(i % 256) * 4096,
        size: data.len() as u32,
        fuse_flags: flags,
        ..Default::default()
    };
    let out =
        r.fs.request(
            Opcode::Write as u32,
            r.w,
            &[&bytes(&w), data],
            size_of::<WriteOut>(),
        )
        .unwrap();
    let _: WriteOut = parse_obj(&out).unwrap();
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let bins: Vec<String> = std::env::args().skip(1).collect();
    assert!(!bins.is_empty(), "usage: xattr_cost BIN...");
    let mut runs: Vec<Run> = bins.iter().map(|b| start(b)).collect();
    let data = vec![1u8; 4096];
    let mut m = vec![[Vec::new(), Vec::new(), Vec::new()]; runs.len()];
    for _ in 0..ROUNDS {
        for (k, r) in runs.iter_mut().enumerate() {
            let x = r.x;
            m[k][0].push(time(|_| {
                let e = r.fs.getxattr(x, b"security.capability", 0).unwrap_err();
                assert_eq!(e.errno(), Some(libc::ENODATA));
            }));
            m[k][1].push(time(|i| write(r, i, 0, &data)));
            m[k][2].push(time(|i| write(r, i, 4, &data)));
        }
    }
    for (k, r) in runs.iter().enumerate() {
        let [g, w0, w4] = &mut m[k];
        println!(
            "{}: median of {ROUNDS} rounds x {}: GETXATTR {:.2} us, WRITE 4 KiB {:.2} us, \
             flagged WRITE 4 KiB {:.2} us",
            r.bin,
            n(),
            median(g),
            median(w0),
            median(w4)
        );
    }
}
