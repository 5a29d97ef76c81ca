//! Every kernel fits every WebGPU device: at most [`MAX_STORAGE_BUFFERS`] storage buffers per
//! shader stage, WebGPU's default `maxStorageBuffersPerShaderStage` (Chrome's too; wgpu's Metal
//! backend reserves one of Apple's slots). Read from the sources: a compiled kernel is the files
//! of shaders/ that a `wgsl_kernel!(Name, "a.wgsl", "b.wgsl", …)` of src/ concatenates (WGSL has
//! no includes), and each of its `var<storage` declarations outside comments is one binding.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// WebGPU's default limit of storage buffers per shader stage.
const MAX_STORAGE_BUFFERS: usize = 8;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The files under `dir` (recursively) whose names end with `ext`.
fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            found.extend(files(&path, ext));
        } else if path.to_string_lossy().ends_with(ext) {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// `source` without its `//` and `/* */` comments (WGSL's only kinds; block comments nest).
fn strip_comments(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut depth = 0usize;
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('/', Some('*')) => {
                chars.next();
                depth += 1;
            }
            ('*', Some('/')) if depth > 0 => {
                chars.next();
                depth -= 1;
            }
            ('/', Some('/')) if depth == 0 => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Storage buffers a WGSL source declares.
fn storage_bindings(source: &str) -> usize {
    strip_comments(source).matches("var<storage").count()
}

/// Each `wgsl_kernel!` of src/: (where, its kernel's name, the shader files it concatenates).
fn kernels() -> Vec<(String, String, Vec<String>)> {
    let mut kernels = Vec::new();
    for path in files(&root().join("src"), ".rs") {
        let source = std::fs::read_to_string(&path).expect("readable source");
        let code = strip_comments(&source);
        for call in code.split("wgsl_kernel!(").skip(1) {
            let Some(end) = call.find(')') else { continue };
            let args: Vec<&str> = call[..end].split(',').map(str::trim).collect();
            // The macro's own definition has `$name:ident, $($file:literal),+` here.
            if args[0].starts_with('$') {
                continue;
            }
            let shaders: Vec<String> = args[1..]
                .iter()
                .filter(|a| !a.is_empty())
                .map(|a| a.trim_matches('"').to_string())
                .collect();
            let place = path.strip_prefix(root()).unwrap_or(&path).display();
            kernels.push((place.to_string(), args[0].to_string(), shaders));
        }
    }
    kernels
}

fn shader_source(name: &str) -> String {
    let path = root().join("shaders").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn comments_do_not_count_as_bindings() {
    let source = "// var<storage, read> a: array<f32>;\n/* var<storage> /* nested */ b */\n\
                  @group(0) @binding(0) var<storage, read_write> c: array<f32>; // var<storage\n";
    assert_eq!(storage_bindings(source), 1);
}

#[test]
fn every_kernel_uses_at_most_8_storage_buffers() {
    let kernels = kernels();
    assert!(
        kernels.len() >= 3,
        "found only {} wgsl_kernel! calls in src/: {kernels:?}",
        kernels.len()
    );
    let mut compiled = BTreeSet::new();
    let mut over = Vec::new();
    for (place, name, shaders) in &kernels {
        let source: String = shaders.iter().map(|s| shader_source(s)).collect();
        let count = storage_bindings(&source);
        eprintln!(
            "{name} ({place}: {}): {count} storage buffers",
            shaders.join(" + ")
        );
        if count > MAX_STORAGE_BUFFERS {
            over.push(format!("{name} ({place}): {count}"));
        }
        compiled.extend(shaders.iter().cloned());
    }
    // Every shader that declares a binding is compiled by some kernel (else it went unchecked).
    for path in files(&root().join("shaders"), ".wgsl") {
        let name = path.file_name().expect("file name").to_string_lossy();
        let count = storage_bindings(&std::fs::read_to_string(&path).expect("readable shader"));
        if count > 0 {
            assert!(
                compiled.contains(name.as_ref()),
                "shaders/{name} declares {count} storage buffers but no wgsl_kernel! compiles it"
            );
        }
        if count > MAX_STORAGE_BUFFERS {
            over.push(format!("shaders/{name} alone: {count}"));
        }
    }
    assert!(
        over.is_empty(),
        "more than {MAX_STORAGE_BUFFERS} storage buffers per stage (WebGPU's default limit): {}",
        over.join("; ")
    );
}
