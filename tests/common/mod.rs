//! Shared test fixtures: where the model, GLUE data and golden files are, the devices to test
//! on, and a tiny random BERT written to a temporary folder.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};

use pac_wgpu::util::device::{DeviceChoice, SelectedDevice, adapters, select};

pub mod hub;
pub mod parquet;
pub mod tiny;

/// A prerequisite that build.rs found (or that CI promises) is missing after all: the test
/// fails, saying how to provide it. Tests whose prerequisite build.rs did not find are compiled
/// as ignored, with the reason, and never get here.
pub fn missing(what: &str, hint: &str) -> ! {
    panic!("{what} not found: {hint}")
}

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// all-MiniLM-L6-v2 from `scripts/fetch-model.sh`, or `$PAC_WGPU_MODEL_DIR`. Tests that call
/// it are `#[cfg_attr(not(pac_test_minilm), ignore = ...)]`.
pub fn minilm_dir() -> PathBuf {
    let dir = std::env::var_os("PAC_WGPU_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate_dir().join("assets/models/all-MiniLM-L6-v2"));
    if !dir.join("model.safetensors").is_file() {
        missing(
            &format!("model at {}", dir.display()),
            "run scripts/fetch-model.sh or set PAC_WGPU_MODEL_DIR",
        );
    }
    dir
}

/// The golden files (tests/golden; its README states each file's tolerance).
pub fn golden_dir() -> PathBuf {
    crate_dir().join("tests/golden")
}

/// The first software (CPU-type) wgpu adapter, i.e. lavapipe on Linux. Tests that need it are
/// `#[cfg_attr(not(pac_test_lavapipe), ignore = ...)]`.
pub fn lavapipe() -> SelectedDevice {
    select(DeviceChoice::Index(lavapipe_index())).expect("select lavapipe")
}

/// The CPU device, plus lavapipe where build.rs found it (kernels.rs lists it as not run
/// otherwise), plus the adapter `$PAC_WGPU_TEST_DEVICE` names
/// (an index from `pac-wgpu devices`: how scripts/gpu-bench.sh tests a real GPU).
pub fn test_devices() -> Vec<SelectedDevice> {
    let mut devices = vec![select(DeviceChoice::Cpu).expect("cpu device")];
    if cfg!(pac_test_lavapipe) {
        devices.push(lavapipe());
    }
    if let Ok(index) = std::env::var("PAC_WGPU_TEST_DEVICE") {
        let choice = index
            .parse()
            .unwrap_or_else(|e| panic!("PAC_WGPU_TEST_DEVICE={index:?}: {e}"));
        let extra = select(choice).unwrap_or_else(|e| panic!("PAC_WGPU_TEST_DEVICE: {e}"));
        if devices.iter().all(|d| d.name != extra.name) {
            devices.push(extra);
        }
    }
    devices
}

pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A golden file's JSON array of numbers.
pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    let values = v
        .as_array()
        .unwrap_or_else(|| panic!("expected an array, found {v}"));
    values.iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

/// A golden file's `padded_batch` (`input_ids` and `attention_mask` rows) as a batch, token
/// types 0.
pub fn golden_padded_batch(padded: &serde_json::Value) -> pac_wgpu::util::tokenize::PaddedBatch {
    let rows = padded["input_ids"].as_array().unwrap();
    let input_ids: Vec<i64> = rows
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()))
        .collect();
    let mask = padded["attention_mask"].as_array().unwrap();
    let attention_mask: Vec<f32> = mask.iter().flat_map(floats).collect();
    let batch = rows.len();
    pac_wgpu::util::tokenize::PaddedBatch {
        batch,
        seq: input_ids.len() / batch,
        token_type_ids: vec![0; input_ids.len()],
        input_ids,
        attention_mask,
    }
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// `predict --probabilities` of the dev split of `run` (a run or an export folder) on the CPU,
/// written to `out`; the file's text.
pub fn predict_dev_probabilities(run: &Path, out: &Path) -> String {
    run_ok(
        binary()
            .args([
                "predict",
                "--device",
                "cpu",
                "--split",
                "dev",
                "--probabilities",
            ])
            .arg("--run")
            .arg(run)
            .arg("--out")
            .arg(out),
    );
    std::fs::read_to_string(out).unwrap_or_else(|e| panic!("{}: {e}", out.display()))
}

/// The `pac-wgpu` binary built for this test run.
pub fn binary() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_pac-wgpu"))
}

/// `$GLUE_DIR`. Tests that call it are
/// `#[cfg_attr(not(pac_test_glue), ignore = ...)]`.
pub fn glue_dir() -> PathBuf {
    let dir = std::env::var_os("GLUE_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_default();
    if !dir.join("MRPC/train.tsv").is_file() {
        missing(&format!("GLUE data at {}", dir.display()), "set GLUE_DIR");
    }
    dir
}

/// The `--device` index of the first software wgpu adapter (lavapipe).
pub fn lavapipe_index() -> usize {
    match adapters().iter().find(|a| a.kind == "cpu") {
        Some(a) => a.index,
        None => missing(
            "a software wgpu adapter (lavapipe)",
            "apt-get install mesa-vulkan-drivers libvulkan1",
        ),
    }
}

/// Runs the binary and returns stdout, failing the test with stderr when it exits non-zero.
pub fn run_ok(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().expect("run pac-wgpu");
    assert!(
        out.status.success(),
        "pac-wgpu failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// history.jsonl of `run`, timings and memory included.
pub fn history(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("history.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `key` of the history after epoch `to` within 5 % of its value after epoch `from`.
pub fn assert_flat(history: &[serde_json::Value], key: &str, from: usize, to: usize) {
    let at = |epoch: usize| history[epoch - 1][key].as_f64().unwrap();
    let growth = at(to) / at(from) - 1.0;
    eprintln!(
        "{key}: {} after epoch {from}, {} after epoch {to} ({growth:+.3})",
        at(from),
        at(to)
    );
    assert!(
        growth.abs() < 0.05,
        "{key} grew by {growth:+.3} from epoch {from} to {to}"
    );
}

/// history.jsonl without the timing and memory fields, which legitimately differ between runs.
pub fn history_without_timings(run: &Path) -> Vec<serde_json::Value> {
    let mut records = history(run);
    for record in &mut records {
        record.as_object_mut().unwrap().retain(|k, _| {
            !k.ends_with("_seconds")
                && !k.ends_with("_per_s")
                && !k.ends_with("_bytes")
                && !k.ends_with("_in_use")
                && !k.ends_with("_reserved")
        });
    }
    records
}

/// Every tensor of a safetensors file as raw bytes, by name (the header's order may vary).
pub fn tensor_bytes(path: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, view)| (name, view.data().to_vec()))
        .collect()
}

/// The tensors of a run's last checkpoint, by name.
pub fn last_weights(run: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    tensor_bytes(&run.join("checkpoints/last/model.safetensors"))
}

/// `pac-wgpu train --resume` of the run in `out` on the CPU, quiet; the run's flags from run.json.
pub fn resume_command(out: &Path) -> std::process::Command {
    let mut cmd = binary();
    cmd.args([
        "train",
        "--device",
        "cpu",
        "--quiet",
        "--resume",
        "--output-dir",
    ])
    .arg(out);
    cmd
}

/// The one line a failed command printed (the headless Vulkan loader's XDG_RUNTIME_DIR warning
/// aside); fails the test on success, a panic or more lines.
pub fn error_line(out: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected a failure, got: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.contains("XDG_RUNTIME_DIR"))
        .collect();
    assert_eq!(lines.len(), 1, "expected one line: {stderr}");
    lines[0].to_string()
}

/// The names of the entries of `dir`, sorted.
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
