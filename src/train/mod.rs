//! The training loop shared by every method: few-shot data, batches with gradient
//! accumulation, AdamW with separate encoder/head learning rates, evaluation on dev after every
//! `eval_every_epochs` epochs, the best and last checkpoints, and exact resume.

pub mod checkpoint;
pub mod data;
pub mod interrupt;
pub mod optim;
pub mod params;
pub mod step;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::device::{DeviceChoice, select};
use crate::glue::sample::{epoch_order, few_shot};
use crate::glue::{Columns, DataSource, Label, Split, Task};
use crate::model::{Classifier, Pretrained, resolve_model};
use crate::report::{RunDir, write_json};
use crate::tokenize::TextTokenizer;
use checkpoint::LoopState;
use data::{Prepared, predict};
use optim::{AdamW, AdamWConfig};
use step::{Lrs, Micro, Noise, Outcome};

use crate::pac::{self, bound::BoundTerms, noise::NoiseSource, state::PacState};

/// How to fine-tune.
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

impl FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "pac" => Ok(Method::Pac),
            "vanilla" => Ok(Method::Vanilla),
            "pgd" => Ok(Method::Pgd),
            _ => Err(format!("expected pac, vanilla or pgd, found {s:?}")),
        }
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
    pub task: String,
    pub method: Method,
    pub model: String,
    pub data_dir: Option<PathBuf>,
    pub train_file: Option<PathBuf>,
    pub dev_file: Option<PathBuf>,
    pub columns: Columns,
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
    pub noise_std: Option<f64>,
    pub dropout: f64,
    pub train_embeddings: bool,
    pub eval_every_epochs: usize,
    pub early_stopping: Option<usize>,
    #[serde(default)]
    pub on_nonfinite: OnNonFinite,
    pub output_dir: PathBuf,
    pub device: String,
}

impl TrainConfig {
    /// Checks ranges and combinations; the message names the flag.
    pub fn validate(&self) -> Result<Task> {
        let task: Task = self.task.parse()?;
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
        if self.method == Method::Pgd && self.noise_std.is_none_or(|s| !(s.is_finite() && s > 0.0))
        {
            bail!("--method pgd needs --noise-std S with S > 0");
        }
        self.device
            .parse::<DeviceChoice>()
            .map_err(|e| anyhow!("--device: {e}"))?;
        Ok(task)
    }

    fn data_source(&self) -> DataSource {
        DataSource {
            train_file: self.train_file.clone(),
            dev_file: self.dev_file.clone(),
            columns: self.columns.clone(),
            ..DataSource::new(self.data_dir.clone())
        }
    }
}

/// What the loop reports as it goes (the CLI turns these into progress bars or log lines).
pub enum Event<'a> {
    Start {
        device: &'a str,
        train_examples: usize,
        dev_examples: usize,
        first_epoch: usize,
        epochs: usize,
        steps_per_epoch: usize,
    },
    Step {
        epoch: usize,
        step_in_epoch: usize,
        loss: f64,
    },
    /// Progress of the one-off K(λ) estimation (PAC): forward passes done of total.
    KEstimation {
        done: usize,
        total: usize,
    },
    /// A step skipped because a term was not finite (`--on-nonfinite skip`).
    Skipped {
        epoch: usize,
        step_in_epoch: usize,
        why: &'a step::NonFinite,
    },
    Epoch(&'a Value),
}

/// Runs (or, with `resume`, continues) a training run and returns its summary.
pub fn train(
    config: &TrainConfig,
    resume: bool,
    overwrite: bool,
    on_event: &mut dyn FnMut(Event),
) -> Result<Value> {
    let task = config.validate()?;
    // Every input is checked before the output folder is touched.
    RunDir::check(&config.output_dir, resume, overwrite)?;
    let resume_from = if resume {
        Some(resume_point(config)?)
    } else {
        None
    };
    let started = Instant::now();
    let selected = select(config.device.parse().map_err(|e: String| anyhow!(e))?)?;
    let plain = selected.device.clone();
    let device = plain.clone().autodiff();

    let folder = resolve_model(&config.model)?;
    let tokenizer = TextTokenizer::from_model_dir(&folder, config.max_length)?;
    let pad = tokenizer.pad_id();
    let source = config.data_source();
    let train_set = source.load(task, Split::Train)?;
    if train_set.examples.is_empty() {
        bail!(
            "{}: the train split has no examples",
            train_set.source.display()
        );
    }
    let rows = few_shot(train_set.examples.len(), config.train_size, config.seed);
    let train_data = Prepared::new(&train_set, Some(&rows), &tokenizer)?;
    let dev_data = Prepared::new(&source.load(task, Split::Dev)?, None, &tokenizer)?;

    let pretrained = Pretrained::load(&folder, config.dropout, &device)?;
    let hidden = pretrained.config.hidden_size;
    let mut model = Classifier::new(
        pretrained.bert,
        hidden,
        task.num_labels(),
        config.dropout,
        config.seed,
        &device,
    );
    if !config.train_embeddings {
        model.bert.embeddings = model.bert.embeddings.no_grad();
    }
    let te = config.train_embeddings;
    let slots = params::slots(&model, te);
    let mut adam = AdamW::new(
        AdamWConfig {
            weight_decay: config.weight_decay,
            ..AdamWConfig::default()
        },
        slots.len(),
    );
    let n = train_data.len();
    let gamma = config.gamma.unwrap_or(task.default_gamma());

    let mut state = LoopState::default();
    let mut history = Vec::new();
    let mut pac: Option<PacState> = None;
    let run = RunDir::open(&config.output_dir, resume, overwrite)?;
    if let Some(last) = resume_from {
        model = checkpoint::load_model(&last, model)?;
        checkpoint::load_moments(&last, &mut adam, &slots, &plain)?;
        state = checkpoint::load_state(&last)?;
        if config.method == Method::Pac {
            pac = Some(PacState::load(&last, &slots, n, gamma, &plain)?);
        }
        history = run.read_history()?;
        history.retain(|r| {
            r["epoch"]
                .as_u64()
                .is_some_and(|e| e as usize <= state.epoch)
        });
    }
    // Time spent by earlier invocations of a resumed run, up to their last checkpoint.
    let earlier_seconds = state.wall_seconds;
    write_json(&run.file("run.json"), config)?;

    on_event(Event::Start {
        device: &selected.name,
        train_examples: n,
        dev_examples: dev_data.len(),
        first_epoch: state.epoch,
        epochs: config.epochs,
        steps_per_epoch: n.div_ceil(config.batch_size),
    });
    if config.method == Method::Pac && pac.is_none() {
        let k_start = Instant::now();
        let (k_hat, _) = pac::state::estimate_k(
            &model.valid(),
            te,
            &train_data,
            &[gamma],
            config.eval_batch_size,
            pad,
            config.seed,
            &plain,
            &mut |done, total| on_event(Event::KEstimation { done, total }),
        )?;
        state.k_seconds = Some(k_start.elapsed().as_secs_f64());
        pac = Some(PacState::init(&model, &slots, te, n, gamma, k_hat)?);
    }
    // PGD's fixed noise: one log-std for every scalar.
    let pgd_p: Vec<Tensor<1>> = match (config.method, config.noise_std) {
        (Method::Pgd, Some(std)) => slots
            .iter()
            .map(|s| Tensor::full([s.numel()], std.ln(), &plain))
            .collect(),
        _ => Vec::new(),
    };

    let steps_per_epoch = n.div_ceil(config.batch_size);
    let total_steps = (steps_per_epoch * config.epochs) as u64;
    let extra_files: Vec<PathBuf> = ["config.json", "tokenizer.json", "vocab.txt"]
        .iter()
        .map(|f| folder.join(f))
        .filter(|p| p.is_file())
        .collect();

    while state.epoch < config.epochs {
        let epoch = state.epoch;
        let stage1 = config.method == Method::Pac && epoch < config.stage1_epochs;
        let epoch_start = Instant::now();
        let order = epoch_order(n, config.seed, epoch as u64);
        let first_step = (epoch * steps_per_epoch) as u64;
        let scale = lr_scale(config, first_step, total_steps);
        // Steps of this epoch already taken before an interruption.
        let done = state.step.saturating_sub(first_step) as usize;
        for (i, batch) in order.chunks(config.batch_size).enumerate().skip(done) {
            let scale = lr_scale(config, state.step, total_steps);
            let lrs = Lrs {
                encoder: config.lr_encoder * scale,
                head: config.lr_head * scale,
                max_grad_norm: config.max_grad_norm,
            };
            let micro: Vec<Micro> = batch
                .chunks(batch.len().div_ceil(config.grad_accum))
                .map(|rows| {
                    (
                        train_data.batch(rows, pad),
                        train_data.targets(rows, &device),
                    )
                })
                .collect();
            let noise = match (config.method, pac.as_mut()) {
                (Method::Vanilla, _) => Noise::None,
                (Method::Pgd, _) => Noise::Fixed(&pgd_p),
                (Method::Pac, Some(pac)) if stage1 => Noise::Learned(pac),
                (Method::Pac, Some(pac)) => Noise::Fixed(&pac.p),
                (Method::Pac, None) => unreachable!("PAC state is initialised above"),
            };
            let key = NoiseSource::Philox {
                seed: config.seed as u32,
                step: state.step as u32,
            };
            let tau = |_| key.clone();
            let (updated, outcome) = step::step(
                model,
                &slots,
                te,
                &mut adam,
                &micro,
                batch.len(),
                lrs,
                noise,
                &tau,
                &device,
                &mut |_| {},
            )
            .map_err(|e| anyhow!("epoch {} step {}: {e}", epoch + 1, i + 1))?;
            model = updated;
            state.step += 1;
            match outcome {
                Outcome::Done(report) => {
                    let loss = crate::report::as_written(&report.loss1)?;
                    state.epoch_losses.push(loss);
                    if let Some(terms) = report.bound {
                        state.epoch_bound = Some(crate::report::as_written(&terms)?);
                    }
                    on_event(Event::Step {
                        epoch,
                        step_in_epoch: i,
                        loss,
                    });
                }
                Outcome::NonFinite(bad) if config.on_nonfinite == OnNonFinite::Skip => {
                    state.epoch_skipped += 1;
                    on_event(Event::Skipped {
                        epoch,
                        step_in_epoch: i,
                        why: &bad,
                    });
                }
                Outcome::NonFinite(bad) => {
                    let last = match checkpoint::existing(&run.checkpoint("last")) {
                        Some(dir) => format!(
                            "{} (epoch {})",
                            dir.display(),
                            checkpoint::load_state(&dir).map_or(0, |s| s.epoch)
                        ),
                        None => "none yet".into(),
                    };
                    bail!(
                        "epoch {} step {}: {bad}; the run stopped (last good checkpoint: {last}). Lower the learning rates, or pass --on-nonfinite skip to skip such steps",
                        epoch + 1,
                        i + 1
                    );
                }
            }
            if interrupt::requested() {
                state.wall_seconds = earlier_seconds + started.elapsed().as_secs_f64();
                state = crate::report::as_written(&state)?;
                let last = run.checkpoint("last");
                checkpoint::save(&last, &model, &extra_files, Some((&adam, &slots)), &state)?;
                if let Some(pac) = &pac {
                    pac.save(&last, &slots)?;
                }
                return Err(interrupt::Interrupted {
                    output_dir: config.output_dir.clone(),
                    epoch: epoch + 1,
                    step: state.step,
                    device: config.device.clone(),
                }
                .into());
            }
        }
        let train_seconds = epoch_start.elapsed().as_secs_f64();
        state.epoch += 1;

        let losses = std::mem::take(&mut state.epoch_losses);
        let last_bound = state.epoch_bound.take();
        let skipped = std::mem::take(&mut state.epoch_skipped);
        let loss1 = losses.iter().sum::<f64>() / losses.len() as f64;
        let mut record = Map::new();
        record.insert("epoch".into(), json!(state.epoch));
        record.insert("step".into(), json!(state.step));
        record.insert("train_loss".into(), json!(loss1));
        record.insert("lr_encoder".into(), json!(config.lr_encoder * scale));
        record.insert("lr_head".into(), json!(config.lr_head * scale));
        if config.on_nonfinite == OnNonFinite::Skip {
            record.insert("skipped_steps".into(), json!(skipped));
        }
        if let Some(pac) = &pac {
            record.insert("stage".into(), json!(if stage1 { 1 } else { 2 }));
            if let Some(t) = &last_bound {
                record.insert("loss2".into(), json!(t.loss2));
                record.insert("kl".into(), json!(t.kl));
                record.insert("k_hat".into(), json!(t.k));
                record.insert("gamma".into(), json!(t.gamma));
                record.insert("bound".into(), json!(loss1 + t.loss2));
            }
            let (sigma_encoder, sigma_head, per_layer) = pac.sigma_means(&slots);
            record.insert("sigma_encoder".into(), json!(sigma_encoder));
            record.insert("sigma_head".into(), json!(sigma_head));
            record.insert("prior_std".into(), json!(pac.prior_std_mean()));
            if stage1 && state.epoch == config.stage1_epochs {
                state.bound = Some(bound_summary(state.epoch, loss1, last_bound.as_ref()));
                let layers: Vec<(String, f64)> = slots
                    .iter()
                    .map(|s| s.name.clone())
                    .zip(per_layer)
                    .collect();
                write_json(&run.file("sigma_per_layer.json"), &layers)?;
                std::fs::create_dir_all(run.file("plots"))?;
                crate::report::plots::write_sigma_plot(
                    &run.file("plots/sigma_per_layer.png"),
                    &layers,
                )?;
            }
        }
        let memory = crate::device::memory(&plain);
        for (key, value) in [
            ("rss_bytes", memory.rss_bytes),
            ("device_bytes_in_use", memory.device_bytes_in_use),
            ("device_bytes_reserved", memory.device_bytes_reserved),
        ] {
            if let Some(v) = value {
                record.insert(key.into(), json!(v));
            }
        }
        record.insert("epoch_seconds".into(), json!(train_seconds));
        record.insert("examples_per_s".into(), json!(n as f64 / train_seconds));

        let mut improved = false;
        let mut dev_predictions = None;
        if state.epoch % config.eval_every_epochs == 0 || state.epoch == config.epochs {
            let eval_start = Instant::now();
            let predictions = predict(
                &model.valid(),
                &dev_data,
                task,
                config.eval_batch_size,
                pad,
                &plain,
            )?;
            let metrics = task.score(&dev_data.labels, &predictions)?;
            let main = metrics
                .iter()
                .find(|(m, _)| *m == task.main_metric())
                .map(|(_, v)| *v)
                .unwrap_or(f64::NAN);
            record.insert("dev".into(), metrics_json(&metrics));
            record.insert(
                "eval_seconds".into(),
                json!(eval_start.elapsed().as_secs_f64()),
            );
            improved = state
                .best
                .is_none_or(|(_, best)| main > best || best.is_nan());
            if improved {
                state.best = Some((state.epoch, main));
                state.stale_evals = 0;
            } else {
                state.stale_evals += 1;
            }
            dev_predictions = Some(predictions);
        }
        let record = crate::report::as_written(&Value::Object(record))?;
        history.push(record.clone());
        state.wall_seconds = earlier_seconds + started.elapsed().as_secs_f64();
        state = crate::report::as_written(&state)?;

        if improved {
            let best_dir = run.checkpoint("best");
            checkpoint::save(&best_dir, &model, &extra_files, None, &state)?;
            if let Some(p) = &dev_predictions {
                crate::report::write_atomic(
                    &best_dir.join("dev_predictions.tsv"),
                    predictions_tsv(task, p).as_bytes(),
                )?;
            }
        }
        let last = run.checkpoint("last");
        checkpoint::save(&last, &model, &extra_files, Some((&adam, &slots)), &state)?;
        if let Some(pac) = &pac {
            pac.save(&last, &slots)?;
        }
        run.write_history(&history)?;
        crate::report::plots::write_history_plots(&run.path, &history)?;
        on_event(Event::Epoch(&record));

        if config
            .early_stopping
            .is_some_and(|patience| state.stale_evals >= patience)
        {
            break;
        }
    }

    let summary = summary(
        config,
        task,
        &history,
        &state,
        &selected.name,
        earlier_seconds + started.elapsed().as_secs_f64(),
        n,
        dev_data.len(),
    );
    write_json(&run.file("summary.json"), &summary)?;
    Ok(summary)
}

/// The checkpoint a `--resume` continues from, after checking the run there is this run.
fn resume_point(config: &TrainConfig) -> Result<PathBuf> {
    let dir = &config.output_dir;
    let run_json = dir.join("run.json");
    if !run_json.is_file() {
        bail!(
            "--resume {}: no run.json there, so no run to continue",
            dir.display()
        );
    }
    let previous = read_config(&run_json)?;
    if previous.task != config.task
        || previous.model != config.model
        || previous.method != config.method
    {
        bail!(
            "--resume {}: that run is task {} / model {} / method {:?}, not {} / {} / {:?}",
            dir.display(),
            previous.task,
            previous.model,
            previous.method,
            config.task,
            config.model,
            config.method
        );
    }
    checkpoint::existing(&dir.join("checkpoints").join("last")).ok_or_else(|| {
        anyhow!(
            "--resume {}: no checkpoint to resume from (checkpoints/last is missing)",
            dir.display()
        )
    })
}

/// The bound J = loss1 + loss2 and its terms at the end of stage 1, for summary.json.
fn bound_summary(epoch: usize, loss1: f64, terms: Option<&BoundTerms>) -> Value {
    match terms {
        Some(t) => json!({
            "epoch": epoch,
            "J": loss1 + t.loss2,
            "loss1": loss1,
            "loss2": t.loss2,
            "kl": t.kl,
            "k_hat": t.k,
            "gamma": t.gamma,
            "C": t.c,
        }),
        None => Value::Null,
    }
}

/// The learning-rate multiplier at optimiser step `step` (0-based) of `total`.
fn lr_scale(config: &TrainConfig, step: u64, total: u64) -> f64 {
    let warmup = (config.warmup_ratio * total as f64).ceil() as u64;
    if step < warmup {
        return (step + 1) as f64 / warmup as f64;
    }
    match config.schedule {
        Schedule::Constant => 1.0,
        Schedule::Linear => {
            let left = total.saturating_sub(step) as f64;
            left / (total - warmup).max(1) as f64
        }
    }
}

pub fn read_config(path: &std::path::Path) -> Result<TrainConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read run config", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        anyhow!(
            "{}:{}: expected a pac-wgpu run.json, found {e}",
            path.display(),
            e.line()
        )
    })
}

fn metrics_json(metrics: &[(crate::metrics::Metric, f64)]) -> Value {
    Value::Object(
        metrics
            .iter()
            .map(|(m, v)| (m.name().to_string(), json!(v)))
            .collect(),
    )
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

#[allow(clippy::too_many_arguments)]
fn summary(
    config: &TrainConfig,
    task: Task,
    history: &[Value],
    state: &LoopState,
    device: &str,
    wall_seconds: f64,
    train_examples: usize,
    dev_examples: usize,
) -> Value {
    let dev_of = |epoch: usize| {
        history
            .iter()
            .find(|r| r["epoch"].as_u64() == Some(epoch as u64))
            .map(|r| r["dev"].clone())
            .unwrap_or(Value::Null)
    };
    let with_epoch = |epoch: usize| {
        let mut m = match dev_of(epoch) {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        m.insert("epoch".into(), json!(epoch));
        Value::Object(m)
    };
    let last_eval = history
        .iter()
        .rev()
        .find(|r| r.get("dev").is_some())
        .and_then(|r| r["epoch"].as_u64())
        .unwrap_or(0) as usize;
    json!({
        "task": task.name(),
        "method": config.method,
        "model": config.model,
        "seed": config.seed,
        "train_size": train_examples,
        "dev_size": dev_examples,
        "metric": task.main_metric().name(),
        "best": state.best.map(|(e, _)| with_epoch(e)),
        "final": with_epoch(last_eval),
        "epochs_run": state.epoch,
        "bound": state.bound,
        "k_estimation_seconds": state.k_seconds,
        "wall_seconds": wall_seconds,
        "device": device,
    })
}

/// A trained classifier read back from a run folder.
pub struct Trained {
    pub config: TrainConfig,
    pub task: Task,
    pub model: Classifier,
    pub tokenizer: TextTokenizer,
}

impl Trained {
    /// Loads `run/checkpoints/<which>` (best or last) onto `device` (a plain device).
    pub fn open(run: &std::path::Path, which: &str, device: &Device) -> Result<Trained> {
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
        let bert_config = crate::model::BertConfig::from_file(&dir.join("config.json"))?;
        let bert = crate::model::Bert::new(&bert_config, 0.0, device);
        let model = Classifier::new(
            bert,
            bert_config.hidden_size,
            task.num_labels(),
            0.0,
            0,
            device,
        );
        let model = checkpoint::load_model(&dir, model)?;
        let tokenizer = TextTokenizer::from_model_dir(&dir, config.max_length)?;
        Ok(Trained {
            config,
            task,
            model,
            tokenizer,
        })
    }

    /// Predictions for every example of `split`, and the task's metrics when it has labels.
    pub fn evaluate(&self, split: Split, device: &Device) -> Result<(Vec<Label>, Option<Value>)> {
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
            Some(metrics_json(&self.task.score(&data.labels, &predictions)?))
        } else {
            None
        };
        Ok((predictions, metrics))
    }
}
