//! Parsing what the guest's /init wrote to the results port (ttyS1).

use std::time::Duration;

const PREFIX: &[u8] = b"===GUEST-VM-";

/// The result of one execution of the job (one guest boot).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobRun {
    /// Guest uptime when the boot reached /init.
    pub boot_uptime: Option<Duration>,
    /// Guest uptime when the share was mounted (None if mounting was off).
    pub mount_uptime: Option<Duration>,
    /// The guest's mount error, if mounting failed (the job did not run).
    pub mount_error: Option<String>,
    /// Job exit status (None if the job did not finish).
    pub status: Option<i32>,
    /// Job stdout.
    pub stdout: String,
    /// Job stderr.
    pub stderr: String,
    /// Job run time as measured by the guest clock.
    pub job_time: Option<Duration>,
    /// `guest-signal` names the job emitted, in order.
    pub signals: Vec<String>,
    /// The share was unmounted after the job.
    pub unmounted: bool,
}

fn secs(s: &str) -> Option<Duration> {
    s.parse::<f64>().ok().map(Duration::from_secs_f64)
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn field<'a>(words: &'a str, key: &str) -> Option<&'a str> {
    words
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// Parses the whole results log into one [`JobRun`] per boot.
pub(crate) fn parse(data: &[u8]) -> Vec<JobRun> {
    let mut runs: Vec<JobRun> = Vec::new();
    let mut pos = 0;
    while let Some(start) = find(data, PREFIX, pos) {
        let body = start + PREFIX.len();
        let Some(end) = find(data, b"===", body) else {
            break;
        };
        let marker = String::from_utf8_lossy(&data[body..end]).into_owned();
        let mut next = end + 3;
        while next < data.len() && (data[next] == b'\r' || data[next] == b'\n') {
            next += 1;
            if data[next - 1] == b'\n' {
                break;
            }
        }
        let (kind, rest) = marker.split_once(' ').unwrap_or((marker.as_str(), ""));
        if kind == "BOOT" || runs.is_empty() {
            runs.push(JobRun::default());
        }
        let run = runs.last_mut().unwrap();
        match kind {
            "BOOT" => run.boot_uptime = field(rest, "uptime").and_then(secs),
            "MOUNTED" => run.mount_uptime = field(rest, "uptime").and_then(secs),
            "MOUNT-FAILED" => run.mount_error = Some(rest.trim().to_string()),
            "SIGNAL" => run.signals.push(rest.trim().to_string()),
            "UMOUNTED" => run.unmounted = true,
            "JOB-START" => {
                run.job_time = field(rest, "uptime").and_then(secs);
            }
            "EXIT" => {
                run.status = field(rest, "status").and_then(|s| s.parse().ok());
                if let (Some(t), Some(s)) = (field(rest, "uptime").and_then(secs), run.job_time) {
                    run.job_time = Some(t.saturating_sub(s));
                } else {
                    run.job_time = None;
                }
            }
            "STDOUT" | "STDERR" => {
                let end_marker = format!("===GUEST-VM-{kind}-END===");
                let len: Option<usize> = field(rest, "len").and_then(|l| l.parse().ok());
                let mut text = None;
                if let Some(n) = len {
                    let after = next + n;
                    let tail = format!("\n{end_marker}");
                    if data.len() >= after + tail.len()
                        && &data[after..after + tail.len()] == tail.as_bytes()
                    {
                        text = Some(String::from_utf8_lossy(&data[next..after]).into_owned());
                        next = after + tail.len();
                    }
                }
                if text.is_none() {
                    // Not raw (\r\n translation) or truncated: fall back to the end marker.
                    let stop = find(data, end_marker.as_bytes(), next).unwrap_or(data.len());
                    let mut s = String::from_utf8_lossy(&data[next..stop]).replace("\r\n", "\n");
                    if s.ends_with('\n') {
                        s.pop();
                    }
                    text = Some(s);
                    next = (stop + end_marker.len()).min(data.len());
                }
                let text = text.unwrap_or_default();
                if kind == "STDOUT" {
                    run.stdout = text;
                } else {
                    run.stderr = text;
                }
            }
            _ => {}
        }
        pos = next.max(end + 3);
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_framed_output() {
        let log = b"===GUEST-VM-BOOT uptime=1.50===\n===GUEST-VM-MOUNTED uptime=2.25===\n\
===GUEST-VM-JOB-START uptime=2.50===\n===GUEST-VM-SIGNAL ready===\n\
===GUEST-VM-STDOUT len=15===\nhi\n===GUEST-VM-x\n===GUEST-VM-STDOUT-END===\n\
===GUEST-VM-STDERR len=0===\n\n===GUEST-VM-STDERR-END===\n\
===GUEST-VM-EXIT status=3 uptime=4.00===\n===GUEST-VM-UMOUNTED uptime=4.1===\n";
        let runs = parse(log);
        assert_eq!(runs.len(), 1);
        let r = &runs[0];
        assert_eq!(r.stdout, "hi\n===GUEST-VM-x");
        assert_eq!(r.stderr, "");
        assert_eq!(r.status, Some(3));
        assert_eq!(r.mount_uptime, Some(Duration::from_millis(2250)));
        assert_eq!(r.job_time, Some(Duration::from_millis(1500)));
        assert_eq!(r.signals, ["ready"]);
        assert!(r.unmounted);
    }

    #[test]
    fn tolerates_crlf_and_reboots() {
        let log = b"===GUEST-VM-BOOT uptime=1===\r\n===GUEST-VM-MOUNT-FAILED mount: No such device===\r\n\
===GUEST-VM-BOOT uptime=1===\r\n===GUEST-VM-STDOUT len=6===\r\na\r\nb\r\n\r\n===GUEST-VM-STDOUT-END===\r\n\
===GUEST-VM-EXIT status=0 uptime=2===\r\n";
        let runs = parse(log);
        assert_eq!(runs.len(), 2);
        assert_eq!(
            runs[0].mount_error.as_deref(),
            Some("mount: No such device")
        );
        assert_eq!(runs[1].stdout, "a\nb\n");
        assert_eq!(runs[1].status, Some(0));
    }

    #[test]
    fn truncated_log() {
        let runs = parse(b"===GUEST-VM-BOOT uptime=1===\n===GUEST-VM-STDOUT len=100===\nabc");
        assert_eq!(runs[0].stdout, "abc");
        assert_eq!(runs[0].status, None);
    }
}
