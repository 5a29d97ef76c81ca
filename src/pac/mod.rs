//! PAC-tuning (Liu et al., EMNLP 2023), top to bottom as docs/method.md ("the
//! spec") states it. [`PacTuning`] owns the method's state and its stage schedule:
//!
//! 1. **Before training** — [`estimate_k`]: the loss's exponential-moment constant K(λ) on a grid
//!    of prior stds (spec, "Before training: K(λ)"), then [`PacTuning::init`]: θ0, p and b (spec,
//!    "Initialisation").
//! 2. **Stage 1**, the first `stage1_epochs` epochs — [`PacTuning::stage1_step`]: inject the
//!    learned noise, loss1 at the noisy weights, the bound's loss2 from the KL, then one update
//!    of θ, p and b (spec, "Stage 1: the bound").
//! 3. **Stage 2**, the remaining epochs — [`PacTuning::stage2_step`]: p and b frozen, the noise
//!    still injected, θ updated on loss1 alone (spec, "Stage 2 and PGD"); the same step as PGD's
//!    ([`perturbed_step`]).
//!
//! Names follow the paper: θ the trainable weights, `theta0` (θ0) their values at the start of
//! fine-tuning, `p` the posterior log-std (σ = exp(p), one per scalar), `b` the prior log-std
//! (one b_j per trainable tensor j = 1..L), τ ~ N(0, I) clipped to [−2, 2] the noise, `gamma`
//! (γ) the bound's temperature, `k_hat` (K̂) the interpolated K(λ), n the number of training
//! examples.
//!
//! Below this file: the bound's host arithmetic ([`bound`]), and the device work, each a WGSL
//! shader on wgpu devices with a plain-Rust twin on the CPU device behind one Burn backend
//! extension (`backend.rs`): the noise ([`noise`]), the KL sums ([`kl`]) and the fused
//! p-gradient + noise-Adam + KL pull ([`noise_adam`]).

mod backend;
mod backend_impls;
pub mod bound;
mod checkpoint;
pub mod kl;
pub mod noise;
pub mod noise_adam;

use anyhow::Result;
use burn::tensor::{Device, Tensor};

use crate::data::{Batch, Examples, per_example_loss};
use crate::model::Classifier;
use crate::model::trainable::{self, Group, Scope, Trainable};
use crate::step::{self, Grads, NonFinite, Outcome, Part, Report, StepContext};
use crate::util::reduce;
use bound::{BoundTerms, KEstimate, KHat};
use noise::NoiseSource;
use noise_adam::{NoiseAdam, StepInputs};

pub use backend::AdamScalars;

/// θ' = θ + exp(p)·τ per tensor, the clean θ kept; in stage 1 the same pass adds up the KL sums.
pub const INJECT: Part = "noise_inject";
/// The clean θ put back (a module map, how the noise is removed).
pub const RESTORE: Part = "restore_clean";
/// The KL sums finished and read back, and the bound's host terms (stage 1).
pub const KL_SUMS: Part = "kl_sums_and_bound";
/// p's gradient, its noise-Adam step and the KL pull on θ's gradient: one fused kernel per tensor.
pub const NOISE_ADAM_P: Part = "grad_p_noise_adam_p_kl_pull";
/// b's noise-Adam step.
pub const NOISE_ADAM_B: Part = "noise_adam_b";

/// Every part of a PAC stage-1 step, in the order they run.
pub const PARTS: [Part; 8] = [
    INJECT,
    step::FORWARD_BACKWARD,
    RESTORE,
    step::NONFINITE_CHECK,
    KL_SUMS,
    NOISE_ADAM_P,
    NOISE_ADAM_B,
    step::ADAMW,
];

/// The parts that are PAC's own kernel work (noise, KL sums, the fused noise-Adam of p).
pub const KERNEL_PARTS: [Part; 3] = [INJECT, KL_SUMS, NOISE_ADAM_P];

/// How K(λ)'s prior models are drawn: `models` per prior std (R in the spec), from the Philox
/// stream keyed by `seed`.
#[derive(Debug, Clone, Copy)]
pub struct PriorDraws {
    pub models: usize,
    pub seed: u64,
}

/// Where τ comes from for trainable tensor j: the counter-based generator keyed by (seed, step)
/// in training, recorded values in parity tests.
pub type Tau<'a> = &'a dyn Fn(usize) -> NoiseSource<1>;

/// The two stages of PAC-tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Learn the noise: minimise the PAC-Bayes bound J = loss1 + loss2.
    One,
    /// Perturbed gradient descent with the learned noise frozen.
    Two,
}

/// PAC-tuning's state beside the model, and its schedule.
pub struct PacTuning {
    /// θ0 per trainable tensor, flattened (the weights when fine-tuning started).
    pub theta0: Vec<Tensor<1>>,
    /// Posterior log-std per scalar: σ = exp(p).
    pub p: Vec<Tensor<1>>,
    /// Prior log-std per trainable tensor (host, f64, kept f32-representable as the reference
    /// keeps it, so the kernels' b_j and the host's are the same number).
    pub b: Vec<f64>,
    pub k_hat: KHat,
    /// [γ1, γ2]; equal ends make γ constant.
    pub gamma_range: (f64, f64),
    /// Number of training examples n.
    pub n: usize,
    /// Adam for p and b, with the authors' step sizes.
    pub adam: NoiseAdam,
    /// Epochs of stage 1; stage 2 follows.
    pub stage1_epochs: usize,
    /// Whether stage-1 steps hand back p's gradient in [`Stage1Report::grad_p`] (parity tests;
    /// training leaves it off and saves the kernel a write).
    pub keep_grad_p: bool,
}

/// What a stage-1 step measured.
#[derive(Debug, Clone)]
pub struct Stage1Report {
    pub step: Report,
    /// The bound's terms at this step.
    pub bound: BoundTerms,
    /// p's gradient per tensor, where [`PacTuning::keep_grad_p`] asks for it.
    pub grad_p: Vec<Tensor<1>>,
}

/// The Philox steps of K(λ)'s draws start here, above any training step's, so that no prior
/// model shares its noise with a training step of the same seed.
pub const PRIOR_STEPS: u32 = 1 << 31;

/// Spec, "K(λ)", steps 1–2, then [`bound::estimate_k`] for steps 3–6: for every prior std s_k of
/// the grid, the per-example losses of `draws.models` models θ0 + s_k·N(0, I) on every training
/// example (forward only). `model` must be on a plain (non-autodiff) device. Each prior model is
/// drawn on the device in one pass per tensor ([`noise::prior`], keyed by `draws.seed` and the
/// model's number); `progress(done, total)` hears each prior model.
pub async fn estimate_k(
    model: &Classifier,
    scope: Scope,
    train: &Examples<'_>,
    gamma_range: (f64, f64),
    draws: PriorDraws,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(KHat, KEstimate)> {
    let (grid, models) = (bound::prior_std_grid(), draws.models);
    let total = grid.len() * models;
    let mut losses = Vec::with_capacity(grid.len());
    for (k, &s) in grid.iter().enumerate() {
        let mut per_model = Vec::with_capacity(models);
        for r in 0..models {
            let step = PRIOR_STEPS + (k * models + r) as u32;
            let prior = trainable::map(model.clone(), scope, |j, theta0| {
                noise::prior(theta0, s as f32, draws.seed as u32, step, j as u32)
            });
            per_model.push(example_losses(&prior, train, device).await?);
            progress(k * models + r + 1, total);
        }
        losses.push(per_model);
    }
    let estimate = bound::estimate_k(&losses, &bound::gamma_grid(gamma_range));
    let k_hat = KHat::new(grid, estimate.monotone.clone());
    Ok((k_hat, estimate))
}

/// The loss of every example of `train` under `model`, in example order. Batches are formed by
/// length, so that each pads little.
async fn example_losses(
    model: &Classifier,
    train: &Examples<'_>,
    device: &Device,
) -> Result<Vec<f64>> {
    let order = train.data.length_order();
    let mut losses = Vec::with_capacity(train.data.len());
    for chunk in order.batches(train.batch_size, crate::data::pass_cost(device)) {
        let (ids, types, mask) = train
            .data
            .device_batch(chunk, train.pad, device)
            .to_tensors(device);
        let logits = model.forward(ids, types, mask);
        let losses_t = per_example_loss(logits, &train.data.targets(chunk, device));
        let values = crate::util::device::read_f32(losses_t, "losses").await?;
        losses.extend(values.into_iter().map(f64::from));
    }
    Ok(order.restore(losses))
}

impl PacTuning {
    /// Spec, "Initialisation": θ0 = the current weights; p = 2 ln(mean |θ0|) over the encoder's
    /// scalars and ln(mean |ω0|) over the head's ([`bound::init_log_std`]); b_j = the p of its
    /// group ([`bound::initial_b`]), so the posterior starts at the prior.
    pub async fn init(
        model: &Classifier,
        trainable: &[Trainable],
        scope: Scope,
        n: usize,
        gamma: f64,
        k_hat: KHat,
        stage1_epochs: usize,
    ) -> Result<PacTuning> {
        let mut theta0 = Vec::with_capacity(trainable.len());
        // θ0 in buffers of its own (× 1 is exact): WebGPU refuses θ and θ0 in one buffer when a
        // kernel binds both.
        trainable::visit(model, scope, None, |_, value, _| theta0.push(value * 1.0));
        let abs_sums: Vec<Tensor<1>> = theta0
            .iter()
            .map(|t| reduce::sum(t.clone().abs()))
            .collect();
        let abs_sums = crate::util::device::read_f32(Tensor::cat(abs_sums, 0), "the |θ0| sums");
        let (mut abs_sum, mut count) = ([0.0f64; 2], [0usize; 2]);
        for (t, sum) in trainable.iter().zip(abs_sums.await?) {
            let g = (t.group == Group::Head) as usize;
            abs_sum[g] += f64::from(sum);
            count[g] += t.numel();
        }
        let log_std = bound::init_log_std(
            abs_sum[0] / count[0].max(1) as f64,
            abs_sum[1] / count[1].max(1) as f64,
        );
        let groups: Vec<Group> = trainable.iter().map(|t| t.group).collect();
        let b = bound::initial_b(&groups, log_std);
        let device = theta0[0].device();
        let p = trainable
            .iter()
            .zip(&b)
            .map(|(t, &b_j)| Tensor::full([t.numel()], b_j, &device))
            .collect();
        Ok(PacTuning {
            theta0,
            p,
            b,
            k_hat,
            gamma_range: bound::fixed_gamma(gamma),
            n,
            adam: NoiseAdam::new(&groups),
            stage1_epochs,
            keep_grad_p: false,
        })
    }

    /// The stage of 0-based `epoch`.
    pub fn stage(&self, epoch: usize) -> Stage {
        if epoch < self.stage1_epochs {
            Stage::One
        } else {
            Stage::Two
        }
    }

    /// Spec, "Stage 1 objective": one step on J = loss1 + loss2.
    ///
    /// 1. θ' = θ + exp(p)·τ, in the pass that also sums what the KL needs ([`kl::sums`]);
    /// 2. loss1 and ∂loss1/∂θ' at θ', then the clean θ put back;
    /// 3. the bound's terms from the KL sums ([`bound::bound_terms`]): loss2, γ, ∂loss2/∂b;
    /// 4. per tensor, one fused pass ([`NoiseAdam::step`]): p's gradient
    ///    exp(p)·τ·∂loss1/∂θ' + ∂loss2/∂p, its Adam step, and θ's gradient with the KL pull
    ///    ∂loss2/∂θ = exp(−2b_j)(θ − θ0)/(nγ);
    /// 5. Adam on b, then AdamW on θ.
    ///
    /// A non-finite loss, bound term or gradient is found before anything is updated.
    pub async fn stage1_step(
        &mut self,
        model: Classifier,
        ctx: &mut StepContext<'_>,
        batch: &Batch,
        tau: Tau<'_>,
    ) -> Result<(Classifier, Outcome<Stage1Report>)> {
        let scope = ctx.scope;
        let mut clean = Vec::with_capacity(self.p.len());
        trainable::visit(&model, scope, None, |_, theta, _| clean.push(theta));
        let b: Vec<f32> = self.b.iter().map(|&x| x as f32).collect();
        let (sums, noisy) = kl::sums(&clean, &self.theta0, &self.p, &b, Some(tau));
        let model = trainable::map(model, scope, |j, _| noisy[j].clone());
        (ctx.lap)(INJECT);

        let kl_sums = sums.flatten::<1>(0, 1);
        let (model, gradients) = noisy_gradients(model, &clean, ctx, batch, Some(kl_sums)).await?;
        let (loss1, mut grads, sums) = match gradients {
            Outcome::Done(gradients) => gradients,
            Outcome::NonFinite(bad) => return Ok((model, Outcome::NonFinite(bad))),
        };

        let numels: Vec<usize> = ctx.trainable.iter().map(Trainable::numel).collect();
        let sums = bound::TensorSums::from_rows(&sums, &numels);
        let terms = bound::bound_terms(&sums, &self.b, self.n, self.gamma_range, &self.k_hat);
        for (term, value) in [("loss2", terms.loss2), ("KL", terms.kl), ("K̂", terms.k)] {
            if !value.is_finite() {
                return Ok((model, Outcome::NonFinite(NonFinite::new(term, value))));
            }
        }
        (ctx.lap)(KL_SUMS);

        let mut grad_p = Vec::new();
        self.adam.begin_step();
        // p and the gradients go to the kernel by value: it updates them in their buffers.
        let p = std::mem::take(&mut self.p);
        assert_eq!(p.len(), grads.len(), "one p per trainable tensor");
        for (j, (g, p)) in grads.iter_mut().zip(p).enumerate() {
            let dloss1 = g
                .take()
                .unwrap_or_else(|| Tensor::zeros([ctx.trainable[j].numel()], ctx.device));
            let inputs = StepInputs {
                p,
                g: dloss1,
                theta: &clean[j],
                theta0: &self.theta0[j],
                b: &b,
                noise: &tau(j),
            };
            let stepped = self
                .adam
                .step(j, inputs, terms.kl_coef as f32, self.keep_grad_p);
            self.p.push(stepped.p);
            *g = Some(stepped.grad_theta);
            grad_p.extend(stepped.grad_p);
        }
        (ctx.lap)(NOISE_ADAM_P);
        self.adam.update_b(&mut self.b, &terms.grad_b);
        for b_j in &mut self.b {
            *b_j = f64::from(*b_j as f32);
        }
        (ctx.lap)(NOISE_ADAM_B);

        // The model holds θ alone again, so that AdamW updates it in its buffers.
        drop(clean);
        let (model, report) = step::update(model, ctx, loss1, grads).await?;
        let report = Stage1Report {
            step: report,
            bound: terms,
            grad_p,
        };
        Ok((model, Outcome::Done(report)))
    }

    /// Spec, "Stage 2": perturbed gradient descent with the learned p, frozen.
    pub async fn stage2_step(
        &self,
        model: Classifier,
        ctx: &mut StepContext<'_>,
        batch: &Batch,
        tau: Tau<'_>,
    ) -> Result<(Classifier, Outcome)> {
        perturbed_step(model, &self.p, ctx, batch, tau).await
    }

    /// Mean σ = exp(p) over the encoder's and the head's scalars, and per tensor.
    /// The sums are read back in one transfer.
    pub async fn sigma_means(&self, trainable: &[Trainable]) -> Result<(f64, f64, Vec<f64>)> {
        let sums: Vec<Tensor<1>> = self
            .p
            .iter()
            .map(|p| reduce::sum(p.clone().exp()))
            .collect();
        let totals = crate::util::device::read_f32(Tensor::cat(sums, 0), "the σ sums").await?;
        let mut per_tensor = Vec::with_capacity(trainable.len());
        let (mut sum, mut count) = ([0.0f64; 2], [0usize; 2]);
        for (t, total) in trainable.iter().zip(totals) {
            let total = total as f64;
            let g = (t.group == Group::Head) as usize;
            sum[g] += total;
            count[g] += t.numel();
            per_tensor.push(total / t.numel() as f64);
        }
        Ok((
            sum[0] / count[0].max(1) as f64,
            sum[1] / count[1].max(1) as f64,
            per_tensor,
        ))
    }

    /// Mean prior std exp(b_j) over the tensors.
    pub fn prior_std_mean(&self) -> f64 {
        self.b.iter().map(|b| b.exp()).sum::<f64>() / self.b.len().max(1) as f64
    }
}

/// PGD's fixed noise: log-std ln(`std`) for every scalar of every trainable tensor.
pub fn isotropic_p(trainable: &[Trainable], std: f64, device: &Device) -> Vec<Tensor<1>> {
    trainable
        .iter()
        .map(|t| Tensor::full([t.numel()], std.ln(), device))
        .collect()
}

/// One step of perturbed gradient descent with fixed log-stds `p` (PAC stage 2, PGD): θ' =
/// θ + exp(p)·τ, loss1 and its gradient at θ', the clean θ put back, AdamW on θ with that
/// gradient.
///
/// The clean θ is kept and put back rather than the noise subtracted: subtraction would leave
/// rounding residue in θ − θ0.
pub async fn perturbed_step(
    model: Classifier,
    p: &[Tensor<1>],
    ctx: &mut StepContext<'_>,
    batch: &Batch,
    tau: Tau<'_>,
) -> Result<(Classifier, Outcome)> {
    let scope = ctx.scope;
    let mut clean = Vec::with_capacity(p.len());
    let model = trainable::map(model, scope, |j, theta| {
        clean.push(theta.clone());
        noise::inject(theta, &p[j], j as u32, &tau(j))
    });
    (ctx.lap)(INJECT);
    let (model, gradients) = noisy_gradients(model, &clean, ctx, batch, None).await?;
    drop(clean);
    match gradients {
        Outcome::Done((loss1, grads, _)) => {
            let (model, report) = step::update(model, ctx, loss1, grads).await?;
            Ok((model, Outcome::Done(report)))
        }
        Outcome::NonFinite(bad) => Ok((model, Outcome::NonFinite(bad))),
    }
}

/// loss1 and its gradients at the noisy weights the model holds, then the `clean` θ put back;
/// a non-finite loss or gradient instead, found before anything is updated. `more` is read
/// back in the same transfer as the guard's sums.
async fn noisy_gradients(
    model: Classifier,
    clean: &[Tensor<1>],
    ctx: &mut StepContext<'_>,
    batch: &Batch,
    more: Option<Tensor<1>>,
) -> Result<(Classifier, Outcome<(f64, Grads, Vec<f32>)>)> {
    let (loss1, grads) = step::forward_backward(&model, ctx, batch).await?;
    (ctx.lap)(step::FORWARD_BACKWARD);
    let model = trainable::map(model, ctx.scope, |j, _| clean[j].clone());
    (ctx.lap)(RESTORE);
    let checked = step::check(loss1, &grads, ctx.trainable, more).await?;
    if let Some(bad) = checked.bad {
        return Ok((model, Outcome::NonFinite(bad)));
    }
    (ctx.lap)(step::NONFINITE_CHECK);
    Ok((model, Outcome::Done((checked.loss1, grads, checked.more))))
}
