//! pac-wgpu: fine-tune pretrained BERT-family models with PAC-tuning on any GPU wgpu reaches
//! (Vulkan, Metal, DX12) or on the CPU, with Burn.
//!
//! The modules follow the concerns of a run: [`device`] picks where tensors live, [`model`]
//! loads a Hugging Face checkpoint into a Burn BERT, [`tokenize`] turns text into padded batches.

pub mod device;
pub mod glue;
pub mod metrics;
pub mod model;
pub mod pac;
pub mod reduce;
pub mod report;
pub mod tokenize;
pub mod train;
