//! Where a task's splits are read from: a `glue_data` folder, a user's file, or the hub.

use std::path::{Path, PathBuf};

use super::error::DataError;
#[cfg(feature = "native")]
use super::hub;
#[cfg(feature = "native")]
use super::parquet;
use super::read::{self, Columns};
use super::task::{Example, Label, Split, Task};

/// The examples of one split and where they were read from.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub task: Task,
    pub split: Split,
    pub source: PathBuf,
    pub examples: Vec<Example>,
}

/// Where to read a task's splits from.
#[derive(Clone, Debug, Default)]
pub struct DataSource {
    /// A `glue_data` folder; `None` means the hub.
    pub glue_dir: Option<PathBuf>,
    /// A user file replacing the train split.
    pub train_file: Option<PathBuf>,
    /// A user file replacing the dev split.
    pub dev_file: Option<PathBuf>,
    /// The columns to read from `train_file` and `dev_file`.
    pub columns: Columns,
}

impl Dataset {
    /// The gold labels in example order.
    pub fn labels(&self) -> Vec<Label> {
        self.examples.iter().map(|e| e.label).collect()
    }
}

impl DataSource {
    /// Reads from `data_dir`, else from env `GLUE_DIR` (if set and not empty), else the hub.
    pub fn new(data_dir: Option<PathBuf>) -> DataSource {
        let glue_dir = data_dir.or_else(|| {
            std::env::var_os("GLUE_DIR")
                .filter(|dir| !dir.is_empty())
                .map(PathBuf::from)
        });
        DataSource {
            glue_dir,
            ..DataSource::default()
        }
    }

    fn user_file(&self, split: Split) -> Option<&Path> {
        match split {
            Split::Train => self.train_file.as_deref(),
            Split::Dev => self.dev_file.as_deref(),
            Split::Test => None,
        }
    }

    /// Whether `split` can be read without error for a missing file: a user file is given for
    /// it, one of its GLUE files exists, or (with no data folder) the task has it on the hub.
    pub fn has_split(&self, task: &Task, split: Split) -> bool {
        if self.user_file(split).is_some() {
            return true;
        }
        match &self.glue_dir {
            Some(dir) => read::find_glue_file(dir, task, split).is_some(),
            None => task.splits().contains(&split),
        }
    }

    /// Reads one split of `task`.
    pub fn load(&self, task: &Task, split: Split) -> anyhow::Result<Dataset> {
        let (source, examples) = if let Some(file) = self.user_file(split) {
            (
                file.to_path_buf(),
                read_user_file(file, &self.columns, task)?,
            )
        } else if let Some(dir) = &self.glue_dir {
            read::read_glue(dir, task, split)?
        } else {
            from_hub(task, split)?
        };
        Ok(Dataset {
            task: task.clone(),
            split,
            source,
            examples,
        })
    }
}

#[cfg(feature = "native")]
fn from_hub(task: &Task, split: Split) -> anyhow::Result<(PathBuf, Vec<Example>)> {
    hub::load_split(task, split)
}

#[cfg(not(feature = "native"))]
fn from_hub(task: &Task, split: Split) -> anyhow::Result<(PathBuf, Vec<Example>)> {
    anyhow::bail!(
        "{task} {}: no data folder given, and this build cannot reach the hub",
        split.name()
    )
}

/// Reads a user's data file: parquet by its extension, else TSV, CSV or JSON Lines
/// ([`read::read_text_file`]).
pub fn read_user_file(
    path: &Path,
    columns: &Columns,
    task: &Task,
) -> Result<Vec<Example>, DataError> {
    let parquet = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    if parquet {
        #[cfg(feature = "native")]
        return parquet::read_parquet(path, columns, task, columns.labelled());
        #[cfg(not(feature = "native"))]
        return Err(DataError::new(
            path,
            None,
            "a .tsv, .csv or .jsonl file",
            "a parquet file (this build reads no parquet)",
        ));
    } else {
        read::read_text_file(path, columns, task)
    }
}
