//! The BERT-family model: configuration, modules, weight loading and model resolution.

pub mod bert;
pub mod config;
pub mod hub;
pub mod load;
pub mod trainable;

use std::path::{Path, PathBuf};

use anyhow::Result;
use burn::tensor::Device;

pub use bert::{Bert, Classifier};
pub use config::BertConfig;
pub use hub::resolve_model;

/// A pretrained encoder loaded from a local HF folder.
pub struct Pretrained {
    pub folder: PathBuf,
    pub config: BertConfig,
    pub bert: Bert,
}

impl Pretrained {
    /// Loads `folder/config.json` and `folder/model.safetensors` onto `device`; extra tensors in
    /// the checkpoint are reported on stderr.
    pub fn load(folder: &Path, dropout: f64, device: &Device) -> Result<Self> {
        let config = BertConfig::from_file(&folder.join("config.json"))?;
        let (bert, warnings) =
            load::load_bert(&folder.join("model.safetensors"), &config, dropout, device)?;
        for warning in warnings {
            eprintln!("warning: {warning}");
        }
        Ok(Pretrained {
            folder: folder.to_path_buf(),
            config,
            bert,
        })
    }
}

/// The \[CLS\] vector of every row of `batch`, read back to the host.
pub fn cls_vectors(
    bert: &Bert,
    batch: &crate::tokenize::PaddedBatch,
    device: &Device,
) -> Result<Vec<Vec<f32>>> {
    let (ids, types, mask) = batch.to_tensors(device);
    let cls = bert.cls(ids, types, mask);
    let [rows, width] = cls.dims();
    let flat = cls
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("cannot read the [CLS] vectors back: {e:?}"))?;
    debug_assert_eq!(flat.len(), rows * width);
    Ok(flat.chunks(width).map(<[f32]>::to_vec).collect())
}
