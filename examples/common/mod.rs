//! What the benchmarks share: device syncs, order statistics and writing their results. Each
//! uses a part of it.

#![allow(dead_code)]

use std::path::Path;

use anyhow::{Result, anyhow};
use burn::tensor::Device;
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

/// Waits for everything queued on `device`.
pub fn sync(device: &Device) -> Result<()> {
    device
        .sync()
        .map_err(|e| anyhow!("device sync failed: {e}"))
}

/// Order statistics of a sample (nearest rank).
#[derive(serde::Serialize)]
pub struct Spread {
    pub min: f64,
    pub p25: f64,
    pub median: f64,
    pub p75: f64,
    pub max: f64,
}

pub fn spread(sample: &[f64]) -> Spread {
    let mut v = sample.to_vec();
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Spread {
        min: at(0.0),
        p25: at(0.25),
        median: at(0.5),
        p75: at(0.75),
        max: at(1.0),
    }
}

pub fn median(sample: &[f64]) -> f64 {
    spread(sample).median
}
