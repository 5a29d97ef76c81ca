//! The binary end to end: defaults, training behaviours, hostile inputs, the stand-in hub,
//! interruption and resume, sweeps and plots. `cargo test --release --test cli`.

#[path = "../common/mod.rs"]
mod common;

mod behaviours;
mod cli_defaults;
mod first_hour;
mod hostile_inputs;
mod hub;
mod integrity;
mod interruption;
mod plots;
mod sweep;
mod sweep_crash;
mod train_e2e;
mod trainable;
