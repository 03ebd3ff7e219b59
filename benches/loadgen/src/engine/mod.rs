//! The load generator: one vhost-user connection, INIT, prepared files, then workloads run
//! for a duration with a fixed queue depth on each of `queues` request queues, one
//! submitter thread ([`lane`]) per request queue.
//!
//! Requests are laid out like the Linux virtio-fs driver lays them out (one readable
//! descriptor for the `InHeader`, one per argument, WRITE data last; a writable descriptor
//! for the `OutHeader` and one for the reply body), but each in-flight slot owns fixed
//! buffers in guest memory: no allocation and no copy of the data on the generator's side.
//! READ data is checked in place against the file pattern ([`crate::pattern`]); WRITE data
//! is the pattern of the offset written (re-tagging a pre-filled buffer), so files stay
//! checkable.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::mem::size_of;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use vm_memory::ByteValued;
use vufs_frontend::fuse::{
    cstr, parse_obj, CreateIn, EntryOut, GetattrIn, InHeader, MknodIn, Opcode, OpenOut, OutHeader,
    ReadIn, ReleaseIn, WriteIn, WriteOut, IN_HEADER_LEN, OUT_HEADER_LEN,
};
use vufs_frontend::virtqueue::ChainData;
use vufs_frontend::{ConnectOptions, Error as FeError, FuseSession, GuestBuf, ROOT_ID};

use crate::pattern;
use crate::procfs;
use crate::stats::quantile_sorted;

mod churn;
mod data;
mod files;
mod lane;
mod measure;
mod meta;
mod types;

pub use files::{calibrate, check_host_file, prepare_host, prepare_host_file};
use lane::{Ctx, Files, InFlight, Lane};
use measure::{Clock, CpuSample, Measure, Window};
use meta::MetaStep;
pub use types::{
    Config, DaemonUsage, Fatal, GenUsage, InitInfo, Latency, MachineUsage, QueueShare, RunReport,
    Workload, WorkloadResult, MAX_QUEUES,
};

/// Directory (in the shared directory) holding the generator's files.
pub const DIR: &str = "vufs-loadgen";
/// File read by the read workloads (pattern file id 1).
pub const READ_FILE: &str = "read.dat";
/// File written by the write workloads (pattern file id 2).
pub const WRITE_FILE: &str = "write.dat";
/// Directory of the metadata workload.
pub const META_DIR: &str = "meta";
const READ_ID: u8 = 1;
const WRITE_ID: u8 = 2;

type Res<T> = std::result::Result<T, Fatal>;

fn fatal<T>(msg: impl Into<String>) -> Res<T> {
    Err(Fatal(msg.into()))
}

/// A connected generator: the session (shared by the submitter threads; hiprio and the
/// control messages go through it) and one [`Lane`] per request queue.
pub struct Generator {
    cfg: Config,
    fs: Mutex<FuseSession>,
    lanes: Vec<Lane>,
    report: RunReport,
    files: Files,
}

fn connect_retry(cfg: &Config, opts: &ConnectOptions) -> Res<FuseSession> {
    let deadline = Instant::now() + cfg.connect_timeout;
    loop {
        match FuseSession::connect_with(&cfg.socket, opts) {
            Ok(fs) => return Ok(fs),
            Err(FeError::Connect { source, .. })
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
                ) && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return fatal(format!("connect {}: {e}", cfg.socket.display())),
        }
    }
}

fn lookup_or<F>(fs: &mut FuseSession, parent: u64, name: &str, make: F) -> Res<EntryOut>
where
    F: FnOnce(&mut FuseSession) -> vufs_frontend::Result<EntryOut>,
{
    match fs.lookup(parent, name.as_bytes()) {
        Ok(e) => Ok(e),
        Err(e) if e.errno() == Some(libc::ENOENT) => {
            make(fs).map_err(|e| Fatal(format!("creating {name}: {e}")))
        }
        Err(e) => fatal(format!("LOOKUP {name}: {e}")),
    }
}

/// Look up (or create through FUSE, writing the pattern) one data file; open it.
fn data_file(
    fs: &mut FuseSession,
    size: u64,
    dir: u64,
    name: &str,
    id: u8,
    flags: u32,
) -> Res<(u64, u64)> {
    let e = lookup_or(fs, dir, name, |fs| {
        let (e, o) = fs.create(dir, name.as_bytes(), 0o644, libc::O_RDWR as u32)?;
        fs.release(e.nodeid, o.fh, libc::O_RDWR as u32)?;
        let mut e = e;
        e.attr.size = 0;
        Ok(e)
    })?;
    if e.attr.size != size {
        // Lay the file out through the daemon (no --shared-dir).
        let o = fs.open(e.nodeid, libc::O_RDWR as u32)?;
        let chunk = (fs.max_write() as usize).min(1 << 20);
        let mut b = vec![0u8; chunk];
        let mut off = 0;
        while off < size {
            let n = (size - off).min(chunk as u64) as usize;
            pattern::fill(&mut b[..n], id, off);
            let w = fs.write(e.nodeid, o.fh, off, &b[..n])?;
            if w as usize != n {
                return fatal(format!("short write preparing {name}"));
            }
            off += n as u64;
        }
        fs.truncate(e.nodeid, size, Some(o.fh))?;
        fs.release(e.nodeid, o.fh, libc::O_RDWR as u32)?;
    }
    let o = fs.open(e.nodeid, flags)?;
    Ok((e.nodeid, o.fh))
}

fn open_files(fs: &mut FuseSession, size: u64) -> Res<Files> {
    let dir = lookup_or(fs, ROOT_ID, DIR, |fs| {
        fs.mkdir(ROOT_ID, DIR.as_bytes(), 0o755)
    })?
    .nodeid;
    let read_file = data_file(fs, size, dir, READ_FILE, READ_ID, libc::O_RDONLY as u32)?;
    let write_file = data_file(fs, size, dir, WRITE_FILE, WRITE_ID, libc::O_RDWR as u32)?;
    let meta_dir = lookup_or(fs, dir, META_DIR, |fs| {
        fs.mkdir(dir, META_DIR.as_bytes(), 0o755)
    })?
    .nodeid;
    Ok(Files {
        read_file,
        write_file,
        meta_dir,
    })
}

/// Counts a finished lane when dropped.
struct Done<'a>(&'a AtomicUsize);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

impl Generator {
    /// Connect (hiprio plus [`Config::queues`] request queues), INIT, prepare files and open
    /// them.
    pub fn connect(cfg: Config) -> Res<Generator> {
        if cfg.queue_depth == 0 || cfg.queue_depth > 128 {
            return fatal("queue depth must be 1..=128");
        }
        if cfg.queues == 0 || cfg.queues > MAX_QUEUES {
            return fatal(format!("request queues must be 1..={MAX_QUEUES}"));
        }
        if !(cfg.seq_bs as usize).is_multiple_of(pattern::BLOCK)
            || !(cfg.rand_bs as usize).is_multiple_of(pattern::BLOCK)
        {
            return fatal("block sizes must be multiples of 4 KiB");
        }
        if cfg.file_size < cfg.seq_bs as u64 || !cfg.file_size.is_multiple_of(cfg.seq_bs as u64) {
            return fatal("file size must be a nonzero multiple of the sequential block size");
        }
        if let Some(d) = &cfg.shared_dir {
            prepare_host(d, cfg.file_size)
                .map_err(|e| Fatal(format!("preparing files in {}: {e}", d.display())))?;
        }
        let max_bs = cfg.seq_bs.max(cfg.rand_bs) as usize;
        let per_slot = 2 * (max_bs + 4096) + 8192;
        let opts = ConnectOptions {
            mem_size: cfg.queues * cfg.queue_depth * per_slot + (16 << 20),
            queue_size: 1024,
            num_queues: 1 + cfg.queues,
            timeout: cfg.reply_timeout,
            ..Default::default()
        };
        let t = Instant::now();
        let mut fs = connect_retry(&cfg, &opts)?;
        let connect_s = t.elapsed().as_secs_f64();
        let init = fs.init().map_err(|e| Fatal(format!("INIT: {e}")))?;
        if (init.max_write as usize) < max_bs {
            return fatal(format!(
                "daemon max_write {} < block size {max_bs}",
                init.max_write
            ));
        }
        let mut report = RunReport {
            socket: cfg.socket.display().to_string(),
            daemon_pid: cfg.daemon_pid,
            queue_depth: cfg.queue_depth,
            queues: cfg.queues,
            verify_every: cfg.verify_every,
            file_size: cfg.file_size,
            connect_s,
            init: InitInfo {
                major: init.major,
                minor: init.minor,
                max_write: init.max_write,
                flags: init.flags,
            },
            ..Default::default()
        };
        report.daemon_rss_after_init_kib =
            cfg.daemon_pid.and_then(procfs::rss_kib).map(|(rss, _)| rss);
        let lanes = (1..=cfg.queues)
            .map(|q| Lane::new(&mut fs, &cfg, q, max_bs))
            .collect::<Res<Vec<_>>>()?;
        let files = open_files(&mut fs, cfg.file_size)?;
        Ok(Generator {
            fs: Mutex::new(fs),
            lanes,
            report,
            files,
            cfg,
        })
    }

    /// The report so far.
    pub fn report(&self) -> &RunReport {
        &self.report
    }

    fn sample_cpu(&self) -> CpuSample {
        CpuSample {
            daemon: self.cfg.daemon_pid.and_then(procfs::cpu_seconds),
            generator: procfs::self_cpu_seconds(),
            machine: procfs::machine_cpu(),
        }
    }

    /// Watch the clock while the lanes run: CPU at the start and the end of the measured
    /// window, the daemon's anonymous RSS once per interval; until all `lanes` are done.
    fn watch(&self, clock: &Clock, done: &AtomicUsize, lanes: usize) -> Window {
        let mut w = Window::default();
        let mut next_sample = clock.t0;
        loop {
            let now = Instant::now();
            if let Some(pid) = self.cfg.daemon_pid.filter(|_| now >= next_sample) {
                w.anon_peak = w.anon_peak.max(procfs::anon_kib(pid).unwrap_or(0));
                next_sample = now + self.cfg.interval;
            }
            if w.warm_at.is_none() && now >= clock.warm {
                w.cpu0 = self.sample_cpu();
                w.warm_at = Some(now);
            }
            if w.end_at.is_none() && now >= clock.end {
                w.cpu1 = Some(self.sample_cpu());
                w.end_at = Some(now);
            }
            if done.load(Ordering::Acquire) == lanes {
                return w;
            }
            let mut until = now + Duration::from_millis(5);
            for t in [clock.warm, clock.end] {
                if t > now {
                    until = until.min(t);
                }
            }
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
        }
    }

    /// Run one workload: on every request queue at once (`churn`: on the first only, since it
    /// measures what a daemon keeps per file, not a rate).
    pub fn run(&mut self, w: Workload) -> Res<WorkloadResult> {
        let clock = Clock::new(self.cfg.warmup, self.cfg.duration);
        let n = if w == Workload::Churn {
            1
        } else {
            self.lanes.len()
        };
        let done = AtomicUsize::new(0);
        let mut lanes = std::mem::take(&mut self.lanes);
        let (window, measures) = {
            let cx = Ctx {
                cfg: &self.cfg,
                fs: &self.fs,
                files: self.files,
                clock,
            };
            let this = &*self;
            std::thread::scope(|sc| {
                let handles: Vec<_> = lanes[..n]
                    .iter_mut()
                    .map(|lane| {
                        let (cx, done) = (&cx, &done);
                        sc.spawn(move || {
                            // Counted even if the lane panics, so `watch` returns.
                            let _done = Done(done);
                            lane.run(w, cx)
                        })
                    })
                    .collect();
                let window = this.watch(&clock, &done, n);
                let measures: Vec<Res<Measure>> = handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| fatal("a submitter thread panicked"))
                    })
                    .collect();
                (window, measures)
            })
        };
        self.lanes = lanes;
        let mut total = Measure::new(clock, 0, self.cfg.interval);
        let mut shares = Vec::new();
        for m in measures {
            let m = m?;
            shares.push(QueueShare {
                queue: m.queue,
                ops: m.ops,
                bytes: m.bytes,
            });
            total.absorb(m);
        }
        let r = self.finish(w, total, window, shares);
        self.report.results.push(r.clone());
        Ok(r)
    }

    /// After the workloads: with a shared directory, check the written file on the host.
    pub fn finish_run(mut self) -> RunReport {
        if let Some(d) = &self.cfg.shared_dir {
            let wrote = self
                .report
                .results
                .iter()
                .any(|r| r.workload.contains("write"));
            if wrote {
                let p = d.join(DIR).join(WRITE_FILE);
                self.report.write_file_check =
                    Some(check_host_file(&p, WRITE_ID).unwrap_or_else(|| "ok".into()));
            }
        }
        let r = &mut self.report;
        r.ok = r.fatal.is_none()
            && r.error_count() == 0
            && r.write_file_check.as_deref().is_none_or(|c| c == "ok");
        self.report
    }

    /// Record a fatal error in the report.
    pub fn set_fatal(&mut self, e: &Fatal) {
        self.report.fatal = Some(e.0.clone());
    }
}
