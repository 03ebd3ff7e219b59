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
    cstr, parse_obj, CreateIn, EntryOut, GetattrIn, InHeader, MknodIn, Opcode, OpenOut, OutHeader,
    ReadIn, ReleaseIn, WriteIn, WriteOut, IN_HEADER_LEN, OUT_HEADER_LEN,
};
use vufs_frontend::virtqueue::ChainData;
use vufs_frontend::{
    ConnectOptions, Error as FeError, FuseSession, GuestBuf, REQUEST_QUEUE, ROOT_ID,
};

use crate::pattern;
use crate::procfs;
use crate::stats::quantile_sorted;

mod churn;
mod data;
mod files;
mod measure;
mod meta;
mod types;

pub use files::{calibrate, check_host_file, prepare_host, prepare_host_file};
use measure::Measure;
use meta::MetaStep;
pub use types::{
    Config, DaemonUsage, Fatal, GenUsage, InitInfo, Latency, RunReport, Workload, WorkloadResult,
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

#[derive(Debug, Clone, Copy)]
struct InFlight {
    unique: u64,
    submitted: Instant,
    offset: u64,
    len: u32,
    step: MetaStep,
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
        if let Some(pid) = self.cfg.daemon_pid.filter(|_| now >= m.next_sample) {
            m.anon_peak = m.anon_peak.max(procfs::anon_kib(pid).unwrap_or(0));
            m.next_sample = now + m.interval;
        }
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

    /// Run one workload.
    pub fn run(&mut self, w: Workload) -> Res<WorkloadResult> {
        let mut m = Measure::new(self.cfg.interval);
        if self.cfg.warmup.is_zero() {
            let t0 = m.t0;
            self.tick(&mut m, t0);
        }
        match w {
            Workload::Meta => self.run_meta(&mut m)?,
            Workload::Churn => self.run_churn(&mut m)?,
            _ => self.run_data(w, &mut m)?,
        }
        let r = self.finish(w, m);
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
