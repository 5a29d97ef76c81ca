//! Parquet input: the hub's GLUE files (read from an HF cache laid out as the hub client leaves
//! it, so the fallback runs end to end without a network) and users' `.parquet` files. The
//! files are written here with the `parquet` crate's own writer, snappy-compressed with
//! nullable columns, as the hub's are.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::parquet::{Column, texts, write_pair_split, write_parquet};
use pac_wgpu::glue::parquet::read_parquet;
use pac_wgpu::glue::{Columns, DataSource, Example, Label, Split, Task, hub};

/// An HF cache (`HF_HOME`) holding MRPC's three splits, as the hub client leaves it.
fn hub_cache_with_mrpc(home: &Path, glue: &Path) -> Vec<(Split, PathBuf, Vec<Example>)> {
    let repo = home.join("hub/datasets--nyu-mll--glue");
    let revision = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), revision).unwrap();
    let source = DataSource::new(Some(glue.to_path_buf()));
    [Split::Train, Split::Dev, Split::Test]
        .into_iter()
        .map(|split| {
            let examples = source.load(&Task::Mrpc, split).unwrap().examples;
            let file = hub::parquet_file(&Task::Mrpc, split).unwrap();
            let path = repo.join("snapshots").join(revision).join(file);
            write_pair_split(&path, &examples);
            (split, path, examples)
        })
        .collect()
}

#[test]
#[cfg_attr(not(pac_test_glue), ignore = "needs real GLUE: set GLUE_DIR")]
fn hub_files_read_back_as_the_glue_tsv() {
    let glue = common::glue_dir();
    let home = tempfile::tempdir().unwrap();
    for (split, path, examples) in hub_cache_with_mrpc(home.path(), &glue) {
        let read = read_parquet(
            &path,
            &hub::columns(&Task::Mrpc),
            &Task::Mrpc,
            split != Split::Test,
        )
        .unwrap();
        assert_eq!(read, examples, "MRPC {split}");
    }
}

#[test]
#[cfg_attr(not(pac_test_glue), ignore = "needs real GLUE: set GLUE_DIR")]
fn data_command_falls_back_to_the_hub_cache() {
    let glue = common::glue_dir();
    let home = tempfile::tempdir().unwrap();
    hub_cache_with_mrpc(home.path(), &glue);
    let out = Command::new(env!("CARGO_BIN_EXE_pac-wgpu"))
        .args(["data", "--task", "mrpc", "--json"])
        .env_remove("GLUE_DIR")
        .env("HF_HOME", home.path())
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (split, rows) in [("train", 3668), ("dev", 408), ("test", 1725)] {
        assert_eq!(json["splits"][split]["rows"], rows, "{split}");
    }
}

#[test]
fn single_sentence_and_score_labels() {
    let dir = tempfile::tempdir().unwrap();
    let cola = dir.path().join("cola.parquet");
    write_parquet(
        &cola,
        vec![
            Column::Text(
                "sentence",
                texts(&["The book was read.", "Book the read was."]),
            ),
            Column::Long("label", vec![1, 0]),
            Column::Int("idx", vec![0, 1]),
        ],
    );
    let read = read_parquet(&cola, &hub::columns(&Task::Cola), &Task::Cola, true).unwrap();
    assert_eq!(
        read,
        vec![
            Example {
                text_a: "The book was read.".into(),
                text_b: None,
                label: Label::Class(1)
            },
            Example {
                text_a: "Book the read was.".into(),
                text_b: None,
                label: Label::Class(0)
            },
        ]
    );

    let stsb = dir.path().join("stsb.parquet");
    write_parquet(
        &stsb,
        vec![
            Column::Text("sentence1", texts(&["A man plays.", "A cat sits."])),
            Column::Text("sentence2", texts(&["A man is playing.", "A dog runs."])),
            Column::Float("label", vec![4.75, 0.2]),
        ],
    );
    let read = read_parquet(&stsb, &hub::columns(&Task::Stsb), &Task::Stsb, true).unwrap();
    let scores: Vec<Label> = read.iter().map(|e| e.label).collect();
    // The f32 as written in the file, as a TSV would spell it.
    assert_eq!(scores, vec![Label::Score(4.75), Label::Score(0.2)]);
    assert_eq!(read[1].text_b.as_deref(), Some("A dog runs."));
}

#[test]
fn test_split_labels_are_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.parquet");
    write_parquet(
        &path,
        vec![
            Column::Text("sentence", texts(&["one", "two"])),
            Column::Long("label", vec![-1, -1]),
        ],
    );
    let read = read_parquet(&path, &hub::columns(&Task::Sst2), &Task::Sst2, false).unwrap();
    assert!(read.iter().all(|e| e.label == Label::None));
    let err = read_parquet(&path, &hub::columns(&Task::Sst2), &Task::Sst2, true).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:1: expected a label (one of 0, 1), found \"-1\"",
            path.display()
        )
    );
}

/// The one-line error of reading `path` as an SST-2 file with columns sentence/label.
fn sst2_error(path: &Path) -> String {
    read_parquet(path, &Columns::default(), &Task::Sst2, true)
        .unwrap_err()
        .to_string()
}

#[test]
fn bad_files_give_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name);

    let no_label = at("no_label.parquet");
    write_parquet(
        &no_label,
        vec![
            Column::Text("sentence", texts(&["a"])),
            Column::Int("idx", vec![0]),
        ],
    );
    assert_eq!(
        sst2_error(&no_label),
        format!(
            "{}: expected a column named \"label\", found columns sentence, idx",
            no_label.display()
        )
    );

    let bad_label = at("bad_label.parquet");
    write_parquet(
        &bad_label,
        vec![
            Column::Text("sentence", texts(&["a", "b", "c"])),
            Column::Long("label", vec![0, 1, 7]),
        ],
    );
    assert_eq!(
        sst2_error(&bad_label),
        format!(
            "{}:3: expected a label (one of 0, 1), found \"7\"",
            bad_label.display()
        )
    );

    let number_text = at("number_text.parquet");
    write_parquet(
        &number_text,
        vec![
            Column::Long("sentence", vec![5]),
            Column::Long("label", vec![0]),
        ],
    );
    assert_eq!(
        sst2_error(&number_text),
        format!(
            "{}:1: expected a string in column \"sentence\", found \"5\"",
            number_text.display()
        )
    );

    let empty = at("empty.parquet");
    write_parquet(
        &empty,
        vec![
            Column::Text("sentence", vec![]),
            Column::Long("label", vec![]),
        ],
    );
    assert_eq!(
        sst2_error(&empty),
        format!("{}: expected a data row, found no rows", empty.display())
    );

    let not_parquet = at("text.parquet");
    std::fs::write(&not_parquet, "sentence\tlabel\nhello\t1\n").unwrap();
    let message = sst2_error(&not_parquet);
    assert!(
        message.starts_with(&format!(
            "{}: expected a parquet file, found an unreadable one (",
            not_parquet.display()
        )) && !message.contains('\n'),
        "{message}"
    );

    assert_eq!(
        sst2_error(&at("missing.parquet")),
        format!(
            "{}: expected a readable parquet file, found no such file",
            at("missing.parquet").display()
        )
    );
}

#[test]
fn user_parquet_file_through_the_data_command() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("mine.parquet");
    write_parquet(
        &train,
        vec![
            Column::Text("review", texts(&["great", "awful", "fine", "bad"])),
            Column::Text("stars", texts(&["positive", "negative", "1", "0"])),
        ],
    );
    let out = Command::new(env!("CARGO_BIN_EXE_pac-wgpu"))
        .args(["data", "--task", "sst2", "--train-file"])
        .arg(&train)
        .args([
            "--text-a-column",
            "review",
            "--label-column",
            "stars",
            "--json",
        ])
        .args(["--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["splits"]["train"]["rows"], 4);
    assert_eq!(json["splits"]["train"]["labels"]["positive"], 2, "{json}");
}
