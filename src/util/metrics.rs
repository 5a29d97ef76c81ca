//! GLUE metrics, computed in f64 exactly as scikit-learn and SciPy define them.
//!
//! All functions take gold values first. They panic if the two slices differ in length.

use std::fmt;

/// A GLUE metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    Accuracy,
    /// Binary F1 of class 1.
    F1,
    /// The unweighted mean of every class's F1 (`f1_score(average="macro")`).
    MacroF1,
    /// Matthews correlation coefficient.
    Mcc,
    Pearson,
    Spearman,
}

impl Metric {
    /// The name used in JSON output: `accuracy`, `f1`, `macro_f1`, `mcc`, `pearson` or
    /// `spearman`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::F1 => "f1",
            Metric::MacroF1 => "macro_f1",
            Metric::Mcc => "mcc",
            Metric::Pearson => "pearson",
            Metric::Spearman => "spearman",
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn check_lengths(gold: usize, predicted: usize) {
    assert_eq!(gold, predicted, "metric inputs differ in length");
}

/// The fraction of exact matches (`accuracy_score`); NaN for empty input.
pub fn accuracy(gold: &[usize], predicted: &[usize]) -> f64 {
    check_lengths(gold.len(), predicted.len());
    let correct = gold.iter().zip(predicted).filter(|(g, p)| g == p).count();
    correct as f64 / gold.len() as f64
}

/// F1 of the positive class 1, every other id counting as negative (`f1_score`, binary,
/// `pos_label=1`). 0 when there are no true or predicted positives (`zero_division=0`).
pub fn f1(gold: &[usize], predicted: &[usize]) -> f64 {
    check_lengths(gold.len(), predicted.len());
    class_f1(gold, predicted, 1)
}

/// F1 of class `c` against every other class.
fn class_f1(gold: &[usize], predicted: &[usize], c: usize) -> f64 {
    let (mut tp, mut fp, mut fn_) = (0u64, 0u64, 0u64);
    for (&g, &p) in gold.iter().zip(predicted) {
        match (g == c, p == c) {
            (true, true) => tp += 1,
            (false, true) => fp += 1,
            (true, false) => fn_ += 1,
            (false, false) => {}
        }
    }
    let denominator = 2 * tp + fp + fn_;
    if denominator == 0 {
        0.0
    } else {
        (2 * tp) as f64 / denominator as f64
    }
}

/// The mean over the classes `0..classes` of each one's F1 against the rest
/// (`f1_score(average="macro", labels=range(classes))`, `zero_division=0`).
pub fn macro_f1(gold: &[usize], predicted: &[usize], classes: usize) -> f64 {
    check_lengths(gold.len(), predicted.len());
    (0..classes)
        .map(|c| class_f1(gold, predicted, c))
        .sum::<f64>()
        / classes as f64
}

/// Matthews correlation coefficient for any number of classes (`matthews_corrcoef`): 0 when
/// the gold labels or the predictions are constant.
pub fn mcc(gold: &[usize], predicted: &[usize]) -> f64 {
    check_lengths(gold.len(), predicted.len());
    let classes = gold.iter().chain(predicted).max().map_or(0, |&max| max + 1);
    let mut gold_counts = vec![0i128; classes];
    let mut predicted_counts = vec![0i128; classes];
    let mut correct = 0i128;
    for (&g, &p) in gold.iter().zip(predicted) {
        gold_counts[g] += 1;
        predicted_counts[p] += 1;
        correct += i128::from(g == p);
    }
    let n = gold.len() as i128;
    let dot = |a: &[i128], b: &[i128]| a.iter().zip(b).map(|(x, y)| x * y).sum::<i128>();
    let cov_gold_predicted = correct * n - dot(&gold_counts, &predicted_counts);
    let cov_predicted = n * n - dot(&predicted_counts, &predicted_counts);
    let cov_gold = n * n - dot(&gold_counts, &gold_counts);
    if cov_predicted == 0 || cov_gold == 0 {
        return 0.0;
    }
    cov_gold_predicted as f64 / (cov_gold as f64 * cov_predicted as f64).sqrt()
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Pearson's r (`scipy.stats.pearsonr`), clipped to [-1, 1]; NaN if either input is constant
/// or contains NaN.
pub fn pearson(gold: &[f64], predicted: &[f64]) -> f64 {
    check_lengths(gold.len(), predicted.len());
    let constant = |v: &[f64]| v.iter().all(|&x| x == v[0]);
    if gold.is_empty() || constant(gold) || constant(predicted) {
        return f64::NAN;
    }
    let (mean_gold, mean_predicted) = (mean(gold), mean(predicted));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (&x, &y) in gold.iter().zip(predicted) {
        let (dx, dy) = (x - mean_gold, y - mean_predicted);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    (sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0)
}

/// Spearman's ρ (`scipy.stats.spearmanr`): Pearson's r of the ranks, tied values sharing their
/// average rank. NaN if either input is constant or contains NaN.
pub fn spearman(gold: &[f64], predicted: &[f64]) -> f64 {
    check_lengths(gold.len(), predicted.len());
    if gold.iter().chain(predicted).any(|v| v.is_nan()) {
        return f64::NAN;
    }
    pearson(&average_ranks(gold), &average_ranks(predicted))
}

/// 1-based ranks; a run of equal values gets the mean of the ranks it spans
/// (`scipy.stats.rankdata(method="average")`).
fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let value = values[order[start]];
        let end = start
            + order[start..]
                .iter()
                .take_while(|&&i| values[i] == value)
                .count();
        // Positions start..end hold ranks start+1..=end; their mean is (start + 1 + end) / 2.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::Value;

    const TOLERANCE: f64 = 1e-9;

    /// scikit-learn's and SciPy's values for generated cases (tests/golden/metrics.json).
    pub(crate) fn golden() -> Value {
        let text = include_str!("../../tests/golden/metrics.json");
        serde_json::from_str(text).expect("parse metrics.json")
    }

    pub(crate) fn cases<'a>(golden: &'a Value, kind: &str) -> &'a [Value] {
        golden[kind].as_array().expect("case list")
    }

    pub(crate) fn classes(case: &Value, key: &str) -> Vec<usize> {
        let values = case[key].as_array().expect("class array");
        values
            .iter()
            .map(|v| v.as_u64().expect("id") as usize)
            .collect()
    }

    pub(crate) fn floats(case: &Value, key: &str) -> Vec<f64> {
        let values = case[key].as_array().expect("float array");
        values.iter().map(|v| v.as_f64().expect("number")).collect()
    }

    pub(crate) fn assert_close(case: &Value, metric: &str, got: f64) {
        let want = case[metric].as_f64().expect("golden value");
        assert!(
            (got - want).abs() <= TOLERANCE,
            "{} {metric}: got {got}, sklearn/scipy {want}",
            case["name"]
        );
    }

    #[test]
    fn classification_metrics_match_sklearn() {
        let golden = golden();
        for case in cases(&golden, "classification") {
            let (gold, predicted) = (classes(case, "labels"), classes(case, "preds"));
            assert_close(case, "accuracy", accuracy(&gold, &predicted));
            assert_close(case, "mcc", mcc(&gold, &predicted));
            if case.get("f1").is_some() {
                assert_close(case, "f1", f1(&gold, &predicted));
            }
        }
    }

    #[test]
    fn regression_metrics_match_scipy() {
        let golden = golden();
        for case in cases(&golden, "regression") {
            let (gold, predicted) = (floats(case, "labels"), floats(case, "preds"));
            assert_close(case, "pearson", pearson(&gold, &predicted));
            assert_close(case, "spearman", spearman(&gold, &predicted));
        }
    }

    #[test]
    fn mcc_and_f1_are_symmetric() {
        let golden = golden();
        for case in cases(&golden, "classification") {
            let (gold, predicted) = (classes(case, "labels"), classes(case, "preds"));
            assert!((mcc(&predicted, &gold) - mcc(&gold, &predicted)).abs() <= TOLERANCE);
            assert!((f1(&predicted, &gold) - f1(&gold, &predicted)).abs() <= TOLERANCE);
        }
    }

    #[test]
    fn spearman_depends_only_on_order() {
        let golden = golden();
        for case in cases(&golden, "regression") {
            let (gold, predicted) = (floats(case, "labels"), floats(case, "preds"));
            let squashed: Vec<f64> = predicted.iter().map(|v| v.tanh() * 3.0 + v.exp()).collect();
            let (a, b) = (spearman(&gold, &predicted), spearman(&gold, &squashed));
            assert!((a - b).abs() <= TOLERANCE, "{}: {a} vs {b}", case["name"]);
        }
    }

    #[test]
    fn correlations_of_constant_or_nan_input_are_nan_as_in_scipy() {
        let gold = [1.0, 2.0, 3.0, 4.0];
        assert!(pearson(&gold, &[2.5; 4]).is_nan());
        assert!(spearman(&[2.5; 4], &gold).is_nan());
        assert!(pearson(&gold, &[1.0, f64::NAN, 2.0, 3.0]).is_nan());
        assert!(spearman(&gold, &[1.0, f64::NAN, 2.0, 3.0]).is_nan());
        assert!(pearson(&[], &[]).is_nan());
    }

    /// sklearn's `zero_division=0` and `matthews_corrcoef`'s constant cases.
    #[test]
    fn degenerate_classifications_score_as_sklearn_does() {
        // No positive in gold or predictions: F1 0, not NaN.
        assert_eq!(f1(&[0, 0, 0], &[0, 0, 0]), 0.0);
        // Everything predicted positive: precision 2/3, recall 1.
        assert!((f1(&[1, 0, 1], &[1, 1, 1]) - 0.8).abs() <= TOLERANCE);
        // Constant predictions or constant gold: MCC 0.
        assert_eq!(mcc(&[0, 1, 1, 0], &[1, 1, 1, 1]), 0.0);
        assert_eq!(mcc(&[1, 1, 1], &[0, 1, 0]), 0.0);
        // Perfect and inverted binary predictions.
        assert!((mcc(&[0, 1, 1, 0], &[0, 1, 1, 0]) - 1.0).abs() <= TOLERANCE);
        assert!((mcc(&[0, 1, 1, 0], &[1, 0, 0, 1]) + 1.0).abs() <= TOLERANCE);
        assert!(accuracy(&[], &[]).is_nan());
    }

    /// A class missing from gold and predictions counts as F1 0 in the macro mean, as
    /// `labels=range(classes)` makes sklearn do.
    #[test]
    fn macro_f1_averages_every_class() {
        let (gold, predicted) = ([0, 0, 1, 1], [0, 1, 1, 1]);
        let f1_0 = 2.0 / 3.0;
        let f1_1 = 0.8;
        let two = macro_f1(&gold, &predicted, 2);
        assert!((two - (f1_0 + f1_1) / 2.0).abs() <= TOLERANCE, "{two}");
        let three = macro_f1(&gold, &predicted, 3);
        assert!((three - (f1_0 + f1_1) / 3.0).abs() <= TOLERANCE, "{three}");
    }

    #[test]
    fn tied_values_share_their_average_rank() {
        let ranks = average_ranks(&[3.0, 1.0, 3.0, 2.0, 3.0]);
        assert_eq!(ranks, [4.0, 1.0, 4.0, 2.0, 4.0]);
        assert_eq!(average_ranks(&[5.0, 5.0]), [1.5, 1.5]);
    }
}
