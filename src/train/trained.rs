//! A finished run read back: its checkpoint as a classifier, its predictions and their scores.

use std::path::Path;

use anyhow::{Result, anyhow, bail};
use burn::module::Module;
use burn::tensor::Device;

use super::checkpoint;
use super::config::{TrainConfig, read_config};
use crate::data::{Prepared, predict};
use crate::glue::{Label, Split, Task};
use crate::metrics::Metric;
use crate::model::{Bert, BertConfig, Classifier};
use crate::run::Metrics;
use crate::tokenize::TextTokenizer;

/// A trained classifier read back from a run folder.
pub struct Trained {
    pub config: TrainConfig,
    pub task: Task,
    pub model: Classifier,
    pub tokenizer: TextTokenizer,
}

impl Trained {
    /// Loads `run/checkpoints/<which>` (best or last) onto `device` (a plain device).
    pub fn open(run: &Path, which: &str, device: &Device) -> Result<Trained> {
        if which != "best" && which != "last" {
            bail!("--checkpoint must be best or last, found {which:?}");
        }
        let config = read_config(&run.join("run.json"))?;
        let task = config.validate()?;
        let dir = checkpoint::existing(&run.join("checkpoints").join(which)).ok_or_else(|| {
            anyhow!(
                "{}: no {which} checkpoint (has the run finished an epoch?)",
                run.join("checkpoints").join(which).display()
            )
        })?;
        let bert_config = BertConfig::from_file(&dir.join("config.json"))?;
        let bert = Bert::new(&bert_config, 0.0, device);
        let model = Classifier::new(
            bert,
            bert_config.hidden_size,
            task.num_labels(),
            0.0,
            0,
            device,
        );
        // `last` of a LoRA run holds the adapters unmerged; they are merged once loaded.
        let model = match which {
            "last" => super::method::with_adapters(model, &config)?,
            _ => model,
        };
        let model = checkpoint::load_model(&dir, model)?.materialize();
        let tokenizer = TextTokenizer::from_model_dir(&dir, config.max_length)?;
        Ok(Trained {
            config,
            task,
            model,
            tokenizer,
        })
    }

    /// Predictions for every example of `split`, and the task's metrics when it has labels.
    pub fn evaluate(&self, split: Split, device: &Device) -> Result<(Vec<Label>, Option<Metrics>)> {
        let dataset = self.config.data_source().load(self.task, split)?;
        let data = Prepared::new(&dataset, None, &self.tokenizer)?;
        let predictions = predict(
            &self.model,
            &data,
            self.task,
            self.config.eval_batch_size,
            self.tokenizer.pad_id(),
            device,
        )?;
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

/// GLUE submission format: `index<TAB>prediction`, label names (STS-B: the score).
pub fn predictions_tsv(task: Task, predictions: &[Label]) -> String {
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
