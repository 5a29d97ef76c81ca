//! Few-shot sampling, training batch order and evaluation order.
//!
//! All randomness comes from [`SplitMix64`], implemented here, so a draw depends only on its
//! inputs and never on a crate's version:
//! - the few-shot draw of `train_size` rows uses `SplitMix64::new(seed)`;
//! - the batch order of epoch `e` uses `SplitMix64::new(mix64(seed ^ 0x6570_6f63_6873) ^ e)`
//!   (the constant is ASCII "epochs").

/// Separates the epoch-order streams from the few-shot draw of the same seed.
const EPOCH_STREAM: u64 = 0x6570_6f63_6873;

/// SplitMix64 (Steele, Lea and Flood 2014, constants of Vigna's reference code): the state
/// advances by 0x9E3779B97F4A7C15 and each output is [`mix64`] of the new state.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

/// SplitMix64's output function, a bijective 64-bit mixer.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.state)
    }

    /// Uniform in `0..n` (n > 0), without modulo bias: outputs below `2^64 mod n` are redrawn.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        let threshold = n.wrapping_neg() % n;
        loop {
            let x = self.next_u64();
            if x >= threshold {
                return x % n;
            }
        }
    }

    /// A standard normal draw (Box-Muller on two 53-bit uniforms).
    pub fn normal(&mut self) -> f64 {
        let u1 = ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let u2 = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Fisher–Yates over the first `k` positions: afterwards `items[..k]` is a uniform draw
    /// without replacement, in draw order. `k = items.len()` shuffles the whole slice.
    pub fn partial_shuffle<T>(&mut self, items: &mut [T], k: usize) {
        let n = items.len();
        for i in 0..k.min(n) {
            let j = i + self.below((n - i) as u64) as usize;
            items.swap(i, j);
        }
    }
}

/// The rows of a `len`-row train split to train on, in ascending order: `train_size` rows
/// drawn without replacement with `SplitMix64::new(seed)` (partial Fisher–Yates over `0..len`),
/// or every row when `train_size` is 0 or at least `len`. A larger `train_size` with the same
/// seed keeps the rows of a smaller one.
pub fn few_shot(len: usize, train_size: usize, seed: u64) -> Vec<usize> {
    let mut rows: Vec<usize> = (0..len).collect();
    if train_size == 0 || train_size >= len {
        return rows;
    }
    SplitMix64::new(seed).partial_shuffle(&mut rows, train_size);
    rows.truncate(train_size);
    rows.sort_unstable();
    rows
}

/// The order of `n` training examples in `epoch`: a shuffle of `0..n`, to be cut into batches.
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    SplitMix64::new(mix64(seed ^ EPOCH_STREAM) ^ epoch).partial_shuffle(&mut order, n);
    order
}

/// Evaluation order: examples sorted by token length, longest first, so that each batch pads
/// little; [`EvalOrder::restore`] puts outputs back in the original order.
#[derive(Clone, Debug)]
pub struct EvalOrder {
    order: Vec<usize>,
}

impl EvalOrder {
    /// Sorts by `lengths` (one per example), longest first; equal lengths keep their order.
    pub fn by_length(lengths: &[usize]) -> EvalOrder {
        let mut order: Vec<usize> = (0..lengths.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
        EvalOrder { order }
    }

    /// Example indices in evaluation order.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// Takes outputs in evaluation order and returns them in the original example order.
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
