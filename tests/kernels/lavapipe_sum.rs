//! Records what Burn 0.22's whole-tensor `sum()` does on lavapipe above ~262 000 elements
//! (wrong: see docs/architecture.md (Burn notes)), so the project never silently relies on it and
//! learns when an upgrade fixes it. Sums over parameters go through our own reductions instead.

use crate::common;

use burn::tensor::Tensor;

#[test]
#[cfg_attr(
    not(pac_test_lavapipe),
    ignore = "needs lavapipe: apt-get install mesa-vulkan-drivers libvulkan1"
)]
fn whole_tensor_sum_on_lavapipe_is_recorded() {
    let lavapipe = common::lavapipe();
    let device = &lavapipe.device;

    let small = 200_000;
    let below: f32 = Tensor::<1>::ones([small], device).sum().into_scalar();
    assert_eq!(
        below, small as f32,
        "sum() below the threshold must be exact"
    );

    let n = 1_000_000;
    let ones = Tensor::<1>::ones([n], device);
    let two_stage: f32 = ones
        .clone()
        .reshape([n / 1000, 1000])
        .sum_dim(1)
        .sum()
        .into_scalar();
    assert_eq!(two_stage, n as f32, "the row-wise workaround must be exact");

    let whole: f32 = ones.sum().into_scalar();
    println!("lavapipe: sum() of {n} ones = {whole} (expected {n})");
    assert_ne!(
        whole, n as f32,
        "Burn's whole-tensor sum() is now correct on lavapipe: update burn-notes.md and this test"
    );
}
