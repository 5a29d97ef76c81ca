//! Shared test fixtures: where the model, GLUE data and golden files are, the devices to test
//! on, and a tiny random BERT written to a temporary folder.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};

use pac_wgpu::device::{DeviceChoice, SelectedDevice, adapters, select};

pub mod hub;
pub mod parquet;
pub mod tiny;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Reports a missing prerequisite: fatal in CI (no silent skips), a skip note elsewhere.
pub fn missing(what: &str, hint: &str) -> Option<PathBuf> {
    if in_ci() {
        panic!("{what} not found and CI is set: {hint}");
    }
    eprintln!("skipped: {what} not found ({hint})");
    None
}

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// all-MiniLM-L6-v2 from `scripts/fetch-model.sh`, or `$PAC_WGPU_MODEL_DIR`.
pub fn minilm_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("PAC_WGPU_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate_dir().join("assets/models/all-MiniLM-L6-v2"));
    if dir.join("model.safetensors").is_file() {
        Some(dir)
    } else {
        missing(
            &format!("model at {}", dir.display()),
            "run scripts/fetch-model.sh or set PAC_WGPU_MODEL_DIR",
        )
    }
}

/// `../shared/golden` beside the checkout, or `$PAC_WGPU_GOLDEN_DIR`.
pub fn golden_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("PAC_WGPU_GOLDEN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate_dir().join("../shared/golden"));
    if dir.is_dir() {
        Some(dir)
    } else {
        missing(
            &format!("golden files at {}", dir.display()),
            "set PAC_WGPU_GOLDEN_DIR",
        )
    }
}

/// The first software (CPU-type) wgpu adapter, i.e. lavapipe on Linux.
pub fn lavapipe() -> Option<SelectedDevice> {
    match adapters().iter().find(|a| a.kind == "cpu") {
        Some(a) => Some(select(DeviceChoice::Index(a.index)).expect("select lavapipe")),
        None => {
            missing(
                "a software wgpu adapter (lavapipe)",
                "apt-get install mesa-vulkan-drivers libvulkan1",
            );
            None
        }
    }
}

/// The CPU device, plus lavapipe when present, plus the adapter `$PAC_WGPU_TEST_DEVICE` names
/// (an index from `pac-wgpu devices`: how scripts/gpu-bench.sh tests a real GPU).
pub fn test_devices() -> Vec<SelectedDevice> {
    let mut devices = vec![select(DeviceChoice::Cpu).expect("cpu device")];
    devices.extend(lavapipe());
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

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The `pac-wgpu` binary built for this test run.
pub fn binary() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_pac-wgpu"))
}

/// `$GLUE_DIR`, else `../shared/glue` beside the checkout.
pub fn glue_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("GLUE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate_dir().join("../shared/glue"));
    if dir.join("MRPC/train.tsv").is_file() {
        Some(dir)
    } else {
        missing(&format!("GLUE data at {}", dir.display()), "set GLUE_DIR")
    }
}

/// A GLUE folder at `into` with MRPC's train split and the first `rows` examples of its dev
/// split, so that each evaluation of the real model stays short.
pub fn mrpc_with_short_dev(glue: &Path, into: &Path, rows: usize) -> PathBuf {
    let mrpc = into.join("MRPC");
    std::fs::create_dir_all(&mrpc).unwrap();
    std::fs::copy(glue.join("MRPC/train.tsv"), mrpc.join("train.tsv")).unwrap();
    let dev = std::fs::read_to_string(glue.join("MRPC/dev.tsv")).unwrap();
    let kept: Vec<&str> = dev.lines().take(rows + 1).collect();
    std::fs::write(mrpc.join("dev.tsv"), kept.join("\n") + "\n").unwrap();
    into.to_path_buf()
}

/// The `--device` index of the first software wgpu adapter (lavapipe).
pub fn lavapipe_index() -> Option<usize> {
    lavapipe()?;
    adapters().iter().find(|a| a.kind == "cpu").map(|a| a.index)
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
