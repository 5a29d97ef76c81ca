//! `--mrpc`: steps timed on real data in a realistic state, and what decides their speed on a
//! CPU: the processor, the instruction set of the matrix products, whether subnormal floats are
//! flushed, the arithmetic rate achieved against the processor's peak, and how many subnormals
//! a trained model's gradients hold when they are not flushed.

use std::path::Path;

use anyhow::{Context, Result};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use pac_wgpu::data::{Batch, Prepared, pass_cost};
use pac_wgpu::glue::Label;
use pac_wgpu::model::{Classifier, ModelConfig};
use pac_wgpu::util::device::{cpu_flushes_subnormals, read_f32};
use pac_wgpu::util::kernel::cpu::gemm_isa;
use serde_json::{Value, json};

/// The batch a training step of all of `data` takes: cut by length as `train` cuts it.
pub fn training_batch(data: &Prepared, pad: u32, device: &Device) -> Batch {
    let rows: Vec<usize> = (0..data.len()).collect();
    data.training_batch(&rows, rows.len(), pad, device)
}

/// The rows of each micro-batch of [`training_batch`], and of K(λ)'s forward batches of at most
/// `k_batch` rows, as `pac::estimate_k` cuts them.
pub fn cuts(
    data: &Prepared,
    k_batch: usize,
    device: &Device,
) -> (Vec<Vec<usize>>, Vec<Vec<usize>>) {
    let rows: Vec<usize> = (0..data.len()).collect();
    let train = data.micro_rows(&rows, rows.len(), device);
    let order = data.length_order();
    let forward = order
        .batches(k_batch, pass_cost(device))
        .into_iter()
        .map(<[usize]>::to_vec)
        .collect();
    (train, forward)
}

/// Examples of the same lengths and token types as `data`'s with random token ids and labels:
/// the inputs of a step in bench_step's default, fresh state.
pub fn random_like(data: &Prepared, vocab: usize, seed: u64) -> Prepared {
    let types = data.encoded.iter().map(|e| e.token_type_ids.clone());
    super::random_ids(types, vocab, seed)
}

/// The batch file of benches/torch_step.py's `--data`: the micro-batches of the training step
/// (ids, mask, token types, labels), K(λ)'s forward batches, and the steps before timing.
pub fn write_anchor_file(
    path: &Path,
    data: &Prepared,
    pad: u32,
    (train, forward): &(Vec<Vec<usize>>, Vec<Vec<usize>>),
    trained_steps: usize,
) -> Result<()> {
    let batch = |rows: &[usize], labels: bool| {
        let b = data.batch(rows, pad);
        let matrix =
            |v: Vec<i64>| -> Vec<Vec<i64>> { v.chunks(b.seq).map(<[i64]>::to_vec).collect() };
        let mask = b.attention_mask.iter().map(|&m| m as i64).collect();
        let mut value = json!({
            "input_ids": matrix(b.input_ids.clone()),
            "attention_mask": matrix(mask),
            "token_type_ids": matrix(b.token_type_ids.clone()),
        });
        if labels {
            let class = |i: &usize| match data.labels[*i] {
                Label::Class(c) => c as i64,
                _ => 0,
            };
            value["labels"] = json!(rows.iter().map(class).collect::<Vec<_>>());
        }
        value
    };
    let file = json!({
        "train": train.iter().map(|r| batch(r, true)).collect::<Vec<_>>(),
        "forward": forward.iter().map(|r| batch(r, false)).collect::<Vec<_>>(),
        "trained_steps": trained_steps,
    });
    pac_wgpu::util::files::write_json(path, &file)
}

/// Multiply-adds ×2 of one forward pass of a BERT encoder over `rows` × `seq` slots: the
/// linear layers (4H² + 2HI per token and layer) and attention's two products (2·seq·H per
/// token and layer). `None` for other families.
fn forward_flop(config: &ModelConfig, rows: usize, seq: usize) -> Option<f64> {
    let ModelConfig::Bert(c) = config else {
        return None;
    };
    let (h, i, l) = (
        c.hidden_size as f64,
        c.intermediate_size as f64,
        c.num_hidden_layers as f64,
    );
    let tokens = (rows * seq) as f64;
    Some(l * 2.0 * tokens * (4.0 * h * h + 2.0 * h * i + 2.0 * seq as f64 * h))
}

/// FLOP of a training step over `batch` (forward, then a backward pass of twice its cost).
pub fn step_flop(config: &ModelConfig, batch: &Batch) -> Option<f64> {
    batch
        .micro
        .iter()
        .map(|(b, _)| forward_flop(config, b.batch, b.seq).map(|f| 3.0 * f))
        .sum()
}

/// FLOP of one forward pass over each of `data`'s batches `forward`.
pub fn forward_batches_flop(
    config: &ModelConfig,
    data: &Prepared,
    forward: &[Vec<usize>],
) -> Option<f64> {
    forward
        .iter()
        .map(|rows| {
            let seq = rows
                .iter()
                .map(|&r| data.encoded[r].input_ids.len())
                .max()
                .unwrap_or(0);
            forward_flop(config, rows.len(), seq)
        })
        .sum()
}

/// The processor, the matrix products' instruction set, flush-to-zero, and the peak f32 rate
/// of that instruction set: threads × 2 FMA units × FMA lanes × 2 FLOP × clock (current x86
/// cores issue two vector FMAs a cycle).
pub fn cpu_about(threads: usize) -> Value {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.trim().to_string())
    };
    let mhz: Option<f64> = field("cpu MHz").and_then(|v| v.parse().ok());
    let (isa, lanes) = gemm_isa();
    let peak = mhz.map(|mhz| threads as f64 * 2.0 * lanes as f64 * 2.0 * mhz / 1000.0);
    json!({
        "model": field("model name").unwrap_or_else(|| "unknown".into()),
        "mhz": mhz,
        "threads": threads,
        "gemm_isa": isa,
        "fma_lanes": lanes,
        "flush_subnormals": cpu_flushes_subnormals(),
        "peak_gflops": peak,
    })
}

/// What a trained model's step holds: the logit gap |z₁ − z₀| over the batch (cross-entropy's
/// gradient for the other class is e^−gap, subnormal for gaps between 87.3 and 103.3), the
/// share of the weight gradients' values that are subnormal (0 where they are flushed), and the
/// tensors (`names`, in `grads`' order) whose gradients hold the most.
pub async fn subnormals(
    model: &Classifier,
    plain: &Device,
    batch: &Batch,
    grads: &[Option<Tensor<1>>],
    names: &[String],
) -> Result<Value> {
    let valid = model.valid();
    let mut gaps = Vec::new();
    for (inputs, _) in &batch.micro {
        let (ids, types, mask) = inputs.to_tensors(plain);
        let logits = read_f32(valid.forward(ids, types, mask), "logits").await?;
        gaps.extend(logits.chunks(2).map(|z| (z[1] - z[0]).abs() as f64));
    }
    gaps.sort_by(f64::total_cmp);
    let (mut subnormal, mut total) = (0usize, 0usize);
    let mut by_tensor = Vec::new();
    for (grad, name) in grads.iter().zip(names) {
        let Some(grad) = grad else { continue };
        let values = read_f32(grad.clone(), "gradients").await?;
        let count = values.iter().filter(|v| v.is_subnormal()).count();
        by_tensor.push((count as f64 / values.len().max(1) as f64, name.clone()));
        subnormal += count;
        total += values.len();
    }
    by_tensor.sort_by(|a, b| b.0.total_cmp(&a.0));
    by_tensor.truncate(8);
    let at = |q: f64| gaps.get(((gaps.len() - 1) as f64 * q) as usize).copied();
    Ok(json!({
        "logit_gap": {"min": at(0.0), "median": at(0.5), "max": at(1.0)},
        "subnormal_gradient_values": subnormal,
        "gradient_values": total,
        "subnormal_share": subnormal as f64 / total.max(1) as f64,
        "most_subnormal_tensors": by_tensor,
    }))
}

/// `ms` for `flop` as GFLOP/s.
pub fn gflops(flop: Option<f64>, ms: f64) -> Option<f64> {
    flop.map(|f| f / ms / 1e6)
}

/// The anchor's batch file beside the JSON report, else in the temporary folder.
pub fn anchor_file(json: Option<&Path>) -> Result<std::path::PathBuf> {
    let dir = match json.and_then(Path::parent) {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => std::env::temp_dir(),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir.join(format!("bench-step-anchor-{}.json", std::process::id())))
}
