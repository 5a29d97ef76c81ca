//! A pretrained encoder loaded from an HF folder, and reading its hidden states back.

use std::path::{Path, PathBuf};

use anyhow::Result;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor, TensorData};

use super::classifier::Classifier;
use super::config::ModelConfig;
use super::encoder::Encoder;
use super::load;
use super::pooling::{first_token, last_real_token};
use crate::util::tokenize::TextTokenizer;

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
        values.push(crate::util::device::read_f32(t, "the model's weights").await?);
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
    /// Loads `folder/config.json` and the folder's checkpoint onto `device`; extra tensors in
    /// the checkpoint are reported on stderr.
    pub fn load(folder: &Path, dropout: f64, device: &Device) -> Result<Self> {
        let config = ModelConfig::from_file(&folder.join("config.json"))?;
        Self::from_config(folder, config, dropout, device)
    }

    /// Loads the folder's checkpoint onto `device` as a model of `config` (its config.json,
    /// read already).
    pub fn from_config(
        folder: &Path,
        config: ModelConfig,
        dropout: f64,
        device: &Device,
    ) -> Result<Self> {
        let (encoder, warnings) = load::load_folder(folder, &config, dropout, device)?;
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

/// The tokenizer of a model folder, truncating to `max_length` and padding as `config` says
/// (decoders without a pad token pad with their end of sequence).
pub fn tokenizer(folder: &Path, config: &ModelConfig, max_length: usize) -> Result<TextTokenizer> {
    Ok(TextTokenizer::from_model_dir(folder, max_length)?.with_pad_id(config.pad_id()))
}

/// The final hidden states at the first and at the last real token of every row of a batch.
pub struct TokenStates {
    pub first: Vec<Vec<f32>>,
    pub last: Vec<Vec<f32>>,
}

/// [`TokenStates`] of `batch`, read back to the host.
pub async fn token_states(
    encoder: &Encoder,
    batch: &crate::util::tokenize::PaddedBatch,
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
    batch: &crate::util::tokenize::PaddedBatch,
    device: &Device,
) -> Result<Vec<Vec<f32>>> {
    let (ids, types, mask) = batch.to_tensors(device);
    rows(first_token(encoder.forward(ids, types, mask))).await
}

async fn rows(t: Tensor<2>) -> Result<Vec<Vec<f32>>> {
    let [_, width] = t.dims();
    let flat = crate::util::device::read_f32(t, "hidden states").await?;
    Ok(flat.chunks(width).map(<[f32]>::to_vec).collect())
}
