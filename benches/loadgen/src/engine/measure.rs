//! What one workload measured: the clock every lane shares, each lane's completions per
//! interval and latencies, the measured window's CPU samples, and the result.

use super::*;

/// The workload's timeline, the same for every lane: started at `t0`, counted from `warm`
/// (after the warm-up) to `end`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    pub(super) t0: Instant,
    pub(super) warm: Instant,
    pub(super) end: Instant,
}

impl Clock {
    pub(super) fn new(warmup: Duration, duration: Duration) -> Clock {
        let t0 = Instant::now();
        Clock {
            t0,
            warm: t0 + warmup,
            end: t0 + warmup + duration,
        }
    }

    /// Whether the measured window is over (no new requests then).
    pub(super) fn ended(&self, now: Instant) -> bool {
        now >= self.end
    }
}

/// CPU seconds so far of the daemon, the generator and the whole machine.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct CpuSample {
    pub(super) daemon: Option<f64>,
    pub(super) generator: f64,
    pub(super) machine: Option<procfs::MachineCpu>,
}

/// The measured window as the watching thread saw it: when it began and ended, the CPU
/// samples at both ends, and the daemon's peak RssAnon.
#[derive(Debug, Clone, Default)]
pub(super) struct Window {
    pub(super) warm_at: Option<Instant>,
    pub(super) end_at: Option<Instant>,
    pub(super) cpu0: CpuSample,
    pub(super) cpu1: Option<CpuSample>,
    pub(super) anon_peak: u64,
}

/// One lane's counts (or the sum of all lanes').
pub(super) struct Measure {
    pub(super) clock: Clock,
    pub(super) queue: usize,
    pub(super) ops: u64,
    pub(super) bytes: u64,
    pub(super) lat: Vec<u64>,
    pub(super) errors: u64,
    pub(super) verify_errors: u64,
    pub(super) first_error: Option<String>,
    pub(super) iv_bytes: Vec<u64>,
    pub(super) iv_ops: Vec<u64>,
    pub(super) interval: Duration,
}

impl Measure {
    pub(super) fn new(clock: Clock, queue: usize, interval: Duration) -> Self {
        Measure {
            clock,
            queue,
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

    pub(super) fn error(&mut self, verify: bool, msg: impl FnOnce() -> String) {
        if verify {
            self.verify_errors += 1;
        } else {
            self.errors += 1;
        }
        if self.first_error.is_none() {
            self.first_error = Some(msg());
        }
    }

    pub(super) fn done(&mut self, submitted: Instant, now: Instant, bytes: u64) {
        let i = (now.duration_since(self.clock.t0).as_nanos() / self.interval.as_nanos().max(1))
            as usize;
        if self.iv_ops.len() <= i {
            self.iv_ops.resize(i + 1, 0);
            self.iv_bytes.resize(i + 1, 0);
        }
        self.iv_ops[i] += 1;
        self.iv_bytes[i] += bytes;
        if submitted >= self.clock.warm && !self.clock.ended(now) {
            self.ops += 1;
            self.bytes += bytes;
            self.lat
                .push(now.duration_since(submitted).as_nanos() as u64);
        }
    }

    /// Add another lane's counts to these.
    pub(super) fn absorb(&mut self, o: Measure) {
        self.ops += o.ops;
        self.bytes += o.bytes;
        self.lat.extend_from_slice(&o.lat);
        self.errors += o.errors;
        self.verify_errors += o.verify_errors;
        if self.first_error.is_none() {
            self.first_error = o.first_error.map(|e| format!("queue {}: {e}", o.queue));
        }
        let n = self.iv_ops.len().max(o.iv_ops.len());
        self.iv_ops.resize(n, 0);
        self.iv_bytes.resize(n, 0);
        for (i, (a, b)) in o.iv_ops.iter().zip(&o.iv_bytes).enumerate() {
            self.iv_ops[i] += a;
            self.iv_bytes[i] += b;
        }
    }
}

impl Generator {
    pub(super) fn finish(
        &self,
        w: Workload,
        mut m: Measure,
        win: Window,
        queues: Vec<QueueShare>,
    ) -> WorkloadResult {
        let (warm, end) = match (win.warm_at, win.end_at) {
            (Some(a), Some(b)) => (a, b),
            (Some(a), None) => (a, Instant::now()),
            _ => (m.clock.t0, Instant::now()),
        };
        let cpu1 = win.cpu1.unwrap_or_else(|| self.sample_cpu());
        let cpu0 = win.cpu0;
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
        let daemon = match (cpu0.daemon, cpu1.daemon, self.cfg.daemon_pid) {
            (Some(a), Some(b), Some(pid)) => {
                let cpu = (b - a).max(0.0);
                let (rss, hwm) = procfs::rss_kib(pid).unwrap_or((0, 0));
                let anon = procfs::anon_kib(pid).unwrap_or(0).max(win.anon_peak);
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
                    anon_peak_kib: anon,
                })
            }
            _ => None,
        };
        let gcpu = (cpu1.generator - cpu0.generator).max(0.0);
        let gshare = gcpu / secs;
        let machine = match (cpu0.machine, cpu1.machine) {
            (Some(a), Some(b)) => {
                let busy = (b.busy - a.busy).max(0.0) / secs;
                let ours = gshare + daemon.as_ref().map_or(0.0, |d| d.cpu_share);
                Some(MachineUsage {
                    busy_share: busy,
                    foreign_share: (busy - ours).max(0.0),
                    steal_share: (b.steal - a.steal).max(0.0) / secs,
                })
            }
            _ => None,
        };
        let iv_s = m.interval.as_secs_f64();
        WorkloadResult {
            workload: w.name().into(),
            block_size: match w {
                Workload::SeqRead | Workload::SeqWrite => self.cfg.seq_bs,
                Workload::RandRead | Workload::RandWrite => self.cfg.rand_bs,
                Workload::Meta | Workload::Churn => 0,
            },
            queue_depth: self.cfg.queue_depth,
            queues,
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
            machine,
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
}
