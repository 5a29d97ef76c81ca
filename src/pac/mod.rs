//! PAC-tuning's kernels: weight noise ([`noise`]), the KL sums ([`kl`]) and stage 1's fused
//! pass after the backward pass: p's gradient, its noise-Adam step and the KL pull on θ's
//! gradient ([`noise_adam`]); WGSL compute shaders on wgpu devices, plain Rust on the CPU device,
//! behind one Burn backend extension.
//!
//! Names follow the paper: θ the trainable weights, `theta0` (θ0) their values at the start of
//! fine-tuning, `p` the posterior log-std (σ = exp(p), one per scalar), `b` the prior log-std
//! (one b_j per trainable tensor j), γ (`gamma`) the bound's temperature, n the number of
//! training examples.

mod backend;
pub mod bound;
pub mod kl;
pub mod noise;
pub mod noise_adam;
pub mod state;

pub use backend::{GRID_WIDTH, exp_f32, expm1_f32};
