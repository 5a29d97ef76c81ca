//! Kernels and ops against plain-Rust references on the CPU device and lavapipe, and every
//! shader within WebGPU's limits. `cargo test --release --test kernels`.

#[path = "../common/mod.rs"]
mod common;

mod adamw;
mod cross_compile;
mod fused_ops;
mod launch_count;
mod lavapipe_sum;
mod pac_kernels;
mod reduce_sum;
mod shader_limits;
