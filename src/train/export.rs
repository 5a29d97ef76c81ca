//! `pac-wgpu export`: a run's checkpoint as a Hugging Face folder, and reading such a folder back.
//!
//! `--head hf` runs become a `*ForSequenceClassification` folder that
//! `AutoModelForSequenceClassification` loads. `--head cls` runs (no HF class has that head)
//! become the encoder, which `AutoModel` loads, plus `head.safetensors` (`out.weight`
//! `[num_labels, hidden]`, `out.bias`) and `head.json` naming the token the head reads. PAC runs
//! also carry the learned noise: `noise.safetensors` holds p (log σ) per trainable tensor in HF
//! layout and b (the log prior std per tensor) in its metadata.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result, anyhow, bail};
use burn::tensor::{Device, Tensor, bf16, f16};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::checkpoint;
use super::config::{Method, TrainConfig};
use super::peft;
use crate::glue::Task;
use crate::model::load::{RawTensor, f32_image, read_as_f32};
use crate::model::trainable;
use crate::model::{Classifier, HeadKind, ModelConfig};
use crate::util::files::TensorFile;

/// The run's settings inside an exported folder, so `predict` and `eval` can use it.
pub const RUN_FILE: &str = "pac_wgpu_run.json";
const HEAD_JSON: &str = "head.json";
const HEAD_FILE: &str = "head.safetensors";
const NOISE_FILE: &str = "noise.safetensors";
const MODEL_FILE: &str = "model.safetensors";

/// The float type of the exported tensors (values rounded to nearest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    Bf16,
}

impl FromStr for Dtype {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Dtype::F32),
            "f16" => Ok(Dtype::F16),
            "bf16" => Ok(Dtype::Bf16),
            _ => Err(format!("expected f32, f16 or bf16, found {s:?}")),
        }
    }
}

impl Dtype {
    fn safetensors(self) -> safetensors::Dtype {
        match self {
            Dtype::F32 => safetensors::Dtype::F32,
            Dtype::F16 => safetensors::Dtype::F16,
            Dtype::Bf16 => safetensors::Dtype::BF16,
        }
    }

    fn bytes(self, values: &[f32]) -> Vec<u8> {
        match self {
            Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Dtype::F16 => values
                .iter()
                .flat_map(|v| f16::from_f32(*v).to_le_bytes())
                .collect(),
            Dtype::Bf16 => values
                .iter()
                .flat_map(|v| bf16::from_f32(*v).to_le_bytes())
                .collect(),
        }
    }
}

/// `head.json` of a `--head cls` export.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClsHead {
    /// `first` (BERT, RoBERTa: position 0) or `last_real` (GPT-2: each row's last real token).
    pub pooling: String,
    pub num_labels: usize,
    pub problem_type: String,
}

/// What [`export`] wrote.
pub struct Exported {
    pub folder: PathBuf,
    pub head: HeadKind,
    /// Whether it is a PEFT adapter folder (a `--trainable lora` run without `--merge`).
    pub peft: bool,
    /// The Python lines that rebuild the logits of a `--head cls` export.
    pub python: Option<String>,
}

/// What an export writes for a `--trainable lora` run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adapters {
    /// A PEFT adapter folder (the default).
    Peft,
    /// The adapters merged into their weights: a whole model, as for the other runs.
    Merge,
}

/// Writes checkpoint `which` of `run` as an HF folder `out` (which must not exist yet); the
/// folder appears whole or not at all.
pub fn export(
    run: &Path,
    which: &str,
    out: &Path,
    dtype: Dtype,
    adapters: Adapters,
) -> Result<Exported> {
    if out.exists() {
        bail!("--out {}: already exists; pass a new folder", out.display());
    }
    let config = super::config::read_config(&run.join("run.json"))?;
    let task = config.validate()?;
    let ckpt = checkpoint::checkpoint_dir(run, which)?;
    let model_config = ModelConfig::from_file(&ckpt.join("config.json"))?;
    let unmerged = checkpoint::has_adapters(&ckpt.join(MODEL_FILE))?;
    let peft = unmerged && adapters == Adapters::Peft;
    let tensors = match unmerged && !peft {
        true => merged(&config, &task, &ckpt)?,
        false => TensorFile::read(&ckpt.join(MODEL_FILE))?,
    };

    let name = out
        .file_name()
        .ok_or_else(|| anyhow!("--out {}: expected a folder name", out.display()))?;
    let partial = out.with_file_name(format!(".{}.partial", name.to_string_lossy()));
    if partial.exists() {
        std::fs::remove_dir_all(&partial)?;
    }
    std::fs::create_dir_all(&partial)
        .with_context(|| format!("--out {}: cannot create the folder", out.display()))?;
    let source = Source {
        ckpt,
        config,
        task,
        model_config,
        tensors,
    };
    let written = match peft {
        true => write_peft_folder(&partial, &source, dtype),
        false => write_folder(&partial, &source, dtype),
    };
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, out)
        .with_context(|| format!("--out {}: cannot move the export in place", out.display()))?;
    let Source {
        config,
        task,
        model_config,
        ..
    } = source;
    let python = match (peft, config.head) {
        (true, _) => Some(peft_python(out, &config, &task)),
        (false, HeadKind::Cls) => Some(cls_python(out, &model_config, &config)),
        (false, HeadKind::Hf) => None,
    };
    Ok(Exported {
        folder: out.to_path_buf(),
        head: config.head,
        peft,
        python,
    })
}

/// What an export is written from: the checkpoint folder, the run's config and task, the
/// model's config, and the model's tensors in HF layout.
struct Source {
    ckpt: PathBuf,
    config: TrainConfig,
    task: Task,
    model_config: ModelConfig,
    tensors: TensorFile,
}

/// The model of checkpoint folder `ckpt` with its LoRA adapters merged, in HF layout.
fn merged(config: &TrainConfig, task: &Task, ckpt: &Path) -> Result<TensorFile> {
    let (_, model) = checkpoint::load_trained(config, task, ckpt, &Device::flex())?;
    TensorFile::from_bytes(&checkpoint::model_bytes(&model)?, &ckpt.join(MODEL_FILE))
}

/// A PEFT adapter folder ([`super::peft`]): the adapters, and for `--head hf` runs the head as
/// `modules_to_save`; a `--head cls` run's head as in [`write_folder`]. PAC runs' noise covers
/// the adapters under the same names.
fn write_peft_folder(dir: &Path, source: &Source, dtype: Dtype) -> Result<()> {
    let Source {
        ckpt,
        config,
        task,
        model_config,
        tensors,
    } = source;
    let prefix = encoder_prefix(model_config);
    let (_, untrained) = checkpoint::untrained(config, task, ckpt, &Device::flex())?;
    let head = head_names(&untrained);
    let mut names: Vec<String> = sorted_names(tensors)
        .into_iter()
        .filter(|n| peft::is_adapter(n))
        .collect();
    let strip = match config.head {
        HeadKind::Hf => {
            names.extend(head.iter().cloned());
            None
        }
        HeadKind::Cls => {
            write_cls_head(dir, tensors, &head, model_config, task, dtype)?;
            Some(prefix)
        }
    };
    let renamed = peft::renamed(tensors, &names, strip);
    let peft_names = sorted_names(&renamed);
    write_safetensors(
        &dir.join(peft::WEIGHTS_FILE),
        &renamed,
        &peft_names,
        dtype,
        None,
    )?;
    let adapter = peft::AdapterConfig::new(config, model_config.model_type(), &head, prefix);
    peft::write_config(dir, &adapter)?;
    write_run_files(dir, ckpt, config)?;
    if config.method == Method::Pac {
        let noise = read_noise(untrained, ckpt, config)?;
        let names = sorted_names(&noise.p);
        let noise = Noise {
            p: peft::renamed(&noise.p, &names, strip),
            b: noise
                .b
                .into_iter()
                .map(|(n, b)| (peft::name(&n, strip), b))
                .collect(),
        };
        write_noise(dir, &noise, dtype)?;
    }
    Ok(())
}

/// A `--head cls` run's head: `head.safetensors` (tensors `head`) and `head.json`.
fn write_cls_head(
    dir: &Path,
    tensors: &TensorFile,
    head: &[String],
    model_config: &ModelConfig,
    task: &Task,
    dtype: Dtype,
) -> Result<()> {
    write_safetensors(&dir.join(HEAD_FILE), tensors, head, dtype, None)?;
    let head_json = ClsHead {
        pooling: pooling(model_config).into(),
        num_labels: task.num_labels(),
        problem_type: problem_type(task).into(),
    };
    std::fs::write(
        dir.join(HEAD_JSON),
        serde_json::to_string_pretty(&head_json)?,
    )?;
    Ok(())
}

/// The HF names of the head's tensors of `model`, with BERT's pooler (which `--head hf`
/// reads, and which the base checkpoint may lack, so that the run drew it).
fn head_names(model: &Classifier) -> Vec<String> {
    trainable::list(model, false)
        .into_iter()
        .filter(|t| t.group == trainable::Group::Head || t.name.contains(".pooler."))
        .map(|t| t.name)
        .collect()
}

/// The tokenizer files of checkpoint `ckpt` and the run's config (`pac_wgpu_run.json`).
fn write_run_files(dir: &Path, ckpt: &Path, config: &TrainConfig) -> Result<()> {
    for file in ["tokenizer.json", "vocab.txt"] {
        if ckpt.join(file).is_file() {
            std::fs::copy(ckpt.join(file), dir.join(file))?;
        }
    }
    std::fs::write(dir.join(RUN_FILE), serde_json::to_string_pretty(config)?)?;
    Ok(())
}

/// The Python lines that load a PEFT export onto its base model.
fn peft_python(folder: &Path, config: &TrainConfig, task: &Task) -> String {
    let dir = folder.display();
    let base = &config.model;
    let class = match config.head {
        HeadKind::Hf => format!(
            "AutoModelForSequenceClassification.from_pretrained(\"{base}\", num_labels={})",
            task.num_labels()
        ),
        HeadKind::Cls => format!("AutoModel.from_pretrained(\"{base}\")"),
    };
    format!(
        "import peft, transformers\n\
         base = transformers.{class}\n\
         model = peft.PeftModel.from_pretrained(base, \"{dir}\")"
    )
}

fn write_folder(dir: &Path, source: &Source, dtype: Dtype) -> Result<()> {
    let Source {
        ckpt,
        config,
        task,
        model_config,
        tensors,
    } = source;
    let prefix = encoder_prefix(model_config);
    let names = sorted_names(tensors);
    match config.head {
        HeadKind::Hf => write_safetensors(&dir.join(MODEL_FILE), tensors, &names, dtype, None)?,
        HeadKind::Cls => {
            let (head, encoder): (Vec<String>, Vec<String>) =
                names.into_iter().partition(|n| n.starts_with("out."));
            let base: Vec<(String, String)> = encoder
                .into_iter()
                .map(|n| (n.trim_start_matches(&format!("{prefix}.")).to_string(), n))
                .collect();
            write_with(&dir.join(MODEL_FILE), tensors, &base, dtype, None)?;
            write_cls_head(dir, tensors, &head, model_config, task, dtype)?;
        }
    }
    let hf_config = hf_config(&ckpt.join("config.json"), config.head, model_config, task)?;
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&hf_config)?,
    )?;
    write_run_files(dir, ckpt, config)?;
    if config.method == Method::Pac {
        let (_, untrained) = checkpoint::untrained(config, task, ckpt, &Device::flex())?;
        write_noise(dir, &read_noise(untrained, ckpt, config)?, dtype)?;
    }
    Ok(())
}

fn encoder_prefix(config: &ModelConfig) -> &'static str {
    match config {
        ModelConfig::Bert(_) => "bert",
        ModelConfig::Roberta(_) => "roberta",
        ModelConfig::Gpt2(_) => "transformer",
        ModelConfig::Llama(_) | ModelConfig::ModernBert(_) => "model",
    }
}

fn pooling(config: &ModelConfig) -> &'static str {
    match config {
        ModelConfig::Gpt2(_) | ModelConfig::Llama(_) => "last_real",
        _ => "first",
    }
}

/// The stem of the family's transformers classes (`{stem}Model`,
/// `{stem}ForSequenceClassification`).
fn class_stem(config: &ModelConfig) -> &'static str {
    match config.model_type() {
        "bert" => "Bert",
        "roberta" => "Roberta",
        "gpt2" => "GPT2",
        "mistral" => "Mistral",
        "qwen2" => "Qwen2",
        "qwen3" => "Qwen3",
        "modernbert" => "ModernBert",
        _ => "Llama",
    }
}

fn problem_type(task: &Task) -> &'static str {
    if task.is_regression() {
        "regression"
    } else {
        "single_label_classification"
    }
}

fn sorted_names(tensors: &TensorFile) -> Vec<String> {
    let mut names: Vec<String> = tensors.tensors.keys().cloned().collect();
    names.sort();
    names
}

/// The checkpoint's config.json with the architecture, label map and problem type set.
fn hf_config(path: &Path, head: HeadKind, model: &ModelConfig, task: &Task) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let mut config: serde_json::Map<String, Value> = serde_json::from_str(&text)
        .map_err(|e| anyhow!("{}: expected a JSON object ({e})", path.display()))?;
    let architecture = match head {
        HeadKind::Hf => format!("{}ForSequenceClassification", class_stem(model)),
        HeadKind::Cls => format!("{}Model", class_stem(model)),
    };
    let labels: Vec<String> = match task.label_names().as_slice() {
        [] => vec!["LABEL_0".to_string()],
        names => names.iter().map(|n| n.to_string()).collect(),
    };
    let id2label: BTreeMap<String, String> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (i.to_string(), l.clone()))
        .collect();
    let label2id: BTreeMap<String, usize> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.clone(), i))
        .collect();
    config.insert("architectures".into(), json!([architecture]));
    config.insert("model_type".into(), json!(model.model_type()));
    config.insert("num_labels".into(), json!(task.num_labels()));
    config.insert("id2label".into(), json!(id2label));
    config.insert("label2id".into(), json!(label2id));
    config.insert("problem_type".into(), json!(problem_type(task)));
    if let ModelConfig::Gpt2(_) = model {
        // GPT-2 has no pad token; its end-of-text token pads, and the HF head needs to know it.
        let eos = config.get("eos_token_id").cloned().unwrap_or(json!(50256));
        config.insert("pad_token_id".into(), eos);
    }
    if let Some(pad) = model.pad_id() {
        // Decoders without a pad token pad with end of sequence; the HF head reads up to it.
        config.insert("pad_token_id".into(), json!(pad));
    }
    Ok(Value::Object(config))
}

fn write_safetensors(
    path: &Path,
    tensors: &TensorFile,
    names: &[String],
    dtype: Dtype,
    meta: Option<HashMap<String, String>>,
) -> Result<()> {
    let pairs: Vec<(String, String)> = names.iter().map(|n| (n.clone(), n.clone())).collect();
    write_with(path, tensors, &pairs, dtype, meta)
}

/// Writes tensors `(new name, name in tensors)` in `dtype`.
fn write_with(
    path: &Path,
    tensors: &TensorFile,
    pairs: &[(String, String)],
    dtype: Dtype,
    meta: Option<HashMap<String, String>>,
) -> Result<()> {
    let data: Vec<RawTensor> = pairs
        .iter()
        .map(|(new, old)| {
            (
                new.clone(),
                tensors.shapes[old].clone(),
                dtype.bytes(&tensors.tensors[old]),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = data
        .iter()
        .map(|(name, shape, bytes)| {
            let view =
                safetensors::tensor::TensorView::new(dtype.safetensors(), shape.clone(), bytes)
                    .map_err(|e| anyhow!("{name}: {e}"))?;
            Ok((name.clone(), view))
        })
        .collect::<Result<_>>()?;
    let mut meta = meta.unwrap_or_default();
    meta.insert("format".into(), "pt".into());
    let bytes = safetensors::serialize(views, Some(meta))
        .map_err(|e| anyhow!("{}: cannot serialise: {e}", path.display()))?;
    std::fs::write(path, bytes).with_context(|| format!("{}: cannot write", path.display()))
}

/// PAC's learned noise as an export holds it: p per trainable tensor in HF layout under its
/// checkpoint name, and b per tensor by that name.
struct Noise {
    p: TensorFile,
    b: BTreeMap<String, f64>,
}

/// The noise of the run (from checkpoint `last`: σ is fixed after stage 1), laid out through
/// `untrained`, the run's classifier on the CPU device.
fn read_noise(untrained: Classifier, ckpt: &Path, config: &TrainConfig) -> Result<Noise> {
    let last = ckpt.with_file_name("last");
    let pac = TensorFile::read(&last.join("pac.safetensors"))?;
    let device = Device::flex();
    let model = super::method::with_adapters(untrained, config)?;
    let scope = super::method::scope(config);
    let list = trainable::list(&model, scope);
    let p: Vec<Tensor<1>> = list
        .iter()
        .map(|t| {
            pac.tensor(&format!("p.{}", t.name), t.numel(), &device)?
                .ok_or_else(|| anyhow!("{}: no p.{}", pac.path.display(), t.name))
        })
        .collect::<Result<_>>()?;
    // The model's own writer puts p into HF layout (Linear weights transposed) under HF names.
    let as_model = trainable::map(model, scope, |j, _| p[j].clone());
    let mut written = TensorFile::from_bytes(&checkpoint::model_bytes(&as_model)?, &pac.path)?;
    let names: Vec<&String> = list.iter().map(|t| &t.name).collect();
    written.tensors.retain(|name, _| names.contains(&name));
    written.shapes.retain(|name, _| names.contains(&name));
    let b = bits_to_floats(&pac, "b")?;
    let b = list.iter().map(|t| t.name.clone()).zip(b).collect();
    Ok(Noise { p: written, b })
}

/// `noise.safetensors`: `p.<name>` per tensor of `noise.p` and b (as JSON in the metadata).
fn write_noise(dir: &Path, noise: &Noise, dtype: Dtype) -> Result<()> {
    let pairs: Vec<(String, String)> = sorted_names(&noise.p)
        .into_iter()
        .map(|n| (format!("p.{n}"), n))
        .collect();
    let meta = HashMap::from([("b".to_string(), serde_json::to_string(&noise.b)?)]);
    write_with(&dir.join(NOISE_FILE), &noise.p, &pairs, dtype, Some(meta))
}

fn bits_to_floats(file: &TensorFile, key: &str) -> Result<Vec<f64>> {
    let text = file.meta.get(key).map(String::as_str).unwrap_or("");
    let bits: Vec<u64> = serde_json::from_str(text)
        .map_err(|e| anyhow!("{}: metadata {key}: {e}", file.path.display()))?;
    Ok(bits.into_iter().map(f64::from_bits).collect())
}

/// The Python that rebuilds a `--head cls` export's logits.
fn cls_python(folder: &Path, config: &ModelConfig, run: &TrainConfig) -> String {
    let dir = folder.display();
    let pick = match pooling(config) {
        "last_real" => "h[torch.arange(len(h)), x.attention_mask.sum(1) - 1]",
        _ => "h[:, 0]",
    };
    let text = match (run.is_pair(), run.task.is_regression()) {
        (false, _) => "\"The cat sat on the mat.\"",
        (true, true) => "\"A man is playing a guitar.\", \"A man plays guitar.\"",
        (true, false) => "\"The cat sat.\", \"A cat was sitting.\"",
    };
    format!(
        "import torch, transformers, safetensors.torch as st\n\
         tok = transformers.AutoTokenizer.from_pretrained(\"{dir}\"); enc = transformers.AutoModel.from_pretrained(\"{dir}\")\n\
         head = st.load_file(\"{dir}/{HEAD_FILE}\")\n\
         x = tok({text}, return_tensors=\"pt\"); h = enc(**x).last_hidden_state\n\
         logits = {pick} @ head[\"out.weight\"].T + head[\"out.bias\"]"
    )
}

/// Whether `dir` is a folder [`export`] wrote.
pub fn is_export(dir: &Path) -> bool {
    dir.join(RUN_FILE).is_file() && dir.join(MODEL_FILE).is_file()
}

/// Reads an exported folder back into a classifier on `device` (any dtype, rounded values).
pub fn load_export(dir: &Path, device: &Device) -> Result<(TrainConfig, Classifier)> {
    let config = super::config::read_config(&dir.join(RUN_FILE))?;
    let task = config.validate()?;
    let (model_config, model) = checkpoint::untrained(&config, &task, dir, device)?;
    let prefix = encoder_prefix(&model_config);
    let mut tensors = read_as_f32(&dir.join(MODEL_FILE))?;
    if config.head == HeadKind::Cls {
        for t in &mut tensors {
            t.0 = format!("{prefix}.{}", t.0);
        }
        tensors.extend(read_as_f32(&dir.join(HEAD_FILE))?);
    }
    let bytes = f32_image(&tensors, &dir.join(MODEL_FILE))?;
    let model = checkpoint::load_model_bytes(bytes, &dir.join(MODEL_FILE), model)?;
    Ok((config, model))
}
