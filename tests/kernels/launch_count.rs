//! The device-traffic counters bench_step and summary.json report: every kernel a thread
//! launches on a wgpu device (cubecl's and this project's), and the distinct kernels launched.

use crate::common;

use burn::tensor::{Distribution, Tensor};
use pac_wgpu::ops::gelu::gelu;
use pac_wgpu::util::kernel::launch::launches;
use pac_wgpu::util::kernel::watch::{LaunchCount, Pipelines};

#[test]
#[cfg_attr(
    not(pac_test_lavapipe),
    ignore = "needs lavapipe: apt-get install mesa-vulkan-drivers libvulkan1"
)]
fn launches_and_pipelines_count_cubecl_kernels_and_ours() {
    let lavapipe = common::lavapipe();
    let device = &lavapipe.device;
    let a = Tensor::<2>::random([24, 40], Distribution::Normal(0.0, 1.0), device);
    let b = Tensor::<2>::random([40, 8], Distribution::Normal(0.0, 1.0), device);
    device.sync().unwrap();

    let ours_before = launches();
    let pipelines = Pipelines::start();
    let count = LaunchCount::start();
    // Three times the same work: one GELU and at least one matrix product each.
    for _ in 0..3 {
        let y = gelu(a.clone().matmul(b.clone()));
        let _ = y.into_data();
    }
    let (total, by_kernel) = (count.total(), count.by_kernel());
    drop(count);
    let distinct = pipelines.count();
    let ours = launches() - ours_before;

    let named = |part: &str| -> u64 {
        by_kernel
            .iter()
            .filter(|(name, _)| name.contains(part))
            .map(|(_, n)| n)
            .sum()
    };
    assert_eq!(
        named("GeluKernel"),
        3,
        "our GELU once per pass: {by_kernel:#?}"
    );
    assert_eq!(ours, 3, "this project's launch counter");
    assert!(
        named("matmul") >= 3,
        "cubecl's matrix product: {by_kernel:#?}"
    );
    // Beside them, what the first pass alone may add (autotune's copies, for one).
    assert!(total >= 6, "{total} launches: {by_kernel:#?}");
    // Other tests' threads add theirs: at least the matrix product and GELU.
    assert!(distinct >= 2, "{distinct} distinct kernels");
}
