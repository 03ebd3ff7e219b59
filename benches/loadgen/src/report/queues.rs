//! The queue-scaling sections of `RESULTS.md`: ours with 1, 2 and 4 request queues against
//! upstream on the host (`queues.json`), and the 2-vCPU guest with 1 vs 2 queues
//! (`guest-queues.json`), each with a generated paragraph on what the numbers mean here and
//! what to expect on a larger host.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{json, Value};

use super::cells::*;

/// The workloads of the queue tier, with the metric rows shown for each.
const ROWS: [(&str, &str, &str); 2] = [
    ("iops", "IOPS", "iops"),
    ("cpu_us_per_op", "daemon CPU µs/request", "cpu_us_per_op"),
];

fn median(t: Option<(f64, f64, f64)>) -> Option<f64> {
    t.map(|(_, m, _)| m)
}

/// The host queue-scaling section (nothing without `queues.json`).
pub(super) fn host(q: &Value, o: &mut String, summary: &mut Value) {
    let st = &q["settings"];
    let counts: Vec<u64> = st["queues"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let pools: Vec<u64> = st["pools"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let workloads: Vec<&str> = st["workloads"].as_str().unwrap_or("").split(',').collect();
    let s = host_series(q);
    let get = |v: &str, p: u64, w: &str, m: &str| mmm(s.get(&(v.into(), p, w.into(), m.into())));
    let name = |n: u64| format!("ours-q{n}");
    let (lo, hi) = (
        counts.first().copied().unwrap_or(1),
        counts.last().copied().unwrap_or(1),
    );
    let _ = writeln!(
        o,
        "## Queue scaling: ours with {} request queues vs upstream (1 queue)\n\n\
         `vufs-loadgen --queues N`: one submitter thread per request queue, each with queue depth {} \
         (so N queues keep N × {} requests in flight), {} s measured after {} s warm-up per workload, \
         {} rounds with the variants' order rotated every round, a fresh daemon per run \
         (ours with `--max-request-queues=N`), daemon pinned to CPU {} and every generator thread \
         to CPU {}, as in the host tier. Cells: min / **median** / max; ratios of medians with the \
         range of the per-round ratios. Daemon CPU per request is the daemon's CPU time (all its \
         threads) over the measured window divided by the requests completed in it.\n",
        counts.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", "),
        st["qd"], st["qd"], st["duration_s"], st["warmup_s"], st["rounds"],
        st["daemon_cpu"], st["generator_cpu"]
    );
    let mut head = String::from("| workload | metric |");
    let mut sep = String::from("|---|---|");
    for n in &counts {
        let _ = write!(head, " ours {n} q |");
        sep += "---|";
    }
    head += " upstream (1 q) |";
    sep += "---|";
    for n in counts.iter().filter(|&&n| n != lo) {
        let _ = write!(head, " {n} q / {lo} q |");
        sep += "---|";
    }
    let _ = write!(head, " ours {hi} q / upstream |");
    sep += "---|";
    for &p in &pools {
        let _ = writeln!(o, "### Thread pool {p}\n\n{head}\n{sep}");
        for w in &workloads {
            for (mk, ml, path) in ROWS {
                let mut line = format!("| {w} | {ml} |");
                for &n in &counts {
                    let _ = write!(line, " {} |", fmt_mmm(get(&name(n), p, w, mk)));
                }
                let up = get("upstream", p, w, mk);
                let _ = write!(line, " {} |", fmt_mmm(up));
                let path: &[&str] = if mk == "iops" {
                    &["iops"]
                } else {
                    &["daemon", path]
                };
                for &n in counts.iter().filter(|&&n| n != lo) {
                    let r = ratio(get(&name(n), p, w, mk), get(&name(lo), p, w, mk));
                    let rr = round_range(q, &name(n), &name(lo), p, w, path);
                    let _ = write!(line, " {} |", fmt_ratio_range(r, rr));
                    summary["queues"][format!("pool{p}")][*w][format!("{mk}_q{n}_over_q{lo}")] =
                        json!(r);
                }
                let r = ratio(get(&name(hi), p, w, mk), up);
                let rr = round_range(q, &name(hi), "upstream", p, w, path);
                let _ = write!(line, " {} |", fmt_ratio_range(r, rr));
                summary["queues"][format!("pool{p}")][*w][format!("{mk}_q{hi}_over_upstream")] =
                    json!(r);
                let _ = writeln!(o, "{line}");
            }
        }
        let _ = writeln!(o);
    }
    // Request queues that carried nothing, errors, failed runs.
    let mut problems = Vec::new();
    for r in q["runs"].as_array().into_iter().flatten() {
        let what = format!(
            "round {} {} pool {}",
            r["round"],
            r["variant"].as_str().unwrap_or(""),
            r["pool"]
        );
        if r["loadgen_status"].as_i64() != Some(0) {
            problems.push(format!("{what}: loadgen exit {}", r["loadgen_status"]));
        }
        for w in r["report"]["results"].as_array().into_iter().flatten() {
            for x in w["queues"].as_array().into_iter().flatten() {
                if x["ops"].as_u64() == Some(0) {
                    problems.push(format!(
                        "{what} {}: request queue {} carried nothing",
                        w["workload"].as_str().unwrap_or(""),
                        x["queue"]
                    ));
                }
            }
        }
    }
    let _ = writeln!(
        o,
        "Request or verification errors, failed runs, idle request queues: {}.\n",
        if problems.is_empty() {
            "none".into()
        } else {
            problems.join("; ")
        }
    );
    // The generated paragraph.
    let p0 = pools.first().copied().unwrap_or(0);
    let m = |v: &str, w: &str, k: &str| median(get(v, p0, w, k));
    let fmt = |x: Option<f64>| x.map(fmt_num).unwrap_or_else(|| "–".into());
    let rr = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".into(),
    };
    let nproc = q["machine"]["nproc"].as_u64().unwrap_or(0);
    // Share of the daemon's core in use: requests/s × CPU seconds per request.
    let busy = |v: &str| match (
        m(v, "rand-read", "iops"),
        m(v, "rand-read", "cpu_us_per_op"),
    ) {
        (Some(i), Some(c)) => format!("{:.0} %", i * c / 1e4),
        _ => "–".into(),
    };
    let _ = writeln!(
        o,
        "**What this means.** This machine has {nproc} cores: the daemon gets one (CPU {}) and the \
         generator's submitter threads the other, so here more request queues cannot give the \
         daemon more CPU; they give it more requests in flight (N × {}) and more threads sharing \
         its core. With pool {p0}, 4 KiB random read went from {} IOPS with {lo} queue to {} with \
         {hi} ({}), at {} → {} µs of daemon CPU per request, which kept the daemon's core busy \
         {} → {} of the time (IOPS × CPU per request){}. Upstream, which serves one queue, did {} IOPS at {} µs \
         ({} busy). The CPU per request is the number that carries over to a larger host: it says \
         what one request costs whichever queue it arrives on.{}\n\n\
         On a larger host the daemon is not pinned to one core. Ours pops each request queue on its \
         own vring thread (with `--thread-pool-size=0` that thread also serves the request), so \
         N queues can keep up to N cores busy; a Linux ≥ 6.11 guest maps its request queues to its \
         vCPUs (`virtio_fs_map_queues`), so vCPUs submitting at once do not share one ring, one \
         lock and one notification. Upstream has one request queue and one vring thread: its rate \
         stops at what one core can pop and serve (pool 0) or hand off (pool ≥ 1), whatever the \
         guest's vCPU count. Expect ours to scale with min(queues, guest vCPUs submitting, host \
         cores free for the daemon) until the host filesystem or a shared worker pool (pool ≥ 1 \
         puts every queue's requests in one pool) is the limit. That is an expectation from the \
         design, not a measurement: this 2-core machine cannot show it.\n",
        st["daemon_cpu"],
        st["qd"],
        fmt(m(&name(lo), "rand-read", "iops")),
        fmt(m(&name(hi), "rand-read", "iops")),
        rr(
            m(&name(hi), "rand-read", "iops"),
            m(&name(lo), "rand-read", "iops")
        ),
        fmt(m(&name(lo), "rand-read", "cpu_us_per_op")),
        fmt(m(&name(hi), "rand-read", "cpu_us_per_op")),
        busy(&name(lo)),
        busy(&name(hi)),
        match (m(&name(lo), "rand-read", "iops"), m(&name(lo), "rand-read", "cpu_us_per_op")) {
            (Some(i), Some(c)) if i * c / 1e6 < 0.8 =>
                ": with one queue the daemon was mostly waiting for requests, not short of CPU",
            _ => "",
        },
        fmt(m("upstream", "rand-read", "iops")),
        fmt(m("upstream", "rand-read", "cpu_us_per_op")),
        busy("upstream"),
        slower(&pools, &workloads, &|v, p, w, k| median(get(v, p, w, k)), &name(lo), &name(hi)),
    );
    if let Some(c) = q["example_command"].as_str() {
        let _ = writeln!(
            o,
            "One queue-scaling run, exactly as executed:\n\n```\n{c}\n```\n"
        );
    }
}

/// A sentence naming the (pool, workload) cells where `hi` queues were slower than `lo`,
/// with the change in CPU per request; empty if none.
fn slower(
    pools: &[u64],
    workloads: &[&str],
    get: &dyn Fn(&str, u64, &str, &str) -> Option<f64>,
    lo: &str,
    hi: &str,
) -> String {
    let mut cells = Vec::new();
    for &p in pools {
        for w in workloads {
            let (Some(a), Some(b)) = (get(hi, p, w, "iops"), get(lo, p, w, "iops")) else {
                continue;
            };
            if b > 0.0 && a < b * 0.95 {
                let cpu = match (
                    get(hi, p, w, "cpu_us_per_op"),
                    get(lo, p, w, "cpu_us_per_op"),
                ) {
                    (Some(x), Some(y)) if y > 0.0 => format!(", CPU per request {:.2}×", x / y),
                    _ => String::new(),
                };
                cells.push(format!("{w} at pool {p} ({:.2}×{cpu})", a / b));
            }
        }
    }
    if cells.is_empty() {
        return String::new();
    }
    format!(
        " More queues were slower for {}: likely because their threads take turns on the daemon's \
         one core and each switch costs CPU (not profiled here).",
        cells.join(", ")
    )
}

/// A sentence for the guest jobs where 2 queues were slower than 1; empty if none.
fn guest_slower(m: &dyn Fn(&str, &str, &str) -> Option<f64>) -> String {
    let mut cells = Vec::new();
    for j in ["rand-read", "rand-write"] {
        if let (Some(a), Some(b)) = (m("ours-q2", j, "iops"), m("ours-q1", j, "iops")) {
            if b > 0.0 && a < b * 0.95 {
                let cpu = match (m("ours-q2", j, "cpu"), m("ours-q1", j, "cpu")) {
                    (Some(x), Some(y)) if y > 0.0 => format!(", CPU per request {:.2}×", x / y),
                    _ => String::new(),
                };
                cells.push(format!("{j} ({:.2}×{cpu})", a / b));
            }
        }
    }
    if cells.is_empty() {
        return String::new();
    }
    format!(
        " Two queues were slower here for {}. The daemon's own cost does not explain it where \
         its CPU per request fell, and it was idle most of the time; the cause was not profiled. \
         Under TCG the two vCPU threads and the daemon's threads share the same 2 cores, so \
         anything that makes the guest's or QEMU's side busier shows in the rate.",
        cells.join(", ")
    )
}

/// The guest 1-vs-2-queue section (nothing without `guest-queues.json`).
pub(super) fn guest(g: &Value, o: &mut String, summary: &mut Value) {
    let st = &g["settings"];
    // (variant, job, metric) → values over rounds; per round for the ratios.
    let mut s: BTreeMap<(String, String, String), Vec<f64>> = BTreeMap::new();
    let mut by_round: BTreeMap<(u64, String, String), f64> = BTreeMap::new();
    let mut failures = Vec::new();
    for r in g["runs"].as_array().into_iter().flatten() {
        let var = r["variant"].as_str().unwrap_or("?").to_string();
        let round = r["round"].as_u64().unwrap_or(0);
        if let Some(e) = r["error"].as_str() {
            failures.push(format!(
                "round {round} {var}: {}",
                e.lines().next().unwrap_or("")
            ));
        }
        for (job, v) in r["jobs"].as_object().into_iter().flatten() {
            let mut put = |k: &str, x: Option<f64>| {
                if let Some(x) = x {
                    s.entry((var.clone(), job.clone(), k.into()))
                        .or_default()
                        .push(x);
                    by_round.insert((round, var.clone(), format!("{job}/{k}")), x);
                }
            };
            put("iops", v["iops"].as_f64());
            put("cpu", v["cpu_us_per_request"].as_f64());
            let pq: Vec<f64> = v["requests_per_queue"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_f64)
                .collect();
            let total: f64 = pq.iter().sum();
            if pq.len() >= 2 && total > 0.0 {
                put("share1", Some(pq[0] / total * 100.0));
                put("share2", Some(pq[1] / total * 100.0));
            }
        }
    }
    let _ = writeln!(
        o,
        "## Guest: 1 vs 2 request queues ({} + Linux {}, {})\n\n\
         {} vCPUs, fio `numjobs={}` with `cpus_allowed=0-1` and `cpus_allowed_policy=split` (one job \
         pinned to each vCPU), `direct=1`, libaio, iodepth 8 per job, 4 KiB blocks, {} s per job; \
         ours with `{}`, not pinned; the guest's device with `num-request-queues=1` or `=2`. \
         {} rounds, the two variants' order alternating. The daemon's CPU time and its per-queue \
         request counts (`GET /api/v1/stats`) are read when each job starts and ends (the guest \
         signals both), so CPU per request covers exactly the job. Cells: min / **median** / max.\n",
        st["qemu"].as_str().unwrap_or("QEMU ?"),
        st["kernel"].as_str().unwrap_or("?"),
        st["accel"].as_str().unwrap_or("tcg").to_uppercase(),
        st["vcpus"],
        st["numjobs"],
        st["runtime_s"],
        st["common_args"].as_str().unwrap_or(""),
        st["rounds"]
    );
    let _ = writeln!(
        o,
        "| job | metric | 1 queue | 2 queues | 2 q / 1 q (per-round range) |\n|---|---|---|---|---|"
    );
    let jobs = ["rand-read", "rand-write"];
    for j in jobs {
        for (k, l) in [
            ("iops", "IOPS"),
            ("cpu", "daemon CPU µs/request"),
            ("share1", "% of requests on queue 1"),
            ("share2", "% of requests on queue 2"),
        ] {
            let a = mmm(s.get(&("ours-q1".into(), j.into(), k.into())));
            let b = mmm(s.get(&("ours-q2".into(), j.into(), k.into())));
            if a.is_none() && b.is_none() {
                continue;
            }
            let r = ratio(b, a);
            let per_round: Vec<f64> = by_round
                .iter()
                .filter(|((_, v, m), _)| v == "ours-q2" && m == &format!("{j}/{k}"))
                .filter_map(|((round, _, m), x)| {
                    by_round
                        .get(&(*round, "ours-q1".into(), m.clone()))
                        .filter(|y| **y > 0.0)
                        .map(|y| x / y)
                })
                .collect();
            let range = crate::stats::min_med_max(&per_round).map(|(lo, _, hi)| (lo, hi));
            let _ = writeln!(
                o,
                "| {j} | {l} | {} | {} | {} |",
                fmt_mmm(a),
                fmt_mmm(b),
                if a.is_some() {
                    format!("{} ({})", fmt_ratio(r), fmt_range(range))
                } else {
                    "–".into()
                }
            );
            summary["guest_queues"][j][k] = json!(r);
        }
    }
    let m = |v: &str, j: &str, k: &str| median(mmm(s.get(&(v.into(), j.into(), k.into()))));
    let fmt = |x: Option<f64>| x.map(fmt_num).unwrap_or_else(|| "–".into());
    let busy = |v: &str| match (m(v, "rand-read", "iops"), m(v, "rand-read", "cpu")) {
        (Some(i), Some(c)) => format!("{:.0} %", i * c / 1e4),
        _ => "–".into(),
    };
    let _ = writeln!(
        o,
        "\nFailed guest runs: {}.\n\n\
         **What this means.** With 2 queues the guest spread its requests over both (queue 1 / \
         queue 2: {} % / {} % of the random reads), so each job's vCPU has its own ring and the \
         daemon a vring thread per queue. Random read: {} IOPS with 1 queue, {} with 2, at {} and \
         {} µs of daemon CPU per request, so the daemon was busy {} and {} of one core. Here the \
         guest runs under {} on the same 2 host cores as the daemon: each vCPU is a QEMU thread \
         that emulates the guest's instructions, so with the daemon that idle the guest is what \
         limits the rate, and the rate says little about a KVM host.{} \
         What carries over is that both queues are used and what a request costs the daemon. On a \
         KVM host with more cores, the 2-queue guest's vCPUs submit without sharing a ring, and the \
         daemon's two vring threads run on two cores, where one queue funnels both vCPUs' requests \
         through one thread: expect 2 queues to pay off as more vCPUs do I/O at once (a \
         KVM measurement would settle it; TCG here cannot).\n",
        if failures.is_empty() {
            "none".into()
        } else {
            failures.join("; ")
        },
        fmt(m("ours-q2", "rand-read", "share1")),
        fmt(m("ours-q2", "rand-read", "share2")),
        fmt(m("ours-q1", "rand-read", "iops")),
        fmt(m("ours-q2", "rand-read", "iops")),
        fmt(m("ours-q1", "rand-read", "cpu")),
        fmt(m("ours-q2", "rand-read", "cpu")),
        busy("ours-q1"),
        busy("ours-q2"),
        st["accel"].as_str().unwrap_or("tcg").to_uppercase(),
        guest_slower(&|v, j, k| m(v, j, k)),
    );
}
