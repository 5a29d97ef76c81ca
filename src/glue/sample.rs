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

#[cfg(test)]
mod tests {
    //! Known answers from tests/known_answers/sample_rng.py, a plain Python reimplementation of
    //! the algorithms as documented here: a change of algorithm, constant or platform cannot move
    //! a draw silently.

    use super::*;

    /// The few-shot draw picks the same rows on every platform, and a larger draw keeps a smaller one.
    #[test]
    fn few_shot_draw_matches_known_answers() {
        // Python script: few_shot(len, n, seed).
        assert_eq!(few_shot(10, 4, 42), [2, 3, 4, 5]);
        assert_eq!(
            few_shot(3668, 10, 7),
            [386, 584, 776, 1220, 1307, 1813, 2078, 2093, 3096, 3439]
        );
        // MRPC's train size with 12 rows: the 10 above plus 135 and 2415.
        assert_eq!(
            few_shot(3668, 12, 7),
            [
                135, 386, 584, 776, 1220, 1307, 1813, 2078, 2093, 2415, 3096, 3439
            ]
        );
        // SST-2's train size, the paper's n = 100, seed 42: first, middle and last rows and a
        // checksum of all 100 (their sum and Σ i·row_i, both from the Python script).
        let rows = few_shot(67349, 100, 42);
        assert_eq!(rows.len(), 100);
        assert_eq!(rows[..5], [833, 845, 1297, 2101, 3062]);
        assert_eq!(rows[50..53], [35604, 35944, 40503]);
        assert_eq!(rows[95..], [65077, 65651, 66245, 66770, 67248]);
        assert_eq!(rows.iter().sum::<usize>(), SST2_SUM);
        let weighted: usize = rows.iter().enumerate().map(|(i, r)| i * r).sum();
        assert_eq!(weighted, SST2_WEIGHTED);
        // Every row when train_size is 0 or at least len.
        assert_eq!(few_shot(20, 0, 3), (0..20).collect::<Vec<_>>());
        assert_eq!(few_shot(5, 9, 3), [0, 1, 2, 3, 4]);
    }

    /// sum(few_shot(67349, 100, 42)) and Σ i·row_i from the Python script.
    const SST2_SUM: usize = 3_444_645;
    const SST2_WEIGHTED: usize = 232_583_958;

    #[test]
    fn few_shot_draw_depends_only_on_size_and_seed() {
        let train: Vec<usize> = (0..3668).map(|i| i * 7).collect();
        let draw = |size, seed| -> Vec<_> {
            few_shot(train.len(), size, seed)
                .into_iter()
                .map(|i| train[i].clone())
                .collect()
        };
        assert_eq!(draw(100, 42), draw(100, 42));
        assert_eq!(draw(100, 42).len(), 100);
        assert_ne!(draw(100, 42), draw(100, 43));
        assert_eq!(draw(0, 42), train);
        assert_eq!(draw(train.len() + 1, 7), train);

        let rows = few_shot(train.len(), 100, 42);
        assert!(
            rows.windows(2).all(|w| w[0] < w[1]),
            "ascending, no repeats"
        );
        let larger: std::collections::HashSet<usize> =
            few_shot(train.len(), 200, 42).into_iter().collect();
        assert!(
            rows.iter().all(|r| larger.contains(r)),
            "a larger draw keeps the smaller"
        );
    }

    #[test]
    fn few_shot_draw_covers_the_split_evenly() {
        let (len, size, draws) = (50, 10, 5000u64);
        let mut hits = vec![0u32; len];
        for seed in 0..draws {
            for row in few_shot(len, size, seed) {
                hits[row] += 1;
            }
        }
        // Each row is drawn with probability 1/5: 1000 expected, standard deviation ~28.
        let expected = (draws as usize * size / len) as f64;
        for (row, &h) in hits.iter().enumerate() {
            assert!(
                (h as f64 - expected).abs() < 150.0,
                "row {row} drawn {h} times"
            );
        }
    }
}
