//! PAC-tuning's state beside the model: θ0, the posterior log-stds p, the prior log-stds b,
//! K̂ and the noise-Adam, with their initialisation and the one-off K(λ) estimation.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Result, anyhow, bail};
use burn::tensor::{Device, Distribution, Tensor};

use super::bound::{self, KEstimate, KHat};
use super::noise_adam::NoiseAdam;
use crate::model::Classifier;
use crate::reduce;
use crate::train::checkpoint::{TensorFile, write_tensors};
use crate::train::data::{Prepared, per_example_loss};
use crate::train::params::{self, Group, Slot};

/// Prior models drawn per prior std in the K(λ) estimation (R in the spec).
pub const PRIOR_MODELS: usize = 10;

pub struct PacState {
    /// θ0 per trainable tensor, flattened (the weights when fine-tuning started).
    pub theta0: Vec<Tensor<1>>,
    /// Posterior log-std per scalar: σ = exp(p).
    pub p: Vec<Tensor<1>>,
    /// Prior log-std per trainable tensor (host, f64; tiny).
    pub b: Vec<f64>,
    pub k_hat: KHat,
    /// [γ1, γ2]; equal ends make γ constant.
    pub gamma_range: (f64, f64),
    /// Number of training examples n.
    pub n: usize,
    pub adam: NoiseAdam,
    /// Whether stage-1 steps hand back p's gradient in `StepReport::grad_p` (parity tests;
    /// training leaves it off and saves the kernel a write).
    pub keep_grad_p: bool,
}

impl PacState {
    /// The spec's initialisation: p = 2 ln(mean |θ0|) over the encoder (ln(mean |ω0|) for the
    /// head), b_j = the p of its group, θ0 = the current weights.
    pub fn init(
        model: &Classifier,
        slots: &[Slot],
        train_embeddings: bool,
        n: usize,
        gamma: f64,
        k_hat: KHat,
    ) -> Result<PacState> {
        let mut theta0 = Vec::with_capacity(slots.len());
        params::visit_slots(model, train_embeddings, None, |_, value, _| {
            theta0.push(value)
        });
        let (mut abs_sum, mut count) = ([0.0f64; 2], [0usize; 2]);
        for (slot, t) in slots.iter().zip(&theta0) {
            let g = (slot.group == Group::Head) as usize;
            abs_sum[g] += reduce::sum(t.clone().abs()).into_scalar::<f32>() as f64;
            count[g] += slot.numel();
        }
        let (p_encoder, p_head) = bound::init_log_std(
            abs_sum[0] / count[0].max(1) as f64,
            abs_sum[1] / count[1].max(1) as f64,
        );
        let device = theta0[0].device();
        let value = |s: &Slot| match s.group {
            Group::Encoder => p_encoder,
            Group::Head => p_head,
        };
        let p = slots
            .iter()
            .map(|s| Tensor::full([s.numel()], value(s), &device))
            .collect();
        let b = slots.iter().map(value).collect();
        let groups: Vec<Group> = slots.iter().map(|s| s.group).collect();
        Ok(PacState {
            theta0,
            p,
            b,
            k_hat,
            gamma_range: (gamma, gamma),
            n,
            adam: NoiseAdam::new(&groups),
            keep_grad_p: false,
        })
    }

    /// Mean σ = exp(p) over the encoder's and the head's scalars, and per tensor.
    pub fn sigma_means(&self, slots: &[Slot]) -> (f64, f64, Vec<f64>) {
        let mut per_slot = Vec::with_capacity(slots.len());
        let (mut sum, mut count) = ([0.0f64; 2], [0usize; 2]);
        for (slot, p) in slots.iter().zip(&self.p) {
            let total = reduce::sum(p.clone().exp()).into_scalar::<f32>() as f64;
            let g = (slot.group == Group::Head) as usize;
            sum[g] += total;
            count[g] += slot.numel();
            per_slot.push(total / slot.numel() as f64);
        }
        (
            sum[0] / count[0].max(1) as f64,
            sum[1] / count[1].max(1) as f64,
            per_slot,
        )
    }

    /// Mean prior std exp(b_j) over the tensors.
    pub fn prior_std_mean(&self) -> f64 {
        self.b.iter().map(|b| b.exp()).sum::<f64>() / self.b.len().max(1) as f64
    }
}

/// Estimates K(λ) once before training (spec: K(λ)): for every prior std s_k of the grid, the
/// per-example losses of [`PRIOR_MODELS`] models θ0 + s_k·N(0, I) on all `train` examples
/// (forward only). `model` must be on a plain (non-autodiff) device; its RNG is seeded by `seed`.
#[allow(clippy::too_many_arguments)]
pub fn estimate_k(
    model: &Classifier,
    train_embeddings: bool,
    train: &Prepared,
    gammas: &[f64],
    batch_size: usize,
    pad: u32,
    seed: u64,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(KHat, KEstimate)> {
    device.seed(seed);
    let grid = bound::prior_std_grid();
    let rows: Vec<usize> = (0..train.len()).collect();
    let total = grid.len() * PRIOR_MODELS;
    let mut losses = Vec::with_capacity(grid.len());
    for (k, &s) in grid.iter().enumerate() {
        let mut per_model = Vec::with_capacity(PRIOR_MODELS);
        for r in 0..PRIOR_MODELS {
            let prior = params::map_slots(model.clone(), train_embeddings, |_, theta0| {
                let [n] = theta0.dims();
                theta0 + Tensor::random([n], Distribution::Normal(0.0, 1.0), device) * s
            });
            let mut ell = Vec::with_capacity(train.len());
            for chunk in rows.chunks(batch_size.max(1)) {
                let (ids, types, mask) = train.batch(chunk, pad).to_tensors(device);
                let logits = prior.forward(ids, types, mask);
                let l = per_example_loss(logits, &train.targets(chunk, device));
                let values = l
                    .into_data()
                    .try_to_vec::<f32>()
                    .map_err(|e| anyhow::anyhow!("cannot read losses: {e:?}"))?;
                ell.extend(values.into_iter().map(f64::from));
            }
            per_model.push(ell);
            progress(k * PRIOR_MODELS + r + 1, total);
        }
        losses.push(per_model);
    }
    let estimate = bound::estimate_k(&losses, gammas);
    let k_hat = KHat {
        prior_std: grid,
        k: estimate.monotone.clone(),
    };
    Ok((k_hat, estimate))
}

/// File of the PAC state inside a checkpoint folder.
const PAC_FILE: &str = "pac.safetensors";

impl PacState {
    /// Writes θ0, p, b, K̂ and the noise-Adam state into checkpoint folder `dir`.
    pub fn save(&self, dir: &Path, slots: &[Slot]) -> Result<()> {
        let mut tensors = Vec::new();
        for (j, slot) in slots.iter().enumerate() {
            tensors.push((format!("theta0.{}", slot.name), &self.theta0[j]));
            tensors.push((format!("p.{}", slot.name), &self.p[j]));
            for (kind, moment) in [("m_p", &self.adam.m_p[j]), ("v_p", &self.adam.v_p[j])] {
                if let Some(t) = moment {
                    tensors.push((format!("{kind}.{}", slot.name), t));
                }
            }
        }
        // Bit patterns, not decimal text: resuming must continue with exactly these numbers.
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

    /// Reads what [`PacState::save`] wrote.
    pub fn load(
        dir: &Path,
        slots: &[Slot],
        n: usize,
        gamma: f64,
        device: &Device,
    ) -> Result<PacState> {
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
        let groups: Vec<Group> = slots.iter().map(|s| s.group).collect();
        let mut adam = NoiseAdam::new(&groups);
        adam.step = file.meta("noise_adam_step")?;
        adam.m_b = list("m_b")?;
        adam.v_b = list("v_b")?;
        let mut theta0 = Vec::with_capacity(slots.len());
        let mut p = Vec::with_capacity(slots.len());
        for (j, slot) in slots.iter().enumerate() {
            theta0.push(need(format!("theta0.{}", slot.name), slot.numel())?);
            p.push(need(format!("p.{}", slot.name), slot.numel())?);
            adam.m_p[j] = file.tensor(&format!("m_p.{}", slot.name), slot.numel(), device)?;
            adam.v_p[j] = file.tensor(&format!("v_p.{}", slot.name), slot.numel(), device)?;
        }
        let b = list("b")?;
        if b.len() != slots.len() {
            bail!(
                "{}: b has {} entries, expected {}",
                file.path.display(),
                b.len(),
                slots.len()
            );
        }
        Ok(PacState {
            theta0,
            p,
            b,
            k_hat: KHat {
                prior_std: list("prior_std")?,
                k: list("k")?,
            },
            gamma_range: (gamma, gamma),
            n,
            adam,
            keep_grad_p: false,
        })
    }
}
