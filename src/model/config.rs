//! The subset of a Hugging Face `config.json` that defines a BERT-family encoder.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// Architecture hyper-parameters, named as in HF `BertConfig`.
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

impl BertConfig {
    /// Reads and validates `config.json`; every error names the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read model config", path.display()))?;
        let config: BertConfig = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}:{}: expected a BERT config.json, found invalid JSON or a missing field ({e})",
                path.display(),
                e.line()
            )
        })?;
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(config)
    }

    /// Checks that the model is an architecture pac-wgpu implements, with sane sizes.
    pub fn validate(&self) -> Result<()> {
        if self.model_type != "bert" {
            bail!(
                "unsupported architecture: model_type \"{}\" (pac-wgpu implements BERT-family encoders, model_type \"bert\")",
                self.model_type
            );
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
        }
    }
}
