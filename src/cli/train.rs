use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Result;
use pac_wgpu::glue::custom::ProblemType;
use pac_wgpu::glue::{CustomLabels, Task};
use pac_wgpu::model::HeadKind;
use pac_wgpu::report::plots;
use pac_wgpu::run::{EpochRecord, Summary};
use pac_wgpu::train::config::{default_output_dir, default_stage1_epochs};
use pac_wgpu::train::{
    Event, Method, MethodArg, OnNonFinite, Schedule, TrainConfig, TrainSet, interrupt, read_config,
    run_label, train,
};

use super::args::DeviceArg;
use super::data::DataSourceArgs;
use super::progress::{self, ProgressLine};

/// Flags left out take the value from --config, else the paper's setting.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// GLUE task: cola, sst2, mrpc, stsb, qqp, mnli, mnli-mm, qnli, rte, wnli; or custom, your
    /// own --train-file and --dev-file with the labels the train file uses (the default when
    /// --train-file is given without --task).
    #[arg(help_heading = "Data", long)]
    task: Option<Task>,
    /// --task custom: classification or regression. [default: regression when every label is
    /// a number and there are more than 10 distinct ones]
    #[arg(help_heading = "Data", long, value_name = "KIND")]
    problem_type: Option<ProblemType>,
    /// A local HF model folder or a hub id (model_type bert, roberta or gpt2).
    /// [default: bert-base-uncased]
    #[arg(help_heading = "Model", long)]
    model: Option<String>,
    /// cls (the paper's linear layer on the first token; GPT-2: the last real token) or hf (the
    /// family's HF *ForSequenceClassification head). [default: cls]
    #[arg(help_heading = "Model", long)]
    head: Option<HeadKind>,
    /// How a step is taken: pac (PAC-tuning), vanilla (AdamW) or pgd (fixed isotropic noise);
    /// bitfit and lora mean vanilla with --trainable bitfit or lora. [default: pac]
    #[arg(help_heading = "Training", long)]
    method: Option<MethodArg>,
    /// What trains: full (every encoder weight), bitfit (the encoder's biases) or lora (LoRA
    /// adapters); the head always trains. [default: full]
    #[arg(help_heading = "Training", long, value_name = "SET")]
    trainable: Option<TrainSet>,
    #[command(flatten, next_help_heading = "Data")]
    data: DataSourceArgs,
    /// Train examples drawn from the train split (0 = all; with your own --train-file every
    /// row unless given). [default: 100]
    #[arg(help_heading = "Data", long)]
    train_size: Option<usize>,
    /// Seed of the few-shot draw, the batch order and the head initialisation. [default: 42]
    #[arg(help_heading = "Data", long)]
    seed: Option<u64>,
    /// Passes over the training examples. [default: 250]
    #[arg(help_heading = "Training", long)]
    epochs: Option<usize>,
    /// PAC-tuning: epochs of stage 1 (the bound), the rest is stage 2. [default: 4/5 of
    /// --epochs, i.e. 200 of 250]
    #[arg(help_heading = "PAC-tuning", long)]
    stage1_epochs: Option<usize>,
    /// Examples per optimiser step. [default: 100]
    #[arg(help_heading = "Training", long)]
    batch_size: Option<usize>,
    /// Split each batch into micro-batches of at most 1/N of its examples (same result, less
    /// memory); batches are also cut by length where that saves padding. [default: 1]
    #[arg(help_heading = "Training", long)]
    grad_accum: Option<usize>,
    /// Examples per evaluation batch. [default: 64]
    #[arg(help_heading = "Training", long)]
    eval_batch_size: Option<usize>,
    /// Tokens per (pair of) sentence(s), truncated longest first. [default: 128]
    #[arg(help_heading = "Data", long)]
    max_length: Option<usize>,
    /// AdamW's learning rate for the encoder's weights (run_glue's --learning_rate).
    /// [default: 5e-5]
    #[arg(help_heading = "Training", long)]
    lr_encoder: Option<f64>,
    /// AdamW's learning rate for the classification head. [default: 1e-2]
    #[arg(help_heading = "Training", long)]
    lr_head: Option<f64>,
    /// AdamW decoupled weight decay. [default: 0.01]
    #[arg(help_heading = "Training", long)]
    weight_decay: Option<f64>,
    /// Fraction of steps with linear warm-up. [default: 0]
    #[arg(help_heading = "Training", long)]
    warmup_ratio: Option<f64>,
    /// Learning-rate schedule after warm-up: constant or linear (decay to 0). [default: constant]
    #[arg(help_heading = "Training", long, value_parser = parse_schedule)]
    lr_schedule: Option<Schedule>,
    /// Clip the global gradient norm to this value.
    #[arg(help_heading = "Training", long)]
    max_grad_norm: Option<f64>,
    /// PAC-tuning: the bound's temperature γ. [default: the task's, 10 or 5]
    #[arg(help_heading = "PAC-tuning", long)]
    gamma: Option<f64>,
    /// PAC-tuning: prior models drawn per prior std to estimate K(λ) before training (8 stds, so
    /// 8 × N forwards of the train set); fewer is faster and noisier. [default: 10]
    #[arg(help_heading = "PAC-tuning", long, value_name = "N")]
    prior_models: Option<usize>,
    /// PGD: the fixed noise std.
    #[arg(help_heading = "Training", long)]
    noise_std: Option<f64>,
    /// LoRA: the adapters' rank r. [default: 8]
    #[arg(help_heading = "Training", long)]
    lora_rank: Option<usize>,
    /// LoRA: the scale numerator α; the weight becomes W + α/r·A·B. [default: 16]
    #[arg(help_heading = "Training", long)]
    lora_alpha: Option<f64>,
    /// LoRA: the encoder's layers adapted, by the family's names (BERT: query, key, value,
    /// dense; Llama family: q_proj … down_proj; ModernBERT: Wqkv, Wo, Wi). [default: the
    /// attention's query and value: query,value; q_proj,v_proj; Wqkv; GPT-2 c_attn]
    #[arg(help_heading = "Training", long)]
    lora_targets: Option<String>,
    /// Dropout probability everywhere. [default: 0]
    #[arg(help_heading = "Model", long)]
    dropout: Option<f64>,
    /// Also train the embeddings (frozen by default).
    #[arg(help_heading = "Model", long)]
    train_embeddings: bool,
    /// Recompute activations in the backward pass instead of keeping them all (less memory for
    /// long sequences, more time).
    #[arg(help_heading = "Training", long)]
    checkpoint_activations: bool,
    #[command(flatten, next_help_heading = "Model")]
    device: DeviceArg,
    /// Evaluate on dev every N epochs (and after the last). [default: 1]
    #[arg(help_heading = "Training", long)]
    eval_every_epochs: Option<usize>,
    /// Stop after N evaluations without improvement of the task's main metric.
    #[arg(help_heading = "Training", long)]
    early_stopping: Option<usize>,
    /// A step whose loss, bound term or gradient is NaN or infinite: stop the run, or skip the
    /// step (counted in history.jsonl). [default: stop]
    #[arg(help_heading = "Training", long)]
    on_nonfinite: Option<OnNonFinite>,
    /// Write checkpoints/last after an epoch once this many seconds have passed since it was
    /// last written (0: after every epoch); the last epoch, an early stop and Ctrl-C always
    /// write it. [default: 60]
    #[arg(help_heading = "Output", long, value_name = "SECONDS")]
    save_interval: Option<u64>,
    /// The run folder: run.json, history.jsonl, summary.json, checkpoints/, plots/.
    /// [default: runs/<task>-<method>-<seed>]
    #[arg(help_heading = "Output", long, visible_alias = "out")]
    output_dir: Option<PathBuf>,
    /// Start from a run.json (flags given here override it).
    #[arg(help_heading = "Output", long)]
    config: Option<PathBuf>,
    /// Continue the run in --output-dir from checkpoints/last, with its run.json (flags given
    /// here override it).
    #[arg(help_heading = "Output", long)]
    resume: bool,
    /// Replace a non-empty --output-dir.
    #[arg(help_heading = "Output", long, conflicts_with = "resume")]
    overwrite: bool,
    /// No progress bars (also implied when stderr is not a terminal).
    #[arg(help_heading = "Output", long)]
    quiet: bool,
}

fn parse_schedule(s: &str) -> Result<Schedule, String> {
    match s {
        "constant" => Ok(Schedule::Constant),
        "linear" => Ok(Schedule::Linear),
        _ => Err(format!("expected constant or linear, found {s:?}")),
    }
}

impl TrainArgs {
    /// The paper's setting ([`TrainConfig::paper`]), then --config (or the resumed run's
    /// run.json), then the flags given.
    pub(super) fn resolve(&self) -> Result<TrainConfig> {
        let base = match (&self.config, &self.output_dir) {
            (Some(path), _) => Some(read_config(path)?),
            (None, Some(dir)) if self.resume && dir.join("run.json").is_file() => {
                Some(read_config(&dir.join("run.json"))?)
            }
            _ => None,
        };
        let from_base = base.is_some();
        let mut c = match (&self.task, base) {
            (_, Some(base)) => base,
            (Some(task), None) => TrainConfig::paper(task.clone()),
            (None, None) if self.data.train_file.is_some() => {
                TrainConfig::paper(Task::Custom(CustomLabels::unknown()))
            }
            (None, None) => anyhow::bail!("--task is required (or --config run.json)"),
        };
        if let Some(task) = &self.task {
            c.task = task.clone();
        }
        fn set<T>(value: &mut T, flag: Option<T>) {
            if let Some(v) = flag {
                *value = v;
            }
        }
        fn set_opt<T>(value: &mut Option<T>, flag: Option<T>) {
            if flag.is_some() {
                *value = flag;
            }
        }
        set_opt(&mut c.problem_type, self.problem_type);
        if let Some(arg) = self.method {
            let (method, trainable) = arg.resolve(self.trainable)?;
            c.method = method;
            set(&mut c.trainable, trainable);
        } else {
            set(&mut c.trainable, self.trainable);
        }
        set(&mut c.model, self.model.clone());
        set(&mut c.head, self.head);
        // The paper's few-shot n is for GLUE; the user's own files train on every row.
        let own_files = !from_base && self.data.train_file.is_some();
        set(
            &mut c.train_size,
            self.train_size.or(own_files.then_some(0)),
        );
        set(&mut c.seed, self.seed);
        set(&mut c.epochs, self.epochs);
        // Stage 1 follows --epochs unless given or taken from a run.json.
        let stage1 = self
            .stage1_epochs
            .or((!from_base).then(|| default_stage1_epochs(c.epochs)));
        set(&mut c.stage1_epochs, stage1);
        set(&mut c.batch_size, self.batch_size);
        set(&mut c.grad_accum, self.grad_accum);
        set(&mut c.eval_batch_size, self.eval_batch_size);
        set(&mut c.max_length, self.max_length);
        set(&mut c.lr_encoder, self.lr_encoder);
        set(&mut c.lr_head, self.lr_head);
        set(&mut c.weight_decay, self.weight_decay);
        set(&mut c.warmup_ratio, self.warmup_ratio);
        set(&mut c.schedule, self.lr_schedule);
        set(&mut c.lora_rank, self.lora_rank);
        set(&mut c.lora_alpha, self.lora_alpha);
        set(&mut c.lora_targets, self.lora_targets.clone());
        set(&mut c.prior_models, self.prior_models);
        set(&mut c.dropout, self.dropout);
        set(&mut c.eval_every_epochs, self.eval_every_epochs);
        set(&mut c.on_nonfinite, self.on_nonfinite);
        set(&mut c.save_interval, self.save_interval);
        set_opt(&mut c.max_grad_norm, self.max_grad_norm);
        set_opt(&mut c.gamma, self.gamma);
        set_opt(&mut c.noise_std, self.noise_std);
        set_opt(&mut c.early_stopping, self.early_stopping);
        let data = &self.data;
        set_opt(&mut c.data_dir, data.data_dir.clone());
        set_opt(&mut c.train_file, data.train_file.clone());
        set_opt(&mut c.dev_file, data.dev_file.clone());
        // A resumed run keeps its columns unless the data flags name others.
        let data_named = data.train_file.is_some() || data.text_a_column.is_some();
        if !from_base || data_named || data.text_b_column.is_some() {
            c.columns = data.source()?.columns;
        }
        c.train_embeddings |= self.train_embeddings;
        c.checkpoint_activations |= self.checkpoint_activations;
        c.output_dir = match &self.output_dir {
            Some(dir) => dir.clone(),
            None if from_base => c.output_dir,
            None => default_output_dir(&c.task, &run_label(c.method, c.trainable), c.seed),
        };
        c.device = self.device.choice;
        Ok(c)
    }
}

pub fn run(args: &TrainArgs) -> Result<()> {
    let config = args.resolve()?;
    interrupt::install()?;
    let bars = !args.quiet && std::io::stderr().is_terminal();
    let mut bar: Option<ProgressLine> = None;
    let stage1_epochs = (config.method == Method::Pac).then_some(config.stage1_epochs);
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
                "training {} ({}) on {device}: {train_examples} train / {dev_examples} dev examples, epochs {}..{epochs}, {steps_per_epoch} step(s) per epoch",
                config.task,
                run_label(config.method, config.trainable),
                first_epoch + 1
            );
            if config.train_size > train_examples {
                eprintln!(
                    "note: --train-size {} is more than the train split holds, so all {train_examples} examples are used",
                    config.train_size
                );
            }
            if bars {
                bar = Some(ProgressLine::new(&config, first_epoch, steps_per_epoch));
            }
        }
        Event::Step {
            epoch,
            step_in_epoch,
            loss,
            ..
        } => {
            if let Some(b) = &mut bar {
                b.step(epoch, step_in_epoch, loss);
            }
        }
        Event::KEstimation { done, total } => {
            if done == 1 {
                eprintln!("estimating K(λ): {total} forward passes over the training set");
            }
            if let Some(b) = &mut bar {
                b.k_estimation(done, total);
            }
        }
        Event::Evaluating { epoch, examples } => {
            if let Some(b) = &bar {
                b.evaluating(epoch, examples);
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
        Event::Note(note) => eprintln!("note: {note}"),
        Event::History { run_dir, history } => {
            let main_metric = config.task.main_metric().name();
            if let Err(e) = plots::write_history_plots(run_dir, history, Some(main_metric)) {
                eprintln!(
                    "warning: the plots of {} were not written: {e:#}",
                    run_dir.display()
                );
            }
        }
        Event::Sigma {
            run_dir,
            per_tensor,
        } => {
            let png = run_dir.join("plots/sigma_per_layer.png");
            let written = std::fs::create_dir_all(run_dir.join("plots"))
                .map_err(anyhow::Error::from)
                .and_then(|()| plots::write_sigma_plot(&png, per_tensor));
            if let Err(e) = written {
                eprintln!("warning: {} was not written: {e:#}", png.display());
            }
        }
        Event::Epoch(record) => {
            let line = epoch_line(record);
            match &mut bar {
                Some(b) => b.epoch(record, line),
                None if !args.quiet => {
                    println!("{line}");
                    if let Some(switch) = progress::stage_switch(stage1_epochs, record) {
                        println!("{switch}");
                    }
                }
                None => {}
            }
        }
    };
    let summary = train(&config, args.resume, args.overwrite, &mut on_event)?;
    if let Some(b) = bar {
        b.finish();
    }
    print_summary(&summary, &config);
    Ok(())
}

fn epoch_line(record: &EpochRecord) -> String {
    let mut line = format!(
        "epoch {:>4}  loss {:.4}  {:.1} ex/s",
        record.epoch, record.train_loss, record.examples_per_s
    );
    if let Some(stage) = record.stage {
        line.push_str(&format!("  stage {stage}"));
    }
    if let Some(j) = record.bound {
        line.push_str(&format!("  J {j:.4}"));
    }
    for (name, value) in record.dev.iter().flatten() {
        line.push_str(&format!("  dev {name} {value:.4}"));
    }
    line
}

fn print_summary(summary: &Summary, config: &TrainConfig) {
    println!("\n{:<14} {}", "run", config.output_dir.display());
    println!("{:<14} {}", "device", summary.device);
    println!("{:<14} {:.1} s", "wall time", summary.wall_seconds);
    for (key, point) in [
        ("best", summary.best.as_ref()),
        ("final", Some(&summary.last)),
    ] {
        if let Some(point) = point {
            let mut row = format!("{key:<14} epoch {}", point.epoch);
            for (name, value) in &point.metrics {
                row.push_str(&format!("  {name} {value:.4}"));
            }
            println!("{row}");
        }
    }
}
