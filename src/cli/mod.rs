//! Argument parsing: one file per subcommand, each a `clap::Args` struct and a `run` function.

mod args;
mod data;
mod devices;
mod encode;
mod eval;
mod export;
mod progress;
mod report;
mod score;
mod sweep;
mod train;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, Parser, Subcommand};

/// Fine-tune pretrained language models with PAC-tuning on any GPU wgpu reaches, or the CPU.
#[derive(Parser, Debug)]
#[command(name = "pac-wgpu", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// List wgpu adapters and the CPU backend, and which one `--device auto` picks.
    #[command(after_help = "Examples:\n  pac-wgpu devices\n  pac-wgpu devices --json")]
    Devices(devices::DevicesArgs),
    /// Tokenize a sentence (or pair), run the encoder once and print ids and the [CLS] vector.
    #[command(
        after_help = "Examples:\n  pac-wgpu encode --model assets/models/all-MiniLM-L6-v2 --text-a \"A cat sat.\" --device cpu\n  pac-wgpu encode --model bert-base-uncased --text-a \"Is it?\" --text-b \"It is.\" --json"
    )]
    Encode(encode::EncodeArgs),
    /// Split sizes, label distribution and token lengths of a GLUE task.
    Data(data::DataArgs),
    /// Score a predictions file with the task's GLUE metrics.
    Score(score::ScoreArgs),
    /// Fine-tune on a GLUE task (or your own data) and write a run folder.
    #[command(
        after_help = "Examples:\n  pac-wgpu train --task rte --method vanilla --model assets/models/all-MiniLM-L6-v2 --data-dir glue_data --epochs 10 --device cpu\n  pac-wgpu train --task mrpc --output-dir runs/mrpc --resume"
    )]
    #[command(allow_negative_numbers = true)]
    Train(Box<train::TrainArgs>),
    /// Many runs as one: tasks × methods × seeds, resumable, as child processes, or emitted
    /// for Slurm or GNU parallel.
    #[command(
        after_help = "Examples:\n  pac-wgpu sweep --tasks mrpc,rte --methods pac,vanilla,bitfit --seeds 1-3 --out sweeps/glue --device cpu -- --model assets/models/all-MiniLM-L6-v2 --epochs 30\n  pac-wgpu sweep --tasks mrpc --methods pac,lora --seeds 1-5 --out sweeps/mrpc --emit slurm -- --epochs 250\n  pac-wgpu sweep --out sweeps/mrpc --run-index 3"
    )]
    Sweep(Box<sweep::SweepArgs>),
    /// The table of a sweep (or any runs): mean ± std over seeds per task × method.
    #[command(
        after_help = "Examples:\n  pac-wgpu report sweeps/glue\n  pac-wgpu report sweeps/glue --metric accuracy --at best"
    )]
    Report(report::ReportArgs),
    /// Score a run's checkpoint on a labelled split.
    #[command(
        after_help = "Examples:\n  pac-wgpu eval --run runs/rte-vanilla-42\n  pac-wgpu eval --run runs/rte-vanilla-42 --checkpoint last --json"
    )]
    Eval(eval::EvalArgs),
    /// Write a run's checkpoint as a Hugging Face folder (config, tokenizer, safetensors).
    #[command(
        after_help = "Examples:\n  pac-wgpu export --run runs/rte-pac-42 --out exported/rte\n  pac-wgpu export --run runs/rte-pac-42 --checkpoint last --out exported/rte-f16 --dtype f16"
    )]
    Export(export::ExportArgs),
    /// Write a run's predictions in the GLUE submission format.
    #[command(
        after_help = "Examples:\n  pac-wgpu predict --run runs/rte-vanilla-42 --split test --out RTE.tsv"
    )]
    Predict(eval::PredictArgs),
}

/// clap's error in one line: the problem, then its tip (a similar flag or command), or for a
/// train flag given to `sweep` before `--`, where it goes.
fn parse_error_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    let mut line = first.trim_start_matches("error: ").to_string();
    let unknown = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) if e.kind() == ErrorKind::UnknownArgument => Some(arg),
        _ => None,
    };
    let in_sweep = std::env::args().nth(1).as_deref() == Some("sweep");
    if let Some(arg) = unknown.filter(|arg| in_sweep && is_train_flag(arg)) {
        let flag = arg.split('=').next().unwrap_or(arg);
        line.push_str(&format!(
            "; {flag} is a train flag: give it after `--` (pac-wgpu sweep … -- {flag} …)"
        ));
    } else if let Some(tip) = text.lines().find_map(|l| l.trim().strip_prefix("tip: ")) {
        line.push_str(&format!("; {tip}"));
    }
    line
}

/// Whether `arg` (e.g. `--epochs` or `--epochs=3`) is a flag of `pac-wgpu train`.
fn is_train_flag(arg: &str) -> bool {
    let name = arg
        .trim_start_matches("--")
        .split('=')
        .next()
        .unwrap_or_default();
    let cli = Cli::command();
    let train = cli.find_subcommand("train");
    train.is_some_and(|t| t.get_arguments().any(|a| a.get_long() == Some(name)))
}

pub fn run() -> anyhow::Result<()> {
    let cli = Cli::try_parse().map_err(|e| match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        // clap's own first line names the flag and the problem; its tip joins it on the line.
        _ => anyhow::anyhow!("{}", parse_error_line(&e)),
    })?;
    match &cli.command {
        Command::Devices(args) => devices::run(args),
        Command::Encode(args) => encode::run(args),
        Command::Data(args) => data::run(args),
        Command::Score(args) => score::run(args),
        Command::Train(args) => train::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Sweep(args) => sweep::run(args),
        Command::Report(args) => report::run(args),
        Command::Predict(args) => eval::predict(args),
        Command::Export(args) => export::run(args),
    }
}
