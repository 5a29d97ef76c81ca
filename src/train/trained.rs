//! A finished run read back: its checkpoint as a classifier, its predictions and their scores.

use std::path::Path;

use anyhow::Result;
use burn::tensor::Device;

use super::checkpoint;
use super::config::{TrainConfig, read_config};
use super::export::{is_export, load_export};
use crate::data::{Prepared, label_of, outputs, predict};
use crate::glue::custom;
use crate::glue::{Dataset, Label, Split, Task, read_user_file};
use crate::model::{Classifier, ModelConfig};
use crate::run::Metrics;
use crate::util::metrics::Metric;
use crate::util::tokenize::TextTokenizer;

/// A trained classifier read back from a run folder.
pub struct Trained {
    pub config: TrainConfig,
    pub task: Task,
    pub model: Classifier,
    pub tokenizer: TextTokenizer,
}

impl Trained {
    /// Loads `run/checkpoints/<which>` (best or last) onto `device` (a plain device); `run` may
    /// also be a folder `pac-wgpu export` wrote (`which` does not apply then).
    pub fn open(run: &Path, which: &str, device: &Device) -> Result<Trained> {
        if is_export(run) {
            let (config, model) = load_export(run, device)?;
            let task = config.validate()?;
            let model_config = ModelConfig::from_file(&run.join("config.json"))?;
            let tokenizer = crate::model::tokenizer(run, &model_config, config.max_length)?;
            return Ok(Trained {
                config,
                task,
                model,
                tokenizer,
            });
        }
        let config = read_config(&run.join("run.json"))?;
        let task = config.validate()?;
        let dir = checkpoint::checkpoint_dir(run, which)?;
        let (model_config, model) = checkpoint::load_trained(&config, &task, &dir, device)?;
        let tokenizer = crate::model::tokenizer(&dir, &model_config, config.max_length)?;
        Ok(Trained {
            config,
            task,
            model,
            tokenizer,
        })
    }

    /// The model's outputs (logits, or the STS-B score) for every example of `split`.
    pub fn outputs(&self, split: Split, device: &Device) -> Result<Vec<Vec<f32>>> {
        let dataset = self.config.data_source().load(&self.task, split)?;
        let data = Prepared::new(&dataset, None, &self.tokenizer)?;
        let pad = self.tokenizer.pad_id();
        let batch_size = self.config.eval_batch_size;
        pollster::block_on(outputs(&self.model, &data, batch_size, pad, device))
    }

    /// The model's outputs for every row of a user's `file` of new text (TSV, CSV, JSON Lines
    /// or parquet, without labels): its text columns named as in training, else found as
    /// [`custom::text_columns`] finds them.
    pub fn outputs_of_file(&self, file: &Path, device: &Device) -> Result<Vec<Vec<f32>>> {
        let columns = custom::text_columns_as(file, &self.config.columns)?;
        let examples = read_user_file(file, &columns, &self.task)?;
        let dataset = Dataset {
            task: self.task.clone(),
            split: Split::Test,
            source: file.to_path_buf(),
            examples,
        };
        let data = Prepared::new(&dataset, None, &self.tokenizer)?;
        let pad = self.tokenizer.pad_id();
        let batch_size = self.config.eval_batch_size;
        pollster::block_on(outputs(&self.model, &data, batch_size, pad, device))
    }

    /// Predictions for every example of `split`, and the task's metrics when it has labels.
    pub fn evaluate(&self, split: Split, device: &Device) -> Result<(Vec<Label>, Option<Metrics>)> {
        let dataset = self.config.data_source().load(&self.task, split)?;
        let data = Prepared::new(&dataset, None, &self.tokenizer)?;
        let predictions = pollster::block_on(predict(
            &self.model,
            &data,
            &self.task,
            self.config.eval_batch_size,
            self.tokenizer.pad_id(),
            device,
        ))?;
        let metrics = if data.labels.iter().all(|l| *l != Label::None) {
            Some(metrics_by_name(
                &self.task.score(&data.labels, &predictions)?,
            ))
        } else {
            None
        };
        Ok((predictions, metrics))
    }
}

/// `predictions_tsv` with a column per class holding its probability (softmax of the logits),
/// headed by the class names, or a `score` column for regression.
pub fn probabilities_tsv(task: &Task, outputs: &[Vec<f32>]) -> String {
    let labels: Vec<Label> = outputs.iter().map(|row| label_of(task, row)).collect();
    with_probabilities(task, predictions_tsv(task, &labels), outputs)
}

/// Predictions for new text (`predict --file`): the class names (the score for regression), and
/// with `probabilities` a column per class.
pub fn named_predictions_tsv(task: &Task, outputs: &[Vec<f32>], probabilities: bool) -> String {
    let names = task.label_names();
    let mut text = String::from("index\tprediction\n");
    for (i, row) in outputs.iter().enumerate() {
        let value = match label_of(task, row) {
            Label::Class(c) => names[c].to_string(),
            Label::Score(s) => format!("{s:.3}"),
            Label::None => String::new(),
        };
        text.push_str(&format!("{i}\t{value}\n"));
    }
    match probabilities {
        true => with_probabilities(task, text, outputs),
        false => text,
    }
}

/// `tsv` (a header and one row per output) with the outputs' probability columns appended.
fn with_probabilities(task: &Task, tsv: String, outputs: &[Vec<f32>]) -> String {
    let mut lines = tsv.lines();
    let header = lines.next().unwrap_or_default();
    let names = match task.is_regression() {
        true => "score".to_string(),
        false => task.label_names().join("\t"),
    };
    let mut text = format!("{header}\t{names}\n");
    for (line, row) in lines.zip(outputs) {
        let columns: Vec<String> = match task.is_regression() {
            true => vec![format!("{:.6}", row[0])],
            false => {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let exp: Vec<f64> = row.iter().map(|v| ((v - max) as f64).exp()).collect();
                let sum: f64 = exp.iter().sum();
                exp.iter().map(|e| format!("{:.6}", e / sum)).collect()
            }
        };
        text.push_str(&format!("{line}\t{}\n", columns.join("\t")));
    }
    text
}

/// GLUE submission format: `index<TAB>prediction`, label names (STS-B: the score).
pub fn predictions_tsv(task: &Task, predictions: &[Label]) -> String {
    let mut text = String::from("index\tprediction\n");
    for (i, p) in predictions.iter().enumerate() {
        let value = match p {
            Label::Class(c) => task.glue_labels()[*c].to_string(),
            Label::Score(s) => format!("{s:.3}"),
            Label::None => String::new(),
        };
        text.push_str(&format!("{i}\t{value}\n"));
    }
    text
}

/// Metrics keyed by their names, as history.jsonl and summary.json hold them.
pub fn metrics_by_name(metrics: &[(Metric, f64)]) -> Metrics {
    metrics
        .iter()
        .map(|(m, v)| (m.name().to_string(), *v))
        .collect()
}
