//! The browser harness: builds web/ for wasm32, serves the page and a fixture folder on
//! 127.0.0.1, launches headless Chromium on SwiftShader's WebGPU and collects the run folders the
//! page posts back. tests/browser.rs runs it; `examples/browser_run.rs` runs it by hand.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// What a run in the browser posted back: its files by path, then its events or an error.
#[derive(Default, Debug)]
pub struct Posted {
    pub files: BTreeMap<String, Vec<u8>>,
    pub events: Option<Vec<Value>>,
    pub error: Option<String>,
}

pub type Results = Arc<Mutex<BTreeMap<String, Posted>>>;

pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The tools the test needs, found on this machine.
pub struct Tools {
    pub chromium: PathBuf,
    pub wasm_bindgen: PathBuf,
}

pub fn tools() -> Tools {
    let chromium = ["chromium", "chromium-browser"]
        .iter()
        .find_map(|name| on_path(name))
        .unwrap_or_else(|| panic!("chromium not found: apt-get install chromium"));
    let version = wasm_bindgen_version();
    let wasm_bindgen = on_path("wasm-bindgen")
        .filter(|path| {
            Command::new(path).arg("--version").output().is_ok_and(|o| {
                String::from_utf8_lossy(&o.stdout).trim() == format!("wasm-bindgen {version}")
            })
        })
        .unwrap_or_else(|| {
            panic!(
                "wasm-bindgen {version} not found: cargo install wasm-bindgen-cli --version {version}"
            )
        });
    Tools {
        chromium,
        wasm_bindgen,
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The wasm-bindgen version web/Cargo.lock holds (the CLI must be the same).
fn wasm_bindgen_version() -> String {
    let lock = std::fs::read_to_string(crate_dir().join("web/Cargo.lock")).unwrap();
    let at = lock
        .find("name = \"wasm-bindgen\"\n")
        .expect("wasm-bindgen in web/Cargo.lock");
    let rest = &lock[at..];
    let line = rest.lines().nth(1).unwrap();
    line.trim_start_matches("version = ")
        .trim_matches('"')
        .to_string()
}

/// Builds web/ for wasm32 into `<target dir>/wasm` and binds it; returns the pkg folder.
pub fn build_wasm(tools: &Tools) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate_dir().join("target"))
        .join("wasm");
    let web = crate_dir().join("web");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&web)
        .env("CARGO_TARGET_DIR", &target)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-unknown-unknown",
        ])
        .status()
        .expect("run cargo");
    assert!(status.success(), "the wasm build of web/ failed");
    let pkg = target.join("pkg");
    let status = Command::new(&tools.wasm_bindgen)
        .args(["--target", "web", "--no-typescript", "--out-dir"])
        .arg(&pkg)
        .arg(target.join("wasm32-unknown-unknown/release/pac_wgpu_web.wasm"))
        .status()
        .expect("run wasm-bindgen");
    assert!(status.success(), "wasm-bindgen failed");
    pkg
}

pub fn launch(path: &Path, profile: &Path, log: &Path, extra: &[&str], url: &str) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(path)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--enable-unsafe-webgpu",
            "--enable-features=Vulkan",
            "--use-webgpu-adapter=swiftshader",
            "--enable-logging=stderr",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Waits until every run in `runs` posted its events or an error.
pub fn wait_for(results: &Results, runs: &[&str], limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        let done = {
            let r = results.lock().unwrap();
            runs.iter().all(|run| {
                r.get(*run)
                    .is_some_and(|p| p.events.is_some() || p.error.is_some())
            })
        };
        if done {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    false
}

/// Serves web/ at /, the bound module at /pkg/, the fixture at /fixture/, a replay page of
/// fixture/replay.json at /replay.html, and takes the page's POSTs under /result/.
pub fn serve(pkg: PathBuf, fixture: PathBuf, results: Results) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (pkg, fixture, results) = (pkg.clone(), fixture.clone(), Arc::clone(&results));
            std::thread::spawn(move || {
                let _ = answer(stream, &pkg, &fixture, &results);
            });
        }
    });
    port
}

fn answer(stream: TcpStream, pkg: &Path, fixture: &Path, results: &Results) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        if header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let mut parts = request.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let path = target.split('?').next().unwrap_or("/");
    let reply = match (method, path) {
        ("POST", p) if p.starts_with("/result/") => {
            post(&p["/result/".len()..], body, results);
            Some(Vec::new())
        }
        ("GET", "/replay.html") => replay_page(fixture),
        ("GET", p) if p.starts_with("/pkg/") => std::fs::read(pkg.join(&p["/pkg/".len()..])).ok(),
        ("GET", p) if p.starts_with("/fixture/") => {
            std::fs::read(fixture.join(&p["/fixture/".len()..])).ok()
        }
        ("GET", p) => std::fs::read(crate_dir().join("web").join(p.trim_start_matches('/'))).ok(),
        _ => None,
    };
    let mut stream = stream;
    match reply {
        Some(bytes) => {
            let kind = match Path::new(path).extension().and_then(|e| e.to_str()) {
                Some("js") => "text/javascript",
                Some("wasm") => "application/wasm",
                Some("html") => "text/html",
                Some("json") => "application/json",
                _ => "application/octet-stream",
            };
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                bytes.len()
            )?;
            stream.write_all(&bytes)
        }
        None => write!(
            stream,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    }
}

/// index.html with `window.PAC_REPLAY` set from fixture/replay.json before plot.js runs.
fn replay_page(fixture: &Path) -> Option<Vec<u8>> {
    let page = std::fs::read_to_string(crate_dir().join("web/index.html")).ok()?;
    let records = std::fs::read_to_string(fixture.join("replay.json")).ok()?;
    let script =
        format!("<script>window.PAC_REPLAY = {records};</script>\n<script src=\"plot.js\">");
    Some(
        page.replacen("<script src=\"plot.js\">", &script, 1)
            .into_bytes(),
    )
}

/// Files the page POSTs: `RUN/file/PATH`, `RUN/events`, `RUN/error`.
fn post(path: &str, body: Vec<u8>, results: &Results) {
    let (run, what) = path.split_once('/').unwrap_or((path, ""));
    let mut results = results.lock().unwrap();
    let posted = results.entry(run.to_string()).or_default();
    if let Some(file) = what.strip_prefix("file/") {
        posted.files.insert(file.to_string(), body);
    } else if what == "events" {
        posted.events = Some(serde_json::from_slice(&body).unwrap_or_default());
    } else {
        posted.error = Some(String::from_utf8_lossy(&body).into_owned());
    }
}

/// Writes a posted run folder under `dir`.
pub fn write_run(posted: &Posted, dir: &Path) -> PathBuf {
    for (path, bytes) in &posted.files {
        assert!(!path.contains(".."), "run file {path}");
        let file = dir.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, bytes).unwrap();
    }
    dir.to_path_buf()
}
