//! Your own data without posing as GLUE: `--task custom` (or `--train-file` without `--task`)
//! takes its labels from the train file, scores with accuracy and macro-F1 (Pearson/Spearman
//! for scores), writes predictions with the label strings, and `data` shows only the splits
//! given.

use crate::common;

use std::path::Path;

use common::{binary, read_json, run_ok};

/// Three moods of the tiny vocabulary; `rows` sentences cycling through them.
fn write_csv(path: &Path, rows: usize, offset: usize) {
    let moods = [("good", "pos"), ("bad", "neg"), ("red", "meh")];
    let subjects = ["the movie", "a film", "the cat", "the dog", "it"];
    let mut text = String::from("sentence,label\n");
    for i in 0..rows {
        let (word, label) = moods[(i + offset) % 3];
        let subject = subjects[(i / 3) % subjects.len()];
        text.push_str(&format!("{subject} is very {word} .,{label}\n"));
    }
    std::fs::write(path, text).unwrap();
}

/// Macro-F1 over `classes`, as sklearn's `f1_score(average="macro")` defines it.
fn macro_f1(gold: &[String], predicted: &[String], classes: &[&str]) -> f64 {
    let per_class = classes.iter().map(|c| {
        let hit = |g: &String, p: &String| (g == c, p == c);
        let pairs: Vec<(bool, bool)> = gold.iter().zip(predicted).map(|(g, p)| hit(g, p)).collect();
        let tp = pairs.iter().filter(|&&(g, p)| g && p).count() as f64;
        let fp = pairs.iter().filter(|&&(g, p)| !g && p).count() as f64;
        let fn_ = pairs.iter().filter(|&&(g, p)| g && !p).count() as f64;
        if tp + fp + fn_ == 0.0 {
            0.0
        } else {
            2.0 * tp / (2.0 * tp + fp + fn_)
        }
    });
    per_class.sum::<f64>() / classes.len() as f64
}

#[test]
fn own_csv_files_train_with_their_own_labels_and_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny-bert");
    common::tiny::write_model(&model, 3, |_| {});
    let (train, dev) = (tmp.path().join("train.csv"), tmp.path().join("dev.csv"));
    write_csv(&train, 24, 0);
    write_csv(&dev, 12, 1);

    // `data` names the labels and shows the two splits given, no test split.
    let out = run_ok(
        binary()
            .args(["data", "--json", "--train-file"])
            .arg(&train)
            .arg("--dev-file")
            .arg(&dev)
            .env_remove("GLUE_DIR"),
    );
    let data: serde_json::Value = serde_json::from_str(&out).unwrap();
    let splits = data["splits"].as_object().unwrap();
    assert_eq!(splits.keys().collect::<Vec<_>>(), ["dev", "train"]);
    assert_eq!(data["task"], "custom");
    assert_eq!(
        splits["train"]["labels"],
        serde_json::json!({"meh": 8, "neg": 8, "pos": 8})
    );

    let run = tmp.path().join("run");
    run_ok(
        binary()
            .args(["train", "--device", "cpu", "--quiet", "--method", "vanilla"])
            .args(["--epochs", "3", "--batch-size", "8", "--train-size", "0"])
            .args(["--lr-head", "0.01", "--model"])
            .arg(&model)
            .arg("--train-file")
            .arg(&train)
            .arg("--dev-file")
            .arg(&dev)
            .arg("--output-dir")
            .arg(&run)
            .env_remove("GLUE_DIR"),
    );
    let config = read_json(&run.join("run.json"));
    assert_eq!(config["task"], "custom");
    assert_eq!(config["labels"], serde_json::json!(["meh", "neg", "pos"]));
    assert_eq!(config["problem_type"], "classification");

    // Predictions carry the label strings; macro-F1 recomputed from them matches the record.
    let summary = read_json(&run.join("summary.json"));
    let best = &summary["best"];
    let predictions: Vec<String> =
        std::fs::read_to_string(run.join("checkpoints/best/dev_predictions.tsv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split('\t').nth(1).unwrap().to_string())
            .collect();
    let gold: Vec<String> = std::fs::read_to_string(&dev)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap().to_string())
        .collect();
    assert_eq!(predictions.len(), gold.len());
    assert!(
        predictions
            .iter()
            .all(|p| ["meh", "neg", "pos"].contains(&p.as_str()))
    );
    let expected = macro_f1(&gold, &predictions, &["meh", "neg", "pos"]);
    let recorded = best["macro_f1"].as_f64().unwrap();
    assert!(
        (recorded - expected).abs() < 1e-12,
        "{recorded} vs {expected}"
    );
    assert!(best["accuracy"].is_number(), "{summary}");

    // eval reads the labels back from run.json.
    let eval = run_ok(
        binary()
            .args(["eval", "--device", "cpu", "--json", "--run"])
            .arg(&run),
    );
    let eval: serde_json::Value = serde_json::from_str(&eval).unwrap();
    assert_eq!(eval["metrics"]["macro_f1"], best["macro_f1"]);
}

#[test]
fn scores_make_a_regression_task_and_unseen_dev_labels_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let scores = tmp.path().join("scores.csv");
    let rows: String = (0..20)
        .map(|i| format!("the cat is good .,{}\n", i as f64 * 0.25))
        .collect();
    std::fs::write(&scores, format!("sentence,label\n{rows}")).unwrap();
    let out = run_ok(
        binary()
            .args(["data", "--json", "--train-file"])
            .arg(&scores)
            .env_remove("GLUE_DIR"),
    );
    let data: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(data["splits"]["train"]["scores"]["max"], 4.75, "{data}");
    let classes = run_ok(
        binary()
            .args([
                "data",
                "--json",
                "--problem-type",
                "classification",
                "--train-file",
            ])
            .arg(&scores)
            .env_remove("GLUE_DIR"),
    );
    let classes: serde_json::Value = serde_json::from_str(&classes).unwrap();
    assert_eq!(
        classes["splits"]["train"]["labels"]
            .as_object()
            .unwrap()
            .len(),
        20
    );

    // A GLUE task with your own files shows those splits, without reaching for GLUE's test.
    let sst = tmp.path().join("sst.csv");
    std::fs::write(
        &sst,
        "sentence,label\nit is good .,positive\nit is bad .,0\n",
    )
    .unwrap();
    let out = run_ok(
        binary()
            .args(["data", "--json", "--task", "sst2", "--train-file"])
            .arg(&sst)
            .arg("--dev-file")
            .arg(&sst)
            .env_remove("GLUE_DIR")
            .env("HF_ENDPOINT", "http://127.0.0.1:9")
            .env("HF_HUB_OFFLINE", "1"),
    );
    let data: serde_json::Value = serde_json::from_str(&out).unwrap();
    let splits: Vec<&String> = data["splits"].as_object().unwrap().keys().collect();
    assert_eq!(splits, ["dev", "train"]);

    let (train, dev) = (tmp.path().join("train.csv"), tmp.path().join("dev.csv"));
    write_csv(&train, 6, 0);
    std::fs::write(
        &dev,
        "sentence,label\nthe cat is good .,pos\nit is bad .,awful\n",
    )
    .unwrap();
    let result = binary()
        .args(["data", "--train-file"])
        .arg(&train)
        .arg("--dev-file")
        .arg(&dev)
        .env_remove("GLUE_DIR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("dev.csv:3")
            && stderr.contains("awful")
            && stderr.contains("meh, neg, pos"),
        "{stderr}"
    );
}

/// A `text,label` CSV (as most people's files are) trains without naming its columns: the text
/// column is the one besides the label (run_glue.py's rule), a note says so, run.json records
/// it, and every row trains (the paper's 100 is for GLUE). A file with more candidate columns
/// than that asks for --text-a-column by name.
#[test]
fn own_files_find_their_text_columns_and_train_on_every_row() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny-bert");
    common::tiny::write_model(&model, 3, |_| {});
    let (train, dev) = (tmp.path().join("train.csv"), tmp.path().join("dev.csv"));
    for (path, rows, offset) in [(&train, 130, 0), (&dev, 12, 1)] {
        write_csv(path, rows, offset);
        let text = std::fs::read_to_string(path).unwrap();
        std::fs::write(path, text.replacen("sentence,label", "text,label", 1)).unwrap();
    }
    let run = tmp.path().join("run");
    let train_cmd = |train: &Path| {
        let mut cmd = binary();
        cmd.args(["train", "--device", "cpu", "--quiet", "--method", "vanilla"])
            .args(["--epochs", "1", "--batch-size", "32", "--model"])
            .arg(&model)
            .arg("--train-file")
            .arg(train)
            .arg("--dev-file")
            .arg(&dev)
            .arg("--output-dir")
            .arg(&run)
            .env_remove("GLUE_DIR");
        cmd
    };
    let out = train_cmd(&train).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("reading the text from column \"text\""),
        "{stderr}"
    );
    assert!(stderr.contains("130 train"), "every row trains: {stderr}");
    let config = read_json(&run.join("run.json"));
    assert_eq!(config["columns"]["text_a"], "text");
    assert_eq!(config["train_size"], 0);

    let wide = tmp.path().join("wide.csv");
    std::fs::write(&wide, "id,title,body,label\n1,a,b,pos\n2,c,d,neg\n").unwrap();
    let out = train_cmd(&wide).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let line = stderr.trim();
    assert!(
        !line.contains('\n')
            && line.contains("--text-a-column")
            && line.contains("id, title, body, label"),
        "{stderr}"
    );
}
