//! Memory over a long PAC run of a tiny BERT, through `pac-wgpu train`: the slope of resident
//! memory (and, on wgpu, device memory in use) after warm-up, in % of its mean per 1 000 steps,
//! fitted by least squares over the epochs of history.jsonl. Target: at most 1 %.
//!
//!     cargo build --release && cargo run --release --example bench_memory -- --json mem.json
//!     cargo run --release --example bench_memory -- --device 0 --steps 300

#[path = "../tests/common/tiny.rs"]
#[allow(dead_code)]
mod tiny;

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::Parser;
use common::{git_revision, write_report};
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// Devices to run on, each a run: cpu or a wgpu adapter index.
    #[arg(long, default_value = "cpu", value_delimiter = ',')]
    device: Vec<String>,
    /// Optimiser steps per run (10 per epoch), per device in the order of --device.
    #[arg(long, default_value = "2000", value_delimiter = ',')]
    steps: Vec<usize>,
    /// Epochs of warm-up left out of the fit.
    #[arg(long, default_value_t = 5)]
    warmup_epochs: usize,
    /// Also write the results here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let tmp = std::env::temp_dir().join(format!("pac-wgpu-bench-memory-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    tiny::write_model(&tmp.join("tiny-bert"), 3, |_| {});
    tiny::write_toy_sst2(&tmp);
    println!("| device | steps | key | first MiB | last MiB | slope %/1000 steps |");
    println!("|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for (i, device) in args.device.iter().enumerate() {
        let steps = *args.steps.get(i).or(args.steps.last()).unwrap_or(&2000);
        let history = train(&tmp, device, steps)?;
        for key in ["rss_bytes", "device_bytes_in_use"] {
            let Some(fit) = fit(&history, key, args.warmup_epochs) else {
                continue;
            };
            println!(
                "| {device} | {steps} | {key} | {:.1} | {:.1} | {:+.3} |",
                fit.first / 1048576.0,
                fit.last / 1048576.0,
                fit.slope_percent
            );
            rows.push(json!({
                "device": device, "steps": steps, "key": key,
                "first_bytes": fit.first, "last_bytes": fit.last,
                "slope_percent_per_1000_steps": fit.slope_percent,
            }));
        }
    }
    std::fs::remove_dir_all(&tmp).ok();
    let report = json!({ "revision": git_revision(), "runs": rows });
    write_report(args.json.as_deref(), &report)
}

/// Trains PAC on the toy SST-2 (20 examples, 2 per step) for `steps` steps; its history.
fn train(tmp: &Path, device: &str, steps: usize) -> Result<Vec<Value>> {
    let exe = std::env::current_exe()?;
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("pac-wgpu"))
        .context("cannot find target/release")?;
    let out = tmp.join(format!("run-{device}"));
    let epochs = steps.div_ceil(10).max(2);
    let status = Command::new(&binary)
        .args([
            "train",
            "--task",
            "sst2",
            "--quiet",
            "--overwrite",
            "--device",
            device,
        ])
        .args(["--train-size", "0", "--batch-size", "2", "--seed", "1"])
        .args(["--epochs", &epochs.to_string()])
        .args(["--stage1-epochs", &(epochs * 4 / 5).to_string()])
        .args([
            "--eval-every-epochs",
            "50",
            "--save-interval",
            "3600",
            "--model",
        ])
        .arg(tmp.join("tiny-bert"))
        .arg("--data-dir")
        .arg(tmp)
        .arg("--output-dir")
        .arg(&out)
        .status()
        .with_context(|| {
            format!(
                "cannot run {} (cargo build --release first)",
                binary.display()
            )
        })?;
    if !status.success() {
        bail!("the {device} run failed ({status})");
    }
    let text = std::fs::read_to_string(out.join("history.jsonl"))?;
    text.lines()
        .map(|l| serde_json::from_str(l).context("history.jsonl"))
        .collect()
}

struct Fit {
    first: f64,
    last: f64,
    slope_percent: f64,
}

/// The least-squares slope of `key` against the step, after `warmup` epochs, per 1 000 steps
/// in % of its mean.
fn fit(history: &[Value], key: &str, warmup: usize) -> Option<Fit> {
    let points: Vec<(f64, f64)> = history
        .iter()
        .skip(warmup)
        .filter_map(|r| Some((r["step"].as_f64()?, r[key].as_f64()?)))
        .collect();
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = points.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
    Some(Fit {
        first: points[0].1,
        last: points[points.len() - 1].1,
        slope_percent: sxy / sxx * 1000.0 / my * 100.0,
    })
}
