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

#[cfg(test)]
mod tests {
    use super::*;

    /// The batch order of each epoch is a known shuffle of the examples.
    #[test]
    fn epoch_order_matches_known_answers() {
        // Python script: epoch_order(n, seed, epoch).
        assert_eq!(epoch_order(10, 42, 0), [2, 7, 6, 0, 1, 5, 3, 8, 9, 4]);
        assert_eq!(epoch_order(10, 42, 1), [2, 9, 4, 7, 1, 0, 5, 3, 8, 6]);
        assert_eq!(epoch_order(7, 0, 3), [0, 1, 6, 2, 4, 5, 3]);
        // The toy SST-2 of the end-to-end tests (20 examples, seed 5): the first and last of 40
        // epochs.
        assert_eq!(
            epoch_order(20, 5, 0),
            [
                4, 3, 18, 0, 17, 11, 19, 10, 6, 16, 5, 2, 14, 8, 15, 7, 13, 1, 9, 12
            ]
        );
        assert_eq!(
            epoch_order(20, 5, 39),
            [
                0, 9, 19, 16, 10, 4, 1, 18, 15, 14, 2, 12, 5, 3, 13, 6, 17, 11, 7, 8
            ]
        );
    }

    /// Costs of a cut, by brute force over every cut into consecutive batches.
    fn cheapest(sorted: &[usize], max_rows: usize, pass_cost: usize) -> usize {
        if sorted.is_empty() {
            return 0;
        }
        (1..=max_rows.min(sorted.len()))
            .map(|k| k * sorted[0] + pass_cost + cheapest(&sorted[k..], max_rows, pass_cost))
            .min()
            .unwrap()
    }

    /// The cuts are the cheapest of all, keep every example once in length order, and respect
    /// `max_rows`.
    #[test]
    fn batches_are_the_cheapest_cut() {
        let mut rng = crate::util::rng::SplitMix64::new(11);
        for case in 0..200 {
            let n = 1 + rng.below(12) as usize;
            let lengths: Vec<usize> = (0..n).map(|_| 1 + rng.below(40) as usize).collect();
            let (max_rows, pass_cost) = (1 + rng.below(5) as usize, rng.below(30) as usize);
            let order = LengthOrder::by_length(&lengths);
            let batches = order.batches(max_rows, pass_cost);
            let flat: Vec<usize> = batches.concat();
            assert_eq!(flat, order.order(), "case {case}");
            assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= max_rows));
            let cost: usize = batches
                .iter()
                .map(|b| b.len() * lengths[b[0]] + pass_cost)
                .sum();
            let sorted: Vec<usize> = order.order().iter().map(|&i| lengths[i]).collect();
            assert_eq!(
                cost,
                cheapest(&sorted, max_rows, pass_cost),
                "case {case}: {lengths:?}"
            );
        }
    }

    /// Longest first, and outputs computed in that order come back in example order.
    #[test]
    fn length_order_sorts_and_restores_random_lengths() {
        let mut rng = crate::util::rng::SplitMix64::new(9);
        let lengths: Vec<usize> = (0..257).map(|_| 3 + rng.below(120) as usize).collect();
        let order = LengthOrder::by_length(&lengths);
        let sorted: Vec<usize> = order.order().iter().map(|&i| lengths[i]).collect();
        assert!(sorted.windows(2).all(|w| w[0] >= w[1]), "longest first");
        let outputs: Vec<(usize, usize)> = order.order().iter().map(|&i| (i, lengths[i])).collect();
        let expected: Vec<(usize, usize)> = lengths.iter().copied().enumerate().collect();
        assert_eq!(order.restore(outputs), expected);
    }

    #[test]
    fn length_order_is_stable_and_restores() {
        let order = LengthOrder::by_length(&[3, 7, 3, 9, 7]);
        assert_eq!(order.order(), [3, 1, 4, 0, 2]);
        let outputs: Vec<usize> = order.order().iter().map(|&i| i * 10).collect();
        assert_eq!(order.restore(outputs), [0, 10, 20, 30, 40]);
        // A dear pass takes as many examples as allowed; a free one pads nothing.
        assert_eq!(order.batches(5, 1000).len(), 1);
        let distinct = LengthOrder::by_length(&[1, 2, 3, 4]);
        assert_eq!(distinct.batches(5, 0).len(), 4);
    }

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let n = 100;
        let order = epoch_order(n, 42, 0);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..n).collect::<Vec<_>>());
        assert_eq!(order, epoch_order(n, 42, 0));
        assert_ne!(order, epoch_order(n, 42, 1));
        assert_ne!(order, epoch_order(n, 43, 0));
        assert_ne!(order, sorted);
    }
}
