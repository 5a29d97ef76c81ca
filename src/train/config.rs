//! What defines a run: [`TrainConfig`] (run.json), its defaults (the paper's setting) and its
//! checks, and the learning-rate schedule.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result, anyhow, bail};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::glue::custom::{self, ProblemType};
use crate::glue::{Columns, DataSource, Split, Task};
use crate::model::HeadKind;
use crate::util::device::DeviceChoice;
use crate::util::text::escape_controls;

/// How a step is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// PAC-tuning: learned noise and the PAC-Bayes bound, then perturbed gradient descent.
    Pac,
    /// Plain AdamW fine-tuning (the paper's baseline).
    Vanilla,
    /// Perturbed gradient descent with a fixed isotropic noise std (`noise_std`).
    Pgd,
}

impl Method {
    /// The name as flags and file names spell it.
    pub fn name(self) -> &'static str {
        match self {
            Method::Pac => "pac",
            Method::Vanilla => "vanilla",
            Method::Pgd => "pgd",
        }
    }
}

/// What trains, apart from how it steps ([`Method`]): the head always, and of the encoder all,
/// its biases, or LoRA adapters on its weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainSet {
    /// Every encoder tensor (full fine-tuning).
    #[default]
    Full,
    /// BitFit: the encoder's biases.
    Bitfit,
    /// LoRA: low-rank adapters of the `lora_targets` weights; the base weights stay frozen.
    Lora,
}

impl TrainSet {
    pub fn name(self) -> &'static str {
        match self {
            TrainSet::Full => "full",
            TrainSet::Bitfit => "bitfit",
            TrainSet::Lora => "lora",
        }
    }
}

impl FromStr for TrainSet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "full" => Ok(TrainSet::Full),
            "bitfit" => Ok(TrainSet::Bitfit),
            "lora" => Ok(TrainSet::Lora),
            _ => Err(format!("expected full, bitfit or lora, found {s:?}")),
        }
    }
}

/// A `--method` value: a method, or one of the names that chose the trainable set before
/// `--trainable` existed (`bitfit`, `lora`: vanilla steps on that set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodArg {
    pub method: Method,
    pub trainable: Option<TrainSet>,
}

impl FromStr for MethodArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (method, trainable) = match s.to_ascii_lowercase().as_str() {
            "pac" => (Method::Pac, None),
            "vanilla" => (Method::Vanilla, None),
            "pgd" => (Method::Pgd, None),
            "bitfit" => (Method::Vanilla, Some(TrainSet::Bitfit)),
            "lora" => (Method::Vanilla, Some(TrainSet::Lora)),
            _ => {
                return Err(format!(
                    "expected pac, vanilla, pgd, bitfit or lora, found {s:?}"
                ));
            }
        };
        Ok(MethodArg { method, trainable })
    }
}

impl MethodArg {
    /// The method and trainable set, with `--trainable` (if given) checked against an alias.
    pub fn resolve(self, trainable: Option<TrainSet>) -> Result<(Method, Option<TrainSet>)> {
        match (self.trainable, trainable) {
            (Some(alias), Some(given)) if alias != given => bail!(
                "--method {} means --method vanilla --trainable {}; it conflicts with --trainable {}",
                alias.name(),
                alias.name(),
                given.name()
            ),
            (alias, given) => Ok((self.method, given.or(alias))),
        }
    }
}

/// A run's short name: the method, the trainable set when it is not `full`, and vanilla steps
/// on a narrower set named by the set alone (`pac`, `pac-lora`, `lora`, `vanilla`), as run
/// folders and reports name it.
pub fn run_label(method: Method, trainable: TrainSet) -> String {
    match (method, trainable) {
        (method, TrainSet::Full) => method.name().into(),
        (Method::Vanilla, set) => set.name().into(),
        (method, set) => format!("{}-{}", method.name(), set.name()),
    }
}

/// What to do with a step whose loss, bound term or gradient is NaN or infinite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnNonFinite {
    /// Stop the run with an error naming the term (the default).
    #[default]
    Stop,
    /// Leave the model and optimisers as they were and go on; history.jsonl counts such steps.
    Skip,
}

impl FromStr for OnNonFinite {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "stop" => Ok(OnNonFinite::Stop),
            "skip" => Ok(OnNonFinite::Skip),
            _ => Err(format!("expected stop or skip, found {s:?}")),
        }
    }
}

/// Learning-rate schedule over all optimiser steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// Constant after warm-up (the paper's setting).
    Constant,
    /// Linear decay to 0 after warm-up (HF's default).
    Linear,
}

/// Everything that defines a run; run.json holds it resolved, and `train --config run.json`
/// reproduces the run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub task: Task,
    pub method: Method,
    /// What trains (run.json files without it are `full` runs, or name the set as their method).
    #[serde(default)]
    pub trainable: TrainSet,
    pub model: String,
    /// The classification head (run.json files without it are `cls` runs).
    #[serde(default)]
    pub head: HeadKind,
    pub data_dir: Option<PathBuf>,
    pub train_file: Option<PathBuf>,
    pub dev_file: Option<PathBuf>,
    pub columns: Columns,
    /// `--task custom`: the class names found in the train file (none for regression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    /// `--task custom`: classification or regression (found from the labels unless given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem_type: Option<ProblemType>,
    pub train_size: usize,
    pub seed: u64,
    pub epochs: usize,
    pub stage1_epochs: usize,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub eval_batch_size: usize,
    pub max_length: usize,
    pub lr_encoder: f64,
    pub lr_head: f64,
    pub weight_decay: f64,
    pub warmup_ratio: f64,
    pub schedule: Schedule,
    pub max_grad_norm: Option<f64>,
    pub gamma: Option<f64>,
    /// PAC-tuning: prior models per prior std in the K(λ) estimate (R in the spec).
    #[serde(default = "default_prior_models")]
    pub prior_models: usize,
    pub noise_std: Option<f64>,
    /// LoRA: the adapters' rank r, their scale numerator α (the update is α/r·A·B) and the
    /// Linear layers they adapt (comma-separated field names: query, key, value, dense).
    #[serde(default = "default_lora_rank")]
    pub lora_rank: usize,
    #[serde(default = "default_lora_alpha")]
    pub lora_alpha: f64,
    #[serde(default = "default_lora_targets")]
    pub lora_targets: String,
    pub dropout: f64,
    pub train_embeddings: bool,
    /// Recompute activations in the backward pass instead of keeping them (Burn's balanced
    /// gradient checkpointing).
    #[serde(default)]
    pub checkpoint_activations: bool,
    pub eval_every_epochs: usize,
    pub early_stopping: Option<usize>,
    #[serde(default)]
    pub on_nonfinite: OnNonFinite,
    /// Seconds between writes of `checkpoints/last` (at an epoch's end; 0: every epoch). The
    /// run's last epoch, an early stop and Ctrl-C always write it.
    #[serde(default = "default_save_interval")]
    pub save_interval: u64,
    pub output_dir: PathBuf,
    pub device: DeviceChoice,
    /// Written by the trainer: how many scalars train (the method's trainable set); ignored when
    /// read back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trainable_parameters: Option<usize>,
    /// Written by the trainer: the token id that padded the batches (a decoder without a pad
    /// token pads with its end-of-sequence id); ignored when read back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_token_id: Option<u32>,
}

impl TrainConfig {
    /// The paper's setting for `task` (docs/guide.md, "Training"): every default of
    /// `pac-wgpu train`, whose help states them (tests/cli/cli_defaults.rs checks that it does).
    pub fn paper(task: Task) -> TrainConfig {
        let (method, seed, epochs) = (Method::Pac, 42, 250);
        TrainConfig {
            output_dir: default_output_dir(&task, &run_label(method, TrainSet::Full), seed),
            task,
            method,
            trainable: TrainSet::Full,
            model: "bert-base-uncased".into(),
            head: HeadKind::Cls,
            data_dir: None,
            train_file: None,
            dev_file: None,
            columns: Columns::default(),
            labels: None,
            problem_type: None,
            train_size: 100,
            seed,
            epochs,
            stage1_epochs: default_stage1_epochs(epochs),
            batch_size: 100,
            grad_accum: 1,
            eval_batch_size: 64,
            max_length: 128,
            lr_encoder: 5e-5,
            lr_head: 1e-2,
            weight_decay: 0.01,
            warmup_ratio: 0.0,
            schedule: Schedule::Constant,
            max_grad_norm: None,
            gamma: None,
            prior_models: default_prior_models(),
            noise_std: None,
            lora_rank: default_lora_rank(),
            lora_alpha: default_lora_alpha(),
            lora_targets: default_lora_targets(),
            dropout: 0.0,
            train_embeddings: false,
            checkpoint_activations: false,
            eval_every_epochs: 1,
            early_stopping: None,
            on_nonfinite: OnNonFinite::Stop,
            save_interval: default_save_interval(),
            device: DeviceChoice::Auto,
            trainable_parameters: None,
            pad_token_id: None,
        }
    }

    /// The paper's γ for `task` when `--gamma` is not given: 10 for CoLA and SST-2, 5 for the
    /// other tasks.
    pub fn paper_gamma(task: &Task) -> f64 {
        match task {
            Task::Cola | Task::Sst2 => 10.0,
            _ => 5.0,
        }
    }

    /// This config with a custom task's labels, found in its train file when run.json has
    /// none, in `labels`, `problem_type` and the task itself.
    pub fn with_labels(&self) -> Result<TrainConfig> {
        let mut config = self.clone();
        if !matches!(self.task, Task::Custom(_)) {
            return Ok(config);
        }
        if self.labels.is_none() {
            let train_file = self.custom_files()?;
            let (names, problem) =
                custom::infer_labels(train_file, &self.columns, self.problem_type)?;
            config.labels = Some(names);
            config.problem_type = Some(problem);
        }
        let names = config.labels.as_deref().unwrap_or_default();
        let problem = config.problem_type.unwrap_or(ProblemType::Classification);
        config.task = custom::task(names, problem);
        Ok(config)
    }

    /// A custom task's train file, after checking that both files are given.
    fn custom_files(&self) -> Result<&std::path::Path> {
        match (&self.train_file, &self.dev_file) {
            (Some(train), Some(_)) => Ok(train),
            _ => bail!(
                "--task custom needs --train-file and --dev-file (.tsv/.csv with a header, .jsonl or .parquet; name the columns with --text-a-column, --text-b-column, --label-column)"
            ),
        }
    }

    /// The task, a custom one with its labels (found in the train file if run.json has none).
    fn task(&self) -> Result<Task> {
        let task = self.task.clone();
        if !matches!(task, Task::Custom(_)) {
            if self.problem_type.is_some() {
                bail!("--problem-type applies to --task custom only; {task} has its own labels");
            }
            return Ok(task);
        }
        let task = self.with_labels()?.task;
        if !task.is_regression() && task.num_labels() < 2 {
            bail!(
                "{}: expected at least two distinct labels for classification, found {}",
                self.custom_files()?.display(),
                task.num_labels()
            );
        }
        Ok(task)
    }

    /// Checks ranges and combinations; the message names the flag.
    pub fn validate(&self) -> Result<Task> {
        let task = self.task()?;
        let positive = [
            ("--epochs", self.epochs),
            ("--batch-size", self.batch_size),
            ("--grad-accum", self.grad_accum),
            ("--eval-batch-size", self.eval_batch_size),
            ("--eval-every-epochs", self.eval_every_epochs),
            ("--max-length", self.max_length),
        ];
        for (flag, value) in positive {
            if value == 0 {
                bail!("{flag} must be at least 1, found 0");
            }
        }
        if self.grad_accum > self.batch_size {
            bail!(
                "--grad-accum {} is larger than --batch-size {}: each accumulated micro-batch needs at least one example",
                self.grad_accum,
                self.batch_size
            );
        }
        if self.method == Method::Pac && self.stage1_epochs > self.epochs {
            bail!(
                "--stage1-epochs {} is larger than --epochs {}",
                self.stage1_epochs,
                self.epochs
            );
        }
        for (flag, value) in [
            ("--lr-encoder", self.lr_encoder),
            ("--lr-head", self.lr_head),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                bail!("{flag} must be a finite number ≥ 0, found {value}");
            }
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            bail!("--weight-decay must be ≥ 0, found {}", self.weight_decay);
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            bail!(
                "--warmup-ratio must be in [0, 1), found {}",
                self.warmup_ratio
            );
        }
        if !(0.0..1.0).contains(&self.dropout) {
            bail!("--dropout must be in [0, 1), found {}", self.dropout);
        }
        if let Some(g) = self.gamma
            && !(g.is_finite() && g > 0.0)
        {
            bail!("--gamma must be > 0, found {g}");
        }
        if let Some(n) = self.max_grad_norm
            && !(n.is_finite() && n > 0.0)
        {
            bail!("--max-grad-norm must be > 0, found {n}");
        }
        if !(1..=MAX_PRIOR_MODELS).contains(&self.prior_models) {
            bail!(
                "--prior-models must be 1 to {MAX_PRIOR_MODELS}, found {}",
                self.prior_models
            );
        }
        if self.method == Method::Pgd && self.noise_std.is_none_or(|s| !(s.is_finite() && s > 0.0))
        {
            bail!("--method pgd needs --noise-std S with S > 0");
        }
        if self.trainable == TrainSet::Lora {
            self.check_lora()?;
        }
        Ok(task)
    }

    fn check_lora(&self) -> Result<()> {
        if self.lora_rank == 0 {
            bail!("--lora-rank must be at least 1, found 0");
        }
        if !(self.lora_alpha.is_finite() && self.lora_alpha > 0.0) {
            bail!("--lora-alpha must be > 0, found {}", self.lora_alpha);
        }
        let name = |t: &&str| t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if let Some(bad) = self.lora_target_list().iter().find(|t| !name(t)) {
            bail!("--lora-targets: expected layer names such as q_proj or query, found {bad:?}");
        }
        Ok(())
    }

    /// `lora_targets` split at commas, blanks dropped.
    pub fn lora_target_list(&self) -> Vec<&str> {
        self.lora_targets
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect()
    }

    /// Whether an example is a pair of texts: GLUE's pair tasks, or `--text-b-column` given.
    pub fn is_pair(&self) -> bool {
        match &self.task {
            Task::Custom(_) => self.columns.text_b.is_some(),
            task => [Split::Train, Split::Dev, Split::Test]
                .into_iter()
                .flat_map(|split| task.files(split))
                .any(|format| format.text_b.is_some()),
        }
    }

    pub fn data_source(&self) -> DataSource {
        DataSource {
            train_file: self.train_file.clone(),
            dev_file: self.dev_file.clone(),
            columns: self.columns.clone(),
            ..DataSource::new(self.data_dir.clone())
        }
    }
}

/// The learning-rate multiplier at optimiser step `step` (0-based) of `total`, as HF's
/// schedules: a linear warm-up over the first W = ⌈warmup_ratio·total⌉ steps (step k at k/W, the
/// first at 0), then constant, or a linear decay to 0 at `total`.
pub(crate) fn lr_scale(config: &TrainConfig, step: u64, total: u64) -> f64 {
    let warmup = (config.warmup_ratio * total as f64).ceil() as u64;
    if step < warmup {
        return step as f64 / warmup as f64;
    }
    match config.schedule {
        Schedule::Constant => 1.0,
        Schedule::Linear => {
            let left = total.saturating_sub(step) as f64;
            left / (total - warmup).max(1) as f64
        }
    }
}

impl TrainConfig {
    /// The device the model trains on: `plain` with autodiff, and gradient checkpointing when
    /// `--checkpoint-activations` asks for it.
    pub fn training_device(&self, plain: &Device) -> Device {
        let device = plain.clone().autodiff();
        match self.checkpoint_activations {
            true => device.gradient_checkpointing(),
            false => device,
        }
    }
}

/// Reads a run.json (one written before `trainable` existed, with `"method": "bitfit"` or
/// `"lora"`, reads as the vanilla method on that set).
pub fn read_config(path: &Path) -> Result<TrainConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read run config", path.display()))?;
    serde_json::from_str(&text).or_else(|e| {
        from_legacy(&text).ok_or_else(|| {
            anyhow!(
                "{}:{}: expected a pac-wgpu run.json, found {}",
                path.display(),
                e.line(),
                escape_controls(&e.to_string())
            )
        })
    })
}

/// A run.json whose method names its trainable set, read as the vanilla method on that set.
fn from_legacy(text: &str) -> Option<TrainConfig> {
    let mut value: serde_json::Value = serde_json::from_str(text).ok()?;
    let fields = value.as_object_mut()?;
    let set = match fields.get("method")?.as_str()? {
        set @ ("bitfit" | "lora") if !fields.contains_key("trainable") => set.to_string(),
        _ => return None,
    };
    fields.insert("method".into(), "vanilla".into());
    fields.insert("trainable".into(), set.into());
    serde_json::from_value(value).ok()
}

fn default_save_interval() -> u64 {
    60
}

/// Prior models drawn per prior std in the K(λ) estimation (R in the spec): the paper's 10.
fn default_prior_models() -> usize {
    10
}

/// The most prior models per prior std: their Philox steps stay below 2³² (see
/// [`crate::pac::PRIOR_STEPS`]).
const MAX_PRIOR_MODELS: usize = 1 << 20;

fn default_lora_rank() -> usize {
    8
}

fn default_lora_alpha() -> f64 {
    16.0
}

/// Empty: the family's default ([`crate::model::Encoder::default_lora_targets`]).
fn default_lora_targets() -> String {
    String::new()
}

/// Stage 1's default length: 4/5 of the epochs (the authors' 200 of 250).
pub fn default_stage1_epochs(epochs: usize) -> usize {
    epochs * 4 / 5
}

/// `runs/<task>-<label>-<seed>`, the label from [`run_label`].
pub fn default_output_dir(task: &Task, label: &str, seed: u64) -> PathBuf {
    PathBuf::from(format!("runs/{task}-{label}-{seed}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The multiplier at each of T = 5 steps, by hand from Hugging Face's definitions
    /// (transformers.optimization's constant and linear schedules with warm-up; W =
    /// ⌈warmup_ratio·T⌉ as TrainingArguments.get_warmup_steps): k < W → k/W; after warm-up,
    /// constant → 1, linear → (T − k)/(T − W). For --warmup-ratio 0.3, W = ⌈1.5⌉ = 2.
    #[test]
    fn lr_scale_follows_hugging_face_schedules() {
        let cases = [
            (Schedule::Constant, 0.0, [1.0, 1.0, 1.0, 1.0, 1.0]),
            (Schedule::Linear, 0.0, [1.0, 0.8, 0.6, 0.4, 0.2]),
            (Schedule::Constant, 0.3, [0.0, 0.5, 1.0, 1.0, 1.0]),
            (Schedule::Linear, 0.3, [0.0, 0.5, 1.0, 2.0 / 3.0, 1.0 / 3.0]),
        ];
        for (schedule, warmup_ratio, expected) in cases {
            let config = TrainConfig {
                schedule,
                warmup_ratio,
                ..TrainConfig::paper(Task::Mrpc)
            };
            for (k, want) in expected.into_iter().enumerate() {
                let got = lr_scale(&config, k as u64, 5);
                assert!(
                    (got - want).abs() < 1e-15,
                    "{schedule:?}, warm-up {warmup_ratio}, step {k}: {got}, expected {want}"
                );
            }
        }
    }
}
