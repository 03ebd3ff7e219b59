//! `virtiofs-sandbox group PATH`: shows a node group of real daemons and changes its live
//! budget from the node; refuses a file it does not expect and values the members would not
//! believe.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{cli, json_out};
use vufs_testkit::api::json;
use vufs_testkit::Scratch;

#[test]
fn the_node_shows_and_changes_a_group() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let path = dir.path().join("group");
    let p = path.display().to_string();
    let s = Scratch::new();
    let _d = s.start_with_api(&[
        "--sandbox=none",
        &format!("--fs-group={p}"),
        "--fs-group-bw-size=10M",
        "--fs-weight=300",
    ]);
    let out = cli(&["group", &p]);
    assert!(out.status.success(), "{out:?}");
    let v = json_out(&out);
    assert_eq!(v["creation"]["bw"]["size"], 10_000_000, "{v}");
    assert_eq!(v["live"]["bw"]["size"], 10_000_000, "{v}");
    // From the node: the member sees the new live budget at once.
    let out = cli(&["group", &p, "--fs-group-bw-size=30M"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(json_out(&out)["live"]["bw"]["size"], 30_000_000);
    let (st, g) = json(&s.api_socket(), "GET", "/api/v1/group", "");
    assert_eq!(st, 200);
    assert_eq!(g["bw"]["size"], 30_000_000, "{g}");
    assert_eq!(g["weight"], 300, "{g}");
    // Values the members would not believe (beyond 64x the creation value) are refused.
    let out = cli(&["group", &p, "--fs-group-bw-size=1000M"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("within 1/64..64"));
    // A group bucket created unlimited cannot be added live.
    let out = cli(&["group", &p, "--fs-group-ops-size=5"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // A file with the wrong mode is refused, naming it.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = cli(&["group", &p]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("mode 644"));
}
