//! PAC-tuning in headless Chromium on WebGPU (web/): builds the wasm module, serves the page on
//! 127.0.0.1, lets it train a tiny BERT on a toy SST-2 and post its run folder back, then checks
//! it against the native CPU device: the first step's loss1, KL, σ and θ, the dev metric that
//! `pac-wgpu eval --run` finds in the browser's run folder, and the curves on the page.
//!
//! Needs chromium, wasm-bindgen (the version in web/Cargo.lock) and the wasm32-unknown-unknown
//! target; without them build.rs has the test listed as not run. The wasm build goes to
//! `<target dir>/wasm`, so CI's cached target dir keeps it. `PAC_WGPU_KEEP_SCREENSHOT=FILE`
//! keeps the page's screenshot.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{binary, missing, read_json, run_ok, tiny};
use serde_json::{Value, json};

/// What a run in the browser posted back: its files by path, then its events or an error.
#[derive(Default, Debug)]
struct Posted {
    files: BTreeMap<String, Vec<u8>>,
    events: Option<Vec<Value>>,
    error: Option<String>,
}

type Results = Arc<Mutex<BTreeMap<String, Posted>>>;

/// The longest the browser may take for the run (SwiftShader compiles every kernel).
const BROWSER_TIMEOUT: Duration = Duration::from_secs(600);

/// θ after a few epochs on WebGPU vs the CPU device (float32, different reduction orders).
const THETA_TOLERANCE: f32 = 1e-3;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The options both runs share, as run.json spells them: tiny, one step per epoch, no dropout
/// (Burn's dropout masks differ between backends).
fn shared_options() -> Vec<(&'static str, Value)> {
    vec![
        ("task", json!("sst2")),
        ("method", json!("pac")),
        ("seed", json!(7)),
        ("train_size", json!(20)),
        ("batch_size", json!(20)),
        ("eval_batch_size", json!(20)),
        ("max_length", json!(32)),
        ("dropout", json!(0.0)),
        ("eval_every_epochs", json!(1)),
        ("lr_head", json!(0.01)),
        ("lr_encoder", json!(0.001)),
        // K(λ) from 2 prior models per std, not 10: SwiftShader runs each forward in software.
        ("prior_models", json!(2)),
    ]
}

#[test]
#[cfg_attr(
    not(pac_test_browser),
    ignore = "needs chromium, the wasm32 target and web/'s wasm-bindgen CLI (see .ci/run)"
)]
fn pac_tuning_in_headless_chromium_matches_the_native_cpu_device() {
    let tools = tools();
    let started = Instant::now();
    let pkg = build_wasm(&tools);
    eprintln!(
        "wasm module ready in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let tmp = tempfile::tempdir().unwrap();
    let fixture = tmp.path().join("fixture");
    let model = fixture.join("tiny-bert");
    tiny::write_model(&model, 11, |_| {});
    let glue = fixture.join("glue");
    tiny::write_toy_sst2(&glue);

    let epochs = [("epochs", json!(3)), ("stage1_epochs", json!(2))];
    let options = |extra: &[(&str, Value)]| {
        let mut o: serde_json::Map<String, Value> = shared_options()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        o.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        Value::Object(o)
    };
    let manifest = json!({
        "model_base": "/fixture/tiny-bert/",
        "tokenizer": "vocab.txt",
        "train": "/fixture/glue/SST-2/train.tsv",
        "dev": "/fixture/glue/SST-2/dev.tsv",
        "runs": [{"options": options(&epochs), "report": "/result/pac"}],
    });
    std::fs::write(fixture.join("manifest.json"), manifest.to_string()).unwrap();

    let results: Results = Arc::default();
    let port = serve(pkg, fixture.clone(), Arc::clone(&results));
    let log = tmp.path().join("chromium.log");
    let browser_start = Instant::now();
    let mut browser = launch(
        &tools.chromium,
        &tmp.path().join("profile"),
        &log,
        &[],
        &format!("http://127.0.0.1:{port}/index.html?auto=/fixture/manifest.json"),
    );
    let finished = wait_for(&results, &["pac"], BROWSER_TIMEOUT);
    let _ = browser.kill();
    let _ = browser.wait();
    let console = std::fs::read_to_string(&log).unwrap_or_default();
    let console: Vec<&str> = console.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(
        finished,
        "the page did not post its run within {BROWSER_TIMEOUT:?}; console:\n{}",
        console.join("\n")
    );
    eprintln!(
        "browser: the run took {:.0} s",
        browser_start.elapsed().as_secs_f64()
    );
    // WebGPU validation errors and wasm panics reach the console, not the results.
    let refused: Vec<&&str> = console
        .iter()
        .filter(|l| l.contains("panicked at") || l.contains("is invalid") || l.contains("aliasing"))
        .collect();
    assert!(refused.is_empty(), "WebGPU refused work: {refused:#?}");
    let posted = std::mem::take(&mut *results.lock().unwrap());
    for (run, p) in &posted {
        assert!(
            p.error.is_none(),
            "run {run} failed in the browser: {:?}",
            p.error
        );
    }

    // (a) The first step against the native CPU device: the epoch-1 record (one step per
    // epoch) holds K̂ (the prior models are the same Philox draws on both devices), loss1, KL
    // and loss2 at that step, and σ and the prior std after it.
    let web = write_run(&posted["pac"], &tmp.path().join("web-run"));
    let native = tmp.path().join("native-run");
    native_train(&model, &glue, &native, &epochs);
    let history = common::history(&web);
    let native_history = common::history(&native);
    assert_eq!(history.len(), 3);
    let summary = read_json(&web.join("summary.json"));
    eprintln!(
        "browser: K(λ) {:.0} s, epochs {:?} s",
        summary["k_estimation_seconds"].as_f64().unwrap_or(f64::NAN),
        column(&history, "epoch_seconds")
    );
    let keys = [
        "k_hat",
        "train_loss",
        "kl",
        "loss2",
        "sigma_encoder",
        "sigma_head",
        "prior_std",
    ];
    for key in keys {
        let (w, n) = (history[0][key].as_f64(), native_history[0][key].as_f64());
        let (w, n) = (w.expect(key), n.expect(key));
        assert!(
            (w - n).abs() <= 1e-4 * n.abs().max(1e-3),
            "epoch 1 {key}: WebGPU {w} vs CPU {n}"
        );
    }
    // θ of the best epoch, where both runs pick the same one.
    let native_summary = read_json(&native.join("summary.json"));
    if summary["best"]["epoch"] == native_summary["best"]["epoch"] {
        let theta =
            |run: &Path| common::tensor_bytes(&run.join("checkpoints/best/model.safetensors"));
        let (web_theta, native_theta) = (theta(&web), theta(&native));
        assert_eq!(
            web_theta.keys().collect::<Vec<_>>(),
            native_theta.keys().collect::<Vec<_>>()
        );
        let mut worst = (0.0f32, String::new());
        for (name, w) in &web_theta {
            let diff = common::max_abs_diff(&floats(w), &floats(&native_theta[name]));
            if diff > worst.0 {
                worst = (diff, name.clone());
            }
        }
        eprintln!(
            "θ at the best epoch: largest difference {} ({})",
            worst.0, worst.1
        );
        assert!(
            worst.0 <= THETA_TOLERANCE,
            "θ: {} differs by {}",
            worst.1,
            worst.0
        );
    }

    // (b) The browser's run folder evaluates natively to the dev metric the browser recorded.
    let out = run_ok(
        binary()
            .env("GLUE_DIR", &glue)
            .args(["eval", "--device", "cpu", "--json", "--run"])
            .arg(&web),
    );
    let eval: Value = serde_json::from_str(&out).unwrap();
    for metric in ["accuracy", "f1"] {
        let (native, web) = (&eval["metrics"][metric], &summary["best"][metric]);
        assert_eq!(
            native, web,
            "{metric}: native eval {native} vs browser {web}"
        );
    }

    // (c) The page draws the browser run's records: the curve colour fills the plots.
    let shot = tmp.path().join("page.png");
    let metric = summary["metric"].as_str().unwrap();
    let replay = json!({"metric": metric, "records": history}).to_string();
    std::fs::write(fixture.join("replay.json"), replay).unwrap();
    let screenshot = format!("--screenshot={}", shot.display());
    let mut shooter = launch(
        &tools.chromium,
        &tmp.path().join("profile-shot"),
        &tmp.path().join("shot.log"),
        &[&screenshot, "--window-size=1100,900", "--hide-scrollbars"],
        &format!("http://127.0.0.1:{port}/replay.html"),
    );
    let status = wait_exit(&mut shooter, Duration::from_secs(60));
    assert!(status, "chromium --screenshot did not finish");
    let curve_pixels = image::open(&shot)
        .unwrap_or_else(|e| panic!("{}: {e}", shot.display()))
        .to_rgb8()
        .pixels()
        .filter(|p| p.0[0] < 60 && (80..115).contains(&p.0[1]) && p.0[2] > 170)
        .count();
    assert!(
        curve_pixels > 300,
        "only {curve_pixels} pixels of the curve colour in the screenshot"
    );
    if let Some(keep) = std::env::var_os("PAC_WGPU_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
    eprintln!(
        "browser test: {:.0} s in all",
        started.elapsed().as_secs_f64()
    );
}

/// The tools the test needs, found on this machine.
struct Tools {
    chromium: PathBuf,
    wasm_bindgen: PathBuf,
}

fn tools() -> Tools {
    let chromium = ["chromium", "chromium-browser"]
        .iter()
        .find_map(|name| on_path(name))
        .unwrap_or_else(|| missing("chromium", "apt-get install chromium"));
    let version = wasm_bindgen_version();
    let wasm_bindgen = on_path("wasm-bindgen")
        .filter(|path| {
            Command::new(path).arg("--version").output().is_ok_and(|o| {
                String::from_utf8_lossy(&o.stdout).trim() == format!("wasm-bindgen {version}")
            })
        })
        .unwrap_or_else(|| {
            missing(
                &format!("wasm-bindgen {version}"),
                &format!("cargo install wasm-bindgen-cli --version {version}"),
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
fn build_wasm(tools: &Tools) -> PathBuf {
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

fn launch(path: &Path, profile: &Path, log: &Path, extra: &[&str], url: &str) -> Child {
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

fn wait_exit(child: &mut Child, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    false
}

/// Waits until every run in `runs` posted its events or an error.
fn wait_for(results: &Results, runs: &[&str], limit: Duration) -> bool {
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
fn serve(pkg: PathBuf, fixture: PathBuf, results: Results) -> u16 {
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
fn write_run(posted: &Posted, dir: &Path) -> PathBuf {
    for (path, bytes) in &posted.files {
        assert!(!path.contains(".."), "run file {path}");
        let file = dir.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, bytes).unwrap();
    }
    dir.to_path_buf()
}

/// The same run as `pac-wgpu train` on the CPU device, flags spelled from the same options.
fn native_train(model: &Path, glue: &Path, out: &Path, extra: &[(&str, Value)]) {
    let mut cmd = binary();
    cmd.args(["train", "--quiet", "--device", "cpu", "--model"])
        .arg(model)
        .arg("--data-dir")
        .arg(glue)
        .arg("--output-dir")
        .arg(out);
    for (key, value) in shared_options().iter().chain(extra) {
        let value = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        cmd.arg(format!("--{}", key.replace('_', "-"))).arg(value);
    }
    run_ok(&mut cmd);
}

/// Per-epoch values of `key`, rounded to 0.1.
fn column(history: &[Value], key: &str) -> Vec<f64> {
    let value = |r: &Value| (r[key].as_f64().unwrap_or(f64::NAN) * 10.0).round() / 10.0;
    history.iter().map(value).collect()
}

fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}
