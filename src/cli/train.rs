use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use pac_wgpu::glue::Task;
use pac_wgpu::train::{
    Event, Method, OnNonFinite, Schedule, TrainConfig, interrupt, read_config, train,
};
use serde_json::Value;

use super::GlobalArgs;
use super::data::DataSourceArgs;

/// Flags left out take the value from --config, else the paper's setting.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// GLUE task: cola, sst2, mrpc, stsb, qqp, mnli, mnli-mm, qnli, rte, wnli.
    #[arg(long)]
    task: Option<Task>,
    /// pac (PAC-tuning), vanilla (AdamW) or pgd (fixed isotropic noise). [default: pac]
    #[arg(long)]
    method: Option<Method>,
    /// A local HF model folder or a hub id. [default: bert-base-uncased]
    #[arg(long)]
    model: Option<String>,
    #[command(flatten)]
    data: DataSourceArgs,
    /// Train examples drawn from the train split (0 = all). [default: 100]
    #[arg(long)]
    train_size: Option<usize>,
    /// Seed of the few-shot draw, the batch order and the head initialisation. [default: 42]
    #[arg(long)]
    seed: Option<u64>,
    /// [default: 250]
    #[arg(long)]
    epochs: Option<usize>,
    /// PAC-tuning: epochs of stage 1 (the bound), the rest is stage 2. [default: 4/5 of
    /// --epochs, i.e. 200 of 250]
    #[arg(long)]
    stage1_epochs: Option<usize>,
    /// Examples per optimiser step. [default: 100]
    #[arg(long)]
    batch_size: Option<usize>,
    /// Split each batch into this many micro-batches (same result, less memory). [default: 1]
    #[arg(long)]
    grad_accum: Option<usize>,
    /// Examples per evaluation batch. [default: 64]
    #[arg(long)]
    eval_batch_size: Option<usize>,
    /// Tokens per (pair of) sentence(s), truncated longest first. [default: 128]
    #[arg(long)]
    max_length: Option<usize>,
    /// [default: 5e-5]
    #[arg(long)]
    lr_encoder: Option<f64>,
    /// [default: 1e-2]
    #[arg(long)]
    lr_head: Option<f64>,
    /// AdamW decoupled weight decay. [default: 0.01]
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Fraction of steps with linear warm-up. [default: 0]
    #[arg(long)]
    warmup_ratio: Option<f64>,
    /// Learning-rate schedule after warm-up: constant or linear (decay to 0). [default: constant]
    #[arg(long, value_parser = parse_schedule)]
    lr_schedule: Option<Schedule>,
    /// Clip the global gradient norm to this value.
    #[arg(long)]
    max_grad_norm: Option<f64>,
    /// PAC-tuning: the bound's temperature γ. [default: the task's, 10 or 5]
    #[arg(long)]
    gamma: Option<f64>,
    /// PGD: the fixed noise std.
    #[arg(long)]
    noise_std: Option<f64>,
    /// Dropout probability everywhere. [default: 0]
    #[arg(long)]
    dropout: Option<f64>,
    /// Also train the embeddings (frozen by default).
    #[arg(long)]
    train_embeddings: bool,
    /// Evaluate on dev every N epochs (and after the last). [default: 1]
    #[arg(long)]
    eval_every_epochs: Option<usize>,
    /// Stop after N evaluations without improvement of the task's main metric.
    #[arg(long)]
    early_stopping: Option<usize>,
    /// A step whose loss, bound term or gradient is NaN or infinite: stop the run, or skip the
    /// step (counted in history.jsonl). [default: stop]
    #[arg(long)]
    on_nonfinite: Option<OnNonFinite>,
    /// [default: runs/<task>-<method>-<seed>]
    #[arg(long)]
    output_dir: Option<PathBuf>,
    /// Start from a run.json (flags given here override it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Continue the run in --output-dir from checkpoints/last, with its run.json (flags given
    /// here override it).
    #[arg(long)]
    resume: bool,
    /// Replace a non-empty --output-dir.
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
}

fn parse_schedule(s: &str) -> Result<Schedule, String> {
    match s {
        "constant" => Ok(Schedule::Constant),
        "linear" => Ok(Schedule::Linear),
        _ => Err(format!("expected constant or linear, found {s:?}")),
    }
}

impl TrainArgs {
    /// Defaults, then --config, then the flags given.
    fn resolve(&self, global: &GlobalArgs) -> Result<TrainConfig> {
        let base = match (&self.config, &self.output_dir) {
            (Some(path), _) => Some(read_config(path)?),
            (None, Some(dir)) if self.resume && dir.join("run.json").is_file() => {
                Some(read_config(&dir.join("run.json"))?)
            }
            _ => None,
        };
        let task = match (&self.task, &base) {
            (Some(t), _) => t.name().to_string(),
            (None, Some(b)) => b.task.clone(),
            (None, None) => anyhow::bail!("--task is required (or --config run.json)"),
        };
        let pick = |flag: Option<f64>, from: fn(&TrainConfig) -> f64, default: f64| {
            flag.or(base.as_ref().map(from)).unwrap_or(default)
        };
        let pick_n = |flag: Option<usize>, from: fn(&TrainConfig) -> usize, default: usize| {
            flag.or(base.as_ref().map(from)).unwrap_or(default)
        };
        let method = self
            .method
            .or(base.as_ref().map(|b| b.method))
            .unwrap_or(Method::Pac);
        let seed = self.seed.or(base.as_ref().map(|b| b.seed)).unwrap_or(42);
        let method_name = serde_json::to_value(method)?
            .as_str()
            .unwrap_or("run")
            .to_string();
        let data = &self.data;
        let b = base.as_ref();
        let epochs = pick_n(self.epochs, |b| b.epochs, 250);
        Ok(TrainConfig {
            output_dir: self
                .output_dir
                .clone()
                .or(b.map(|b| b.output_dir.clone()))
                .unwrap_or_else(|| PathBuf::from(format!("runs/{task}-{method_name}-{seed}"))),
            method,
            model: self
                .model
                .clone()
                .or(b.map(|b| b.model.clone()))
                .unwrap_or_else(|| "bert-base-uncased".into()),
            data_dir: data.data_dir.clone().or(b.and_then(|b| b.data_dir.clone())),
            train_file: data
                .train_file
                .clone()
                .or(b.and_then(|b| b.train_file.clone())),
            dev_file: data.dev_file.clone().or(b.and_then(|b| b.dev_file.clone())),
            columns: data.source().columns,
            train_size: pick_n(self.train_size, |b| b.train_size, 100),
            seed,
            epochs,
            stage1_epochs: self
                .stage1_epochs
                .or(b.map(|b| b.stage1_epochs))
                .unwrap_or(epochs * 4 / 5),
            batch_size: pick_n(self.batch_size, |b| b.batch_size, 100),
            grad_accum: pick_n(self.grad_accum, |b| b.grad_accum, 1),
            eval_batch_size: pick_n(self.eval_batch_size, |b| b.eval_batch_size, 64),
            max_length: pick_n(self.max_length, |b| b.max_length, 128),
            lr_encoder: pick(self.lr_encoder, |b| b.lr_encoder, 5e-5),
            lr_head: pick(self.lr_head, |b| b.lr_head, 1e-2),
            weight_decay: pick(self.weight_decay, |b| b.weight_decay, 0.01),
            warmup_ratio: pick(self.warmup_ratio, |b| b.warmup_ratio, 0.0),
            schedule: self
                .lr_schedule
                .or(b.map(|b| b.schedule))
                .unwrap_or(Schedule::Constant),
            max_grad_norm: self.max_grad_norm.or(b.and_then(|b| b.max_grad_norm)),
            gamma: self.gamma.or(b.and_then(|b| b.gamma)),
            noise_std: self.noise_std.or(b.and_then(|b| b.noise_std)),
            dropout: pick(self.dropout, |b| b.dropout, 0.0),
            train_embeddings: self.train_embeddings || b.is_some_and(|b| b.train_embeddings),
            eval_every_epochs: pick_n(self.eval_every_epochs, |b| b.eval_every_epochs, 1),
            early_stopping: self.early_stopping.or(b.and_then(|b| b.early_stopping)),
            on_nonfinite: self
                .on_nonfinite
                .or(b.map(|b| b.on_nonfinite))
                .unwrap_or_default(),
            device: global.device.to_string(),
            task,
        })
    }
}

pub fn run(args: &TrainArgs, global: &GlobalArgs) -> Result<()> {
    let config = args.resolve(global)?;
    interrupt::install()?;
    let bars = !global.quiet && std::io::stderr().is_terminal();
    let mut bar: Option<ProgressBar> = None;
    let mut on_event = |event: Event| match event {
        Event::Start {
            device,
            train_examples,
            dev_examples,
            first_epoch,
            epochs,
            steps_per_epoch,
        } => {
            eprintln!(
                "training {} ({:?}) on {device}: {train_examples} train / {dev_examples} dev examples, epochs {}..{epochs}, {steps_per_epoch} step(s) per epoch",
                config.task,
                config.method,
                first_epoch + 1
            );
            if config.train_size > train_examples {
                eprintln!(
                    "note: --train-size {} is more than the train split holds, so all {train_examples} examples are used",
                    config.train_size
                );
            }
            if bars {
                let b = ProgressBar::new(((epochs - first_epoch) * steps_per_epoch) as u64);
                b.set_style(
                    ProgressStyle::with_template(
                        "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]",
                    )
                    .expect("valid template"),
                );
                bar = Some(b);
            }
        }
        Event::Step {
            epoch,
            step_in_epoch,
            loss,
        } => {
            if let Some(b) = &bar {
                b.set_message(format!(
                    "epoch {} step {} loss {loss:.4}",
                    epoch + 1,
                    step_in_epoch + 1
                ));
                b.inc(1);
            }
        }
        Event::KEstimation { done, total } => {
            if done == 1 {
                eprintln!("estimating K(λ): {total} forward passes over the training set");
            }
            if let Some(b) = &bar {
                b.set_message(format!("K(λ) estimation {done}/{total}"));
                b.tick();
            }
        }
        Event::Skipped {
            epoch,
            step_in_epoch,
            why,
        } => {
            let line = format!(
                "epoch {} step {}: skipped, {why}",
                epoch + 1,
                step_in_epoch + 1
            );
            match &bar {
                Some(b) => b.println(line),
                None => eprintln!("{line}"),
            }
        }
        Event::Epoch(record) => {
            let line = epoch_line(record);
            match &bar {
                Some(b) => b.println(line),
                None if !global.quiet => println!("{line}"),
                None => {}
            }
        }
    };
    let summary = train(&config, args.resume, args.overwrite, &mut on_event)?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    print_summary(&summary, &config);
    Ok(())
}

fn epoch_line(record: &Value) -> String {
    let mut line = format!(
        "epoch {:>4}  loss {:.4}  {:.1} ex/s",
        record["epoch"],
        record["train_loss"].as_f64().unwrap_or(f64::NAN),
        record["examples_per_s"].as_f64().unwrap_or(0.0)
    );
    if let Some(dev) = record["dev"].as_object() {
        for (name, value) in dev {
            line.push_str(&format!(
                "  dev {name} {:.4}",
                value.as_f64().unwrap_or(f64::NAN)
            ));
        }
    }
    line
}

fn print_summary(summary: &Value, config: &TrainConfig) {
    println!("\n{:<14} {}", "run", config.output_dir.display());
    println!(
        "{:<14} {}",
        "device",
        summary["device"].as_str().unwrap_or("?")
    );
    println!(
        "{:<14} {:.1} s",
        "wall time",
        summary["wall_seconds"].as_f64().unwrap_or(0.0)
    );
    for key in ["best", "final"] {
        if let Some(m) = summary[key].as_object() {
            let mut row = format!(
                "{key:<14} epoch {}",
                m.get("epoch").cloned().unwrap_or(Value::Null)
            );
            for (name, value) in m.iter().filter(|(k, _)| *k != "epoch") {
                row.push_str(&format!(
                    "  {name} {:.4}",
                    value.as_f64().unwrap_or(f64::NAN)
                ));
            }
            println!("{row}");
        }
    }
}
