//! Checkpoints: a folder holding the model in HF layout (so `--model` can load its encoder),
//! the optimiser moments and the loop position. Written to a sibling folder, then swapped in,
//! so a crash at any moment leaves the previous checkpoint whole.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};

use super::optim::AdamW;
use super::params::Slot;
use crate::model::Classifier;

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
    pub bound: Option<serde_json::Value>,
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
    pub epoch_bound: Option<crate::pac::bound::BoundTerms>,
    #[serde(default)]
    pub epoch_skipped: usize,
}

/// Writes `model` (+ optimiser moments and loop state when given) as folder `dir`, atomically.
pub fn save(
    dir: &Path,
    model: &Classifier,
    extra_files: &[PathBuf],
    optimizer: Option<(&AdamW, &[Slot])>,
    state: &LoopState,
) -> Result<()> {
    let partial = dir.with_extension("partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial)?;
    }
    std::fs::create_dir_all(&partial)
        .with_context(|| format!("{}: cannot create checkpoint folder", partial.display()))?;
    let mut store = SafetensorsStore::from_file(partial.join(MODEL))
        .with_to_adapter(BurnToPyTorchAdapter)
        .with_key_remapping(r"layer_norm", "LayerNorm")
        .with_key_remapping(r"\.attention\.self_attn\.", ".attention.self.");
    model
        .save_into(&mut store)
        .map_err(|e| anyhow!("{}: cannot write model: {e}", partial.display()))?;
    for file in extra_files {
        if let Some(name) = file.file_name() {
            std::fs::copy(file, partial.join(name))
                .with_context(|| format!("cannot copy {} into the checkpoint", file.display()))?;
        }
    }
    if let Some((adam, slots)) = optimizer {
        write_moments(&partial.join(OPTIMIZER), adam, slots)?;
    }
    std::fs::write(partial.join(STATE), serde_json::to_string_pretty(state)?)?;

    // Swap: dir -> dir.old, partial -> dir, drop dir.old. `load_state` falls back to dir.old.
    let old = dir.with_extension("old");
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    if dir.exists() {
        std::fs::rename(dir, &old)?;
    }
    std::fs::rename(&partial, dir)?;
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    Ok(())
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

/// Loads the weights of a checkpoint into `model` (built from the same config).
pub fn load_model(dir: &Path, mut model: Classifier) -> Result<Classifier> {
    let path = dir.join(MODEL);
    let mut store = SafetensorsStore::from_file(&path)
        .with_from_adapter(PyTorchToBurnAdapter)
        .with_key_remapping(r"LayerNorm", "layer_norm")
        .with_key_remapping(r"\.attention\.self\.", ".attention.self_attn.")
        .allow_partial(true)
        .validate(false);
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

/// Writes named 1-D tensors (read back from the device) and string metadata as safetensors.
pub fn write_tensors(
    path: &Path,
    tensors: &[(String, &Tensor<1>)],
    meta: HashMap<String, String>,
) -> Result<()> {
    let mut bytes = Vec::with_capacity(tensors.len());
    for (_, t) in tensors {
        let values = t
            .to_data()
            .try_to_vec::<f32>()
            .map_err(|e| anyhow!("cannot read a tensor back from the device: {e:?}"))?;
        bytes.push((
            values.len(),
            values
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect::<Vec<u8>>(),
        ));
    }
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, _), (n, b))| Ok((name.clone(), TensorView::new(Dtype::F32, vec![*n], b)?)))
        .collect::<Result<_, safetensors::SafeTensorError>>()?;
    let data = safetensors::serialize(views, Some(meta))?;
    crate::report::write_atomic(path, &data)
}

/// The f32 tensors (values row-major, and shapes) and the metadata of a safetensors file, such
/// as one written by [`write_tensors`].
pub struct TensorFile {
    pub path: PathBuf,
    pub tensors: HashMap<String, Vec<f32>>,
    pub shapes: HashMap<String, Vec<usize>>,
    pub meta: HashMap<String, String>,
}

impl TensorFile {
    pub fn read(path: &Path) -> Result<TensorFile> {
        let bytes =
            std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| anyhow!("{}: corrupt safetensors file ({e})", path.display()))?;
        let file = safetensors::SafeTensors::deserialize(&bytes)?;
        let (mut tensors, mut shapes) = (HashMap::new(), HashMap::new());
        for (name, view) in file.tensors() {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            shapes.insert(name.clone(), view.shape().to_vec());
            tensors.insert(name, values);
        }
        Ok(TensorFile {
            path: path.to_path_buf(),
            tensors,
            shapes,
            meta: header.metadata().clone().unwrap_or_default(),
        })
    }

    /// Tensor `name` of `len` values on `device`; `None` when the file lacks it.
    pub fn tensor(&self, name: &str, len: usize, device: &Device) -> Result<Option<Tensor<1>>> {
        match self.tensors.get(name) {
            None => Ok(None),
            Some(v) if v.len() != len => bail!(
                "{}: {name} has {} values, expected {len}",
                self.path.display(),
                v.len()
            ),
            Some(v) => Ok(Some(Tensor::from_data(
                TensorData::new(v.clone(), [len]),
                device,
            ))),
        }
    }

    pub fn meta<T: std::str::FromStr>(&self, key: &str) -> Result<T> {
        self.meta
            .get(key)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("{}: no valid {key} in the metadata", self.path.display()))
    }
}

fn write_moments(path: &Path, adam: &AdamW, slots: &[Slot]) -> Result<()> {
    let mut tensors = Vec::new();
    for (j, slot) in slots.iter().enumerate() {
        for (kind, moment) in [("m", &adam.m[j]), ("v", &adam.v[j])] {
            if let Some(t) = moment {
                tensors.push((format!("{kind}.{}", slot.name), t));
            }
        }
    }
    let meta = HashMap::from([("adam_step".to_string(), adam.step.to_string())]);
    write_tensors(path, &tensors, meta)
}

/// Restores AdamW moments and step count written by [`save`].
pub fn load_moments(dir: &Path, adam: &mut AdamW, slots: &[Slot], device: &Device) -> Result<()> {
    let file = TensorFile::read(&dir.join(OPTIMIZER))?;
    adam.step = file.meta("adam_step")?;
    for (j, slot) in slots.iter().enumerate() {
        adam.m[j] = file.tensor(&format!("m.{}", slot.name), slot.numel(), device)?;
        adam.v[j] = file.tensor(&format!("v.{}", slot.name), slot.numel(), device)?;
    }
    Ok(())
}
