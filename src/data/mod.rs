//! Tokenized splits, loss targets, per-example losses and predictions; [`batch`]: the order
//! examples go through the model in.

pub mod batch;

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};

use anyhow::Result;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::glue::{Dataset, Label, Task};
use crate::model::Classifier;
use crate::util::tokenize::{Encoded, PaddedBatch, TextTokenizer};
use batch::LengthOrder;

/// A micro-batch: inputs and their targets.
pub type Micro = (PaddedBatch, Targets);

/// One batch of `len` examples, split into micro-batches whose gradients add up (`--grad-accum`).
pub struct Batch {
    pub micro: Vec<Micro>,
    pub len: usize,
}

/// A split ready for the model: token ids and gold labels, in example order.
#[derive(Default)]
pub struct Prepared {
    pub encoded: Vec<Encoded>,
    pub labels: Vec<Label>,
    /// The `[rows, tokens]` of every batch [`Prepared::device_batch`] made.
    pub shapes: Mutex<BTreeSet<[usize; 2]>>,
}

impl Prepared {
    pub fn new(
        dataset: &Dataset,
        rows: Option<&[usize]>,
        tokenizer: &TextTokenizer,
    ) -> Result<Self> {
        let all: Vec<usize> = (0..dataset.examples.len()).collect();
        let rows = rows.unwrap_or(&all);
        let mut encoded = Vec::with_capacity(rows.len());
        let mut labels = Vec::with_capacity(rows.len());
        for &i in rows {
            let e = &dataset.examples[i];
            encoded.push(tokenizer.encode(&e.text_a, e.text_b.as_deref())?);
            labels.push(e.label);
        }
        Ok(Prepared {
            encoded,
            labels,
            shapes: Mutex::default(),
        })
    }

    pub fn len(&self) -> usize {
        self.encoded.len()
    }

    pub fn is_empty(&self) -> bool {
        self.encoded.is_empty()
    }

    /// The micro-batches of a training step on `rows`: cut by length, at most `max_rows` rows
    /// each (`--grad-accum` sets it), each a list of rows.
    pub fn micro_rows(&self, rows: &[usize], max_rows: usize, device: &Device) -> Vec<Vec<usize>> {
        let lengths: Vec<usize> = rows
            .iter()
            .map(|&i| self.encoded[i].input_ids.len())
            .collect();
        LengthOrder::by_length(&lengths)
            .batches(max_rows, pass_cost(device))
            .into_iter()
            .map(|positions| positions.iter().map(|&k| rows[k]).collect())
            .collect()
    }

    /// A training step's batch of `rows`, in micro-batches of [`Prepared::micro_rows`]; `pad`
    /// pads them.
    pub fn training_batch(
        &self,
        rows: &[usize],
        max_rows: usize,
        pad: u32,
        device: &Device,
    ) -> Batch {
        let micro = self
            .micro_rows(rows, max_rows, device)
            .into_iter()
            .map(|r| (self.device_batch(&r, pad, device), self.targets(&r, device)))
            .collect();
        Batch {
            micro,
            len: rows.len(),
        }
    }

    /// The examples sorted by length, longest first, for cutting into batches.
    pub fn length_order(&self) -> LengthOrder {
        let lengths: Vec<usize> = self.encoded.iter().map(|e| e.input_ids.len()).collect();
        LengthOrder::by_length(&lengths)
    }

    /// The padded batch of examples `rows`.
    pub fn batch(&self, rows: &[usize], pad_id: u32) -> PaddedBatch {
        let refs: Vec<&Encoded> = rows.iter().map(|&i| &self.encoded[i]).collect();
        PaddedBatch::new(&refs, pad_id)
    }

    /// The batch of `rows` as `device` runs it: on a GPU padded up to a multiple of
    /// [`SEQ_MULTIPLE`] tokens (at most the split's longest example), so that a run compiles
    /// and autotunes kernels for a few shapes however varied its data; recorded in `shapes`.
    pub fn device_batch(&self, rows: &[usize], pad_id: u32, device: &Device) -> PaddedBatch {
        let refs: Vec<&Encoded> = rows.iter().map(|&i| &self.encoded[i]).collect();
        let longest = refs.iter().map(|e| e.input_ids.len()).max().unwrap_or(0);
        let seq = match crate::util::device::is_cpu(device) {
            true => longest,
            false => longest
                .next_multiple_of(SEQ_MULTIPLE)
                .min(self.longest())
                .max(longest),
        };
        let mut shapes = self.shapes.lock().unwrap_or_else(PoisonError::into_inner);
        shapes.insert([rows.len(), seq]);
        PaddedBatch::with_length(&refs, pad_id, seq)
    }

    /// The most tokens an example of the split has.
    fn longest(&self) -> usize {
        self.encoded
            .iter()
            .map(|e| e.input_ids.len())
            .max()
            .unwrap_or(0)
    }

    /// The gold labels of `rows` as a loss target.
    pub fn targets(&self, rows: &[usize], device: &Device) -> Targets {
        let labels = rows.iter().map(|&i| self.labels[i]);
        match self.labels.first() {
            Some(Label::Score(_)) => {
                let y: Vec<f32> = labels
                    .map(|l| match l {
                        Label::Score(s) => s as f32,
                        _ => f32::NAN,
                    })
                    .collect();
                Targets::Score(Tensor::from_data(TensorData::new(y, [rows.len()]), device))
            }
            _ => {
                let y: Vec<i64> = labels
                    .map(|l| match l {
                        Label::Class(c) => c as i64,
                        _ => -1,
                    })
                    .collect();
                Targets::Class(Tensor::from_data(TensorData::new(y, [rows.len()]), device))
            }
        }
    }
}

/// A prepared split as forward passes over it take it: with the pad id and the batch size.
pub struct Examples<'a> {
    pub data: &'a Prepared,
    pub pad: u32,
    pub batch_size: usize,
}

/// Loss targets of a batch: class ids (cross-entropy) or scores (squared error, STS-B).
pub enum Targets {
    Class(Tensor<1, Int>),
    Score(Tensor<1>),
}

/// The loss of each example of the batch, `[batch]`.
pub fn per_example_loss(logits: Tensor<2>, targets: &Targets) -> Tensor<1> {
    let [batch, _] = logits.dims();
    match targets {
        Targets::Class(y) => {
            let picked = log_softmax(logits, 1).gather(1, y.clone().reshape([batch, 1]));
            picked.reshape([batch]).neg()
        }
        Targets::Score(y) => {
            let diff = logits.reshape([batch]) - y.clone();
            diff.clone() * diff
        }
    }
}

/// The model's predictions for every example of `split`, in example order.
pub async fn predict(
    model: &Classifier,
    split: &Prepared,
    task: &Task,
    batch_size: usize,
    pad_id: u32,
    device: &Device,
) -> Result<Vec<Label>> {
    let rows = outputs(model, split, batch_size, pad_id, device).await?;
    Ok(rows.iter().map(|row| label_of(task, row)).collect())
}

/// The label a row of outputs predicts: the score (STS-B) or the class of the largest logit.
pub fn label_of(task: &Task, row: &[f32]) -> Label {
    if task.is_regression() {
        return Label::Score(row[0] as f64);
    }
    let best =
        row.iter().enumerate().fold(
            (0, f32::NEG_INFINITY),
            |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc },
        );
    Label::Class(best.0)
}

/// GPU batches are padded to a multiple of this many tokens ([`Prepared::device_batch`]).
pub const SEQ_MULTIPLE: usize = 16;

/// What one more forward pass costs, in padded tokens: a length-sorted batch is cut in two where
/// that saves more padding than this ([`LengthOrder::batches`]). On the CPU a pass costs little
/// beyond its arithmetic (MiniLM, one thread: ≈ 10 ms a pass, ≈ 0.28 ms a token); a GPU pays
/// its launches and a read-back per pass.
pub fn pass_cost(device: &Device) -> usize {
    if crate::util::device::is_cpu(device) {
        64
    } else {
        4096
    }
}

/// The model's outputs (logits, or the STS-B score) for every example of `split`, in example
/// order. Batches of at most `batch_size` are cut from the examples sorted by length.
pub async fn outputs(
    model: &Classifier,
    split: &Prepared,
    batch_size: usize,
    pad_id: u32,
    device: &Device,
) -> Result<Vec<Vec<f32>>> {
    let order = split.length_order();
    let mut out = Vec::with_capacity(split.len());
    for rows in order.batches(batch_size, pass_cost(device)) {
        let (ids, types, mask) = split.device_batch(rows, pad_id, device).to_tensors(device);
        let logits = model.forward(ids, types, mask);
        let [b, k] = logits.dims();
        let values = crate::util::device::read_f32(logits, "logits").await?;
        out.extend(values.chunks(k).take(b).map(<[f32]>::to_vec));
    }
    Ok(order.restore(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::DeviceKind;

    fn split(lengths: &[usize]) -> Prepared {
        let encoded = lengths
            .iter()
            .map(|&n| Encoded {
                input_ids: (0..n as u32).collect(),
                token_type_ids: vec![0; n],
            })
            .collect();
        Prepared {
            encoded,
            labels: vec![Label::Class(0); lengths.len()],
            ..Prepared::default()
        }
    }

    /// On a GPU every batch is padded to a multiple of 16 tokens or to the split's longest
    /// example, so 38 lengths make 3 sequence lengths; the CPU keeps each batch's own.
    #[test]
    fn gpu_batches_snap_to_a_few_lengths_and_cpu_batches_keep_theirs() {
        let lengths: Vec<usize> = (3..=40).collect();
        let rows: Vec<Vec<usize>> = (0..lengths.len()).map(|i| vec![i, (i * 7) % 38]).collect();
        let (gpu, cpu) = (Device::wgpu(DeviceKind::DefaultDevice), Device::flex());
        let (on_gpu, on_cpu) = (split(&lengths), split(&lengths));
        for r in &rows {
            let longest = r.iter().map(|&i| lengths[i]).max().unwrap();
            let padded = on_gpu.device_batch(r, 0, &gpu);
            assert!(padded.seq >= longest && (padded.seq % 16 == 0 || padded.seq == 40));
            assert_eq!(
                padded.attention_mask.iter().sum::<f32>() as usize,
                r.iter().map(|&i| lengths[i]).sum::<usize>()
            );
            assert_eq!(on_cpu.device_batch(r, 0, &cpu).seq, longest);
        }
        let seqs = |p: &Prepared| {
            p.shapes
                .lock()
                .unwrap()
                .iter()
                .map(|s| s[1])
                .collect::<BTreeSet<_>>()
        };
        assert_eq!(seqs(&on_gpu), BTreeSet::from([16, 32, 40]));
        assert!(seqs(&on_cpu).len() > 20);
    }
}
