//! PAC-tuning's state in a checkpoint folder (`pac.safetensors`): θ0, p and the noise-Adam's
//! moments of p as tensors, b, K̂ and the noise-Adam's step and moments of b as bit patterns in
//! the metadata, so that a resumed run continues with exactly these numbers.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Result, anyhow, bail};
use burn::tensor::{Device, Tensor};

use super::PacTuning;
use super::bound::KHat;
use super::noise_adam::NoiseAdam;
use crate::model::trainable::{Group, Trainable};
use crate::util::files::{TensorFile, write_tensors};

/// File of the PAC state inside a checkpoint folder.
const PAC_FILE: &str = "pac.safetensors";

impl PacTuning {
    /// Writes θ0, p, b, K̂ and the noise-Adam state into checkpoint folder `dir`.
    pub fn save(&self, dir: &Path, trainable: &[Trainable]) -> Result<()> {
        // The moments as m and v, each its own tensor in the file.
        let moments: Vec<_> = (0..trainable.len())
            .map(|j| (self.adam.m_p(j), self.adam.v_p(j)))
            .collect();
        let mut tensors = Vec::new();
        for (j, t) in trainable.iter().enumerate() {
            tensors.push((format!("theta0.{}", t.name), &self.theta0[j]));
            tensors.push((format!("p.{}", t.name), &self.p[j]));
            let (m, v) = &moments[j];
            for (kind, moment) in [("m_p", m), ("v_p", v)] {
                if let Some(m) = moment {
                    tensors.push((format!("{kind}.{}", t.name), m));
                }
            }
        }
        let json = |v: &[f64]| {
            let bits: Vec<u64> = v.iter().map(|x| x.to_bits()).collect();
            serde_json::to_string(&bits).expect("integers serialise")
        };
        let meta = HashMap::from([
            ("b".to_string(), json(&self.b)),
            ("m_b".to_string(), json(&self.adam.m_b)),
            ("v_b".to_string(), json(&self.adam.v_b)),
            ("noise_adam_step".to_string(), self.adam.step.to_string()),
            ("prior_std".to_string(), json(&self.k_hat.prior_std)),
            ("k".to_string(), json(&self.k_hat.k)),
        ]);
        write_tensors(&dir.join(PAC_FILE), &tensors, meta)
    }

    /// Reads what [`PacTuning::save`] wrote; n, γ and the schedule come from the run's config.
    pub fn load(
        dir: &Path,
        trainable: &[Trainable],
        n: usize,
        gamma: f64,
        stage1_epochs: usize,
        device: &Device,
    ) -> Result<PacTuning> {
        let file = TensorFile::read(&dir.join(PAC_FILE))?;
        let list = |key: &str| -> Result<Vec<f64>> {
            let bits: Vec<u64> =
                serde_json::from_str(file.meta.get(key).map(String::as_str).unwrap_or(""))
                    .map_err(|e| anyhow!("{}: metadata {key}: {e}", file.path.display()))?;
            Ok(bits.into_iter().map(f64::from_bits).collect())
        };
        let need = |name: String, len: usize| -> Result<Tensor<1>> {
            file.tensor(&name, len, device)?
                .ok_or_else(|| anyhow!("{}: no tensor {name}", file.path.display()))
        };
        let groups: Vec<Group> = trainable.iter().map(|t| t.group).collect();
        let mut adam = NoiseAdam::new(&groups);
        adam.step = file.meta("noise_adam_step")?;
        adam.m_b = list("m_b")?;
        adam.v_b = list("v_b")?;
        let mut theta0 = Vec::with_capacity(trainable.len());
        let mut p = Vec::with_capacity(trainable.len());
        for (j, t) in trainable.iter().enumerate() {
            theta0.push(need(format!("theta0.{}", t.name), t.numel())?);
            p.push(need(format!("p.{}", t.name), t.numel())?);
            let m = file.tensor(&format!("m_p.{}", t.name), t.numel(), device)?;
            let v = file.tensor(&format!("v_p.{}", t.name), t.numel(), device)?;
            match (m, v) {
                (Some(m), Some(v)) => adam.set_moments(j, m, v),
                (None, None) => {}
                _ => bail!(
                    "{}: m_p and v_p of {} come in pairs",
                    file.path.display(),
                    t.name
                ),
            }
        }
        let b = list("b")?;
        if b.len() != trainable.len() {
            bail!(
                "{}: b has {} entries, expected {}",
                file.path.display(),
                b.len(),
                trainable.len()
            );
        }
        Ok(PacTuning {
            theta0,
            p,
            b,
            k_hat: KHat {
                prior_std: list("prior_std")?,
                k: list("k")?,
            },
            gamma_range: super::bound::fixed_gamma(gamma),
            n,
            adam,
            stage1_epochs,
            keep_grad_p: false,
        })
    }
}
