//! configs/monitoring against the real exporter: every series the alert rules and the Grafana
//! dashboard name is in a live scrape of `virtiofs-sandbox metrics` over a real daemon, both
//! scrapes pass `promtool check metrics`, and every dashboard expression parses (promtool).

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use common::{cli, daemon_bin, json_out, Scratch};
use limits_api::wire::metrics;
use runtime_integration::api::Client;

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

#[test]
fn every_series_the_rules_and_dashboard_name_is_in_a_live_scrape() {
    let s = Scratch::new();
    // The daemon is a member of a node group, so the group families are served too (the
    // group file lives in a directory only root can write, as the daemon requires).
    let gdir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(gdir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let extra = format!(
        "[\"--fs-bw-burst=20000000\", \"--fs-bw-size=10000000\", \"--fs-group={}\", \
         \"--fs-group-bw-size=50000000\", \"--pod-args-follow\"]",
        gdir.path().join("group").display()
    );
    let cfg = common::write_config(
        s.dir.path(),
        &daemon_bin(),
        &[("virtio_fs_extra_args", extra.as_str())],
    );
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
    let exporter = common::Exporter::start(&state, "5", &["--config", &cfg]);
    let (status, node) = exporter.get("/metrics");
    assert_eq!(status, 200, "{node}");
    let daemon = Client::new(&api).metrics().unwrap();
    for (what, text) in [("exporter", &node), ("daemon", &daemon)] {
        let (ok, said) = common::promtool(&["check", "metrics"], text);
        assert!(
            ok && said.trim().is_empty(),
            "{what}: promtool check metrics: {said}\n{text}"
        );
    }

    for family in metrics::GROUP_ALL {
        assert!(
            node.contains(&format!("# TYPE {family} ")),
            "the group member's {family} is not in the node scrape:\n{node}"
        );
    }
    let served = served_series(&node);
    let mut checked = 0;
    for file in ["virtiofs-alerts.yml", "virtiofs-dashboard.json"] {
        let text = std::fs::read_to_string(monitoring(file)).unwrap();
        let named = named_series(&text);
        assert!(named.len() >= 5, "{file} names {named:?}");
        for name in named {
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
    let (ok, said) = common::promtool(&["check", "rules", f.to_str().unwrap()], "");
    assert!(
        ok,
        "promtool check rules on the dashboard's expressions: {said}\n{rules}"
    );
    assert!(
        said.contains(&format!("SUCCESS: {n} rules found")),
        "{said}"
    );
}
