//! Hub fallback for runs without a data folder: the `nyu-mll/glue` dataset on the Hugging Face
//! hub, cached in the shared HF cache (through [`crate::util::hub`]).
//!
//! The hub holds GLUE as parquet, one file per split, with the task's own column names and
//! labels as Hugging Face class ids (−1 in test splits).

use std::path::PathBuf;

use anyhow::bail;
use hf_hub::Repo;

use super::parquet::read_parquet;
use super::read::Columns;
use super::task::{Example, Split, Task};
use crate::util::hub;

/// The hub dataset holding GLUE.
pub const REPO: &str = "nyu-mll/glue";

const NO_DATA: &str = "pass --data-dir D or set GLUE_DIR to a glue_data folder";

/// The parquet file of `split` of `task` in [`REPO`], or `None` if the task has no such split.
pub fn parquet_file(task: &Task, split: Split) -> Option<String> {
    let config = match task {
        Task::Cola => "cola",
        Task::Sst2 => "sst2",
        Task::Mrpc => "mrpc",
        Task::Stsb => "stsb",
        Task::Qqp => "qqp",
        Task::Mnli | Task::MnliMm => "mnli",
        Task::Qnli => "qnli",
        Task::Rte => "rte",
        Task::Wnli => "wnli",
        Task::Ax => "ax",
        Task::Custom(_) => return None,
    };
    let name = match (task, split) {
        (Task::Ax, Split::Train | Split::Dev) => return None,
        (_, Split::Train) => "train",
        (Task::Mnli, Split::Dev) => "validation_matched",
        (Task::MnliMm, Split::Dev) => "validation_mismatched",
        (_, Split::Dev) => "validation",
        (Task::Mnli, Split::Test) => "test_matched",
        (Task::MnliMm, Split::Test) => "test_mismatched",
        (_, Split::Test) => "test",
    };
    Some(format!("{config}/{name}-00000-of-00001.parquet"))
}

/// The local path of `split` of `task` as parquet: from the HF cache, else downloaded into it.
/// With `HF_HUB_OFFLINE` set, or with the hub unreachable, fails at once with an error that
/// says to pass --data-dir or set GLUE_DIR.
pub fn fetch(task: &Task, split: Split) -> anyhow::Result<PathBuf> {
    let Some(file) = parquet_file(task, split) else {
        bail!("{task} has no {split} split");
    };
    let repo = Repo::dataset(REPO.to_string());
    if let Some(path) = hub::cached(&repo, &file) {
        return Ok(path);
    }
    if hub::offline() {
        bail!("{REPO}/{file} is not in the HF cache and HF_HUB_OFFLINE is set: {NO_DATA}");
    }
    hub::get(&repo, &file).map_err(|e| {
        anyhow::anyhow!(
            "no GLUE data folder, and {REPO}/{file} could not be downloaded: {e}; or {NO_DATA}"
        )
    })
}

/// The hub's column names for `task`: text a, text b, label.
pub fn columns(task: &Task) -> Columns {
    let (a, b) = match task {
        Task::Cola | Task::Sst2 | Task::Custom(_) => ("sentence", None),
        Task::Mrpc | Task::Stsb | Task::Rte | Task::Wnli => ("sentence1", Some("sentence2")),
        Task::Qqp => ("question1", Some("question2")),
        Task::Mnli | Task::MnliMm | Task::Ax => ("premise", Some("hypothesis")),
        Task::Qnli => ("question", Some("sentence")),
    };
    Columns {
        text_a: a.to_string(),
        text_b: b.map(str::to_string),
        label: "label".to_string(),
    }
}

/// Reads `split` of `task` from the hub: from the HF cache, else downloaded into it first.
pub fn load_split(task: &Task, split: Split) -> anyhow::Result<(PathBuf, Vec<Example>)> {
    let path = fetch(task, split)?;
    let examples = read_parquet(&path, &columns(task), task, split != Split::Test)?;
    Ok((path, examples))
}
