//! Every WGSL module a PAC run compiles on lavapipe (K(λ), a stage-1 epoch, a stage-2 epoch and
//! the evaluations: our shaders and the kernels cubecl generates), captured from cubecl's
//! compilation log and translated with naga, wgpu's own translator, as wgpu translates for each
//! backend: to MSL (Metal), HLSL (DX12) and SPIR-V (Vulkan), the SPIR-V checked by spirv-val.
//! What this cannot prove: that Apple's Metal compiler and DXC accept the MSL and HLSL, and the
//! kernel variants cubecl picks on adapters with other features than lavapipe's.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// A backend as wgpu drives it: the file naga writes, and its options (SPIR-V 1.3 and Vulkan
/// 1.1 for subgroup operations; HLSL shader model 6.0, which wgpu's DX12 backend compiles with
/// DXC; MSL 2.1).
#[derive(Clone, Copy, Debug)]
enum Backend {
    Msl,
    Hlsl,
    Spirv,
}

const BACKENDS: [Backend; 3] = [Backend::Msl, Backend::Hlsl, Backend::Spirv];

impl Backend {
    fn naga_args(self) -> (&'static str, [&'static str; 2]) {
        match self {
            Backend::Msl => ("metal", ["--metal-version", "2.1"]),
            Backend::Hlsl => ("hlsl", ["--shader-model", "60"]),
            Backend::Spirv => ("spv", ["--spirv-version", "1.3"]),
        }
    }
}

struct Module {
    name: String,
    source: String,
}

/// Translates `module` (written to `dir/<index>.wgsl`) for `backend`; the first line of what
/// naga or spirv-val said when it fails.
fn translate(dir: &Path, index: usize, module: &Module, backend: Backend) -> Result<(), String> {
    let input = dir.join(format!("{index}.wgsl"));
    std::fs::write(&input, &module.source).unwrap();
    let (ext, flags) = backend.naga_args();
    let output = dir.join(format!("{index}.{ext}"));
    let naga = Command::new("naga")
        .args(flags)
        .arg(&input)
        .arg(&output)
        .output()
        .unwrap();
    if !naga.status.success() {
        return Err(first_line(&naga.stderr, &naga.stdout));
    }
    if let Backend::Spirv = backend {
        let val = Command::new("spirv-val")
            .args(["--target-env", "vulkan1.1"])
            .arg(&output)
            .output()
            .unwrap();
        if !val.status.success() {
            return Err(format!(
                "spirv-val: {}",
                first_line(&val.stderr, &val.stdout)
            ));
        }
    }
    Ok(())
}

/// The first line that says something, without terminal colours.
fn first_line(stderr: &[u8], stdout: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr).into_owned() + &String::from_utf8_lossy(stdout);
    let plain: String = text
        .split('\x1b')
        .enumerate()
        .map(|(i, part)| match i {
            0 => part,
            _ => part.split_once('m').map_or("", |(_, rest)| rest),
        })
        .collect();
    let mut lines = plain.lines().map(str::trim).filter(|l| !l.is_empty());
    lines.next().unwrap_or("no output").to_string()
}

/// The distinct modules in cubecl's compilation log: `name: ...` then the source in a
/// ```` ```wgsl ```` block.
fn captured(log: &str) -> Vec<Module> {
    let mut modules: Vec<Module> = Vec::new();
    for entry in log.split("[START_KERNEL_COMPILATION]").skip(1) {
        let name = entry
            .lines()
            .find_map(|l| l.strip_prefix("name: "))
            .unwrap_or("?")
            .trim_end_matches('<')
            .to_string();
        let Some((_, rest)) = entry.split_once("```wgsl\n") else {
            continue;
        };
        let source = rest.split("```").next().unwrap_or_default().to_string();
        if !modules.iter().any(|m| m.source == source) {
            modules.push(Module { name, source });
        }
    }
    modules
}

/// A PAC run of a tiny BERT on lavapipe that logs every module it compiles into `log`.
fn pac_run_logging_kernels(dir: &Path, log: &Path) {
    common::tiny::write_model(&dir.join("tiny-bert"), 23, |_| {});
    common::tiny::write_toy_sst2(dir);
    let device = common::lavapipe_index().to_string();
    let mut train = common::binary();
    train
        .env("CUBECL_DEBUG_LOG", log)
        .args(["train", "--task", "sst2", "--quiet", "--device", &device])
        .args(["--epochs", "2", "--stage1-epochs", "1", "--batch-size", "4"])
        .args(["--train-size", "0", "--model"])
        .arg(dir.join("tiny-bert"))
        .arg("--data-dir")
        .arg(dir)
        .arg("--output-dir")
        .arg(dir.join("run"));
    common::run_ok(&mut train);
}

/// Our shaders, each known by its first line (noise.wgsl and kl.wgsl start with philox.wgsl).
fn shaders() -> Vec<(PathBuf, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut found: Vec<(PathBuf, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let first = std::fs::read_to_string(&p)
                .unwrap()
                .lines()
                .next()
                .unwrap()
                .to_string();
            (p, first)
        })
        .collect();
    found.sort();
    found
}

#[test]
#[cfg_attr(
    not(all(pac_test_lavapipe, pac_test_naga)),
    ignore = "needs lavapipe, naga of wgpu's version (cargo install naga-cli --version 30.0.1) and spirv-val (apt-get install spirv-tools)"
)]
fn every_kernel_of_a_pac_run_translates_to_msl_hlsl_and_valid_spirv() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("cubecl.log");
    pac_run_logging_kernels(tmp.path(), &log);
    let modules = captured(&std::fs::read_to_string(&log).unwrap());
    assert!(
        modules.len() > 20,
        "only {} modules in the log",
        modules.len()
    );
    for (shader, first) in shaders() {
        assert!(
            modules.iter().any(|m| m.source.contains(&first)),
            "{} was not among the compiled modules",
            shader.display()
        );
    }
    let out = tmp.path().join("translated");
    std::fs::create_dir_all(&out).unwrap();
    let (mut failures, mut float_atomics) = (Vec::new(), Vec::new());
    for (i, module) in modules.iter().enumerate() {
        for backend in BACKENDS {
            let Err(why) = translate(&out, i, module, backend) else {
                continue;
            };
            // cubecl uses f32 atomics only where the adapter has them (lavapipe does); no DX12
            // adapter does, and naga's HLSL has none: there cubecl picks another variant.
            let expected =
                matches!(backend, Backend::Hlsl) && module.source.contains("atomic<f32>");
            let line = format!("{} on {backend:?}: {why}", module.name);
            match expected {
                true => float_atomics.push(line),
                false => failures.push(line),
            }
        }
    }
    eprintln!(
        "{} modules translated to MSL, HLSL and SPIR-V; f32 atomics left to lavapipe-like adapters: {float_atomics:#?}",
        modules.len()
    );
    assert!(
        failures.is_empty(),
        "translation failures:\n{}",
        failures.join("\n")
    );
}

/// The check itself: a kernel using what a backend cannot express fails for that backend.
#[test]
#[cfg_attr(
    not(pac_test_naga),
    ignore = "needs naga (cargo install naga-cli) and spirv-val"
)]
fn a_kernel_with_f32_atomics_is_refused_for_hlsl_and_named() {
    let module = Module {
        name: "float_atomic_add".into(),
        source: "@group(0) @binding(0) var<storage, read_write> sum: array<atomic<f32>>;\n\
                 @compute @workgroup_size(64)\n\
                 fn main(@builtin(global_invocation_id) id: vec3<u32>) {\n\
                     atomicAdd(&sum[0], f32(id.x));\n\
                 }\n"
        .into(),
    };
    let dir = tempfile::tempdir().unwrap();
    let hlsl = translate(dir.path(), 0, &module, Backend::Hlsl);
    let why = hlsl.expect_err("naga's HLSL accepted f32 atomics");
    assert!(
        why.contains("FLOAT32_ATOMIC") || why.contains("invalid"),
        "{why}"
    );
    translate(dir.path(), 1, &module, Backend::Spirv).unwrap();
}
