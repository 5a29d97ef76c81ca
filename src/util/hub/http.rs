//! The hub's HTTP: one request per hop, redirects followed here (at most [`MAX_REDIRECTS`]), and
//! the token sent only to the origin of `HF_ENDPOINT` (its scheme, host and port): a redirect
//! to a CDN or any other host, or from https down to http, carries no `Authorization`.

use std::io::Read;
use std::path::{Path, PathBuf};

use hf_hub::{Cache, Repo};
use ureq::http::Response;

use super::error::{HubError, cache_error, check_status, from_body, from_ureq};
use super::watch::Watch;

/// Redirects one request may take (the hub answers with one or two).
const MAX_REDIRECTS: usize = 10;

/// What the hub says of a file before its download: its blob name, commit and size.
#[derive(Debug)]
pub struct Metadata {
    pub etag: String,
    pub commit: String,
    pub size: u64,
    /// Where the bytes are, after the redirects.
    pub url: String,
}

/// Requests to one hub (`endpoint`), downloads into one HF cache.
pub struct Client {
    agent: ureq::Agent,
    endpoint: String,
    origin: String,
    token: Option<String>,
    cache: Cache,
}

impl Client {
    pub fn new(endpoint: &str, token: Option<String>, cache: Cache) -> Client {
        let agent = ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .user_agent(concat!("pac-wgpu/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Client {
            agent,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            origin: origin(endpoint).unwrap_or_default(),
            token,
            cache,
        }
    }

    /// The URL of `file` in `repo` on the hub.
    pub fn url(&self, repo: &Repo, file: &str) -> String {
        format!(
            "{}/{}/resolve/{}/{file}",
            self.endpoint,
            repo.url(),
            repo.url_revision()
        )
    }

    /// GET `url` (bytes from `start` on), following redirects; the answer that is not one,
    /// and the hub's own headers (ETag, commit) from the last answer of the hub's origin.
    fn get(&self, url: &str, range: &str, file: &str) -> Result<Answer, HubError> {
        let (mut url, mut hub_headers) = (url.to_string(), HubHeaders::default());
        for _ in 0..=MAX_REDIRECTS {
            let mut request = self.agent.get(&url).header("Range", range);
            let same_origin = origin(&url).is_some_and(|o| o == self.origin);
            if let (true, Some(token)) = (same_origin, &self.token) {
                request = request.header("Authorization", format!("Bearer {token}"));
            }
            let response = request
                .call()
                .map_err(|e| from_ureq(e, file, &self.endpoint))?;
            if same_origin {
                hub_headers.update(&response);
            }
            let status = response.status().as_u16();
            if !(300..400).contains(&status) || status == 304 {
                return Ok(Answer {
                    response,
                    url,
                    hub_headers,
                });
            }
            let location = header(&response, "location").ok_or_else(|| HubError::Status {
                status,
                file: format!("{file} (a redirect without a Location)"),
            })?;
            url = join(&url, &location).ok_or_else(|| HubError::Status {
                status,
                file: format!("{file} (a redirect to {location:?})"),
            })?;
        }
        Err(HubError::Redirects {
            file: file.to_string(),
            limit: MAX_REDIRECTS,
        })
    }

    /// Where `file` is and how large, asking for its first byte.
    pub fn metadata(&self, repo: &Repo, file: &str) -> Result<Metadata, HubError> {
        let answer = self.get(&self.url(repo, file), "bytes=0-0", file)?;
        let size = answer.total_size(file)?;
        let bad = |what: &str| HubError::Status {
            status: answer.response.status().as_u16(),
            file: format!("{file} (no valid {what} in the hub's answer)"),
        };
        let hub = &answer.hub_headers;
        let etag = hub.etag.clone().ok_or_else(|| bad("ETag"))?;
        let commit = hub.commit.clone().ok_or_else(|| bad("X-Repo-Commit"))?;
        Ok(Metadata {
            etag,
            commit,
            size,
            url: answer.url,
        })
    }

    /// Downloads `file` of `repo` into the HF cache (resuming a `.part` file left before) and
    /// returns its path in the snapshot folder.
    pub fn download(&self, repo: &Repo, file: &str, watch: &Watch) -> Result<PathBuf, HubError> {
        let meta = self.metadata(repo, file)?;
        let cache = self.cache.repo(repo.clone());
        let blob = cache.blob_path(&meta.etag);
        let cache_error = |e: std::io::Error| cache_error(file, e, self.cache.path());
        std::fs::create_dir_all(blob.parent().unwrap_or(Path::new("."))).map_err(cache_error)?;
        let lock = std::fs::File::create(blob.with_extension("lock")).map_err(cache_error)?;
        if lock.try_lock().is_err() {
            return Err(cache_error(std::io::Error::other(
                "another process is downloading it; wait for it or retry",
            )));
        }
        let part = blob.with_extension("part");
        self.fetch_into(&part, &meta, file, watch)?;
        std::fs::rename(&part, &blob).map_err(cache_error)?;
        let pointer = cache.pointer_path(&meta.commit).join(file);
        link(&blob, &pointer, file).map_err(cache_error)?;
        cache.create_ref(&meta.commit).map_err(cache_error)?;
        Ok(pointer)
    }

    /// Appends the bytes of `meta` that `part` lacks to it.
    fn fetch_into(
        &self,
        part: &Path,
        meta: &Metadata,
        file: &str,
        watch: &Watch,
    ) -> Result<(), HubError> {
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(part)
            .map_err(|e| cache_error(file, e, self.cache.path()))?;
        let mut start = out
            .metadata()
            .map_err(|e| cache_error(file, e, self.cache.path()))?
            .len();
        if start == meta.size {
            return Ok(());
        }
        let answer = self.get(&meta.url, &format!("bytes={start}-"), file)?;
        let status = answer.response.status().as_u16();
        check_status(status, file)?;
        if start > meta.size || status != 206 {
            // A longer `.part`, or a server that sends the whole file: start over.
            out.set_len(0)
                .map_err(|e| cache_error(file, e, self.cache.path()))?;
            start = 0;
        }
        watch.started(meta.size, start);
        let mut body = answer.response.into_body().into_reader();
        let mut block = vec![0u8; 1 << 16];
        loop {
            let n = body.read(&mut block).map_err(|e| from_body(e, file))?;
            if n == 0 {
                return Ok(());
            }
            std::io::Write::write_all(&mut out, &block[..n])
                .map_err(|e| cache_error(file, e, self.cache.path()))?;
            watch.advanced(n as u64);
        }
    }
}

/// An answer that is not a redirect, where it came from, and the hub's headers on the way.
struct Answer {
    response: Response<ureq::Body>,
    url: String,
    hub_headers: HubHeaders,
}

impl Answer {
    /// The file's whole size from `Content-Range: bytes 0-0/<size>` (or the length of a whole
    /// answer); a failed status is its error.
    fn total_size(&self, file: &str) -> Result<u64, HubError> {
        let status = self.response.status().as_u16();
        check_status(status, file)?;
        let size = match header(&self.response, "content-range") {
            Some(range) => range.rsplit('/').next().and_then(|s| s.trim().parse().ok()),
            None => header(&self.response, "content-length").and_then(|s| s.trim().parse().ok()),
        };
        size.ok_or_else(|| HubError::Status {
            status,
            file: format!("{file} (no valid Content-Range in the hub's answer)"),
        })
    }
}

/// The last `X-Linked-Etag` (else `ETag`) and `X-Repo-Commit` the hub's origin sent, when
/// they can name cache files.
#[derive(Default)]
struct HubHeaders {
    etag: Option<String>,
    commit: Option<String>,
}

impl HubHeaders {
    fn update(&mut self, response: &Response<ureq::Body>) {
        let etag = header(response, "x-linked-etag").or_else(|| header(response, "etag"));
        if let Some(etag) = etag {
            let etag = etag.trim().trim_start_matches("W/").replace('"', "");
            self.etag = safe_name(&etag).then_some(etag);
        }
        if let Some(commit) = header(response, "x-repo-commit") {
            self.commit = safe_name(&commit).then_some(commit);
        }
    }
}

/// Whether `name` (from the hub's headers) can be a file name in the cache: no path, no dots
/// alone, nothing but letters, digits, `-`, `_` and `.`.
fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn header(response: &Response<ureq::Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `scheme://host:port` of `url`, lowercased, with the scheme's default port.
fn origin(url: &str) -> Option<String> {
    let uri: ureq::http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let port = uri.port_u16().or(match scheme.as_str() {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    })?;
    Some(format!(
        "{scheme}://{}:{port}",
        uri.host()?.to_ascii_lowercase()
    ))
}

/// `location` (absolute, or relative to `base`'s origin) as an absolute http(s) URL.
fn join(base: &str, location: &str) -> Option<String> {
    let location = location.trim();
    if location.starts_with("http://") || location.starts_with("https://") {
        return origin(location).map(|_| location.to_string());
    }
    if !location.starts_with('/') || location.starts_with("//") {
        return None;
    }
    let uri: ureq::http::Uri = base.parse().ok()?;
    Some(format!(
        "{}://{}{location}",
        uri.scheme_str()?,
        uri.authority()?
    ))
}

/// Points `pointer` (in a snapshot folder) at `blob`: a relative symlink as huggingface_hub
/// makes, or the blob moved there where symlinks are not allowed.
fn link(blob: &Path, pointer: &Path, file: &str) -> std::io::Result<()> {
    if let Some(parent) = pointer.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if pointer.exists() {
        return Ok(());
    }
    #[cfg(unix)]
    {
        // snapshots/<commit>/<file> → ../../blobs/<etag>, one more `..` per folder in `file`.
        let depth = 2 + file.matches('/').count();
        let mut target = PathBuf::from("../".repeat(depth));
        target.push("blobs");
        target.push(blob.file_name().unwrap_or_default());
        std::os::unix::fs::symlink(target, pointer)
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        std::fs::copy(blob, pointer).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_tell_hosts_ports_and_schemes_apart() {
        let hub = origin("https://huggingface.co/org/m/resolve/main/config.json");
        assert_eq!(hub.as_deref(), Some("https://huggingface.co:443"));
        assert_eq!(origin("https://HuggingFace.co:443/x"), hub);
        for other in [
            "http://huggingface.co/x",
            "https://cdn-lfs.huggingface.co/x",
            "https://huggingface.co:8443/x",
            "https://huggingface.co.evil.example/x",
        ] {
            assert_ne!(origin(other), hub, "{other}");
        }
        assert_eq!(origin("ftp://x/y"), None);
    }

    #[test]
    fn redirects_resolve_against_the_origin_and_refuse_other_schemes() {
        let base = "http://127.0.0.1:8000/org/m/resolve/main/a";
        assert_eq!(
            join(base, "/api/x").as_deref(),
            Some("http://127.0.0.1:8000/api/x")
        );
        assert_eq!(
            join(base, "https://cdn.example/b?sig=1").as_deref(),
            Some("https://cdn.example/b?sig=1")
        );
        assert_eq!(join(base, "file:///etc/passwd"), None);
        assert_eq!(join(base, "//evil.example/x"), None);
        assert!(!safe_name("../../etc/passwd") && !safe_name("..") && !safe_name(""));
        assert!(safe_name("5e1f00d5e1f00d5e1f00d5e1f00d5e1f00d5e1f0"));
    }
}
