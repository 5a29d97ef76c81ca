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
#[path = "browser/harness.rs"]
mod harness;

use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{binary, read_json, run_ok, tiny};
use harness::{Results, build_wasm, launch, serve, tools, wait_for, write_run};
use serde_json::{Value, json};

/// The longest the browser may take for the run (SwiftShader compiles every kernel).
const BROWSER_TIMEOUT: Duration = Duration::from_secs(600);

/// θ after a few epochs on WebGPU vs the CPU device (float32, different reduction orders).
const THETA_TOLERANCE: f32 = 1e-3;

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
