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
