//! Many runs as one: a plan of `pac-wgpu train` invocations over tasks × variants (method ×
//! trainable set) × seeds (plan.json), each run a child process of the same binary in
//! `<out>/runs/<task>-<variant>-<seed>`,
//! resumable and recorded in status.json ([`runner`]); the plan as a Slurm job array or a list of
//! commands ([`emit`]); and the table of a sweep's results ([`table`]).

pub mod emit;
pub mod runner;
pub mod table;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::train::checkpoint;
use crate::util::files::write_json;
use crate::util::text::escape_controls;

/// plan.json: every run of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub runs: Vec<PlannedRun>,
}

/// One run of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannedRun {
    /// `<task>-<variant>-<seed>`, the run folder's name.
    pub name: String,
    pub task: String,
    /// The variant's label (`pac`, `pac-lora`, `lora`, ...).
    pub method: String,
    pub seed: u64,
    pub output_dir: PathBuf,
    /// The exact arguments of `pac-wgpu` for a fresh run (`train ...`).
    pub args: Vec<String>,
}

impl Plan {
    /// One run per task × variant × seed, in that nesting order. A variant is a label and its
    /// flags (`--method .. --trainable ..`); each run has the flags `shared` (already checked)
    /// after its own.
    pub fn new(
        out: &Path,
        tasks: &[String],
        variants: &[(String, Vec<String>)],
        seeds: &[u64],
        shared: &[String],
    ) -> Plan {
        let mut runs = Vec::new();
        for task in tasks {
            for (method, flags) in variants {
                for &seed in seeds {
                    let name = format!("{task}-{method}-{seed}");
                    let output_dir = out.join("runs").join(&name);
                    let mut args: Vec<String> = vec!["train".into(), "--task".into(), task.clone()];
                    args.extend(flags.iter().cloned());
                    args.extend(["--seed".into(), seed.to_string(), "--output-dir".into()]);
                    args.push(output_dir.display().to_string());
                    args.extend(shared.iter().cloned());
                    runs.push(PlannedRun {
                        name,
                        task: task.clone(),
                        method: method.clone(),
                        seed,
                        output_dir,
                        args,
                    });
                }
            }
        }
        Plan { runs }
    }

    pub fn path(out: &Path) -> PathBuf {
        out.join("plan.json")
    }

    pub fn read(out: &Path) -> Result<Plan> {
        let path = Plan::path(out);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{}: no sweep plan (write one with pac-wgpu sweep --tasks .. --methods .. --seeds .. --out {})",
                path.display(),
                out.display()
            )
        })?;
        serde_json::from_str(&text).map_err(|e| {
            anyhow!(
                "{}:{}: expected a pac-wgpu sweep plan, found {}",
                path.display(),
                e.line(),
                escape_controls(&e.to_string())
            )
        })
    }

    /// Writes plan.json into `out`; a plan already there must be this one (a sweep continues,
    /// it is not silently replaced).
    pub fn write(&self, out: &Path) -> Result<()> {
        let path = Plan::path(out);
        if path.exists() {
            let existing = Plan::read(out)?;
            if existing != *self {
                bail!(
                    "{}: holds another sweep's plan; use another --out, or the same flags as that sweep to continue it",
                    path.display()
                );
            }
            return Ok(());
        }
        std::fs::create_dir_all(out)
            .with_context(|| format!("--out {}: cannot create the folder", out.display()))?;
        write_json(&path, self)
    }

    /// Run `index` (0-based) of the plan.
    pub fn run(&self, index: usize) -> Result<&PlannedRun> {
        self.runs.get(index).ok_or_else(|| {
            anyhow!(
                "--run-index {index}: the plan has runs 0..{}",
                self.runs.len().saturating_sub(1)
            )
        })
    }
}

/// Seeds as `1-5`, `1,3,7` or both (`1-3,10`), in the order given, without repeats.
pub fn parse_seeds(text: &str) -> Result<Vec<u64>> {
    let mut seeds = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let number = |s: &str| {
            s.trim().parse::<u64>().map_err(|_| {
                anyhow!(
                    "--seeds: expected a seed, a range like 1-5 or a comma list, found {part:?}"
                )
            })
        };
        let range = match part.split_once('-') {
            Some((a, b)) => number(a)?..=number(b)?,
            None => number(part)?..=number(part)?,
        };
        if range.is_empty() {
            bail!("--seeds: the range {part:?} is empty");
        }
        for seed in range {
            if !seeds.contains(&seed) {
                seeds.push(seed);
            }
        }
    }
    if seeds.is_empty() {
        bail!("--seeds: no seed given");
    }
    Ok(seeds)
}

/// Where a planned run stands, read from its folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// summary.json is written.
    Finished,
    /// A checkpoint to continue from, no summary yet.
    Interrupted,
    /// Something in the folder but nothing to continue from (a run that failed early).
    Stale,
    /// No folder, or an empty one.
    Pending,
}

impl RunState {
    pub fn of(dir: &Path) -> RunState {
        if dir.join("summary.json").is_file() {
            RunState::Finished
        } else if dir.join("run.json").is_file()
            && checkpoint::existing(&dir.join("checkpoints").join("last")).is_some()
        {
            RunState::Interrupted
        } else if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
            RunState::Stale
        } else {
            RunState::Pending
        }
    }

    /// The flag `train` needs on top of the plan's to go on from this state.
    pub fn continue_flag(self) -> Option<&'static str> {
        match self {
            RunState::Interrupted => Some("--resume"),
            RunState::Stale => Some("--overwrite"),
            RunState::Finished | RunState::Pending => None,
        }
    }
}
