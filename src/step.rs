//! The parts of an optimiser step that every method shares: the loss and gradients over the
//! micro-batches of one batch, the non-finite guard, clipping and AdamW on θ. The methods
//! compose them: [`plain`] here, the perturbed and PAC steps in [`crate::pac`].
//!
//! Steps are async: every read-back awaits the device (a browser's GPU has no blocking reads);
//! the native loop drives them with `pollster::block_on`.

use anyhow::{Result, anyhow};
use burn::tensor::{Device, Tensor};

use crate::data::{Batch, per_example_loss};
use crate::model::Classifier;
use crate::model::trainable::{self, Group, Scope, Trainable};
use crate::optim::AdamW;

/// The gradient of each trainable tensor, flattened (None where the loss does not reach it).
pub type Grads = Vec<Option<Tensor<1>>>;

/// Learning rates of this step and optional clipping of the global gradient norm of θ.
#[derive(Debug, Clone, Copy)]
pub struct Lrs {
    pub encoder: f64,
    pub head: f64,
    pub max_grad_norm: Option<f64>,
}

/// What every step needs besides the model and the batch.
pub struct StepContext<'a> {
    pub trainable: &'a [Trainable],
    /// Which tensors `trainable` lists.
    pub scope: Scope,
    pub adam: &'a mut AdamW,
    pub lrs: Lrs,
    pub device: &'a Device,
    /// Hears the end of each [`Part`] (benchmarks time them; training ignores them).
    pub lap: &'a mut dyn FnMut(Part),
}

/// A term of the step that came out NaN or infinite.
#[derive(Debug, Clone, PartialEq)]
pub struct NonFinite {
    /// `loss1`, `loss2`, `KL`, `K̂` or `the gradient of <tensor name>`.
    pub term: String,
    pub value: f64,
}

impl NonFinite {
    pub fn new(term: &str, value: f64) -> Self {
        NonFinite {
            term: term.to_string(),
            value,
        }
    }
}

impl std::fmt::Display for NonFinite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is {}", self.term, self.value)
    }
}

/// What an applied step measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// Mean training loss of the batch (at the perturbed weights when there is noise).
    pub loss1: f64,
    /// The gradient each trainable tensor was updated with (flattened, after clipping).
    pub grad_theta: Grads,
}

/// How a step ended: applied, or refused because a term was not finite (nothing changed).
#[derive(Debug, Clone)]
pub enum Outcome<R = Report> {
    Done(R),
    NonFinite(NonFinite),
}

impl<R> Outcome<R> {
    /// The same outcome with the report turned by `f`.
    pub fn map<S>(self, f: impl FnOnce(R) -> S) -> Outcome<S> {
        match self {
            Outcome::Done(report) => Outcome::Done(f(report)),
            Outcome::NonFinite(bad) => Outcome::NonFinite(bad),
        }
    }

    /// The report of an applied step; a non-finite step as an error.
    pub fn done(self) -> Result<R> {
        match self {
            Outcome::Done(report) => Ok(report),
            Outcome::NonFinite(bad) => anyhow::bail!("{bad}"),
        }
    }
}

/// A part of a step, named as benchmarks report it; each part ends with a call of the step's
/// `lap`. The parts every method shares are named here, PAC's own in [`crate::pac`]'s `PARTS`.
pub type Part = &'static str;

/// Loss and gradients at the (possibly perturbed) weights.
pub const FORWARD_BACKWARD: Part = "forward_backward";
/// The non-finite guard: one sum per gradient, read back once.
pub const NONFINITE_CHECK: Part = "nonfinite_check";
/// AdamW's update of θ.
pub const ADAMW: Part = "adamw_theta";

/// Vanilla fine-tuning: loss and gradients, the guard, AdamW.
pub async fn plain(
    model: Classifier,
    ctx: &mut StepContext<'_>,
    batch: &Batch,
) -> Result<(Classifier, Outcome)> {
    let (loss, grads) = forward_backward(&model, ctx, batch).await?;
    (ctx.lap)(FORWARD_BACKWARD);
    let checked = check(loss, &grads, ctx.trainable, None).await?;
    if let Some(bad) = checked.bad {
        return Ok((model, Outcome::NonFinite(bad)));
    }
    (ctx.lap)(NONFINITE_CHECK);
    let (model, report) = update(model, ctx, checked.loss1, grads).await?;
    Ok((model, Outcome::Done(report)))
}

/// The batch's mean loss at the model's current weights (a one-element tensor, still on the
/// device) and its gradient for each trainable tensor (flattened), summed over the micro-batches.
pub async fn forward_backward(
    model: &Classifier,
    ctx: &StepContext<'_>,
    batch: &Batch,
) -> Result<(Tensor<1>, Grads)> {
    let mut grads: Grads = vec![None; ctx.trainable.len()];
    let mut loss1: Option<Tensor<1>> = None;
    for (inputs, targets) in &batch.micro {
        let (ids, types, mask) = inputs.to_tensors(ctx.device);
        let logits = model.forward(ids, types, mask);
        // Summed over the micro-batch and divided by the whole batch: the micro-batch
        // gradients add up to the gradient of the batch mean.
        let loss = per_example_loss(logits, targets).sum() / batch.len as f32;
        let value = loss.clone().inner();
        loss1 = Some(match loss1 {
            Some(sum) => sum + value,
            None => value,
        });
        let g = loss.backward();
        trainable::visit(model, ctx.scope, Some(&g), |j, _, grad| {
            if let Some(grad) = grad {
                grads[j] = Some(match grads[j].take() {
                    Some(acc) => acc + grad,
                    None => grad,
                });
            }
        });
    }
    let loss1 = loss1.ok_or_else(|| anyhow!("a training batch without examples"))?;
    Ok((loss1, grads))
}

/// What [`check`] read back from the device.
pub struct Checked {
    pub loss1: f64,
    /// The first non-finite term among loss1 and the gradients.
    pub bad: Option<NonFinite>,
    /// The values of `more`, read in the same transfer.
    pub more: Vec<f32>,
}

/// Reads back loss1, one sum per gradient (a NaN or an infinity in a gradient makes its sum
/// non-finite) and `more` (other values the step needs from the device) in one transfer: the
/// step's one wait for the device before it updates anything.
pub async fn check(
    loss1: Tensor<1>,
    grads: &[Option<Tensor<1>>],
    trainable: &[Trainable],
    more: Option<Tensor<1>>,
) -> Result<Checked> {
    let (index, sums): (Vec<usize>, Vec<Tensor<1>>) = grads
        .iter()
        .enumerate()
        .filter_map(|(j, g)| g.as_ref().map(|g| (j, crate::util::reduce::sum(g.clone()))))
        .unzip();
    let parts: Vec<Tensor<1>> = std::iter::once(loss1).chain(sums).chain(more).collect();
    let values = crate::util::device::read_f32(Tensor::cat(parts, 0), "the loss and gradient sums");
    let mut values = values.await?;
    let more = values.split_off(1 + index.len());
    let loss1 = f64::from(values[0]);
    let bad = match loss1.is_finite() {
        false => Some(NonFinite::new("loss1", loss1)),
        true => index
            .into_iter()
            .zip(&values[1..])
            .find(|(_, v)| !v.is_finite())
            .map(|(j, &v)| {
                NonFinite::new(&format!("the gradient of {}", trainable[j].name), v.into())
            }),
    };
    Ok(Checked { loss1, bad, more })
}

/// Clips the gradients (`--max-grad-norm`) and takes AdamW's step on θ with them.
pub async fn update(
    model: Classifier,
    ctx: &mut StepContext<'_>,
    loss1: f64,
    mut grads: Grads,
) -> Result<(Classifier, Report)> {
    if let Some(max_norm) = ctx.lrs.max_grad_norm {
        clip(&mut grads, max_norm).await?;
    }
    let report = Report {
        loss1,
        grad_theta: grads.clone(),
    };
    let (trainable, lrs, adam) = (ctx.trainable, ctx.lrs, &mut *ctx.adam);
    adam.begin_step();
    let model = trainable::map(model, ctx.scope, |j, theta| {
        let lr = match trainable[j].group {
            Group::Encoder => lrs.encoder,
            Group::Head => lrs.head,
        };
        match grads[j].take() {
            Some(g) => adam.update(j, theta, g, lr),
            None => theta,
        }
    });
    (ctx.lap)(ADAMW);
    Ok((model, report))
}

/// Scales the gradients so that their global L2 norm is at most `max_norm`.
async fn clip(grads: &mut [Option<Tensor<1>>], max_norm: f64) -> Result<()> {
    let squares: Vec<Tensor<1>> = grads
        .iter()
        .flatten()
        .map(|g| crate::util::reduce::sum(g.clone() * g.clone()))
        .collect();
    if squares.is_empty() {
        return Ok(());
    }
    let norm = crate::util::device::read_scalar(Tensor::cat(squares, 0).sum())
        .await?
        .sqrt();
    let factor = max_norm / (norm + 1e-6);
    if factor < 1.0 {
        for g in grads.iter_mut().flatten() {
            *g = g.clone() * factor;
        }
    }
    Ok(())
}
