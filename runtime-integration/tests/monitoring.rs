//! configs/monitoring against the real exporter: every series the alert rules and the Grafana
//! dashboard name is in a live scrape of `virtiofs-sandbox metrics` over a real daemon, both
//! scrapes pass `promtool check metrics`, and every dashboard expression parses (promtool).

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{cli, daemon_bin, json_out, Scratch};
use limits_api::wire::metrics;
use runtime_integration::api::Client;

/// Families the rules and dashboard name that this scrape cannot have: the group budget's (a
/// daemon in a node group serves them) and the exporter's build info (served with `metrics
/// --config`, runtime-integration's `daemon_binaries`, once merged).
const NOT_IN_THIS_SCRAPE: [&str; 3] = [
    metrics::GROUP[0],
    metrics::GROUP[1],
    "virtiofs_sandbox_daemon_binary_info",
];

fn monitoring(file: &str) -> PathBuf {
    common::workspace_root()
        .join("configs/monitoring")
        .join(file)
}

/// The series names (ours are all `virtiofsd_*` or `virtiofs_sandbox_*`) a text mentions.
fn named_series(text: &str) -> BTreeSet<String> {
    regex::Regex::new(r"\bvirtiofs(?:d|_sandbox)_[a-z0-9_]*[a-z0-9]")
        .unwrap()
        .find_iter(text)
        .map(|m| m.as_str().to_string())
        .collect()
}

/// The sample names of an exposition text.
fn served_series(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

/// `promtool ARGS...` with `stdin`; returns (success, what it said).
fn promtool(args: &[&str], stdin: &str) -> (bool, String) {
    let mut c = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("promtool is needed (apt-get install prometheus): {e}"));
    c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// The exporter on a free port, killed on drop.
struct Exporter(Child, String);

impl Exporter {
    fn start(state: &str) -> Exporter {
        let mut child = Command::new(common::cli_bin())
            .args(["metrics", "--listen", "127.0.0.1:0", "--state-dir", state])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut line, mut b) = (Vec::new(), [0u8; 1]);
            while out.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
                line.push(b[0]);
            }
            let _ = tx.send(line);
        });
        let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) else {
            let _ = child.kill();
            panic!("the exporter did not announce its address within 10 s");
        };
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        Exporter(child, v["listen"].as_str().unwrap().to_string())
    }

    fn scrape(&self) -> String {
        let mut c = std::net::TcpStream::connect(&self.1).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        write!(c, "GET /metrics HTTP/1.0\r\nHost: {}\r\n\r\n", self.1).unwrap();
        let mut raw = String::new();
        c.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
        assert!(
            head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
            "{head}"
        );
        body.to_string()
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn every_series_the_rules_and_dashboard_name_is_in_a_live_scrape() {
    let s = Scratch::new();
    let cfg = common::write_config(s.dir.path(), &daemon_bin(), &[]);
    let (cfg, state, share) = (
        cfg.display().to_string(),
        s.state.display().to_string(),
        s.share.display().to_string(),
    );
    // configs/configuration-qemu.toml limits bw: its level series is served.
    let out = cli(&[
        "start",
        "--config",
        &cfg,
        "--sandbox-id",
        "pod-m",
        "--shared-dir",
        &share,
        "--state-dir",
        &state,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let api = json_out(&out)["api_socket"].as_str().unwrap().to_string();
    let exporter = Exporter::start(&state);
    let node = exporter.scrape();
    let daemon = Client::new(&api).metrics().unwrap();
    for (what, text) in [("exporter", &node), ("daemon", &daemon)] {
        let (ok, said) = promtool(&["check", "metrics"], text);
        assert!(
            ok && said.trim().is_empty(),
            "{what}: promtool check metrics: {said}\n{text}"
        );
    }

    let served = served_series(&node);
    let mut checked = 0;
    for file in ["virtiofs-alerts.yml", "virtiofs-dashboard.json"] {
        let text = std::fs::read_to_string(monitoring(file)).unwrap();
        let named = named_series(&text);
        assert!(named.len() >= 5, "{file} names {named:?}");
        for name in named {
            if NOT_IN_THIS_SCRAPE.contains(&name.as_str()) {
                continue;
            }
            assert!(
                served.contains(&name),
                "{file} names {name}, which a live scrape does not have:\n{node}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked}");
    let stop = cli(&["stop", "pod-m", "--state-dir", &state]);
    assert!(stop.status.success());
}

/// Grafana's variables, as a query would see them expanded.
fn expand(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$instance", ".*")
        .replace("$sandbox", ".*")
}

#[test]
fn every_dashboard_expression_parses_with_promtool() {
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(monitoring("virtiofs-dashboard.json")).unwrap(),
    )
    .unwrap();
    let panels = dash["panels"].as_array().unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let mut n = 0;
    for p in panels {
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            let expr = expand(t["expr"].as_str().unwrap());
            assert!(!expr.contains('$'), "an unexpanded variable: {expr}");
            n += 1;
            // JSON strings are valid YAML double-quoted scalars.
            rules += &format!(
                "      - record: dashboard:expr{n}\n        expr: {}\n",
                serde_json::to_string(&expr).unwrap()
            );
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("dashboard-rules.yml");
    std::fs::write(&f, &rules).unwrap();
    let (ok, said) = promtool(&["check", "rules", f.to_str().unwrap()], "");
    assert!(
        ok,
        "promtool check rules on the dashboard's expressions: {said}\n{rules}"
    );
    assert!(
        said.contains(&format!("SUCCESS: {n} rules found")),
        "{said}"
    );
}
