//! The library's modules depend one way: no file of src/ imports, directly or through others,
//! a file that imports it back, and the top-level modules keep their layers (util → ops →
//! model → data → step → pac → train → cli; glue and the run records beside). Read from the sources: every
//! `crate::…`, `super::…` and child-module path a file names is an edge to the file it reaches,
//! a submodule's use of its parent included: a mod.rs declares and re-exports its children, and
//! the types they share live in a child of their own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layer of each top-level module: a module may use modules of its own layer or below.
const LAYERS: [(&str, u8); 15] = [
    ("util", 0),
    ("ops", 1),
    ("glue", 1),
    ("optim", 1),
    ("run", 1),
    ("model", 2),
    ("data", 3),
    ("report", 3),
    ("step", 4),
    ("pac", 5),
    ("train", 6),
    ("sweep", 7),
    ("cli", 7),
    ("main", 7),
    ("lib", 7),
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

/// The paths a file's code names: `crate::a::b`, `super::x` and `super::super::x` (resolved),
/// `self::x`, `child::y` for the file's own submodules, with `{a, b::{c, d}}` groups expanded
/// at every depth. Comments are ignored.
fn named_paths(file: &Path, module: &[String], children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(file).unwrap();
    let code: Vec<char> = text
        .lines()
        .map(|l| l.split("//").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
        .chars()
        .collect();
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut paths = Vec::new();
    let mut i = 0;
    while i < code.len() {
        let before_ok = i == 0 || !(is_ident(code[i - 1]) || code[i - 1] == ':');
        if !before_ok || !is_ident(code[i]) {
            i += 1;
            continue;
        }
        let (segments, group, end) = path_at(&code, i);
        i = end;
        if segments.len() < 2 && group.is_none() {
            continue;
        }
        let Some(base) = absolute(&segments, module, children) else {
            continue;
        };
        if let Some(group) = group {
            expand(&group, &base, &mut paths);
        }
        paths.push(base);
    }
    paths
}

/// The path that starts at `code[i]`: its segments, the text of a `::{…}` group that ends it,
/// and where it ends.
fn path_at(code: &[char], mut i: usize) -> (Vec<String>, Option<String>, usize) {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let start = i;
    while i < code.len() && (is_ident(code[i]) || code[i] == ':') {
        i += 1;
    }
    let word: String = code[start..i].iter().collect();
    let segments = word
        .split("::")
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if !(word.ends_with("::") && code.get(i) == Some(&'{')) {
        return (segments, None, i);
    }
    let mut depth = 0;
    let open = i;
    while i < code.len() {
        match code[i] {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        i += 1;
        if depth == 0 {
            break;
        }
    }
    let group = code[open + 1..i - 1].iter().collect();
    (segments, Some(group), i)
}

/// `segments` as a path from the crate root, seen from `module`; `None` for other crates.
fn absolute(
    segments: &[String],
    module: &[String],
    children: &BTreeSet<String>,
) -> Option<Vec<String>> {
    let first = segments.first()?;
    let mut base = match first.as_str() {
        "crate" => Vec::new(),
        "super" | "self" => module.to_vec(),
        first if children.contains(first) => module.to_vec(),
        _ => return None,
    };
    let mut rest = segments;
    if first == "crate" || first == "self" {
        rest = &segments[1..];
    }
    while rest.first().is_some_and(|s| s == "super") {
        base.pop();
        rest = &rest[1..];
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// Every path of a `use` group (`a, b::c, d::{e, f}`) under `base`, nested groups included.
fn expand(group: &str, base: &[String], out: &mut Vec<Vec<String>>) {
    let mut depth = 0;
    let mut item = String::new();
    let mut items = Vec::new();
    for c in group.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut item));
                continue;
            }
            _ => {}
        }
        item.push(c);
    }
    items.push(item);
    for item in items {
        let item = item.trim();
        let (head, inner) = match item.split_once("::{") {
            Some((head, inner)) => (head, inner.strip_suffix('}')),
            None => (item.split(" as ").next().unwrap().trim(), None),
        };
        let mut path = base.to_vec();
        path.extend(
            head.split("::")
                .map(str::trim)
                .filter(|s| !s.is_empty() && *s != "self")
                .map(String::from),
        );
        if let Some(inner) = inner {
            expand(inner, &path, out);
        }
        if !path.is_empty() {
            out.push(path);
        }
    }
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
            if let Some(target) = resolve(&path, &modules)
                && target != *module
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

    // No cycle: every strongly connected component of more than one file is one.
    let cycles = cycles(&edges);
    assert!(
        cycles.is_empty(),
        "import cycles (files that reach each other):\n{}",
        cycles
            .iter()
            .map(|c| c
                .iter()
                .map(|m| m.join("::"))
                .collect::<Vec<_>>()
                .join(" <-> "))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

type Module = Vec<String>;

/// The strongly connected components of more than one module (Tarjan's algorithm).
fn cycles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct Tarjan<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, (usize, usize)>,
        stack: Vec<&'a Module>,
        found: Vec<Vec<Module>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, m: &'a Module) {
            let n = self.index.len();
            self.index.insert(m, (n, n));
            self.stack.push(m);
            for next in self.edges.get(m).into_iter().flatten() {
                match self.index.get(next) {
                    None => {
                        self.visit(next);
                        let low = self.index[next].1.min(self.index[m].1);
                        self.index.get_mut(m).unwrap().1 = low;
                    }
                    Some(&(at, _)) if self.stack.contains(&next) => {
                        let low = at.min(self.index[m].1);
                        self.index.get_mut(m).unwrap().1 = low;
                    }
                    Some(_) => {}
                }
            }
            if self.index[m].0 == self.index[m].1 {
                let at = self.stack.iter().position(|s| *s == m).unwrap();
                let component: Vec<Module> = self.stack.drain(at..).cloned().collect();
                if component.len() > 1 {
                    self.found.push(component);
                }
            }
        }
    }
    let mut t = Tarjan {
        edges,
        index: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for m in edges.keys() {
        if !t.index.contains_key(m) {
            t.visit(m);
        }
    }
    t.found
}
