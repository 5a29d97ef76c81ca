//! Helpers below the model: nothing here knows about models, data sets or methods.

pub mod device;
pub mod files;
#[cfg(feature = "native")]
pub mod hub;
pub mod kernel;
pub mod lock;
pub mod manifest;
pub mod metrics;
pub mod reduce;
pub mod rng;
pub mod text;
pub mod tokenize;
