//! Loading models as the hub ships them, and parity with transformers' outputs.
//! `cargo test --release --test models`.

#[path = "../common/mod.rs"]
mod common;

mod families;
mod minilm_parity;
mod model_loading;
mod modern;
