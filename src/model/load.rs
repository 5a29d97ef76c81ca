//! Loads HF `model.safetensors` weights (or a sharded checkpoint's
//! `model.safetensors.index.json` and its shards; 16-bit floats widened to f32) into an
//! [`Encoder`] through burn-store.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use burn::module::Module;
use burn::store::{ApplyError, ModuleSnapshot, SafetensorsStore};
use burn::tensor::{Device, bf16, f16};

use super::bert::Bert;
use super::config::ModelConfig;
use super::encoder::Encoder;
use super::gpt2::Gpt2;
use super::hf_names::{from_hf_names, hf_name};
use super::llama::Llama;
use super::modernbert::ModernBert;
use super::roberta::Roberta;
use crate::util::text::escape_controls;

/// A folder's one-file checkpoint.
pub const WEIGHTS: &str = "model.safetensors";
/// A sharded checkpoint's map from tensor names to shard files.
pub const WEIGHTS_INDEX: &str = "model.safetensors.index.json";

/// Checkpoint tensors that the encoder does not use and that need no warning: the pooler (the
/// `cls` head reads the first token directly), pre-training and task heads, and buffers.
const KNOWN_UNUSED: [&str; 9] = [
    "decoder.",
    "pooler.",
    "cls.",
    "classifier.",
    "qa_outputs.",
    "position_ids",
    "lm_head.",
    "score.",
    "masked_bias",
];

/// Reads a model folder's checkpoint ([`WEIGHTS`], or [`WEIGHTS_INDEX`] and its shards) into a
/// freshly built encoder of `config`'s family; see [`load_encoder`].
pub fn load_folder(
    folder: &Path,
    config: &ModelConfig,
    dropout: f64,
    device: &Device,
) -> Result<(Encoder, Vec<String>)> {
    let single = folder.join(WEIGHTS);
    let files = if single.is_file() {
        vec![single]
    } else {
        shards(&folder.join(WEIGHTS_INDEX))?
    };
    if let [file] = files.as_slice()
        && !has_16_bit_floats(&read_weights(file)?)
    {
        return load_encoder(file, config, dropout, device);
    }
    let bytes = widened(&files)?;
    load_encoder_bytes(bytes, &files[0], config, dropout, device)
}

/// The shard files an index names, each once, in order; an error names a missing one.
fn shards(index: &Path) -> Result<Vec<PathBuf>> {
    let folder = index.parent().unwrap_or(Path::new("."));
    if !index.is_file() {
        bail!(
            "{}: model folder has no {WEIGHTS} (nor a sharded {WEIGHTS_INDEX})",
            folder.display()
        );
    }
    let mut files = Vec::new();
    for name in shard_names(index)? {
        let file = folder.join(&name);
        if !file.is_file() {
            bail!(
                "{}: shard {name} is missing (named in weight_map)",
                index.display()
            );
        }
        files.push(file);
    }
    Ok(files)
}

/// The shard file names a `model.safetensors.index.json` maps tensors to, each once, sorted.
pub fn shard_names(index: &Path) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: std::collections::BTreeMap<String, String>,
    }
    let text = std::fs::read_to_string(index)
        .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", index.display()))?;
    let parsed: Index = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}:{}: expected a safetensors index with a \"weight_map\" ({})",
            index.display(),
            e.line(),
            escape_controls(&e.to_string())
        )
    })?;
    let names: BTreeSet<String> = parsed.weight_map.into_values().collect();
    if let Some(bad) = names
        .iter()
        .find(|n| n.contains('/') || n.contains('\\') || n.starts_with('.'))
    {
        bail!(
            "{}: shard name {bad:?} is not a file name in the folder",
            index.display()
        );
    }
    if names.is_empty() {
        bail!("{}: weight_map names no shard", index.display());
    }
    Ok(names.into_iter().collect())
}

/// Whether a safetensors file holds f16 or bf16 tensors (an unreadable header counts as not,
/// so that the usual path reports it).
fn has_16_bit_floats(bytes: &[u8]) -> bool {
    use safetensors::Dtype;
    safetensors::SafeTensors::read_metadata(bytes).is_ok_and(|(_, header)| {
        (header.tensors().values()).any(|info| matches!(info.dtype, Dtype::F16 | Dtype::BF16))
    })
}

/// A tensor as `(name, shape, little-endian f32 bytes)`.
pub type RawTensor = (String, Vec<usize>, Vec<u8>);

/// The tensors of `files` as one safetensors image, bf16 and f16 widened to f32.
fn widened(files: &[PathBuf]) -> Result<Vec<u8>> {
    let mut tensors = Vec::new();
    for file in files {
        tensors.extend(read_as_f32(file)?);
    }
    f32_image(&tensors, &files[0])
}

/// Every float tensor of a safetensors file as f32 (16-bit floats widened); integer buffers
/// such as `position_ids`, which no module reads, are left out.
pub fn read_as_f32(path: &Path) -> Result<Vec<RawTensor>> {
    use safetensors::Dtype;
    let bytes = read_weights(path)?;
    let file = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "{}: expected a safetensors file, found a corrupt header ({})",
            path.display(),
            escape_controls(&e.to_string())
        )
    })?;
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            let data = view.data();
            let values: Vec<f32> = match view.dtype() {
                Dtype::F32 => bytemuck::pod_collect_to_vec(data),
                Dtype::F16 => data
                    .chunks_exact(2)
                    .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                Dtype::BF16 => data
                    .chunks_exact(2)
                    .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                Dtype::I64 | Dtype::I32 | Dtype::I16 | Dtype::I8 | Dtype::U8 | Dtype::BOOL => {
                    return Ok(None);
                }
                other => bail!(
                    "{}: tensor {name} has dtype {other:?}, expected F32, F16 or BF16",
                    path.display()
                ),
            };
            let bytes = bytemuck::cast_slice(&values).to_vec();
            Ok(Some((name, view.shape().to_vec(), bytes)))
        })
        .filter_map(Result::transpose)
        .collect()
}

/// `tensors` as the bytes of one f32 safetensors file; `name` names it in errors.
pub fn f32_image(tensors: &[RawTensor], name: &Path) -> Result<Vec<u8>> {
    use safetensors::tensor::TensorView;
    let views = tensors
        .iter()
        .map(|(tensor, shape, bytes)| {
            TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|view| (tensor.clone(), view))
                .map_err(|e| anyhow::anyhow!("{}: {tensor}: {e}", name.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, None).map_err(|e| anyhow::anyhow!("{}: {e}", name.display()))
}

/// Reads `model.safetensors` into a freshly built encoder of `config`'s family.
///
/// Accepts both base-model names (`encoder.layer.0...`, `h.0...`) and task-model names
/// (`bert.`, `roberta.`, `transformer.`, `model.` prefixes). A missing or mis-shaped tensor is an error
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
        ModelConfig::Llama(c) => {
            let mut llama = Llama::new(c, device)?;
            let (missing, unused) = apply(store, path, &mut llama)?;
            (Encoder::Llama(llama), checked(path, missing, unused)?)
        }
        ModelConfig::ModernBert(c) => {
            // The MLM head is optional, as BERT's pooler is.
            let mut modernbert = ModernBert::new(c, device)?;
            let (missing, unused) = apply(store, path, &mut modernbert)?;
            if missing.iter().any(|n| n.starts_with("head.")) {
                modernbert.head = None;
            }
            let missing = missing.into_iter().filter(|n| !n.starts_with("head."));
            let encoder = Encoder::ModernBert(modernbert);
            (encoder, checked(path, missing.collect(), unused)?)
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
    let mut store = from_hf_names(store, None);
    let result = module.load_from(&mut store).map_err(|e| {
        let e = escape_controls(&e.to_string());
        anyhow::anyhow!("{}: cannot read tensors: {e}", path.display())
    })?;

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
        bail!("{}: {}", path.display(), escape_controls(&problem));
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
            "{}: expected a safetensors file, found a corrupt header ({})",
            path.display(),
            escape_controls(&e.to_string())
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
        ModelConfig::Llama(c) => vec![
            (
                "embed_tokens.weight",
                [c.vocab_size, c.hidden_size],
                "vocab_size × hidden_size",
            ),
            (
                "layers.0.mlp.up_proj.weight",
                [c.intermediate_size, c.hidden_size],
                "intermediate_size × hidden_size",
            ),
        ],
        ModelConfig::ModernBert(c) => vec![(
            "embeddings.tok_embeddings.weight",
            [c.vocab_size, c.hidden_size],
            "vocab_size × hidden_size",
        )],
    };
    let unprefixed = |n: &str| {
        ["bert.", "roberta.", "transformer.", "model."]
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
    check_depth(path, &header, config, unprefixed)
}

/// The weights must hold the last layer that config.json asks for, before a model of that
/// depth is built (a hostile `num_hidden_layers` would otherwise size the layer list).
fn check_depth(
    path: &Path,
    header: &safetensors::tensor::Metadata,
    config: &ModelConfig,
    unprefixed: impl Fn(&str) -> String,
) -> Result<()> {
    let (layers, key, prefix) = match config {
        ModelConfig::Bert(c) | ModelConfig::Roberta(c) => {
            (c.num_hidden_layers, "num_hidden_layers", "encoder.layer.")
        }
        ModelConfig::Gpt2(c) => (c.n_layer, "n_layer", "h."),
        ModelConfig::Llama(c) => (c.num_hidden_layers, "num_hidden_layers", "layers."),
        ModelConfig::ModernBert(c) => (c.num_hidden_layers, "num_hidden_layers", "layers."),
    };
    let Some(last) = layers.checked_sub(1) else {
        return Ok(());
    };
    let name = format!("{prefix}{last}.");
    if !header
        .tensors()
        .into_keys()
        .any(|n| unprefixed(&n).starts_with(&name))
    {
        bail!(
            "{}: {key} {layers} (config.json) does not match {}, which holds no tensor of layer {last} ({name}*)",
            path.with_file_name("config.json").display(),
            path.display()
        );
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
