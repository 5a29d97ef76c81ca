//! Hub fallback for runs without a data folder: the `nyu-mll/glue` dataset on the Hugging Face
//! hub, cached in the shared HF cache (`HF_HOME`, `HF_ENDPOINT` and `HF_HUB_OFFLINE` respected).
//!
//! The hub holds GLUE as parquet, one file per split, with the task's own column names and
//! labels as Hugging Face class ids (−1 in test splits).

use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo};

use super::parquet::read_parquet;
use super::{Columns, Example, Split, Task};

/// The hub dataset holding GLUE.
pub const REPO: &str = "nyu-mll/glue";

const NO_DATA: &str = "pass --data-dir D or set GLUE_DIR to a glue_data folder";

/// The parquet file of `split` of `task` in [`REPO`], or `None` if the task has no such split.
pub fn parquet_file(task: Task, split: Split) -> Option<String> {
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

/// Whether env `HF_HUB_OFFLINE` asks for the cache only.
fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

/// Fails within seconds when the hub's host cannot be reached, rather than leaving that to
/// the HTTP client's timeouts. Skipped behind a proxy.
fn check_reachable(endpoint: &str) -> anyhow::Result<()> {
    let proxied = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
        .iter()
        .any(|name| std::env::var_os(name).is_some());
    if proxied {
        return Ok(());
    }
    let (scheme, rest) = endpoint.split_once("://").unwrap_or(("https", endpoint));
    let host = rest.split('/').next().unwrap_or(rest);
    let address = if host.contains(':') {
        host.to_string()
    } else {
        let port = if scheme == "http" { 80 } else { 443 };
        format!("{host}:{port}")
    };
    let reachable = address
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {host}"))?
        .any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(5)).is_ok());
    anyhow::ensure!(reachable, "cannot connect to {address}");
    Ok(())
}

/// The local path of `split` of `task` as parquet: from the HF cache, else downloaded into it.
/// With `HF_HUB_OFFLINE` set, or with the hub unreachable, fails at once with an error that
/// says to pass --data-dir or set GLUE_DIR.
pub fn fetch(task: Task, split: Split) -> anyhow::Result<PathBuf> {
    let Some(file) = parquet_file(task, split) else {
        bail!("{task} has no {split} split");
    };
    let repo = Repo::dataset(REPO.to_string());
    if let Some(path) = Cache::from_env().repo(repo.clone()).get(&file) {
        return Ok(path);
    }
    if offline() {
        bail!("{REPO}/{file} is not in the HF cache and HF_HUB_OFFLINE is set: {NO_DATA}");
    }
    let endpoint =
        std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".to_string());
    if let Err(e) = check_reachable(&endpoint) {
        bail!("no GLUE data folder, and the hub is unreachable ({e:#}): {NO_DATA}");
    }
    let api = ApiBuilder::from_env().with_progress(false).build()?;
    api.repo(repo)
        .get(&file)
        .map_err(|e| anyhow::anyhow!("downloading {REPO}/{file} failed ({e}): {NO_DATA}"))
}

/// The hub's column names for `task`: text a, text b, label.
pub fn columns(task: Task) -> Columns {
    let (a, b) = match task {
        Task::Cola | Task::Sst2 => ("sentence", None),
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
pub fn load_split(task: Task, split: Split) -> anyhow::Result<(PathBuf, Vec<Example>)> {
    let path = fetch(task, split)?;
    let examples = read_parquet(&path, &columns(task), task, split != Split::Test)?;
    Ok((path, examples))
}
