//! What both benchmarks do with their results.

use std::path::Path;

use anyhow::Result;
use serde_json::Value;

/// Writes `report` to `path` (atomically), when asked for, and says so.
pub fn write_report(path: Option<&Path>, report: &Value) -> Result<()> {
    if let Some(path) = path {
        pac_wgpu::util::files::write_json(path, report)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// The commit, marked `-dirty` when tracked files differ from it.
pub fn git_revision() -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}
