//! What a run reports as it goes.

use crate::run::EpochRecord;
use crate::step::NonFinite;

/// What the loop reports as it goes (the CLI turns these into progress bars or log lines).
pub enum Event<'a> {
    Start {
        device: &'a str,
        train_examples: usize,
        dev_examples: usize,
        first_epoch: usize,
        epochs: usize,
        steps_per_epoch: usize,
    },
    Step {
        epoch: usize,
        step_in_epoch: usize,
        loss: f64,
        /// PAC's stage 1: the step's KL term.
        kl: Option<f64>,
    },
    /// Progress of the one-off K(λ) estimation (PAC): forward passes done of total.
    KEstimation {
        done: usize,
        total: usize,
    },
    /// A step skipped because a term was not finite (`--on-nonfinite skip`).
    Skipped {
        epoch: usize,
        step_in_epoch: usize,
        why: &'a NonFinite,
    },
    /// The epoch `epoch` (0-based) is being evaluated on the dev set's `examples`.
    Evaluating {
        epoch: usize,
        examples: usize,
    },
    Epoch(&'a EpochRecord),
    /// history.jsonl of the run in `run_dir` was written; `history` holds every epoch so far
    /// (the CLI draws plots/ from it).
    History {
        run_dir: &'a std::path::Path,
        history: &'a [EpochRecord],
    },
    /// PAC, at the end of stage 1: σ per trainable tensor, as sigma_per_layer.json holds it.
    Sigma {
        run_dir: &'a std::path::Path,
        per_tensor: &'a [(String, f64)],
    },
    /// Something the user should know that does not stop the run.
    Note(&'a str),
}
