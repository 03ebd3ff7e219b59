//! CPU time and memory of a process from `/proc`.

use std::fs;

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub fn clk_tck() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of process `pid` (all its threads) in seconds, from `/proc/<pid>/stat`.
/// `None` if the process is gone.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    parse_stat_cpu(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// utime + stime of this process in seconds.
pub fn self_cpu_seconds() -> f64 {
    fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| parse_stat_cpu(&s))
        .unwrap_or(0.0)
}

/// utime + stime in seconds from the text of a `/proc/<pid>/stat` file.
pub fn parse_stat_cpu(stat: &str) -> Option<f64> {
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / clk_tck())
}

/// Machine-wide CPU seconds so far, from the `cpu` line of `/proc/stat`: `busy` (user, nice,
/// system, irq, softirq, all CPUs together) and `steal` (time the hypervisor gave to others).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MachineCpu {
    /// CPU seconds spent running anything on this machine.
    pub busy: f64,
    /// CPU seconds the hypervisor ran something else while this machine wanted to run.
    pub steal: f64,
}

/// The machine's CPU seconds so far (`None` without `/proc/stat`).
pub fn machine_cpu() -> Option<MachineCpu> {
    parse_proc_stat(&fs::read_to_string("/proc/stat").ok()?)
}

/// [`MachineCpu`] from the text of `/proc/stat`.
pub fn parse_proc_stat(stat: &str) -> Option<MachineCpu> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is inside user already).
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    let busy = at(0) + at(1) + at(2) + at(5) + at(6);
    Some(MachineCpu {
        busy: busy as f64 / clk_tck(),
        steal: at(7) as f64 / clk_tck(),
    })
}

/// VmRSS and VmHWM of process `pid` in KiB, from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_rss(&s)
}

/// (VmRSS, VmHWM) in KiB from the text of a `/proc/<pid>/status` file.
pub fn parse_status_rss(status: &str) -> Option<(u64, u64)> {
    Some((
        parse_status_field(status, "VmRSS:")?,
        parse_status_field(status, "VmHWM:")?,
    ))
}

/// RssAnon of process `pid` in KiB (its own pages: no file-backed or shared memory).
pub fn anon_kib(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_field(&s, "RssAnon:")
}

/// The KiB value of field `name` (with its colon) in the text of a `/proc/<pid>/status` file.
pub fn parse_status_field(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_busy_and_steal() {
        let s = "cpu  100 20 30 900 7 1 2 40 5 0\ncpu0 50 10 15 450 3 0 1 20 0 0\n";
        let m = parse_proc_stat(s).unwrap();
        assert!((m.busy - 153.0 / clk_tck()).abs() < 1e-9);
        assert!((m.steal - 40.0 / clk_tck()).abs() < 1e-9);
        assert_eq!(parse_proc_stat("intr 1 2 3\n"), None);
    }

    #[test]
    fn stat_with_odd_comm() {
        let s = "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 300 200 0 0 20 0 1 0";
        let v = parse_stat_cpu(s).unwrap();
        assert!((v - 500.0 / clk_tck()).abs() < 1e-9);
    }

    #[test]
    fn status_rss() {
        let s = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(parse_status_rss(s), Some((1024, 2048)));
        assert_eq!(
            parse_status_field("RssAnon:\t   384 kB\n", "RssAnon:"),
            Some(384)
        );
        assert!(anon_kib(std::process::id()).unwrap() > 0);
        assert!(cpu_seconds(std::process::id()).is_some());
        assert!(rss_kib(std::process::id()).unwrap().0 > 0);
    }
}
