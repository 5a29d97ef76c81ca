//! A GPT-2 decoder with Hugging Face `GPT2Model` semantics: learned positions `wpe`, pre-LayerNorm
//! blocks `h`, causal self-attention combined with the padding mask, tanh GELU, and `ln_f`.
//!
//! HF stores GPT-2's projections as `Conv1D` weights `[in, out]`, the layout Burn's `Linear`
//! uses too, so [`Conv1D`] holds them untransposed (burn-store transposes only `Linear`).

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig};
use burn::tensor::{Device, Distribution, Int, Tensor};

use super::config::Gpt2Config;
use super::mask::{causal_bias, padding_bias};
use crate::ops::layer_norm::LayerNorm;
use crate::ops::linear::linear;
use crate::ops::softmax::softmax;

/// GPT-2's tanh approximation of GELU (HF `gelu_new`).
fn gelu_new(x: Tensor<3>) -> Tensor<3> {
    let inner =
        (x.clone() + x.clone().powi_scalar(3) * 0.044715) * (2.0 / std::f32::consts::PI).sqrt();
    x * (inner.tanh().add_scalar(1.0) * 0.5)
}

/// HF `Conv1D`: `x · weight + bias` with `weight` stored `[in, out]`.
#[derive(Module, Debug)]
pub struct Conv1D {
    pub weight: Param<Tensor<2>>,
    pub bias: Param<Tensor<1>>,
}

impl Conv1D {
    fn new(d_in: usize, d_out: usize, device: &Device) -> Self {
        Conv1D {
            weight: Param::from_tensor(Tensor::random(
                [d_in, d_out],
                Distribution::Normal(0.0, 0.02),
                device,
            )),
            bias: Param::from_tensor(Tensor::zeros([d_out], device)),
        }
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        linear(x, self.weight.val(), Some(self.bias.val()))
    }
}

/// Causal multi-head self-attention (HF `GPT2Attention`): one `c_attn` for q, k and v.
#[derive(Module, Debug)]
pub struct Attention {
    pub c_attn: Conv1D,
    pub c_proj: Conv1D,
    heads: usize,
    attn_dropout: Dropout,
    resid_dropout: Dropout,
}

impl Attention {
    /// `bias`: `[batch, 1, seq, seq]`, 0 where a query may see a key, else [`MASKED_SCORE`](super::mask::MASKED_SCORE).
    fn forward(&self, x: Tensor<3>, bias: Tensor<4>) -> Tensor<3> {
        let [batch, seq, hidden] = x.dims();
        let head_dim = hidden / self.heads;
        let qkv = self.c_attn.forward(x);
        let split = |i: usize| {
            qkv.clone()
                .narrow(2, i * hidden, hidden)
                .reshape([batch, seq, self.heads, head_dim])
                .swap_dims(1, 2)
        };
        let (q, k, v) = (split(0), split(1), split(2));
        let scores = q.matmul(k.swap_dims(2, 3)) / (head_dim as f32).sqrt() + bias;
        let probs = self.attn_dropout.forward(softmax(scores));
        let merged = probs
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([batch, seq, hidden]);
        self.resid_dropout.forward(self.c_proj.forward(merged))
    }
}

/// HF `GPT2MLP`: `c_fc`, tanh GELU, `c_proj`, dropout.
#[derive(Module, Debug)]
pub struct Mlp {
    pub c_fc: Conv1D,
    pub c_proj: Conv1D,
    dropout: Dropout,
}

/// One pre-LayerNorm block (HF `GPT2Block`).
#[derive(Module, Debug)]
pub struct Block {
    pub ln_1: LayerNorm,
    pub attn: Attention,
    pub ln_2: LayerNorm,
    pub mlp: Mlp,
}

impl Block {
    fn new(c: &Gpt2Config, dropout: f64, device: &Device) -> Self {
        let ln = || LayerNorm::new(c.n_embd, c.layer_norm_epsilon, device);
        Block {
            ln_1: ln(),
            attn: Attention {
                c_attn: Conv1D::new(c.n_embd, 3 * c.n_embd, device),
                c_proj: Conv1D::new(c.n_embd, c.n_embd, device),
                heads: c.n_head,
                attn_dropout: DropoutConfig::new(dropout).init(),
                resid_dropout: DropoutConfig::new(dropout).init(),
            },
            ln_2: ln(),
            mlp: Mlp {
                c_fc: Conv1D::new(c.n_embd, c.inner_size(), device),
                c_proj: Conv1D::new(c.inner_size(), c.n_embd, device),
                dropout: DropoutConfig::new(dropout).init(),
            },
        }
    }

    fn forward(&self, x: Tensor<3>, bias: Tensor<4>) -> Tensor<3> {
        let x = x.clone() + self.attn.forward(self.ln_1.forward(x), bias);
        let h = self.mlp.c_fc.forward(self.ln_2.forward(x.clone()));
        x + self
            .mlp
            .dropout
            .forward(self.mlp.c_proj.forward(gelu_new(h)))
    }
}

/// The decoder: token and position embeddings, `n_layer` blocks, the final LayerNorm.
#[derive(Module, Debug)]
pub struct Gpt2 {
    pub wte: Embedding,
    pub wpe: Embedding,
    drop: Dropout,
    pub h: Vec<Block>,
    pub ln_f: LayerNorm,
}

impl Gpt2 {
    /// A randomly initialised decoder (weights are normally loaded afterwards).
    pub fn new(c: &Gpt2Config, dropout: f64, device: &Device) -> Self {
        Gpt2 {
            wte: EmbeddingConfig::new(c.vocab_size, c.n_embd).init(device),
            wpe: EmbeddingConfig::new(c.n_positions, c.n_embd).init(device),
            drop: DropoutConfig::new(dropout).init(),
            h: (0..c.n_layer)
                .map(|_| Block::new(c, dropout, device))
                .collect(),
            ln_f: LayerNorm::new(c.n_embd, c.layer_norm_epsilon, device),
        }
    }

    /// Last hidden states `[batch, seq, hidden]`; positions count from 0 in every row (inputs
    /// are padded on the right). `attention_mask` is 1 for tokens, 0 for padding.
    pub fn forward(&self, input_ids: Tensor<2, Int>, attention_mask: Tensor<2>) -> Tensor<3> {
        let [_, seq] = input_ids.dims();
        let device = input_ids.device();
        let positions = Tensor::<1, Int>::arange(0..seq as i64, &device).unsqueeze();
        let mut x = self
            .drop
            .forward(self.wte.forward(input_ids) + self.wpe.forward(positions));
        let bias = padding_bias(attention_mask) + causal_bias(seq, None, &device);
        for block in &self.h {
            x = block.forward(x, bias.clone());
        }
        self.ln_f.forward(x)
    }
}
