//! The generator's settings, workloads and the report it writes.

use super::*;

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
    /// Rounds of [`Config::churn_files`] new files all alive at once (MKNOD), then forgotten
    /// (BATCH_FORGET) and unlinked, so that the host's reuse of inode numbers cannot hide
    /// what a daemon keeps per file it has seen.
    Churn,
}

impl Workload {
    /// Every workload, in the order the generator runs them by default.
    pub const ALL: [Workload; 6] = [
        Workload::SeqRead,
        Workload::SeqWrite,
        Workload::RandRead,
        Workload::RandWrite,
        Workload::Meta,
        Workload::Churn,
    ];

    /// Stable name (`seq-read`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Workload::SeqRead => "seq-read",
            Workload::SeqWrite => "seq-write",
            Workload::RandRead => "rand-read",
            Workload::RandWrite => "rand-write",
            Workload::Meta => "meta",
            Workload::Churn => "churn",
        }
    }

    /// Parse a name.
    pub fn parse(s: &str) -> Option<Workload> {
        Self::ALL.into_iter().find(|w| w.name() == s)
    }

    /// Whether this is a data (byte-moving) workload.
    pub fn is_data(self) -> bool {
        !matches!(self, Workload::Meta | Workload::Churn)
    }
}

/// Most request queues the generator drives (the daemon's documented maximum).
pub const MAX_QUEUES: usize = 16;

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
    /// Requests in flight per request queue.
    pub queue_depth: usize,
    /// Request queues (virtqueues 1..=N besides hiprio), each with its own submitter thread
    /// and `queue_depth` requests in flight (`churn` uses the first only). The daemon must
    /// serve that many (ours: `--max-request-queues`; upstream serves one).
    pub queues: usize,
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
    /// Files alive at once in each round of the `churn` workload.
    pub churn_files: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            socket: PathBuf::new(),
            shared_dir: None,
            daemon_pid: None,
            queue_depth: 8,
            queues: 1,
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
            churn_files: 10_000,
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
    /// Largest RssAnon of the workload, sampled once per interval, KiB: the daemon's own
    /// pages (VmHWM also counts the guest memory it shares and its binary's text, which
    /// move by ±100 KiB from run to run alike for every daemon).
    pub anon_peak_kib: u64,
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

/// The whole machine's CPU over the measured window, in cores (CPU seconds per wall second).
/// On a shared machine `foreign_share` and `steal_share` say whether anything else competed
/// with the daemon and the generator for the CPUs while this workload was measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MachineUsage {
    /// Everything that ran (user, system, interrupts).
    pub busy_share: f64,
    /// What ran besides the daemon and the generator (other processes, kernel threads).
    pub foreign_share: f64,
    /// What the hypervisor gave to other machines while this one wanted to run.
    pub steal_share: f64,
}

/// What one request queue carried in the measured window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct QueueShare {
    /// Virtqueue index (1 = the first request queue).
    pub queue: usize,
    /// Requests completed.
    pub ops: u64,
    /// Bytes moved.
    pub bytes: u64,
}

/// One workload's result.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkloadResult {
    /// Workload name.
    pub workload: String,
    /// Bytes per request (0 for metadata).
    pub block_size: u32,
    /// Requests in flight per request queue.
    pub queue_depth: usize,
    /// Per request queue, in queue order.
    #[serde(default)]
    pub queues: Vec<QueueShare>,
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
    /// The machine's CPU besides (without `/proc/stat`: none).
    #[serde(default)]
    pub machine: Option<MachineUsage>,
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
    /// Requests in flight per request queue.
    pub queue_depth: usize,
    /// Request queues driven.
    #[serde(default)]
    pub queues: usize,
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
