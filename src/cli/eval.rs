use std::path::PathBuf;

use anyhow::{Result, bail};
use pac_wgpu::data::label_of;
use pac_wgpu::glue::Split;
use pac_wgpu::train::{Trained, named_predictions_tsv, predictions_tsv, probabilities_tsv};
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
    #[arg(long, default_value = "test", conflicts_with = "file")]
    split: Split,
    /// New text to predict instead of a split: a .tsv/.csv with a header, .jsonl or .parquet
    /// file with the text column(s) the run trained on (or the one or two it has), no label.
    /// Predictions are written as label names.
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Where to write `index<TAB>prediction` lines. [default: <run>/predictions/<TASK>-<split>.tsv,
    /// or <FILE stem>-predictions.tsv beside --file]
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn predict(args: &PredictArgs) -> Result<()> {
    let selected = select(args.device.choice)?;
    let trained = Trained::open(&args.run, &args.checkpoint, &selected.device)?;
    let task = &trained.task;
    let (outputs, text, default_out) = match &args.file {
        Some(file) => {
            let outputs = trained.outputs_of_file(file, &selected.device)?;
            let text = named_predictions_tsv(task, &outputs, args.probabilities);
            let stem = file.file_stem().unwrap_or_default().to_string_lossy();
            (
                outputs,
                text,
                file.with_file_name(format!("{stem}-predictions.tsv")),
            )
        }
        None => {
            let outputs = trained.outputs(args.split, &selected.device)?;
            let text = if args.probabilities {
                probabilities_tsv(task, &outputs)
            } else {
                let labels: Vec<_> = outputs.iter().map(|r| label_of(task, r)).collect();
                predictions_tsv(task, &labels)
            };
            let dir = args.run.join("predictions");
            let out = dir.join(format!("{}-{}.tsv", task.name(), args.split.name()));
            (outputs, text, out)
        }
    };
    let out = args.out.clone().unwrap_or(default_out);
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    write_atomic(&out, text.as_bytes())?;
    println!("wrote {} predictions to {}", outputs.len(), out.display());
    Ok(())
}
