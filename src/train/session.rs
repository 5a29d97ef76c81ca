//! The parts of a run both front ends share, the CLI's [`super::train`] (files, resume, Ctrl-C)
//! and the browser's (bytes, no file system): starting the method, one step, an epoch's
//! record, evaluation and the summary. Every read-back is awaited; natively they are driven
//! by `pollster`.

use anyhow::{Result, anyhow, bail};
use burn::module::Module;
use burn::tensor::Device;

use crate::data::batch::epoch_order;
use crate::data::{Batch, Examples, Prepared, predict};
use crate::glue::sample::few_shot;
use crate::glue::{Dataset, Label, Task};
use crate::model::trainable::{self, Trainable};
use crate::model::{Classifier, Encoder, ModelConfig};
use crate::optim::{AdamW, AdamWConfig};
use crate::pac::noise::NoiseSource;
use crate::pac::{self, PacTuning, PriorDraws, Stage};
use crate::run::{BoundSummary, EpochRecord, EvalPoint, Summary};
use crate::step::{Lrs, Outcome, StepContext};
use crate::util::files::as_written;
use crate::util::rng::mix64;
use crate::util::tokenize::TextTokenizer;

use super::checkpoint::LoopState;
use super::config::{Method, OnNonFinite, TrainConfig, TrainSet, lr_scale};
use super::method::{self, Stepped, Trainer};
use super::trained;

/// Separates the dropout generator's seeds from the other streams of the same seed (ASCII
/// "dropout").
pub const DROPOUT_STREAM: u64 = 0x64_726f_706f_7574;

/// What stays fixed while a run trains.
pub struct Session<'a> {
    pub config: &'a TrainConfig,
    pub task: Task,
    /// The plain device, and its autodiff twin that training runs on.
    pub plain: Device,
    pub device: Device,
    pub pad: u32,
    pub train: Prepared,
    pub dev: Prepared,
    pub trainable: Vec<Trainable>,
    /// A LoRA run's adapted layers (`--lora-targets` or the family's default).
    pub lora_targets: Option<String>,
}

impl<'a> Session<'a> {
    /// A run over its loaded splits, as both front ends start one: the few-shot draw of
    /// `train_set` (`--train-size`, `--seed`), both splits tokenized, and the classifier over
    /// `encoder` (loaded on [`TrainConfig::training_device`]).
    pub fn from_splits(
        config: &'a TrainConfig,
        plain: Device,
        (train_set, dev_set): (&Dataset, &Dataset),
        tokenizer: &TextTokenizer,
        encoder: Encoder,
        model_config: &ModelConfig,
    ) -> Result<(Self, Classifier)> {
        if train_set.examples.is_empty() {
            bail!(
                "{}: the train split has no examples",
                train_set.source.display()
            );
        }
        let rows = few_shot(train_set.examples.len(), config.train_size, config.seed);
        let train = Prepared::new(train_set, Some(&rows), tokenizer)?;
        let dev = Prepared::new(dev_set, None, tokenizer)?;
        let data = (train, dev, tokenizer.pad_id());
        let task = train_set.task.clone();
        Session::new(config, task, plain, data, encoder, model_config)
    }

    /// The run's parts around the classifier it trains, built over `encoder` (loaded on
    /// [`TrainConfig::training_device`]) with the method's adapters.
    pub fn new(
        config: &'a TrainConfig,
        task: Task,
        plain: Device,
        (train, dev, pad): (Prepared, Prepared, u32),
        encoder: Encoder,
        model_config: &ModelConfig,
    ) -> Result<(Self, Classifier)> {
        let device = config.training_device(&plain);
        let encoder = match config.train_embeddings {
            true => encoder,
            false => encoder.freeze_embeddings(),
        };
        let model = Classifier::new(
            encoder,
            model_config,
            config.head,
            task.num_labels(),
            config.dropout,
            config.seed,
            &device,
        );
        let lora_targets = match config.trainable {
            TrainSet::Lora => Some(method::lora_targets(config, &model)?.join(",")),
            _ => None,
        };
        let model = method::prepare_model(model, config, &device)?;
        let trainable = trainable::list(&model, method::scope(config));
        if config.trainable == TrainSet::Bitfit
            && !trainable
                .iter()
                .any(|t| t.group == trainable::Group::Encoder)
        {
            bail!(
                "--trainable bitfit: this {} model has no bias terms, so only its head would train; use --trainable lora or full",
                model_config.model_type()
            );
        }
        let session = Session {
            config,
            task,
            plain,
            device,
            pad,
            train,
            dev,
            trainable,
            lora_targets,
        };
        Ok((session, model))
    }

    /// The config as run.json records it: with the number of trainable parameters and the pad id.
    pub fn written_config(&self) -> TrainConfig {
        TrainConfig {
            trainable_parameters: Some(self.trainable.iter().map(Trainable::numel).sum()),
            pad_token_id: Some(self.pad),
            lora_targets: match &self.lora_targets {
                Some(targets) => targets.clone(),
                None => self.config.lora_targets.clone(),
            },
            ..self.config.clone()
        }
    }

    pub fn steps_per_epoch(&self) -> usize {
        self.train.len().div_ceil(self.config.batch_size)
    }

    fn total_steps(&self) -> u64 {
        (self.steps_per_epoch() * self.config.epochs) as u64
    }

    /// γ: the run's, else the paper's for the task.
    pub fn gamma(&self) -> f64 {
        self.config
            .gamma
            .unwrap_or(TrainConfig::paper_gamma(&self.task))
    }

    pub fn new_adamw(&self) -> AdamW {
        let adam_config = AdamWConfig {
            weight_decay: self.config.weight_decay,
            ..AdamWConfig::default()
        };
        AdamW::new(adam_config, self.trainable.len())
    }

    pub fn noise_std(&self) -> Result<f64> {
        self.config
            .noise_std
            .ok_or_else(|| anyhow!("--method pgd needs --noise-std S with S > 0"))
    }

    /// A new run's method: PAC estimates K(λ) (`on_k` hears each prior model) and initialises
    /// p and b here.
    pub async fn start_method(
        &self,
        model: &Classifier,
        on_k: &mut dyn FnMut(usize, usize),
    ) -> Result<Trainer> {
        let config = self.config;
        Ok(match config.method {
            Method::Vanilla => Trainer::Vanilla,
            Method::Pgd => Trainer::pgd(&self.trainable, self.noise_std()?, &self.plain),
            Method::Pac => {
                let examples = Examples {
                    data: &self.train,
                    pad: self.pad,
                    batch_size: config.eval_batch_size,
                };
                let gamma = self.gamma();
                let (k_hat, _) = pac::estimate_k(
                    &model.valid(),
                    method::scope(config),
                    &examples,
                    pac::bound::fixed_gamma(gamma),
                    PriorDraws {
                        models: config.prior_models,
                        seed: config.seed,
                    },
                    &self.plain,
                    on_k,
                )
                .await?;
                let pac = PacTuning::init(
                    model,
                    &self.trainable,
                    method::scope(config),
                    self.train.len(),
                    gamma,
                    k_hat,
                    config.stage1_epochs,
                )
                .await?;
                Trainer::Pac(Box::new(pac))
            }
        })
    }

    /// The batches of the current epoch not taken yet, with their 0-based index in the epoch.
    pub fn remaining_batches(&self, state: &LoopState) -> Vec<(usize, Vec<usize>)> {
        let config = self.config;
        let first_step = (state.epoch * self.steps_per_epoch()) as u64;
        let done = state.step.saturating_sub(first_step) as usize;
        let order = epoch_order(self.train.len(), config.seed, state.epoch as u64);
        order
            .chunks(config.batch_size)
            .map(<[usize]>::to_vec)
            .enumerate()
            .skip(done)
            .collect()
    }

    /// The examples `rows` as micro-batches cut by length ([`Prepared::micro_rows`]), each of at
    /// most 1/`--grad-accum` of them.
    fn batch(&self, rows: &[usize]) -> Batch {
        let max_rows = rows.len().div_ceil(self.config.grad_accum);
        self.train
            .training_batch(rows, max_rows, self.pad, &self.device)
    }

    /// One optimiser step on the examples `rows`, at the learning rates of the current step.
    pub async fn step(
        &self,
        method: &mut Trainer,
        model: Classifier,
        adam: &mut AdamW,
        state: &mut LoopState,
        rows: &[usize],
    ) -> Result<(Classifier, Outcome<Stepped>)> {
        let config = self.config;
        let scale = lr_scale(config, state.step, self.total_steps());
        let batch = self.batch(rows);
        let mut ctx = StepContext {
            trainable: &self.trainable,
            scope: method::scope(config),
            adam,
            lrs: Lrs {
                encoder: config.lr_encoder * scale,
                head: config.lr_head * scale,
                max_grad_norm: config.max_grad_norm,
            },
            device: &self.device,
            lap: &mut |_| {},
        };
        let key = NoiseSource::Philox {
            seed: config.seed as u32,
            step: state.step as u32,
        };
        // Dropout's masks come from Burn's generator: seeded from (seed, step) before every step,
        // a run draws the same masks again, resumed or not.
        self.plain
            .seed(mix64(config.seed ^ DROPOUT_STREAM) ^ state.step);
        let (model, outcome) = method
            .step(state.epoch, model, &mut ctx, &batch, &|_| key.clone())
            .await?;
        state.step += 1;
        Ok((model, outcome))
    }

    /// Keeps a finished step's loss (returned) and bound terms for the epoch's record.
    pub fn keep(&self, state: &mut LoopState, stepped: Stepped) -> Result<f64> {
        let loss = as_written(&stepped.loss1)?;
        state.epoch_losses.push(loss);
        if let Some(terms) = stepped.bound {
            state.epoch_bound = Some(as_written(&terms)?);
        }
        Ok(loss)
    }

    /// The record of the epoch whose steps just ended (before its evaluation), and, when it ends
    /// PAC's stage 1, σ per trainable tensor. Moves `state` to the next epoch.
    pub async fn finish_epoch(
        &self,
        method: &Trainer,
        state: &mut LoopState,
        train_seconds: f64,
    ) -> Result<(EpochRecord, Option<Vec<f64>>)> {
        let config = self.config;
        let epoch = state.epoch;
        let first_step = (epoch * self.steps_per_epoch()) as u64;
        let scale = lr_scale(config, first_step, self.total_steps());
        let losses = std::mem::take(&mut state.epoch_losses);
        let bound = state.epoch_bound.take();
        let skipped = std::mem::take(&mut state.epoch_skipped);
        let loss1 = losses.iter().sum::<f64>() / losses.len() as f64;
        let memory = crate::util::device::memory(&self.plain);
        let mut record = EpochRecord {
            epoch: epoch + 1,
            step: state.step,
            train_loss: loss1,
            lr_encoder: config.lr_encoder * scale,
            lr_head: config.lr_head * scale,
            skipped_steps: (config.on_nonfinite == OnNonFinite::Skip).then_some(skipped),
            rss_bytes: memory.rss_bytes,
            device_bytes_in_use: memory.device_bytes_in_use,
            device_bytes_reserved: memory.device_bytes_reserved,
            epoch_seconds: train_seconds,
            examples_per_s: self.train.len() as f64 / train_seconds,
            ..EpochRecord::default()
        };
        let sigma = method
            .record_noise(&mut record, epoch, &self.trainable)
            .await?;
        if let Some(t) = &bound {
            record.loss2 = Some(t.loss2);
            record.kl = Some(t.kl);
            record.k_hat = Some(t.k);
            record.gamma = Some(t.gamma);
            record.bound = Some(loss1 + t.loss2);
        }
        let stage1_end =
            method.stage(epoch) == Some(Stage::One) && epoch + 1 == config.stage1_epochs;
        if stage1_end {
            state.bound = bound.map(|t| BoundSummary {
                epoch: epoch + 1,
                j: loss1 + t.loss2,
                loss1,
                loss2: t.loss2,
                kl: t.kl,
                k_hat: t.k,
                gamma: t.gamma,
                c: t.c,
            });
        }
        state.epoch += 1;
        Ok((record, sigma.filter(|_| stage1_end)))
    }

    /// Whether the epoch `state` just finished is evaluated on dev.
    pub fn eval_due(&self, state: &LoopState) -> bool {
        state.epoch.is_multiple_of(self.config.eval_every_epochs)
            || state.epoch == self.config.epochs
    }

    /// Scores `model` on dev into `record`, and updates the best epoch and the early-stopping
    /// count. The caller times it (`record.eval_seconds`).
    pub async fn evaluate(
        &self,
        model: &Classifier,
        state: &mut LoopState,
        record: &mut EpochRecord,
    ) -> Result<Vec<Label>> {
        let config = self.config;
        let predictions = predict(
            &model.valid(),
            &self.dev,
            &self.task,
            config.eval_batch_size,
            self.pad,
            &self.plain,
        )
        .await?;
        let metrics = self.task.score(&self.dev.labels, &predictions)?;
        let main = metrics
            .iter()
            .find(|(m, _)| *m == self.task.main_metric())
            .map_or(f64::NAN, |(_, v)| *v);
        record.dev = Some(trained::metrics_by_name(&metrics));
        if state
            .best
            .is_none_or(|(_, best)| main > best || best.is_nan())
        {
            state.best = Some((state.epoch, main));
            state.stale_evals = 0;
        } else {
            state.stale_evals += 1;
        }
        Ok(predictions)
    }

    /// Whether early stopping ends the run here.
    pub fn stop_early(&self, state: &LoopState) -> bool {
        self.config
            .early_stopping
            .is_some_and(|patience| state.stale_evals >= patience)
    }

    /// The distinct batch shapes of the training and dev sets so far.
    fn batch_shapes(&self) -> usize {
        let lock = |p: &Prepared| p.shapes.lock().map(|s| s.clone()).unwrap_or_default();
        lock(&self.train).union(&lock(&self.dev)).count()
    }

    pub fn summary(
        &self,
        history: &[EpochRecord],
        state: &LoopState,
        wall_seconds: f64,
        device: &str,
        pipelines: Option<usize>,
    ) -> Summary {
        let at = |epoch: usize| EvalPoint {
            epoch,
            metrics: history
                .iter()
                .find(|r| r.epoch == epoch)
                .and_then(|r| r.dev.clone())
                .unwrap_or_default(),
        };
        let last_eval = history
            .iter()
            .rev()
            .find(|r| r.dev.is_some())
            .map_or(0, |r| r.epoch);
        let config = self.config;
        Summary {
            task: self.task.name().to_string(),
            method: config.method.name().to_string(),
            trainable: Some(config.trainable.name().to_string()),
            model: config.model.clone(),
            seed: config.seed,
            train_size: self.train.len(),
            dev_size: self.dev.len(),
            metric: self.task.main_metric().name().to_string(),
            best: state.best.map(|(e, _)| at(e)),
            last: at(last_eval),
            epochs_run: state.epoch,
            trainable_parameters: self.trainable.iter().map(Trainable::numel).sum(),
            bound: state.bound.clone(),
            k_estimation_seconds: state.k_seconds,
            wall_seconds,
            device: device.to_string(),
            batch_shapes: Some(self.batch_shapes()),
            pipelines,
        }
    }
}
