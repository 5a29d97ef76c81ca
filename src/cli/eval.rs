use std::path::PathBuf;

use anyhow::{Result, bail};
use pac_wgpu::data::label_of;
use pac_wgpu::glue::Split;
use pac_wgpu::train::{Trained, predictions_tsv, probabilities_tsv};
use pac_wgpu::util::device::select;
use pac_wgpu::util::files::write_atomic;

use super::args::DeviceArg;

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    device: DeviceArg,
    /// A run folder written by `pac-wgpu train`, or a folder `pac-wgpu export` wrote.
    #[arg(long)]
    run: PathBuf,
    /// best or last.
    #[arg(long, default_value = "best")]
    checkpoint: String,
    /// train, dev or test (test has no labels: use `predict`).
    #[arg(long, default_value = "dev")]
    split: Split,
    /// Print {"split": .., "n": N, "metrics": {..}}.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let selected = select(args.device.choice)?;
    let trained = Trained::open(&args.run, &args.checkpoint, &selected.device)?;
    let (predictions, metrics) = trained.evaluate(args.split, &selected.device)?;
    let Some(metrics) = metrics else {
        bail!(
            "--split {}: has no labels to score; use `pac-wgpu predict`",
            args.split.name()
        );
    };
    if args.json {
        let value = serde_json::json!({
            "task": trained.task.name(),
            "split": args.split.name(),
            "checkpoint": args.checkpoint,
            "n": predictions.len(),
            "metrics": metrics,
        });
        println!("{value}");
    } else {
        println!(
            "{} {} ({} examples, checkpoint {})",
            trained.task,
            args.split.name(),
            predictions.len(),
            args.checkpoint
        );
        for (name, value) in &metrics {
            println!("  {name:<10} {value:.4}");
        }
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct PredictArgs {
    #[command(flatten)]
    device: DeviceArg,
    /// A run folder written by `pac-wgpu train`, or a folder `pac-wgpu export` wrote.
    #[arg(long)]
    run: PathBuf,
    /// best or last.
    #[arg(long, default_value = "best")]
    checkpoint: String,
    /// Add a third column: the class probabilities, comma-separated (STS-B: the score).
    #[arg(long)]
    probabilities: bool,
    /// train, dev or test.
    #[arg(long, default_value = "test")]
    split: Split,
    /// Where to write `index<TAB>prediction` lines. [default: <run>/predictions/<TASK>-<split>.tsv]
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn predict(args: &PredictArgs) -> Result<()> {
    let selected = select(args.device.choice)?;
    let trained = Trained::open(&args.run, &args.checkpoint, &selected.device)?;
    let outputs = trained.outputs(args.split, &selected.device)?;
    let out = match &args.out {
        Some(path) => path.clone(),
        None => {
            let dir = args.run.join("predictions");
            std::fs::create_dir_all(&dir)?;
            dir.join(format!("{}-{}.tsv", trained.task.name(), args.split.name()))
        }
    };
    let text = if args.probabilities {
        probabilities_tsv(&trained.task, &outputs)
    } else {
        let labels: Vec<_> = outputs.iter().map(|r| label_of(&trained.task, r)).collect();
        predictions_tsv(&trained.task, &labels)
    };
    write_atomic(&out, text.as_bytes())?;
    println!("wrote {} predictions to {}", outputs.len(), out.display());
    Ok(())
}
