//! The library's modules depend one way: no file of src/ imports, directly or through others,
//! a file that imports it back, and the top-level modules keep their layers (helpers → model →
//! pac → train → cli; glue and the run records beside). Read from the sources: every
//! `crate::…`, `super::…` and child-module path a file names is an edge to the file it reaches,
//! except a submodule's use of its own ancestors (whose mod.rs holds the types it shares).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layer of each top-level module: a module may use modules of its own layer or below.
const LAYERS: [(&str, u8); 21] = [
    ("rng", 0),
    ("reduce", 0),
    ("files", 0),
    ("device", 0),
    ("kernel", 0),
    ("metrics", 0),
    ("tokenize", 0),
    ("hub", 0),
    ("glue", 1),
    ("model", 1),
    ("optim", 1),
    ("run", 1),
    ("data", 2),
    ("report", 2),
    ("step", 3),
    ("pac", 4),
    ("train", 5),
    ("sweep", 6),
    ("cli", 6),
    ("main", 6),
    ("lib", 6),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Module path of a source file: src/pac/kl.rs → ["pac", "kl"], src/pac/mod.rs → ["pac"].
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The paths a file's code names: `crate::a::b`, `super::x` (resolved), `child::y` for the
/// file's own submodules, with `{a, b}` groups expanded one level. Comments are ignored.
fn named_paths(file: &Path, module: &[String], children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(file).unwrap();
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut paths = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let before_ok = i == 0 || !(is_ident(bytes[i - 1]) || bytes[i - 1] == ':');
        if !before_ok || !is_ident(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && (is_ident(bytes[i]) || bytes[i] == ':') {
            i += 1;
        }
        let word: String = bytes[start..i].iter().collect();
        let segments: Vec<&str> = word.split("::").filter(|s| !s.is_empty()).collect();
        if segments.len() < 2 && !(word.ends_with("::") && i < bytes.len() && bytes[i] == '{') {
            continue;
        }
        let mut base: Vec<String> = match segments[0] {
            "crate" => Vec::new(),
            "super" => module[..module.len().saturating_sub(1)].to_vec(),
            "self" => module.to_vec(),
            first if children.contains(first) => module.to_vec(),
            _ => continue,
        };
        let skip = usize::from(matches!(segments[0], "crate" | "super" | "self"));
        base.extend(segments[skip..].iter().map(|s| s.to_string()));
        if word.ends_with("::") && i < bytes.len() && bytes[i] == '{' {
            let end = i + bytes[i..].iter().position(|&c| c == '}').unwrap_or(0);
            let group: String = bytes[i + 1..end].iter().collect();
            for item in group.split(',') {
                let item = item.trim().split("::").next().unwrap_or("").trim();
                if !item.is_empty() && item != "self" {
                    let mut path = base.clone();
                    path.push(item.to_string());
                    paths.push(path);
                }
            }
        }
        paths.push(base);
    }
    paths
}

/// The file a module path lands in: its longest prefix that is a module of src/.
fn resolve(path: &[String], modules: &BTreeMap<Vec<String>, PathBuf>) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|prefix| modules.contains_key(prefix))
}

#[test]
fn modules_form_no_import_cycle_and_keep_their_layers() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let modules: BTreeMap<Vec<String>, PathBuf> =
        files.iter().map(|f| (module_of(f), f.clone())).collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, file) in &modules {
        let children: BTreeSet<String> = modules
            .keys()
            .filter(|m| m.len() == module.len() + 1 && m.starts_with(module))
            .map(|m| m.last().unwrap().clone())
            .collect();
        let targets = edges.entry(module.clone()).or_default();
        for path in named_paths(file, module, &children) {
            // A submodule may use what its ancestors define (Rust's module tree puts the
            // shared types of a module in its mod.rs); every other edge counts.
            if let Some(target) = resolve(&path, &modules)
                && !module.starts_with(&target[..])
            {
                targets.insert(target);
            }
        }
    }
    assert!(
        edges.values().map(BTreeSet::len).sum::<usize>() > 50,
        "too few imports found: {edges:?}"
    );

    // Layers of the top-level modules.
    let layer = |m: &[String]| {
        let top = m.first().map_or("lib", String::as_str);
        LAYERS
            .iter()
            .find(|(name, _)| *name == top)
            .unwrap_or_else(|| panic!("src/{top}: not in LAYERS"))
            .1
    };
    for (from, targets) in &edges {
        for to in targets {
            assert!(
                layer(from) >= layer(to),
                "{} (layer {}) uses {} (layer {})",
                from.join("::"),
                layer(from),
                to.join("::"),
                layer(to)
            );
        }
    }

    // No cycle: depth-first search, a back edge is one.
    fn visit(
        m: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        stack: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) {
        if done.contains(m) {
            return;
        }
        if let Some(at) = stack.iter().position(|s| s == m) {
            let cycle: Vec<String> = stack[at..].iter().map(|s| s.join("::")).collect();
            panic!("import cycle: {} -> {}", cycle.join(" -> "), m.join("::"));
        }
        stack.push(m.clone());
        for next in edges.get(m).into_iter().flatten() {
            visit(next, edges, stack, done);
        }
        stack.pop();
        done.insert(m.clone());
    }
    let mut done = BTreeSet::new();
    for m in edges.keys() {
        visit(m, &edges, &mut Vec::new(), &mut done);
    }
}
