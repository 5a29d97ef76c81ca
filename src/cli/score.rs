//! `pac-wgpu score`: GLUE metrics of a predictions file against a split's gold labels.

use std::path::PathBuf;

use pac_wgpu::glue::{DataError, Split, Task, read_predictions};
use serde_json::{Map, json};

use super::data::DataSourceArgs;

/// Score a predictions file (`index<TAB>prediction`, as `predict` writes) with the task's GLUE
/// metrics.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  pac-wgpu score --task mrpc --data-dir glue_data \\
      --predictions runs/mrpc-pac-42/checkpoints/best/dev_predictions.tsv
  pac-wgpu score --task stsb --predictions preds.tsv --json")]
pub struct ScoreArgs {
    /// cola, sst2, mrpc, stsb, qqp, mnli, mnli-mm, qnli, rte, wnli or ax (case-insensitive;
    /// SST-2, STS-B, CoLA accepted)
    #[arg(long)]
    pub task: Task,
    /// Predictions: `index<TAB>prediction` rows (optional `index` header; more columns, such
    /// as `predict --probabilities` writes, when the header names them), labels as in GLUE's
    /// files or by name, STS-B scores as numbers
    #[arg(long, value_name = "FILE")]
    pub predictions: PathBuf,
    #[command(flatten)]
    pub source: DataSourceArgs,
    /// The split whose gold labels to score against: train, dev or test
    #[arg(long, default_value = "dev")]
    pub split: Split,
    /// Print one JSON object
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &ScoreArgs) -> anyhow::Result<()> {
    let task = &args.task;
    let dataset = args.source.source()?.load(task, args.split)?;
    let predictions = read_predictions(&args.predictions, task)?;
    if predictions.len() != dataset.examples.len() {
        return Err(DataError::new(
            &args.predictions,
            None,
            format!(
                "{} predictions (one per {} example)",
                dataset.examples.len(),
                args.split
            ),
            predictions.len().to_string(),
        )
        .into());
    }
    let scores = task.score(&dataset.labels(), &predictions)?;
    if args.json {
        let metrics: Map<_, _> = scores
            .iter()
            .map(|(metric, value)| (metric.name().to_string(), json!(value)))
            .collect();
        let out = json!({"task": task.name(), "split": args.split.name(),
                         "n": predictions.len(), "metrics": metrics});
        println!("{out}");
    } else {
        println!("{task} {} ({} examples)", args.split, predictions.len());
        for (metric, value) in scores {
            println!("  {:<9}{value:.4}", metric.name());
        }
    }
    Ok(())
}
