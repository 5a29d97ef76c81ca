//! Why a hub file could not be had, from what the HTTP client, the hub or the cache said.

use std::path::Path;

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

/// The error of a failed HTTP status (404, 401/403, other 4xx and 5xx); `Ok` otherwise.
pub(super) fn check_status(status: u16, file: &str) -> Result<(), HubError> {
    let file = file.to_string();
    match status {
        404 => Err(HubError::NotFound { file }),
        401 | 403 => Err(HubError::Refused { status }),
        400.. => Err(HubError::Status { status, file }),
        _ => Ok(()),
    }
}

/// A request to `endpoint` that got no answer.
pub(super) fn from_ureq(error: ureq::Error, file: &str, endpoint: &str) -> HubError {
    let why = error.to_string();
    match error {
        ureq::Error::Io(e) if !unreachable(&e) => HubError::Broken {
            file: file.to_string(),
            why,
        },
        ureq::Error::Io(_) | ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => {
            HubError::Unreachable {
                endpoint: endpoint.to_string(),
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
pub(super) fn from_body(error: std::io::Error, file: &str) -> HubError {
    HubError::Broken {
        file: file.to_string(),
        why: error.to_string(),
    }
}

/// A write into the HF cache at `cache` that failed.
pub(super) fn cache_error(file: &str, error: std::io::Error, cache: &Path) -> HubError {
    HubError::Cache {
        file: file.to_string(),
        cache: cache.display().to_string(),
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
