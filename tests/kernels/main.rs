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

/// cubecl has one launch observer per process, so the tests that count launches with
/// `LaunchCount` take turns.
static LAUNCH_OBSERVER: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn launch_observer_turn() -> std::sync::MutexGuard<'static, ()> {
    LAUNCH_OBSERVER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
