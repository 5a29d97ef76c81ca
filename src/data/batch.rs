//! Batching: the order of the training examples in each epoch, and the length order that
//! batches for forward passes are cut from.
//!
//! The batch order of epoch `e` uses `SplitMix64::new(mix64(seed ^ 0x6570_6f63_6873) ^ e)`
//! ([`SplitMix64`](crate::util::rng); the constant is ASCII "epochs", which separates these
//! streams from the few-shot draw of the same seed).

use crate::util::rng::{SplitMix64, mix64};

/// Separates the epoch-order streams from the few-shot draw of the same seed.
const EPOCH_STREAM: u64 = 0x6570_6f63_6873;

/// The order of `n` training examples in `epoch`: a shuffle of `0..n`, to be cut into batches.
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    SplitMix64::new(mix64(seed ^ EPOCH_STREAM) ^ epoch).partial_shuffle(&mut order, n);
    order
}

/// Examples sorted by token length, longest first, so that batches cut from it pad little
/// (evaluation, K(λ)'s forwards, a training batch's micro-batches); [`LengthOrder::restore`]
/// puts outputs back in the original order.
#[derive(Clone, Debug)]
pub struct LengthOrder {
    order: Vec<usize>,
    /// The length of each example of `order`, in that order.
    sorted: Vec<usize>,
}

impl LengthOrder {
    /// Sorts by `lengths` (one per example), longest first; equal lengths keep their order.
    pub fn by_length(lengths: &[usize]) -> LengthOrder {
        let mut order: Vec<usize> = (0..lengths.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
        let sorted = order.iter().map(|&i| lengths[i]).collect();
        LengthOrder { order, sorted }
    }

    /// The order cut into consecutive batches of at most `max_rows` examples, each padded to its
    /// first (longest) example, with the least cost: the padded tokens of every batch plus
    /// `pass_cost` tokens for each batch, the fixed cost of one more pass. The cuts are exact
    /// (dynamic programming over the cut points).
    pub fn batches(&self, max_rows: usize, pass_cost: usize) -> Vec<&[usize]> {
        let (n, max_rows) = (self.order.len(), max_rows.max(1));
        // best[j]: the least cost of the first j examples; from[j]: where its last batch starts.
        let mut best = vec![0usize; n + 1];
        let mut from = vec![0usize; n + 1];
        for j in 1..=n {
            best[j] = usize::MAX;
            for i in j.saturating_sub(max_rows)..j {
                let cost = best[i] + (j - i) * self.sorted[i] + pass_cost;
                if cost < best[j] {
                    (best[j], from[j]) = (cost, i);
                }
            }
        }
        let mut batches = Vec::new();
        let mut j = n;
        while j > 0 {
            batches.push(&self.order[from[j]..j]);
            j = from[j];
        }
        batches.reverse();
        batches
    }

    /// Example indices, longest first.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// Takes outputs in this order and returns them in the original example order.
    pub fn restore<T>(&self, outputs: Vec<T>) -> Vec<T> {
        assert_eq!(outputs.len(), self.order.len(), "one output per example");
        let mut slots: Vec<Option<T>> = std::iter::repeat_with(|| None)
            .take(outputs.len())
            .collect();
        for (&i, output) in self.order.iter().zip(outputs) {
            slots[i] = Some(output);
        }
        slots.into_iter().flatten().collect()
    }
}
