//! The epoch loop both front ends run, the CLI's [`super::train`] and the browser's: an epoch's
//! steps, then its record and its evaluation. What each front end does in between (checkpoints
//! on disk and Ctrl-C, or files kept in memory) it does in `after_step` and with what
//! [`end_epoch`] returns.

use anyhow::{Result, anyhow};

use crate::glue::Label;
use crate::model::Classifier;
use crate::optim::AdamW;
use crate::run::EpochRecord;
use crate::step::{NonFinite, Outcome};
use crate::util::files::as_written;

use super::checkpoint::LoopState;
use super::config::OnNonFinite;
use super::event::Event;
use super::method::Trainer;
use super::session::Session;

/// What changes while a run trains.
pub struct Progress {
    pub model: Classifier,
    pub adam: AdamW,
    pub method: Trainer,
    pub state: LoopState,
    /// Every epoch's record so far.
    pub history: Vec<EpochRecord>,
}

impl Progress {
    /// A run's start, before [`Session::start_method`].
    pub fn new(run: &Session, model: Classifier) -> Progress {
        Progress {
            model,
            adam: run.new_adamw(),
            method: Trainer::Vanilla,
            state: LoopState::default(),
            history: Vec::new(),
        }
    }
}

/// A step whose loss, bound term or gradient was not finite stopped the run
/// (`--on-nonfinite stop`).
#[derive(Debug, thiserror::Error)]
#[error("epoch {epoch} step {step}: {why}; the run stopped")]
pub struct NonFiniteStop {
    /// 1-based, as the messages count.
    pub epoch: usize,
    pub step: usize,
    pub why: NonFinite,
}

/// The current epoch's steps not taken yet, and the seconds they took by `clock`. `after_step`
/// runs after each step (the CLI writes checkpoint `last` and stops there on Ctrl-C).
pub async fn run_epoch(
    run: &Session<'_>,
    p: &mut Progress,
    clock: &dyn Fn() -> f64,
    on_event: &mut dyn FnMut(Event),
    after_step: &mut dyn FnMut(&mut Progress) -> Result<()>,
) -> Result<f64> {
    let started = clock();
    let epoch = p.state.epoch;
    for (i, rows) in run.remaining_batches(&p.state) {
        let step = run.step(
            &mut p.method,
            p.model.clone(),
            &mut p.adam,
            &mut p.state,
            &rows,
        );
        let (model, stepped) = step
            .await
            .map_err(|e| anyhow!("epoch {} step {}: {e}", epoch + 1, i + 1))?;
        p.model = model;
        match stepped {
            Outcome::Done(stepped) => {
                let kl = stepped.bound.as_ref().map(|t| t.kl);
                let loss = run.keep(&mut p.state, stepped)?;
                let step_in_epoch = i;
                on_event(Event::Step {
                    epoch,
                    step_in_epoch,
                    loss,
                    kl,
                });
            }
            Outcome::NonFinite(why) if run.config.on_nonfinite == OnNonFinite::Skip => {
                p.state.epoch_skipped += 1;
                on_event(Event::Skipped {
                    epoch,
                    step_in_epoch: i,
                    why: &why,
                });
            }
            Outcome::NonFinite(why) => {
                return Err(NonFiniteStop {
                    epoch: epoch + 1,
                    step: i + 1,
                    why,
                }
                .into());
            }
        }
        after_step(p)?;
    }
    Ok(clock() - started)
}

/// What an epoch leaves besides its record (in `history`).
pub struct EpochEnd {
    /// The dev predictions, when this epoch was evaluated and is the best so far.
    pub best_predictions: Option<Vec<Label>>,
    /// PAC, at the end of stage 1: σ per trainable tensor.
    pub sigma: Option<Vec<f64>>,
}

/// After an epoch's steps: its record (pushed to `p.history`, as written), with the dev
/// evaluation when due, timed by `clock`.
pub async fn end_epoch(
    run: &Session<'_>,
    p: &mut Progress,
    train_seconds: f64,
    clock: &dyn Fn() -> f64,
    on_event: &mut dyn FnMut(Event),
) -> Result<EpochEnd> {
    let epoch = p.state.epoch;
    let (mut record, sigma) = run
        .finish_epoch(&p.method, &mut p.state, train_seconds)
        .await?;
    let mut best_predictions = None;
    if run.eval_due(&p.state) {
        let examples = run.dev.len();
        on_event(Event::Evaluating { epoch, examples });
        let started = clock();
        let predictions = run.evaluate(&p.model, &mut p.state, &mut record).await?;
        record.eval_seconds = Some(clock() - started);
        best_predictions = (p.state.stale_evals == 0).then_some(predictions);
    }
    p.history.push(as_written(&record)?);
    Ok(EpochEnd {
        best_predictions,
        sigma,
    })
}
