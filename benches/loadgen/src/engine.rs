//! The load generator: one vhost-user connection, INIT, prepared files, then workloads run
//! for a duration with a fixed queue depth.
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
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use vm_memory::ByteValued;
use vufs_frontend::fuse::{
    cstr, parse_obj, CreateIn, EntryOut, GetattrIn, InHeader, Opcode, OpenOut, OutHeader, ReadIn,
    ReleaseIn, WriteIn, WriteOut, IN_HEADER_LEN, OUT_HEADER_LEN,
};
use vufs_frontend::virtqueue::ChainData;
use vufs_frontend::{
    ConnectOptions, Error as FeError, FuseSession, GuestBuf, REQUEST_QUEUE, ROOT_ID,
};

use crate::pattern;
use crate::procfs;
use crate::stats::quantile_sorted;

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

/// A workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Sequential 1 MiB READs (wrapping at the end of the file).
    SeqRead,
    /// Sequential 1 MiB WRITEs.
    SeqWrite,
    /// Random 4 KiB READs.
    RandRead,
    /// Random 4 KiB WRITEs.
    RandWrite,
    /// CREATE, GETATTR, LOOKUP, RELEASE, UNLINK cycles (FORGETs batched on the hiprio queue).
    Meta,
}

impl Workload {
    /// Every workload, in the order the generator runs them by default.
    pub const ALL: [Workload; 5] = [
        Workload::SeqRead,
        Workload::SeqWrite,
        Workload::RandRead,
        Workload::RandWrite,
        Workload::Meta,
    ];

    /// Stable name (`seq-read`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Workload::SeqRead => "seq-read",
            Workload::SeqWrite => "seq-write",
            Workload::RandRead => "rand-read",
            Workload::RandWrite => "rand-write",
            Workload::Meta => "meta",
        }
    }

    /// Parse a name.
    pub fn parse(s: &str) -> Option<Workload> {
        Self::ALL.into_iter().find(|w| w.name() == s)
    }

    /// Whether this is a data (byte-moving) workload.
    pub fn is_data(self) -> bool {
        self != Workload::Meta
    }
}

/// Generator settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The daemon's vhost-user socket.
    pub socket: PathBuf,
    /// The daemon's shared directory, when visible here: files are prepared (and written
    /// files checked afterwards) directly on the host.
    pub shared_dir: Option<PathBuf>,
    /// The daemon's pid, for its CPU time and RSS.
    pub daemon_pid: Option<u32>,
    /// Requests in flight.
    pub queue_depth: usize,
    /// Measured time per workload.
    pub duration: Duration,
    /// Unmeasured time before it (still in the per-interval series).
    pub warmup: Duration,
    /// Size of each data file (a multiple of the sequential block size).
    pub file_size: u64,
    /// Block size of the sequential workloads.
    pub seq_bs: u32,
    /// Block size of the random workloads.
    pub rand_bs: u32,
    /// Width of the per-interval throughput series.
    pub interval: Duration,
    /// Check READ data against the pattern: 0 = not at all; 1 = every byte of every READ;
    /// N > 1 = every byte of every N-th READ and the per-4-KiB tags (offset and file) of all
    /// others (less memory traffic on the generator's core for multi-GB/s runs).
    pub verify_every: u32,
    /// How long to keep retrying the connection while the daemon starts.
    pub connect_timeout: Duration,
    /// Reply timeout (a request not answered by then fails the run).
    pub reply_timeout: Duration,
    /// Seed of the random offsets.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            socket: PathBuf::new(),
            shared_dir: None,
            daemon_pid: None,
            queue_depth: 8,
            duration: Duration::from_secs(3),
            warmup: Duration::from_millis(500),
            file_size: 256 << 20,
            seq_bs: 1 << 20,
            rand_bs: 4096,
            interval: Duration::from_millis(100),
            verify_every: 1,
            connect_timeout: Duration::from_secs(10),
            reply_timeout: Duration::from_secs(10),
            seed: 0x1234_5678,
        }
    }
}

/// Latency summary in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// The daemon's resource use over the measured window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DaemonUsage {
    /// CPU seconds (utime + stime, all threads).
    pub cpu_s: f64,
    /// CPU seconds per wall second.
    pub cpu_share: f64,
    /// CPU seconds per GiB moved (data workloads).
    pub cpu_s_per_gib: Option<f64>,
    /// CPU microseconds per request.
    pub cpu_us_per_op: f64,
    /// VmRSS at the end, KiB.
    pub rss_kib: u64,
    /// VmHWM at the end, KiB.
    pub hwm_kib: u64,
}

/// The generator's own CPU use over the measured window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GenUsage {
    /// CPU seconds.
    pub cpu_s: f64,
    /// CPU seconds per wall second (1.0 = one core saturated).
    pub cpu_share: f64,
    /// `1 / cpu_share`: how much faster a daemon could be before the generator is the limit.
    pub headroom: f64,
}

/// One workload's result.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkloadResult {
    /// Workload name.
    pub workload: String,
    /// Bytes per request (0 for metadata).
    pub block_size: u32,
    /// Requests in flight.
    pub queue_depth: usize,
    /// Measured wall seconds.
    pub seconds: f64,
    /// Requests completed in the measured window.
    pub ops: u64,
    /// Bytes moved in the measured window.
    pub bytes: u64,
    /// MiB/s.
    pub mib_s: f64,
    /// Requests per second.
    pub iops: f64,
    /// Request latency (submit to completion seen), µs.
    pub lat_us: Latency,
    /// Failed requests (error replies, malformed replies, short transfers).
    pub errors: u64,
    /// READs whose data did not match the pattern.
    pub verify_errors: u64,
    /// The first error, described.
    pub first_error: Option<String>,
    /// Daemon resource use (with `--daemon-pid`).
    pub daemon: Option<DaemonUsage>,
    /// Generator resource use.
    pub generator: GenUsage,
    /// Width of the interval series, ms.
    pub interval_ms: u64,
    /// MiB/s per interval from the start of the workload (warm-up included).
    pub intervals_mib_s: Vec<f64>,
    /// Requests completed per interval.
    pub intervals_ops: Vec<u64>,
}

/// What the daemon answered to INIT.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InitInfo {
    /// Protocol major.
    pub major: u32,
    /// Protocol minor.
    pub minor: u32,
    /// Largest WRITE.
    pub max_write: u32,
    /// Flags (low 32 bits).
    pub flags: u32,
}

/// A whole generator run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunReport {
    /// Socket used.
    pub socket: String,
    /// Daemon pid, if given.
    pub daemon_pid: Option<u32>,
    /// Requests in flight.
    pub queue_depth: usize,
    /// READ checking (see [`Config::verify_every`]).
    pub verify_every: u32,
    /// Size of each data file.
    pub file_size: u64,
    /// Seconds from the first connect attempt to a connected frontend.
    pub connect_s: f64,
    /// INIT reply.
    pub init: InitInfo,
    /// Daemon VmRSS right after INIT (KiB).
    pub daemon_rss_after_init_kib: Option<u64>,
    /// Per-workload results.
    pub results: Vec<WorkloadResult>,
    /// Host-side check of the written file (with `--shared-dir`): `None` = not checked,
    /// `Some("ok")` or the mismatch.
    pub write_file_check: Option<String>,
    /// Fatal error that stopped the run, if any.
    pub fatal: Option<String>,
    /// No errors of any kind.
    pub ok: bool,
}

impl RunReport {
    /// Count of request errors plus verification errors over all workloads.
    pub fn error_count(&self) -> u64 {
        self.results
            .iter()
            .map(|r| r.errors + r.verify_errors)
            .sum()
    }
}

/// Errors that stop the generator.
#[derive(Debug)]
pub struct Fatal(pub String);

impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Fatal {}

impl From<FeError> for Fatal {
    fn from(e: FeError) -> Self {
        Fatal(e.to_string())
    }
}

impl From<std::io::Error> for Fatal {
    fn from(e: std::io::Error) -> Self {
        Fatal(e.to_string())
    }
}

type Res<T> = std::result::Result<T, Fatal>;

/// A completion: (slot, its request, when seen, reply body length or the error).
type Done = (usize, InFlight, Instant, Result<u32, String>);

fn fatal<T>(msg: impl Into<String>) -> Res<T> {
    Err(Fatal(msg.into()))
}

/// Fixed guest buffers of one in-flight slot.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// InHeader + arguments.
    inbuf: GuestBuf,
    /// OutHeader + reply body.
    out: GuestBuf,
    /// WRITE payload (pre-filled with the write file's pattern).
    data: GuestBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MetaStep {
    Create,
    Getattr,
    Lookup,
    Release,
    Unlink,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    unique: u64,
    submitted: Instant,
    offset: u64,
    len: u32,
    step: MetaStep,
}

#[derive(Debug, Clone, Copy, Default)]
struct MetaState {
    iter: u64,
    nodeid: u64,
    fh: u64,
}

struct Measure {
    t0: Instant,
    warm_at: Option<Instant>,
    end_at: Option<Instant>,
    cpu_d0: Option<f64>,
    cpu_d1: Option<f64>,
    cpu_g0: f64,
    cpu_g1: f64,
    ops: u64,
    bytes: u64,
    lat: Vec<u64>,
    errors: u64,
    verify_errors: u64,
    first_error: Option<String>,
    iv_bytes: Vec<u64>,
    iv_ops: Vec<u64>,
    interval: Duration,
}

impl Measure {
    fn new(interval: Duration) -> Self {
        Measure {
            t0: Instant::now(),
            warm_at: None,
            end_at: None,
            cpu_d0: None,
            cpu_d1: None,
            cpu_g0: 0.0,
            cpu_g1: 0.0,
            ops: 0,
            bytes: 0,
            lat: Vec::with_capacity(1 << 16),
            errors: 0,
            verify_errors: 0,
            first_error: None,
            iv_bytes: Vec::new(),
            iv_ops: Vec::new(),
            interval,
        }
    }

    fn error(&mut self, verify: bool, msg: impl FnOnce() -> String) {
        if verify {
            self.verify_errors += 1;
        } else {
            self.errors += 1;
        }
        if self.first_error.is_none() {
            self.first_error = Some(msg());
        }
    }

    fn done(&mut self, submitted: Instant, now: Instant, bytes: u64) {
        let i = (now.duration_since(self.t0).as_nanos() / self.interval.as_nanos().max(1)) as usize;
        if self.iv_ops.len() <= i {
            self.iv_ops.resize(i + 1, 0);
            self.iv_bytes.resize(i + 1, 0);
        }
        self.iv_ops[i] += 1;
        self.iv_bytes[i] += bytes;
        let counted = matches!(self.warm_at, Some(w) if submitted >= w) && self.end_at.is_none();
        if counted {
            self.ops += 1;
            self.bytes += bytes;
            self.lat
                .push(now.duration_since(submitted).as_nanos() as u64);
        }
    }
}

/// A connected generator.
pub struct Generator {
    cfg: Config,
    fs: FuseSession,
    slots: Vec<Slot>,
    free: Vec<usize>,
    head_slot: Vec<usize>,
    inflight: Vec<Option<InFlight>>,
    report: RunReport,
    read_file: (u64, u64),
    write_file: (u64, u64),
    meta_dir: u64,
    rng: u64,
    reads: u64,
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

impl Generator {
    /// Connect, INIT, prepare files and open them.
    pub fn connect(cfg: Config) -> Res<Generator> {
        if cfg.queue_depth == 0 || cfg.queue_depth > 128 {
            return fatal("queue depth must be 1..=128");
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
            mem_size: cfg.queue_depth * per_slot + (16 << 20),
            queue_size: 1024,
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

        // Slots.
        let mut slots = Vec::with_capacity(cfg.queue_depth);
        for _ in 0..cfg.queue_depth {
            let fe = fs.frontend();
            let inbuf = fe.alloc(4096)?;
            let out = fe.alloc(OUT_HEADER_LEN + max_bs)?;
            let data = fe.alloc(max_bs)?;
            let mut tmp = vec![0u8; max_bs];
            pattern::fill(&mut tmp, WRITE_ID, 0);
            fe.mem().write(data.addr, &tmp)?;
            slots.push(Slot { inbuf, out, data });
        }
        let rng = cfg.seed | 1;
        let mut g = Generator {
            free: (0..cfg.queue_depth).rev().collect(),
            head_slot: vec![usize::MAX; 1024],
            inflight: vec![None; cfg.queue_depth],
            slots,
            report,
            read_file: (0, 0),
            write_file: (0, 0),
            meta_dir: 0,
            rng,
            reads: 0,
            fs,
            cfg,
        };
        g.open_files()?;
        Ok(g)
    }

    fn lookup_or<F>(&mut self, parent: u64, name: &str, make: F) -> Res<EntryOut>
    where
        F: FnOnce(&mut FuseSession) -> vufs_frontend::Result<EntryOut>,
    {
        match self.fs.lookup(parent, name.as_bytes()) {
            Ok(e) => Ok(e),
            Err(e) if e.errno() == Some(libc::ENOENT) => {
                make(&mut self.fs).map_err(|e| Fatal(format!("creating {name}: {e}")))
            }
            Err(e) => fatal(format!("LOOKUP {name}: {e}")),
        }
    }

    /// Look up (or create through FUSE, writing the pattern) one data file; open it.
    fn data_file(&mut self, dir: u64, name: &str, id: u8, flags: u32) -> Res<(u64, u64)> {
        let size = self.cfg.file_size;
        let e = self.lookup_or(dir, name, |fs| {
            let (e, o) = fs.create(dir, name.as_bytes(), 0o644, libc::O_RDWR as u32)?;
            fs.release(e.nodeid, o.fh, libc::O_RDWR as u32)?;
            let mut e = e;
            e.attr.size = 0;
            Ok(e)
        })?;
        if e.attr.size != size {
            // Lay the file out through the daemon (no --shared-dir).
            let o = self.fs.open(e.nodeid, libc::O_RDWR as u32)?;
            let chunk = (self.fs.max_write() as usize).min(1 << 20);
            let mut b = vec![0u8; chunk];
            let mut off = 0;
            while off < size {
                let n = (size - off).min(chunk as u64) as usize;
                pattern::fill(&mut b[..n], id, off);
                let w = self.fs.write(e.nodeid, o.fh, off, &b[..n])?;
                if w as usize != n {
                    return fatal(format!("short write preparing {name}"));
                }
                off += n as u64;
            }
            self.fs.truncate(e.nodeid, size, Some(o.fh))?;
            self.fs.release(e.nodeid, o.fh, libc::O_RDWR as u32)?;
        }
        let o = self.fs.open(e.nodeid, flags)?;
        Ok((e.nodeid, o.fh))
    }

    fn open_files(&mut self) -> Res<()> {
        let dir = self
            .lookup_or(ROOT_ID, DIR, |fs| fs.mkdir(ROOT_ID, DIR.as_bytes(), 0o755))?
            .nodeid;
        self.read_file = self.data_file(dir, READ_FILE, READ_ID, libc::O_RDONLY as u32)?;
        self.write_file = self.data_file(dir, WRITE_FILE, WRITE_ID, libc::O_RDWR as u32)?;
        self.meta_dir = self
            .lookup_or(dir, META_DIR, |fs| {
                fs.mkdir(dir, META_DIR.as_bytes(), 0o755)
            })?
            .nodeid;
        Ok(())
    }

    /// The report so far.
    pub fn report(&self) -> &RunReport {
        &self.report
    }

    fn next_rand(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Put a request in slot `s`: `args` readable after the header, then `data` (a readable
    /// span of the slot's data buffer), then OutHeader + `reply_len` bytes writable.
    fn submit(
        &mut self,
        s: usize,
        opcode: Opcode,
        nodeid: u64,
        args: &[&[u8]],
        data_len: u32,
        reply_len: u32,
    ) -> Res<u64> {
        let unique = self.fs.next_unique();
        let slot = self.slots[s];
        let args_len: usize = args.iter().map(|a| a.len()).sum();
        let h = InHeader {
            len: (IN_HEADER_LEN + args_len) as u32 + data_len,
            opcode: opcode as u32,
            unique,
            nodeid,
            uid: 0,
            gid: 0,
            pid: 1,
            padding: 0,
        };
        let mut descs: Vec<(u64, u32, u16)> = Vec::with_capacity(args.len() + 4);
        let fe = self.fs.frontend();
        let mem = fe.mem();
        mem.write(slot.inbuf.addr, h.as_slice())?;
        descs.push((slot.inbuf.addr, IN_HEADER_LEN as u32, 0));
        let mut off = slot.inbuf.addr + IN_HEADER_LEN as u64;
        for a in args {
            if off + a.len() as u64 > slot.inbuf.addr + slot.inbuf.len {
                return fatal("request arguments too long");
            }
            mem.write(off, a)?;
            descs.push((off, a.len() as u32, 0));
            off += a.len() as u64;
        }
        if data_len > 0 {
            descs.push((slot.data.addr, data_len, 0));
        }
        let w = vufs_frontend::VIRTQ_DESC_F_WRITE;
        descs.push((slot.out.addr, OUT_HEADER_LEN as u32, w));
        if reply_len > 0 {
            descs.push((slot.out.addr + OUT_HEADER_LEN as u64, reply_len, w));
        }
        let data = ChainData {
            bufs: Vec::new(),
            writable: vec![(slot.out.addr, OUT_HEADER_LEN as u32)],
        };
        // Published without a kick: `flush` kicks once per batch (if the daemon asked).
        let (q, mem) = fe.queue_mut(REQUEST_QUEUE)?;
        let tok = q.push_chain(mem, &descs, data)?;
        self.head_slot[tok.head as usize] = s;
        Ok(unique)
    }

    /// Notify the daemon of everything published since the last flush.
    fn flush(&mut self) -> Res<()> {
        let (q, mem) = self.fs.frontend().queue_mut(REQUEST_QUEUE)?;
        q.notify(mem)?;
        Ok(())
    }

    /// Wait for one completion: (slot, in-flight record, Ok(reply body length) or the error).
    /// Blocks up to the reply timeout when `block`, else returns `None` if nothing is there.
    fn complete(&mut self, block: bool) -> Res<Option<Done>> {
        let t = if block {
            self.cfg.reply_timeout
        } else {
            Duration::ZERO
        };
        let c = match self.fs.frontend().wait_any(REQUEST_QUEUE, t) {
            Ok(c) => c,
            Err(FeError::Timeout { .. }) if !block => return Ok(None),
            Err(e) => return fatal(format!("waiting for a reply: {e}")),
        };
        let now = Instant::now();
        let s = *self
            .head_slot
            .get(c.token.head as usize)
            .ok_or_else(|| Fatal("used id out of range".into()))?;
        let Some(inf) = self.inflight.get_mut(s).and_then(Option::take) else {
            return fatal(format!("completion for idle slot (head {})", c.token.head));
        };
        self.free.push(s);
        let r = (|| {
            let h: OutHeader = parse_obj(&c.reply).map_err(|e| e.to_string())?;
            if h.len != c.used_len {
                return Err(format!(
                    "OutHeader.len {} != used len {}",
                    h.len, c.used_len
                ));
            }
            if h.unique != inf.unique {
                return Err(format!("unique {} != {}", h.unique, inf.unique));
            }
            if h.error != 0 {
                return Err(format!(
                    "errno {} ({})",
                    -h.error,
                    std::io::Error::from_raw_os_error(-h.error)
                ));
            }
            Ok(c.used_len.saturating_sub(OUT_HEADER_LEN as u32))
        })();
        Ok(Some((s, inf, now, r)))
    }

    /// The reply body of slot `s` (valid until the slot is reused).
    fn body(&mut self, s: usize, len: u32) -> &[u8] {
        let slot = self.slots[s];
        let mem = self.fs.frontend().mem();
        let addr = slot.out.addr + OUT_HEADER_LEN as u64;
        assert!(mem.contains(addr, len as usize) && len as u64 <= slot.out.len);
        // SAFETY: the span lies inside the mapped guest memory (checked above) and the daemon
        // has returned the chain, so nobody writes it while we read.
        unsafe { std::slice::from_raw_parts(mem.host_addr(addr) as *const u8, len as usize) }
    }

    fn data_mut(&mut self, s: usize, len: u32) -> &mut [u8] {
        let slot = self.slots[s];
        let mem = self.fs.frontend().mem();
        assert!(mem.contains(slot.data.addr, len as usize) && len as u64 <= slot.data.len);
        // SAFETY: inside guest memory; the slot is free, so the daemon does not read it now.
        unsafe {
            std::slice::from_raw_parts_mut(mem.host_addr(slot.data.addr) as *mut u8, len as usize)
        }
    }

    fn sample_cpu(&self) -> (Option<f64>, f64) {
        (
            self.cfg.daemon_pid.and_then(procfs::cpu_seconds),
            procfs::self_cpu_seconds(),
        )
    }

    fn tick(&self, m: &mut Measure, now: Instant) {
        if m.warm_at.is_none() && now >= m.t0 + self.cfg.warmup {
            (m.cpu_d0, m.cpu_g0) = self.sample_cpu();
            m.warm_at = Some(now);
        }
        if m.warm_at.is_some()
            && m.end_at.is_none()
            && now >= m.t0 + self.cfg.warmup + self.cfg.duration
        {
            (m.cpu_d1, m.cpu_g1) = self.sample_cpu();
            m.end_at = Some(now);
        }
    }

    fn submit_data(&mut self, w: Workload, s: usize, seq_off: &mut u64) -> Res<()> {
        let (bs, random) = match w {
            Workload::SeqRead | Workload::SeqWrite => (self.cfg.seq_bs, false),
            _ => (self.cfg.rand_bs, true),
        };
        let off = if random {
            (self.next_rand() % (self.cfg.file_size / bs as u64)) * bs as u64
        } else {
            let o = *seq_off;
            *seq_off = (o + bs as u64) % self.cfg.file_size;
            o
        };
        let unique = if matches!(w, Workload::SeqRead | Workload::RandRead) {
            let (nodeid, fh) = self.read_file;
            let r = ReadIn {
                fh,
                offset: off,
                size: bs,
                ..Default::default()
            };
            self.submit(s, Opcode::Read, nodeid, &[r.as_slice()], 0, bs)?
        } else {
            let (nodeid, fh) = self.write_file;
            pattern::retag(self.data_mut(s, bs), WRITE_ID, off);
            let wi = WriteIn {
                fh,
                offset: off,
                size: bs,
                ..Default::default()
            };
            self.submit(
                s,
                Opcode::Write,
                nodeid,
                &[wi.as_slice()],
                bs,
                size_of::<WriteOut>() as u32,
            )?
        };
        self.inflight[s] = Some(InFlight {
            unique,
            submitted: Instant::now(),
            offset: off,
            len: bs,
            step: MetaStep::Create,
        });
        Ok(())
    }

    fn meta_name(s: usize, iter: u64) -> Vec<u8> {
        cstr(format!("m{s}-{iter}").as_bytes())
    }

    fn submit_meta(&mut self, s: usize, step: MetaStep, st: &MetaState) -> Res<()> {
        let dir = self.meta_dir;
        let name = Self::meta_name(s, st.iter);
        let entry = size_of::<EntryOut>() as u32;
        let unique = match step {
            MetaStep::Create => {
                let c = CreateIn {
                    flags: libc::O_RDWR as u32,
                    mode: 0o644,
                    umask: 0,
                    fuse_flags: 0,
                };
                let reply = entry + size_of::<OpenOut>() as u32;
                self.submit(s, Opcode::Create, dir, &[c.as_slice(), &name], 0, reply)?
            }
            MetaStep::Getattr => {
                let g = GetattrIn::default();
                let reply = size_of::<vufs_frontend::fuse::AttrOut>() as u32;
                self.submit(s, Opcode::Getattr, st.nodeid, &[g.as_slice()], 0, reply)?
            }
            MetaStep::Lookup => self.submit(s, Opcode::Lookup, dir, &[&name], 0, entry)?,
            MetaStep::Release => {
                let r = ReleaseIn {
                    fh: st.fh,
                    flags: libc::O_RDWR as u32,
                    ..Default::default()
                };
                self.submit(s, Opcode::Release, st.nodeid, &[r.as_slice()], 0, 0)?
            }
            MetaStep::Unlink => self.submit(s, Opcode::Unlink, dir, &[&name], 0, 0)?,
        };
        self.inflight[s] = Some(InFlight {
            unique,
            submitted: Instant::now(),
            offset: 0,
            len: 0,
            step,
        });
        Ok(())
    }

    /// Run one workload.
    pub fn run(&mut self, w: Workload) -> Res<WorkloadResult> {
        let mut m = Measure::new(self.cfg.interval);
        if self.cfg.warmup.is_zero() {
            let t0 = m.t0;
            self.tick(&mut m, t0);
        }
        match w {
            Workload::Meta => self.run_meta(&mut m)?,
            _ => self.run_data(w, &mut m)?,
        }
        let r = self.finish(w, m);
        self.report.results.push(r.clone());
        Ok(r)
    }

    fn run_data(&mut self, w: Workload, m: &mut Measure) -> Res<()> {
        let mut seq_off = 0u64;
        let is_read = matches!(w, Workload::SeqRead | Workload::RandRead);
        loop {
            let now = Instant::now();
            self.tick(m, now);
            if m.end_at.is_none() {
                while let Some(s) = self.free.pop() {
                    if let Err(e) = self.submit_data(w, s, &mut seq_off) {
                        self.free.push(s);
                        return Err(e);
                    }
                }
                self.flush()?;
            } else if self.free.len() == self.slots.len() {
                return Ok(());
            }
            // One completion (waiting), then whatever else is already there.
            let mut block = true;
            while let Some((s, inf, now, r)) = self.complete(block)? {
                block = false;
                self.data_done(w, is_read, m, s, inf, now, r)?;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn data_done(
        &mut self,
        w: Workload,
        is_read: bool,
        m: &mut Measure,
        s: usize,
        inf: InFlight,
        now: Instant,
        r: Result<u32, String>,
    ) -> Res<()> {
        {
            match r {
                Err(e) => m.error(false, || format!("{} at {}: {e}", w.name(), inf.offset)),
                Ok(n) if is_read => {
                    if n != inf.len {
                        m.error(false, || {
                            format!(
                                "{} at {}: {n} bytes, asked {}",
                                w.name(),
                                inf.offset,
                                inf.len
                            )
                        });
                    } else {
                        self.reads += 1;
                        let every = self.cfg.verify_every as u64;
                        let bad = if every == 0 {
                            None
                        } else if self.reads.is_multiple_of(every) {
                            pattern::verify(self.body(s, n), READ_ID, inf.offset)
                        } else {
                            pattern::verify_tags(self.body(s, n), READ_ID, inf.offset)
                        };
                        if let Some(i) = bad {
                            m.error(true, || {
                                format!(
                                    "verification error: {}/{READ_FILE} byte at offset {} differs from the pattern",
                                    DIR,
                                    inf.offset + i as u64
                                )
                            });
                        } else {
                            m.done(inf.submitted, now, n as u64);
                        }
                    }
                }
                Ok(_) => {
                    let wo: WriteOut = parse_obj(self.body(s, size_of::<WriteOut>() as u32))?;
                    if wo.size != inf.len {
                        m.error(false, || {
                            format!(
                                "{} at {}: wrote {}, asked {}",
                                w.name(),
                                inf.offset,
                                wo.size,
                                inf.len
                            )
                        });
                    } else {
                        m.done(inf.submitted, now, inf.len as u64);
                    }
                }
            }
        }
        Ok(())
    }

    fn run_meta(&mut self, m: &mut Measure) -> Res<()> {
        let n = self.slots.len();
        let mut st = vec![MetaState::default(); n];
        let mut forgets: Vec<(u64, u64)> = Vec::new();
        let mut iter = 0u64;
        // Fresh names per run (a previous run on the same share may have left some).
        let base = (self.next_rand() >> 20) << 20;
        while let Some(s) = self.free.pop() {
            st[s].iter = base + iter;
            iter += 1;
            self.submit_meta(s, MetaStep::Create, &st[s])?;
        }
        self.flush()?;
        while self.free.len() < n {
            let mut block = true;
            while let Some((s, inf, now, r)) = self.complete(block)? {
                block = false;
                self.meta_done(m, &mut st, &mut forgets, &mut iter, base, s, inf, now, r)?;
            }
            self.flush()?;
        }
        if !forgets.is_empty() {
            self.fs.batch_forget(&forgets)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn meta_done(
        &mut self,
        m: &mut Measure,
        st: &mut [MetaState],
        forgets: &mut Vec<(u64, u64)>,
        iter: &mut u64,
        base: u64,
        s: usize,
        inf: InFlight,
        now: Instant,
        r: Result<u32, String>,
    ) -> Res<()> {
        {
            self.tick(m, Instant::now());
            let next = match r {
                Err(e) => {
                    m.error(false, || {
                        format!("meta {:?} m{s}-{}: {e}", inf.step, st[s].iter)
                    });
                    // Start over with a new name (the old one may be left behind).
                    None
                }
                Ok(_) => {
                    m.done(inf.submitted, now, 0);
                    match inf.step {
                        MetaStep::Create => {
                            let body =
                                self.body(s, (size_of::<EntryOut>() + size_of::<OpenOut>()) as u32);
                            let e: EntryOut = parse_obj(body)?;
                            let o: OpenOut = parse_obj(&body[size_of::<EntryOut>()..])?;
                            st[s].nodeid = e.nodeid;
                            st[s].fh = o.fh;
                            Some(MetaStep::Getattr)
                        }
                        MetaStep::Getattr => Some(MetaStep::Lookup),
                        MetaStep::Lookup => Some(MetaStep::Release),
                        MetaStep::Release => Some(MetaStep::Unlink),
                        MetaStep::Unlink => {
                            forgets.push((st[s].nodeid, 2));
                            None
                        }
                    }
                }
            };
            if forgets.len() >= 64 {
                self.flush()?;
                self.fs.batch_forget(forgets)?;
                forgets.clear();
            }
            match next {
                Some(step) => self.submit_meta(s, step, &st[s])?,
                None if m.end_at.is_none() => {
                    st[s] = MetaState {
                        iter: base + *iter,
                        ..Default::default()
                    };
                    *iter += 1;
                    self.submit_meta(s, MetaStep::Create, &st[s])?;
                }
                None => {}
            }
            // `complete` put the slot on the free list; take it back if we resubmitted.
            if self.inflight[s].is_some() {
                if let Some(p) = self.free.iter().position(|&x| x == s) {
                    self.free.swap_remove(p);
                }
            }
        }
        Ok(())
    }

    fn finish(&self, w: Workload, mut m: Measure) -> WorkloadResult {
        let (warm, end) = match (m.warm_at, m.end_at) {
            (Some(a), Some(b)) => (a, b),
            (Some(a), None) => (a, Instant::now()),
            _ => (m.t0, Instant::now()),
        };
        if m.end_at.is_none() {
            (m.cpu_d1, m.cpu_g1) = self.sample_cpu();
        }
        let secs = end.duration_since(warm).as_secs_f64().max(1e-9);
        m.lat.sort_unstable();
        let us = |ns: u64| ns as f64 / 1000.0;
        let lat = Latency {
            p50: us(quantile_sorted(&m.lat, 0.50)),
            p99: us(quantile_sorted(&m.lat, 0.99)),
            max: us(m.lat.last().copied().unwrap_or(0)),
            mean: if m.lat.is_empty() {
                0.0
            } else {
                us(m.lat.iter().sum::<u64>() / m.lat.len() as u64)
            },
        };
        let daemon = match (m.cpu_d0, m.cpu_d1, self.cfg.daemon_pid) {
            (Some(a), Some(b), Some(pid)) => {
                let cpu = (b - a).max(0.0);
                let (rss, hwm) = procfs::rss_kib(pid).unwrap_or((0, 0));
                Some(DaemonUsage {
                    cpu_s: cpu,
                    cpu_share: cpu / secs,
                    cpu_s_per_gib: (w.is_data() && m.bytes > 0)
                        .then(|| cpu / (m.bytes as f64 / (1u64 << 30) as f64)),
                    cpu_us_per_op: if m.ops > 0 {
                        cpu * 1e6 / m.ops as f64
                    } else {
                        0.0
                    },
                    rss_kib: rss,
                    hwm_kib: hwm,
                })
            }
            _ => None,
        };
        let gcpu = (m.cpu_g1 - m.cpu_g0).max(0.0);
        let gshare = gcpu / secs;
        let iv_s = m.interval.as_secs_f64();
        WorkloadResult {
            workload: w.name().into(),
            block_size: match w {
                Workload::SeqRead | Workload::SeqWrite => self.cfg.seq_bs,
                Workload::RandRead | Workload::RandWrite => self.cfg.rand_bs,
                Workload::Meta => 0,
            },
            queue_depth: self.cfg.queue_depth,
            seconds: secs,
            ops: m.ops,
            bytes: m.bytes,
            mib_s: m.bytes as f64 / secs / (1 << 20) as f64,
            iops: m.ops as f64 / secs,
            lat_us: lat,
            errors: m.errors,
            verify_errors: m.verify_errors,
            first_error: m.first_error,
            daemon,
            generator: GenUsage {
                cpu_s: gcpu,
                cpu_share: gshare,
                headroom: if gshare > 0.0 {
                    1.0 / gshare
                } else {
                    f64::INFINITY.min(1e9)
                },
            },
            interval_ms: m.interval.as_millis() as u64,
            intervals_mib_s: m
                .iv_bytes
                .iter()
                .map(|&b| b as f64 / iv_s / (1 << 20) as f64)
                .collect(),
            intervals_ops: m.iv_ops,
        }
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
