//! Files from the Hugging Face hub, cached in the shared HF cache the way `huggingface_hub` does
//! (`HF_HOME`, `HF_ENDPOINT`, `HF_HUB_OFFLINE`, `HF_TOKEN`, `HF_HUB_ETAG_TIMEOUT` and
//! `HF_HUB_DOWNLOAD_TIMEOUT` read from the environment, with the same defaults).
//!
//! A download runs on its own thread and is watched: the first answer must come within the
//! etag timeout and then bytes must keep arriving within the download timeout, so a stalled
//! network ends in an error instead of a hang. A file is in the cache only once it arrived
//! whole; a broken-off download leaves a `.part` file that the next run resumes.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use hf_hub::{Cache, Repo};

mod error;
pub mod http;
mod watch;

pub use error::HubError;
pub use watch::Watch;

/// Whether `HF_HUB_OFFLINE` asks for the cache only.
pub fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

/// `file` of `repo` from the HF cache, if a whole copy is there.
pub fn cached(repo: &Repo, file: &str) -> Option<PathBuf> {
    Cache::from_env().repo(repo.clone()).get(file)
}

/// `file` of `repo`: from the HF cache, else downloaded into it.
pub fn get(repo: &Repo, file: &str) -> Result<PathBuf, HubError> {
    match cached(repo, file) {
        Some(path) => Ok(path),
        None => download(repo, file),
    }
}

/// Whether the hub has `file` in `repo` (asks for its first byte only).
pub fn exists(repo: &Repo, file: &str) -> Result<bool, HubError> {
    let client = client();
    let (tx, rx) = mpsc::channel();
    let (repo, name) = (repo.clone(), file.to_string());
    std::thread::spawn(move || {
        let _ = tx.send(client.metadata(&repo, &name));
    });
    let limit = seconds("HF_HUB_ETAG_TIMEOUT")?;
    match rx.recv_timeout(limit) {
        Ok(Ok(_)) => Ok(true),
        Ok(Err(HubError::NotFound { .. })) => Ok(false),
        Ok(Err(other)) => Err(other),
        Err(_) => Err(HubError::Stalled {
            file: file.to_string(),
            seconds: limit.as_secs_f64(),
        }),
    }
}

fn endpoint() -> String {
    let endpoint = std::env::var("HF_ENDPOINT");
    let endpoint = endpoint.as_deref().unwrap_or("https://huggingface.co");
    endpoint.trim_end_matches('/').to_string()
}

/// The hub's client, with `HF_TOKEN` when set.
fn client() -> http::Client {
    let token = std::env::var("HF_TOKEN")
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    http::Client::new(&endpoint(), token, Cache::from_env())
}

/// A timeout in seconds from the environment variable `name`, 10 s when unset.
fn seconds(name: &str) -> Result<Duration, HubError> {
    match std::env::var(name) {
        Err(_) => Ok(Duration::from_secs(10)),
        Ok(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| {
                HubError::Setting(format!(
                    "{name}={v:?}: expected a positive number of seconds"
                ))
            }),
    }
}

fn download(repo: &Repo, file: &str) -> Result<PathBuf, HubError> {
    let (etag_limit, body_limit) = (
        seconds("HF_HUB_ETAG_TIMEOUT")?,
        seconds("HF_HUB_DOWNLOAD_TIMEOUT")?,
    );
    let client = client();
    let watch = Watch::new(file);
    let (tx, rx) = mpsc::channel();
    let (repo, name, progress) = (repo.clone(), file.to_string(), watch.clone());
    std::thread::spawn(move || {
        let _ = tx.send(client.download(&repo, &name, &progress));
    });
    let result = loop {
        let limit = if watch.body.load(Ordering::Relaxed) {
            body_limit
        } else {
            etag_limit
        };
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Ok(path)) => break whole(path, file, watch.size.load(Ordering::Relaxed)),
            Ok(Err(e)) => break Err(e),
            Err(RecvTimeoutError::Timeout) if watch.idle() > limit => {
                break Err(HubError::Stalled {
                    file: file.to_string(),
                    seconds: limit.as_secs_f64(),
                });
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                break Err(HubError::Broken {
                    file: file.to_string(),
                    why: "the download thread ended without an answer".to_string(),
                });
            }
        }
    };
    if let Some(bar) = &watch.bar {
        bar.finish_and_clear();
    }
    result
}

/// `path` if it holds all `size` bytes the hub announced; otherwise the short copy leaves the
/// cache (a body without a length can end early without an error) and the download failed.
fn whole(path: PathBuf, file: &str, size: u64) -> Result<PathBuf, HubError> {
    let got = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    if got == size {
        return Ok(path);
    }
    if let Ok(blob) = std::fs::canonicalize(&path) {
        let _ = std::fs::remove_file(blob);
    }
    let _ = std::fs::remove_file(&path);
    Err(HubError::Broken {
        file: file.to_string(),
        why: format!("{got} of {size} bytes arrived"),
    })
}
