use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use clap::Parser;
use pac_wgpu::glue::Task;
use pac_wgpu::run::Summary;
use pac_wgpu::sweep::emit::Emit;
use pac_wgpu::sweep::runner::{self, Event, Options, Outcome};
use pac_wgpu::sweep::{Plan, parse_seeds};
use pac_wgpu::train::{MethodArg, TrainSet, interrupt, run_label};
use pac_wgpu::util::device::DeviceChoice;

use super::args::DeviceArg;
use super::train::TrainArgs;

/// Flags the sweep sets for each run, so not among the shared train flags.
const SET_BY_SWEEP: [&str; 9] = [
    "--task",
    "--method",
    "--trainable",
    "--seed",
    "--output-dir",
    "--resume",
    "--overwrite",
    "--device",
    "--quiet",
];

#[derive(clap::Args, Debug)]
pub struct SweepArgs {
    /// The device of every run, unless --devices spreads them. [default: auto]
    #[command(flatten)]
    device: DeviceArg,
    /// GLUE tasks, comma-separated (e.g. mrpc,rte).
    #[arg(long, value_delimiter = ',')]
    tasks: Vec<Task>,
    /// Methods, comma-separated: pac, vanilla, pgd (bitfit and lora: vanilla on that set).
    #[arg(long, value_delimiter = ',')]
    methods: Vec<MethodArg>,
    /// Trainable sets, comma-separated: full, bitfit, lora; each method runs on each.
    /// [default: full]
    #[arg(long, value_delimiter = ',', value_name = "SETS")]
    trainable: Vec<TrainSet>,
    /// Seeds: a range (1-5), a list (1,3,7) or both.
    #[arg(long)]
    seeds: Option<String>,
    /// The sweep folder: plan.json, status.json, logs/ and runs/<task>-<variant>-<seed>/ (the
    /// variant: pac, vanilla, lora for vanilla on LoRA, pac-lora, ...).
    #[arg(long, visible_alias = "output-dir")]
    out: PathBuf,
    /// Devices to spread the runs over, comma-separated (e.g. 0,1 for two GPUs); each run
    /// starts on the one running the fewest. [default: --device]
    #[arg(long, value_delimiter = ',', value_name = "D")]
    devices: Vec<DeviceChoice>,
    /// Runs at a time, each a child process. [default: one per device]
    #[arg(long)]
    jobs: Option<usize>,
    /// Write the plan as a Slurm job array (slurm: <out>/sweep.slurm) or one command per line
    /// (list: <out>/commands.txt) instead of running it.
    #[arg(long)]
    emit: Option<Emit>,
    /// Kill a run that writes no history line (no epoch ends) for this many seconds, record it
    /// as failed, and go on; the next sweep retries it from its checkpoint. [default: none]
    #[arg(long, value_name = "SECONDS")]
    run_timeout: Option<f64>,
    /// Run only entry K (0-based) of <out>/plan.json, as a Slurm array task or a list line does.
    #[arg(long)]
    run_index: Option<usize>,
    /// `pac-wgpu train` flags shared by every run, after `--` (e.g. -- --epochs 30 --model DIR).
    #[arg(last = true)]
    train_flags: Vec<String>,
}

pub fn run(args: &SweepArgs) -> Result<()> {
    let devices: Vec<String> = match args.devices.is_empty() {
        true => vec![args.device.choice.to_string()],
        false => args.devices.iter().map(ToString::to_string).collect(),
    };
    let options = Options {
        exe: std::env::current_exe()
            .map_err(|e| anyhow!("cannot find the pac-wgpu binary to run: {e}"))?,
        jobs: args.jobs.unwrap_or(devices.len()),
        devices,
        extra: vec!["--quiet".into()],
        run_timeout: args.run_timeout.map(timeout).transpose()?,
    };
    if options.jobs == 0 {
        bail!("--jobs must be at least 1, found 0");
    }
    let out = absolute(&args.out)?;
    let plan = if args.tasks.is_empty() && args.run_index.is_some() {
        Plan::read(&out)?
    } else {
        let plan = plan(args, &out)?;
        plan.write(&out)?;
        plan
    };
    if let Some(index) = args.run_index {
        // The run stops itself on Ctrl-C; this process waits for it.
        interrupt::install()?;
        let code = runner::run_one(&plan, index, &options)?;
        if code != 0 {
            std::process::exit(code);
        }
        return Ok(());
    }
    if let Some(emit) = args.emit {
        let path = out.join(emit.file_name());
        // Slurm opens the array tasks' output files there before they start.
        std::fs::create_dir_all(out.join("logs"))?;
        let device = ["--device".to_string(), options.devices[0].clone()];
        let text = emit.text(&plan, &out, &options.exe, &device);
        pac_wgpu::util::files::write_atomic(&path, text.as_bytes())?;
        println!(
            "{} runs planned in {}",
            plan.runs.len(),
            Plan::path(&out).display()
        );
        match emit {
            Emit::Slurm => println!("submit with: sbatch {}", path.display()),
            Emit::List => println!(
                "run with: parallel -j 4 < {0}   (or: xargs -P 4 -I{{}} sh -c {{}} < {0})",
                path.display()
            ),
        }
        return Ok(());
    }
    sweep(&plan, &out, &options)
}

fn sweep(plan: &Plan, out: &std::path::Path, options: &Options) -> Result<()> {
    interrupt::install()?;
    let total = plan.runs.len();
    eprintln!(
        "sweep of {total} runs in {} ({} at a time)",
        out.display(),
        options.jobs
    );
    let mut on_event = |event: Event| match event {
        Event::Note(note) => eprintln!("note: {note}"),
        Event::Started { run, how, device } => {
            let how = how.map_or(String::new(), |h| format!(" ({h})"));
            eprintln!("start  {} on --device {device}{how}", run.name);
        }
        Event::Ended {
            run,
            status,
            done,
            total,
            eta,
        } => {
            let what = match status.outcome {
                Outcome::Finished => result_line(&run.output_dir),
                Outcome::Failed => format!(
                    "FAILED: {}",
                    status.error.as_deref().unwrap_or("no error line")
                ),
                Outcome::Interrupted => "interrupted (checkpoint saved)".into(),
                Outcome::Pending => "not started".into(),
            };
            let seconds = status.seconds.unwrap_or(0.0);
            let eta = eta.map_or("?".into(), duration);
            println!(
                "[{done:>3}/{total}] {:<24} {seconds:>7.1} s  {what}  | ETA {eta}",
                run.name
            );
        }
    };
    let status = runner::run(out, plan, options, &mut on_event)?;
    let finished = runner::count(&status, Outcome::Finished);
    let failed: Vec<_> = status
        .runs
        .iter()
        .filter(|r| r.outcome == Outcome::Failed)
        .collect();
    let waiting = total - finished - failed.len();
    println!(
        "{finished} of {total} runs finished, {} failed, {waiting} left; status in {}",
        failed.len(),
        out.join("status.json").display()
    );
    if interrupt::requested() {
        eprintln!("sweep interrupted; run the same command again to continue");
        std::process::exit(130);
    }
    if let Some(first) = failed.first() {
        bail!(
            "{} of {total} runs failed, first {}: {} (log: {})",
            failed.len(),
            first.name,
            first.error.as_deref().unwrap_or("no error line"),
            first.log.display()
        );
    }
    Ok(())
}

fn timeout(seconds: f64) -> Result<std::time::Duration> {
    if !(seconds.is_finite() && seconds > 0.0) {
        bail!("--run-timeout: expected a positive number of seconds, found {seconds}");
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

/// The plan of the flags given, each run's flags checked as `pac-wgpu train` would.
fn plan(args: &SweepArgs, out: &std::path::Path) -> Result<Plan> {
    if args.tasks.is_empty() || args.methods.is_empty() {
        bail!("--tasks and --methods are required (or --run-index K with an existing plan)");
    }
    let seeds = parse_seeds(args.seeds.as_deref().unwrap_or("42"))?;
    if let Some(flag) = args.train_flags.iter().find(|f| {
        SET_BY_SWEEP
            .iter()
            .any(|s| *f == s || f.starts_with(&format!("{s}=")))
    }) {
        bail!(
            "{flag} after --: the sweep sets it for each run (--tasks, --methods, --seeds, --out, and --device before --)"
        );
    }
    let tasks: Vec<String> = args.tasks.iter().map(|t| t.name().to_string()).collect();
    let plan = Plan::new(out, &tasks, &variants(args)?, &seeds, &args.train_flags);
    for run in &plan.runs {
        check(&run.args).map_err(|e| anyhow!("run {}: {e}", run.name))?;
    }
    Ok(plan)
}

/// Each method on each trainable set, as a label and its flags, without repeats.
fn variants(args: &SweepArgs) -> Result<Vec<(String, Vec<String>)>> {
    let sets: Vec<Option<TrainSet>> = match args.trainable.is_empty() {
        true => vec![None],
        false => args.trainable.iter().copied().map(Some).collect(),
    };
    let mut variants: Vec<(String, Vec<String>)> = Vec::new();
    for method in &args.methods {
        for set in &sets {
            let (method, set) = method.resolve(*set)?;
            let set = set.unwrap_or_default();
            let flags = ["--method", method.name(), "--trainable", set.name()];
            let variant = (run_label(method, set), flags.map(String::from).into());
            if !variants.contains(&variant) {
                variants.push(variant);
            }
        }
    }
    Ok(variants)
}

/// `pac-wgpu train …` as a run of the sweep spells it.
#[derive(clap::Parser)]
#[command(name = "pac-wgpu")]
struct TrainLine {
    #[command(subcommand)]
    command: TrainOnly,
}

#[derive(clap::Subcommand)]
enum TrainOnly {
    #[command(allow_negative_numbers = true)]
    Train(Box<TrainArgs>),
}

/// Parses and checks `pac-wgpu <args>` as a train command, without running it.
fn check(args: &[String]) -> Result<()> {
    let words = std::iter::once("pac-wgpu".to_string()).chain(args.iter().cloned());
    let line = TrainLine::try_parse_from(words).map_err(|e| {
        let text = e.to_string();
        anyhow!(
            "{}",
            text.lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ")
        )
    })?;
    let TrainOnly::Train(train) = &line.command;
    train.resolve()?.validate()?;
    Ok(())
}

/// `<metric> <value> (best epoch E)` from a finished run's summary.json.
fn result_line(run: &std::path::Path) -> String {
    let text = std::fs::read_to_string(run.join("summary.json")).unwrap_or_default();
    let Ok(summary) = serde_json::from_str::<Summary>(&text) else {
        return "finished".into();
    };
    let value = |p: &pac_wgpu::run::EvalPoint| p.metrics.get(&summary.metric).copied();
    let last = value(&summary.last).map_or("?".into(), |v| format!("{v:.4}"));
    format!(
        "{} {last} (final epoch {})",
        summary.metric, summary.last.epoch
    )
}

fn duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

fn absolute(path: &std::path::Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| anyhow!("--out {}: {e}", path.display()))
}
