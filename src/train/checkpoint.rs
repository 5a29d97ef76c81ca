//! Checkpoints: a folder holding the model in HF layout (so `--model` can load its encoder),
//! the optimiser moments, the loop position and, written last, a manifest of its files' sizes
//! and checksums. Written to a sibling folder, then swapped in, so a crash at any moment leaves
//! the previous checkpoint whole; `last` keeps the one before as `last.old`, which `--resume`
//! falls back to when `last` fails its manifest.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::config::TrainConfig;
use crate::glue::Task;
use crate::model::hf_names::{from_hf_names, to_hf_names};
use crate::model::trainable::Trainable;
use crate::model::{Classifier, Encoder, ModelConfig};
use crate::optim::AdamW;
use crate::pac::bound::BoundTerms;
use crate::run::BoundSummary;
use crate::util::files::{TensorFile, write_tensors};
use crate::util::manifest::{self, Integrity};

const MODEL: &str = "model.safetensors";
const OPTIMIZER: &str = "optimizer.safetensors";
const STATE: &str = "state.json";

/// Where the loop stood when the checkpoint was written.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LoopState {
    /// Epochs completed.
    pub epoch: usize,
    /// Optimiser steps taken.
    pub step: u64,
    /// The best epoch so far and its main-metric value.
    pub best: Option<(usize, f64)>,
    /// Evaluations in a row without improvement (for early stopping).
    pub stale_evals: usize,
    /// PAC: the bound and its terms at the end of stage 1.
    #[serde(default)]
    pub bound: Option<BoundSummary>,
    /// PAC: how long the K(λ) estimation took.
    #[serde(default)]
    pub k_seconds: Option<f64>,
    /// Wall-clock seconds of the run up to this checkpoint, over every invocation.
    #[serde(default)]
    pub wall_seconds: f64,
    /// The epoch in progress when the run was interrupted between steps: the losses of its
    /// steps so far, the bound at its last step, and how many of its steps were skipped.
    #[serde(default)]
    pub epoch_losses: Vec<f64>,
    #[serde(default)]
    pub epoch_bound: Option<BoundTerms>,
    #[serde(default)]
    pub epoch_skipped: usize,
}

/// Writes `model` (+ optimiser moments and loop state when given, + what `more` writes into
/// the folder) as folder `dir`, atomically: a failed write leaves the previous `dir` whole.
/// With `keep_previous`, the previous `dir` stays as `dir.old`.
#[allow(clippy::too_many_arguments)]
pub fn save(
    dir: &Path,
    model: &Classifier,
    extra_files: &[PathBuf],
    optimizer: Option<(&AdamW, &[Trainable])>,
    state: &LoopState,
    keep_previous: bool,
    more: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let partial = dir.with_extension("partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial)?;
    }
    std::fs::create_dir_all(&partial)
        .with_context(|| format!("{}: cannot create checkpoint folder", partial.display()))?;
    save_model(&partial.join(MODEL), model)?;
    for file in extra_files {
        if let Some(name) = file.file_name() {
            std::fs::copy(file, partial.join(name))
                .with_context(|| format!("cannot copy {} into the checkpoint", file.display()))?;
        }
    }
    if let Some((adam, trainable)) = optimizer {
        write_moments(&partial.join(OPTIMIZER), adam, trainable)?;
    }
    more(&partial)?;
    std::fs::write(partial.join(STATE), serde_json::to_string_pretty(state)?)
        .with_context(|| format!("{}: cannot write", partial.join(STATE).display()))?;
    manifest::write(&partial)?;

    // Swap: dir -> dir.old, partial -> dir. [`existing`] falls back to dir.old. A `dir` that
    // is not this state's predecessor (a damaged one `--resume` passed over) is dropped instead,
    // so that dir.old stays the checkpoint the run resumed from.
    let old = dir.with_extension("old");
    let predecessor = load_state(dir).is_ok_and(|s| (s.step, s.epoch) < (state.step, state.epoch));
    if dir.exists() && keep_previous && !predecessor {
        std::fs::remove_dir_all(dir)?;
    }
    if dir.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old)?;
        }
        std::fs::rename(dir, &old)?;
    }
    std::fs::rename(&partial, dir)?;
    if old.exists() && !keep_previous {
        std::fs::remove_dir_all(&old)?;
    }
    Ok(())
}

/// The folder of checkpoint `which` (best or last) of `run`.
pub fn checkpoint_dir(run: &Path, which: &str) -> Result<PathBuf> {
    if which != "best" && which != "last" {
        bail!("--checkpoint must be best or last, found {which:?}");
    }
    if !run.join("run.json").is_file() {
        bail!(
            "--run {}: expected a run folder (run.json) or an exported folder (pac_wgpu_run.json)",
            run.display()
        );
    }
    let dir = run.join("checkpoints").join(which);
    let dir = existing(&dir).ok_or_else(|| {
        anyhow!(
            "{}: no {which} checkpoint (has the run finished an epoch?)",
            dir.display()
        )
    })?;
    if let Some(note) = whole(&dir)? {
        eprintln!("note: {note}");
    }
    Ok(dir)
}

/// The checkpoint `--resume` continues from: `dir` when its files match its manifest, else
/// `dir.old` when that one does; and a note when it is `dir.old` or has no manifest.
pub fn resumable(dir: &Path) -> Result<Option<(PathBuf, Option<String>)>> {
    let old = dir.with_extension("old");
    let mut found = [dir.to_path_buf(), old].into_iter().filter(|d| d.is_dir());
    let Some(first) = found.next() else {
        return Ok(None);
    };
    let failure = match whole(&first) {
        Ok(note) => return Ok(Some((first, note))),
        Err(e) => e,
    };
    match found.next() {
        Some(old) if manifest::verify(&old).is_ok_and(|i| i == Integrity::Verified) => {
            let epoch = load_state(&old)?.epoch;
            let note = format!(
                "{failure:#}; resuming from {} (epoch {epoch}) instead",
                old.display()
            );
            Ok(Some((old, Some(note))))
        }
        _ => Err(failure),
    }
}

/// Checks checkpoint folder `dir` against its manifest; a note when it has none.
fn whole(dir: &Path) -> Result<Option<String>> {
    match manifest::verify(dir)? {
        Integrity::Verified => Ok(None),
        Integrity::Unverified if existing(dir).as_deref() == Some(dir) => Ok(Some(unverified(dir))),
        Integrity::Unverified => bail!(
            "{}: not a whole checkpoint (no {STATE} or {MODEL})",
            dir.display()
        ),
    }
}

fn unverified(dir: &Path) -> String {
    format!(
        "{}: no {} (an older pac-wgpu wrote it), so its files are not verified",
        dir.display(),
        manifest::MANIFEST
    )
}

/// The checkpoint folder to read: `dir`, or the previous one if a crash interrupted the swap.
pub fn existing(dir: &Path) -> Option<PathBuf> {
    [dir.to_path_buf(), dir.with_extension("old")]
        .into_iter()
        .find(|d| d.join(STATE).is_file() && d.join(MODEL).is_file())
}

pub fn load_state(dir: &Path) -> Result<LoopState> {
    let path = dir.join(STATE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read checkpoint state", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        anyhow!(
            "{}: expected checkpoint state JSON, found {e}",
            path.display()
        )
    })
}

/// Writes `model` as a safetensors file with HF names (`Classifier::hf_name`).
pub fn save_model(path: &Path, model: &Classifier) -> Result<()> {
    let mut store = hf_layout(SafetensorsStore::from_file(path), model);
    model
        .save_into(&mut store)
        .map_err(|e| anyhow!("{}: cannot write model: {e}", path.display()))
}

/// [`save_model`]'s file as bytes. Burn's store reads tensors synchronously, so in a browser
/// `model` must live on the CPU device (see [`crate::model::to_host`]).
pub fn model_bytes(model: &Classifier) -> Result<Vec<u8>> {
    let mut store = hf_layout(SafetensorsStore::from_bytes(None), model);
    model
        .save_into(&mut store)
        .map_err(|e| anyhow!("cannot write model: {e}"))?;
    store
        .get_bytes()
        .map_err(|e| anyhow!("cannot write model: {e}"))
}

/// `store` set to write `model` with HF names.
fn hf_layout(store: SafetensorsStore, model: &Classifier) -> SafetensorsStore {
    to_hf_names(store, model.encoder.hf_prefix(), model.head.hf_renames())
}

/// Loads the weights of a checkpoint into `model` (built from the same config).
pub fn load_model(dir: &Path, model: Classifier) -> Result<Classifier> {
    load_model_file(&dir.join(MODEL), model)
}

/// Loads a safetensors file written by [`save_model`] into `model`.
pub fn load_model_file(path: &Path, model: Classifier) -> Result<Classifier> {
    load_model_from(SafetensorsStore::from_file(path), path, model)
}

/// Loads safetensors bytes in [`save_model`]'s layout into `model`; `path` names them in errors.
pub fn load_model_bytes(bytes: Vec<u8>, path: &Path, model: Classifier) -> Result<Classifier> {
    load_model_from(SafetensorsStore::from_bytes(Some(bytes)), path, model)
}

fn load_model_from(
    store: SafetensorsStore,
    path: &Path,
    mut model: Classifier,
) -> Result<Classifier> {
    let mut store = from_hf_names(store, Some(model.head.hf_renames()));
    let result = model
        .load_from(&mut store)
        .map_err(|e| anyhow!("{}: cannot read checkpoint: {e}", path.display()))?;
    if let Some(e) = result.errors.first() {
        bail!(
            "{}: checkpoint does not fit the model: {e:?}",
            path.display()
        );
    }
    if let Some((name, _)) = result.missing.first() {
        bail!(
            "{}: checkpoint lacks {name} (from another model or task?)",
            path.display()
        );
    }
    Ok(model)
}

fn write_moments(path: &Path, adam: &AdamW, trainable: &[Trainable]) -> Result<()> {
    let mut tensors = Vec::new();
    for (t, moments) in trainable.iter().zip(&adam.moments) {
        if let Some((m, v)) = moments {
            tensors.push((format!("m.{}", t.name), m));
            tensors.push((format!("v.{}", t.name), v));
        }
    }
    let meta = HashMap::from([("adam_step".to_string(), adam.step.to_string())]);
    write_tensors(path, &tensors, meta)
}

/// Restores AdamW moments and step count written by [`save`].
pub fn load_moments(
    dir: &Path,
    adam: &mut AdamW,
    trainable: &[Trainable],
    device: &Device,
) -> Result<()> {
    let path = dir.join(OPTIMIZER);
    let file = TensorFile::read(&path)?;
    adam.step = file.meta("adam_step")?;
    for (j, t) in trainable.iter().enumerate() {
        let m = file.tensor(&format!("m.{}", t.name), t.numel(), device)?;
        let v = file.tensor(&format!("v.{}", t.name), t.numel(), device)?;
        adam.moments[j] = match (m, v) {
            (Some(m), Some(v)) => Some((m, v)),
            (None, None) => None,
            _ => bail!(
                "{}: expected both AdamW moments of {name} (m.{name} and v.{name}), found one",
                path.display(),
                name = t.name
            ),
        };
    }
    Ok(())
}

/// The classifier `config` and `task` describe, built from `folder/config.json` with fresh
/// weights (dropout off) for a checkpoint or an export to be loaded into; and that config.
pub(super) fn untrained(
    config: &TrainConfig,
    task: &Task,
    folder: &Path,
    device: &Device,
) -> Result<(ModelConfig, Classifier)> {
    let model_config = ModelConfig::from_file(&folder.join("config.json"))?;
    let model = Classifier::new(
        Encoder::new(&model_config, 0.0, device)?,
        &model_config,
        config.head,
        task.num_labels(),
        0.0,
        0,
        device,
    );
    Ok((model_config, model))
}

/// The classifier of checkpoint folder `dir` on `device`, LoRA's adapters (kept unmerged in
/// the checkpoints of `--trainable lora` runs) merged into their weights; and its config.
pub(super) fn load_trained(
    config: &TrainConfig,
    task: &Task,
    dir: &Path,
    device: &Device,
) -> Result<(ModelConfig, Classifier)> {
    let (model_config, model) = untrained(config, task, dir, device)?;
    let model = match has_adapters(&dir.join(MODEL))? {
        true => super::method::with_adapters(model, config)?,
        false => model,
    };
    Ok((model_config, load_model(dir, model)?.materialize()))
}

/// Whether the model file at `path` holds LoRA factors.
pub fn has_adapters(path: &Path) -> Result<bool> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| anyhow!("{}: corrupt safetensors file ({e})", path.display()))?;
    Ok(header
        .tensors()
        .keys()
        .any(|name| super::peft::is_adapter(name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::trainable::Group;
    use crate::optim::AdamWConfig;
    use burn::tensor::Tensor;

    /// A file holding m of a tensor without its v (or the reverse) is refused, naming both.
    #[test]
    fn moments_load_in_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let device = Device::flex();
        let trainable = [Trainable {
            name: "out.bias".into(),
            shape: vec![3],
            group: Group::Head,
        }];
        let path = dir.path().join(OPTIMIZER);
        let m = Tensor::from_floats([0.1, 0.2, 0.3], &device);
        let v = Tensor::from_floats([0.01, 0.02, 0.03], &device);
        let mut adam = AdamW::new(AdamWConfig::default(), 1);
        adam.step = 4;
        adam.moments[0] = Some((m.clone(), v));
        write_moments(&path, &adam, &trainable).unwrap();
        let mut loaded = AdamW::new(AdamWConfig::default(), 1);
        load_moments(dir.path(), &mut loaded, &trainable, &device).unwrap();
        assert_eq!(loaded.step, 4);

        let meta = HashMap::from([("adam_step".to_string(), "4".to_string())]);
        write_tensors(&path, &[("m.out.bias".to_string(), &m)], meta).unwrap();
        let error = load_moments(dir.path(), &mut loaded, &trainable, &device).unwrap_err();
        let line = format!("{error:#}");
        assert!(
            line.contains("optimizer.safetensors") && line.contains("v.out.bias"),
            "{line}"
        );
    }
}
