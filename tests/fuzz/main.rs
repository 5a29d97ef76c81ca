//! Generated hostile inputs for every reader of outside bytes: each must end in Ok or a one-line
//! error, within 5 s and a stated heap bound, never a panic. `PAC_FUZZ_CASES` cases per reader
//! (default 300; `PAC_FUZZ_SEED` changes the inputs). `cargo test --release --test fuzz`;
//! `cargo run --release --example fuzz_inputs -- --cases 10000` runs more and prints the counts.

mod harness;
mod hub;
mod mutate;
mod readers;
mod regressions;
mod seeds;

use harness::{Counts, fuzz, preview};
use readers::READERS;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What went wrong in one reader's cases, a few lines per failure.
fn failures(name: &str, counts: &Counts) -> String {
    let lines: Vec<String> = (counts.failures.iter().take(5))
        .map(|f| {
            format!(
                "{name} case {}: {}\n  input: {}",
                f.case,
                f.problem,
                preview(&f.input, 300)
            )
        })
        .collect();
    lines.join("\n")
}

#[test]
fn every_reader_survives_generated_inputs() {
    let cases = env_number("PAC_FUZZ_CASES", 300) as usize;
    let seed = env_number("PAC_FUZZ_SEED", 0);
    let mut report = Vec::new();
    for reader in READERS.iter().filter(|r| {
        r.name
            .contains(&std::env::var("PAC_FUZZ_ONLY").unwrap_or_default())
    }) {
        let counts = fuzz(reader, seed, 0..cases);
        println!(
            "{:<26} {} cases: {} ok, {} errors, {} panics, max {:.0} ms, peak {} KiB",
            reader.name,
            counts.cases,
            counts.ok,
            counts.errors,
            counts.panics,
            counts.max_seconds * 1e3,
            counts.peak_bytes >> 10
        );
        if !counts.failures.is_empty() {
            report.push(failures(reader.name, &counts));
        }
    }
    assert!(report.is_empty(), "{}", report.join("\n"));
}
