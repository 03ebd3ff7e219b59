//! The live commands (`limits`, `stats`, `metrics`) against the real daemon's API socket.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::{Duration, Instant};

use common::{cli, daemon_bin, json_out, wait_gone, Scratch};
use limits_api::wire::metrics;
use runtime_integration::daemon_binaries::DAEMON_BINARY_INFO as BINARY_INFO;
use runtime_integration::{
    CommandOptions, Error, LaunchStyle, StartOptions, Supervisor, VirtioFsConfig,
};

const EXTRA: &str = "io.katacontainers.config.hypervisor.virtio_fs_extra_args";

/// `virtiofs-sandbox start` of sandbox `id` (extra CLI arguments appended); returns its JSON.
fn start(s: &Scratch, cfg: &str, id: &str, extra: &[&str]) -> serde_json::Value {
    let state = s.state.display().to_string();
    let share = s.share.display().to_string();
    let mut a = vec![
        "start",
        "--config",
        cfg,
        "--sandbox-id",
        id,
        "--shared-dir",
        &share,
        "--state-dir",
        &state,
    ];
    a.extend_from_slice(extra);
    let out = cli(&a);
    assert!(
        out.status.success(),
        "start {id}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_out(&out)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn bucket(v: &serde_json::Value, b: &str) -> (u64, u64, Option<i64>) {
    (
        v[b]["size"]
            .as_u64()
            .unwrap_or_else(|| panic!("{b}.size in {v}")),
        v[b]["burst"]
            .as_u64()
            .unwrap_or_else(|| panic!("{b}.burst in {v}")),
        v[b]["level"].as_i64(),
    )
}

#[test]
fn limits_shows_and_patches_the_live_limits() {
    let s = Scratch::new();
    let cfg = common::write_config(s.dir.path(), &daemon_bin(), &[])
        .display()
        .to_string();
    let state = s.state.display().to_string();
    let j = start(&s, &cfg, "pod-l", &[]);
    let api = s.state.join("pod-l/api.sock");
    assert_eq!(j["api_socket"], api.display().to_string(), "{j}");
    assert!(
        j["args"]
            .as_array()
            .unwrap()
            .contains(&format!("--api-socket={}", api.display()).into()),
        "{j}"
    );
    let m = std::fs::metadata(&api).unwrap();
    assert!(m.file_type().is_socket());
    assert_eq!(m.permissions().mode() & 0o777, 0o600, "API socket mode");
    let recorded: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.state.join("pod-l/state.json")).unwrap()).unwrap();
    assert_eq!(recorded["api_socket"], j["api_socket"]);
    assert_eq!(
        json_out(&cli(&["status", "pod-l", "--state-dir", &state]))["api_socket"],
        j["api_socket"]
    );

    // `limits pod-l` with `flags`.
    let limits = |flags: &[&str]| {
        let mut a = vec!["limits", "pod-l", "--state-dir", &state];
        a.extend_from_slice(flags);
        cli(&a)
    };
    // `limits pod-l` with `flags` is refused: exit `code`, stderr naming every one of `names`.
    let refused = |flags: &[&str], code: i32, names: &[&str]| {
        let out = limits(flags);
        assert_eq!(out.status.code(), Some(code), "{flags:?}: {}", stderr(&out));
        assert!(
            names.iter().all(|n| stderr(&out).contains(n)),
            "{flags:?}: {}",
            stderr(&out)
        );
    };

    // No flags: the configuration's limits (configs/configuration-qemu.toml: bw 10M, burst 20M).
    let out = limits(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json_out(&out);
    assert_eq!(bucket(&v, "bw").0, 10_000_000, "{v}");
    assert_eq!(bucket(&v, "bw").1, 20_000_000, "{v}");
    assert!(
        bucket(&v, "bw").2.is_some(),
        "a limited bucket has a level: {v}"
    );
    for b in ["read_bw", "write_bw", "ops"] {
        assert_eq!(bucket(&v, b), (0, 0, None), "{b} unlimited: {v}");
    }

    // --fs-bw-size=2M: the size changes, the burst is kept, the other buckets untouched.
    let out = limits(&["--fs-bw-size=2M"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json_out(&out);
    assert_eq!(bucket(&v, "bw").0, 2_000_000, "{v}");
    assert_eq!(bucket(&v, "bw").1, 20_000_000, "burst kept: {v}");
    let again = json_out(&limits(&[]));
    assert_eq!(
        bucket(&again, "bw").0,
        2_000_000,
        "GET after PATCH: {again}"
    );
    assert_eq!(bucket(&again, "bw").1, 20_000_000, "{again}");
    assert_eq!(bucket(&again, "ops"), (0, 0, None), "{again}");

    // The operator may loosen and add limits, in the daemon's units; a burst alone keeps
    // the current size.
    let v = json_out(&limits(&[
        "--fs-ops-size=1k",
        "--fs-ops-burst=2Ki",
        "--fs-read-bw-size",
        "50M",
        "--fs-bw-burst=40M",
    ]));
    assert_eq!(bucket(&v, "ops").0, 1000, "{v}");
    assert_eq!(bucket(&v, "ops").1, 2048, "{v}");
    assert_eq!(bucket(&v, "read_bw").0, 50_000_000, "{v}");
    assert_eq!(bucket(&v, "read_bw").1, 50_000_000, "{v}");
    assert_eq!(
        (bucket(&v, "bw").0, bucket(&v, "bw").1),
        (2_000_000, 40_000_000),
        "{v}"
    );
    // size 0 removes a limit.
    let v = json_out(&limits(&["--fs-ops-size=0"]));
    assert_eq!(bucket(&v, "ops").0, 0, "{v}");
    assert_eq!(bucket(&v, "ops").2, None, "{v}");

    // Refusals: the daemon's message, nothing changed.
    refused(&["--fs-bw-burst=0"], 1, &["HTTP 400", "bw.burst"]);
    refused(&["--fs-write-bw-burst=1M"], 1, &["--fs-write-bw-size"]);
    // clap rejects the value.
    refused(&["--fs-bw-size=1.5M"], 2, &["fractional"]);
    let v = json_out(&limits(&[]));
    assert_eq!(
        (bucket(&v, "bw").0, bucket(&v, "bw").1),
        (2_000_000, 40_000_000),
        "unchanged after refusals: {v}"
    );

    let pid = j["pid"].as_u64().unwrap() as u32;
    assert!(cli(&["stop", "pod-l", "--state-dir", &state])
        .status
        .success());
    assert!(wait_gone(pid, Duration::from_secs(2)));
    refused(&[], 1, &["sandbox pod-l is not running (not-found)"]);
}

#[test]
fn stats_reports_the_daemons_counters() {
    let s = Scratch::new();
    let cfg = VirtioFsConfig::load(
        common::write_config(s.dir.path(), &daemon_bin(), &[]),
        "qemu",
    )
    .unwrap();
    let sup = Supervisor::new(&s.state);
    let mut d = sup
        .start(
            "pod-s",
            &cfg,
            &s.share,
            &StartOptions {
                command: CommandOptions {
                    style: LaunchStyle::Rs,
                    xattr: true,
                },
                ..StartOptions::default()
            },
            None,
        )
        .unwrap();
    assert_eq!(
        d.state().api_socket.as_deref(),
        Some(d.paths().api_socket.as_path())
    );
    // Some traffic: a lookup (metadata) and a 5-byte read.
    std::fs::write(s.share.join("f"), b"hello").unwrap();
    let mut fs = vufs_frontend::FuseSession::connect(d.socket()).unwrap();
    fs.init().unwrap();
    let e = fs.lookup(vufs_frontend::ROOT_ID, b"f").unwrap();
    let o = fs.open(e.nodeid, libc::O_RDONLY as u32).unwrap();
    assert_eq!(fs.read(e.nodeid, o.fh, 0, 4096).unwrap(), b"hello");

    let state = s.state.display().to_string();
    let out = cli(&["stats", "pod-s", "--state-dir", &state]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json_out(&out);
    assert!(v["uptime_seconds"].as_f64().unwrap() > 0.0, "{v}");
    for k in ["read", "write", "metadata"] {
        assert!(v["requests"][k].is_u64(), "requests.{k}: {v}");
    }
    for k in ["read", "write"] {
        assert!(v["bytes"][k].is_u64(), "bytes.{k}: {v}");
    }
    assert!(v["throttled"]["requests"].is_u64(), "{v}");
    assert!(v["throttled"]["wait_seconds_total"].is_f64(), "{v}");
    assert!(v["throttled"]["wait_seconds_p99"].is_f64(), "{v}");
    assert!(v["requests"]["read"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["requests"]["metadata"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["bytes"]["read"].as_u64().unwrap() >= 5, "{v}");
    // The library client sees the same daemon.
    let lib = sup.api("pod-s").unwrap().stats().unwrap();
    assert!(lib["requests"]["read"].as_u64() >= v["requests"]["read"].as_u64());
    drop(fs);
    d.stop(Duration::from_secs(2)).unwrap();
    assert!(matches!(sup.api("pod-s"), Err(Error::NotRunning { .. })));
}

#[test]
fn operator_api_socket_flag_is_refused_and_opt_out_works() {
    let s = Scratch::new();
    let mut cfg = VirtioFsConfig::load(
        common::write_config(s.dir.path(), &daemon_bin(), &[]),
        "qemu",
    )
    .unwrap();
    let sup = Supervisor::new(&s.state);
    let mut clashing = cfg.clone();
    clashing
        .virtio_fs_extra_args
        .push("--api-socket=/tmp/elsewhere".into());
    let e = sup
        .start("clash", &clashing, &s.share, &StartOptions::default(), None)
        .unwrap_err();
    assert!(e.to_string().contains("--api-socket"), "{e}");
    assert!(!s.state.join("clash").exists());
    // Without an API socket (StartOptions::api_socket = false): no flag, no socket, and the
    // live commands say why.
    cfg.virtio_fs_extra_args.retain(|a| !a.starts_with("--api"));
    let mut d = sup
        .start(
            "noapi",
            &cfg,
            &s.share,
            &StartOptions {
                api_socket: false,
                ..StartOptions::default()
            },
            None,
        )
        .unwrap();
    assert!(!common::cmdline(d.pid())
        .iter()
        .any(|a| a.starts_with("--api-socket")));
    assert!(d.state().api_socket.is_none());
    let out = cli(&[
        "stats",
        "noapi",
        "--state-dir",
        &s.state.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("without an API socket"),
        "{}",
        stderr(&out)
    );
    d.stop(Duration::from_secs(2)).unwrap();
}

/// A Prometheus text-format check independent of the crate's parser: every non-comment line
/// is `name{labels} value`, every family has a `# TYPE` before its series, and no family is
/// declared twice. Returns the series as (name, labels, value).
fn check_exposition(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let sample = regex::Regex::new(
        r#"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*)\})? ([^ ]+)$"#,
    )
    .unwrap();
    let label = regex::Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)""#).unwrap();
    let mut typed: BTreeSet<String> = BTreeSet::new();
    let mut helped: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut series = Vec::new();
    assert!(text.ends_with('\n'), "exposition must end with a newline");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(typed.insert(name.to_string()), "TYPE twice: {line}");
            current = Some(name.to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(helped.insert(name.to_string()), "HELP twice: {line}");
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
        let c = sample
            .captures(line)
            .unwrap_or_else(|| panic!("not `name{{labels}} value`: {line:?}"));
        let name = c[1].to_string();
        let fam = current.as_deref().expect("series before any TYPE");
        assert!(
            name == fam || name.strip_prefix(fam).is_some_and(|s| s.starts_with('_')),
            "{name} outside its family {fam}"
        );
        let labels: BTreeMap<String, String> = c
            .get(2)
            .map(|l| {
                label
                    .captures_iter(l.as_str())
                    .map(|m| (m[1].to_string(), m[2].to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let value: f64 = match &c[3] {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value in {line:?}")),
        };
        series.push((name, labels, value));
    }
    series
}

fn value_of(
    series: &[(String, BTreeMap<String, String>, f64)],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    series
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
}

/// The pid of the serving process: the recorded daemon, or its (namespace-sandbox) child.
fn serving_pid(pid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .ok()
        .and_then(|c| c.split_whitespace().next().and_then(|p| p.parse().ok()))
        .unwrap_or(pid)
}

#[test]
fn metrics_exporter_labels_every_series_by_sandbox() {
    let s = Scratch::new();
    let cfg = common::write_config(s.dir.path(), &daemon_bin(), &[])
        .display()
        .to_string();
    let state = s.state.display().to_string();
    let a = start(&s, &cfg, "pod-a", &[]);
    let ann = format!(r#"{EXTRA}=["--fs-bw-size=5M","--fs-ops-size=300"]"#);
    let b = start(&s, &cfg, "pod-b", &["--launch", "rs", "--annotation", &ann]);
    let exporter = common::Exporter::start(&state, "1", &[]);

    let (status, text) = exporter.get("/metrics");
    assert_eq!(status, 200, "{text}");
    let series = check_exposition(&text);
    let mut seen = BTreeSet::new();
    for (name, labels, _) in &series {
        let sb = labels
            .get("sandbox")
            .unwrap_or_else(|| panic!("{name}{labels:?} has no sandbox label"));
        seen.insert(sb.clone());
    }
    assert_eq!(
        seen,
        BTreeSet::from(["pod-a".to_string(), "pod-b".to_string()])
    );
    for sb in ["pod-a", "pod-b"] {
        assert_eq!(
            value_of(&series, "virtiofs_sandbox_up", &[("sandbox", sb)]),
            Some(1.0),
            "{text}"
        );
        for kind in ["read", "write", "metadata"] {
            assert!(
                value_of(
                    &series,
                    metrics::REQUESTS_TOTAL,
                    &[("sandbox", sb), ("kind", kind)]
                )
                .is_some(),
                "{sb} {kind}: {text}"
            );
        }
        // The throttle wait histogram (names settled in limits-api's wire::metrics).
        let h = metrics::THROTTLE_WAIT_SECONDS;
        for name in [format!("{h}_sum"), format!("{h}_count")] {
            assert!(
                value_of(&series, &name, &[("sandbox", sb)]).is_some(),
                "{name}"
            );
        }
        assert!(
            value_of(
                &series,
                &format!("{h}_bucket"),
                &[("sandbox", sb), ("le", "+Inf")]
            )
            .is_some(),
            "{h}_bucket: {text}"
        );
    }
    // Each sandbox's own limits.
    let size = |sb, bucket| {
        value_of(
            &series,
            "virtiofsd_ratelimit_size",
            &[("sandbox", sb), ("bucket", bucket)],
        )
    };
    assert_eq!(size("pod-a", "bw"), Some(10_000_000.0), "{text}");
    assert_eq!(size("pod-b", "bw"), Some(5_000_000.0), "{text}");
    assert_eq!(size("pod-a", "ops"), Some(0.0), "{text}");
    assert_eq!(size("pod-b", "ops"), Some(300.0), "{text}");
    assert!(
        value_of(
            &series,
            metrics::RATELIMIT_LEVEL,
            &[("sandbox", "pod-a"), ("bucket", "ops")]
        )
        .is_none(),
        "no level for an unlimited bucket"
    );
    // A live change shows in the next scrape.
    assert!(
        cli(&["limits", "pod-a", "--state-dir", &state, "--fs-bw-size=2M"])
            .status
            .success()
    );
    let series = check_exposition(&exporter.get("/metrics").1);
    assert_eq!(
        value_of(
            &series,
            "virtiofsd_ratelimit_size",
            &[("sandbox", "pod-a"), ("bucket", "bw")]
        ),
        Some(2_000_000.0)
    );
    let (st, _) = exporter.get("/nope");
    assert_eq!(st, 404);

    // A stuck daemon (SIGSTOP) is down within the timeout; the other one is still served.
    let pb = b["pid"].as_u64().unwrap() as u32;
    let stuck = serving_pid(pb);
    // SAFETY: kill(2) on a daemon this test started.
    unsafe { libc::kill(stuck as i32, libc::SIGSTOP) };
    let t = Instant::now();
    let (_, text) = exporter.get("/metrics");
    // SAFETY: as above.
    unsafe { libc::kill(stuck as i32, libc::SIGCONT) };
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let series = check_exposition(&text);
    assert_eq!(
        value_of(&series, "virtiofs_sandbox_up", &[("sandbox", "pod-b")]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value_of(&series, "virtiofs_sandbox_up", &[("sandbox", "pod-a")]),
        Some(1.0)
    );
    assert!(
        value_of(&series, "virtiofsd_ratelimit_size", &[("sandbox", "pod-b")]).is_none(),
        "a stuck sandbox has no daemon series: {text}"
    );

    // A stopped sandbox disappears.
    assert!(cli(&["stop", "pod-b", "--state-dir", &state])
        .status
        .success());
    assert!(wait_gone(pb, Duration::from_secs(3)));
    let (_, text) = exporter.get("/metrics");
    let series = check_exposition(&text);
    assert!(
        series.iter().all(|(_, l, _)| l["sandbox"] == "pod-a"),
        "pod-b still present:\n{text}"
    );
    // A dead one (SIGKILL, state left behind) is down, without its daemon series.
    let pa = a["pid"].as_u64().unwrap() as u32;
    let pa_child = serving_pid(pa);
    // SAFETY: kill(2) on a daemon this test started.
    unsafe { libc::kill(pa as i32, libc::SIGKILL) };
    assert!(wait_gone(pa, Duration::from_secs(3)));
    assert!(wait_gone(pa_child, Duration::from_secs(3)));
    let (_, text) = exporter.get("/metrics");
    let series = check_exposition(&text);
    assert_eq!(
        value_of(&series, "virtiofs_sandbox_up", &[("sandbox", "pod-a")]),
        Some(0.0),
        "{text}"
    );
    assert!(series
        .iter()
        .all(|(n, _, _)| n.starts_with("virtiofs_sandbox_")));
    assert_eq!(
        json_out(&cli(&["stop", "pod-a", "--state-dir", &state]))["result"],
        "already-exited"
    );
    drop(exporter);
}

/// `promtool check metrics` (the Prometheus project's linter, text format 0.0.4) finds nothing
/// in a live scrape of the exporter over two real daemons, one of them throttled, and every
/// family of the wire crate is there, labelled by sandbox.
#[test]
fn metrics_exporter_scrape_passes_promtool() {
    let s = Scratch::new();
    let cfg = common::write_config(s.dir.path(), &daemon_bin(), &[])
        .display()
        .to_string();
    let state = s.state.display().to_string();
    let mut started = common::Started::new(&state);
    let a = start(&s, &cfg, "pod-a", &[]);
    started.add("pod-a");
    let ann = format!(r#"{EXTRA}=["--fs-bw-size=5M","--fs-ops-size=300"]"#);
    let b = start(&s, &cfg, "pod-b", &["--launch", "rs", "--annotation", &ann]);
    started.add("pod-b");
    // With --config, the build-info series of the configured daemon path (the real daemon).
    let exporter = common::Exporter::start(&state, "1", &["--config", &cfg]);
    let (status, text) = exporter.get("/metrics");
    assert_eq!(status, 200, "{text}");
    let v = env!("CARGO_PKG_VERSION");
    let info = format!(
        "kind=\"rate-limited\",path=\"{}\",version=\"{v}\"",
        daemon_bin().display()
    );
    assert!(
        text.contains(&format!("{BINARY_INFO}{{{info}}} 1\n")),
        "{text}"
    );

    let (ok, said) = common::promtool_check_metrics(&text);
    assert!(
        ok && said.trim().is_empty(),
        "promtool check metrics: {said}\n{text}"
    );
    for family in metrics::ALL.iter().chain(&[
        "virtiofs_sandbox_up",
        "virtiofs_sandbox_scrape_duration_seconds",
        BINARY_INFO,
    ]) {
        assert_eq!(
            text.matches(&format!("# TYPE {family} ")).count(),
            1,
            "{family}: {text}"
        );
        assert_eq!(
            text.matches(&format!("# HELP {family} ")).count(),
            1,
            "{family}: {text}"
        );
    }
    for sb in ["pod-a", "pod-b"] {
        assert!(
            text.contains(&format!("{}{{sandbox=\"{sb}\",", metrics::REQUESTS_TOTAL)),
            "{sb}: {text}"
        );
    }
    // Both daemons are gone once their sandboxes are stopped (none outlives the test).
    drop(started);
    for pid in [&a, &b].map(|v| v["pid"].as_u64().unwrap() as u32) {
        assert!(wait_gone(pid, Duration::from_secs(3)), "daemon {pid} left");
    }
}
