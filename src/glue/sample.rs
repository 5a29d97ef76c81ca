//! Few-shot sampling: the few-shot draw of `train_size` rows uses `SplitMix64::new(seed)`
//! ([`SplitMix64`](crate::util::rng)), so a draw depends only on its inputs and never on a
//! crate's version. The batch order within an epoch is [`crate::data::batch`]'s.

use crate::util::rng::SplitMix64;

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
