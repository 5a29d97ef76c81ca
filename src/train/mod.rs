//! The training loop shared by every method: few-shot data, batches with gradient
//! accumulation, AdamW with separate encoder/head learning rates, evaluation on dev after every
//! `eval_every_epochs` epochs, the best and last checkpoints, and exact resume. The methods
//! themselves are in [`method`] (PAC-tuning in [`crate::pac`]).

pub mod checkpoint;
pub mod config;
pub mod export;
pub mod interrupt;
pub mod method;
pub mod trained;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use burn::module::Module;
use burn::tensor::Device;

use crate::data::{Examples, Prepared, predict};
use crate::device::select;
use crate::files::{as_written, write_atomic, write_json};
use crate::glue::sample::{epoch_order, few_shot};
use crate::glue::{Label, Split, Task};
use crate::model::trainable::{self, Trainable};
use crate::model::{Classifier, Pretrained, check_max_length, resolve_model};
use crate::optim::{AdamW, AdamWConfig};
use crate::pac::noise::NoiseSource;
use crate::pac::{self, PacTuning, Stage};
use crate::rng::mix64;
use crate::run::{BoundSummary, EpochRecord, EvalPoint, RunDir, Summary};
use crate::step::{Batch, Lrs, NonFinite, Outcome, StepContext};
use crate::tokenize::TextTokenizer;
use checkpoint::LoopState;
use method::{Stepped, Trainer};

pub use config::{Method, OnNonFinite, Schedule, TrainConfig, lr_scale, read_config};
pub use trained::{Trained, predictions_tsv, probabilities_tsv};

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
        why: &'a NonFinite,
    },
    Epoch(&'a EpochRecord),
    /// Something the user should know that does not stop the run.
    Note(&'a str),
}

/// Separates the dropout generator's seeds from the other streams of the same seed (ASCII
/// "dropout").
pub const DROPOUT_STREAM: u64 = 0x64_726f_706f_7574;

/// Everything about a run that stays fixed while it trains.
struct Job<'a> {
    config: &'a TrainConfig,
    task: Task,
    device_name: String,
    /// The plain device, and its autodiff twin that training runs on.
    plain: Device,
    device: Device,
    pad: u32,
    train: Prepared,
    dev: Prepared,
    trainable: Vec<Trainable>,
    /// Model-folder files copied into every checkpoint (config, tokenizer).
    extra_files: Vec<PathBuf>,
    dir: RunDir,
    /// When this invocation started, and the seconds earlier invocations of the run took.
    started: Instant,
    earlier_seconds: f64,
}

/// What changes while a run trains.
struct Progress {
    model: Classifier,
    adam: AdamW,
    method: Trainer,
    state: LoopState,
    history: Vec<EpochRecord>,
}

/// Runs (or, with `resume`, continues) a training run and returns its summary.
pub fn train(
    config: &TrainConfig,
    resume: bool,
    overwrite: bool,
    on_event: &mut dyn FnMut(Event),
) -> Result<Summary> {
    let config = &config.with_labels()?;
    let task = config.validate()?;
    // Every input is checked before the output folder is touched.
    RunDir::check(&config.output_dir, resume, overwrite)?;
    let resume_from = resume.then(|| resume_point(config)).transpose()?;
    let (mut job, model) = prepare(config, task, resume, overwrite)?;
    let mut progress = match &resume_from {
        Some(last) => resumed(&mut job, model, last)?,
        None => Progress {
            adam: new_adamw(config, &job.trainable),
            model,
            method: Trainer::Vanilla,
            state: LoopState::default(),
            history: Vec::new(),
        },
    };
    if let Some(holder) = job.dir.took_over() {
        on_event(Event::Note(&format!(
            "took over the run lock left by process {holder}, which is no longer running"
        )));
    }
    let written = TrainConfig {
        trainable_parameters: Some(job.trainable.iter().map(Trainable::numel).sum()),
        ..config.clone()
    };
    write_json(&job.dir.file("run.json"), &written)?;
    on_event(Event::Start {
        device: &job.device_name,
        train_examples: job.train.len(),
        dev_examples: job.dev.len(),
        first_epoch: progress.state.epoch,
        epochs: config.epochs,
        steps_per_epoch: job.train.len().div_ceil(config.batch_size),
    });
    if resume_from.is_none() {
        progress.method = start_method(&job, &progress.model, &mut progress.state, on_event)?;
    }
    while progress.state.epoch < config.epochs {
        let train_seconds = run_epoch(&job, &mut progress, on_event)?;
        let record = finish_epoch(&job, &mut progress, train_seconds)?;
        on_event(Event::Epoch(&record));
        if config
            .early_stopping
            .is_some_and(|patience| progress.state.stale_evals >= patience)
        {
            break;
        }
    }
    let summary = summary(&job, &progress);
    write_json(&job.dir.file("summary.json"), &summary)?;
    Ok(summary)
}

/// The device, tokenizer, data, pretrained model and output folder of a run.
fn prepare(
    config: &TrainConfig,
    task: Task,
    resume: bool,
    overwrite: bool,
) -> Result<(Job<'_>, Classifier)> {
    let started = Instant::now();
    let selected = select(config.device.parse().map_err(|e: String| anyhow!(e))?)?;
    let plain = selected.device.clone();
    let device = plain.clone().autodiff();

    let folder = resolve_model(&config.model)?;
    check_max_length(&folder, config.max_length)?;
    let tokenizer = TextTokenizer::from_model_dir(&folder, config.max_length)?;
    let source = config.data_source();
    let train_set = source.load(task, Split::Train)?;
    if train_set.examples.is_empty() {
        bail!(
            "{}: the train split has no examples",
            train_set.source.display()
        );
    }
    let rows = few_shot(train_set.examples.len(), config.train_size, config.seed);
    let train = Prepared::new(&train_set, Some(&rows), &tokenizer)?;
    let dev = Prepared::new(&source.load(task, Split::Dev)?, None, &tokenizer)?;

    let pretrained = Pretrained::load(&folder, config.dropout, &device)?;
    let encoder = match config.train_embeddings {
        true => pretrained.encoder,
        false => pretrained.encoder.freeze_embeddings(),
    };
    let model = Classifier::new(
        encoder,
        &pretrained.config,
        config.head,
        task.num_labels(),
        config.dropout,
        config.seed,
        &device,
    );
    let model = method::prepare_model(model, config, &device)?;
    let extra_files = ["config.json", "tokenizer.json", "vocab.txt"]
        .iter()
        .map(|f| folder.join(f))
        .filter(|p| p.is_file())
        .collect();
    let job = Job {
        config,
        task,
        device_name: selected.name,
        plain,
        device,
        pad: tokenizer.pad_id(),
        train,
        dev,
        trainable: trainable::list(&model, method::scope(config)),
        extra_files,
        dir: RunDir::open(&config.output_dir, resume, overwrite)?,
        started,
        earlier_seconds: 0.0,
    };
    Ok((job, model))
}

fn new_adamw(config: &TrainConfig, trainable: &[Trainable]) -> AdamW {
    let adam_config = AdamWConfig {
        weight_decay: config.weight_decay,
        ..AdamWConfig::default()
    };
    AdamW::new(adam_config, trainable.len())
}

/// The run's progress as checkpoint `last` and history.jsonl left it.
fn resumed(job: &mut Job, model: Classifier, last: &std::path::Path) -> Result<Progress> {
    let config = job.config;
    let model = checkpoint::load_model(last, model)?;
    let mut adam = new_adamw(config, &job.trainable);
    checkpoint::load_moments(last, &mut adam, &job.trainable, &job.plain)?;
    let state = checkpoint::load_state(last)?;
    let method = match config.method {
        Method::Vanilla | Method::Bitfit | Method::Lora => Trainer::Vanilla,
        Method::Pgd => Trainer::pgd(&job.trainable, noise_std(config)?, &job.plain),
        Method::Pac => Trainer::Pac(Box::new(PacTuning::load(
            last,
            &job.trainable,
            job.train.len(),
            gamma(job),
            config.stage1_epochs,
            &job.plain,
        )?)),
    };
    let mut history = job.dir.read_history()?;
    history.retain(|r| r.epoch <= state.epoch);
    // Time spent by earlier invocations of the run, up to their last checkpoint.
    job.earlier_seconds = state.wall_seconds;
    Ok(Progress {
        model,
        adam,
        method,
        state,
        history,
    })
}

fn gamma(job: &Job) -> f64 {
    job.config.gamma.unwrap_or(job.task.default_gamma())
}

fn noise_std(config: &TrainConfig) -> Result<f64> {
    config
        .noise_std
        .ok_or_else(|| anyhow!("--method pgd needs --noise-std S with S > 0"))
}

/// A new run's method: PAC estimates K(λ) and initialises p and b here.
fn start_method(
    job: &Job,
    model: &Classifier,
    state: &mut LoopState,
    on_event: &mut dyn FnMut(Event),
) -> Result<Trainer> {
    let config = job.config;
    Ok(match config.method {
        Method::Vanilla | Method::Bitfit | Method::Lora => Trainer::Vanilla,
        Method::Pgd => Trainer::pgd(&job.trainable, noise_std(config)?, &job.plain),
        Method::Pac => {
            let k_start = Instant::now();
            let examples = Examples {
                data: &job.train,
                pad: job.pad,
                batch_size: config.eval_batch_size,
            };
            let gamma = gamma(job);
            let (k_hat, _) = pollster::block_on(pac::estimate_k(
                &model.valid(),
                config.train_embeddings,
                &examples,
                (gamma, gamma),
                config.seed,
                &job.plain,
                &mut |done, total| on_event(Event::KEstimation { done, total }),
            ))?;
            state.k_seconds = Some(k_start.elapsed().as_secs_f64());
            Trainer::Pac(Box::new(pollster::block_on(PacTuning::init(
                model,
                &job.trainable,
                config.train_embeddings,
                job.train.len(),
                gamma,
                k_hat,
                config.stage1_epochs,
            ))?))
        }
    })
}

/// The steps of the current epoch not taken yet, and the seconds they took. Ctrl-C between two
/// steps writes checkpoint `last` and ends the run with [`interrupt::Interrupted`].
fn run_epoch(job: &Job, p: &mut Progress, on_event: &mut dyn FnMut(Event)) -> Result<f64> {
    let started = Instant::now();
    let config = job.config;
    let epoch = p.state.epoch;
    let n = job.train.len();
    let first_step = (epoch * n.div_ceil(config.batch_size)) as u64;
    let done = p.state.step.saturating_sub(first_step) as usize;
    let order = epoch_order(n, config.seed, epoch as u64);
    for (i, rows) in order.chunks(config.batch_size).enumerate().skip(done) {
        let stepped = take_step(job, p, rows)
            .map_err(|e| anyhow!("epoch {} step {}: {e}", epoch + 1, i + 1))?;
        match stepped {
            Outcome::Done(stepped) => {
                let loss = as_written(&stepped.loss1)?;
                p.state.epoch_losses.push(loss);
                if let Some(terms) = stepped.bound {
                    p.state.epoch_bound = Some(as_written(&terms)?);
                }
                on_event(Event::Step {
                    epoch,
                    step_in_epoch: i,
                    loss,
                });
            }
            Outcome::NonFinite(bad) if config.on_nonfinite == OnNonFinite::Skip => {
                p.state.epoch_skipped += 1;
                on_event(Event::Skipped {
                    epoch,
                    step_in_epoch: i,
                    why: &bad,
                });
            }
            Outcome::NonFinite(bad) => bail!(
                "epoch {} step {}: {bad}; the run stopped (last good checkpoint: {}). Lower the learning rates, or pass --on-nonfinite skip to skip such steps",
                epoch + 1,
                i + 1,
                last_good(job)
            ),
        }
        if interrupt::requested() {
            p.state.wall_seconds = wall_seconds(job);
            p.state = as_written(&p.state)?;
            save_last(job, p)?;
            return Err(interrupt::Interrupted {
                output_dir: config.output_dir.clone(),
                epoch: epoch + 1,
                step: p.state.step,
                device: config.device.clone(),
            }
            .into());
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

/// One optimiser step on the examples `rows`, at the learning rates of the current step.
fn take_step(job: &Job, p: &mut Progress, rows: &[usize]) -> Result<Outcome<Stepped>> {
    let config = job.config;
    let total_steps = (job.train.len().div_ceil(config.batch_size) * config.epochs) as u64;
    let scale = lr_scale(config, p.state.step, total_steps);
    let batch = Batch {
        micro: rows
            .chunks(rows.len().div_ceil(config.grad_accum))
            .map(|r| {
                (
                    job.train.batch(r, job.pad),
                    job.train.targets(r, &job.device),
                )
            })
            .collect(),
        len: rows.len(),
    };
    let mut ctx = StepContext {
        trainable: &job.trainable,
        scope: method::scope(config),
        adam: &mut p.adam,
        lrs: Lrs {
            encoder: config.lr_encoder * scale,
            head: config.lr_head * scale,
            max_grad_norm: config.max_grad_norm,
        },
        device: &job.device,
        lap: &mut |_| {},
    };
    let key = NoiseSource::Philox {
        seed: config.seed as u32,
        step: p.state.step as u32,
    };
    // Dropout's masks come from Burn's generator: seeded from (seed, step) before every step,
    // a run draws the same masks again, resumed or not.
    job.plain
        .seed(mix64(config.seed ^ DROPOUT_STREAM) ^ p.state.step);
    let model = p.model.clone();
    let (model, outcome) =
        pollster::block_on(
            p.method
                .step(p.state.epoch, model, &mut ctx, &batch, &|_| key.clone()),
        )?;
    p.model = model;
    p.state.step += 1;
    Ok(outcome)
}

/// The last checkpoint a stopped run leaves, for its error message.
fn last_good(job: &Job) -> String {
    match checkpoint::existing(&job.dir.checkpoint("last")) {
        Some(dir) => format!(
            "{} (epoch {})",
            dir.display(),
            checkpoint::load_state(&dir).map_or(0, |s| s.epoch)
        ),
        None => "none yet".into(),
    }
}

fn wall_seconds(job: &Job) -> f64 {
    job.earlier_seconds + job.started.elapsed().as_secs_f64()
}

/// After an epoch's steps: its record, the evaluation when due, the checkpoints, history and
/// plots.
fn finish_epoch(job: &Job, p: &mut Progress, train_seconds: f64) -> Result<EpochRecord> {
    let config = job.config;
    let (mut record, sigma_at_stage1_end) = epoch_record(job, p, train_seconds)?;
    p.state.epoch += 1;
    let due =
        p.state.epoch.is_multiple_of(config.eval_every_epochs) || p.state.epoch == config.epochs;
    let predictions = if due {
        Some(evaluate(job, p, &mut record)?)
    } else {
        None
    };
    let improved = predictions.is_some() && p.state.stale_evals == 0;
    let record = as_written(&record)?;
    p.history.push(record.clone());
    p.state.wall_seconds = wall_seconds(job);
    p.state = as_written(&p.state)?;

    save_epoch(job, p, improved.then_some(predictions).flatten()).with_context(|| {
        format!(
            "saving epoch {} failed, the checkpoint of the epoch before is whole: free disk space, then continue with --resume",
            record.epoch
        )
    })?;
    if let Some(per_tensor) = sigma_at_stage1_end {
        write_sigma_per_tensor(job, per_tensor)?;
    }
    Ok(record)
}

/// The record of the epoch whose steps just ended (before its evaluation), and, when it ends
/// PAC's stage 1, σ per trainable tensor.
fn epoch_record(
    job: &Job,
    p: &mut Progress,
    train_seconds: f64,
) -> Result<(EpochRecord, Option<Vec<f64>>)> {
    let config = job.config;
    let epoch = p.state.epoch;
    let n = job.train.len();
    let steps_per_epoch = n.div_ceil(config.batch_size);
    let first_step = (epoch * steps_per_epoch) as u64;
    let scale = lr_scale(config, first_step, (steps_per_epoch * config.epochs) as u64);
    let losses = std::mem::take(&mut p.state.epoch_losses);
    let bound = p.state.epoch_bound.take();
    let skipped = std::mem::take(&mut p.state.epoch_skipped);
    let loss1 = losses.iter().sum::<f64>() / losses.len() as f64;
    let memory = crate::device::memory(&job.plain);
    let mut record = EpochRecord {
        epoch: epoch + 1,
        step: p.state.step,
        train_loss: loss1,
        lr_encoder: config.lr_encoder * scale,
        lr_head: config.lr_head * scale,
        skipped_steps: (config.on_nonfinite == OnNonFinite::Skip).then_some(skipped),
        rss_bytes: memory.rss_bytes,
        device_bytes_in_use: memory.device_bytes_in_use,
        device_bytes_reserved: memory.device_bytes_reserved,
        ..EpochRecord::default()
    };
    let sigma = pollster::block_on(p.method.record_noise(&mut record, epoch, &job.trainable))?;
    if let Some(t) = &bound {
        record.loss2 = Some(t.loss2);
        record.kl = Some(t.kl);
        record.k_hat = Some(t.k);
        record.gamma = Some(t.gamma);
        record.bound = Some(loss1 + t.loss2);
    }
    let stage1_end = p.method.stage(epoch) == Some(Stage::One) && epoch + 1 == config.stage1_epochs;
    if stage1_end {
        p.state.bound = bound.map(|t| BoundSummary {
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
    record.epoch_seconds = train_seconds;
    record.examples_per_s = n as f64 / train_seconds;
    Ok((record, sigma.filter(|_| stage1_end)))
}

/// Scores the model on dev into `record`, and updates the best epoch and the early-stopping
/// count.
fn evaluate(job: &Job, p: &mut Progress, record: &mut EpochRecord) -> Result<Vec<Label>> {
    let config = job.config;
    let started = Instant::now();
    let predictions = pollster::block_on(predict(
        &p.model.valid(),
        &job.dev,
        job.task,
        config.eval_batch_size,
        job.pad,
        &job.plain,
    ))?;
    let metrics = job.task.score(&job.dev.labels, &predictions)?;
    let main = metrics
        .iter()
        .find(|(m, _)| *m == job.task.main_metric())
        .map(|(_, v)| *v)
        .unwrap_or(f64::NAN);
    record.dev = Some(trained::metrics_by_name(&metrics));
    record.eval_seconds = Some(started.elapsed().as_secs_f64());
    let state = &mut p.state;
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

/// Checkpoint `last`: model, optimiser, loop state and the method's state.
/// History and plots, then the best checkpoint (with `predictions` when this epoch improved),
/// then the last. A resume drops history past its checkpoint, so a write that fails midway
/// loses nothing.
fn save_epoch(job: &Job, p: &Progress, predictions: Option<Vec<Label>>) -> Result<()> {
    job.dir.write_history(&p.history)?;
    #[cfg(feature = "native")]
    crate::report::plots::write_history_plots(&job.dir.path, &p.history)?;
    if let Some(predictions) = predictions {
        // LoRA's adapters merged into their weights: `best` is a plain model in HF layout.
        let best = job.dir.checkpoint("best");
        let tsv = predictions_tsv(job.task, &predictions);
        let merged = p.model.clone().materialize();
        checkpoint::save(&best, &merged, &job.extra_files, None, &p.state, |dir| {
            write_atomic(&dir.join("dev_predictions.tsv"), tsv.as_bytes())
        })?;
    }
    save_last(job, p)
}

fn save_last(job: &Job, p: &Progress) -> Result<()> {
    let last = job.dir.checkpoint("last");
    let optimizer = Some((&p.adam, job.trainable.as_slice()));
    checkpoint::save(
        &last,
        &p.model,
        &job.extra_files,
        optimizer,
        &p.state,
        |dir| p.method.save(dir, &job.trainable),
    )
}

/// PAC, at the end of stage 1: σ per trainable tensor as a table and a plot.
fn write_sigma_per_tensor(job: &Job, per_tensor: Vec<f64>) -> Result<()> {
    let tensors: Vec<(String, f64)> = job
        .trainable
        .iter()
        .map(|t| t.name.clone())
        .zip(per_tensor)
        .collect();
    write_json(&job.dir.file("sigma_per_layer.json"), &tensors)?;
    std::fs::create_dir_all(job.dir.file("plots"))?;
    #[cfg(feature = "native")]
    crate::report::plots::write_sigma_plot(&job.dir.file("plots/sigma_per_layer.png"), &tensors)?;
    Ok(())
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

fn summary(job: &Job, p: &Progress) -> Summary {
    let at = |epoch: usize| EvalPoint {
        epoch,
        metrics: p
            .history
            .iter()
            .find(|r| r.epoch == epoch)
            .and_then(|r| r.dev.clone())
            .unwrap_or_default(),
    };
    let last_eval = p
        .history
        .iter()
        .rev()
        .find(|r| r.dev.is_some())
        .map_or(0, |r| r.epoch);
    let config = job.config;
    Summary {
        task: job.task.name().to_string(),
        method: config.method.name().to_string(),
        model: config.model.clone(),
        seed: config.seed,
        train_size: job.train.len(),
        dev_size: job.dev.len(),
        metric: job.task.main_metric().name().to_string(),
        best: p.state.best.map(|(e, _)| at(e)),
        last: at(last_eval),
        epochs_run: p.state.epoch,
        trainable_parameters: job.trainable.iter().map(Trainable::numel).sum(),
        bound: p.state.bound.clone(),
        k_estimation_seconds: p.state.k_seconds,
        wall_seconds: wall_seconds(job),
        device: job.device_name.clone(),
    }
}
