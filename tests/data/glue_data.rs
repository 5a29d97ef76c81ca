//! GLUE readers on the real files (env GLUE_DIR), the task registry's labels, and the `data`
//! and `score` commands. (Sampling and batching are unit-tested beside their code.)

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use pac_wgpu::data::batch::epoch_order;
use pac_wgpu::glue::sample::few_shot;
use pac_wgpu::glue::{DataSource, Label, Split, Task, read_predictions};
use pac_wgpu::util::metrics;
use pac_wgpu::util::rng::SplitMix64;
use serde_json::Value;

use crate::common;

/// The real GLUE files (tests that read them are listed as not run without them).
fn glue_dir() -> PathBuf {
    common::glue_dir()
}

fn source(dir: &Path) -> DataSource {
    DataSource::new(Some(dir.to_path_buf()))
}

/// GLUE's split sizes; `None` = a split the GLUE folder used here does not hold.
const SIZES: [(Task, [Option<usize>; 3]); 10] = [
    (Task::Cola, [Some(8551), Some(1043), Some(1063)]),
    (Task::Sst2, [Some(67349), Some(872), Some(1821)]),
    (Task::Mrpc, [Some(3668), Some(408), Some(1725)]),
    (Task::Stsb, [Some(5749), Some(1500), Some(1379)]),
    (Task::Mnli, [None, Some(9815), None]),
    (Task::MnliMm, [None, Some(9832), None]),
    (Task::Qnli, [None, Some(5463), Some(5463)]),
    (Task::Rte, [Some(2490), Some(277), Some(3000)]),
    (Task::Wnli, [Some(635), Some(71), Some(146)]),
    (Task::Ax, [None, None, Some(1104)]),
];

const SPLITS: [Split; 3] = [Split::Train, Split::Dev, Split::Test];

#[test]
#[cfg_attr(not(pac_test_glue), ignore = "needs real GLUE: set GLUE_DIR")]
fn split_sizes_match_glue() {
    let dir = glue_dir();
    let source = source(&dir);
    for (task, sizes) in SIZES {
        for (split, size) in SPLITS.into_iter().zip(sizes) {
            assert_eq!(
                source.has_split(&task, split),
                size.is_some(),
                "{task} {split}"
            );
            if let Some(size) = size {
                let dataset = source.load(&task, split).expect("load");
                assert_eq!(dataset.examples.len(), size, "{task} {split}");
            }
        }
    }
}

/// Columns are mapped right: texts hold words (not ids or scores; SST-2 has a few phrases like
/// "( "), pair tasks have a second text, labelled splits use every class, test splits have no
/// labels.
#[test]
#[cfg_attr(not(pac_test_glue), ignore = "needs real GLUE: set GLUE_DIR")]
fn every_split_has_texts_and_valid_labels() {
    let dir = glue_dir();
    let source = source(&dir);
    let is_pair = |task: &Task| !matches!(task, Task::Cola | Task::Sst2);
    let wordy = |t: &str| t.chars().filter(|c| c.is_alphabetic()).count() >= 2;
    for (task, sizes) in SIZES {
        for (split, size) in SPLITS.into_iter().zip(sizes) {
            if size.is_none() {
                continue;
            }
            let examples = source.load(&task, split).expect("load").examples;
            let texts = examples
                .iter()
                .flat_map(|e| std::iter::once(&e.text_a).chain(&e.text_b));
            let (wordy_texts, all_texts) =
                texts.fold((0, 0), |(w, n), t| (w + usize::from(wordy(t)), n + 1));
            assert!(
                wordy_texts * 100 >= all_texts * 99,
                "{task} {split}: texts without words"
            );
            let mut seen = HashSet::new();
            for (i, e) in examples.iter().enumerate() {
                assert_eq!(e.text_b.is_some(), is_pair(&task), "{task} {split} row {i}");
                match (split, e.label) {
                    (Split::Test, label) => assert_eq!(label, Label::None),
                    (_, Label::Class(id)) => {
                        assert!(id < task.num_labels());
                        seen.insert(id);
                    }
                    (_, Label::Score(v)) => {
                        assert!(task.is_regression() && (0.0..=5.0).contains(&v));
                    }
                    (_, Label::None) => panic!("{task} {split} row {i}: no label"),
                }
            }
            if split != Split::Test && !task.is_regression() {
                assert_eq!(
                    seen.len(),
                    task.num_labels(),
                    "{task} {split}: classes used"
                );
            }
        }
    }
}

#[test]
fn task_names_parse_case_insensitively() {
    for task in Task::ALL {
        assert_eq!(task.name().parse::<Task>().ok(), Some(task.clone()));
        assert_eq!(task.name().to_uppercase().parse::<Task>().ok(), Some(task));
    }
    for (spelling, task) in [
        ("SST-2", Task::Sst2),
        ("STS-B", Task::Stsb),
        ("CoLA", Task::Cola),
        ("MNLI-MM", Task::MnliMm),
    ] {
        assert_eq!(spelling.parse::<Task>().ok(), Some(task));
    }
    assert!("glue".parse::<Task>().is_err());
}

#[test]
fn labels_parse_by_glue_spelling_name_and_id() {
    for task in Task::ALL.into_iter().filter(|t| !t.is_regression()) {
        for (id, (spelling, name)) in task
            .glue_labels()
            .iter()
            .zip(task.label_names())
            .enumerate()
        {
            assert_eq!(task.parse_label(spelling), Some(Label::Class(id)), "{task}");
            assert_eq!(task.parse_label(name), Some(Label::Class(id)), "{task}");
            assert_eq!(
                task.parse_label(&id.to_string()),
                Some(Label::Class(id)),
                "{task}"
            );
        }
        assert_eq!(task.parse_label(&task.num_labels().to_string()), None);
    }
}

fn load_train(task: &Task) -> Vec<pac_wgpu::glue::Example> {
    source(&glue_dir())
        .load(&task, Split::Train)
        .expect("train")
        .examples
}

/// Predictions for `gold`: a deterministic fraction of them changed.
fn noisy_predictions(task: &Task, gold: &[Label], seed: u64) -> Vec<Label> {
    let mut rng = SplitMix64::new(seed);
    gold.iter()
        .map(|label| match *label {
            Label::Class(id) if rng.below(4) == 0 => Label::Class(
                (id + 1 + rng.below(task.num_labels() as u64 - 1) as usize) % task.num_labels(),
            ),
            Label::Score(v) => Label::Score(v + (rng.below(2001) as f64 - 1000.0) / 500.0),
            other => other,
        })
        .collect()
}

/// Writes predictions in GLUE's submission format, rows in a shuffled order.
fn write_predictions(path: &Path, task: &Task, predictions: &[Label]) {
    let mut text = String::from("index\tprediction\n");
    for i in epoch_order(predictions.len(), 5, 0) {
        let value = match predictions[i] {
            Label::Class(id) => task.glue_labels()[id].to_string(),
            Label::Score(v) => v.to_string(),
            Label::None => unreachable!("predictions have labels"),
        };
        text += &format!("{i}\t{value}\n");
    }
    std::fs::write(path, text).expect("write predictions");
}

/// The metric functions on gold and predicted values, as the score must equal.
fn direct_scores(task: &Task, gold: &[Label], predicted: &[Label]) -> Vec<(&'static str, f64)> {
    let classes = |v: &[Label]| -> Vec<usize> {
        v.iter()
            .map(|l| match l {
                Label::Class(c) => *c,
                _ => panic!("class"),
            })
            .collect()
    };
    let scores = |v: &[Label]| -> Vec<f64> {
        v.iter()
            .map(|l| match l {
                Label::Score(s) => *s,
                _ => panic!("score"),
            })
            .collect()
    };
    if task.is_regression() {
        let (g, p) = (scores(gold), scores(predicted));
        vec![
            ("pearson", metrics::pearson(&g, &p)),
            ("spearman", metrics::spearman(&g, &p)),
        ]
    } else {
        let (g, p) = (classes(gold), classes(predicted));
        match task {
            Task::Cola => vec![("mcc", metrics::mcc(&g, &p))],
            _ => vec![
                ("f1", metrics::f1(&g, &p)),
                ("accuracy", metrics::accuracy(&g, &p)),
            ],
        }
    }
}

/// The `score` path (predictions file → metrics) for CoLA, MRPC and STS-B dev, through the
/// library and through the binary.
#[test]
#[cfg_attr(not(pac_test_glue), ignore = "needs real GLUE: set GLUE_DIR")]
fn score_matches_the_metrics_on_dev() {
    let dir = glue_dir();
    let tmp = tempfile::tempdir().expect("tempdir");
    for task in [Task::Cola, Task::Mrpc, Task::Stsb] {
        let gold = source(&dir).load(&task, Split::Dev).expect("dev").labels();
        let predicted = noisy_predictions(&task, &gold, 3);
        let path = tmp.path().join(format!("{task}.tsv"));
        write_predictions(&path, &task, &predicted);

        let read = read_predictions(&path, &task).expect("read predictions");
        assert_eq!(read, predicted, "{task}: predictions back in index order");
        let expected = direct_scores(&task, &gold, &predicted);
        let scores = task.score(&gold, &read).expect("score");
        let names: Vec<(&str, f64)> = scores.iter().map(|(m, v)| (m.name(), *v)).collect();
        assert_eq!(names, expected, "{task}");

        let out = pac_wgpu_json(&[
            "score",
            "--task",
            task.name(),
            "--predictions",
            path.to_str().unwrap(),
            "--data-dir",
            dir.to_str().unwrap(),
            "--json",
        ]);
        assert_eq!(out["n"], gold.len());
        for (name, value) in expected {
            let got = out["metrics"][name].as_f64().expect("metric");
            assert!(
                (got - value).abs() <= 1e-12,
                "{task} {name}: {got} vs {value}"
            );
        }
    }
}

fn pac_wgpu_json(args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_pac-wgpu"))
        .args(args)
        .output()
        .expect("run pac-wgpu");
    assert!(
        output.status.success(),
        "pac-wgpu {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

#[test]
#[cfg_attr(not(pac_test_glue), ignore = "needs real GLUE: set GLUE_DIR")]
fn data_command_reports_glue_split_sizes() {
    let dir = glue_dir();
    for (task, sizes) in SIZES {
        let out = pac_wgpu_json(&[
            "data",
            "--task",
            task.name(),
            "--data-dir",
            dir.to_str().unwrap(),
            "--json",
        ]);
        assert_eq!(out["task"], task.name());
        for (split, size) in SPLITS.into_iter().zip(sizes) {
            let rows = &out["splits"][split.name()]["rows"];
            match size {
                Some(size) => assert_eq!(rows, size, "{task} {split}"),
                None => assert!(rows.is_null(), "{task} {split}: absent"),
            }
        }
    }
}

#[test]
#[cfg_attr(not(pac_test_glue), ignore = "needs real GLUE: set GLUE_DIR")]
fn data_command_shows_the_few_shot_draw() {
    let dir = glue_dir();
    let train = load_train(&Task::Rte);
    let args = |seed: &str| {
        pac_wgpu_json(&[
            "data",
            "--task",
            "RTE",
            "--data-dir",
            dir.to_str().unwrap(),
            "--train-size",
            "100",
            "--seed",
            seed,
            "--json",
        ])
    };
    let out = args("42");
    let rows: Vec<usize> = serde_json::from_value(out["sample"]["rows"].clone()).expect("rows");
    assert_eq!(rows, few_shot(train.len(), 100, 42));
    let counts = out["sample"]["labels"].as_object().expect("labels");
    let total: u64 = counts.values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(total, 100);
    assert_ne!(args("43")["sample"]["rows"], out["sample"]["rows"]);
}
