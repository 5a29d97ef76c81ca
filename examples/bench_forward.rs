//! Encoder forward throughput: ms per batch and sequences per second, for MiniLM (from
//! assets/) and a bert-base-sized encoder with random weights, on the chosen device.
//!
//!     cargo run --release --example bench_forward -- --device cpu --batch 32 --seq 128
//!     cargo run --release --example bench_forward -- --device 0 --batch 4 --seq 32 --models minilm

mod common;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Parser;
use common::{git_revision, write_report};
use pac_wgpu::model::{Bert, BertConfig, Encoder, Pretrained};
use pac_wgpu::util::device::{DeviceChoice, select};
use pac_wgpu::util::tokenize::PaddedBatch;
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// auto, cpu or a wgpu adapter index.
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long, default_value_t = 128)]
    seq: usize,
    /// Timed forwards per model (after one warm-up).
    #[arg(long, default_value_t = 5)]
    iters: usize,
    /// Which models: minilm, bert-base (comma-separated).
    #[arg(long, default_value = "minilm,bert-base", value_delimiter = ',')]
    models: Vec<String>,
    #[arg(long, default_value = "assets/models/all-MiniLM-L6-v2")]
    minilm: PathBuf,
    /// Also write the results here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    pac_wgpu::util::device::keep_freed_memory();
    let selected = select(args.device)?;
    let device = &selected.device;
    let mut rows = Vec::new();
    for name in &args.models {
        let (bert, vocab): (Bert, usize) = match name.as_str() {
            "minilm" => {
                let m = Pretrained::load(&args.minilm, 0.0, device)?;
                let vocab = m.config.vocab_size();
                let Encoder::Bert(bert) = m.encoder else {
                    bail!("{}: not a BERT model", args.minilm.display());
                };
                (bert, vocab)
            }
            "bert-base" => {
                let c = BertConfig::bert_base();
                (Bert::new(&c, 0.0, device), c.vocab_size)
            }
            other => bail!("--models: unknown model {other:?} (minilm, bert-base)"),
        };
        // Fixed pseudo-random token ids, every sequence exactly `seq` long.
        let mut state = 12345u64;
        let ids: Vec<i64> = (0..args.batch * args.seq)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                1000 + ((state >> 33) as usize % (vocab - 1000)) as i64
            })
            .collect();
        let batch = PaddedBatch {
            batch: args.batch,
            seq: args.seq,
            input_ids: ids,
            token_type_ids: vec![0; args.batch * args.seq],
            attention_mask: vec![1.0; args.batch * args.seq],
        };
        let forward = || -> Result<f64> {
            let (i, t, m) = batch.to_tensors(device);
            let start = Instant::now();
            let cls = bert.cls(i, t, m);
            let _ = cls.into_data(); // reading back waits for the device
            Ok(start.elapsed().as_secs_f64() * 1000.0)
        };
        forward()?; // warm-up (kernel compilation, autotune)
        let mut times: Vec<f64> = (0..args.iters).map(|_| forward()).collect::<Result<_>>()?;
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let row = json!({
            "model": name,
            "ms_per_batch": median,
            "ms_min": times[0],
            "ms_max": times[times.len() - 1],
            "sequences_per_s": args.batch as f64 / (median / 1000.0),
        });
        println!(
            "{:<10} batch {:>3} seq {:>4}  {:>10.1} ms/batch (min {:.1}, max {:.1})  {:>8.1} seq/s",
            name,
            args.batch,
            args.seq,
            median,
            times[0],
            times[times.len() - 1],
            row["sequences_per_s"].as_f64().unwrap()
        );
        rows.push(row);
    }
    let report = json!({
        "device": selected.name,
        "batch": args.batch,
        "seq": args.seq,
        "iters": args.iters,
        "git_revision": git_revision(),
        "results": rows,
    });
    write_report(args.json.as_deref(), &report)
}
