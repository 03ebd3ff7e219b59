//! Helpers for fio jobs run in the guest.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::shell_quote;

/// A job script running `fio --output-format=json ARGS` in the current
/// directory (the mount point). The JSON report is the job's whole stdout;
/// fio's messages go to stderr; the script exits with fio's status.
pub fn script<S: AsRef<str>>(args: &[S]) -> String {
    let args: Vec<String> = args.iter().map(|a| shell_quote(a.as_ref())).collect();
    format!(
        "fio --output-format=json --output=/tmp/fio.json {}\nst=$?\ncat /tmp/fio.json\nexit $st\n",
        args.join(" ")
    )
}

/// Parses fio's JSON report (anything before the first `{` is ignored).
pub fn parse_json(stdout: &str) -> Result<Value> {
    let start = stdout
        .find('{')
        .ok_or_else(|| Error::Setup(format!("no fio JSON in output: {stdout:?}")))?;
    serde_json::from_str(&stdout[start..])
        .map_err(|e| Error::Setup(format!("bad fio JSON ({e}): {stdout}")))
}

/// Totals over all jobs of a fio report.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    /// Read bandwidth, bytes/s.
    pub read_bw: f64,
    /// Write bandwidth, bytes/s.
    pub write_bw: f64,
    /// Read IOPS.
    pub read_iops: f64,
    /// Write IOPS.
    pub write_iops: f64,
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Sum of job error codes (0 = fine).
    pub errors: i64,
}

/// Sums bandwidth, IOPS and bytes over the `jobs` of a fio JSON report.
pub fn summary(report: &Value) -> Summary {
    let mut s = Summary::default();
    let f = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    let u = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    for j in report
        .get("jobs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let r = &j["read"];
        let w = &j["write"];
        s.read_bw += f(r, "bw_bytes");
        s.write_bw += f(w, "bw_bytes");
        s.read_iops += f(r, "iops");
        s.write_iops += f(w, "iops");
        s.read_bytes += u(r, "io_bytes");
        s.write_bytes += u(w, "io_bytes");
        s.errors += j.get("error").and_then(Value::as_i64).unwrap_or(0);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_quotes_args() {
        let s = script(&["--name=a b", "--size=8M"]);
        assert!(s.contains("'--name=a b' --size=8M"), "{s}");
    }

    #[test]
    fn summary_sums_jobs() {
        let v = parse_json(
            r#"note: x
{"jobs":[{"error":0,"read":{"bw_bytes":10,"iops":1.5,"io_bytes":100},"write":{"bw_bytes":5,"iops":2,"io_bytes":50}},
{"error":0,"read":{"bw_bytes":1,"iops":0.5,"io_bytes":1},"write":{}}]}"#,
        )
        .unwrap();
        let s = summary(&v);
        assert_eq!(s.read_bw, 11.0);
        assert_eq!(s.read_iops, 2.0);
        assert_eq!(s.write_bytes, 50);
        assert_eq!(s.errors, 0);
    }
}
