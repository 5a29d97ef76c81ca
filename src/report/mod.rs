//! The run folder: run.json, history.jsonl, summary.json and checkpoints/, every file written
//! atomically (a temporary file in the same folder, then a rename).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::Value;

pub mod plots;

/// Writes `bytes` to `path` through `path.part` + rename, so readers never see half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".part");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot write", path.display()))
}

/// `value` as it reads back from its JSON text. serde_json's float parsing is not always
/// correctly rounded, so whatever a resumed run reads back from JSON (history lines, the loop
/// state) goes through JSON once in the uninterrupted run too: both then hold the same bits.
pub fn as_written<T: Serialize + serde::de::DeserializeOwned>(value: &T) -> Result<T> {
    Ok(serde_json::from_str(&serde_json::to_string(value)?)?)
}

pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// One output folder of `pac-wgpu train`.
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    /// Checks that `path` can take this run, touching nothing: a new run needs a missing or
    /// empty folder (or `overwrite`), `resume` a folder.
    pub fn check(path: &Path, resume: bool, overwrite: bool) -> Result<()> {
        if path.exists() && !path.is_dir() {
            bail!(
                "--output-dir {}: exists and is not a folder",
                path.display()
            );
        }
        if let Some(parent) = path.ancestors().skip(1).find(|a| a.exists())
            && !parent.is_dir()
        {
            bail!(
                "--output-dir {}: cannot create it, {} is a file",
                path.display(),
                parent.display()
            );
        }
        let non_empty = path.is_dir()
            && std::fs::read_dir(path)
                .with_context(|| format!("{}: cannot read output folder", path.display()))?
                .next()
                .is_some();
        if non_empty && !resume && !overwrite {
            bail!(
                "--output-dir {}: folder is not empty; pass --resume to continue that run or --overwrite to replace it",
                path.display()
            );
        }
        Ok(())
    }

    /// Opens `path` (after [`RunDir::check`]): `overwrite` empties it, `resume` keeps it.
    pub fn open(path: &Path, resume: bool, overwrite: bool) -> Result<RunDir> {
        Self::check(path, resume, overwrite)?;
        if overwrite && !resume && path.is_dir() {
            std::fs::remove_dir_all(path)
                .with_context(|| format!("{}: cannot empty output folder", path.display()))?;
        }
        std::fs::create_dir_all(path.join("checkpoints"))
            .with_context(|| format!("{}: cannot create output folder", path.display()))?;
        Ok(RunDir {
            path: path.to_path_buf(),
        })
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn checkpoint(&self, name: &str) -> PathBuf {
        self.path.join("checkpoints").join(name)
    }

    /// The history lines written so far (one JSON object each).
    pub fn read_history(&self) -> Result<Vec<Value>> {
        let path = self.file("history.jsonl");
        if !path.exists() {
            return Ok(Vec::new());
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l).with_context(|| {
                    format!("{}:{}: expected a JSON object", path.display(), i + 1)
                })
            })
            .collect()
    }

    /// Rewrites history.jsonl with `records` (atomically; the file is small).
    pub fn write_history(&self, records: &[Value]) -> Result<()> {
        let mut text = String::new();
        for r in records {
            text.push_str(&serde_json::to_string(r)?);
            text.push('\n');
        }
        write_atomic(&self.file("history.jsonl"), text.as_bytes())
    }
}
