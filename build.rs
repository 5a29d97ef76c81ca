//! Finds the tests' optional prerequisites, so that a test whose prerequisite is missing is
//! compiled as `#[ignore = "needs …"]` and cargo lists it, with the reason, as not run.
//! Under `CI=true` every prerequisite counts as present: every test runs, and fails if its
//! prerequisite is missing. Sets these cfgs (used only by tests/):
//! - `pac_test_minilm`: all-MiniLM-L6-v2 (`scripts/fetch-model.sh`, or `$PAC_WGPU_MODEL_DIR`);
//! - `pac_test_glue`: real GLUE in `$GLUE_DIR`;
//! - `pac_test_lavapipe`: Mesa's software Vulkan driver;
//! - `pac_test_browser`: Chromium, the wasm32 target and the wasm-bindgen CLI that web/ pins;
//! - `pac_test_checkpoints`: the tiny golden checkpoints (`scripts/fetch-golden.sh`);
//! - `pac_test_peft`: Python 3 with torch, transformers and peft (PEFT adapter exports);
//! - `pac_test_naga`: the naga CLI of wgpu's naga version and spirv-val (cross-compilation).

use std::path::{Path, PathBuf};
use std::process::Command;

const CFGS: [&str; 7] = [
    "pac_test_minilm",
    "pac_test_glue",
    "pac_test_lavapipe",
    "pac_test_browser",
    "pac_test_checkpoints",
    "pac_test_peft",
    "pac_test_naga",
];

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    for var in [
        "CI",
        "GLUE_DIR",
        "PAC_WGPU_MODEL_DIR",
        "PATH",
        "VK_ICD_FILENAMES",
    ] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    for cfg in CFGS {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
    }
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    let found = [
        minilm(),
        glue(),
        lavapipe(),
        browser(),
        checkpoints(),
        python_peft(),
        naga(),
    ];
    for (cfg, found) in CFGS.into_iter().zip(found) {
        if ci || found {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}

fn crate_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap())
}

/// Watches `path` if it exists (cargo reruns a build script on every build for a missing one).
fn watch(path: &Path) -> bool {
    let exists = path.exists();
    if exists {
        println!("cargo::rerun-if-changed={}", path.display());
    }
    exists
}

fn minilm() -> bool {
    watch(&crate_dir().join("assets"));
    let dir = std::env::var_os("PAC_WGPU_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate_dir().join("assets/models/all-MiniLM-L6-v2"));
    watch(&dir.join("model.safetensors"))
}

/// The model weights the parity tests load, which git does not hold (scripts/fetch-golden.sh).
fn checkpoints() -> bool {
    let golden = crate_dir().join("tests/golden");
    [
        "families/tiny-roberta/model.safetensors",
        "families/tiny-gpt2/model.safetensors",
        "pac-step/pac-step.safetensors",
        "pac-step/tiny-bert/model.safetensors",
        "modern/tiny-llama/model.safetensors",
        "modern/tiny-qwen2/model.safetensors",
        "modern/tiny-qwen3/model.safetensors",
        "modern/tiny-modernbert/model.safetensors",
        "modern/modernbert-seqcls-head.safetensors",
    ]
    .iter()
    .all(|file| watch(&golden.join(file)))
}

fn python_peft() -> bool {
    Command::new("python3")
        .args(["-c", "import torch, transformers, peft"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn glue() -> bool {
    std::env::var_os("GLUE_DIR")
        .filter(|d| !d.is_empty())
        .is_some_and(|dir| watch(&PathBuf::from(dir).join("MRPC/train.tsv")))
}

fn lavapipe() -> bool {
    let listed = std::env::var_os("VK_ICD_FILENAMES")
        .is_some_and(|files| std::env::split_paths(&files).any(|f| is_lavapipe(&f)));
    let installed = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"]
        .iter()
        .filter(|dir| watch(Path::new(dir)))
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .flatten()
        .any(|entry| is_lavapipe(&entry.path()));
    listed || installed
}

fn is_lavapipe(icd: &Path) -> bool {
    icd.file_name()
        .is_some_and(|name| name.to_string_lossy().starts_with("lvp_icd"))
}

fn browser() -> bool {
    let chromium = ["chromium", "chromium-browser"]
        .iter()
        .find_map(|name| on_path(name));
    let wasm_bindgen = on_path("wasm-bindgen").filter(|path| {
        let wanted = format!("wasm-bindgen {}", pinned_wasm_bindgen());
        Command::new(path)
            .arg("--version")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == wanted)
    });
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or_default();
    let wasm_target = watch(&sysroot.join("lib/rustlib"))
        && sysroot.join("lib/rustlib/wasm32-unknown-unknown").is_dir();
    let found = chromium.is_some() && wasm_bindgen.is_some() && wasm_target;
    for path in [chromium, wasm_bindgen].into_iter().flatten() {
        watch(&path);
    }
    found
}

/// naga (`cargo install naga-cli`) with wgpu's naga version, and spirv-val (spirv-tools).
fn naga() -> bool {
    let version = Command::new("naga").arg("--version").output();
    let lock = std::fs::read_to_string(crate_dir().join("Cargo.lock")).unwrap_or_default();
    let wanted = lock
        .split("name = \"naga\"\nversion = \"")
        .nth(1)
        .and_then(|rest| rest.split('.').next())
        .map(|major| format!("{major}."));
    let same = match (version, wanted) {
        (Ok(out), Some(major)) => String::from_utf8_lossy(&out.stdout).starts_with(&major),
        _ => false,
    };
    same && on_path("spirv-val").is_some()
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The wasm-bindgen version that web/Cargo.lock pins.
fn pinned_wasm_bindgen() -> String {
    let lock = crate_dir().join("web/Cargo.lock");
    watch(&lock);
    let text = std::fs::read_to_string(lock).unwrap_or_default();
    text.split("name = \"wasm-bindgen\"\n")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .map(|line| {
            line.trim_start_matches("version = ")
                .trim_matches('"')
                .to_string()
        })
        .unwrap_or_default()
}
