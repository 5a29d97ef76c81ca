//! One optimiser step, for every method: inject noise (PAC, PGD), forward and backward over the
//! micro-batches, restore the clean weights; in PAC stage 1 the bound, then one fused pass per
//! tensor (p's gradient, its noise-Adam step, the KL pull on θ's gradient) and the step of b;
//! then AdamW on θ. A non-finite loss, bound term or gradient is found before anything is
//! updated, so such a step can be skipped and leaves no trace.

use anyhow::{Result, bail};
use burn::tensor::{Device, Tensor, TensorData};

use super::data::{Targets, per_example_loss};
use super::optim::AdamW;
use super::params::{self, Group, Slot};
use crate::model::Classifier;
use crate::pac::bound::{self, BoundTerms};
use crate::pac::kl;
use crate::pac::noise::{self, NoiseSource};
use crate::pac::noise_adam::StepInputs;
use crate::pac::state::PacState;
use crate::tokenize::PaddedBatch;

/// The noise of a step.
pub enum Noise<'a> {
    /// Plain gradient descent.
    None,
    /// Perturbed gradient descent with fixed log-stds `p` (PAC stage 2, PGD).
    Fixed(&'a [Tensor<1>]),
    /// PAC stage 1: the noise and the bound are learned.
    Learned(&'a mut PacState),
}

/// Learning rates of this step and optional clipping of the global gradient norm of θ.
#[derive(Debug, Clone, Copy)]
pub struct Lrs {
    pub encoder: f64,
    pub head: f64,
    pub max_grad_norm: Option<f64>,
}

/// What a step measured.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// Mean training loss of the batch (at the perturbed weights when there is noise).
    pub loss1: f64,
    /// The bound's terms at this step (PAC stage 1 only).
    pub bound: Option<BoundTerms>,
    /// The gradient each slot of θ was updated with (flattened), and in PAC stage 1 that of p
    /// (where `PacState::keep_grad_p` asks for it).
    pub grad_theta: Vec<Option<Tensor<1>>>,
    pub grad_p: Vec<Tensor<1>>,
}

/// A term of the step that came out NaN or infinite.
#[derive(Debug, Clone, PartialEq)]
pub struct NonFinite {
    /// `loss1`, `loss2`, `KL`, `K̂` or `gradient of <slot name>`.
    pub term: String,
    pub value: f64,
}

impl std::fmt::Display for NonFinite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is {}", self.term, self.value)
    }
}

/// How a step ended: applied, or refused because a term was not finite (nothing changed).
#[derive(Debug, Clone)]
pub enum Outcome {
    Done(StepReport),
    NonFinite(NonFinite),
}

impl Outcome {
    /// The report of an applied step; a non-finite step as an error.
    pub fn done(self) -> Result<StepReport> {
        match self {
            Outcome::Done(report) => Ok(report),
            Outcome::NonFinite(bad) => bail!("{bad}"),
        }
    }
}

/// The parts of a step, in the order it runs them; `step` reports each boundary to its `lap`
/// callback (benchmarks time them, training ignores them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// θ' = θ + exp(p)·τ per slot, the clean θ kept; in stage 1 the same pass adds up the KL
    /// sums.
    Inject,
    ForwardBackward,
    /// The clean θ put back (how the noise is removed).
    Restore,
    /// The non-finite guard: one sum per gradient, read back once.
    Check,
    /// The KL sums finished and read back, and the bound's host terms (stage 1).
    KlSums,
    /// p's gradient, its noise-Adam step and the KL pull on θ's gradient: one fused kernel per
    /// tensor.
    NoiseAdamP,
    NoiseAdamB,
    AdamW,
}

impl Part {
    pub const ALL: [Part; 8] = [
        Part::Inject,
        Part::ForwardBackward,
        Part::Restore,
        Part::Check,
        Part::KlSums,
        Part::NoiseAdamP,
        Part::NoiseAdamB,
        Part::AdamW,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Part::Inject => "noise_inject",
            Part::ForwardBackward => "forward_backward",
            Part::Restore => "noise_remove",
            Part::Check => "nonfinite_check",
            Part::KlSums => "kl_sums_and_bound",
            Part::NoiseAdamP => "grad_p_noise_adam_p_kl_pull",
            Part::NoiseAdamB => "noise_adam_b",
            Part::AdamW => "adamw_theta",
        }
    }

    /// PAC's own noise and KL work (with the fused noise-Adam of p, which computes p's gradient).
    pub fn is_kernel(self) -> bool {
        matches!(
            self,
            Part::Inject | Part::Restore | Part::KlSums | Part::NoiseAdamP
        )
    }
}

/// A micro-batch: inputs and their targets.
pub type Micro = (PaddedBatch, Targets);

/// Runs one step on the micro-batches of one batch of `batch_len` examples. `tau(j)` says where
/// slot j's noise comes from (the counter-based generator in training, given values in tests);
/// `lap` hears the end of each [`Part`].
#[allow(clippy::too_many_arguments)]
pub fn step(
    model: Classifier,
    slots: &[Slot],
    train_embeddings: bool,
    adam: &mut AdamW,
    micro: &[Micro],
    batch_len: usize,
    lrs: Lrs,
    mut noise: Noise,
    tau: &dyn Fn(usize) -> NoiseSource<1>,
    device: &Device,
    lap: &mut dyn FnMut(Part),
) -> Result<(Classifier, Outcome)> {
    let mut model = model;
    // The clean θ is kept while the model holds θ' = θ + exp(p)·τ, and put back afterwards:
    // subtracting the noise again would leave rounding residue in θ − θ0 that the noise-Adam,
    // which normalises its gradients, turns into real steps of b and p.
    let mut clean = Vec::new();
    // Stage 1: b as the kernels read it, and the KL sums from the pass that injects the noise.
    let mut kl_pass = None;
    match &noise {
        Noise::None => {}
        Noise::Fixed(p) => {
            model = params::map_slots(model, train_embeddings, |j, theta| {
                clean.push(theta.clone());
                noise::inject(theta, &p[j], j as u32, &tau(j))
            });
        }
        Noise::Learned(state) => {
            params::visit_slots(&model, train_embeddings, None, |_, theta, _| {
                clean.push(theta)
            });
            // b is kept f32-representable (as the reference keeps it), so the kernels' b_j and
            // the host's are the same number.
            let b_f32: Vec<f32> = state.b.iter().map(|&x| x as f32).collect();
            let b = Tensor::<1>::from_data(TensorData::new(b_f32, [state.b.len()]), device);
            let (sums, noisy) = kl::sums(&clean, &state.theta0, &state.p, &b, Some(tau));
            model = params::map_slots(model, train_embeddings, |j, _| noisy[j].clone());
            kl_pass = Some((b, sums));
        }
    }
    lap(Part::Inject);

    let mut grads: Vec<Option<Tensor<1>>> = vec![None; slots.len()];
    let mut loss1 = 0.0;
    for (batch, targets) in micro {
        let (ids, types, mask) = batch.to_tensors(device);
        let logits = model.forward(ids, types, mask);
        // Summed over the micro-batch and divided by the whole batch: the micro-batch
        // gradients add up to the gradient of the batch mean.
        let loss = per_example_loss(logits, targets).sum() / batch_len as f32;
        loss1 += loss.clone().into_scalar::<f32>() as f64;
        let g = loss.backward();
        params::visit_slots(&model, train_embeddings, Some(&g), |j, _, grad| {
            if let Some(grad) = grad {
                grads[j] = Some(match grads[j].take() {
                    Some(acc) => acc + grad,
                    None => grad,
                });
            }
        });
    }
    lap(Part::ForwardBackward);
    if !clean.is_empty() {
        model = params::map_slots(model, train_embeddings, |j, _| clean[j].clone());
    }
    lap(Part::Restore);
    if !loss1.is_finite() {
        return Ok((model, non_finite("loss1", loss1)));
    }
    if let Some((j, value)) = first_non_finite(&grads)? {
        let term = format!("the gradient of {}", slots[j].name);
        return Ok((model, non_finite(&term, value)));
    }
    lap(Part::Check);

    let mut report = StepReport {
        loss1,
        bound: None,
        grad_theta: Vec::new(),
        grad_p: Vec::new(),
    };
    if let (Noise::Learned(state), Some((b, sums))) = (&mut noise, kl_pass) {
        // The clean θ put back above, not another walk over the model.
        let theta = &clean;
        let sums = read_sums(sums, slots)?;
        let terms = bound::bound_terms(&sums, &state.b, state.n, state.gamma_range, &state.k_hat);
        for (term, value) in [("loss2", terms.loss2), ("KL", terms.kl), ("K̂", terms.k)] {
            if !value.is_finite() {
                return Ok((model, non_finite(term, value)));
            }
        }
        let coef = terms.kl_coef as f32;
        lap(Part::KlSums);
        // One pass per tensor: p's gradient (from ∂loss1/∂θ' alone), the noise-Adam on p, and
        // the KL pull added to θ's gradient.
        state.adam.begin_step();
        for (j, g) in grads.iter_mut().enumerate() {
            let g_j = g
                .take()
                .unwrap_or_else(|| Tensor::zeros([slots[j].numel()], device));
            let inputs = StepInputs {
                p: &state.p[j],
                g: &g_j,
                theta: &theta[j],
                theta0: &state.theta0[j],
                b: &b,
                noise: &tau(j),
            };
            let stepped = state.adam.step(j, inputs, coef, state.keep_grad_p);
            state.p[j] = stepped.p;
            *g = Some(stepped.grad_theta);
            report.grad_p.extend(stepped.grad_p);
        }
        lap(Part::NoiseAdamP);
        let grad_b = terms.grad_b.clone();
        state.adam.update_b(&mut state.b, &grad_b);
        for b in &mut state.b {
            *b = f64::from(*b as f32);
        }
        report.bound = Some(terms);
        lap(Part::NoiseAdamB);
    }

    if let Some(max_norm) = lrs.max_grad_norm {
        clip(&mut grads, max_norm);
    }
    report.grad_theta = grads.clone();
    adam.begin_step();
    let model = params::map_slots(model, train_embeddings, |j, theta| {
        let lr = match slots[j].group {
            Group::Encoder => lrs.encoder,
            Group::Head => lrs.head,
        };
        match grads[j].take() {
            Some(g) => adam.update(j, theta, g, lr),
            None => theta,
        }
    });
    lap(Part::AdamW);
    Ok((model, Outcome::Done(report)))
}

fn non_finite(term: &str, value: f64) -> Outcome {
    Outcome::NonFinite(NonFinite {
        term: term.to_string(),
        value,
    })
}

/// The first slot whose gradient holds a NaN or an infinity (its sum then is not finite), read
/// back with one transfer for all slots.
fn first_non_finite(grads: &[Option<Tensor<1>>]) -> Result<Option<(usize, f64)>> {
    let (index, sums): (Vec<usize>, Vec<Tensor<1>>) = grads
        .iter()
        .enumerate()
        .filter_map(|(j, g)| g.as_ref().map(|g| (j, crate::reduce::sum(g.clone()))))
        .unzip();
    if sums.is_empty() {
        return Ok(None);
    }
    let values = Tensor::cat(sums, 0)
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("cannot read the gradient sums: {e:?}"))?;
    Ok(index
        .into_iter()
        .zip(values)
        .find(|(_, v)| !v.is_finite())
        .map(|(j, v)| (j, v as f64)))
}

/// Reads the [L, 3] KL sums back (one small transfer per step).
fn read_sums(sums: Tensor<2>, slots: &[Slot]) -> Result<Vec<bound::LayerSums>> {
    let values = sums
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("cannot read the KL sums: {e:?}"))?;
    let numels: Vec<usize> = slots.iter().map(Slot::numel).collect();
    Ok(bound::LayerSums::from_rows(&values, &numels))
}

/// Scales the gradients so that their global L2 norm is at most `max_norm`.
fn clip(grads: &mut [Option<Tensor<1>>], max_norm: f64) {
    let squares: Vec<Tensor<1>> = grads
        .iter()
        .flatten()
        .map(|g| crate::reduce::sum(g.clone() * g.clone()))
        .collect();
    if squares.is_empty() {
        return;
    }
    let norm = (Tensor::cat(squares, 0).sum().into_scalar::<f32>() as f64).sqrt();
    let factor = max_norm / (norm + 1e-6);
    if factor < 1.0 {
        for g in grads.iter_mut().flatten() {
            *g = g.clone() * factor;
        }
    }
}
