//! The pretrained encoder of any family, as one type.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};

use super::bert::Bert;
use super::config::ModelConfig;
use super::gpt2::Gpt2;
use super::llama::Llama;
use super::modernbert::ModernBert;
use super::pooling::{first_token, last_real_token};
use super::roberta::Roberta;

/// A pretrained encoder of one of the families; its variant's module holds the HF names that
/// follow the family's prefix (`bert.`, `roberta.`, `transformer.`, `model.`).
#[derive(Module, Debug)]
pub enum Encoder {
    Bert(Bert),
    Roberta(Roberta),
    Gpt2(Gpt2),
    Llama(Llama),
    ModernBert(ModernBert),
}

impl Encoder {
    /// A randomly initialised encoder of `config`'s family (weights are normally loaded after).
    /// `dropout` applies to the BERT family and GPT-2; the newer families take theirs from the
    /// config, as transformers does.
    pub fn new(config: &ModelConfig, dropout: f64, device: &Device) -> anyhow::Result<Self> {
        Ok(match config {
            ModelConfig::Bert(c) => Encoder::Bert(Bert::new(c, dropout, device)),
            ModelConfig::Roberta(c) => Encoder::Roberta(Roberta::new(c, dropout, device)),
            ModelConfig::Gpt2(c) => Encoder::Gpt2(Gpt2::new(c, dropout, device)),
            ModelConfig::Llama(c) => Encoder::Llama(Llama::new(c, device)?),
            ModelConfig::ModernBert(c) => Encoder::ModernBert(ModernBert::new(c, device)?),
        })
    }

    /// Last hidden states `[batch, seq, hidden]`. `attention_mask` is 1 for tokens, 0 for padding;
    /// token types matter to BERT only.
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        attention_mask: Tensor<2>,
    ) -> Tensor<3> {
        match self {
            Encoder::Bert(m) => m.forward(input_ids, token_type_ids, attention_mask),
            Encoder::Roberta(m) => m.forward(input_ids, attention_mask),
            Encoder::Gpt2(m) => m.forward(input_ids, attention_mask),
            Encoder::Llama(m) => m.forward(input_ids, attention_mask),
            Encoder::ModernBert(m) => m.forward(input_ids, attention_mask),
        }
    }

    /// The layers LoRA adapts unless `--lora-targets` says otherwise, by the family's own names:
    /// the attention's query and value projections (ModernBERT's fused `Wqkv`, GPT-2's `c_attn`).
    pub fn default_lora_targets(&self) -> &'static str {
        match self {
            Encoder::Bert(_) | Encoder::Roberta(_) => "query,value",
            Encoder::Gpt2(_) => "c_attn",
            Encoder::Llama(_) => "q_proj,v_proj",
            Encoder::ModernBert(_) => "Wqkv",
        }
    }

    /// The prefix of the encoder's tensors in an HF task model.
    pub fn hf_prefix(&self) -> &'static str {
        match self {
            Encoder::Bert(_) => "bert",
            Encoder::Roberta(_) => "roberta",
            Encoder::Gpt2(_) => "transformer",
            Encoder::Llama(_) | Encoder::ModernBert(_) => "model",
        }
    }

    /// The encoder with its embedding tables (and BERT's embedding LayerNorm) frozen.
    pub fn freeze_embeddings(self) -> Self {
        match self {
            Encoder::Bert(mut m) => {
                m.embeddings = m.embeddings.no_grad();
                Encoder::Bert(m)
            }
            Encoder::Roberta(mut m) => {
                m.embeddings = m.embeddings.no_grad();
                Encoder::Roberta(m)
            }
            Encoder::Gpt2(mut m) => {
                m.wte = m.wte.no_grad();
                m.wpe = m.wpe.no_grad();
                Encoder::Gpt2(m)
            }
            Encoder::Llama(mut m) => {
                m.embed_tokens = m.embed_tokens.no_grad();
                Encoder::Llama(m)
            }
            Encoder::ModernBert(mut m) => {
                m.embeddings = m.embeddings.no_grad();
                Encoder::ModernBert(m)
            }
        }
    }

    /// The vector the heads read: the first token's (BERT's \[CLS\], RoBERTa's `<s>`, its last
    /// layer computing that position alone; ModernBERT's \[CLS\]), or for the decoders, which
    /// read left to right, the last real token's.
    pub fn summary(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        attention_mask: Tensor<2>,
    ) -> Tensor<2> {
        match self {
            Encoder::Bert(m) => m.cls(input_ids, token_type_ids, attention_mask),
            Encoder::Roberta(m) => m.first(input_ids, attention_mask),
            Encoder::Gpt2(m) => {
                last_real_token(m.forward(input_ids, attention_mask.clone()), attention_mask)
            }
            Encoder::Llama(m) => {
                last_real_token(m.forward(input_ids, attention_mask.clone()), attention_mask)
            }
            Encoder::ModernBert(m) => first_token(m.forward(input_ids, attention_mask)),
        }
    }
}

/// Whether a module path (enum variants left out) names an embedding table.
pub(crate) fn is_embedding(path: &str) -> bool {
    [
        "encoder.embeddings.",
        "encoder.wte.",
        "encoder.wpe.",
        "encoder.embed_tokens.",
    ]
    .iter()
    .any(|p| path.starts_with(p))
}
