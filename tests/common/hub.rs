//! A stand-in for the Hugging Face hub on 127.0.0.1, for tests that point the real code at it
//! with `HF_ENDPOINT`. It answers what the hub client asks: `GET /<repo>/resolve/<rev>/<file>`
//! (datasets under `/datasets/`) with `ETag` and `X-Repo-Commit`, byte ranges (`Range:
//! bytes=a-` / `a-b`, answered 206 with `Content-Range`), and for large files a 302 to a CDN
//! path as the hub does for LFS files (on this server, or on another one standing in for the
//! CDN). Faults can be set per file, and every request is recorded.
//! Connections close after each answer; the server stops when dropped.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The commit every served repository is at.
pub const COMMIT: &str = "5e1f00d5e1f00d5e1f00d5e1f00d5e1f00d5e1f0";

/// Files at least this large are served through a redirect, as the hub serves LFS files.
const LFS_FROM: usize = 4096;

/// What the server does instead of answering a file normally.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// Answer with this HTTP status.
    Status(u16),
    /// Announce the whole length, send half of the body, close.
    CloseMidBody,
    /// Send half of the body without a length (ended by closing), as if complete.
    ShortWithoutLength,
    /// Send the headers and half of the body, then nothing more.
    StallMidBody,
    /// Accept the connection and never answer.
    NoAnswer,
    /// Redirect to the same path, for ever.
    RedirectLoop,
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Request {
    pub path: String,
    pub headers: HashMap<String, String>,
}

#[derive(Default)]
struct State {
    /// "<repo url>/<file>" → contents, e.g. "org/tiny/config.json", "datasets/nyu-mll/glue/…".
    files: HashMap<String, Vec<u8>>,
    faults: HashMap<String, Fault>,
    /// Repositories that need `Authorization: Bearer <token>`.
    gated: HashMap<String, String>,
    requests: Vec<Request>,
    /// Where LFS files are redirected ("http://host:port"); this server when `None`.
    cdn: Option<String>,
}

pub struct Hub {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl Hub {
    pub fn start() -> Hub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, halt) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if halt.load(Ordering::SeqCst) {
                    break;
                }
                let (s, halt) = (s.clone(), halt.clone());
                if let Ok(stream) = stream {
                    std::thread::spawn(move || serve(stream, &s, &halt));
                }
            }
        });
        Hub {
            endpoint,
            state,
            stop,
        }
    }

    /// Serves every file of `folder` as `repo` ("org/name" or "datasets/org/name").
    pub fn add_folder(&self, repo: &str, folder: &std::path::Path) {
        for entry in files_under(folder) {
            let name = entry
                .strip_prefix(folder)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            self.add_file(repo, &name, std::fs::read(&entry).unwrap());
        }
    }

    pub fn add_file(&self, repo: &str, name: &str, bytes: Vec<u8>) {
        let mut state = self.state.lock().unwrap();
        state.files.insert(format!("{repo}/{name}"), bytes);
    }

    /// Makes `repo` answer 401 unless the request carries `token`.
    pub fn gate(&self, repo: &str, token: &str) {
        let mut state = self.state.lock().unwrap();
        state.gated.insert(repo.to_string(), token.to_string());
    }

    pub fn set_fault(&self, repo: &str, file: &str, fault: Option<Fault>) {
        let mut state = self.state.lock().unwrap();
        let key = format!("{repo}/{file}");
        match fault {
            Some(f) => state.faults.insert(key, f),
            None => state.faults.remove(&key),
        };
    }

    /// Redirects LFS files to `cdn` (another stand-in hub serving the same files).
    pub fn use_cdn(&self, cdn: &str) {
        self.state.lock().unwrap().cdn = Some(cdn.to_string());
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Stops accepting: later connections are refused, stalled ones end.
    pub fn stop(&self) {
        if !self.stop.swap(true, Ordering::SeqCst) {
            let _ = TcpStream::connect(self.endpoint.trim_start_matches("http://"));
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every file under `dir`, at any depth.
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// An ETag from the contents (FNV-1a; any stable function of the bytes serves).
fn etag(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
    });
    format!("{hash:016x}")
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut headers = HashMap::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    Some(Request { path, headers })
}

/// "/org/name/resolve/main/dir/file" → ("org/name", "dir/file"); datasets keep their prefix.
fn split_path(path: &str) -> Option<(String, String)> {
    let (repo, rest) = path.trim_start_matches('/').split_once("/resolve/")?;
    let (_revision, file) = rest.split_once('/')?;
    Some((repo.to_string(), file.to_string()))
}

fn serve(mut stream: TcpStream, state: &Mutex<State>, stop: &AtomicBool) {
    let Some(request) = read_request(&stream) else {
        return;
    };
    let auth = request.headers.get("authorization").cloned();
    let range = request.headers.get("range").cloned();
    let path = request.path.clone();
    let (known, bytes, fault, gate, cdn) = {
        let mut s = state.lock().unwrap();
        s.requests.push(request);
        if let Some(tag) = path.strip_prefix("/cdn/") {
            let found = s.files.iter().find(|(_, b)| etag(b) == tag);
            let (key, bytes) = match found {
                Some((k, b)) => (k.clone(), b.clone()),
                None => return respond(&mut stream, 404, &[], b""),
            };
            let fault = s.faults.get(&key).copied();
            drop(s);
            return send_file(&mut stream, &bytes, range.as_deref(), fault, stop, &[]);
        }
        let Some((repo, file)) = split_path(&path) else {
            return respond(&mut stream, 404, &[], b"");
        };
        let key = format!("{repo}/{file}");
        (
            s.files.keys().any(|k| k.starts_with(&format!("{repo}/"))),
            s.files.get(&key).cloned(),
            s.faults.get(&key).copied(),
            s.gated.get(&repo).cloned(),
            s.cdn.clone().unwrap_or_else(|| host_of(&stream)),
        )
    };
    if let Some(token) = gate
        && auth.as_deref() != Some(&format!("Bearer {token}"))
    {
        return respond(&mut stream, 401, &[("X-Error-Code", "GatedRepo")], b"");
    }
    match (fault, bytes) {
        (Some(Fault::Status(code)), _) => respond(&mut stream, code, &[], b""),
        (Some(Fault::NoAnswer), _) => wait_until_stopped(stop),
        (Some(Fault::RedirectLoop), _) => respond(&mut stream, 302, &[("Location", &path)], b""),
        (_, None) if !known => respond(&mut stream, 401, &[("X-Error-Code", "RepoNotFound")], b""),
        (_, None) => respond(&mut stream, 404, &[("X-Error-Code", "EntryNotFound")], b""),
        (fault, Some(bytes)) if bytes.len() >= LFS_FROM && fault.is_none() => {
            let location = format!("{cdn}/cdn/{}", etag(&bytes));
            let tag = format!("\"{}\"", etag(&bytes));
            respond(
                &mut stream,
                302,
                &[
                    ("Location", &location),
                    ("X-Linked-Etag", &tag),
                    ("X-Repo-Commit", COMMIT),
                ],
                b"",
            )
        }
        (fault, Some(bytes)) => {
            let tag = format!("\"{}\"", etag(&bytes));
            let headers = [("ETag", tag.as_str()), ("X-Repo-Commit", COMMIT)];
            send_file(&mut stream, &bytes, range.as_deref(), fault, stop, &headers)
        }
    }
}

fn host_of(stream: &TcpStream) -> String {
    format!("http://{}", stream.local_addr().unwrap())
}

/// Answers `bytes` (or the requested range of it), faults applied to the body.
fn send_file(
    stream: &mut TcpStream,
    bytes: &[u8],
    range: Option<&str>,
    fault: Option<Fault>,
    stop: &AtomicBool,
    extra: &[(&str, &str)],
) {
    let total = bytes.len();
    let (from, to) = range
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .map(|(a, b)| {
            let a: usize = a.parse().unwrap_or(0);
            let b: usize = b.parse().unwrap_or(total.saturating_sub(1));
            (a.min(total), (b + 1).min(total))
        })
        .unwrap_or((0, total));
    let body = &bytes[from..to];
    let mut headers: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let status = if range.is_some() {
        headers.push((
            "Content-Range".into(),
            format!("bytes {from}-{}/{total}", to.saturating_sub(1)),
        ));
        206
    } else {
        200
    };
    let whole_body = body.len() > 1;
    let (length, send) = match fault {
        Some(Fault::ShortWithoutLength) if whole_body => (None, body.len() / 2),
        Some(Fault::CloseMidBody | Fault::StallMidBody) if whole_body => {
            (Some(body.len()), body.len() / 2)
        }
        _ => (Some(body.len()), body.len()),
    };
    let mut head = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
    if let Some(n) = length {
        head.push_str(&format!("Content-Length: {n}\r\n"));
    }
    for (k, v) in &headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body[..send]);
    let _ = stream.flush();
    if fault == Some(Fault::StallMidBody) && whole_body {
        wait_until_stopped(stop);
    }
}

fn respond(stream: &mut TcpStream, status: u16, headers: &[(&str, &str)], body: &[u8]) {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if status != 401 && status != 404 && status < 500 {
        head.push_str(&format!("X-Repo-Commit: {COMMIT}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

/// Holds a connection open without answering, for at most a minute.
fn wait_until_stopped(stop: &AtomicBool) {
    let start = Instant::now();
    while !stop.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
}
