//! The report's "Node group" section, from `results/group/group.json` (`vufs-group-bench`):
//! per phase, each member's measured rate against its weighted max-min share, and the sum
//! against the group's rate.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};

use super::{load, Goal};

/// A member within this fraction of its share meets the goal (±10 %).
const SHARE_TOLERANCE: f64 = 0.10;

/// Appends the section to `o` (nothing without `group/group.json`), its goals to `goals` and
/// its numbers to `summary["group"]`.
pub(super) fn section(results: &Path, o: &mut String, goals: &mut Vec<Goal>, summary: &mut Value) {
    let Some(g) = load(&results.join("group").join("group.json")) else {
        return;
    };
    let rate = g["group_rate_mib_s"].as_f64().unwrap_or(0.0);
    let members: Vec<String> = g["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            format!(
                "{} from {} s to {} s",
                m["name"].as_str().unwrap_or("?"),
                m["start_s"],
                m["stop_s"]
            )
        })
        .collect();
    let _ = writeln!(
        o,
        "## Node group\n\n![each member's rate and the sum per 100 ms](results/group/group.svg)\n\n\
         Three daemons in one group of {rate} MiB/s (`--fs-group`), one generator each \
         (sequential reads, queue depth 8), backlogged {} ([`results/group/group.json`](results/group/group.json)). \
         In each phase (its first second left out while the shares settle) a backlogged member's \
         ideal is its weighted max-min share of the group's rate; the members' shares add up to \
         99 % of it by design (the local buckets bind, the shared one keeps 1 % slack). \
         The spikes above the rate as a member starts are the group's burst; a member that \
         stops keeps its share until its lease runs out (500 ms and a tick), the dip after it.\n\n\
         | phase | member | weight | ideal MiB/s | measured MiB/s | measured/ideal |\n|---|---|---|---|---|---|",
        members.join(", ")
    );
    let mut rows = Vec::new();
    let mut max_sum: f64 = 0.0;
    for p in g["phases"].as_array().into_iter().flatten() {
        let span = format!("{}–{} s", p["from_s"], p["to_s"]);
        // The largest deviation from a share, with its sign.
        let mut worst: f64 = 0.0;
        for m in p["members"].as_array().into_iter().flatten() {
            let ratio = m["ratio"].as_f64().unwrap_or(0.0);
            if (ratio - 1.0).abs() > worst.abs() {
                worst = ratio - 1.0;
            }
            let _ = writeln!(
                o,
                "| {span} | {} | {} | {:.2} | {:.2} | {ratio:.3} |",
                m["name"].as_str().unwrap_or("?"),
                m["weight"],
                m["ideal_mib_s"].as_f64().unwrap_or(0.0),
                m["measured_mib_s"].as_f64().unwrap_or(0.0),
            );
        }
        let sum = p["sum_mib_s"].as_f64().unwrap_or(0.0);
        let sum_ratio = p["sum_ratio"].as_f64().unwrap_or(0.0);
        let _ = writeln!(
            o,
            "| {span} | **sum** | | {rate:.2} (group rate) | {sum:.2} | {sum_ratio:.3} |"
        );
        goals.push(Goal(
            format!("node group, {span}: every member within ±10 % of its share"),
            format!("worst {:+.1} %", worst * 100.0),
            Some(worst.abs() <= SHARE_TOLERANCE),
        ));
        max_sum = max_sum.max(sum_ratio);
        rows.push(json!({"phase": span, "worst_share_error": worst, "sum_ratio": sum_ratio}));
    }
    goals.push(Goal(
        "node group: the sum at or below the group's rate in every phase".into(),
        format!("at most {:.1} % of it", max_sum * 100.0),
        Some(max_sum <= 1.0),
    ));
    let _ = writeln!(
        o,
        "\nCommand: `{}`\n",
        g["command"].as_str().unwrap_or("vufs-group-bench")
    );
    summary["group"] = json!({ "group_rate_mib_s": rate, "phases": rows });
}
