//! A LoRA run as a PEFT adapter folder (`adapter_config.json`, `adapter_model.safetensors`),
//! which `peft.PeftModel.from_pretrained` loads onto the base model.
//!
//! PEFT keeps `lora_A` as `nn.Linear(in, r)` (weight `[r, in]`) and `lora_B` as `nn.Linear(r,
//! out)` (weight `[out, r]`), with the update α/r·B·A, so our factors (A `[in, r]`, B `[r, out]`,
//! update α/r·A·B on `x·W`) are transposed. Saved names drop PEFT's adapter name:
//! `base_model.model.<module>.lora_A.weight`, and the head (`modules_to_save`) under its own
//! names, `base_model.model.classifier.weight`.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::config::TrainConfig;
use crate::model::HeadKind;
use crate::util::files::TensorFile;

pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// `adapter_config.json`: the fields `PeftModel.from_pretrained` reads for LoRA.
#[derive(Debug, Serialize)]
pub struct AdapterConfig {
    pub peft_type: &'static str,
    /// `SEQ_CLS` for `--head hf` runs; `FEATURE_EXTRACTION` (the encoder alone) for `--head cls`.
    pub task_type: &'static str,
    pub r: usize,
    pub lora_alpha: f64,
    pub target_modules: Vec<String>,
    /// The head's modules, saved whole beside the adapters.
    pub modules_to_save: Option<Vec<String>>,
    pub base_model_name_or_path: String,
    pub lora_dropout: f64,
    pub bias: &'static str,
    /// GPT-2's `Conv1D` stores its weights `[in, out]`.
    pub fan_in_fan_out: bool,
    pub use_rslora: bool,
    pub inference_mode: bool,
}

impl AdapterConfig {
    /// The config of `run`'s adapters; `head` holds the head's tensor names as the
    /// `*ForSequenceClassification` class names them (`--head hf` runs).
    pub fn new(run: &TrainConfig, model_type: &str, head: &[String], prefix: &str) -> Self {
        let modules_to_save = (run.head == HeadKind::Hf).then(|| {
            let mut modules: Vec<String> = head
                .iter()
                .map(|n| n.strip_prefix(&format!("{prefix}.")).unwrap_or(n))
                .filter_map(|n| n.split('.').next().map(String::from))
                .collect();
            modules.dedup();
            modules
        });
        AdapterConfig {
            peft_type: "LORA",
            task_type: match run.head {
                HeadKind::Hf => "SEQ_CLS",
                HeadKind::Cls => "FEATURE_EXTRACTION",
            },
            r: run.lora_rank,
            lora_alpha: run.lora_alpha,
            target_modules: run
                .lora_target_list()
                .into_iter()
                .map(String::from)
                .collect(),
            modules_to_save,
            base_model_name_or_path: run.model.clone(),
            lora_dropout: 0.0,
            bias: "none",
            fan_in_fan_out: model_type == "gpt2",
            use_rslora: false,
            inference_mode: true,
        }
    }
}

/// Whether a checkpoint tensor is a LoRA factor (`<weight>.lora.a` or `.lora.b`).
pub fn is_adapter(name: &str) -> bool {
    name.ends_with(".lora.a") || name.ends_with(".lora.b")
}

/// The tensors `names` of `file` under PEFT's names and layout: the factors transposed and
/// renamed, the others renamed only; `strip` is removed from the front of every name (the
/// encoder's prefix when the base model is the bare encoder).
pub fn renamed(file: &TensorFile, names: &[String], strip: Option<&str>) -> TensorFile {
    let mut out = TensorFile {
        path: file.path.clone(),
        tensors: HashMap::new(),
        shapes: HashMap::new(),
        meta: HashMap::new(),
    };
    for checkpoint_name in names {
        let (shape, values) = (
            &file.shapes[checkpoint_name],
            &file.tensors[checkpoint_name],
        );
        let (shape, values) = match (is_adapter(checkpoint_name), &shape[..]) {
            (true, &[rows, cols]) => (vec![cols, rows], transpose(values, rows, cols)),
            _ => (shape.clone(), values.clone()),
        };
        let peft = name(checkpoint_name, strip);
        out.shapes.insert(peft.clone(), shape);
        out.tensors.insert(peft, values);
    }
    out
}

/// PEFT's name of checkpoint tensor `name`, `strip` removed from its front:
/// `<module>.weight.lora.a` becomes `base_model.model.<module>.lora_A.weight`.
pub fn name(name: &str, strip: Option<&str>) -> String {
    let short = strip
        .and_then(|s| name.strip_prefix(&format!("{s}.")))
        .unwrap_or(name);
    let short = match short.rsplit_once(".weight.lora.") {
        Some((module, "a")) => format!("{module}.lora_A.weight"),
        Some((module, _)) => format!("{module}.lora_B.weight"),
        None => short.to_string(),
    };
    format!("base_model.model.{short}")
}

fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = values[r * cols + c];
        }
    }
    t
}

/// Writes `adapter_config.json` into `dir`.
pub fn write_config(dir: &Path, config: &AdapterConfig) -> Result<()> {
    std::fs::write(dir.join(CONFIG_FILE), serde_json::to_string_pretty(config)?)?;
    Ok(())
}
