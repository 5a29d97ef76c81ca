//! ModernBERT with transformers' `ModernBertModel` semantics, on padded inputs: token
//! embeddings and a norm, pre-norm layers (layer 0 without `attn_norm`) whose attention is
//! global every `global_attn_every_n_layers`-th layer and a sliding window of
//! `local_attention` tokens (±half) elsewhere, each kind with its rotary θ, a GeGLU MLP, and
//! `final_norm`. Its LayerNorms have no bias where `norm_bias` is false. Field names are the
//! checkpoint's after its `model.` prefix; the MLM head's `head.dense` and `head.norm`, which
//! `ModernBertForSequenceClassification` reuses, load into `head`.

#![allow(non_snake_case)]

use anyhow::{Result, bail};
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig};
use burn::tensor::{Device, Int, Tensor};
use serde::Deserialize;
use serde_json::Value;

use super::mask::{padding_bias, window_bias};
use super::rotary::{self, Rope, RopeScaling};
use crate::ops::gelu::gelu;
use crate::ops::layer_norm::LayerNorm;
use crate::ops::linear::Linear;
use crate::ops::softmax::softmax;

/// The hyper-parameters of a ModernBERT config.json, in the hub's layout
/// (`global_rope_theta`, `local_rope_theta`, `global_attn_every_n_layers`, `local_attention`)
/// or transformers 5's (`rope_parameters` per layer type, `layer_types`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ModernBertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    pub norm_eps: f64,
    #[serde(default)]
    pub norm_bias: bool,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default)]
    pub classifier_bias: bool,
    #[serde(default = "default_act")]
    pub hidden_activation: String,
    #[serde(default = "default_act")]
    pub classifier_activation: String,
    #[serde(default = "default_pooling")]
    pub classifier_pooling: String,
    #[serde(default = "default_every")]
    pub global_attn_every_n_layers: usize,
    #[serde(default = "default_window")]
    pub local_attention: usize,
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    #[serde(default)]
    pub embedding_dropout: f64,
    #[serde(default)]
    pub attention_dropout: f64,
    #[serde(default)]
    pub mlp_dropout: f64,
    #[serde(default)]
    pub classifier_dropout: f64,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    /// Every other key, read by name where it matters.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, Value>,
}

fn default_positions() -> usize {
    8192
}
fn default_eps() -> f64 {
    1e-5
}
fn default_act() -> String {
    "gelu".into()
}
fn default_pooling() -> String {
    "cls".into()
}
fn default_every() -> usize {
    3
}
fn default_window() -> usize {
    128
}
fn default_init_range() -> f64 {
    0.02
}

impl ModernBertConfig {
    /// Whether layer `i` attends globally (else within the sliding window).
    pub fn is_global(&self, i: usize) -> bool {
        match &self.layer_types {
            Some(types) => types[i] == "full_attention",
            None => i.is_multiple_of(self.global_attn_every_n_layers),
        }
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    /// The rotary embedding of global (`global`) or sliding-window layers.
    pub fn rope(&self, global: bool) -> Result<Rope> {
        let (kind, key, fallback) = if global {
            ("full_attention", "global_rope_theta", 160000.0)
        } else {
            ("sliding_attention", "local_rope_theta", 10000.0)
        };
        let parameters = self
            .rest
            .get("rope_parameters")
            .and_then(|p| p.get(kind))
            .filter(|v| !v.is_null());
        let theta = parameters
            .and_then(|p| p.get("rope_theta"))
            .or(self.rest.get(key))
            .and_then(Value::as_f64)
            .unwrap_or(fallback);
        Ok(Rope {
            theta,
            dim: self.head_dim(),
            scaling: match parameters {
                Some(p) => RopeScaling::from_json(p, self.max_position_embeddings)?,
                None => RopeScaling::None,
            },
        })
    }

    pub(crate) fn validate(&self) -> Result<()> {
        for (key, value) in [
            ("hidden_activation", &self.hidden_activation),
            ("classifier_activation", &self.classifier_activation),
        ] {
            if value != "gelu" {
                bail!("unsupported {key} \"{value}\": expected \"gelu\" (exact erf GELU)");
            }
        }
        if !["cls", "mean"].contains(&self.classifier_pooling.as_str()) {
            bail!(
                "unsupported classifier_pooling \"{}\": expected \"cls\" or \"mean\"",
                self.classifier_pooling
            );
        }
        for (name, value) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            (
                "global_attn_every_n_layers",
                self.global_attn_every_n_layers,
            ),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if value == 0 {
                bail!("{name} must be at least 1, found 0");
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) || self.head_dim() % 2 != 0 {
            bail!(
                "hidden_size {} must split into num_attention_heads {} heads of an even size",
                self.hidden_size,
                self.num_attention_heads
            );
        }
        if let Some(types) = &self.layer_types
            && types.len() != self.num_hidden_layers
        {
            bail!(
                "layer_types has {} entries, num_hidden_layers is {}",
                types.len(),
                self.num_hidden_layers
            );
        }
        self.rope(true)?;
        self.rope(false)?;
        Ok(())
    }

    fn norm(&self, device: &Device) -> LayerNorm {
        if self.norm_bias {
            LayerNorm::new(self.hidden_size, self.norm_eps, device)
        } else {
            LayerNorm::without_bias(self.hidden_size, self.norm_eps, device)
        }
    }
}

#[derive(Module, Debug)]
pub struct Embeddings {
    pub tok_embeddings: Embedding,
    pub norm: LayerNorm,
    drop: Dropout,
}

/// Self-attention over the fused projection `Wqkv`, global or within the sliding window.
#[derive(Module, Debug)]
pub struct Attention {
    pub Wqkv: Linear,
    pub Wo: Linear,
    heads: usize,
    global: bool,
    drop: Dropout,
}

impl Attention {
    fn forward(&self, x: Tensor<3>, bias: Tensor<4>, rope: &(Tensor<4>, Tensor<4>)) -> Tensor<3> {
        let [batch, seq, hidden] = x.dims();
        let d = hidden / self.heads;
        let qkv = self.Wqkv.forward(x);
        let part = |i: usize| {
            qkv.clone()
                .narrow(2, i * hidden, hidden)
                .reshape([batch, seq, self.heads, d])
                .swap_dims(1, 2)
        };
        let q = rotary::apply(part(0), &rope.0, &rope.1);
        let k = rotary::apply(part(1), &rope.0, &rope.1);
        let scores = q.matmul(k.swap_dims(2, 3)) / (d as f32).sqrt() + bias;
        let merged = self
            .drop
            .forward(softmax(scores))
            .matmul(part(2))
            .swap_dims(1, 2)
            .reshape([batch, seq, hidden]);
        self.Wo.forward(merged)
    }
}

/// GeGLU (`ModernBertMLP`): `Wi` gives the input and the gate; Wo(gelu(input) · gate).
#[derive(Module, Debug)]
pub struct Mlp {
    pub Wi: Linear,
    pub Wo: Linear,
    drop: Dropout,
}

impl Mlp {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = self.Wi.forward(x);
        let [.., width] = h.dims();
        let (input, gate) = (
            h.clone().narrow(2, 0, width / 2),
            h.narrow(2, width / 2, width / 2),
        );
        self.Wo.forward(self.drop.forward(gelu(input) * gate))
    }
}

/// One pre-norm layer (`ModernBertEncoderLayer`); layer 0 has no `attn_norm`.
#[derive(Module, Debug)]
pub struct Layer {
    pub attn_norm: Option<LayerNorm>,
    pub attn: Attention,
    pub mlp_norm: LayerNorm,
    pub mlp: Mlp,
}

impl Layer {
    fn forward(&self, x: Tensor<3>, bias: Tensor<4>, rope: &(Tensor<4>, Tensor<4>)) -> Tensor<3> {
        let normed = match &self.attn_norm {
            Some(norm) => norm.forward(x.clone()),
            None => x.clone(),
        };
        let x = x + self.attn.forward(normed, bias, rope);
        x.clone() + self.mlp.forward(self.mlp_norm.forward(x))
    }
}

/// The MLM checkpoint's `head` (`ModernBertPredictionHead`): norm(gelu(dense(x))).
#[derive(Module, Debug)]
pub struct PredictionHead {
    pub dense: Linear,
    pub norm: LayerNorm,
}

impl PredictionHead {
    pub fn new(c: &ModernBertConfig, device: &Device) -> Self {
        PredictionHead {
            dense: Linear::normal(
                c.hidden_size,
                c.hidden_size,
                c.initializer_range,
                c.classifier_bias,
                device,
            ),
            norm: c.norm(device),
        }
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.norm.forward(gelu(self.dense.forward(x)))
    }
}

/// The encoder; `head` holds the checkpoint's MLM head until a classifier takes it.
#[derive(Module, Debug)]
pub struct ModernBert {
    pub embeddings: Embeddings,
    pub layers: Vec<Layer>,
    pub final_norm: LayerNorm,
    pub head: Option<PredictionHead>,
    window: usize,
    #[module(skip)]
    global_rope: Rope,
    #[module(skip)]
    local_rope: Rope,
}

impl ModernBert {
    /// A randomly initialised encoder (weights are normally loaded afterwards); `c` validated.
    pub fn new(c: &ModernBertConfig, device: &Device) -> Result<Self> {
        let linear =
            |d_in, d_out, bias| Linear::normal(d_in, d_out, c.initializer_range, bias, device);
        let h = c.hidden_size;
        let layers = (0..c.num_hidden_layers)
            .map(|i| Layer {
                attn_norm: (i > 0).then(|| c.norm(device)),
                attn: Attention {
                    Wqkv: linear(h, 3 * h, c.attention_bias),
                    Wo: linear(h, h, c.attention_bias),
                    heads: c.num_attention_heads,
                    global: c.is_global(i),
                    drop: DropoutConfig::new(c.attention_dropout).init(),
                },
                mlp_norm: c.norm(device),
                mlp: Mlp {
                    Wi: linear(h, 2 * c.intermediate_size, c.mlp_bias),
                    Wo: linear(c.intermediate_size, h, c.mlp_bias),
                    drop: DropoutConfig::new(c.mlp_dropout).init(),
                },
            })
            .collect();
        Ok(ModernBert {
            embeddings: Embeddings {
                tok_embeddings: EmbeddingConfig::new(c.vocab_size, h).init(device),
                norm: c.norm(device),
                drop: DropoutConfig::new(c.embedding_dropout).init(),
            },
            layers,
            final_norm: c.norm(device),
            head: Some(PredictionHead::new(c, device)),
            window: c.local_attention,
            global_rope: c.rope(true)?,
            local_rope: c.rope(false)?,
        })
    }

    /// Last hidden states `[batch, seq, hidden]` of right-padded inputs; `attention_mask` is 1
    /// for tokens, 0 for padding.
    pub fn forward(&self, input_ids: Tensor<2, Int>, attention_mask: Tensor<2>) -> Tensor<3> {
        let [_, seq] = input_ids.dims();
        let device = input_ids.device();
        let global = (
            padding_bias(attention_mask),
            self.global_rope.tables(seq, &device),
        );
        let local = (
            global.0.clone() + window_bias(seq, self.window / 2, &device),
            self.local_rope.tables(seq, &device),
        );
        let e = &self.embeddings;
        let mut x = e
            .drop
            .forward(e.norm.forward(e.tok_embeddings.forward(input_ids)));
        for layer in &self.layers {
            let (bias, rope) = if layer.attn.global { &global } else { &local };
            x = layer.forward(x, bias.clone(), rope);
        }
        self.final_norm.forward(x)
    }
}
