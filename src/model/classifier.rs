//! Encoder + classification head: `--head cls` (the paper's linear layer `out`) or `--head hf`
//! (the head of HF's `*ForSequenceClassification` for the family, with HF's tensor names).
//!
//! Head weights are drawn on the host from SplitMix64(seed), the same on every device:
//! `cls` as PyTorch's `nn.Linear` default (weight and bias U(±1/√fan_in)), `hf` as transformers
//! initialises (weights N(0, initializer_range²), zero bias).

use std::str::FromStr;

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::bert::Pooler;
use super::config::ModelConfig;
use super::encoder::Encoder;
use super::modernbert::PredictionHead;
use super::pooling::{first_token, last_non_pad_token, last_real_token, mean_of_real_tokens};
use super::roberta::ClassificationHead;
use crate::util::rng::SplitMix64;

/// Separates the head-initialisation stream from other uses of the run seed (ASCII "head").
const HEAD_STREAM: u64 = 0x6865_6164;

/// Which head a run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadKind {
    /// The paper's: one linear layer on the first token (the last real token for GPT-2).
    #[default]
    Cls,
    /// HF's `*ForSequenceClassification` head of the family.
    Hf,
}

impl HeadKind {
    pub fn name(self) -> &'static str {
        match self {
            HeadKind::Cls => "cls",
            HeadKind::Hf => "hf",
        }
    }
}

impl FromStr for HeadKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cls" => Ok(HeadKind::Cls),
            "hf" => Ok(HeadKind::Hf),
            _ => Err(format!("expected cls or hf, found {s:?}")),
        }
    }
}

/// A classification (or, with one output, regression) head.
// One head per model: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Head {
    /// `--head cls`: `out` on [`Encoder::summary`].
    Cls(Linear),
    /// HF `BertForSequenceClassification`: `classifier` on the pooler's output.
    Bert(Linear),
    /// HF `RobertaForSequenceClassification`: `classifier.dense`, tanh, `classifier.out_proj`.
    Roberta(ClassificationHead),
    /// HF `GPT2ForSequenceClassification`: `score`, without bias, at the last real token.
    Gpt2(Linear),
    /// HF `LlamaForSequenceClassification` (and Mistral's, Qwen2's, Qwen3's): `score`, without
    /// bias, at the last token that is not the pad token.
    Decoder(Linear),
    /// HF `ModernBertForSequenceClassification`.
    ModernBert(ModernBertHead),
}

/// `ModernBertForSequenceClassification`'s head: the \[CLS\] vector or the mean of the real
/// tokens' (`classifier_pooling`), the MLM checkpoint's `head`, then `classifier`.
#[derive(Module, Debug)]
pub struct ModernBertHead {
    pub head: PredictionHead,
    pub classifier: Linear,
    mean_pooling: bool,
    drop: Dropout,
}

impl Head {
    /// Where the head's tensors go in HF's layout: (module path prefix, HF prefix) pairs,
    /// applied in order (ModernBERT's head splits into HF's top-level `head.` and `classifier.`).
    pub fn hf_renames(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            Head::Cls(_) => &[("head.", "out.")],
            Head::Bert(_) | Head::Roberta(_) => &[("head.", "classifier.")],
            Head::Gpt2(_) | Head::Decoder(_) => &[("head.", "score.")],
            Head::ModernBert(_) => &[("head.head.", "head."), ("head.classifier.", "classifier.")],
        }
    }

    pub fn kind(&self) -> HeadKind {
        match self {
            Head::Cls(_) => HeadKind::Cls,
            _ => HeadKind::Hf,
        }
    }
}

/// Encoder + head.
#[derive(Module, Debug)]
pub struct Classifier {
    pub encoder: Encoder,
    pub head: Head,
    dropout: Dropout,
}

impl Classifier {
    /// A classifier with a freshly drawn `kind` head of `num_labels` outputs. A BERT `hf` head
    /// keeps the checkpoint's pooler, or draws one when it has none; a `cls` head drops it.
    pub fn new(
        encoder: Encoder,
        config: &ModelConfig,
        kind: HeadKind,
        num_labels: usize,
        dropout: f64,
        seed: u64,
        device: &Device,
    ) -> Self {
        let mut rng = SplitMix64::new(seed ^ HEAD_STREAM);
        let hidden = config.hidden_size();
        let std = config.initializer_range();
        let mut normal = |d_out, bias| normal_linear(&mut rng, hidden, d_out, std, bias, device);
        let (encoder, head) = match (kind, encoder) {
            (HeadKind::Cls, Encoder::Bert(mut bert)) => {
                bert.pooler = None;
                (
                    Encoder::Bert(bert),
                    Head::Cls(uniform_linear(&mut rng, hidden, num_labels, device)),
                )
            }
            (HeadKind::Cls, Encoder::ModernBert(mut m)) => {
                m.head = None;
                (
                    Encoder::ModernBert(m),
                    Head::Cls(uniform_linear(&mut rng, hidden, num_labels, device)),
                )
            }
            (HeadKind::Cls, encoder) => (
                encoder,
                Head::Cls(uniform_linear(&mut rng, hidden, num_labels, device)),
            ),
            (HeadKind::Hf, Encoder::Bert(mut bert)) => {
                if bert.pooler.is_none() {
                    bert.pooler = Some(Pooler {
                        dense: normal(hidden, true),
                    });
                }
                (Encoder::Bert(bert), Head::Bert(normal(num_labels, true)))
            }
            (HeadKind::Hf, encoder @ Encoder::Roberta(_)) => {
                let dense = normal(hidden, true);
                let out_proj = normal(num_labels, true);
                (
                    encoder,
                    Head::Roberta(ClassificationHead::new(dense, out_proj, dropout)),
                )
            }
            (HeadKind::Hf, encoder @ Encoder::Gpt2(_)) => {
                (encoder, Head::Gpt2(normal(num_labels, false)))
            }
            (HeadKind::Hf, encoder @ Encoder::Llama(_)) => {
                (encoder, Head::Decoder(normal(num_labels, false)))
            }
            (HeadKind::Hf, Encoder::ModernBert(mut m)) => {
                let ModelConfig::ModernBert(c) = config else {
                    unreachable!("a ModernBERT encoder has a ModernBERT config")
                };
                let head = m
                    .head
                    .take()
                    .unwrap_or_else(|| PredictionHead::new(c, device));
                let classifier = normal(num_labels, true);
                let head = ModernBertHead {
                    head,
                    classifier,
                    mean_pooling: c.classifier_pooling == "mean",
                    drop: DropoutConfig::new(c.classifier_dropout).init(),
                };
                (Encoder::ModernBert(m), Head::ModernBert(head))
            }
        };
        Classifier {
            encoder,
            head,
            dropout: DropoutConfig::new(dropout).init(),
        }
    }

    /// Logits `[batch, num_labels]`.
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        attention_mask: Tensor<2>,
    ) -> Tensor<2> {
        match (&self.head, &self.encoder) {
            (Head::Decoder(score), Encoder::Llama(m)) => {
                let hidden = m.forward(input_ids.clone(), attention_mask.clone());
                let last = match m.pad_id() {
                    Some(pad) => last_non_pad_token(hidden, input_ids, pad),
                    None => last_real_token(hidden, attention_mask),
                };
                return score.forward(last);
            }
            (Head::ModernBert(head), Encoder::ModernBert(m)) => {
                let hidden = m.forward(input_ids, attention_mask.clone());
                let pooled = if head.mean_pooling {
                    mean_of_real_tokens(hidden, attention_mask)
                } else {
                    first_token(hidden)
                };
                let pooled = head.drop.forward(head.head.forward(pooled));
                return head.classifier.forward(pooled);
            }
            _ => {}
        }
        // Every other head reads one vector per sequence (GPT-2's score head too: HF's pooled
        // logits).
        let summary = self
            .encoder
            .summary(input_ids, token_type_ids, attention_mask);
        match (&self.head, &self.encoder) {
            (Head::Cls(out), _) => out.forward(self.dropout.forward(summary)),
            (Head::Bert(classifier), Encoder::Bert(bert)) => {
                let pooler = bert
                    .pooler
                    .as_ref()
                    .expect("Classifier::new gives BERT's hf head a pooler");
                let pooled = pooler.forward(summary);
                classifier.forward(self.dropout.forward(pooled))
            }
            (Head::Roberta(head), _) => head.forward(summary),
            (Head::Gpt2(score), _) => score.forward(summary),
            (Head::Bert(_) | Head::Decoder(_) | Head::ModernBert(_), _) => {
                unreachable!("Classifier::new pairs each family's hf head with its encoder")
            }
        }
    }

    /// The HF name of a module path (enum variants left out), e.g. `encoder.encoder.layer.0.
    /// attention.self_attn.query.weight` → `bert.encoder.layer.0.attention.self.query.weight`.
    pub fn hf_name(&self, path: &str) -> String {
        let head = self
            .head
            .hf_renames()
            .iter()
            .find_map(|(ours, hf)| path.strip_prefix(ours).map(|rest| format!("{hf}{rest}")));
        let renamed = match path.strip_prefix("encoder.") {
            Some(rest) => format!("{}.{rest}", self.encoder.hf_prefix()),
            None => head.unwrap_or_else(|| path.to_string()),
        };
        super::hf_names::hf_name(&renamed)
    }
}

/// A `d_in → d_out` layer with weights N(0, std²) and a zero bias (or none).
fn normal_linear(
    rng: &mut SplitMix64,
    d_in: usize,
    d_out: usize,
    std: f64,
    bias: bool,
    device: &Device,
) -> Linear {
    let weights: Vec<f32> = (0..d_in * d_out)
        .map(|_| (rng.normal() * std) as f32)
        .collect();
    Linear {
        weight: Param::from_tensor(Tensor::from_data(
            TensorData::new(weights, [d_in, d_out]),
            device,
        )),
        bias: bias.then(|| Param::from_tensor(Tensor::zeros([d_out], device))),
    }
}

/// A `d_in → d_out` layer as PyTorch's `nn.Linear` starts: weight and bias U(±1/√d_in).
fn uniform_linear(rng: &mut SplitMix64, d_in: usize, d_out: usize, device: &Device) -> Linear {
    let bound = 1.0 / (d_in as f64).sqrt();
    let mut draw = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32)
            .collect()
    };
    let weights = draw(d_in * d_out);
    let bias = draw(d_out);
    Linear {
        weight: Param::from_tensor(Tensor::from_data(
            TensorData::new(weights, [d_in, d_out]),
            device,
        )),
        bias: Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(bias, [d_out]),
            device,
        ))),
    }
}
