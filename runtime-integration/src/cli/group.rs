//! `virtiofs-sandbox group PATH [--fs-group-*]`: show a node group's state (the live budget,
//! the shared levels, every live member's weight, demand, share, bytes and waits) and change
//! its live budget from the node, for every member at once.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use clap::Args;
use ratelimit::group::file::{self, monotonic_ns};
use ratelimit::group::layout::slot;
use ratelimit::group::{live, Budget, Member, SLOTS};
use ratelimit::Limit;
use serde_json::{json, Value};

/// The `group` subcommand's arguments.
#[derive(Debug, Args)]
pub struct GroupCmd {
    /// The group's state file (as given to the daemons' --fs-group).
    pub path: PathBuf,
    /// New live rate of the group's bw bucket (bytes/s).
    #[arg(long, value_parser = ratelimit::parse_quantity)]
    pub fs_group_bw_size: Option<u64>,
    /// New live burst of the group's bw bucket.
    #[arg(long, value_parser = ratelimit::parse_quantity)]
    pub fs_group_bw_burst: Option<u64>,
    /// New live rate of the group's ops bucket (requests/s).
    #[arg(long, value_parser = ratelimit::parse_quantity)]
    pub fs_group_ops_size: Option<u64>,
    /// New live burst of the group's ops bucket.
    #[arg(long, value_parser = ratelimit::parse_quantity)]
    pub fs_group_ops_burst: Option<u64>,
}

fn changed(cur: Limit, size: Option<u64>, burst: Option<u64>) -> Result<Limit, String> {
    if size.is_none() && burst.is_none() {
        return Ok(cur);
    }
    if cur.is_unlimited() {
        return Err("the group was created without this bucket".into());
    }
    let size = size.unwrap_or(cur.size);
    let burst = burst.unwrap_or(if size == cur.size { cur.burst } else { size });
    if size == 0 || burst == 0 {
        return Err("a group bucket cannot be removed live (size and burst must be > 0)".into());
    }
    Ok(Limit::with_burst(size, burst))
}

/// Runs the subcommand: prints the group as JSON; exit 0, or 2 for a refused file or value.
pub fn run(a: GroupCmd) -> i32 {
    let mapped = match file::open(&a.path) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("virtiofs-sandbox: error: {e}");
            return 2;
        }
    };
    let creation = file::creation(&mapped.region);
    let mut node = Member::new(mapped.region, 1, creation, mapped.epoch, 1);
    let cur = node.budget();
    let new = changed(cur.bw, a.fs_group_bw_size, a.fs_group_bw_burst)
        .map_err(|e| format!("--fs-group-bw-*: {e}"))
        .and_then(|bw| {
            changed(cur.ops, a.fs_group_ops_size, a.fs_group_ops_burst)
                .map(|ops| Budget { bw, ops })
                .map_err(|e| format!("--fs-group-ops-*: {e}"))
        });
    match new {
        Ok(new) if !node.believes(&new) => {
            eprintln!(
                "virtiofs-sandbox: error: {}: every value must be within 1/{f}..{f} times the \
                 group's creation value",
                file::show(&new),
                f = ratelimit::group::LIVE_FACTOR
            );
            return 2;
        }
        Ok(new) if new != cur => node.set_budget(new, monotonic_ns()),
        Ok(_) => {}
        Err(e) => {
            eprintln!("virtiofs-sandbox: error: {e}");
            return 2;
        }
    }
    let out = snapshot(&node, &mapped, creation, &a.path);
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    0
}

fn snapshot(node: &Member, m: &file::Mapped, creation: Budget, path: &std::path::Path) -> Value {
    let now = monotonic_ns();
    let since = now.saturating_sub(m.epoch);
    let levels = node.levels(now);
    let b = node.budget();
    let bucket =
        |l: Limit, level: Option<i64>| json!({"size": l.size, "burst": l.burst, "level": level});
    let r = &m.region;
    let members: Vec<Value> = (0..SLOTS)
        .filter(|s| live(r, *s, since))
        .map(|s| {
            let w = |i: usize| r.slot(s, i).load(Ordering::Relaxed);
            json!({
                "slot": s,
                "weight": w(slot::WEIGHT),
                "demand": {"bw": w(slot::DEMAND), "ops": w(slot::DEMAND + 1)},
                "share": {"bw": w(slot::SHARE), "ops": w(slot::SHARE + 1)},
                "bytes": w(slot::BYTES),
                "requests": w(slot::OPS),
                "waits": w(slot::WAITS),
                "wait_seconds": w(slot::WAIT_NS) as f64 / 1e9,
            })
        })
        .collect();
    json!({
        "path": path.display().to_string(),
        "creation": {"bw": bucket(creation.bw, None), "ops": bucket(creation.ops, None)},
        "live": {"bw": bucket(b.bw, levels[0]), "ops": bucket(b.ops, levels[1])},
        "members": members,
    })
}
