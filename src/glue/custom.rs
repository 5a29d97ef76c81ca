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
