//! AdamW's fused update (shaders/adamw.wgsl, its CPU twin) against the composition of Burn's
//! tensor operations in PyTorch's order, on the CPU device (bit for bit) and on wgpu.

use pac_wgpu::optim::{AdamW, AdamWConfig};

use super::pac_kernels::{Inputs, devices, max_error, read, tensor};

#[path = "../common/adamw_ops.rs"]
mod adamw_ops;
use adamw_ops::adamw_by_tensor_ops;

/// Relative error accepted on wgpu: a driver may fuse a multiply-add that Burn's separate
/// kernels round twice, and need not round sqrt and division exactly.
const RELATIVE_TOLERANCE: f32 = 1e-5;

/// The sizes of pac_kernels.rs: one element, around a workgroup, and over a million.
const SIZES: [usize; 4] = [1, 255, 257, 1_000_003];

/// The error scale of θ's update: |θ| plus the size of the Adam step (the two terms).
fn theta_scale(theta: &[f32], updated: &[f32]) -> Vec<f32> {
    theta
        .iter()
        .zip(updated)
        .map(|(a, b)| a.abs() + (a - b).abs() + f32::MIN_POSITIVE)
        .collect()
}

fn assert_close(what: &str, device: &str, actual: &[f32], expected: &[f32], scale: &[f32]) {
    if device == "cpu" {
        assert_eq!(
            actual, expected,
            "{what} on the CPU device differs from Burn's operations"
        );
        return;
    }
    let error = max_error(actual, expected, scale);
    eprintln!(
        "{what} on {device}, n = {}: max relative error {error:.2e}",
        actual.len()
    );
    assert!(
        error <= RELATIVE_TOLERANCE,
        "{what} on {device}: max relative error {error:e}"
    );
}

/// Three steps from no moments, then one from moments given as a checkpoint restores them, at
/// the encoder's and the head's learning rates.
#[test]
fn adamw_matches_burns_operations() {
    let config = AdamWConfig::default();
    for (device_name, device) in devices() {
        for (k, n) in SIZES.into_iter().enumerate() {
            let mut rng = Inputs(0x9E37_79B9_7F4A_7C15 ^ n as u64);
            let lr = if k % 2 == 0 { 5e-5 } else { 1e-2 };
            let mut adam = AdamW::new(config, 1);
            let mut theta = rng.signed(n, 1e-3, 1.0);
            let mut moments: Option<(Vec<f32>, Vec<f32>)> = None;
            for t in 1..=4 {
                let g = rng.signed(n, 1e-6, 3.0);
                if t == 4 {
                    // Restored moments, as from checkpoints/last.
                    let m = rng.signed(n, 1e-6, 1.0);
                    let v = rng.uniform(n, 1e-9, 1.0);
                    adam.moments[0] = Some((tensor(&m, &device), tensor(&v, &device)));
                    moments = Some((m, v));
                }
                let on = |x: &[f32]| tensor(x, &device);
                let [want_theta, want_m, want_v] = adamw_by_tensor_ops(
                    on(&theta),
                    on(&g),
                    moments.as_ref().map(|(m, v)| (on(m), on(v))),
                    config,
                    t,
                    lr,
                )
                .map(read);
                adam.begin_step();
                let got_theta = read(adam.update(0, on(&theta), on(&g), lr));
                let (got_m, got_v) = adam.moments[0].clone().unwrap();
                let (got_m, got_v) = (read(got_m), read(got_v));
                let what = format!("step {t}, lr {lr}");
                let moment_scale = |old: Option<&Vec<f32>>, new: &[f32]| -> Vec<f32> {
                    (0..n)
                        .map(|i| {
                            old.map_or(0.0, |o| o[i].abs()) + new[i].abs() + g[i].abs() * g[i].abs()
                        })
                        .collect()
                };
                let (old_m, old_v) = (
                    moments.as_ref().map(|x| &x.0),
                    moments.as_ref().map(|x| &x.1),
                );
                assert_close(
                    &format!("m, {what}"),
                    device_name,
                    &got_m,
                    &want_m,
                    &moment_scale(old_m, &want_m),
                );
                assert_close(
                    &format!("v, {what}"),
                    device_name,
                    &got_v,
                    &want_v,
                    &moment_scale(old_v, &want_v),
                );
                let scale = theta_scale(&theta, &want_theta);
                assert_close(
                    &format!("θ, {what}"),
                    device_name,
                    &got_theta,
                    &want_theta,
                    &scale,
                );
                theta = got_theta;
                moments = Some((got_m, got_v));
            }
        }
    }
}

/// The update writes θ and the moments in place only where nothing else holds them: a clone
/// taken before keeps its values.
#[test]
fn held_tensors_keep_their_values() {
    for (device_name, device) in devices() {
        let mut rng = Inputs(7);
        let n = 1000;
        let mut adam = AdamW::new(AdamWConfig::default(), 1);
        let theta = tensor(&rng.signed(n, 1e-3, 1.0), &device);
        let before = read(theta.clone());
        for _ in 0..2 {
            adam.begin_step();
            let g = tensor(&rng.signed(n, 1e-3, 1.0), &device);
            let held_m = adam.moments[0].clone().map(|(m, _)| m);
            let values = held_m.clone().map(read);
            let updated = read(adam.update(0, theta.clone(), g, 1e-2));
            assert_ne!(updated, before, "{device_name}: θ did not move");
            assert_eq!(
                read(theta.clone()),
                before,
                "{device_name}: a held θ was overwritten"
            );
            if let (Some(held), Some(values)) = (held_m, values) {
                assert_eq!(
                    read(held),
                    values,
                    "{device_name}: held moments were overwritten"
                );
            }
        }
    }
}

/// On wgpu an update is one launch, the first too: θ and the moments are updated in their own
/// buffers, never copied first, when nothing else holds them.
#[test]
#[cfg_attr(not(pac_test_lavapipe), ignore = "needs lavapipe (a wgpu device)")]
fn an_update_is_one_launch_on_wgpu() {
    use pac_wgpu::util::kernel::watch::LaunchCount;
    for (device_name, device) in devices().into_iter().filter(|(name, _)| *name != "cpu") {
        let mut rng = Inputs(11);
        let n = 4096;
        let mut adam = AdamW::new(AdamWConfig::default(), 1);
        let mut theta = tensor(&rng.signed(n, 1e-3, 1.0), &device);
        for t in 1..=3 {
            let g = tensor(&rng.signed(n, 1e-3, 1.0), &device);
            device.sync().unwrap();
            adam.begin_step();
            let count = LaunchCount::start();
            theta = adam.update(0, theta, g, 1e-2);
            let launches = count.by_kernel();
            assert_eq!(
                count.total(),
                1,
                "{device_name}, step {t}: launches {launches:?}"
            );
        }
    }
}
