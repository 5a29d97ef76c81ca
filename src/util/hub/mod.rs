//! Files from the Hugging Face hub, cached in the shared HF cache the way `huggingface_hub` does
//! (`HF_HOME`, `HF_ENDPOINT`, `HF_HUB_OFFLINE`, `HF_TOKEN`, `HF_HUB_ETAG_TIMEOUT` and
//! `HF_HUB_DOWNLOAD_TIMEOUT` read from the environment, with the same defaults).
//!
//! A download runs on its own thread and is watched: the first answer must come within the
//! etag timeout and then bytes must keep arriving within the download timeout, so a stalled
//! network ends in an error instead of a hang. A file is in the cache only once it arrived
//! whole; a broken-off download leaves a `.part` file that the next run resumes.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use hf_hub::{Cache, Repo};
use indicatif::ProgressBar;

pub mod http;

/// Why a hub file could not be had. Each message says what failed and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{file} is not on the hub (HTTP 404)")]
    NotFound { file: String },
    #[error(
        "the hub refused access (HTTP {status}): the repository does not exist, or it is private or gated; check the name, and for a gated repository accept its terms on huggingface.co and set HF_TOKEN to a token with access"
    )]
    Refused { status: u16 },
    #[error("the hub answered HTTP {status} for {file}; retry later")]
    Status { status: u16, file: String },
    #[error(
        "cannot reach the hub at {endpoint} ({why}): check the network, or pass a local --model / --data-dir, or set HF_HUB_OFFLINE=1 to use the cache"
    )]
    Unreachable { endpoint: String, why: String },
    #[error(
        "the download of {file} stalled: no data for {seconds} s (HF_HUB_DOWNLOAD_TIMEOUT / HF_HUB_ETAG_TIMEOUT); retry, a rerun resumes it"
    )]
    Stalled { file: String, seconds: f64 },
    #[error("the download of {file} broke off ({why}); run again to resume it")]
    Broken { file: String, why: String },
    #[error(
        "cannot write {file} into the HF cache at {cache} ({why}); set HF_HOME to a writable folder"
    )]
    Cache {
        file: String,
        cache: String,
        why: String,
    },
    #[error(
        "the hub redirected {file} more than {limit} times (a redirect loop); retry later, or pass a local --model / --data-dir"
    )]
    Redirects { file: String, limit: usize },
    #[error("{0}")]
    Setting(String),
}

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

/// What a download reports as it goes: when data last moved, whether the body has started
/// (before that, the etag timeout applies), and the size the hub announced.
#[derive(Clone)]
pub struct Watch {
    start: Instant,
    last_ms: Arc<AtomicU64>,
    body: Arc<AtomicBool>,
    size: Arc<AtomicU64>,
    bar: Option<ProgressBar>,
}

impl Watch {
    /// A watch on the download of `file`, with a progress bar when stderr is a terminal.
    pub fn new(file: &str) -> Watch {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::hidden().with_message(file.to_string());
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            bar
        });
        Watch {
            start: Instant::now(),
            last_ms: Arc::default(),
            body: Arc::default(),
            size: Arc::default(),
            bar,
        }
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        self.start.elapsed() - Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// The body of `size` bytes starts arriving, `from` of them already in the cache.
    fn started(&self, size: u64, from: u64) {
        self.size.store(size, Ordering::Relaxed);
        self.body.store(true, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.set_length(size);
            bar.set_position(from);
        }
        self.touch();
    }

    fn advanced(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
        self.touch();
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

/// The error of a failed HTTP status (404, 401/403, other 4xx and 5xx); `Ok` otherwise.
fn check_status(status: u16, file: &str) -> Result<(), HubError> {
    let file = file.to_string();
    match status {
        404 => Err(HubError::NotFound { file }),
        401 | 403 => Err(HubError::Refused { status }),
        400.. => Err(HubError::Status { status, file }),
        _ => Ok(()),
    }
}

/// A request that got no answer.
fn from_ureq(error: ureq::Error, file: &str) -> HubError {
    let why = error.to_string();
    match error {
        ureq::Error::Io(e) if !unreachable(&e) => HubError::Broken {
            file: file.to_string(),
            why,
        },
        ureq::Error::Io(_) | ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => {
            HubError::Unreachable {
                endpoint: endpoint(),
                why,
            }
        }
        _ => HubError::Broken {
            file: file.to_string(),
            why,
        },
    }
}

/// A body that broke off.
fn from_body(error: std::io::Error, file: &str) -> HubError {
    HubError::Broken {
        file: file.to_string(),
        why: error.to_string(),
    }
}

/// A write into the HF cache that failed.
fn cache_error(file: &str, error: std::io::Error) -> HubError {
    HubError::Cache {
        file: file.to_string(),
        cache: Cache::from_env().path().display().to_string(),
        why: error.to_string(),
    }
}

/// Whether the hub's host could not be reached at all: no route, a refused connection, or a
/// name that does not resolve (std's resolver error has no kind of its own, only its text),
/// also when the HTTP client wraps it.
fn unreachable(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    let by_kind = matches!(
        e.kind(),
        ConnectionRefused | AddrNotAvailable | HostUnreachable | NetworkUnreachable
    );
    let unresolved = e.to_string().contains("failed to lookup address");
    let wrapped = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<ureq::Error>());
    by_kind
        || unresolved
        || match wrapped {
            Some(ureq::Error::HostNotFound | ureq::Error::ConnectionFailed) => true,
            Some(ureq::Error::Io(inner)) => unreachable(inner),
            _ => false,
        }
}
