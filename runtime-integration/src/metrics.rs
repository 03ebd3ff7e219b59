//! One Prometheus endpoint for every sandbox of a state directory
//! (`virtiofs-sandbox metrics --listen ADDR:PORT`).
//!
//! Each scrape lists the sandboxes, fetches every running daemon's `GET /metrics` over its API
//! socket (in parallel, each bounded by a timeout), adds `sandbox="<id>"` as the first label
//! of every series, and merges the families so each `# HELP`/`# TYPE` appears once, followed
//! by all of its series. Families of our own are added:
//! `virtiofs_sandbox_up{sandbox}` (1 if the daemon answered, 0 for a sandbox whose daemon is
//! dead, stuck or unreachable), `virtiofs_sandbox_scrape_duration_seconds{sandbox}`, and,
//! with `--config`, `virtiofs_sandbox_daemon_binary_info{path,kind,version}`
//! ([`crate::daemon_binaries`]).
//!
//! The daemon's text is parsed strictly and is not trusted: a line that is not valid
//! exposition format, a series that already has a `sandbox` label or repeats a label, a
//! family in our `virtiofs_sandbox_` namespace, or a family whose type differs from the one
//! another sandbox declared, is dropped (and logged), so one daemon cannot make the whole
//! scrape invalid or speak for another sandbox. At most [`MAX_SERIES_PER_SANDBOX`] series are
//! taken from each daemon.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{GaugeVec, Opts, Registry, TextEncoder};

use crate::api::Client;
use crate::error::{Error, Result};
use crate::supervisor::Supervisor;

/// The label added to every series.
pub const SANDBOX_LABEL: &str = "sandbox";
/// Prefix of the families this module adds (refused from daemons).
pub const OWN_PREFIX: &str = "virtiofs_sandbox_";
/// Series taken from one daemon at most.
pub const MAX_SERIES_PER_SANDBOX: usize = 10_000;
/// Daemons scraped at the same time at most.
pub const SCRAPE_PARALLELISM: usize = 16;
/// Requests served at the same time at most (more get 503).
pub const MAX_IN_FLIGHT: usize = 4;
/// The exposition format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Our family: whether a sandbox's daemon answered the scrape.
pub const UP: &str = "virtiofs_sandbox_up";
/// Our family: how long a sandbox's scrape took.
pub const SCRAPE_DURATION_SECONDS: &str = "virtiofs_sandbox_scrape_duration_seconds";

/// One series: `name{labels} value [timestamp]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The series name (the family name, or it plus `_bucket`/`_sum`/`_count`...).
    pub name: String,
    /// Label names and values (values as written: still escaped).
    pub labels: Vec<(String, String)>,
    /// The value as written.
    pub value: String,
    /// The timestamp as written, if any.
    pub timestamp: Option<String>,
}

/// A metric family: HELP, TYPE and its series.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Family {
    /// The family name.
    pub name: String,
    /// The HELP text (escaped as written).
    pub help: Option<String>,
    /// The TYPE (`counter`, `gauge`, `histogram`, `summary`, `untyped`); `None` if not given.
    pub kind: Option<String>,
    /// The series.
    pub samples: Vec<Sample>,
}

/// Whether `s` is a valid metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
pub fn is_metric_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

/// Whether `s` is a valid label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub fn is_label_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

fn is_value(s: &str) -> bool {
    matches!(s, "+Inf" | "-Inf" | "NaN")
        || (s.parse::<f64>().is_ok()
            && s.bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-')))
}

/// Parses one sample line (no comment); `Err` says what is wrong.
pub fn parse_sample(line: &str) -> std::result::Result<Sample, String> {
    let name_end = line.find(['{', ' ', '\t']).ok_or("no value")?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels: Vec<(String, String)> = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        loop {
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let eq = rest.find('=').ok_or("label without '='")?;
            let lname = rest[..eq].trim();
            if !is_label_name(lname) {
                return Err(format!("bad label name {lname:?}"));
            }
            if labels.iter().any(|(n, _)| n == lname) {
                return Err(format!("label {lname:?} repeated"));
            }
            rest = rest[eq + 1..]
                .trim_start()
                .strip_prefix('"')
                .ok_or("label value not quoted")?;
            // The value up to the closing quote; escapes are \\, \" and \n.
            let mut end = None;
            let mut it = rest.char_indices();
            while let Some((i, c)) = it.next() {
                match c {
                    '\\' => match it.next() {
                        Some((_, '\\' | '"' | 'n')) => {}
                        _ => return Err("bad escape in label value".into()),
                    },
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let end = end.ok_or("unterminated label value")?;
            labels.push((lname.to_string(), rest[..end].to_string()));
            rest = rest[end + 1..].trim_start();
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            } else if !rest.starts_with('}') {
                return Err("expected ',' or '}' after a label".into());
            }
        }
    }
    let mut f = rest.split_ascii_whitespace();
    let value = f.next().ok_or("no value")?;
    if !is_value(value) {
        return Err(format!("bad value {value:?}"));
    }
    let timestamp = f.next().map(str::to_string);
    if let Some(t) = &timestamp {
        if t.parse::<i64>().is_err() {
            return Err(format!("bad timestamp {t:?}"));
        }
    }
    if f.next().is_some() {
        return Err("trailing text".into());
    }
    if !rest.starts_with([' ', '\t']) {
        return Err("no space before the value".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value: value.to_string(),
        timestamp,
    })
}

/// The family a series named `sample` belongs to, among the `known` family names.
fn family_of<'a>(sample: &'a str, known: &HashMap<String, usize>) -> &'a str {
    if known.contains_key(sample) {
        return sample;
    }
    for suffix in ["_bucket", "_sum", "_count", "_created", "_total", "_info"] {
        if let Some(base) = sample.strip_suffix(suffix) {
            if known.contains_key(base) {
                return base;
            }
        }
    }
    sample
}

/// Parses exposition text into families (in order of first appearance). Lines that are not
/// valid are skipped and returned as `(line number, reason)`.
pub fn parse(text: &str) -> (Vec<Family>, Vec<(usize, String)>) {
    let mut fams: Vec<Family> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut bad = Vec::new();
    fn get(fams: &mut Vec<Family>, index: &mut HashMap<String, usize>, name: &str) -> usize {
        *index.entry(name.to_string()).or_insert_with(|| {
            fams.push(Family {
                name: name.to_string(),
                ..Family::default()
            });
            fams.len() - 1
        })
    }
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            let c = c.trim_start();
            let (kw, rest) = c.split_once([' ', '\t']).unwrap_or((c, ""));
            if kw != "HELP" && kw != "TYPE" {
                continue; // a plain comment
            }
            let rest = rest.trim_start();
            let (name, arg) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
            if !is_metric_name(name) {
                bad.push((n + 1, format!("bad metric name in # {kw}")));
                continue;
            }
            let i = get(&mut fams, &mut index, name);
            if kw == "HELP" {
                if fams[i].help.is_none() {
                    fams[i].help = Some(arg.trim().to_string());
                }
            } else {
                let t = arg.trim();
                if !matches!(t, "counter" | "gauge" | "histogram" | "summary" | "untyped") {
                    bad.push((n + 1, format!("unknown type {t:?}")));
                } else if fams[i].kind.is_none() {
                    fams[i].kind = Some(t.to_string());
                }
            }
            continue;
        }
        match parse_sample(line) {
            Ok(s) => {
                let fam = family_of(&s.name, &index).to_string();
                let i = get(&mut fams, &mut index, &fam);
                fams[i].samples.push(s);
            }
            Err(e) => bad.push((n + 1, e)),
        }
    }
    (fams, bad)
}

/// What one sandbox's scrape gave.
#[derive(Clone, Debug)]
pub struct Scrape {
    /// The sandbox id.
    pub sandbox: String,
    /// The daemon's metrics text, or why there is none.
    pub result: std::result::Result<String, String>,
    /// How long the scrape took.
    pub duration: Duration,
}

fn escape_label_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exporter's own families, `virtiofs_sandbox_up` and
/// `virtiofs_sandbox_scrape_duration_seconds`, one series per sandbox, encoded by the
/// `prometheus` crate (text format 0.0.4).
fn own_families(scrapes: &[Scrape]) -> String {
    let gauge = |name: &str, help: &str| {
        GaugeVec::new(Opts::new(name, help), &[SANDBOX_LABEL]).expect("valid gauge")
    };
    let up = gauge(
        UP,
        "Whether the sandbox's virtiofsd answered the scrape (1) or not (0).",
    );
    let duration = gauge(
        SCRAPE_DURATION_SECONDS,
        "How long scraping the sandbox's virtiofsd took.",
    );
    for s in scrapes {
        up.with_label_values(&[s.sandbox.as_str()])
            .set(f64::from(u8::from(s.result.is_ok())));
        duration
            .with_label_values(&[s.sandbox.as_str()])
            .set(s.duration.as_secs_f64());
    }
    let registry = Registry::new();
    for g in [up, duration] {
        registry
            .register(Box::new(g))
            .expect("distinct family names");
    }
    let mut out = String::new();
    if let Err(e) = TextEncoder::new().encode_utf8(&registry.gather(), &mut out) {
        log::warn!("encoding the exporter's own metrics: {e}");
    }
    out
}

/// Merges the scrapes into one exposition text: our `up` and duration families first, then
/// every daemon family once, its series labelled with their sandbox (relayed as the daemon
/// wrote them, after the checks of [`parse`]: a daemon's values are not re-formatted).
pub fn merge(scrapes: &[Scrape]) -> String {
    let mut out = own_families(scrapes);

    // Family name -> (HELP, TYPE, series lines), in order of first appearance.
    let mut order: Vec<String> = Vec::new();
    let mut merged: HashMap<String, (Option<String>, String, Vec<String>)> = HashMap::new();
    for s in scrapes {
        let Ok(text) = &s.result else { continue };
        let (fams, bad) = parse(text);
        for (line, why) in bad.iter().take(5) {
            log::warn!("sandbox {}: /metrics line {line} dropped: {why}", s.sandbox);
        }
        let mut taken = 0usize;
        let label = format!("{SANDBOX_LABEL}=\"{}\"", escape_label_value(&s.sandbox));
        for f in fams {
            if f.name.starts_with(OWN_PREFIX) {
                log::warn!(
                    "sandbox {}: family {} dropped (reserved)",
                    s.sandbox,
                    f.name
                );
                continue;
            }
            let kind = f.kind.clone().unwrap_or_else(|| "untyped".into());
            let entry = merged.entry(f.name.clone()).or_insert_with(|| {
                order.push(f.name.clone());
                (f.help.clone(), kind.clone(), Vec::new())
            });
            if entry.1 != kind {
                log::warn!(
                    "sandbox {}: family {} dropped: type {kind} differs from {}",
                    s.sandbox,
                    f.name,
                    entry.1
                );
                continue;
            }
            if entry.0.is_none() {
                entry.0 = f.help.clone();
            }
            for smp in f.samples {
                if smp.labels.iter().any(|(n, _)| n == SANDBOX_LABEL) {
                    log::warn!(
                        "sandbox {}: a {} series already has a {SANDBOX_LABEL} label; dropped",
                        s.sandbox,
                        smp.name
                    );
                    continue;
                }
                if taken >= MAX_SERIES_PER_SANDBOX {
                    break;
                }
                taken += 1;
                let mut line = format!("{}{{{label}", smp.name);
                for (n, v) in &smp.labels {
                    let _ = write!(line, ",{n}=\"{v}\"");
                }
                let _ = write!(line, "}} {}", smp.value);
                if let Some(t) = &smp.timestamp {
                    let _ = write!(line, " {t}");
                }
                entry.2.push(line);
            }
        }
        if taken >= MAX_SERIES_PER_SANDBOX {
            log::warn!(
                "sandbox {}: more than {MAX_SERIES_PER_SANDBOX} series; the rest dropped",
                s.sandbox
            );
        }
    }
    for name in order {
        let (help, kind, lines) = &merged[&name];
        if let Some(h) = help {
            let _ = writeln!(out, "# HELP {name} {h}");
        }
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for l in lines {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// Scrapes every sandbox of `sup`'s state directory (running ones over their API socket, in
/// parallel, each within `timeout`; the others count as down).
pub fn scrape_all(sup: &Supervisor, timeout: Duration) -> Result<Vec<Scrape>> {
    let list = sup.list()?;
    let targets: Vec<(String, std::result::Result<PathBuf, String>)> = list
        .into_iter()
        .map(|s| {
            let t = match (s.state.as_str(), s.api_socket) {
                ("running", Some(p)) => Ok(p),
                ("running", None) => Err("running without an API socket".to_string()),
                (st, _) => Err(match s.detail {
                    Some(d) => format!("{st}: {d}"),
                    None => st.to_string(),
                }),
            };
            (s.sandbox_id, t)
        })
        .collect();
    let results: Arc<Mutex<Vec<Option<Scrape>>>> = Arc::new(Mutex::new(vec![None; targets.len()]));
    let next = Arc::new(AtomicUsize::new(0));
    let targets = Arc::new(targets);
    let workers = SCRAPE_PARALLELISM.min(targets.len());
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let (results, next, targets) = (results.clone(), next.clone(), targets.clone());
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some((id, target)) = targets.get(i) else {
                    return;
                };
                let t = Instant::now();
                let result = match target {
                    Ok(sock) => {
                        let mut c = Client::new(sock);
                        c.timeout = timeout;
                        c.metrics().map_err(|e| e.to_string())
                    }
                    Err(why) => Err(why.clone()),
                };
                if let Err(e) = &result {
                    log::warn!("sandbox {id}: not scraped: {e}");
                }
                results.lock().unwrap()[i] = Some(Scrape {
                    sandbox: id.clone(),
                    result,
                    duration: t.elapsed(),
                });
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    let v = std::mem::take(&mut *results.lock().unwrap());
    Ok(v.into_iter().flatten().collect())
}

/// Serves `/metrics` for the sandboxes below `state_dir` on `listen` (`ADDR:PORT`; port 0
/// picks a free one) until the process is killed. `on_listening` gets the bound address
/// first.
pub fn serve(
    listen: &str,
    state_dir: &Path,
    timeout: Duration,
    configs: &[PathBuf],
    on_listening: impl FnOnce(std::net::SocketAddr),
) -> Result<()> {
    let server = tiny_http::Server::http(listen).map_err(|e| Error::Io {
        context: format!("listening on {listen}"),
        source: std::io::Error::other(e.to_string()),
    })?;
    let addr = server.server_addr().to_ip().ok_or_else(|| Error::Io {
        context: format!("listening on {listen}"),
        source: std::io::Error::other("not an IP address"),
    })?;
    on_listening(addr);
    let sup = Supervisor::new(state_dir);
    let in_flight = Arc::new(AtomicUsize::new(0));
    for req in server.incoming_requests() {
        if in_flight.fetch_add(1, Ordering::SeqCst) >= MAX_IN_FLIGHT {
            in_flight.fetch_sub(1, Ordering::SeqCst);
            let _ = req.respond(text_response(503, "too many scrapes in flight\n"));
            continue;
        }
        let (sup, in_flight, configs) = (sup.clone(), in_flight.clone(), configs.to_vec());
        std::thread::spawn(move || {
            handle(req, &sup, timeout, &configs);
            in_flight.fetch_sub(1, Ordering::SeqCst);
        });
    }
    Ok(())
}

fn text_response(status: u16, body: &str) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    tiny_http::Response::from_string(body)
        .with_status_code(status)
        .with_header(
            tiny_http::Header::from_bytes(&b"Content-Type"[..], CONTENT_TYPE.as_bytes())
                .expect("valid header"),
        )
}

fn handle(req: tiny_http::Request, sup: &Supervisor, timeout: Duration, configs: &[PathBuf]) {
    use tiny_http::Method;
    let path = req.url().split('?').next().unwrap_or("").to_string();
    let resp = match (req.method(), path.as_str()) {
        (Method::Get | Method::Head, "/metrics") => match scrape_all(sup, timeout) {
            Ok(s) => {
                let bins = crate::daemon_binaries::configured_paths(configs);
                text_response(200, &(merge(&s) + &crate::daemon_binaries::encode(&bins)))
            }
            Err(e) => {
                log::error!("listing sandboxes: {e}");
                text_response(500, &format!("{e}\n"))
            }
        },
        (Method::Get | Method::Head, "/") => {
            text_response(200, "virtiofs-sandbox metrics exporter: see /metrics\n")
        }
        (Method::Get | Method::Head, _) => text_response(404, "not found; see /metrics\n"),
        _ => text_response(405, "only GET and HEAD\n"),
    };
    if let Err(e) = req.respond(resp) {
        log::debug!("answering a scrape: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAEMON: &str = r#"# HELP virtiofsd_requests_total Requests served.
# TYPE virtiofsd_requests_total counter
virtiofsd_requests_total{kind="read"} 3
virtiofsd_requests_total{kind="write"} 0
# HELP virtiofsd_throttle_wait_seconds_p99 p99 wait.
# TYPE virtiofsd_throttle_wait_seconds_p99 gauge
virtiofsd_throttle_wait_seconds_p99 0.25
# TYPE virtiofsd_ratelimit_level gauge
virtiofsd_ratelimit_level{bucket="bw"} -1.5e3
"#;

    fn ok(id: &str, text: &str) -> Scrape {
        Scrape {
            sandbox: id.into(),
            result: Ok(text.into()),
            duration: Duration::from_millis(3),
        }
    }

    #[test]
    fn samples_parse_strictly() {
        let s = parse_sample(r#"a_b:c{x="1",y="q\"uo\\te\n",} 1.5e3 1700000000000"#).unwrap();
        assert_eq!(s.name, "a_b:c");
        assert_eq!(
            s.labels,
            [
                ("x".to_string(), "1".to_string()),
                ("y".to_string(), r#"q\"uo\\te\n"#.to_string())
            ]
        );
        assert_eq!(s.value, "1.5e3");
        assert_eq!(s.timestamp.as_deref(), Some("1700000000000"));
        assert_eq!(parse_sample("up +Inf").unwrap().value, "+Inf");
        assert_eq!(parse_sample("m{} NaN").unwrap().labels, []);
        for bad in [
            "1bad 1",
            "m{x=1} 1",
            "m{x=\"1\"",
            "m{x=\"1\",x=\"2\"} 1",
            "m{x=\"\\q\"} 1",
            "m{1x=\"a\"} 1",
            "m one",
            "m 1 2 3",
            "m inf",
            "m{x=\"1\"}1",
            "m",
        ] {
            assert!(parse_sample(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn families_group_suffixed_series() {
        let (f, bad) = parse(
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n# some comment\nloose 1\nbroken{ 2\n",
        );
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!(bad[0].0, 8);
        assert_eq!(f.len(), 2);
        assert_eq!((f[0].name.as_str(), f[0].samples.len()), ("h", 4));
        assert_eq!(f[0].kind.as_deref(), Some("histogram"));
        assert_eq!((f[1].name.as_str(), f[1].kind.as_ref()), ("loose", None));
    }

    #[test]
    fn merge_labels_every_series_and_declares_each_family_once() {
        let out = merge(&[
            ok("pod-a", DAEMON),
            Scrape {
                sandbox: "pod-dead".into(),
                result: Err("gone".into()),
                duration: Duration::ZERO,
            },
            ok("pod-b", DAEMON),
        ]);
        assert!(
            out.contains("virtiofs_sandbox_up{sandbox=\"pod-a\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("virtiofs_sandbox_up{sandbox=\"pod-dead\"} 0\n"),
            "{out}"
        );
        assert_eq!(
            out.matches("# TYPE virtiofsd_requests_total counter\n")
                .count(),
            1
        );
        assert_eq!(out.matches("# HELP virtiofsd_requests_total ").count(), 1);
        assert!(out.contains(
            "virtiofsd_requests_total{sandbox=\"pod-a\",kind=\"read\"} 3\nvirtiofsd_requests_total{sandbox=\"pod-a\",kind=\"write\"} 0\nvirtiofsd_requests_total{sandbox=\"pod-b\",kind=\"read\"} 3\n"
        ), "{out}");
        assert!(out.contains("virtiofsd_throttle_wait_seconds_p99{sandbox=\"pod-b\"} 0.25\n"));
        assert!(out.contains("virtiofsd_ratelimit_level{sandbox=\"pod-a\",bucket=\"bw\"} -1.5e3\n"));
        // The result is itself valid, and every series has a sandbox label.
        let (fams, bad) = parse(&out);
        assert!(bad.is_empty(), "{bad:?}");
        for f in &fams {
            assert!(f.kind.is_some(), "{} has no TYPE", f.name);
            for s in &f.samples {
                assert_eq!(s.labels[0].0, "sandbox", "{s:?}");
            }
        }
        assert_eq!(fams.len(), 5);
    }

    #[test]
    fn a_hostile_daemon_cannot_break_or_spoof_the_scrape() {
        let evil = "# TYPE virtiofs_sandbox_up gauge\nvirtiofs_sandbox_up{sandbox=\"pod-a\"} 1\n\
                    # TYPE virtiofsd_requests_total gauge\nvirtiofsd_requests_total{kind=\"read\"} 9\n\
                    x{sandbox=\"pod-a\"} 1\nx{a=\"1\"} 1\ny{a=\"unterminated} 1\n\
                    z{a=\"1\"} 1 # trailing\n";
        let out = merge(&[ok("pod-a", DAEMON), ok("pod-evil", evil)]);
        assert!(!out.contains("sandbox=\"pod-evil\",sandbox"), "{out}");
        assert_eq!(out.matches("virtiofs_sandbox_up{").count(), 2, "{out}");
        assert!(
            !out.contains("kind=\"read\"} 9"),
            "type clash dropped: {out}"
        );
        assert!(out.contains("x{sandbox=\"pod-evil\",a=\"1\"} 1\n"), "{out}");
        assert!(!out.contains("y{"), "{out}");
        assert!(!out.contains("z{"), "{out}");
        let (_, bad) = parse(&out);
        assert!(bad.is_empty(), "{bad:?}\n{out}");
        // Sandbox ids are label-escaped (ids cannot hold quotes, but stay safe anyway).
        assert_eq!(escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
