//! Bad input gives one-line `FILE:LINE: expected ..., found ...` errors, never a panic.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::Command;

use pac_wgpu::glue::{Columns, DataError, DataSource, Split, Task, read_predictions};
use tempfile::TempDir;

/// A temporary `glue_data` folder holding one file.
fn glue_dir_with(file: &str, contents: &[u8]) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(file);
    std::fs::create_dir_all(path.parent().unwrap()).expect("mkdir");
    std::fs::write(&path, contents).expect("write");
    (dir, path)
}

fn load_error(dir: &Path, task: Task, split: Split) -> anyhow::Error {
    DataSource::new(Some(dir.to_path_buf()))
        .load(&task, split)
        .expect_err("bad input must fail")
}

/// The message is one line: `FILE:LINE: expected ..., found <found>`.
fn assert_error(error: impl Display, file: &Path, line: Option<usize>, found: &str) {
    let message = error.to_string();
    assert!(!message.contains('\n'), "one line: {message:?}");
    let location = match line {
        Some(line) => format!("{}:{line}", file.display()),
        None => file.display().to_string(),
    };
    assert!(
        message.starts_with(&format!("{location}: expected ")),
        "{message:?} should start with {location:?}"
    );
    assert!(
        message.ends_with(&format!(", found {found}")),
        "{message:?}"
    );
}

#[test]
fn wrong_column_count() {
    let rows = "index\tsentence1\tsentence2\tlabel\n0\tA cat sat.\tA cat.\tentailment\n1\tNo tab here.\tentailment\n";
    let (dir, path) = glue_dir_with("RTE/train.tsv", rows.as_bytes());
    assert_error(
        load_error(dir.path(), Task::Rte, Split::Train),
        &path,
        Some(3),
        "3",
    );
}

#[test]
fn non_numeric_score() {
    let header =
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore";
    let rows = format!("{header}\n0\tg\tf\t2012\t1\tnone\tnone\tA man runs.\tA man walks.\thigh\n");
    let (dir, path) = glue_dir_with("STS-B/dev.tsv", rows.as_bytes());
    assert_error(
        load_error(dir.path(), Task::Stsb, Split::Dev),
        &path,
        Some(2),
        "\"high\"",
    );
}

#[test]
fn unknown_label() {
    let rows = "index\tsentence1\tsentence2\tlabel\n0\tA cat sat.\tA cat.\tmaybe\n";
    let (dir, path) = glue_dir_with("RTE/dev.tsv", rows.as_bytes());
    assert_error(
        load_error(dir.path(), Task::Rte, Split::Dev),
        &path,
        Some(2),
        "\"maybe\"",
    );
}

#[test]
fn empty_file() {
    let (dir, path) = glue_dir_with("CoLA/train.tsv", b"");
    let error = load_error(dir.path(), Task::Cola, Split::Train);
    assert_error(error, &path, Some(1), "an empty file");
}

#[test]
fn header_without_rows() {
    let (dir, path) = glue_dir_with("SST-2/dev.tsv", b"sentence\tlabel\n");
    let error = load_error(dir.path(), Task::Sst2, Split::Dev);
    assert_error(error, &path, Some(2), "end of file");
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let error = load_error(dir.path(), Task::Mrpc, Split::Train);
    assert_error(
        error,
        &dir.path().join("MRPC/train.tsv"),
        None,
        "no such file",
    );
}

#[test]
fn missing_column_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("train.csv");
    std::fs::write(&path, "text,label\n\"Great, really.\",1\n").expect("write");
    let error = pac_wgpu::glue::read_user_file(&path, &Columns::default(), &Task::Sst2)
        .expect_err("no sentence column");
    assert_error(error, &path, Some(1), "columns text, label");
}

#[test]
fn invalid_utf8() {
    let (dir, path) = glue_dir_with(
        "SST-2/train.tsv",
        b"sentence\tlabel\nfine .\t1\nbad \xff .\t0\n",
    );
    let error = load_error(dir.path(), Task::Sst2, Split::Train);
    assert_error(error, &path, Some(3), "byte 0xff");
}

#[test]
fn unterminated_csv_quote() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dev.csv");
    std::fs::write(&path, "sentence,label\nok,1\n\"open,0\nmore\n").expect("write");
    let error = pac_wgpu::glue::read_user_file(&path, &Columns::default(), &Task::Sst2)
        .expect_err("unterminated quote");
    assert_error(error, &path, Some(3), "end of file");
}

#[test]
fn jsonl_missing_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("train.jsonl");
    let rows = "{\"sentence\": \"fine\", \"label\": 1}\n{\"text\": \"oops\", \"label\": 0}\n";
    std::fs::write(&path, rows).expect("write");
    let error = pac_wgpu::glue::read_user_file(&path, &Columns::default(), &Task::Sst2)
        .expect_err("missing key");
    assert_error(error, &path, Some(2), "keys label, text");
}

#[test]
fn duplicate_prediction_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("preds.tsv");
    std::fs::write(&path, "index\tprediction\n0\t1\n1\t0\n1\t1\n").expect("write");
    let error: DataError = read_predictions(&path, &Task::Mrpc).expect_err("duplicate");
    assert_error(error, &path, Some(4), "index 1 again");
}

/// Through the binary: exit status non-zero, one `error: FILE:LINE: ...` line, no panic.
#[test]
fn score_command_reports_bad_predictions_in_one_line() {
    let rows = "index\tsentence1\tsentence2\tlabel\n0\tA cat sat.\tA cat.\tentailment\n1\tA dog ran.\tA cat ran.\tnot_entailment\n";
    let (dir, _) = glue_dir_with("RTE/dev.tsv", rows.as_bytes());
    let predictions = dir.path().join("preds.tsv");
    std::fs::write(
        &predictions,
        "index\tprediction\n0\tentailment\n1\tperhaps\n",
    )
    .expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_pac-wgpu"))
        .args(["score", "--task", "rte", "--predictions"])
        .arg(&predictions)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("run pac-wgpu");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let expected = format!("error: {}:3: expected ", predictions.display());
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with(&expected), "{stderr}");
}

/// With no data folder and the hub cache empty, offline mode fails at once and says what to do.
#[test]
fn no_data_offline_says_to_pass_data_dir() {
    let hf_home = tempfile::tempdir().expect("tempdir");
    let output = Command::new(env!("CARGO_BIN_EXE_pac-wgpu"))
        .args(["data", "--task", "rte"])
        .env_remove("GLUE_DIR")
        .env("HF_HOME", hf_home.path())
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("run pac-wgpu");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        stderr.contains("--data-dir") && stderr.contains("GLUE_DIR"),
        "{stderr}"
    );
}
