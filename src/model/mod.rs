//! The pretrained encoders (BERT, RoBERTa, GPT-2, chosen by `model_type`), the classifier heads
//! on top of them, weight loading and model resolution.

pub mod attention;
pub mod bert;
pub mod classifier;
pub mod config;
pub mod gelu;
pub mod gpt2;
#[cfg(feature = "native")]
pub mod hub;
pub mod layer_norm;
pub mod linear;
pub mod load;
pub mod roberta;
pub mod softmax;
pub mod trainable;

use std::path::{Path, PathBuf};

use anyhow::Result;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Int, Tensor, TensorData};

pub use bert::Bert;
pub use classifier::{Classifier, Head, HeadKind};
pub use config::{BertConfig, Gpt2Config, ModelConfig};
pub use gpt2::Gpt2;
#[cfg(feature = "native")]
pub use hub::resolve_model;

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

/// A pretrained encoder of one of the families; its variant's module holds the HF names that
/// follow the family's prefix (`bert.`, `roberta.`, `transformer.`).
#[derive(Module, Debug)]
pub enum Encoder {
    Bert(Bert),
    Roberta(Roberta),
    Gpt2(Gpt2),
}

impl Encoder {
    /// A randomly initialised encoder of `config`'s family (weights are normally loaded after).
    pub fn new(config: &ModelConfig, dropout: f64, device: &Device) -> Self {
        match config {
            ModelConfig::Bert(c) => Encoder::Bert(Bert::new(c, dropout, device)),
            ModelConfig::Roberta(c) => Encoder::Roberta(Roberta::new(c, dropout, device)),
            ModelConfig::Gpt2(c) => Encoder::Gpt2(Gpt2::new(c, dropout, device)),
        }
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
        }
    }

    /// The prefix of the encoder's tensors in an HF task model.
    pub fn hf_prefix(&self) -> &'static str {
        match self {
            Encoder::Bert(_) => "bert",
            Encoder::Roberta(_) => "roberta",
            Encoder::Gpt2(_) => "transformer",
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
        }
    }

    /// The vector the heads read: the first token's (BERT's \[CLS\], RoBERTa's `<s>`, its last
    /// layer computing that position alone), or for GPT-2, which reads left to right, the last
    /// real token's.
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
        }
    }
}

/// Whether a module path (enum variants left out) names an embedding table.
pub(crate) fn is_embedding(path: &str) -> bool {
    ["encoder.embeddings.", "encoder.wte.", "encoder.wpe."]
        .iter()
        .any(|p| path.starts_with(p))
}

/// The hidden state at position 0 of each row, `[batch, hidden]`.
pub fn first_token(hidden: Tensor<3>) -> Tensor<2> {
    let [batch, _, width] = hidden.dims();
    hidden.narrow(1, 0, 1).reshape([batch, width])
}

/// The hidden state at each row's last real token (inputs padded on the right), `[batch, hidden]`.
pub fn last_real_token(hidden: Tensor<3>, attention_mask: Tensor<2>) -> Tensor<2> {
    let [batch, seq, width] = hidden.dims();
    let last = attention_mask
        .sum_dim(1)
        .sub_scalar(1.0)
        .expand([batch, seq]);
    let positions = Tensor::<1, Int>::arange(0..seq as i64, &hidden.device())
        .float()
        .unsqueeze::<2>()
        .expand([batch, seq]);
    let pick = positions.equal(last).float().unsqueeze_dim::<3>(2);
    (hidden * pick).sum_dim(1).reshape([batch, width])
}

/// `model` with every float tensor copied to `host` (the CPU device) through reads that await the
/// device: Burn's store reads synchronously, which a browser's GPU cannot.
pub async fn to_host(model: Classifier, host: &Device) -> Result<Classifier> {
    struct Collect(Vec<Tensor<1>>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let value = param.val();
            let n = value.shape().num_elements();
            self.0.push(value.reshape([n]));
        }
    }
    struct Put<'a> {
        values: std::vec::IntoIter<Vec<f32>>,
        host: &'a Device,
    }
    impl ModuleMapper for Put<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let values = self.values.next().expect("one value list per float tensor");
            param.map(|t| {
                let dims = t.dims();
                let n = values.len();
                Tensor::<1>::from_data(TensorData::new(values, [n]), self.host).reshape(dims)
            })
        }
    }
    let mut collect = Collect(Vec::new());
    model.visit(&mut collect);
    let mut values = Vec::with_capacity(collect.0.len());
    for t in collect.0 {
        values.push(crate::device::read_f32(t, "the model's weights").await?);
    }
    Ok(model.map(&mut Put {
        values: values.into_iter(),
        host,
    }))
}

/// A pretrained encoder loaded from a local HF folder.
pub struct Pretrained {
    pub folder: PathBuf,
    pub config: ModelConfig,
    pub encoder: Encoder,
}

impl Pretrained {
    /// Loads `folder/config.json` and `folder/model.safetensors` onto `device`; extra tensors in
    /// the checkpoint are reported on stderr.
    pub fn load(folder: &Path, dropout: f64, device: &Device) -> Result<Self> {
        let config = ModelConfig::from_file(&folder.join("config.json"))?;
        let (encoder, warnings) =
            load::load_encoder(&folder.join("model.safetensors"), &config, dropout, device)?;
        for warning in warnings {
            eprintln!("warning: {warning}");
        }
        Ok(Pretrained {
            folder: folder.to_path_buf(),
            config,
            encoder,
        })
    }
}

/// Checks, before any weight is read, that inputs of `max_length` tokens fit the position table
/// of the model in `folder`.
pub fn check_max_length(folder: &Path, max_length: usize) -> Result<()> {
    let path = folder.join("config.json");
    ModelConfig::from_file(&path)?.check_max_length(&path, max_length)
}

/// The final hidden states at the first and at the last real token of every row of a batch.
pub struct TokenStates {
    pub first: Vec<Vec<f32>>,
    pub last: Vec<Vec<f32>>,
}

/// [`TokenStates`] of `batch`, read back to the host.
pub async fn token_states(
    encoder: &Encoder,
    batch: &crate::tokenize::PaddedBatch,
    device: &Device,
) -> Result<TokenStates> {
    let (ids, types, mask) = batch.to_tensors(device);
    let hidden = encoder.forward(ids, types, mask.clone());
    Ok(TokenStates {
        first: rows(first_token(hidden.clone())).await?,
        last: rows(last_real_token(hidden, mask)).await?,
    })
}

/// The \[CLS\] (first token) vector of every row of `batch`, read back to the host.
pub async fn cls_vectors(
    encoder: &Encoder,
    batch: &crate::tokenize::PaddedBatch,
    device: &Device,
) -> Result<Vec<Vec<f32>>> {
    let (ids, types, mask) = batch.to_tensors(device);
    rows(first_token(encoder.forward(ids, types, mask))).await
}

async fn rows(t: Tensor<2>) -> Result<Vec<Vec<f32>>> {
    let [_, width] = t.dims();
    let flat = crate::device::read_f32(t, "hidden states").await?;
    Ok(flat.chunks(width).map(<[f32]>::to_vec).collect())
}
