//! AdamW's update of every trainable tensor of a model's shapes: the library's fused op
//! (shaders/adamw.wgsl, its CPU twin) against the same step in Burn's tensor operations (14 per
//! tensor), interleaved round by round on each device. Prints launches and milliseconds per
//! step, and the fused op's time as a ratio of the unfused one.
//!
//!     cargo run --release --example bench_adamw -- --device cpu,0 --shapes small,bert-base

#[path = "../tests/common/adamw_ops.rs"]
mod adamw_ops;

mod common;

use std::time::Instant;

use adamw_ops::adamw_by_tensor_ops;
use anyhow::{Result, anyhow, bail};
use burn::tensor::{Device, Distribution, Tensor};
use clap::Parser;
use common::{git_revision, median, sync, write_report};
use pac_wgpu::optim::{AdamW, AdamWConfig};
use pac_wgpu::util::device::{DeviceChoice, select};
use pac_wgpu::util::kernel::watch::LaunchCount;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// Devices, each cpu or a wgpu adapter index (`pac-wgpu devices`).
    #[arg(long, default_value = "cpu", value_delimiter = ',')]
    device: Vec<DeviceChoice>,
    /// Models whose trainable tensors are updated: small (hidden 128, 2 layers) or bert-base.
    #[arg(long, default_value = "small", value_delimiter = ',')]
    shapes: Vec<String>,
    /// Timed steps of each variant.
    #[arg(long, default_value_t = 16)]
    steps: usize,
    /// Also write the results here as JSON.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// Element counts of a BERT encoder's trainable tensors and a 2-way linear head.
fn numels(shapes: &str) -> Result<Vec<usize>> {
    let (hidden, layers) = match shapes {
        "small" => (128, 2),
        "bert-base" => (768, 12),
        other => return Err(anyhow!("--shapes {other}: expected small or bert-base")),
    };
    let ffn = 4 * hidden;
    let (h, f) = (hidden, ffn);
    let layer = [
        h * h,
        h,
        h * h,
        h,
        h * h,
        h,
        h * h,
        h,
        h,
        h,
        h * f,
        f,
        f * h,
        h,
        h,
        h,
    ];
    let mut all: Vec<usize> = (0..layers).flat_map(|_| layer).collect();
    all.extend([2 * h, 2]);
    Ok(all)
}

/// One step's state of either variant: θ, and the moments after the first step.
struct State {
    theta: Vec<Tensor<1>>,
    moments: Vec<Option<(Tensor<1>, Tensor<1>)>>,
    step: i32,
}

const LR: f64 = 5e-5;

/// Each tensor goes to the update by value, as the training step hands it over: nothing else
/// holds it, so the fused op and Burn's operations may work in place.
fn step_fused(adam: &mut AdamW, theta: &mut Vec<Tensor<1>>, grads: &[Tensor<1>]) {
    adam.begin_step();
    *theta = std::mem::take(theta)
        .into_iter()
        .zip(grads)
        .enumerate()
        .map(|(j, (t, g))| adam.update(j, t, g.clone(), LR))
        .collect();
}

fn step_unfused(state: &mut State, grads: &[Tensor<1>], config: AdamWConfig) {
    state.step += 1;
    let thetas = std::mem::take(&mut state.theta).into_iter().zip(grads);
    for (j, (theta, g)) in thetas.enumerate() {
        let moments = state.moments[j].take();
        let [theta, m, v] = adamw_by_tensor_ops(theta, g.clone(), moments, config, state.step, LR);
        state.theta.push(theta);
        state.moments[j] = Some((m, v));
    }
}

/// Milliseconds and launches of `f`, the device synchronised after it.
fn timed(device: &Device, f: impl FnOnce()) -> Result<(f64, u64)> {
    let count = LaunchCount::start();
    let start = Instant::now();
    f();
    sync(device)?;
    Ok((start.elapsed().as_secs_f64() * 1e3, count.total()))
}

fn bench(device: &Device, numels: &[usize], steps: usize) -> Result<Value> {
    let config = AdamWConfig::default();
    let random = |n: usize| Tensor::<1>::random([n], Distribution::Normal(0.0, 0.02), device);
    let theta: Vec<Tensor<1>> = numels.iter().map(|&n| random(n)).collect();
    let grads: Vec<Tensor<1>> = numels.iter().map(|&n| random(n)).collect();
    let mut adam = AdamW::new(config, numels.len());
    let mut fused_theta: Vec<Tensor<1>> = theta.iter().map(|t| t.clone() * 1.0).collect();
    let mut unfused = State {
        theta,
        moments: vec![None; numels.len()],
        step: 0,
    };
    // The first step of each compiles its kernels and creates the moments.
    step_fused(&mut adam, &mut fused_theta, &grads);
    step_unfused(&mut unfused, &grads, config);
    sync(device)?;
    let (mut fused_ms, mut unfused_ms, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut fused_launches, mut unfused_launches) = (0, 0);
    for _ in 0..steps {
        let (f, fl) = timed(device, || step_fused(&mut adam, &mut fused_theta, &grads))?;
        let (u, ul) = timed(device, || step_unfused(&mut unfused, &grads, config))?;
        (fused_launches, unfused_launches) = (fl, ul);
        fused_ms.push(f);
        unfused_ms.push(u);
        ratios.push(f / u);
    }
    Ok(json!({
        "tensors": numels.len(),
        "parameters": numels.iter().sum::<usize>(),
        "fused_ms": median(&fused_ms),
        "unfused_ms": median(&unfused_ms),
        "fused_over_unfused": median(&ratios),
        "fused_launches": fused_launches,
        "unfused_launches": unfused_launches,
    }))
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.steps == 0 {
        bail!("--steps must be at least 1");
    }
    let mut rows = Vec::new();
    println!(
        "{:<48} {:<10} {:>8} {:>12} {:>10} {:>12} {:>10} {:>8}",
        "device", "shapes", "params", "fused (ms)", "launches", "unfused (ms)", "launches", "ratio"
    );
    for choice in &args.device {
        let selected = select(*choice)?;
        for shapes in &args.shapes {
            let numels = numels(shapes)?;
            let r = bench(&selected.device, &numels, args.steps)?;
            println!(
                "{:<48} {:<10} {:>7.1}M {:>12.2} {:>10} {:>12.2} {:>10} {:>8.3}",
                selected.name,
                shapes,
                r["parameters"].as_f64().unwrap_or(0.0) / 1e6,
                r["fused_ms"].as_f64().unwrap_or(f64::NAN),
                r["fused_launches"],
                r["unfused_ms"].as_f64().unwrap_or(f64::NAN),
                r["unfused_launches"],
                r["fused_over_unfused"].as_f64().unwrap_or(f64::NAN),
            );
            rows.push(json!({"device": selected.name, "shapes": shapes, "result": r}));
        }
    }
    println!("(ratio: the median over steps of the fused step's time over the unfused one's)");
    let report = json!({
        "bench": "bench_adamw",
        "revision": git_revision(),
        "steps": args.steps,
        "rows": rows,
    });
    write_report(args.json.as_deref(), &report)
}
