//! Files that are never seen half-written: atomic writes (a temporary file in the same folder,
//! then a rename), JSON as it reads back, and safetensors files of flat f32 tensors.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::tensor::{Dtype, TensorView};
use serde::Serialize;

use super::text::escape_controls;

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

/// Writes named 1-D tensors (read back from the device) and string metadata as safetensors.
pub fn write_tensors(
    path: &Path,
    tensors: &[(String, &Tensor<1>)],
    meta: HashMap<String, String>,
) -> Result<()> {
    let mut bytes = Vec::with_capacity(tensors.len());
    for (_, t) in tensors {
        let values = t
            .to_data()
            .try_to_vec::<f32>()
            .map_err(|e| anyhow!("cannot read a tensor back from the device: {e:?}"))?;
        bytes.push((
            values.len(),
            values
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect::<Vec<u8>>(),
        ));
    }
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, _), (n, b))| Ok((name.clone(), TensorView::new(Dtype::F32, vec![*n], b)?)))
        .collect::<Result<_, safetensors::SafeTensorError>>()?;
    let data = safetensors::serialize(views, Some(meta))?;
    write_atomic(path, &data)
}

/// The f32 tensors (values row-major, and shapes) and the metadata of a safetensors file, such
/// as one written by [`write_tensors`].
pub struct TensorFile {
    pub path: PathBuf,
    pub tensors: HashMap<String, Vec<f32>>,
    pub shapes: HashMap<String, Vec<usize>>,
    pub meta: HashMap<String, String>,
}

impl TensorFile {
    pub fn read(path: &Path) -> Result<TensorFile> {
        let bytes =
            std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        TensorFile::from_bytes(&bytes, path)
    }

    /// The tensors of a safetensors file's `bytes`; `path` names the file in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<TensorFile> {
        let corrupt = |e: safetensors::SafeTensorError| {
            let e = escape_controls(&e.to_string());
            anyhow!("{}: corrupt safetensors file ({e})", path.display())
        };
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes).map_err(corrupt)?;
        let file = safetensors::SafeTensors::deserialize(bytes).map_err(corrupt)?;
        let (mut tensors, mut shapes) = (HashMap::new(), HashMap::new());
        for (name, view) in file.tensors() {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            shapes.insert(name.clone(), view.shape().to_vec());
            tensors.insert(name, values);
        }
        Ok(TensorFile {
            path: path.to_path_buf(),
            tensors,
            shapes,
            meta: header.metadata().clone().unwrap_or_default(),
        })
    }

    /// Tensor `name` of `len` values on `device`; `None` when the file lacks it.
    pub fn tensor(&self, name: &str, len: usize, device: &Device) -> Result<Option<Tensor<1>>> {
        match self.tensors.get(name) {
            None => Ok(None),
            Some(v) if v.len() != len => bail!(
                "{}: {name} has {} values, expected {len}",
                self.path.display(),
                v.len()
            ),
            Some(v) => Ok(Some(Tensor::from_data(
                TensorData::new(v.clone(), [len]),
                device,
            ))),
        }
    }

    pub fn meta<T: std::str::FromStr>(&self, key: &str) -> Result<T> {
        self.meta
            .get(key)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("{}: no valid {key} in the metadata", self.path.display()))
    }
}
