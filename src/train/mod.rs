//! The training loop shared by every method: few-shot data, batches with gradient
//! accumulation, AdamW with separate encoder/head learning rates, evaluation on dev after every
//! `eval_every_epochs` epochs, the best and last checkpoints, and exact resume. The methods
//! themselves are in [`method`] (PAC-tuning in [`crate::pac`]).

pub mod checkpoint;
pub mod config;
pub mod epochs;
pub mod event;
pub mod export;
pub mod interrupt;
pub mod method;
pub mod peft;
pub mod session;
pub mod trained;

use std::cell::Cell;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};

use crate::glue::{Label, Split, Task};
use crate::model::{Classifier, ModelConfig, Pretrained, resolve_model};
use crate::pac::PacTuning;
use crate::run::{EpochRecord, RunDir, Summary};
use crate::util::device::{is_cpu, select};
use crate::util::files::{as_written, write_atomic, write_json};
use crate::util::kernel::watch::Pipelines;
use epochs::{NonFiniteStop, Progress};
use method::Trainer;

pub use config::{
    Method, MethodArg, OnNonFinite, Schedule, TrainConfig, TrainSet, read_config, run_label,
};
pub use event::Event;
pub use session::{DROPOUT_STREAM, Session};
pub use trained::{Trained, named_predictions_tsv, predictions_tsv, probabilities_tsv};

/// Everything about a run that stays fixed while it trains.
struct Job<'a> {
    run: Session<'a>,
    device_name: String,
    /// Model-folder files copied into every checkpoint (config, tokenizer).
    extra_files: Vec<PathBuf>,
    dir: RunDir,
    /// When this invocation started, and the seconds earlier invocations of the run took.
    started: Instant,
    earlier_seconds: f64,
    /// When `checkpoints/last` was last written (or this invocation started).
    last_saved: Cell<Instant>,
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
    let (resume_from, note) = resume_from.unzip();
    if let Some(note) = note.flatten() {
        on_event(Event::Note(&note));
    }
    if let Some(last) = &resume_from
        && let Some(summary) = finished(config, last)?
    {
        on_event(Event::Note(&format!(
            "{} is complete ({} of {} epochs): nothing to resume, nothing changed",
            config.output_dir.display(),
            summary.epochs_run,
            config.epochs
        )));
        return Ok(summary);
    }
    let pipelines = Pipelines::start();
    let (mut job, model) = prepare(config, task, resume, overwrite)?;
    let mut progress = match &resume_from {
        Some(last) => resumed(&mut job, model, last)?,
        None => Progress::new(&job.run, model),
    };
    if let Some(holder) = job.dir.took_over() {
        on_event(Event::Note(&format!(
            "took over the run lock left by process {holder}, which is no longer running"
        )));
    }
    let run = &job.run;
    write_json(&job.dir.file("run.json"), &run.written_config())?;
    on_event(Event::Start {
        device: &job.device_name,
        train_examples: run.train.len(),
        dev_examples: run.dev.len(),
        first_epoch: progress.state.epoch,
        epochs: config.epochs,
        steps_per_epoch: run.steps_per_epoch(),
    });
    if resume_from.is_none() {
        let k_start = Instant::now();
        let on_k = &mut |done, total| on_event(Event::KEstimation { done, total });
        progress.method = pollster::block_on(run.start_method(&progress.model, on_k))?;
        if config.method == Method::Pac {
            progress.state.k_seconds = Some(k_start.elapsed().as_secs_f64());
        }
    }
    while progress.state.epoch < config.epochs {
        let train_seconds = run_epoch(&job, &mut progress, on_event)?;
        let record = finish_epoch(&job, &mut progress, train_seconds, on_event)?;
        on_event(Event::Epoch(&record));
        if run.stop_early(&progress.state) {
            break;
        }
    }
    let pipelines = Some(pipelines.count()).filter(|_| !is_cpu(&run.plain));
    let summary = run.summary(
        &progress.history,
        &progress.state,
        wall_seconds(&job),
        &job.device_name,
        pipelines,
    );
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
    let selected = select(config.device)?;
    let plain = selected.device.clone();

    let folder = resolve_model(&config.model)?;
    let config_json = folder.join("config.json");
    let model_config = ModelConfig::from_file(&config_json)?;
    model_config.check_max_length(&config_json, config.max_length)?;
    let tokenizer = crate::model::tokenizer(&folder, &model_config, config.max_length)?;
    let source = config.data_source();
    let splits = (
        &source.load(&task, Split::Train)?,
        &source.load(&task, Split::Dev)?,
    );
    let device = config.training_device(&plain);
    let pretrained = Pretrained::from_config(&folder, model_config, config.dropout, &device)?;
    let (run, model) = Session::from_splits(
        config,
        plain,
        splits,
        &tokenizer,
        pretrained.encoder,
        &pretrained.config,
    )?;
    let extra_files = ["config.json", "tokenizer.json", "vocab.txt"]
        .iter()
        .map(|f| folder.join(f))
        .filter(|p| p.is_file())
        .collect();
    let job = Job {
        run,
        device_name: selected.name,
        extra_files,
        dir: RunDir::open(&config.output_dir, resume, overwrite)?,
        started,
        earlier_seconds: 0.0,
        last_saved: Cell::new(Instant::now()),
    };
    Ok((job, model))
}

/// The run's progress as checkpoint `last` and history.jsonl left it.
fn resumed(job: &mut Job, model: Classifier, last: &std::path::Path) -> Result<Progress> {
    let run = &job.run;
    let config = run.config;
    let model = checkpoint::load_model(last, model)?;
    let mut adam = run.new_adamw();
    checkpoint::load_moments(last, &mut adam, &run.trainable, &run.plain)?;
    let state = checkpoint::load_state(last)?;
    let method = match config.method {
        Method::Vanilla => Trainer::Vanilla,
        Method::Pgd => Trainer::pgd(&run.trainable, run.noise_std()?, &run.plain),
        Method::Pac => Trainer::Pac(Box::new(PacTuning::load(
            last,
            &run.trainable,
            run.train.len(),
            run.gamma(),
            config.stage1_epochs,
            &run.plain,
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

/// The steps of the current epoch not taken yet, and the seconds they took. Ctrl-C between two
/// steps writes checkpoint `last` and ends the run with [`interrupt::Interrupted`].
fn run_epoch(job: &Job, p: &mut Progress, on_event: &mut dyn FnMut(Event)) -> Result<f64> {
    let config = job.run.config;
    let clock = || job.started.elapsed().as_secs_f64();
    let after_step = &mut |p: &mut Progress| {
        if !interrupt::requested() {
            return Ok(());
        }
        p.state.wall_seconds = wall_seconds(job);
        p.state = as_written(&p.state)?;
        save_last(job, p)?;
        Err(interrupt::Interrupted {
            output_dir: config.output_dir.clone(),
            epoch: p.state.epoch + 1,
            step: p.state.step,
            device: config.device.to_string(),
        }
        .into())
    };
    let epoch = epochs::run_epoch(&job.run, p, &clock, on_event, after_step);
    pollster::block_on(epoch).map_err(|e| match e.downcast::<NonFiniteStop>() {
        Ok(stop) => anyhow!(
            "{stop} (last good checkpoint: {}). Lower the learning rates, or pass --on-nonfinite skip to skip such steps",
            last_good(job)
        ),
        Err(e) => e,
    })
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
fn finish_epoch(
    job: &Job,
    p: &mut Progress,
    train_seconds: f64,
    on_event: &mut dyn FnMut(Event),
) -> Result<EpochRecord> {
    let clock = || job.started.elapsed().as_secs_f64();
    let ended = epochs::end_epoch(&job.run, p, train_seconds, &clock, on_event);
    let ended = pollster::block_on(ended)?;
    p.state.wall_seconds = wall_seconds(job);
    p.state = as_written(&p.state)?;
    let record = p
        .history
        .last()
        .expect("end_epoch keeps the record")
        .clone();
    save_epoch(job, p, ended.best_predictions, on_event).with_context(|| {
        format!(
            "saving epoch {} failed, the last checkpoint before it is whole: free disk space, then continue with --resume",
            record.epoch
        )
    })?;
    if let Some(per_tensor) = ended.sigma {
        write_sigma_per_tensor(job, per_tensor, on_event)?;
    }
    Ok(record)
}

/// History (and [`Event::History`]), then the best checkpoint (with `predictions` when this epoch improved),
/// then the last when `--save-interval` has passed or the run ends. A resume drops history past
/// its checkpoint, so a write that fails midway loses nothing.
fn save_epoch(
    job: &Job,
    p: &mut Progress,
    predictions: Option<Vec<Label>>,
    on_event: &mut dyn FnMut(Event),
) -> Result<()> {
    job.dir.write_history(&p.history)?;
    on_event(Event::History {
        run_dir: &job.dir.path,
        history: &p.history,
    });
    if let Some(predictions) = predictions {
        // LoRA's adapters stay unmerged, so that `export` can write them as PEFT's.
        let best = job.dir.checkpoint("best");
        let tsv = predictions_tsv(&job.run.task, &predictions);
        let state = &p.state;
        checkpoint::save(
            &best,
            &p.model,
            &job.extra_files,
            None,
            state,
            false,
            |dir| write_atomic(&dir.join("dev_predictions.tsv"), tsv.as_bytes()),
        )?;
    }
    let config = job.run.config;
    let ends = p.state.epoch >= config.epochs || job.run.stop_early(&p.state);
    if ends || job.last_saved.get().elapsed().as_secs() >= config.save_interval {
        save_last(job, p)?;
    }
    Ok(())
}

/// Checkpoint `last`: model, optimiser, loop state and the method's state.
fn save_last(job: &Job, p: &Progress) -> Result<()> {
    let last = job.dir.checkpoint("last");
    let optimizer = Some((&p.adam, job.run.trainable.as_slice()));
    checkpoint::save(
        &last,
        &p.model,
        &job.extra_files,
        optimizer,
        &p.state,
        true,
        |dir| p.method.save(dir, &job.run.trainable),
    )?;
    job.last_saved.set(Instant::now());
    Ok(())
}

/// PAC, at the end of stage 1: σ per trainable tensor as a table (and [`Event::Sigma`]).
fn write_sigma_per_tensor(
    job: &Job,
    per_tensor: Vec<f64>,
    on_event: &mut dyn FnMut(Event),
) -> Result<()> {
    let tensors: Vec<(String, f64)> = job
        .run
        .trainable
        .iter()
        .map(|t| t.name.clone())
        .zip(per_tensor)
        .collect();
    write_json(&job.dir.file("sigma_per_layer.json"), &tensors)?;
    on_event(Event::Sigma {
        run_dir: &job.dir.path,
        per_tensor: &tensors,
    });
    Ok(())
}

/// The summary of a run that already ended, when `last` is its final checkpoint (the last epoch
/// or an early stop) and summary.json was written.
fn finished(config: &TrainConfig, last: &std::path::Path) -> Result<Option<Summary>> {
    let state = checkpoint::load_state(last)?;
    let stopped = config
        .early_stopping
        .is_some_and(|patience| state.stale_evals >= patience);
    let path = config.output_dir.join("summary.json");
    if !(state.epoch >= config.epochs || stopped) || !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let summary = serde_json::from_str(&text).map_err(|e| {
        anyhow!(
            "{}:{}: expected a run summary, found {e}",
            path.display(),
            e.line()
        )
    })?;
    Ok(Some(summary))
}

/// The checkpoint a `--resume` continues from, after checking the run there is this run, and
/// a note on it ([`checkpoint::resumable`]).
fn resume_point(config: &TrainConfig) -> Result<(PathBuf, Option<String>)> {
    let dir = &config.output_dir;
    let run_json = dir.join("run.json");
    if !run_json.is_file() {
        bail!(
            "--resume {}: no run.json there, so no run to continue",
            dir.display()
        );
    }
    let previous = read_config(&run_json)?;
    if previous.task.name() != config.task.name()
        || previous.model != config.model
        || previous.method != config.method
        || previous.trainable != config.trainable
    {
        bail!(
            "--resume {}: that run is task {} / model {} / method {}, not {} / {} / {}",
            dir.display(),
            previous.task,
            previous.model,
            run_label(previous.method, previous.trainable),
            config.task,
            config.model,
            run_label(config.method, config.trainable)
        );
    }
    checkpoint::resumable(&dir.join("checkpoints").join("last"))?.ok_or_else(|| {
        anyhow!(
            "--resume {}: no checkpoint to resume from (checkpoints/last is missing)",
            dir.display()
        )
    })
}
