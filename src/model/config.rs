//! The subset of a Hugging Face `config.json` that defines an encoder: [`ModelConfig`] picks the
//! family from `model_type` and holds its hyper-parameters.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::util::text::escape_controls;

pub use super::llama::LlamaConfig;
pub use super::modernbert::ModernBertConfig;

/// An encoder's family and hyper-parameters, from `model_type` in config.json.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelConfig {
    Bert(BertConfig),
    Roberta(BertConfig),
    Gpt2(Gpt2Config),
    /// `llama`, `mistral`, `qwen2` and `qwen3`.
    Llama(LlamaConfig),
    ModernBert(ModernBertConfig),
}

/// The `model_type`s of the Llama family.
const LLAMA_TYPES: [&str; 4] = ["llama", "mistral", "qwen2", "qwen3"];

impl ModelConfig {
    /// Reads `config.json` and validates it for its family; every error names the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read model config", path.display()))?;
        Self::from_text(path, &text)
    }

    /// [`ModelConfig::from_file`] on config.json's text; `path` names it in errors.
    pub fn from_text(path: &Path, text: &str) -> Result<Self> {
        #[derive(Deserialize)]
        struct Family {
            model_type: Option<String>,
        }
        let family: Family = parse(path, text, "model")?;
        let config = match family.model_type.as_deref().unwrap_or("bert") {
            "bert" => ModelConfig::Bert(parse(path, text, "BERT")?),
            "roberta" => ModelConfig::Roberta(parse(path, text, "RoBERTa")?),
            "gpt2" => ModelConfig::Gpt2(parse(path, text, "GPT-2")?),
            kind if LLAMA_TYPES.contains(&kind) => ModelConfig::Llama(parse(path, text, kind)?),
            "modernbert" => ModelConfig::ModernBert(parse(path, text, "ModernBERT")?),
            other => bail!("{}: {}", path.display(), unsupported(other)),
        };
        let checked = match &config {
            ModelConfig::Bert(c) | ModelConfig::Roberta(c) => c.validate(),
            ModelConfig::Gpt2(c) => c.validate(),
            ModelConfig::Llama(c) => c.validate(),
            ModelConfig::ModernBert(c) => c.validate(),
        };
        checked.map_err(|e| {
            anyhow::anyhow!("{}: {}", path.display(), escape_controls(&e.to_string()))
        })?;
        Ok(config)
    }

    /// The width of the hidden states.
    pub fn hidden_size(&self) -> usize {
        match self {
            ModelConfig::Bert(c) | ModelConfig::Roberta(c) => c.hidden_size,
            ModelConfig::Gpt2(c) => c.n_embd,
            ModelConfig::Llama(c) => c.hidden_size,
            ModelConfig::ModernBert(c) => c.hidden_size,
        }
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            ModelConfig::Bert(c) | ModelConfig::Roberta(c) => c.vocab_size,
            ModelConfig::Gpt2(c) => c.vocab_size,
            ModelConfig::Llama(c) => c.vocab_size,
            ModelConfig::ModernBert(c) => c.vocab_size,
        }
    }

    /// The std of HF's normal initialiser for new weights.
    pub fn initializer_range(&self) -> f64 {
        match self {
            ModelConfig::Bert(c) | ModelConfig::Roberta(c) => c.initializer_range,
            ModelConfig::Gpt2(c) => c.initializer_range,
            ModelConfig::Llama(c) => c.initializer_range,
            ModelConfig::ModernBert(c) => c.initializer_range,
        }
    }

    /// `model_type` as config.json spells it.
    pub fn model_type(&self) -> &'static str {
        match self {
            ModelConfig::Bert(_) => "bert",
            ModelConfig::Roberta(_) => "roberta",
            ModelConfig::Gpt2(_) => "gpt2",
            ModelConfig::Llama(c) => LLAMA_TYPES
                .into_iter()
                .find(|t| *t == c.model_type)
                .unwrap_or("llama"),
            ModelConfig::ModernBert(_) => "modernbert",
        }
    }

    /// The id that pads a batch where config.json says (decoders without a pad token pad with
    /// their end-of-sequence token); None leaves it to the tokenizer.
    pub fn pad_id(&self) -> Option<u32> {
        match self {
            ModelConfig::Llama(c) => c.pad_id(),
            ModelConfig::ModernBert(c) => c.pad_token_id,
            _ => None,
        }
    }

    /// The longest input the position table holds (RoBERTa's positions start at pad id + 1).
    pub fn max_tokens(&self) -> usize {
        match self {
            ModelConfig::Bert(c) => c.max_position_embeddings,
            ModelConfig::Roberta(c) => c.max_position_embeddings.saturating_sub(c.pad_token_id + 1),
            ModelConfig::Gpt2(c) => c.n_positions,
            ModelConfig::Llama(c) => c.max_position_embeddings,
            ModelConfig::ModernBert(c) => c.max_position_embeddings,
        }
    }

    /// Checks that inputs of `max_length` tokens fit the model's position table; `path` (its
    /// config.json) names it in the error. The one check of `--max-length` against a model.
    pub fn check_max_length(&self, path: &Path, max_length: usize) -> Result<()> {
        let positions = match self {
            ModelConfig::Bert(_) | ModelConfig::Llama(_) | ModelConfig::ModernBert(_) => {
                format!("max_position_embeddings {}", self.max_tokens())
            }
            ModelConfig::Gpt2(c) => format!("n_positions {}", c.n_positions),
            ModelConfig::Roberta(c) => format!(
                "max_position_embeddings {} (positions start at pad_token_id + 1 = {})",
                c.max_position_embeddings,
                c.pad_token_id + 1
            ),
        };
        if max_length > self.max_tokens() {
            let most = self.max_tokens();
            bail!(
                "{}: --max-length {max_length} is more than the {most} tokens that {positions} allows; pass --max-length {most} or less",
                path.display()
            );
        }
        Ok(())
    }
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path, text: &str, what: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| {
        anyhow::anyhow!(
            "{}:{}: expected a {what} config.json, found invalid JSON or a missing field ({})",
            path.display(),
            e.line(),
            escape_controls(&e.to_string())
        )
    })
}

fn unsupported(model_type: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "unsupported architecture: model_type \"{}\" (pac-wgpu implements bert, roberta, gpt2, llama, mistral, qwen2, qwen3 and modernbert)",
        escape_controls(model_type)
    )
}

/// GPT-2's hyper-parameters, named as in HF `GPT2Config`.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
pub struct Gpt2Config {
    pub vocab_size: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    #[serde(default = "default_gpt2_positions")]
    pub n_positions: usize,
    /// The MLP width; HF's `None` means 4 · n_embd.
    #[serde(default)]
    pub n_inner: Option<usize>,
    #[serde(default = "default_gpt2_eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "default_gpt2_act")]
    pub activation_function: String,
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    #[serde(default = "default_true")]
    pub scale_attn_weights: bool,
    #[serde(default)]
    pub scale_attn_by_inverse_layer_idx: bool,
    #[serde(default)]
    pub reorder_and_upcast_attn: bool,
}

fn default_gpt2_positions() -> usize {
    1024
}
fn default_gpt2_eps() -> f64 {
    1e-5
}
fn default_gpt2_act() -> String {
    "gelu_new".into()
}
fn default_true() -> bool {
    true
}

impl Gpt2Config {
    pub fn inner_size(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }

    fn validate(&self) -> Result<()> {
        if self.activation_function != "gelu_new" {
            bail!(
                "unsupported activation_function \"{}\": expected \"gelu_new\" (GPT-2's tanh GELU)",
                self.activation_function
            );
        }
        if !self.scale_attn_weights || self.scale_attn_by_inverse_layer_idx {
            bail!(
                "unsupported attention scaling: expected scale_attn_weights true and scale_attn_by_inverse_layer_idx false"
            );
        }
        for (name, value) in [
            ("vocab_size", self.vocab_size),
            ("n_embd", self.n_embd),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
            ("n_positions", self.n_positions),
        ] {
            if value == 0 {
                bail!("{name} must be at least 1, found 0");
            }
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            bail!(
                "n_embd {} is not divisible by n_head {}",
                self.n_embd,
                self.n_head
            );
        }
        Ok(())
    }
}

/// Architecture hyper-parameters, named as in HF `BertConfig` (RoBERTa's config is the same).
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
pub struct BertConfig {
    #[serde(default = "default_model_type")]
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_max_position")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
    #[serde(default)]
    pub pad_token_id: usize,
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
}

fn default_model_type() -> String {
    "bert".into()
}
fn default_max_position() -> usize {
    512
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}
fn default_position_type() -> String {
    "absolute".into()
}
fn default_init_range() -> f64 {
    0.02
}

impl BertConfig {
    /// Checks that the model is an architecture pac-wgpu implements, with sane sizes.
    pub fn validate(&self) -> Result<()> {
        if self.model_type != "bert" && self.model_type != "roberta" {
            return Err(unsupported(&self.model_type));
        }
        if self.hidden_act != "gelu" {
            bail!(
                "unsupported hidden_act \"{}\": expected \"gelu\" (exact erf GELU)",
                self.hidden_act
            );
        }
        if self.position_embedding_type != "absolute" {
            bail!(
                "unsupported position_embedding_type \"{}\": expected \"absolute\"",
                self.position_embedding_type
            );
        }
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ];
        for (name, value) in positive {
            if value == 0 {
                bail!("{name} must be at least 1, found 0");
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            bail!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size,
                self.num_attention_heads
            );
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps < 1.0) {
            bail!(
                "layer_norm_eps must be in (0, 1), found {}",
                self.layer_norm_eps
            );
        }
        Ok(())
    }

    /// A bert-base-sized configuration (110 M parameters), for benchmarks with random weights.
    pub fn bert_base() -> Self {
        Self::sized(30522, 768, 12, 12, 3072)
    }

    /// A configuration of the given sizes with HF's defaults elsewhere.
    pub fn sized(vocab: usize, hidden: usize, layers: usize, heads: usize, ffn: usize) -> Self {
        BertConfig {
            model_type: default_model_type(),
            vocab_size: vocab,
            hidden_size: hidden,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            intermediate_size: ffn,
            max_position_embeddings: default_max_position(),
            type_vocab_size: default_type_vocab(),
            layer_norm_eps: default_eps(),
            hidden_act: default_act(),
            position_embedding_type: default_position_type(),
            pad_token_id: 0,
            initializer_range: default_init_range(),
        }
    }
}
