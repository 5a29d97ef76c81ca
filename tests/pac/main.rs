//! PAC-tuning's maths against the authors' recorded values: the bound and its gradients,
//! noise-Adam, K(λ), the initialisation and whole steps. `cargo test --release --test pac`.

#[path = "../common/mod.rs"]
mod common;

mod pac_bound;
mod pac_init;
mod pac_k_estimation;
mod pac_step;
