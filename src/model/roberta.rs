//! A RoBERTa encoder with Hugging Face `RobertaModel` semantics (no pooler, as
//! `RobertaForSequenceClassification` builds it), and HF's `RobertaClassificationHead`.
//!
//! The layers are BERT's; only the position ids differ: HF numbers the real tokens from
//! `pad_token_id + 1` (the cumulative sum of the non-pad mask, offset by the pad id) and gives
//! every pad token the position `pad_token_id`. Token types are always 0 (`type_vocab_size` 1).

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::activation::tanh;
use burn::tensor::{Device, Int, Tensor};

use super::bert::{Embeddings, Encoder};
use super::config::BertConfig;

#[derive(Module, Debug)]
pub struct Roberta {
    pub embeddings: Embeddings,
    pub encoder: Encoder,
    padding_idx: usize,
}

impl Roberta {
    /// A randomly initialised encoder (weights are normally loaded afterwards).
    pub fn new(config: &BertConfig, dropout: f64, device: &Device) -> Self {
        Roberta {
            embeddings: Embeddings::new(config, dropout, device),
            encoder: Encoder::new(config, dropout, device),
            padding_idx: config.pad_token_id,
        }
    }

    /// Last hidden states `[batch, seq, hidden]`. `attention_mask` is 1 for tokens, 0 for padding.
    pub fn forward(&self, input_ids: Tensor<2, Int>, attention_mask: Tensor<2>) -> Tensor<3> {
        self.encoder.forward(self.embed(input_ids), attention_mask)
    }

    /// The `<s>` (first token) vector of each sequence, `[batch, hidden]`, computed alone in the
    /// last layer.
    pub fn first(&self, input_ids: Tensor<2, Int>, attention_mask: Tensor<2>) -> Tensor<2> {
        self.encoder
            .forward_first(self.embed(input_ids), attention_mask)
    }

    /// The embeddings, positions counted over real tokens from `padding_idx + 1` (HF's rule).
    fn embed(&self, input_ids: Tensor<2, Int>) -> Tensor<3> {
        let pad = self.padding_idx as i64;
        let not_pad = input_ids.clone().not_equal_elem(pad).int();
        let positions = not_pad.clone().cumsum(1) * not_pad + pad;
        let types = input_ids.zeros_like();
        self.embeddings.forward_at(input_ids, types, positions)
    }
}

/// HF `RobertaClassificationHead`: dropout, dense + tanh, dropout, `out_proj`, on the `<s>` vector.
#[derive(Module, Debug)]
pub struct ClassificationHead {
    pub dense: Linear,
    pub out_proj: Linear,
    dropout: Dropout,
}

impl ClassificationHead {
    pub fn new(dense: Linear, out_proj: Linear, dropout: f64) -> Self {
        ClassificationHead {
            dense,
            out_proj,
            dropout: DropoutConfig::new(dropout).init(),
        }
    }

    pub fn forward(&self, first: Tensor<2>) -> Tensor<2> {
        let x = tanh(self.dense.forward(self.dropout.forward(first)));
        self.out_proj.forward(self.dropout.forward(x))
    }
}
