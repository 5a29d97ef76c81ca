//! One run of the web page (web/) in headless Chromium on SwiftShader's WebGPU, by hand, on any
//! model folder and data files: the browser test's harness (tests/browser/harness.rs) without
//! its comparisons. Writes the run folder the page posts back and prints its times.
//!
//!     cargo run --release --example browser_run -- --model assets/models/all-MiniLM-L6-v2 \
//!         --train ../shared/glue/MRPC/train.tsv --dev dev.tsv --out browser-run \
//!         --options '{"task": "mrpc", "method": "vanilla", "train_size": 32,
//!                     "batch_size": 16, "max_length": 64, "epochs": 2}'
//!
//! `--options` holds run.json's keys, as the page takes them. Needs what the browser test
//! needs: chromium, the wasm32-unknown-unknown target and web/'s wasm-bindgen CLI.

#[path = "../tests/browser/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use pac_wgpu::run::{EpochRecord, Summary};
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// A model folder: config.json, model.safetensors, tokenizer.json or vocab.txt.
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    train: PathBuf,
    #[arg(long)]
    dev: PathBuf,
    /// run.json's keys as a JSON object (task, method, epochs, ...).
    #[arg(long)]
    options: String,
    /// Where the posted run folder goes (must not exist).
    #[arg(long)]
    out: PathBuf,
    /// The longest the page may take, in seconds.
    #[arg(long, default_value_t = 1800)]
    timeout_s: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let options: Value = serde_json::from_str(&args.options).context("--options")?;
    if !options.is_object() {
        bail!("--options must be a JSON object of run.json's keys");
    }
    if args.out.exists() {
        bail!("{} exists: give --out a new folder", args.out.display());
    }
    let tools = harness::tools();
    let started = Instant::now();
    let pkg = harness::build_wasm(&tools);
    eprintln!(
        "wasm module ready in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let tmp = tempfile::tempdir()?;
    let fixture = tmp.path().join("fixture");
    let tokenizer = ["tokenizer.json", "vocab.txt"]
        .into_iter()
        .find(|name| args.model.join(name).is_file())
        .with_context(|| format!("{}: no tokenizer.json or vocab.txt", args.model.display()))?;
    for name in ["config.json", "model.safetensors", tokenizer] {
        link(&args.model.join(name), &fixture.join("model").join(name))?;
    }
    let train = link(
        &args.train,
        &fixture.join("train").join(file_name(&args.train)?),
    )?;
    let dev = link(&args.dev, &fixture.join("dev").join(file_name(&args.dev)?))?;
    let manifest = json!({
        "model_base": "/fixture/model/",
        "tokenizer": tokenizer,
        "train": format!("/fixture/train/{train}"),
        "dev": format!("/fixture/dev/{dev}"),
        "runs": [{"options": options, "report": "/result/run"}],
    });
    std::fs::write(fixture.join("manifest.json"), manifest.to_string())?;

    let results: harness::Results = Arc::default();
    let port = harness::serve(pkg, fixture, Arc::clone(&results));
    let log = tmp.path().join("chromium.log");
    let browser_start = Instant::now();
    let mut browser = harness::launch(
        &tools.chromium,
        &tmp.path().join("profile"),
        &log,
        &[],
        &format!("http://127.0.0.1:{port}/index.html?auto=/fixture/manifest.json"),
    );
    let finished = harness::wait_for(&results, &["run"], Duration::from_secs(args.timeout_s));
    let _ = browser.kill();
    let _ = browser.wait();
    let browser_s = browser_start.elapsed().as_secs_f64();
    let posted = std::mem::take(&mut *results.lock().unwrap());
    let run = posted.get("run");
    if !finished || run.is_none_or(|r| r.error.is_some()) {
        let console = std::fs::read_to_string(&log).unwrap_or_default();
        let console: Vec<&str> = console.lines().filter(|l| l.contains("CONSOLE")).collect();
        bail!(
            "the page did not finish in {browser_s:.0} s ({:?}); its console:\n{}",
            run.and_then(|r| r.error.as_ref()),
            console.join("\n")
        );
    }
    let dir = harness::write_run(run.unwrap(), &args.out);
    print_times(&dir, browser_s)
}

/// Symlinks `from` at `to`; returns the file name.
fn link(from: &Path, to: &Path) -> Result<String> {
    let from = from
        .canonicalize()
        .with_context(|| format!("{}", from.display()))?;
    std::fs::create_dir_all(to.parent().unwrap())?;
    std::os::unix::fs::symlink(&from, to)?;
    file_name(to)
}

fn file_name(path: &Path) -> Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .with_context(|| format!("{}: not a file name", path.display()))
}

fn print_times(dir: &Path, browser_s: f64) -> Result<()> {
    let read = |name: &str| -> Result<String> {
        std::fs::read_to_string(dir.join(name)).with_context(|| format!("{name} in the run"))
    };
    let summary: Summary = serde_json::from_str(&read("summary.json")?)?;
    println!("run folder: {}", dir.display());
    println!("browser, page load to the posted run: {browser_s:.1} s");
    if let Some(k) = summary.k_estimation_seconds {
        println!("K(λ): {k:.1} s");
    }
    for line in read("history.jsonl")?.lines() {
        let record: EpochRecord = serde_json::from_str(line)?;
        let score = record.dev.as_ref().and_then(|d| d.get(&summary.metric));
        println!(
            "epoch {}: train {:.1} s, evaluation {:.1} s, {} {}",
            record.epoch,
            record.epoch_seconds,
            record.eval_seconds.unwrap_or(f64::NAN),
            summary.metric,
            score.map_or("-".into(), f64::to_string)
        );
    }
    Ok(())
}
