//! The pretrained encoders (BERT, RoBERTa, GPT-2, the Llama family, ModernBERT, chosen by
//! `model_type`), the classifier heads on top of them, weight loading and model resolution.

pub mod bert;
pub mod classifier;
pub mod config;
pub mod encoder;
pub mod gpt2;
pub mod hf_names;
#[cfg(feature = "native")]
pub mod hub;
pub mod llama;
pub mod load;
pub mod mask;
pub mod modernbert;
pub mod pooling;
pub mod pretrained;
pub mod roberta;
pub mod rotary;
pub mod trainable;

#[cfg(not(feature = "native"))]
use std::path::{Path, PathBuf};

#[cfg(not(feature = "native"))]
use anyhow::Result;

pub use bert::Bert;
pub use classifier::{Classifier, Head, HeadKind};
pub use config::{BertConfig, Gpt2Config, LlamaConfig, ModelConfig, ModernBertConfig};
pub use encoder::Encoder;
pub use gpt2::Gpt2;
#[cfg(feature = "native")]
pub use hub::resolve_model;
pub use pooling::{first_token, last_real_token};
pub use pretrained::{Pretrained, TokenStates, cls_vectors, to_host, token_states, tokenizer};

/// Without the hub (the browser build), `--model` must name a local folder.
#[cfg(not(feature = "native"))]
pub fn resolve_model(spec: &str) -> Result<PathBuf> {
    anyhow::ensure!(
        Path::new(spec).is_dir(),
        "--model {spec}: no such folder (this build cannot reach the hub)"
    );
    Ok(PathBuf::from(spec))
}
pub use roberta::Roberta;
