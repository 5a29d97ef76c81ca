//! GLUE metrics against scikit-learn/SciPy values in tests/golden/metrics.json.

use std::path::PathBuf;

use pac_wgpu::glue::{Label, Task};
use pac_wgpu::util::metrics;
use serde_json::Value;

const TOLERANCE: f64 = 1e-9;

fn golden() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/metrics.json");
    let text = std::fs::read_to_string(&path).expect("read tests/golden/metrics.json");
    serde_json::from_str(&text).expect("parse metrics.json")
}

fn cases<'a>(golden: &'a Value, kind: &str) -> &'a [Value] {
    golden[kind].as_array().expect("case list")
}

fn classes(case: &Value, key: &str) -> Vec<usize> {
    let values = case[key].as_array().expect("class array");
    values
        .iter()
        .map(|v| v.as_u64().expect("class id") as usize)
        .collect()
}

fn floats(case: &Value, key: &str) -> Vec<f64> {
    let values = case[key].as_array().expect("float array");
    values.iter().map(|v| v.as_f64().expect("number")).collect()
}

fn assert_close(case: &Value, metric: &str, got: f64) {
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
        assert_close(case, "accuracy", metrics::accuracy(&gold, &predicted));
        assert_close(case, "mcc", metrics::mcc(&gold, &predicted));
        if case.get("f1").is_some() {
            assert_close(case, "f1", metrics::f1(&gold, &predicted));
        }
    }
}

#[test]
fn regression_metrics_match_scipy() {
    let golden = golden();
    for case in cases(&golden, "regression") {
        let (gold, predicted) = (floats(case, "labels"), floats(case, "preds"));
        assert_close(case, "pearson", metrics::pearson(&gold, &predicted));
        assert_close(case, "spearman", metrics::spearman(&gold, &predicted));
    }
}

#[test]
fn mcc_and_f1_are_symmetric() {
    let golden = golden();
    for case in cases(&golden, "classification") {
        let (gold, predicted) = (classes(case, "labels"), classes(case, "preds"));
        let mcc = metrics::mcc(&gold, &predicted);
        assert!((metrics::mcc(&predicted, &gold) - mcc).abs() <= TOLERANCE);
        let f1 = metrics::f1(&gold, &predicted);
        assert!((metrics::f1(&predicted, &gold) - f1).abs() <= TOLERANCE);
    }
}

#[test]
fn spearman_depends_only_on_order() {
    let golden = golden();
    for case in cases(&golden, "regression") {
        let (gold, predicted) = (floats(case, "labels"), floats(case, "preds"));
        let squashed: Vec<f64> = predicted.iter().map(|v| v.tanh() * 3.0 + v.exp()).collect();
        let (a, b) = (
            metrics::spearman(&gold, &predicted),
            metrics::spearman(&gold, &squashed),
        );
        assert!((a - b).abs() <= TOLERANCE, "{}: {a} vs {b}", case["name"]);
    }
}

#[test]
fn correlations_of_constant_input_are_nan_as_in_scipy() {
    let gold = [1.0, 2.0, 3.0, 4.0];
    let constant = [2.5; 4];
    assert!(metrics::pearson(&gold, &constant).is_nan());
    assert!(metrics::spearman(&constant, &gold).is_nan());
}

fn class_labels(ids: &[usize]) -> Vec<Label> {
    ids.iter().map(|&id| Label::Class(id)).collect()
}

fn score_labels(values: &[f64]) -> Vec<Label> {
    values.iter().map(|&v| Label::Score(v)).collect()
}

/// `Task::score` computes each task's GLUE metrics, main metric first.
#[test]
fn task_score_reports_the_task_metrics() {
    let golden = golden();
    let binary = &cases(&golden, "classification")[0];
    let three_class = cases(&golden, "classification")
        .iter()
        .find(|c| c.get("f1").is_none())
        .expect("a multi-class case");
    let regression = &cases(&golden, "regression")[0];
    let checks: [(Task, &Value, &[&str]); 4] = [
        (Task::Cola, binary, &["mcc"]),
        (Task::Mrpc, binary, &["f1", "accuracy"]),
        (Task::Mnli, three_class, &["accuracy"]),
        (Task::Stsb, regression, &["pearson", "spearman"]),
    ];
    for (task, case, names) in checks {
        let (gold, predicted) = if task.is_regression() {
            (
                score_labels(&floats(case, "labels")),
                score_labels(&floats(case, "preds")),
            )
        } else {
            (
                class_labels(&classes(case, "labels")),
                class_labels(&classes(case, "preds")),
            )
        };
        let scores = task.score(&gold, &predicted).expect("score");
        let got: Vec<&str> = scores.iter().map(|(m, _)| m.name()).collect();
        assert_eq!(got, names, "{task}");
        assert_eq!(scores[0].0, task.main_metric());
        for (metric, value) in scores {
            assert_close(case, metric.name(), value);
        }
    }
}

#[test]
fn task_score_rejects_mismatched_inputs() {
    let gold = class_labels(&[0, 1, 1]);
    assert!(Task::Rte.score(&gold, &class_labels(&[0, 1])).is_err());
    assert!(Task::Rte.score(&[], &[]).is_err());
    assert!(
        Task::Rte
            .score(&[Label::None; 3], &class_labels(&[0, 1, 1]))
            .is_err()
    );
    assert!(
        Task::Stsb
            .score(&score_labels(&[1.0, 2.0, 3.0]), &gold)
            .is_err()
    );
}
