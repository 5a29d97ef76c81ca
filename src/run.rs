//! A run folder and its typed records: run.json (the config), history.jsonl (one
//! [`EpochRecord`] per epoch), summary.json ([`Summary`]) and checkpoints/, every file written
//! atomically. Training writes these records; plots, tools and tests read them back as the same
//! types.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Deserializer, Serialize};

use crate::util::files::write_atomic;
use crate::util::lock::{FolderLock, Guard};
use crate::util::text::escape_controls;

/// Dev metrics by name (`accuracy`, `f1`, `mcc`, `pearson`, `spearman`, ...).
pub type Metrics = BTreeMap<String, f64>;

/// One line of history.jsonl: what an epoch measured. Keys that do not apply to the run (PAC's
/// bound and noise, dev metrics between evaluations, device memory on the CPU) are left out; a
/// NaN is written as null and reads back as NaN (or as absent, for the optional keys).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epochs completed (1-based) and optimiser steps taken, at the end of this epoch.
    pub epoch: usize,
    pub step: u64,
    /// Mean loss1 over the epoch's steps (at the noisy weights when there is noise).
    #[serde(deserialize_with = "nan_if_null")]
    pub train_loss: f64,
    /// Learning rates at the epoch's first step.
    pub lr_encoder: f64,
    pub lr_head: f64,
    /// Steps skipped for a non-finite term (`--on-nonfinite skip` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_steps: Option<usize>,
    /// PAC: the stage (1 or 2) of this epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<u8>,
    /// PAC stage 1: the bound's terms at the epoch's last step, and J = train_loss + loss2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss2: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kl: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k_hat: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gamma: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound: Option<f64>,
    /// PAC: mean σ = exp(p) of the encoder and of the head, and the mean prior std exp(b).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma_encoder: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma_head: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior_std: Option<f64>,
    /// The process's resident memory, and on wgpu devices the allocator's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_bytes_in_use: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_bytes_reserved: Option<u64>,
    /// Training time of the epoch, and its throughput.
    pub epoch_seconds: f64,
    pub examples_per_s: f64,
    /// Dev metrics, on the epochs that evaluate.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "metrics_nan_if_null"
    )]
    pub dev: Option<Metrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_seconds: Option<f64>,
}

/// The bound J = loss1 + loss2 and its terms at the end of stage 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoundSummary {
    pub epoch: usize,
    #[serde(rename = "J")]
    pub j: f64,
    pub loss1: f64,
    pub loss2: f64,
    pub kl: f64,
    pub k_hat: f64,
    pub gamma: f64,
    #[serde(rename = "C")]
    pub c: f64,
}

/// The dev metrics of one evaluated epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalPoint {
    pub epoch: usize,
    #[serde(flatten)]
    pub metrics: Metrics,
}

/// summary.json: what a finished run achieved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub task: String,
    pub method: String,
    /// What trained: full, bitfit or lora (summaries without it: `full`, or the set named as
    /// the method).
    #[serde(default)]
    pub trainable: Option<String>,
    pub model: String,
    pub seed: u64,
    pub train_size: usize,
    pub dev_size: usize,
    /// The task's main metric, which picks the best epoch.
    pub metric: String,
    pub best: Option<EvalPoint>,
    /// The last evaluated epoch.
    #[serde(rename = "final")]
    pub last: EvalPoint,
    pub epochs_run: usize,
    /// Scalars the method trained.
    #[serde(default)]
    pub trainable_parameters: usize,
    /// PAC: the bound at the end of stage 1.
    pub bound: Option<BoundSummary>,
    pub k_estimation_seconds: Option<f64>,
    /// Wall-clock seconds over every invocation of the run.
    pub wall_seconds: f64,
    pub device: String,
    /// The distinct `[rows, tokens]` batch shapes this invocation ran (kernels are compiled and
    /// autotuned per shape on a GPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_shapes: Option<usize>,
    /// The distinct kernels this invocation launched on a wgpu device: each is one pipeline
    /// compiled (autotune's candidates included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipelines: Option<usize>,
}

fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

fn metrics_nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Metrics>, D::Error> {
    let metrics = Option::<BTreeMap<String, Option<f64>>>::deserialize(d)?;
    Ok(metrics.map(|m| {
        m.into_iter()
            .map(|(k, v)| (k, v.unwrap_or(f64::NAN)))
            .collect()
    }))
}

/// One output folder of `pac-wgpu train`, held by this process for as long as the value lives.
pub struct RunDir {
    pub path: PathBuf,
    lock: FolderLock,
}

/// `run.lock`: one `train` per output folder.
pub const RUN_LOCK: Guard = Guard {
    file: "run.lock",
    flag: "--output-dir",
    command: "train",
};

impl RunDir {
    /// Checks that `path` can take this run, touching nothing: a new run needs a missing or
    /// empty folder (or `overwrite`), `resume` a folder.
    pub fn check(path: &Path, resume: bool, overwrite: bool) -> Result<()> {
        if path.exists() && !path.is_dir() {
            bail!(
                "--output-dir {}: exists and is not a folder",
                path.display()
            );
        }
        RUN_LOCK.check_free(path)?;
        if let Some(parent) = path.ancestors().skip(1).find(|a| a.exists())
            && !parent.is_dir()
        {
            bail!(
                "--output-dir {}: cannot create it, {} is a file",
                path.display(),
                parent.display()
            );
        }
        let non_empty = path.is_dir()
            && std::fs::read_dir(path)
                .with_context(|| format!("{}: cannot read output folder", path.display()))?
                .any(|e| e.is_ok_and(|e| e.file_name() != RUN_LOCK.file));
        if non_empty && !resume && !overwrite {
            bail!(
                "--output-dir {}: folder is not empty; pass --resume to continue that run or --overwrite to replace it",
                path.display()
            );
        }
        Ok(())
    }

    /// Opens `path` (after [`RunDir::check`]) and locks it: `overwrite` empties it, `resume`
    /// keeps it.
    pub fn open(path: &Path, resume: bool, overwrite: bool) -> Result<RunDir> {
        Self::check(path, resume, overwrite)?;
        std::fs::create_dir_all(path)
            .with_context(|| format!("{}: cannot create output folder", path.display()))?;
        let lock = RUN_LOCK.acquire(path)?;
        if overwrite && !resume {
            empty_folder(path, RUN_LOCK.file)
                .with_context(|| format!("{}: cannot empty output folder", path.display()))?;
        }
        std::fs::create_dir_all(path.join("checkpoints"))
            .with_context(|| format!("{}: cannot create output folder", path.display()))?;
        Ok(RunDir {
            path: path.to_path_buf(),
            lock,
        })
    }

    /// The `pid@host` of an earlier run whose lock file this run took over (it had died).
    pub fn took_over(&self) -> Option<&str> {
        self.lock.stale.as_deref()
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn checkpoint(&self, name: &str) -> PathBuf {
        self.path.join("checkpoints").join(name)
    }

    /// The history lines written so far.
    pub fn read_history(&self) -> Result<Vec<EpochRecord>> {
        let path = self.file("history.jsonl");
        if !path.exists() {
            return Ok(Vec::new());
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| {
                    anyhow!(
                        "{}:{}: expected a history record, found {}",
                        path.display(),
                        i + 1,
                        escape_controls(&e.to_string())
                    )
                })
            })
            .collect()
    }

    /// Rewrites history.jsonl with `records` (atomically; the file is small).
    pub fn write_history(&self, records: &[EpochRecord]) -> Result<()> {
        let mut text = String::new();
        for r in records {
            text.push_str(&serde_json::to_string(r)?);
            text.push('\n');
        }
        write_atomic(&self.file("history.jsonl"), text.as_bytes())
    }
}

/// Removes everything in `folder` but `keep`.
fn empty_folder(folder: &Path, keep: &str) -> std::io::Result<()> {
    for entry in std::fs::read_dir(folder)? {
        let entry = entry?;
        if entry.file_name() == keep {
            continue;
        }
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}
