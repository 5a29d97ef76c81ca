//! The fine-tuning methods the training loop runs: each takes one optimiser step on a batch and
//! keeps whatever state it carries between steps.

use anyhow::{Result, anyhow, bail};
use burn::module::{Lora, Module, ParamGroup};
use burn::tensor::{Device, Tensor};

use super::config::{TrainConfig, TrainSet};
use crate::data::Batch;
use crate::model::Classifier;
use crate::model::trainable::{self, EncoderPart, Scope, Trainable};
use crate::pac::bound::BoundTerms;
use crate::pac::{self, PacTuning, Stage, Tau};
use crate::run::EpochRecord;
use crate::step::{self, Outcome, StepContext};
use crate::util::rng::mix64;

/// Separates the LoRA factors' draws from the other streams of the same seed (ASCII "lora").
const LORA_STREAM: u64 = 0x6c6f_7261;

/// The tensors a run trains (`--trainable`), whatever its method.
pub fn scope(config: &TrainConfig) -> Scope {
    let encoder = match config.trainable {
        TrainSet::Full => EncoderPart::All,
        TrainSet::Bitfit => EncoderPart::Biases,
        TrainSet::Lora => EncoderPart::Adapters,
    };
    Scope {
        embeddings: config.train_embeddings,
        encoder,
    }
}

/// The model as the run trains it: with LoRA's adapters for `--trainable lora`
/// ([`with_adapters`]), and gradients off outside the run's [`scope`].
pub fn prepare_model(
    model: Classifier,
    config: &TrainConfig,
    device: &Device,
) -> Result<Classifier> {
    if config.trainable == TrainSet::Lora {
        device.seed(mix64(config.seed ^ LORA_STREAM));
    }
    let model = with_adapters(model, config)?;
    Ok(trainable::freeze_outside(model, scope(config)))
}

/// For `--trainable lora`, `model` with Burn's LoRA adapters on the encoder weights that
/// `--lora-targets` names (A ~ N(0, 1/r), B = 0, so the model starts unchanged; the weight
/// becomes W + α/r·A·B); other runs' models unchanged.
pub fn with_adapters(mut model: Classifier, config: &TrainConfig) -> Result<Classifier> {
    if config.trainable != TrainSet::Lora {
        return Ok(model);
    }
    let targets = lora_targets(config, &model)?.join("|");
    let group = ParamGroup::from_regex(format!(r"(^|\.)({targets})\.weight$"))
        .map_err(|e| anyhow!("--lora-targets {:?}: {e:?}", config.lora_targets))?;
    let lora = Lora::new(config.lora_rank, config.lora_alpha).set_param_group(group);
    model.encoder = model.encoder.apply_lora(lora);
    Ok(model)
}

/// The layers a LoRA run adapts: `--lora-targets`, else the family's default; each must name
/// weights of the encoder.
pub fn lora_targets(config: &TrainConfig, model: &Classifier) -> Result<Vec<String>> {
    let given = config.lora_target_list();
    let targets = match given.is_empty() {
        true => model.encoder.default_lora_targets().split(',').collect(),
        false => given,
    };
    let weights: Vec<String> = trainable::list(model, Scope::from(false))
        .into_iter()
        .filter(|t| t.group == trainable::Group::Encoder && t.shape.len() == 2)
        .map(|t| t.name)
        .collect();
    let layer = |name: &String| {
        let stem = name.strip_suffix(".weight").unwrap_or(name);
        stem.rsplit('.').next().unwrap_or(stem).to_string()
    };
    for target in &targets {
        if !weights.iter().any(|w| layer(w) == *target) {
            let mut layers: Vec<String> = weights.iter().map(layer).collect();
            layers.sort();
            layers.dedup();
            bail!(
                "--lora-targets: this model has no layer named {target:?}; its weight matrices are {}",
                layers.join(", ")
            );
        }
    }
    Ok(targets.into_iter().map(String::from).collect())
}

/// A method and its state.
pub enum Trainer {
    /// Plain AdamW fine-tuning (the paper's baseline).
    Vanilla,
    /// Perturbed gradient descent with one fixed log-std `p` for every scalar.
    Pgd { p: Vec<Tensor<1>> },
    /// PAC-tuning: the bound and learned noise in stage 1, then PGD with that noise.
    Pac(Box<PacTuning>),
}

/// What a step of any method measured.
#[derive(Debug, Clone)]
pub struct Stepped {
    pub loss1: f64,
    /// PAC stage 1: the bound's terms.
    pub bound: Option<BoundTerms>,
}

impl Trainer {
    /// PGD with noise std `std` on every trainable scalar.
    pub fn pgd(trainable: &[Trainable], std: f64, device: &Device) -> Trainer {
        Trainer::Pgd {
            p: pac::isotropic_p(trainable, std, device),
        }
    }

    /// PAC-tuning's stage at 0-based `epoch`, for PAC runs.
    pub fn stage(&self, epoch: usize) -> Option<Stage> {
        match self {
            Trainer::Pac(pac) => Some(pac.stage(epoch)),
            _ => None,
        }
    }

    /// One optimiser step of the method at 0-based `epoch`.
    pub async fn step(
        &mut self,
        epoch: usize,
        model: Classifier,
        ctx: &mut StepContext<'_>,
        batch: &Batch,
        tau: Tau<'_>,
    ) -> Result<(Classifier, Outcome<Stepped>)> {
        let plain = |(model, outcome): (Classifier, Outcome)| {
            let stepped = |r: step::Report| Stepped {
                loss1: r.loss1,
                bound: None,
            };
            (model, outcome.map(stepped))
        };
        Ok(match self {
            Trainer::Vanilla => plain(step::plain(model, ctx, batch).await?),
            Trainer::Pgd { p } => plain(pac::perturbed_step(model, p, ctx, batch, tau).await?),
            Trainer::Pac(pac) if pac.stage(epoch) == Stage::Two => {
                plain(pac.stage2_step(model, ctx, batch, tau).await?)
            }
            Trainer::Pac(pac) => {
                let (model, outcome) = pac.stage1_step(model, ctx, batch, tau).await?;
                let stepped = |r: pac::Stage1Report| Stepped {
                    loss1: r.step.loss1,
                    bound: Some(r.bound),
                };
                (model, outcome.map(stepped))
            }
        })
    }

    /// PAC: the stage and the noise in an epoch's record; returns σ per tensor (for the report
    /// at the end of stage 1).
    pub async fn record_noise(
        &self,
        record: &mut EpochRecord,
        epoch: usize,
        trainable: &[Trainable],
    ) -> Result<Option<Vec<f64>>> {
        let Trainer::Pac(pac) = self else {
            return Ok(None);
        };
        record.stage = Some(match pac.stage(epoch) {
            Stage::One => 1,
            Stage::Two => 2,
        });
        let (sigma_encoder, sigma_head, per_tensor) = pac.sigma_means(trainable).await?;
        record.sigma_encoder = Some(sigma_encoder);
        record.sigma_head = Some(sigma_head);
        record.prior_std = Some(pac.prior_std_mean());
        Ok(Some(per_tensor))
    }

    /// Writes the method's state into checkpoint folder `dir` (PAC only).
    pub fn save(&self, dir: &std::path::Path, trainable: &[Trainable]) -> Result<()> {
        match self {
            Trainer::Pac(pac) => pac.save(dir, trainable),
            _ => Ok(()),
        }
    }
}
