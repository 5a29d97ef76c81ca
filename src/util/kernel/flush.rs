//! Subnormal floats flushed to zero on every thread that computes for the CPU device.
//!
//! Intel cores take a microcode assist for each arithmetic operation that reads or makes a
//! subnormal float (|x| < 2⁻¹²⁶), tens to hundreds of cycles each; training's activations and
//! gradients hold many (see docs/benchmarks.md), which made a CPU step several times slower
//! there. GPUs' WGSL arithmetic may flush subnormals too, so flushing brings the CPU twin closer
//! to the wgpu devices. On x86-64 this sets MXCSR's flush-to-zero (bit 15) and
//! denormals-are-zero (bit 6); on aarch64, FPCR's FZ (bit 24). Each thread's control register
//! is its own, so each compute thread sets it once:
//! - the thread that selects the CPU device and Burn flex's rayon pool, in [`cpu_device`];
//! - every thread that runs one of our CPU kernels, in [`this_thread`] (a thread-local check);
//! - the scoped threads our kernels split work over, as `spawn` starts them.
//!
//! `PAC_WGPU_KEEP_SUBNORMALS=1` keeps IEEE subnormals (for measuring what flushing saves).
//!
//! Rust assumes the default floating-point environment: a value the compiler folds at build
//! time keeps its subnormals while the same operation at run time flushes them. Nothing here
//! depends on subnormals, and the golden parity tests hold with them flushed.

use std::cell::Cell;
use std::thread::{Scope, ScopedJoinHandle};

thread_local! {
    static FLUSHING: Cell<bool> = const { Cell::new(false) };
}

/// Flushes subnormals on this thread, once (unless `PAC_WGPU_KEEP_SUBNORMALS=1`).
pub fn this_thread() {
    FLUSHING.with(|set| {
        if !set.get() {
            if !keep_subnormals() {
                set_flush_to_zero(true);
            }
            set.set(true);
        }
    });
}

fn keep_subnormals() -> bool {
    static KEEP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *KEEP.get_or_init(|| std::env::var("PAC_WGPU_KEEP_SUBNORMALS").is_ok_and(|v| v == "1"))
}

/// Flushes subnormals on this thread and on every thread of rayon's global pool (Burn flex's).
pub fn cpu_device() {
    this_thread();
    #[cfg(feature = "native")]
    rayon::broadcast(|_| this_thread());
}

/// Starts `f` on a scoped thread that flushes subnormals.
pub(crate) fn spawn<'scope, T: Send + 'scope>(
    scope: &'scope Scope<'scope, '_>,
    f: impl FnOnce() -> T + Send + 'scope,
) -> ScopedJoinHandle<'scope, T> {
    scope.spawn(move || {
        this_thread();
        f()
    })
}

/// Whether this thread's floating-point unit flushes subnormals (inputs and results); `None`
/// where this build cannot tell (neither x86-64 nor aarch64).
pub fn flushing() -> Option<bool> {
    #[cfg(target_arch = "x86_64")]
    return Some(mxcsr() & MXCSR_FTZ_DAZ == MXCSR_FTZ_DAZ);
    #[cfg(target_arch = "aarch64")]
    return Some(fpcr() & FPCR_FZ != 0);
    #[allow(unreachable_code)]
    None
}

/// Whether every compute thread of the CPU device flushes: this one, each of rayon's global
/// pool, and one that [`spawn`] starts. `None` where [`flushing`] cannot tell.
pub(crate) fn every_compute_thread_flushes() -> Option<bool> {
    let mut all = vec![flushing()?];
    #[cfg(feature = "native")]
    all.extend(rayon::broadcast(|_| flushing()).into_iter().flatten());
    all.extend(std::thread::scope(|s| {
        spawn(s, flushing).join().ok().flatten()
    }));
    Some(all.into_iter().all(|f| f))
}

#[cfg(target_arch = "x86_64")]
const MXCSR_FTZ_DAZ: u32 = (1 << 15) | (1 << 6);

#[cfg(target_arch = "x86_64")]
fn mxcsr() -> u32 {
    let mut csr = 0u32;
    // SAFETY: stmxcsr stores the 32-bit MXCSR into the given, valid location.
    unsafe { std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack)) };
    csr
}

/// IEEE subnormals on this thread again, as on a thread that never flushed (for tests).
#[cfg(test)]
pub(crate) fn keep_subnormals_here() {
    set_flush_to_zero(false);
    FLUSHING.with(|set| set.set(false));
}

#[cfg(target_arch = "x86_64")]
fn set_flush_to_zero(on: bool) {
    let csr = match on {
        true => mxcsr() | MXCSR_FTZ_DAZ,
        false => mxcsr() & !MXCSR_FTZ_DAZ,
    };
    // SAFETY: ldmxcsr loads a valid MXCSR value (the current one with FTZ and DAZ changed).
    unsafe { std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, readonly)) };
}

#[cfg(target_arch = "aarch64")]
const FPCR_FZ: u64 = 1 << 24;

#[cfg(target_arch = "aarch64")]
fn fpcr() -> u64 {
    let fpcr: u64;
    // SAFETY: reading FPCR has no side effect.
    unsafe { std::arch::asm!("mrs {}, fpcr", out(reg) fpcr, options(nomem, nostack)) };
    fpcr
}

#[cfg(target_arch = "aarch64")]
fn set_flush_to_zero(on: bool) {
    let value = match on {
        true => fpcr() | FPCR_FZ,
        false => fpcr() & !FPCR_FZ,
    };
    // SAFETY: FPCR with FZ changed is a valid control value.
    unsafe { std::arch::asm!("msr fpcr, {}", in(reg) value, options(nomem, nostack)) };
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn set_flush_to_zero(_on: bool) {}
