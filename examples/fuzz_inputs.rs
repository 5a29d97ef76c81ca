//! Generated hostile inputs by the thousand for every reader of outside bytes (the cases of
//! `tests/fuzz`, more of them): prints per reader the cases, how many read Ok, ended in a
//! one-line error or panicked, the slowest case and the largest peak heap, and writes JSON.
//! Exits with status 1 when a case failed (see `tests/fuzz/harness.rs` for what fails).
//!
//!     cargo run --release --example fuzz_inputs -- --cases 10000 --json fuzz.json
//!     cargo run --release --example fuzz_inputs -- --only parquet --seed 1 --dump failed/
//!
//! `--dump DIR` writes each failing input to `DIR/<reader>-<case>.bin`; with `--case N` (that
//! case alone) it writes the input before running it, for a case that takes the process down.

#[path = "common/mod.rs"]
mod common;
#[path = "../tests/fuzz/harness.rs"]
mod harness;
#[path = "../tests/fuzz/hub.rs"]
mod hub;
#[path = "../tests/fuzz/mutate.rs"]
mod mutate;
#[path = "../tests/fuzz/readers.rs"]
mod readers;
#[path = "../tests/fuzz/seeds.rs"]
mod seeds;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use common::{git_revision, write_report};
use harness::{Counts, bound, fuzz, preview};
use readers::{READERS, Reader};
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// Cases per reader.
    #[arg(long, default_value_t = 10_000)]
    cases: usize,
    /// Changes every generated input.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Only the readers whose name contains this.
    #[arg(long, default_value = "")]
    only: String,
    /// Writes the report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Writes each failing input into this folder.
    #[arg(long)]
    dump: Option<PathBuf>,
    /// Runs this case alone.
    #[arg(long)]
    case: Option<usize>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let start = Instant::now();
    println!(
        "{:<26} {:>7} {:>7} {:>7} {:>7} {:>8} {:>11}",
        "reader", "cases", "ok", "errors", "panics", "max ms", "peak KiB"
    );
    let mut rows = Vec::new();
    let mut failed = 0;
    for reader in READERS.iter().filter(|r| r.name.contains(&args.only)) {
        let cases = match args.case {
            Some(case) => case..case + 1,
            None => 0..args.cases,
        };
        if let (Some(dir), Some(case)) = (&args.dump, args.case) {
            dump(dir, reader, case, &harness::input(reader, args.seed, case))?;
        }
        let counts = fuzz(reader, args.seed, cases);
        print_row(reader, &counts);
        failed += counts.failures.len();
        for f in counts.failures.iter().filter(|_| args.case.is_none()) {
            if let Some(dir) = &args.dump {
                dump(dir, reader, f.case, &f.input)?;
            }
        }
        rows.push(row_json(reader, &counts));
    }
    let seconds = start.elapsed().as_secs_f64();
    println!("{failed} failed case(s) in {seconds:.0} s");
    let report = json!({
        "revision": git_revision(),
        "cases_per_reader": args.cases,
        "seed": args.seed,
        "time_limit_s": harness::TIME_LIMIT.as_secs_f64(),
        "heap_bound": "64 MiB + 64 B per input byte",
        "seconds": seconds,
        "readers": rows,
    });
    write_report(args.json.as_deref(), &report)?;
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}

fn print_row(reader: &Reader, c: &Counts) {
    println!(
        "{:<26} {:>7} {:>7} {:>7} {:>7} {:>8.1} {:>11}",
        reader.name,
        c.cases,
        c.ok,
        c.errors,
        c.panics,
        c.max_seconds * 1e3,
        c.peak_bytes >> 10
    );
    for f in &c.failures {
        println!(
            "  case {}: {}\n    input: {}",
            f.case,
            f.problem,
            preview(&f.input, 200)
        );
    }
}

fn row_json(reader: &Reader, c: &Counts) -> Value {
    let failures: Vec<Value> = (c.failures.iter())
        .map(|f| json!({"case": f.case, "problem": f.problem, "input": preview(&f.input, 2000)}))
        .collect();
    json!({
        "reader": reader.name,
        "cases": c.cases,
        "ok": c.ok,
        "errors": c.errors,
        "errors_naming_no_file": c.unnamed,
        "panics": c.panics,
        "max_case_ms": c.max_seconds * 1e3,
        "peak_heap_bytes": c.peak_bytes,
        "heap_bound_for_empty_input": bound(0),
        "failures": failures,
    })
}

/// Writes case `case` of `reader` to `dir/<reader>-<case>.bin`.
fn dump(dir: &std::path::Path, reader: &Reader, case: usize, input: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let name = format!("{}-{case}.bin", reader.name.replace([' ', '.'], "_"));
    Ok(std::fs::write(dir.join(name), input)?)
}
