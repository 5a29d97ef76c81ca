//! `--task custom`: the user's own train and dev files, with the labels the train file uses.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::DataError;
use super::read::Columns;
use super::source::read_user_file;
use super::task::{CustomLabels, Task};

/// Whether a custom task's labels are classes or scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProblemType {
    Classification,
    Regression,
}

impl std::str::FromStr for ProblemType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "classification" => Ok(ProblemType::Classification),
            "regression" => Ok(ProblemType::Regression),
            _ => Err(format!(
                "unknown problem type {s:?}: expected classification or regression"
            )),
        }
    }
}

/// More distinct numbers than this make numeric labels a regression target.
const MAX_NUMERIC_CLASSES: usize = 10;

/// The labels of `train_file`: the sorted distinct label strings, or a regression target when
/// every label is a number and there are more than a few distinct ones (`problem` overrides).
pub fn infer_labels(
    train_file: &Path,
    columns: &Columns,
    problem: Option<ProblemType>,
) -> Result<(Vec<String>, ProblemType), DataError> {
    // The label column read as text: an unknown custom task reads every label as none.
    let as_text = Columns {
        text_a: columns.label.clone(),
        text_b: None,
        label: columns.label.clone(),
    };
    let rows = read_user_file(train_file, &as_text, &Task::Custom(CustomLabels::unknown()))?;
    let mut names: Vec<String> = rows
        .into_iter()
        .map(|e| e.text_a.trim().to_string())
        .collect();
    names.sort();
    names.dedup();
    let numeric = names
        .iter()
        .all(|n| n.parse::<f64>().is_ok_and(f64::is_finite));
    let problem = problem.unwrap_or(if numeric && names.len() > MAX_NUMERIC_CLASSES {
        ProblemType::Regression
    } else {
        ProblemType::Classification
    });
    if problem == ProblemType::Regression {
        if let Some(bad) = names.iter().find(|n| n.parse::<f64>().is_err()) {
            return Err(DataError::new(
                train_file,
                None,
                "numeric labels for a regression task",
                format!("{bad:?}"),
            ));
        }
        names.clear();
    }
    Ok((names, problem))
}

/// The task of custom `names`.
pub fn task(names: &[String], problem: ProblemType) -> Task {
    Task::Custom(CustomLabels {
        names: names.into(),
        regression: problem == ProblemType::Regression,
    })
}

/// The text columns of a user's file when none are named: `sentence` when the file has it, else
/// as run_glue.py picks them for its own files from the columns other than the label:
/// `sentence1` and `sentence2` when present, else the only one (a single text) or the two (a
/// pair). More than two leave the choice to `--text-a-column`/`--text-b-column`.
pub fn text_columns(file: &Path, label: &str) -> Result<(String, Option<String>), DataError> {
    let names = column_names(file)?;
    let has = |name: &str| names.iter().any(|n| n == name);
    if has("sentence") {
        return Ok(("sentence".into(), None));
    }
    if has("sentence1") && has("sentence2") {
        return Ok(("sentence1".into(), Some("sentence2".into())));
    }
    let texts: Vec<&String> = names.iter().filter(|n| *n != label).collect();
    match texts[..] {
        [a] => Ok((a.clone(), None)),
        [a, b] => Ok((a.clone(), Some(b.clone()))),
        _ => Err(DataError::new(
            file,
            None,
            format!(
                "one or two text columns besides {label:?} (or name them with --text-a-column and --text-b-column)"
            ),
            format!("columns {}", names.join(", ")),
        )),
    }
}

/// The text columns of new text in `file` for a model trained on `trained`'s columns, with no
/// label column: the same names when the file has them, else the one or two that
/// [`text_columns`] finds, when that is as many texts as training had.
pub fn text_columns_as(file: &Path, trained: &Columns) -> Result<Columns, DataError> {
    let names = column_names(file)?;
    let has = |name: &str| names.iter().any(|n| n == name);
    let same = has(&trained.text_a) && trained.text_b.as_deref().is_none_or(has);
    let (text_a, text_b) = match same {
        true => (trained.text_a.clone(), trained.text_b.clone()),
        false => text_columns(file, &trained.label)?,
    };
    if text_b.is_some() != trained.text_b.is_some() {
        let texts = 1 + usize::from(trained.text_b.is_some());
        return Err(DataError::new(
            file,
            None,
            format!(
                "{texts} text column(s), as the model was trained on (name them with --text-a-column and --text-b-column)"
            ),
            format!("columns {}", names.join(", ")),
        ));
    }
    Ok(Columns {
        text_a,
        text_b,
        label: String::new(),
    })
}

/// The columns of a user's file: its header (TSV, CSV), its first object's keys in order (JSON
/// Lines) or its schema (parquet).
fn column_names(file: &Path) -> Result<Vec<String>, DataError> {
    let parquet = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    if parquet {
        #[cfg(feature = "native")]
        return super::parquet::column_names(file);
    }
    super::read::column_names(file)
}
