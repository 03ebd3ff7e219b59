//! [`Vm`]: a running guest: waiting for its marks and its exit, QMP, the console.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::results::{parse, JobRun};

use super::{GuestOutput, Vm};
use crate::stack::Stack;

fn tail_lines(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

impl Vm {
    /// The stack the guest runs on.
    pub fn stack(&self) -> Stack {
        self.stack
    }

    /// QEMU's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The run directory (console.log, results.log, qemu.stderr, qmp.sock, initrd.cpio).
    pub fn work_dir(&self) -> &Path {
        &self.dir
    }

    /// Time since QEMU was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The guest console (ttyS0) so far.
    pub fn console_log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.console).unwrap_or_default()).into_owned()
    }

    /// The last 60 lines of the guest console.
    pub fn console_tail(&self) -> String {
        tail_lines(&self.console_log(), 60)
    }

    fn results_raw(&self) -> Vec<u8> {
        fs::read(&self.results).unwrap_or_default()
    }

    fn results_tail(&self) -> String {
        let r = self.results_raw();
        String::from_utf8_lossy(&r[r.len().saturating_sub(2000)..]).into_owned()
    }

    fn qemu_stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The results parsed so far (one entry per boot).
    pub fn runs(&self) -> Vec<JobRun> {
        parse(&self.results_raw())
    }

    fn poll_mount(&mut self) {
        if self.mount_seen.is_none() && self.expect_mount {
            let r = self.results_raw();
            if r.windows(20).any(|w| w == b"===GUEST-VM-MOUNTED ") {
                self.mount_seen = Some(self.started.elapsed());
            }
        }
    }

    /// Polls QEMU; `Some(status)` once it exited.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        self.poll_mount();
        match self.child.as_mut() {
            Some(c) => c.try_wait().map_err(Error::io("waiting for QEMU")),
            None => Err(Error::Setup("QEMU already reaped".into())),
        }
    }

    fn wait_until<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&mut Self) -> Option<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f(self) {
                return Ok(v);
            }
            if let Some(st) = self.try_wait()? {
                return Err(Error::Setup(format!(
                    "QEMU exited ({st}) before {what}\n--- console tail ---\n{}\n--- qemu stderr ---\n{}",
                    self.console_tail(),
                    self.qemu_stderr()
                )));
            }
            if Instant::now() >= deadline {
                return Err(Error::Setup(format!(
                    "{what} did not happen within {timeout:?}\n--- console tail ---\n{}",
                    self.console_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the job ran `guest-signal NAME` (in any boot).
    pub fn wait_for_signal(&mut self, name: &str, timeout: Duration) -> Result<()> {
        let marker = format!("===GUEST-VM-SIGNAL {name}===");
        self.wait_until(&format!("guest-signal {name}"), timeout, |vm| {
            let r = vm.results_raw();
            r.windows(marker.len())
                .any(|w| w == marker.as_bytes())
                .then_some(())
        })
    }

    /// Sends a QMP command and returns its `return` value (events are skipped).
    /// Each call opens a fresh connection to the QMP socket.
    pub fn qmp(&self, command: &str, arguments: Option<Value>) -> Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match UnixStream::connect(&self.qmp) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => {
                    return Err(Error::Qmp(format!("connect {}: {e}", self.qmp.display())))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| Error::Qmp(e.to_string()))?;
        let mut writer = stream.try_clone().map_err(|e| Error::Qmp(e.to_string()))?;
        let mut reader = BufReader::new(stream);
        let read_reply = |reader: &mut BufReader<UnixStream>, greeting: bool| -> Result<Value> {
            loop {
                let mut line = String::new();
                let n = reader
                    .read_line(&mut line)
                    .map_err(|e| Error::Qmp(format!("read: {e}")))?;
                if n == 0 {
                    return Err(Error::Qmp("connection closed".into()));
                }
                let v: Value = serde_json::from_str(&line)
                    .map_err(|e| Error::Qmp(format!("bad JSON {line:?}: {e}")))?;
                if greeting && v.get("QMP").is_some() {
                    return Ok(v);
                }
                if let Some(r) = v.get("return") {
                    return Ok(r.clone());
                }
                if let Some(e) = v.get("error") {
                    return Err(Error::Qmp(format!("{command}: {e}")));
                }
            }
        };
        read_reply(&mut reader, true)?;
        let mut send = |v: Value| -> Result<()> {
            writeln!(writer, "{v}").map_err(|e| Error::Qmp(format!("write: {e}")))
        };
        send(json!({"execute": "qmp_capabilities"}))?;
        read_reply(&mut reader, false)?;
        let mut req = json!({ "execute": command });
        if let Some(a) = arguments {
            req["arguments"] = a;
        }
        send(req)?;
        read_reply(&mut reader, false)
    }

    /// Runs a human-monitor (HMP) command, e.g. `system_reset` or
    /// `info status`, and returns its text output.
    pub fn monitor_command(&self, command: &str) -> Result<String> {
        let v = self.qmp(
            "human-monitor-command",
            Some(json!({ "command-line": command })),
        )?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// SIGKILLs QEMU and reaps it.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(c) = self.child.as_mut() {
            if c.try_wait()
                .map_err(Error::io("waiting for QEMU"))?
                .is_none()
            {
                let _ = c.kill();
            }
            c.wait().map_err(Error::io("waiting for QEMU"))?;
        }
        Ok(())
    }

    /// Waits for QEMU to exit until the run's timeout (counted from spawn).
    pub fn wait(self) -> Result<GuestOutput> {
        let t = self.timeout.saturating_sub(self.started.elapsed());
        self.wait_timeout(t)
    }

    /// Waits for QEMU to exit for at most `timeout` from now; on expiry QEMU
    /// is SIGKILLed and [`Error::Timeout`] carries the console tail.
    pub fn wait_timeout(mut self, timeout: Duration) -> Result<GuestOutput> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(st) = self.try_wait()? {
                break st;
            }
            if Instant::now() >= deadline {
                self.kill()?;
                return Err(Error::Timeout {
                    timeout: self.started.elapsed(),
                    console_tail: self.console_tail(),
                    results_tail: self.results_tail(),
                    qemu_stderr: self.qemu_stderr(),
                    work_dir: self.dir.display().to_string(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let elapsed = self.started.elapsed();
        self.poll_mount();
        self.child = None;
        let console_tail = self.console_tail();
        if !status.success() {
            return Err(Error::QemuFailed {
                status: status.to_string(),
                qemu_stderr: self.qemu_stderr(),
                console_tail,
            });
        }
        let runs = self.runs();
        let Some(last) = runs.last().cloned() else {
            return Err(Error::NoResult {
                console_tail,
                results_tail: self.results_tail(),
                qemu_stderr: self.qemu_stderr(),
            });
        };
        if let Some(message) = last.mount_error.clone() {
            return Err(Error::MountFailed {
                message,
                console_tail,
            });
        }
        let Some(status) = last.status else {
            return Err(Error::NoResult {
                console_tail,
                results_tail: self.results_tail(),
                qemu_stderr: self.qemu_stderr(),
            });
        };
        Ok(GuestOutput {
            status,
            stdout: last.stdout.clone(),
            stderr: last.stderr.clone(),
            console_tail,
            elapsed,
            boot_to_mount: self.mount_seen,
            mount_uptime: last.mount_uptime,
            job_time: last.job_time,
            signals: last.signals.clone(),
            runs,
            stack: self.stack,
        })
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
