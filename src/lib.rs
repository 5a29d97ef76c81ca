//! pac-wgpu: fine-tune pretrained language models (BERT, RoBERTa, GPT-2) with PAC-tuning on any
//! GPU wgpu reaches (Vulkan, Metal, DX12, a browser's WebGPU) or on the CPU, with Burn, and
//! export the result as a Hugging Face folder.
//!
//! **The method** lives in [`pac`]: its module page and [`pac::PacTuning`] read as the paper's
//! two stages, top to bottom (K(λ) and the initialisation, stage 1's bound, stage 2's perturbed
//! gradient descent), with the bound's arithmetic in [`pac::bound`] and its kernels beside it.
//! docs/method.md in the repository states the method as this code implements it.
//!
//! Modules depend one way, from helpers up to the command line (tests/architecture.rs checks
//! it, and that no two files import each other):
//! - [`util`]: the host generator, sums, atomic file writes, devices, the kernels' shared
//!   machinery ([`util::kernel`]: wgpu launches, CPU threads and SIMD), GLUE metrics,
//!   tokenizers, hub downloads;
//! - [`ops`]: the model's fused ops (GELU, softmax, LayerNorm, linear, attention), each a WGSL
//!   kernel and a CPU twin with its own backward pass;
//! - [`model`]: the Hugging Face encoders as Burn modules (one file per family), the
//!   classifier heads, weight loading and the trainable tensors; [`glue`]: GLUE and users'
//!   data; [`optim`]: AdamW; [`run`]: a run folder's typed records (history.jsonl's
//!   [`run::EpochRecord`], summary.json's [`run::Summary`]);
//! - [`data`]: tokenized splits, batches, losses and predictions; [`report`]: plots;
//! - [`step`]: the parts of an optimiser step every method shares;
//! - [`pac`]: PAC-tuning;
//! - [`train`]: the training loop over vanilla, PGD, PAC, BitFit and LoRA (its epochs in
//!   [`train::epochs`], which the browser build runs too), checkpoints, exact resume, export
//!   ([`train::Trained`] loads a run or an exported folder back);
//! - [`sweep`]: many runs as one (plan, child processes, Slurm/list emission) and their table;
//! - the `pac-wgpu` binary (src/cli) parses flags into [`train::TrainConfig`] and friends.
//!
//! The default feature `native` adds what a browser cannot run (the hub, sweeps, plots, the
//! command line, threads); without it the library builds for wasm32 (see web/).

pub mod data;
pub mod glue;
pub mod model;
pub mod ops;
pub mod optim;
pub mod pac;
#[cfg(feature = "native")]
pub mod report;
pub mod run;
pub mod step;
#[cfg(feature = "native")]
pub mod sweep;
pub mod train;
pub mod util;
