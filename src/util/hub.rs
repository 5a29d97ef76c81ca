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

use hf_hub::api::Progress;
use hf_hub::api::sync::{Api, ApiBuilder, ApiError};
use hf_hub::{Cache, Repo};
use indicatif::ProgressBar;

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
    let api = api()?;
    let url = api.repo(repo.clone()).url(file);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(api.metadata(&url));
    });
    let limit = seconds("HF_HUB_ETAG_TIMEOUT")?;
    match rx.recv_timeout(limit) {
        Ok(Ok(_)) => Ok(true),
        Ok(Err(e)) => match explain(e, file) {
            HubError::NotFound { .. } => Ok(false),
            other => Err(other),
        },
        Err(_) => Err(HubError::Stalled {
            file: file.to_string(),
            seconds: limit.as_secs_f64(),
        }),
    }
}

fn endpoint() -> String {
    std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".to_string())
}

fn api() -> Result<Api, HubError> {
    let token = std::env::var("HF_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty());
    let mut builder = ApiBuilder::from_env().with_progress(false).with_retries(0);
    if let Some(token) = token {
        builder = builder.with_token(Some(token.trim().to_string()));
    }
    builder
        .build()
        .map_err(|e| HubError::Setting(e.to_string()))
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
struct Watch {
    start: Instant,
    last_ms: Arc<AtomicU64>,
    body: Arc<AtomicBool>,
    size: Arc<AtomicU64>,
    bar: Option<ProgressBar>,
}

impl Watch {
    fn new() -> Watch {
        Watch {
            start: Instant::now(),
            last_ms: Arc::default(),
            body: Arc::default(),
            size: Arc::default(),
            bar: std::io::stderr().is_terminal().then(ProgressBar::hidden),
        }
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        self.start.elapsed() - Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

impl Progress for Watch {
    fn init(&mut self, size: usize, filename: &str) {
        self.size.store(size as u64, Ordering::Relaxed);
        self.body.store(true, Ordering::Relaxed);
        if let Some(bar) = &mut self.bar {
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            Progress::init(bar, size, filename);
        }
        self.touch();
    }

    fn update(&mut self, size: usize) {
        if let Some(bar) = &mut self.bar {
            Progress::update(bar, size);
        }
        self.touch();
    }

    fn finish(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn download(repo: &Repo, file: &str) -> Result<PathBuf, HubError> {
    let (etag_limit, body_limit) = (
        seconds("HF_HUB_ETAG_TIMEOUT")?,
        seconds("HF_HUB_DOWNLOAD_TIMEOUT")?,
    );
    let repo_api = api()?.repo(repo.clone());
    let watch = Watch::new();
    let (tx, rx) = mpsc::channel();
    let (name, progress) = (file.to_string(), watch.clone());
    std::thread::spawn(move || {
        let _ = tx.send(repo_api.download_with_progress(&name, progress));
    });
    loop {
        let limit = if watch.body.load(Ordering::Relaxed) {
            body_limit
        } else {
            etag_limit
        };
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Ok(path)) => return whole(path, file, watch.size.load(Ordering::Relaxed)),
            Ok(Err(e)) => return Err(explain(e, file)),
            Err(RecvTimeoutError::Timeout) if watch.idle() > limit => {
                return Err(HubError::Stalled {
                    file: file.to_string(),
                    seconds: limit.as_secs_f64(),
                });
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                return Err(HubError::Broken {
                    file: file.to_string(),
                    why: "the download thread ended without an answer".to_string(),
                });
            }
        }
    }
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

fn explain(error: ApiError, file: &str) -> HubError {
    let file = file.to_string();
    match error {
        ApiError::RequestError(e) => match *e {
            ureq::Error::StatusCode(404) => HubError::NotFound { file },
            ureq::Error::StatusCode(status @ (401 | 403)) => HubError::Refused { status },
            ureq::Error::StatusCode(status) => HubError::Status { status, file },
            ureq::Error::Io(e) if unreachable(&e) => HubError::Unreachable {
                endpoint: endpoint(),
                why: e.to_string(),
            },
            e @ (ureq::Error::HostNotFound | ureq::Error::ConnectionFailed) => {
                HubError::Unreachable {
                    endpoint: endpoint(),
                    why: e.to_string(),
                }
            }
            e => HubError::Broken {
                file,
                why: e.to_string(),
            },
        },
        ApiError::IoError(e) if unreachable(&e) => HubError::Unreachable {
            endpoint: endpoint(),
            why: e.to_string(),
        },
        ApiError::IoError(e) if from_network(&e) => HubError::Broken {
            file,
            why: e.to_string(),
        },
        ApiError::IoError(e) => HubError::Cache {
            file,
            cache: Cache::from_env().path().display().to_string(),
            why: e.to_string(),
        },
        ApiError::LockAcquisition(path) => HubError::Cache {
            file,
            cache: path.display().to_string(),
            why: "another process is downloading it; wait for it or retry".to_string(),
        },
        e => HubError::Broken {
            file,
            why: e.to_string(),
        },
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

/// Whether an I/O error of a download came from the connection rather than from the cache's
/// file system: the HTTP client's own errors, and the kinds only sockets give.
fn from_network(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    e.get_ref().is_some_and(|inner| inner.is::<ureq::Error>())
        || matches!(
            e.kind(),
            ConnectionReset | ConnectionAborted | UnexpectedEof | TimedOut | BrokenPipe
        )
}
