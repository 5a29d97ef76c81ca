//! Llama-family decoders with transformers' `LlamaModel` semantics, which `mistral`, `qwen2` and
//! `qwen3` share with small differences: RMSNorm before attention and MLP, rotary positions,
//! grouped-query attention (`num_key_value_heads`), a SwiGLU MLP, a causal mask with the
//! padding mask (and a sliding window where the config sets one), and a final `norm`. Qwen2's
//! q/k/v projections have biases; Qwen3 normalises each head's queries and keys (`q_norm`,
//! `k_norm`). Field names are the checkpoint's after its `model.` prefix.

use anyhow::{Result, bail};
use burn::module::{Module, Param};
use burn::nn::{Embedding, EmbeddingConfig, Initializer};
use burn::tensor::activation::silu;
use burn::tensor::{Device, Int, Tensor};
use serde::Deserialize;
use serde_json::Value;

use super::mask::{causal_bias, padding_bias};
use super::rotary::{self, Rope, RopeScaling};
use crate::ops::linear::Linear;
use crate::ops::softmax::softmax;

/// The hyper-parameters of a Llama-family config.json, as the hub writes them (`rope_theta`
/// and `rope_scaling`) or as transformers 5 does (`rope_parameters`, `layer_types`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LlamaConfig {
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default)]
    pub attention_bias: Option<bool>,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default)]
    pub use_sliding_window: bool,
    #[serde(default)]
    pub max_window_layers: Option<usize>,
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<Value>,
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    /// Every other key, read by name where it matters ([`LlamaConfig::validate`]).
    #[serde(flatten)]
    pub rest: serde_json::Map<String, Value>,
}

fn default_act() -> String {
    "silu".into()
}
fn default_positions() -> usize {
    2048
}
fn default_eps() -> f64 {
    1e-6
}
fn default_init_range() -> f64 {
    0.02
}

/// Keys of other families or versions that change the maths, with the value that does not.
const REFUSED_KEYS: [(&str, Option<f64>); 7] = [
    ("partial_rotary_factor", Some(1.0)),
    ("attn_logit_softcapping", None),
    ("final_logit_softcapping", None),
    ("no_rope_layers", None),
    ("query_pre_attn_scalar", None),
    ("num_experts", None),
    ("num_local_experts", None),
];

impl LlamaConfig {
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Qwen2's q/k/v projections always have biases; elsewhere `attention_bias` says.
    fn qkv_bias(&self) -> bool {
        self.model_type == "qwen2" || self.attention_bias.unwrap_or(false)
    }

    fn o_bias(&self) -> bool {
        self.model_type != "qwen2" && self.attention_bias.unwrap_or(false)
    }

    /// The id that pads a batch: `pad_token_id`, else the (first) end-of-sequence id.
    pub fn pad_id(&self) -> Option<u32> {
        let eos = match &self.eos_token_id {
            Some(Value::Array(ids)) => ids.first().and_then(Value::as_u64),
            Some(id) => id.as_u64(),
            None => None,
        };
        self.pad_token_id.or(eos.map(|id| id as u32))
    }

    /// The sliding window the config sets for layers that use one (Mistral's default is
    /// 4096 when the key is absent; Qwen's needs `use_sliding_window`).
    fn sliding_window(&self) -> Option<usize> {
        let set = match self.rest.get("sliding_window") {
            None if self.model_type == "mistral" => Some(4096),
            value => value.and_then(Value::as_u64).map(|w| w as usize),
        };
        match self.model_type.as_str() {
            "qwen2" | "qwen3" if !self.use_sliding_window => None,
            _ => set,
        }
    }

    /// Layer `i`'s window, or None for full causal attention.
    pub fn window(&self, i: usize) -> Option<usize> {
        let window = self.sliding_window()?;
        let sliding = match &self.layer_types {
            Some(types) => types[i] == "sliding_attention",
            None => match self.model_type.as_str() {
                "qwen2" | "qwen3" => i >= self.max_window_layers.unwrap_or(28),
                "mistral" => true,
                _ => false,
            },
        };
        sliding.then_some(window)
    }

    /// The rotary embedding: `rope_parameters` (transformers 5) or `rope_theta` + `rope_scaling`.
    pub fn rope(&self) -> Result<Rope> {
        let parameters = self.rest.get("rope_parameters").filter(|v| !v.is_null());
        let scaling = parameters.or(self.rest.get("rope_scaling").filter(|v| !v.is_null()));
        let theta = parameters
            .and_then(|p| p.get("rope_theta"))
            .or(self.rest.get("rope_theta"))
            .and_then(Value::as_f64)
            .unwrap_or(10000.0);
        Ok(Rope {
            theta,
            dim: self.head_dim(),
            scaling: match scaling {
                Some(s) => RopeScaling::from_json(s, self.max_position_embeddings)?,
                None => RopeScaling::None,
            },
        })
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.hidden_act != "silu" {
            bail!(
                "unsupported hidden_act \"{}\": expected \"silu\" (SwiGLU)",
                self.hidden_act
            );
        }
        for (key, harmless) in REFUSED_KEYS {
            match self.rest.get(key) {
                None | Some(Value::Null) => {}
                Some(v) if harmless.is_some() && v.as_f64() == harmless => {}
                Some(v) => bail!("unsupported key \"{key}\": {v} (it changes the model's maths)"),
            }
        }
        for (name, value) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.kv_heads()),
            ("head_dim", self.head_dim()),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if value == 0 {
                bail!("{name} must be at least 1, found 0");
            }
        }
        if !self.num_attention_heads.is_multiple_of(self.kv_heads()) {
            bail!(
                "num_key_value_heads {} does not divide num_attention_heads {}",
                self.kv_heads(),
                self.num_attention_heads
            );
        }
        if !self.head_dim().is_multiple_of(2) {
            bail!(
                "head_dim {} must be even (rotary embeddings)",
                self.head_dim()
            );
        }
        if let Some(types) = &self.layer_types {
            if types.len() != self.num_hidden_layers {
                bail!(
                    "layer_types has {} entries, num_hidden_layers is {}",
                    types.len(),
                    self.num_hidden_layers
                );
            }
            if let Some(t) = types
                .iter()
                .find(|t| !["full_attention", "sliding_attention"].contains(&t.as_str()))
            {
                bail!(
                    "unsupported layer type \"{t}\" (expected full_attention or sliding_attention)"
                );
            }
        }
        self.rope()?;
        Ok(())
    }
}

/// transformers' `LlamaRMSNorm`: x / √(mean(x²) + ε) · γ over the last dimension.
#[derive(Module, Debug)]
pub struct RmsNorm {
    pub gamma: Param<Tensor<1>>,
    epsilon: f64,
}

impl RmsNorm {
    pub fn new(d: usize, epsilon: f64, device: &Device) -> Self {
        RmsNorm {
            gamma: Initializer::Ones.init([d], device),
            epsilon,
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let rms = x
            .clone()
            .powi_scalar(2)
            .mean_dim(D - 1)
            .add_scalar(self.epsilon)
            .sqrt();
        x / rms * self.gamma.val().unsqueeze()
    }
}

/// Grouped-query self-attention (`LlamaAttention`, `Qwen3Attention`'s q/k norms).
#[derive(Module, Debug)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    pub q_norm: Option<RmsNorm>,
    pub k_norm: Option<RmsNorm>,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn new(c: &LlamaConfig, device: &Device) -> Self {
        let (hidden, d) = (c.hidden_size, c.head_dim());
        let (q_out, kv_out) = (c.num_attention_heads * d, c.kv_heads() * d);
        let linear =
            |d_in, d_out, bias| Linear::normal(d_in, d_out, c.initializer_range, bias, device);
        let qk_norm = (c.model_type == "qwen3").then(|| RmsNorm::new(d, c.rms_norm_eps, device));
        Attention {
            q_proj: linear(hidden, q_out, c.qkv_bias()),
            k_proj: linear(hidden, kv_out, c.qkv_bias()),
            v_proj: linear(hidden, kv_out, c.qkv_bias()),
            o_proj: linear(q_out, hidden, c.o_bias()),
            q_norm: qk_norm.clone(),
            k_norm: qk_norm,
            heads: c.num_attention_heads,
            kv_heads: c.kv_heads(),
            head_dim: d,
        }
    }

    /// `bias`: `[batch, 1, seq, seq]`, 0 where a query may read a key, else [`MASKED_SCORE`](super::mask::MASKED_SCORE).
    fn forward(&self, x: Tensor<3>, bias: Tensor<4>, rope: &(Tensor<4>, Tensor<4>)) -> Tensor<3> {
        let [batch, seq, _] = x.dims();
        let heads = |t: Tensor<3>, n: usize, norm: &Option<RmsNorm>| {
            let t = t.reshape([batch, seq, n, self.head_dim]);
            let t = match norm {
                Some(norm) => norm.forward(t),
                None => t,
            };
            t.swap_dims(1, 2)
        };
        let q = heads(self.q_proj.forward(x.clone()), self.heads, &self.q_norm);
        let k = heads(self.k_proj.forward(x.clone()), self.kv_heads, &self.k_norm);
        let v = heads(self.v_proj.forward(x), self.kv_heads, &None);
        let (q, k) = (
            rotary::apply(q, &rope.0, &rope.1),
            rotary::apply(k, &rope.0, &rope.1),
        );
        let (k, v) = (self.repeat_kv(k), self.repeat_kv(v));
        let scores = q.matmul(k.swap_dims(2, 3)) / (self.head_dim as f32).sqrt() + bias;
        let merged = softmax(scores).matmul(v).swap_dims(1, 2).reshape([
            batch,
            seq,
            self.heads * self.head_dim,
        ]);
        self.o_proj.forward(merged)
    }

    /// `[batch, kv_heads, seq, d]` → `[batch, heads, seq, d]`, each KV head serving its group.
    fn repeat_kv(&self, t: Tensor<4>) -> Tensor<4> {
        let group = self.heads / self.kv_heads;
        if group == 1 {
            return t;
        }
        let [batch, kv, seq, d] = t.dims();
        t.unsqueeze_dim::<5>(2)
            .expand([batch, kv, group, seq, d])
            .reshape([batch, kv * group, seq, d])
    }
}

/// SwiGLU (`LlamaMLP`): down(silu(gate(x)) · up(x)).
#[derive(Module, Debug)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

/// One decoder layer (`LlamaDecoderLayer`), with its attention window (None: full causal).
#[derive(Module, Debug)]
pub struct DecoderLayer {
    pub input_layernorm: RmsNorm,
    pub self_attn: Attention,
    pub post_attention_layernorm: RmsNorm,
    pub mlp: Mlp,
    window: Option<usize>,
}

impl DecoderLayer {
    fn forward(&self, x: Tensor<3>, bias: Tensor<4>, rope: &(Tensor<4>, Tensor<4>)) -> Tensor<3> {
        let x = x.clone()
            + self
                .self_attn
                .forward(self.input_layernorm.forward(x), bias, rope);
        let h = self.post_attention_layernorm.forward(x.clone());
        let mlp = &self.mlp;
        let gated = silu(mlp.gate_proj.forward(h.clone())) * mlp.up_proj.forward(h);
        x + mlp.down_proj.forward(gated)
    }
}

/// The decoder: `embed_tokens`, the layers, the final `norm`.
#[derive(Module, Debug)]
pub struct Llama {
    pub embed_tokens: Embedding,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
    #[module(skip)]
    rope: Rope,
    pad_id: Option<usize>,
}

impl Llama {
    /// A randomly initialised decoder (weights are normally loaded afterwards); `c` validated.
    pub fn new(c: &LlamaConfig, device: &Device) -> Result<Self> {
        let linear =
            |d_in, d_out| Linear::normal(d_in, d_out, c.initializer_range, c.mlp_bias, device);
        let layers = (0..c.num_hidden_layers)
            .map(|i| DecoderLayer {
                input_layernorm: RmsNorm::new(c.hidden_size, c.rms_norm_eps, device),
                self_attn: Attention::new(c, device),
                post_attention_layernorm: RmsNorm::new(c.hidden_size, c.rms_norm_eps, device),
                mlp: Mlp {
                    gate_proj: linear(c.hidden_size, c.intermediate_size),
                    up_proj: linear(c.hidden_size, c.intermediate_size),
                    down_proj: linear(c.intermediate_size, c.hidden_size),
                },
                window: c.window(i),
            })
            .collect();
        Ok(Llama {
            embed_tokens: EmbeddingConfig::new(c.vocab_size, c.hidden_size).init(device),
            layers,
            norm: RmsNorm::new(c.hidden_size, c.rms_norm_eps, device),
            rope: c.rope()?,
            pad_id: c.pad_id().map(|id| id as usize),
        })
    }

    /// The id that pads its batches (`pad_token_id`, else end of sequence), if any.
    pub fn pad_id(&self) -> Option<usize> {
        self.pad_id
    }

    /// Last hidden states `[batch, seq, hidden]`; positions count from 0 in every row (inputs
    /// are padded on the right). `attention_mask` is 1 for tokens, 0 for padding.
    pub fn forward(&self, input_ids: Tensor<2, Int>, attention_mask: Tensor<2>) -> Tensor<3> {
        let [_, seq] = input_ids.dims();
        let device = input_ids.device();
        let rope = self.rope.tables(seq, &device);
        let padding = padding_bias(attention_mask);
        let mut biases: Vec<(Option<usize>, Tensor<4>)> = Vec::new();
        let mut x = self.embed_tokens.forward(input_ids);
        for layer in &self.layers {
            let bias = match biases.iter().find(|(w, _)| *w == layer.window) {
                Some((_, bias)) => bias.clone(),
                None => {
                    let bias = padding.clone() + causal_bias(seq, layer.window, &device);
                    biases.push((layer.window, bias.clone()));
                    bias
                }
            };
            x = layer.forward(x, bias, &rope);
        }
        self.norm.forward(x)
    }
}
