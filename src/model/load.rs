//! Loads HF `model.safetensors` weights into an [`Encoder`] through burn-store.

use std::path::Path;

use anyhow::{Result, bail};
use burn::module::Module;
use burn::store::{ApplyError, ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;

use super::bert::Bert;
use super::config::ModelConfig;
use super::encoder::Encoder;
use super::gpt2::Gpt2;
use super::hf_names::{from_hf_names, hf_name};
use super::roberta::Roberta;

/// Checkpoint tensors that the encoder does not use and that need no warning: the pooler (the
/// `cls` head reads the first token directly), pre-training and task heads, and buffers.
const KNOWN_UNUSED: [&str; 8] = [
    "pooler.",
    "cls.",
    "classifier.",
    "qa_outputs.",
    "position_ids",
    "lm_head.",
    "score.",
    "masked_bias",
];

/// Reads `model.safetensors` into a freshly built encoder of `config`'s family.
///
/// Accepts both base-model names (`encoder.layer.0...`, `h.0...`) and task-model names
/// (`bert.`, `roberta.`, `transformer.` prefixes). A missing or mis-shaped tensor is an error
/// naming the tensor (BERT's pooler may be missing); extra tensors other than `KNOWN_UNUSED` are
/// returned as warnings.
pub fn load_encoder(
    path: &Path,
    config: &ModelConfig,
    dropout: f64,
    device: &Device,
) -> Result<(Encoder, Vec<String>)> {
    check_header(path, &read_weights(path)?, config)?;
    build(
        SafetensorsStore::from_file(path),
        path,
        config,
        dropout,
        device,
    )
}

/// The bytes of a weights file, mapped rather than read where the platform can.
#[cfg(feature = "native")]
fn read_weights(path: &Path) -> Result<memmap2::Mmap> {
    let file = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot open model weights: {e}", path.display()))?;
    // Safety: the file is only read, and not modified while mapped by this process.
    unsafe { memmap2::Mmap::map(&file) }
        .map_err(|e| anyhow::anyhow!("{}: cannot read model weights: {e}", path.display()))
}

#[cfg(not(feature = "native"))]
fn read_weights(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot read model weights: {e}", path.display()))
}

/// [`load_encoder`] on a safetensors file's bytes (the browser has no files); `name` names
/// them in errors.
pub fn load_encoder_bytes(
    bytes: Vec<u8>,
    name: &Path,
    config: &ModelConfig,
    dropout: f64,
    device: &Device,
) -> Result<(Encoder, Vec<String>)> {
    check_header(name, &bytes, config)?;
    let store = SafetensorsStore::from_bytes(Some(bytes));
    build(store, name, config, dropout, device)
}

/// A fresh encoder of `config`'s family with the weights `store` holds.
fn build(
    store: SafetensorsStore,
    path: &Path,
    config: &ModelConfig,
    dropout: f64,
    device: &Device,
) -> Result<(Encoder, Vec<String>)> {
    Ok(match config {
        ModelConfig::Bert(c) => {
            let mut bert = Bert::new(c, dropout, device);
            let (missing, unused) = apply(store, path, &mut bert)?;
            let has_pooler = !missing.iter().any(|n| n.starts_with("pooler."));
            if !has_pooler {
                bert.pooler = None;
            }
            let missing = missing.into_iter().filter(|n| !n.starts_with("pooler."));
            (
                Encoder::Bert(bert),
                checked(path, missing.collect(), unused)?,
            )
        }
        ModelConfig::Roberta(c) => {
            let mut roberta = Roberta::new(c, dropout, device);
            let (missing, unused) = apply(store, path, &mut roberta)?;
            (Encoder::Roberta(roberta), checked(path, missing, unused)?)
        }
        ModelConfig::Gpt2(c) => {
            let mut gpt2 = Gpt2::new(c, dropout, device);
            let (missing, unused) = apply(store, path, &mut gpt2)?;
            (Encoder::Gpt2(gpt2), checked(path, missing, unused)?)
        }
    })
}

/// Loads what `store` holds into `module`; returns the HF names it lacked and those it left
/// over. `path` names the weights in errors.
fn apply<M: Module>(
    store: SafetensorsStore,
    path: &Path,
    module: &mut M,
) -> Result<(Vec<String>, Vec<String>)> {
    let mut store = from_hf_names(store, false);
    let result = module
        .load_from(&mut store)
        .map_err(|e| anyhow::anyhow!("{}: cannot read tensors: {e}", path.display()))?;

    if let Some(error) = result.errors.first() {
        let problem = match error {
            ApplyError::ShapeMismatch {
                path: name,
                expected,
                found,
            } => format!(
                "tensor {} has shape {:?}, expected {:?} (from config.json)",
                hf_name(name),
                found.as_slice(),
                expected.as_slice()
            ),
            ApplyError::DTypeMismatch {
                path: name,
                expected,
                found,
            } => format!(
                "tensor {} has dtype {found:?}, expected {expected:?}",
                hf_name(name)
            ),
            other => format!("{other:?}"),
        };
        bail!("{}: {problem}", path.display());
    }
    let missing = result.missing.iter().map(|(n, _)| hf_name(n)).collect();
    Ok((missing, result.unused.clone()))
}

/// An error for missing tensors, else the warnings for unexpected ones.
fn checked(path: &Path, missing: Vec<String>, unused: Vec<String>) -> Result<Vec<String>> {
    if !missing.is_empty() {
        bail!(
            "{}: missing {} tensor(s) the config requires: {}",
            path.display(),
            missing.len(),
            abbreviate(&missing)
        );
    }
    Ok(unused
        .iter()
        .filter(|name| !KNOWN_UNUSED.iter().any(|k| name.contains(k)) && !is_attn_buffer(name))
        .map(|name| {
            format!(
                "{}: unexpected tensor {} ignored",
                path.display(),
                hf_name(name)
            )
        })
        .collect())
}

/// GPT-2's causal-mask buffer `h.N.attn.bias` in older checkpoints (not `c_attn.bias`).
fn is_attn_buffer(name: &str) -> bool {
    name.ends_with(".attn.bias")
}

/// Rejects files whose safetensors header does not parse or whose sizes are not the config's,
/// before burn-store reads them.
fn check_header(path: &Path, bytes: &[u8], config: &ModelConfig) -> Result<()> {
    let header = match safetensors::SafeTensors::read_metadata(bytes) {
        Ok((_, header)) => header,
        Err(e) => bail!(
            "{}: expected a safetensors file, found a corrupt header ({e})",
            path.display()
        ),
    };
    // The config's sizes must be the weights' before anything of that size is built.
    let sizes = match config {
        ModelConfig::Bert(c) | ModelConfig::Roberta(c) => vec![
            (
                "embeddings.word_embeddings.weight",
                [c.vocab_size, c.hidden_size],
                "vocab_size × hidden_size",
            ),
            (
                "encoder.layer.0.intermediate.dense.weight",
                [c.intermediate_size, c.hidden_size],
                "intermediate_size × hidden_size",
            ),
        ],
        ModelConfig::Gpt2(c) => vec![(
            "wte.weight",
            [c.vocab_size, c.n_embd],
            "vocab_size × n_embd",
        )],
    };
    let unprefixed = |n: &str| {
        ["bert.", "roberta.", "transformer."]
            .iter()
            .find_map(|p| n.strip_prefix(p))
            .unwrap_or(n)
            .to_string()
    };
    for (name, expected, what) in sizes {
        let info = header
            .tensors()
            .into_iter()
            .find(|(n, _)| unprefixed(n) == name);
        if let Some((_, info)) = info
            && info.shape != expected
        {
            bail!(
                "{}: {what} {expected:?} (config.json) does not match {name} {:?} in {}",
                path.with_file_name("config.json").display(),
                info.shape,
                path.display()
            );
        }
    }
    Ok(())
}

fn abbreviate(names: &[String]) -> String {
    const SHOWN: usize = 4;
    let mut text = names[..names.len().min(SHOWN)].join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(", ... ({} more)", names.len() - SHOWN));
    }
    text
}
