//! SVG of the limited run: throughput per interval and cumulative bytes against the ideal.

use super::*;

pub(crate) fn plot(input: &Path, svg: &Path) -> Result<(), String> {
    use plotters::style::{BLUE, RED};
    use vufs_loadgen::plot::{chart, finish, Axes, Line};
    let j: Value = serde_json::from_str(&fs::read_to_string(input).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let r = &j["report"]["results"][0];
    let iv_ms = r["interval_ms"].as_f64().unwrap_or(100.0);
    let mib: Vec<f64> = r["intervals_mib_s"]
        .as_array()
        .ok_or("no interval series")?
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    let rate = j["limit_bytes_per_s"].as_f64().unwrap_or(10e6);
    let burst = j["burst_bytes"].as_f64().unwrap_or(rate);
    let dt = iv_ms / 1000.0;
    let secs = mib.len() as f64 * dt;
    // Measured: MB/s per interval (decimal MB to match the configured 10M = 10^7 B/s).
    let measured: Vec<(f64, f64)> = mib
        .iter()
        .enumerate()
        .map(|(i, m)| ((i as f64 + 1.0) * dt, m * 1048576.0 / 1e6))
        .collect();
    // Ideal: bucket starts full (burst), refills at `rate`: cumulative bytes admitted by t
    // is at most burst + rate·t; per interval that is the burst in the first one, then
    // the rate.
    let mut cum_meas = Vec::new();
    let mut acc = 0.0;
    for (i, m) in mib.iter().enumerate() {
        acc += m * 1048576.0 * dt;
        cum_meas.push(((i as f64 + 1.0) * dt, acc / 1e6));
    }
    let ideal_cum: Vec<(f64, f64)> = (0..=((secs / dt) as usize))
        .map(|i| {
            let t = i as f64 * dt;
            (t, (burst + rate * t) / 1e6)
        })
        .collect();
    let ymax = measured
        .iter()
        .map(|p| p.1)
        .fold(rate / 1e6 * 1.5, f64::max)
        * 1.1;
    let root = vufs_loadgen::plot::svg(svg, (1000, 700))?;
    let (top, bottom) = root.split_vertically(350);
    let steps: Vec<(f64, f64)> = measured
        .iter()
        .flat_map(|&(t, v)| [(t - dt, v), (t, v)])
        .collect();
    let ideal_rate = vec![
        (0.0, (burst + rate * dt) / dt / 1e6),
        (dt, (burst + rate * dt) / dt / 1e6),
        (dt, rate / 1e6),
        (secs, rate / 1e6),
    ];
    chart(
        &top,
        &format!(
            "ours, --fs-bw-size={} --fs-bw-burst={}: sequential 1 MiB writes, QD 8 — rate per {iv_ms} ms",
            rate / 1e6,
            burst / 1e6
        ),
        Axes {
            x: 0.0..secs,
            y: 0.0..ymax,
            x_desc: "seconds",
            y_desc: "MB/s (10^6)",
        },
        vec![
            Line::new("measured", steps, BLUE),
            Line::new(
                "ideal: burst in the first interval, then the configured rate",
                ideal_rate,
                RED,
            ),
        ],
    )?;
    let cmax = cum_meas
        .last()
        .map(|p| p.1)
        .unwrap_or(0.0)
        .max(ideal_cum.last().map(|p| p.1).unwrap_or(0.0))
        * 1.05;
    chart(
        &bottom,
        "cumulative bytes written vs. the limit burst + rate·t",
        Axes {
            x: 0.0..secs,
            y: 0.0..cmax.max(1.0),
            x_desc: "seconds",
            y_desc: "MB",
        },
        vec![
            Line::new("measured (cumulative)", cum_meas, BLUE),
            Line::new("limit: burst + rate·t", ideal_cum, RED),
        ],
    )?;
    finish(&root)
}
