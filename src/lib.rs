//! pac-wgpu: fine-tune pretrained BERT-family models with PAC-tuning on any GPU wgpu reaches
//! (Vulkan, Metal, DX12) or on the CPU, with Burn.
//!
//! **The method** lives in [`pac`]: its module page and [`pac::PacTuning`] read as the paper's
//! two stages, top to bottom (K(λ) and the initialisation, stage 1's bound, stage 2's perturbed
//! gradient descent), with the bound's arithmetic in [`pac::bound`] and the device kernels
//! beside it.
//!
//! Modules depend one way, from helpers up to the command line:
//! - helpers: [`rng`] (the host generator), [`reduce`], [`files`] (atomic writes, tensor
//!   files), [`device`], `kernel` (what the WGSL kernels and their CPU twins share),
//!   [`tokenize`], [`metrics`], [`hub`] (downloads into the HF cache);
//! - [`model`], the Hugging Face BERT as Burn modules, its fused GELU and softmax, and its
//!   trainable tensors;
//!   [`data`], tokenized splits, losses and predictions; [`optim`], AdamW;
//!   [`step`], the parts of an optimiser step every method shares;
//! - [`pac`], PAC-tuning;
//! - [`train`], the training loop over the methods (vanilla, PGD, PAC, BitFit, LoRA),
//!   checkpoints and resume;
//! - [`sweep`], many runs as one (plan, child processes, Slurm/list emission) and their table;
//! - the `pac-wgpu` binary (src/cli) parses flags into [`train::TrainConfig`] and friends.
//!
//! Beside them: [`glue`] reads GLUE and users' data; [`run`] holds a run folder's typed records
//! (history.jsonl's [`run::EpochRecord`], summary.json's [`run::Summary`]); [`report`] draws them.
//!
//! The default feature `native` adds what a browser cannot run (the hub, sweeps, plots, the
//! command line, threads); without it the library builds for wasm32 (see web/).

pub mod data;
pub mod device;
pub mod files;
pub mod glue;
#[cfg(feature = "native")]
pub mod hub;
mod kernel;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod pac;
pub mod reduce;
#[cfg(feature = "native")]
pub mod report;
pub mod rng;
pub mod run;
pub mod step;
#[cfg(feature = "native")]
pub mod sweep;
pub mod tokenize;
pub mod train;
