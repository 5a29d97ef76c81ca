//! The optimiser of θ: AdamW.

mod adamw;

pub use adamw::{AdamW, AdamWBackend, AdamWConfig, AdamWScalars};
