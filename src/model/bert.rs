//! A BERT encoder with Hugging Face `BertModel` semantics (RoBERTa reuses its layers).
//!
//! Field names follow the HF checkpoint names so that `encoder.layer.3.intermediate.dense.weight`
//! in a `model.safetensors` lands on `encoder.layer[3].intermediate.dense.weight` here. Two
//! spellings differ because Rust forbids them: HF `LayerNorm` is `layer_norm` and HF
//! `attention.self` is `attention.self_attn` (see [`super::load`], which maps them).

use burn::module::Module;
use burn::nn::{
    self, Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, LinearConfig,
};
use burn::tensor::activation::tanh;
use burn::tensor::{Device, Int, Tensor};

use super::config::BertConfig;
use super::mask::padding_bias;
use crate::ops::attention::attention;
use crate::ops::gelu::gelu;
use crate::ops::layer_norm::LayerNorm;
use crate::ops::linear::Linear;
use crate::ops::softmax::softmax;

/// A layer's Linear as HF BERT draws one: N(0, 0.02²).
fn linear(d_in: usize, d_out: usize, device: &Device) -> Linear {
    Linear::normal(d_in, d_out, 0.02, true, device)
}

#[derive(Module, Debug)]
pub struct Embeddings {
    pub word_embeddings: Embedding,
    pub position_embeddings: Embedding,
    pub token_type_embeddings: Embedding,
    pub layer_norm: LayerNorm,
    dropout: Dropout,
}

impl Embeddings {
    pub(crate) fn new(c: &BertConfig, dropout: f64, device: &Device) -> Self {
        let emb = |n| EmbeddingConfig::new(n, c.hidden_size).init(device);
        Embeddings {
            word_embeddings: emb(c.vocab_size),
            position_embeddings: emb(c.max_position_embeddings),
            token_type_embeddings: emb(c.type_vocab_size),
            layer_norm: LayerNorm::new(c.hidden_size, c.layer_norm_eps, device),
            dropout: DropoutConfig::new(dropout).init(),
        }
    }

    fn forward(&self, input_ids: Tensor<2, Int>, token_type_ids: Tensor<2, Int>) -> Tensor<3> {
        let [_, seq] = input_ids.dims();
        let positions = Tensor::<1, Int>::arange(0..seq as i64, &input_ids.device()).unsqueeze();
        self.forward_at(input_ids, token_type_ids, positions)
    }

    /// The embeddings with explicit position ids (`[batch or 1, seq]`).
    pub(crate) fn forward_at(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        positions: Tensor<2, Int>,
    ) -> Tensor<3> {
        let x = self.word_embeddings.forward(input_ids)
            + self.position_embeddings.forward(positions)
            + self.token_type_embeddings.forward(token_type_ids);
        self.dropout.forward(self.layer_norm.forward(x))
    }
}

/// Multi-head scaled dot-product self-attention (HF `BertSelfAttention`).
#[derive(Module, Debug)]
pub struct SelfAttention {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    heads: usize,
    dropout: Dropout,
}

impl SelfAttention {
    /// What the positions of `queries` (`[batch, q, hidden]`) read from all positions of `x`
    /// (`[batch, seq, hidden]`). `mask_bias`: `[batch, 1, 1, seq]`, 0 for real tokens and
    /// [`MASKED_SCORE`](super::mask::MASKED_SCORE) for padding.
    fn forward(&self, queries: Tensor<3>, x: Tensor<3>, mask_bias: Tensor<4>) -> Tensor<3> {
        if self.dropout.prob == 0.0 {
            let [batch, _, _, len] = mask_bias.dims();
            let (q, k, v) = (
                self.query.forward(queries),
                self.key.forward(x.clone()),
                self.value.forward(x),
            );
            return attention(q, k, v, mask_bias.reshape([batch, len]), self.heads);
        }
        // The fused op has no dropout on the probabilities.
        let [batch, q_len, hidden] = queries.dims();
        let head_dim = hidden / self.heads;
        let split = |t: Tensor<3>| {
            let [_, len, _] = t.dims();
            t.reshape([batch, len, self.heads, head_dim])
                .swap_dims(1, 2)
        };
        let q = split(self.query.forward(queries));
        let k = split(self.key.forward(x.clone()));
        let v = split(self.value.forward(x));
        let scores = q.matmul(k.swap_dims(2, 3)) / (head_dim as f32).sqrt() + mask_bias;
        let probs = self.dropout.forward(softmax(scores));
        probs
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([batch, q_len, hidden])
    }
}

/// Dense + dropout + residual + LayerNorm (HF `BertSelfOutput` and `BertOutput`).
#[derive(Module, Debug)]
pub struct ResidualOutput {
    pub dense: Linear,
    pub layer_norm: LayerNorm,
    dropout: Dropout,
}

impl ResidualOutput {
    fn new(d_in: usize, c: &BertConfig, dropout: f64, device: &Device) -> Self {
        ResidualOutput {
            dense: linear(d_in, c.hidden_size, device),
            layer_norm: LayerNorm::new(c.hidden_size, c.layer_norm_eps, device),
            dropout: DropoutConfig::new(dropout).init(),
        }
    }

    fn forward(&self, x: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        let x = self.dropout.forward(self.dense.forward(x));
        self.layer_norm.forward(x + residual)
    }
}

#[derive(Module, Debug)]
pub struct Attention {
    pub self_attn: SelfAttention,
    pub output: ResidualOutput,
}

#[derive(Module, Debug)]
pub struct Intermediate {
    pub dense: Linear,
}

/// One post-LayerNorm transformer layer (HF `BertLayer`).
#[derive(Module, Debug)]
pub struct Layer {
    pub attention: Attention,
    pub intermediate: Intermediate,
    pub output: ResidualOutput,
}

impl Layer {
    fn new(c: &BertConfig, dropout: f64, device: &Device) -> Self {
        Layer {
            attention: Attention {
                self_attn: SelfAttention {
                    query: linear(c.hidden_size, c.hidden_size, device),
                    key: linear(c.hidden_size, c.hidden_size, device),
                    value: linear(c.hidden_size, c.hidden_size, device),
                    heads: c.num_attention_heads,
                    dropout: DropoutConfig::new(dropout).init(),
                },
                output: ResidualOutput::new(c.hidden_size, c, dropout, device),
            },
            intermediate: Intermediate {
                dense: linear(c.hidden_size, c.intermediate_size, device),
            },
            output: ResidualOutput::new(c.intermediate_size, c, dropout, device),
        }
    }

    fn forward(&self, x: Tensor<3>, mask_bias: Tensor<4>) -> Tensor<3> {
        self.forward_at(x.clone(), x, mask_bias)
    }

    /// The layer's output at the positions of `queries` only (a prefix of `x`'s): every later
    /// step is per position.
    fn forward_at(&self, queries: Tensor<3>, x: Tensor<3>, mask_bias: Tensor<4>) -> Tensor<3> {
        let attn = self
            .attention
            .self_attn
            .forward(queries.clone(), x, mask_bias);
        let x = self.attention.output.forward(attn, queries);
        let h = gelu(self.intermediate.dense.forward(x.clone()));
        self.output.forward(h, x)
    }
}

/// The stack of `num_hidden_layers` layers (HF `BertEncoder`).
#[derive(Module, Debug)]
pub struct Encoder {
    pub layer: Vec<Layer>,
}

impl Encoder {
    pub(crate) fn new(config: &BertConfig, dropout: f64, device: &Device) -> Self {
        Encoder {
            layer: (0..config.num_hidden_layers)
                .map(|_| Layer::new(config, dropout, device))
                .collect(),
        }
    }

    pub(crate) fn forward(&self, mut x: Tensor<3>, attention_mask: Tensor<2>) -> Tensor<3> {
        let mask_bias = padding_bias(attention_mask);
        for layer in &self.layer {
            x = layer.forward(x, mask_bias.clone());
        }
        x
    }

    /// The last hidden state at position 0 only, `[batch, hidden]`: the last layer computes
    /// nothing else (the other positions' queries, attention outputs and feed-forward), which
    /// a head reading the first token never uses.
    pub(crate) fn forward_first(&self, mut x: Tensor<3>, attention_mask: Tensor<2>) -> Tensor<2> {
        let mask_bias = padding_bias(attention_mask);
        let Some((last, rest)) = self.layer.split_last() else {
            return super::pooling::first_token(x);
        };
        for layer in rest {
            x = layer.forward(x, mask_bias.clone());
        }
        super::pooling::first_token(last.forward_at(x.clone().narrow(1, 0, 1), x, mask_bias))
    }
}

/// Dense + tanh on the \[CLS\] vector (HF `BertPooler`), used by the `--head hf` classifier
/// (one small product per sequence, left to Burn's `Linear`).
#[derive(Module, Debug)]
pub struct Pooler {
    pub dense: nn::Linear,
}

impl Pooler {
    /// A pooler drawn as HF initialises one: N(0, `std`²) weights, zero bias.
    pub fn new(hidden: usize, std: f64, device: &Device) -> Self {
        Pooler {
            dense: LinearConfig::new(hidden, hidden)
                .with_initializer(Initializer::Normal { mean: 0.0, std })
                .init(device),
        }
    }

    pub fn forward(&self, first: Tensor<2>) -> Tensor<2> {
        tanh(self.dense.forward(first))
    }
}

/// The encoder: embeddings, `num_hidden_layers` layers and, when the checkpoint has one and the
/// head uses it, the pooler.
#[derive(Module, Debug)]
pub struct Bert {
    pub embeddings: Embeddings,
    pub encoder: Encoder,
    pub pooler: Option<Pooler>,
}

impl Bert {
    /// A randomly initialised encoder with a pooler (weights are normally loaded afterwards).
    pub fn new(config: &BertConfig, dropout: f64, device: &Device) -> Self {
        Bert {
            embeddings: Embeddings::new(config, dropout, device),
            encoder: Encoder::new(config, dropout, device),
            pooler: Some(Pooler::new(
                config.hidden_size,
                config.initializer_range,
                device,
            )),
        }
    }

    /// Last hidden states `[batch, seq, hidden]`. `attention_mask` is 1 for tokens, 0 for padding.
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        attention_mask: Tensor<2>,
    ) -> Tensor<3> {
        let x = self.embeddings.forward(input_ids, token_type_ids);
        self.encoder.forward(x, attention_mask)
    }

    /// The \[CLS\] (first token) vector of each sequence, `[batch, hidden]`: the last hidden
    /// state at position 0, computed alone in the last layer.
    pub fn cls(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        attention_mask: Tensor<2>,
    ) -> Tensor<2> {
        let x = self.embeddings.forward(input_ids, token_type_ids);
        self.encoder.forward_first(x, attention_mask)
    }
}
