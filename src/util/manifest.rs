//! manifest.json: the size and xxh3-64 checksum of every file of a folder, written after
//! them, so that a reader can prove the folder is the one that was written (no flipped byte,
//! no cut file).

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use super::files::write_json;

pub const MANIFEST: &str = "manifest.json";

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    files: Vec<Entry>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    bytes: u64,
    /// xxh3-64 of the contents, 16 hex digits.
    xxh3: String,
}

/// Whether a folder proved whole, or has no manifest to prove it with (an older writer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integrity {
    Verified,
    Unverified,
}

/// Writes `dir/manifest.json` over the plain files of `dir` (write it last).
pub fn write(dir: &Path) -> Result<()> {
    let mut names = Vec::new();
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))?
    {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_file() && name != MANIFEST {
            names.push(name);
        }
    }
    names.sort();
    let files = names
        .into_iter()
        .map(|name| {
            let (bytes, xxh3) = measure(&dir.join(&name))?;
            Ok(Entry { name, bytes, xxh3 })
        })
        .collect::<Result<_>>()?;
    write_json(&dir.join(MANIFEST), &Manifest { files })
}

/// Checks every file `dir/manifest.json` lists; the error names the first file that differs.
pub fn verify(dir: &Path) -> Result<Integrity> {
    let path = dir.join(MANIFEST);
    let text = match std::fs::read(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Integrity::Unverified),
        other => other.with_context(|| format!("{}: cannot read", path.display()))?,
    };
    let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| {
        anyhow!(
            "{}: expected a checkpoint manifest, found {e}",
            path.display()
        )
    })?;
    for entry in &manifest.files {
        let file = dir.join(&entry.name);
        if entry.name.contains(['/', '\\']) || !file.is_file() {
            bail!("{}: missing (listed in {MANIFEST})", file.display());
        }
        let (bytes, xxh3) = measure(&file)?;
        if bytes != entry.bytes {
            bail!(
                "{}: {bytes} bytes where {MANIFEST} says {} (cut short or changed after it was written)",
                file.display(),
                entry.bytes
            );
        }
        if xxh3 != entry.xxh3 {
            bail!(
                "{}: its checksum differs from {MANIFEST} (the file changed after it was written)",
                file.display()
            );
        }
    }
    Ok(Integrity::Verified)
}

/// The length and xxh3-64 (hex) of the file at `path`, read in blocks.
fn measure(path: &Path) -> Result<(u64, String)> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let (mut hasher, mut block, mut bytes) = (Xxh3::new(), vec![0u8; 1 << 20], 0u64);
    loop {
        let n = file
            .read(&mut block)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&block[..n]);
        bytes += n as u64;
    }
    Ok((bytes, format!("{:016x}", hasher.digest())))
}
