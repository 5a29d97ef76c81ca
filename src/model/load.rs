//! Loads HF `model.safetensors` weights into [`Bert`] through burn-store.

use std::path::Path;

use anyhow::{Result, bail};
use burn::store::{ApplyError, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use burn::tensor::Device;

use super::bert::Bert;
use super::config::BertConfig;

/// Checkpoint tensors that the encoder does not use and that need no warning: the pooler (PAC-tuning
/// classifies from [CLS] directly), pre-training and task heads, and the position-id buffer.
const KNOWN_UNUSED: [&str; 5] = [
    "pooler.",
    "cls.",
    "classifier.",
    "qa_outputs.",
    "position_ids",
];

/// Reads `model.safetensors` into a freshly built encoder.
///
/// Accepts both `BertModel` names (`encoder.layer.0...`) and task-model names (`bert.encoder...`).
/// A missing or mis-shaped tensor is an error naming the tensor; extra tensors other than
/// `KNOWN_UNUSED` are returned as warnings.
pub fn load_bert(
    path: &Path,
    config: &BertConfig,
    dropout: f64,
    device: &Device,
) -> Result<(Bert, Vec<String>)> {
    check_header(path, config)?;
    let mut bert = Bert::new(config, dropout, device);
    let mut store = SafetensorsStore::from_file(path)
        .with_from_adapter(PyTorchToBurnAdapter)
        .with_key_remapping(r"^bert\.", "")
        .with_key_remapping(r"LayerNorm", "layer_norm")
        .with_key_remapping(r"\.attention\.self\.", ".attention.self_attn.")
        .allow_partial(true)
        .validate(false);
    let result = bert
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
    if !result.missing.is_empty() {
        let names: Vec<String> = result.missing.iter().map(|(n, _)| hf_name(n)).collect();
        bail!(
            "{}: missing {} tensor(s) the config requires: {}",
            path.display(),
            names.len(),
            abbreviate(&names)
        );
    }
    let warnings = result
        .unused
        .iter()
        .filter(|name| !KNOWN_UNUSED.iter().any(|k| name.contains(k)))
        .map(|name| {
            format!(
                "{}: unexpected tensor {} ignored",
                path.display(),
                hf_name(name)
            )
        })
        .collect();
    Ok((bert, warnings))
}

/// Rejects files whose safetensors header does not parse or whose sizes are not the config's,
/// before burn-store reads them.
fn check_header(path: &Path, config: &BertConfig) -> Result<()> {
    let file = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot open model weights: {e}", path.display()))?;
    // Safety: the file is only read, and not modified while mapped by this process.
    let bytes = unsafe { memmap2::Mmap::map(&file) }
        .map_err(|e| anyhow::anyhow!("{}: cannot read model weights: {e}", path.display()))?;
    let header = match safetensors::SafeTensors::read_metadata(&bytes) {
        Ok((_, header)) => header,
        Err(e) => bail!(
            "{}: expected a safetensors file, found a corrupt header ({e})",
            path.display()
        ),
    };
    // The config's sizes must be the weights' before anything of that size is built.
    let sizes = [
        (
            "embeddings.word_embeddings.weight",
            [config.vocab_size, config.hidden_size],
            "vocab_size × hidden_size",
        ),
        (
            "encoder.layer.0.intermediate.dense.weight",
            [config.intermediate_size, config.hidden_size],
            "intermediate_size × hidden_size",
        ),
    ];
    for (name, expected, what) in sizes {
        let info = header
            .tensors()
            .into_iter()
            .find(|(n, _)| n == name || n.strip_prefix("bert.") == Some(name));
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

/// The HF spelling of a module path (inverse of the remapping in [`load_bert`]).
pub fn hf_name(path: &str) -> String {
    path.replace("self_attn", "self")
        .replace("layer_norm.gamma", "LayerNorm.weight")
        .replace("layer_norm.beta", "LayerNorm.bias")
        .replace("layer_norm", "LayerNorm")
}

fn abbreviate(names: &[String]) -> String {
    const SHOWN: usize = 4;
    let mut text = names[..names.len().min(SHOWN)].join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(", ... ({} more)", names.len() - SHOWN));
    }
    text
}
