//! PAC-tuning's kernels against their plain-Rust reference, on the wgpu device (lavapipe in CI)
//! and on the CPU device. Run with `--nocapture` to see the measured differences.
//!
//! Without a wgpu adapter only the CPU half runs, and `a_wgpu_adapter_is_present` says so.

use burn::tensor::{Device, DeviceKind, Tensor, TensorData};
use pac_wgpu::model::trainable::Group;
use pac_wgpu::pac::AdamScalars;
use pac_wgpu::pac::noise::{self, NoiseSource};
use pac_wgpu::pac::noise_adam::{NoiseAdam, StepInputs, Stepped};
use pac_wgpu::pac::{PRIOR_STEPS, kl};
use pac_wgpu::util::kernel::cpu::{exp_f32, expm1_f32};
use pac_wgpu::util::kernel::launch::GRID_WIDTH;

/// The awkward sizes: one element, just under and over a workgroup, just over the 256 slots
/// of a reduction, and over a million.
const SIZES: [usize; 5] = [1, 255, 257, 65_537, 1_000_003];

/// Largest |τ_wgsl − τ_rust| accepted (a few ulp of |τ| ≤ 2). The Philox words must be
/// identical; τ is computed with +, −, × and sqrt only, so it may differ in its last bits where
/// a driver fuses a multiply-add or rounds sqrt differently (Vulkan need not round it exactly).
const TAU_TOLERANCE: f32 = 1e-6;

/// Relative error accepted for every other result of the wgpu kernels against the reference.
const RELATIVE_TOLERANCE: f32 = 1e-5;

/// P(|Z| > 2) for Z ~ N(0, 1).
const TAIL: f64 = 0.045_500_263_896_358_42;

/// The CPU device, then the wgpu device where there is an adapter.
pub(crate) fn devices() -> Vec<(&'static str, Device)> {
    let mut devices = vec![("cpu", Device::flex())];
    if !pac_wgpu::util::device::adapters().is_empty() {
        devices.push(("wgpu", Device::wgpu(DeviceKind::DefaultDevice)));
    } else if cfg!(pac_test_lavapipe) {
        panic!("no wgpu adapter: apt-get install mesa-vulkan-drivers libvulkan1");
    }
    devices
}

/// The tests "on every device" here and in pac_bound.rs, pac_step.rs, fused_ops.rs and
/// minilm_parity.rs run on the CPU device alone where there is no wgpu adapter; this test is
/// then listed as not run, saying so.
#[test]
#[cfg_attr(
    not(pac_test_lavapipe),
    ignore = "needs lavapipe: without it the kernel and parity tests checked the CPU device only"
)]
fn a_wgpu_adapter_is_present() {
    assert!(
        !pac_wgpu::util::device::adapters().is_empty(),
        "no wgpu adapter: apt-get install mesa-vulkan-drivers libvulkan1"
    );
}

/// Deterministic inputs: xorshift64*.
pub(crate) struct Inputs(pub(crate) u64);

impl Inputs {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32
    }

    pub(crate) fn uniform(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| lo + (hi - lo) * self.next()).collect()
    }

    /// Magnitudes in [lo, hi] with random signs: never zero.
    pub(crate) fn signed(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let v = lo + (hi - lo) * self.next();
                if self.next() < 0.5 { -v } else { v }
            })
            .collect()
    }
}

pub(crate) fn tensor(values: &[f32], device: &Device) -> Tensor<1> {
    Tensor::from_data(TensorData::new(values.to_vec(), [values.len()]), device)
}

pub(crate) fn read<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec().expect("f32 data")
}

/// max over i of |actual − expected| / scale, where scale is the sum of the magnitudes of the
/// terms that make up the expected value: the error floating point allows grows with them.
pub(crate) fn max_error(actual: &[f32], expected: &[f32], scale: &[f32]) -> f32 {
    assert_eq!(actual.len(), expected.len());
    (0..actual.len())
        .map(|i| (actual[i] - expected[i]).abs() / scale[i])
        .fold(0.0, f32::max)
}

/// Asserts `actual` matches `expected`: bit for bit on the CPU (the reference's own code),
/// within [`RELATIVE_TOLERANCE`] of `scale` on wgpu.
fn assert_matches(what: &str, device: &str, actual: &[f32], expected: &[f32], scale: &[f32]) {
    let error = max_error(actual, expected, scale);
    eprintln!(
        "{what} on {device}, n = {}: max relative error {error:.2e}",
        actual.len()
    );
    if device == "cpu" {
        assert_eq!(
            actual, expected,
            "{what} on the CPU device differs from the reference"
        );
    } else {
        assert!(
            error <= RELATIVE_TOLERANCE,
            "{what} on {device}: max relative error {error:e}"
        );
    }
}

/// Results of two shaders compiled apart (a driver may fuse their multiply-adds differently)
/// agree to TAU_TOLERANCE relative to the largest |x|.
fn assert_within_tau_tolerance(what: &str, x: &[f32], y: &[f32]) {
    let size = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let diff = x
        .iter()
        .zip(y)
        .fold(0.0f32, |m, (u, v)| m.max((u - v).abs()));
    assert!(
        diff <= TAU_TOLERANCE * size,
        "{what}: differs by {diff:e} at size {size:e}"
    );
}

/// The CPU kernels' exp and expm1 (vectorisable, see kernel::cpu::exp_f32) against f64 on a dense
/// sweep: within 2.5 ulp (relative 2.5·2⁻²³) of the correctly rounded value everywhere.
#[test]
fn cpu_exp_and_expm1_are_accurate() {
    let limit = 2.5 * f64::from(f32::EPSILON);
    let relative = |got: f32, want: f64| (f64::from(got) - want).abs() / want.abs();
    let (mut worst_exp, mut worst_expm1) = (0.0f64, 0.0f64);
    for k in 0..=2_000_000 {
        let x = -87.0 + 175.0 * k as f32 / 2_000_000.0;
        worst_exp = worst_exp.max(relative(exp_f32(x), f64::from(x).exp()));
        let y = -20.0 + 40.0 * k as f32 / 2_000_000.0;
        if y != 0.0 {
            worst_expm1 = worst_expm1.max(relative(expm1_f32(y), f64::from(y).exp_m1()));
        }
    }
    // Near 0, where e^y − 1 cancels: every 2⁻²⁰ up to ±0.75.
    for k in 1..=786_432 {
        for y in [k as f32 / 1_048_576.0, -(k as f32) / 1_048_576.0] {
            worst_expm1 = worst_expm1.max(relative(expm1_f32(y), f64::from(y).exp_m1()));
        }
    }
    eprintln!(
        "exp_f32 worst {:.2} ulp, expm1_f32 worst {:.2} ulp",
        worst_exp / f64::from(f32::EPSILON),
        worst_expm1 / f64::from(f32::EPSILON)
    );
    assert!(worst_exp <= limit, "exp_f32: relative error {worst_exp:e}");
    assert!(
        worst_expm1 <= limit,
        "expm1_f32: relative error {worst_expm1:e}"
    );
    assert_eq!(expm1_f32(0.0), 0.0);
    assert_eq!(exp_f32(0.0), 1.0);
}

#[test]
fn philox_matches_random123_known_answers() {
    // Random123's tests/kat_vectors, philox4x32 10: counter, key, output.
    let cases = [
        (
            [0; 4],
            [0; 2],
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8],
        ),
        (
            [u32::MAX; 4],
            [u32::MAX; 2],
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd],
        ),
        (
            [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
            [0xa409_3822, 0x299f_31d0],
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1],
        ),
    ];
    for (counter, key, expected) in cases {
        assert_eq!(noise::philox4x32_10(counter, key), expected);
    }
}

#[test]
fn tau_matches_the_reference() {
    let (seed, step, j) = (42, 7, 11);
    for (name, device) in devices() {
        for n in SIZES {
            let got = read(noise::draw([n], &device, seed, step, j));
            let expected: Vec<f32> = (0..n as u32)
                .map(|i| noise::tau(seed, step, j, i))
                .collect();
            let max = got
                .iter()
                .zip(&expected)
                .map(|(a, e)| (a - e).abs())
                .fold(0.0, f32::max);
            let identical = got.iter().zip(&expected).filter(|(a, e)| a == e).count();
            eprintln!("τ on {name}, n = {n}: max |Δ| {max:.2e}, {identical} of {n} bit-identical");
            if name == "cpu" {
                assert_eq!(got, expected);
            } else {
                assert!(
                    max <= TAU_TOLERANCE,
                    "τ on {name}, n = {n}: max |Δ| {max:e}"
                );
            }
        }
    }
}

#[test]
fn tau_is_keyed_by_seed_step_and_tensor() {
    let n = 4096;
    for (name, device) in devices() {
        let draw = |seed, step, j| read(noise::draw([n], &device, seed, step, j));
        let base = draw(1, 1, 0);
        assert_eq!(base, draw(1, 1, 0), "same key, same τ on {name}");
        for (what, other) in [
            ("step", draw(1, 2, 0)),
            ("seed", draw(2, 1, 0)),
            ("tensor", draw(1, 1, 1)),
        ] {
            // Clipped draws coincide at ±2 (4.55 % of them), nothing else should.
            let same = base.iter().zip(&other).filter(|(a, b)| a == b).count();
            assert!(
                same < n / 10,
                "another {what} repeats {same} of {n} draws on {name}"
            );
        }
        // The first key once more, its parameter blocks now among others' (wgpu keeps them).
        assert_eq!(base, draw(1, 1, 0), "the first key again on {name}");
    }
}

#[test]
fn tau_has_the_clipped_normal_moments() {
    // N(0, 1) clipped to [−2, 2]: E τ² = 1 + 3t − 4φ(2), E τ⁴ = 3 + 13t − 28φ(2), t = P(|Z| > 2).
    let phi2 = (-2.0f64).exp() / (2.0 * std::f64::consts::PI).sqrt();
    let m2 = 1.0 + 3.0 * TAIL - 4.0 * phi2;
    let m4 = 3.0 + 13.0 * TAIL - 28.0 * phi2;
    let n = 1_000_000;
    for (name, device) in devices() {
        let draws = read(noise::draw([n], &device, 2024, 1, 0));
        let mean = draws.iter().map(|&t| f64::from(t)).sum::<f64>() / n as f64;
        let var = draws
            .iter()
            .map(|&t| (f64::from(t) - mean).powi(2))
            .sum::<f64>()
            / n as f64;
        let (mean_se, var_se) = ((m2 / n as f64).sqrt(), ((m4 - m2 * m2) / n as f64).sqrt());
        eprintln!(
            "τ moments on {name}: mean {mean:.5} ({:.2} SE), variance {var:.5} vs {m2:.5} ({:.2} SE)",
            mean / mean_se,
            (var - m2) / var_se
        );
        assert!(mean.abs() <= 4.0 * mean_se, "mean {mean} on {name}");
        assert!((var - m2).abs() <= 4.0 * var_se, "variance {var} on {name}");
        assert!(
            draws.iter().all(|t| t.abs() <= 2.0),
            "τ outside [−2, 2] on {name}"
        );
        // A quad's four τ share one Philox call, and each pair one radius: they must still be
        // uncorrelated, in value and in size (each lag within a quad, and across quads).
        for lag in 1..=4 {
            let pairs = draws.len() - lag;
            let corr = |f: &dyn Fn(f32) -> f64| {
                let x: Vec<f64> = draws.iter().map(|&t| f(t)).collect();
                let m = x.iter().sum::<f64>() / x.len() as f64;
                let var = x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / x.len() as f64;
                (0..pairs)
                    .map(|i| (x[i] - m) * (x[i + lag] - m))
                    .sum::<f64>()
                    / pairs as f64
                    / var
            };
            let (value, size) = (corr(&|t| f64::from(t)), corr(&|t| f64::from(t * t)));
            let limit = 4.0 / (pairs as f64).sqrt();
            assert!(
                value.abs() <= limit && size.abs() <= limit,
                "τ at lag {lag} on {name}: correlation {value:.2e}, of squares {size:.2e}"
            );
        }
    }
}

#[test]
fn noise_kernels_match_the_reference() {
    let (seed, step, j) = (9, 123, 2);
    let mut inputs = Inputs(0x1234_5678);
    for n in SIZES {
        let theta = inputs.signed(n, 0.01, 0.1);
        let p = inputs.uniform(n, -6.0, -1.0);
        let tau: Vec<f32> = (0..n as u32)
            .map(|i| noise::tau(seed, step, j, i))
            .collect();
        let injected: Vec<f32> = (0..n).map(|i| theta[i] + exp_f32(p[i]) * tau[i]).collect();
        let perturb_scale: Vec<f32> = (0..n)
            .map(|i| theta[i].abs() + p[i].exp() * tau[i].abs())
            .collect();

        for (name, device) in devices() {
            let noise = NoiseSource::Philox { seed, step };
            let (theta_t, p_t) = (tensor(&theta, &device), tensor(&p, &device));
            let got = read(noise::inject(theta_t, &p_t, j, &noise));
            assert_matches("inject", name, &got, &injected, &perturb_scale);
        }
    }
}

/// Each step's parameter block (its step number) is kept on the device for its step only: a
/// few hundred steps of noise do not add a block each (tests running beside this one may add
/// a few blocks of their own).
#[test]
#[cfg_attr(not(pac_test_lavapipe), ignore = "needs lavapipe (a wgpu device)")]
fn steps_of_noise_keep_no_block_per_step() {
    use pac_wgpu::util::kernel::launch::params_blocks;
    let device = Device::wgpu(DeviceKind::DefaultDevice);
    let theta = tensor(&Inputs(7).signed(256, 0.01, 0.1), &device);
    let p = tensor(&Inputs(8).uniform(256, -6.0, -1.0), &device);
    let blocks_after = |steps: std::ops::Range<u32>| {
        for step in steps {
            let noise = NoiseSource::Philox { seed: 3, step };
            read(noise::inject(theta.clone(), &p, 0, &noise));
        }
        params_blocks()
    };
    let (kept, _) = blocks_after(0..20);
    let (kept_after, steps_kept) = blocks_after(20..400);
    assert!(
        kept_after < kept + 200,
        "380 steps added {} kept blocks",
        kept_after - kept
    );
    assert!(steps_kept <= 8, "{steps_kept} step blocks kept");
}

/// One noise-Adam step of p_j in plain Rust, f32, operations grouped as the kernels group
/// them: (new p, m, v, g_p) from p, g = ∂loss1/∂θ', the moments (None: first step) and τ.
fn noise_adam_reference(
    p: &[f32],
    g: &[f32],
    moments: Option<(&[f32], &[f32])>,
    tau: &[f32],
    b_j: f32,
    s: &AdamScalars,
) -> [Vec<f32>; 4] {
    let mut out: [Vec<f32>; 4] = Default::default();
    for i in 0..p.len() {
        let gp = exp_f32(p[i]) * tau[i] * g[i] + s.kl_coef * expm1_f32(2.0 * (p[i] - b_j));
        let (m0, v0) = moments.map_or((0.0, 0.0), |(m, v)| (m[i], v[i]));
        let m = m0 * s.beta1 + gp * s.one_minus_beta1;
        let v = v0 * s.beta2 + (gp * gp) * s.one_minus_beta2;
        let step = (m / s.c1) / ((v / s.c2).sqrt() + s.eps) * s.lr;
        for (o, x) in out.iter_mut().zip([p[i] - step, m, v, gp]) {
            o.push(x);
        }
    }
    out
}

#[test]
fn noise_adam_matches_the_reference() {
    let (seed, j, kl_coef) = (9, 2, 1e-3);
    let mut inputs = Inputs(0x0ADA_3000);
    let b = inputs.uniform(5, -6.0, -1.0);
    let groups = [
        Group::Encoder,
        Group::Head,
        Group::Head,
        Group::Encoder,
        Group::Head,
    ];
    for n in SIZES {
        // Far from b_j, and (where the CPU skips the exponential of whole blocks) near it.
        let p = if n == 257 || n == 1_000_003 {
            inputs.uniform(n, b[j] - 0.2, b[j] + 0.2)
        } else {
            inputs.uniform(n, -6.0, -1.0)
        };
        let theta = inputs.signed(n, 0.01, 0.1);
        let theta0: Vec<f32> = theta
            .iter()
            .map(|t| t + 0.01 * (inputs.next() - 0.5))
            .collect();
        // Two steps: the first without moments, the second with them, each with its own τ.
        let g = [inputs.signed(n, 1e-4, 1.0), inputs.signed(n, 1e-4, 1.0)];
        for (name, device) in devices() {
            let mut adam = NoiseAdam::new(&groups);
            let (mut p_host, mut p_dev) = (p.clone(), tensor(&p, &device));
            let mut moments: Option<(Vec<f32>, Vec<f32>)> = None;
            for (t, g) in g.iter().enumerate() {
                let step = t as u32 + 1;
                adam.begin_step();
                let s = adam.scalars(j, kl_coef);
                let tau: Vec<f32> = (0..n as u32)
                    .map(|i| noise::tau(seed, step, j as u32, i))
                    .collect();
                let [p_ref, m_ref, v_ref, gp_ref] = noise_adam_reference(
                    &p_host,
                    g,
                    moments.as_ref().map(|(m, v)| (m.as_slice(), v.as_slice())),
                    &tau,
                    b[j],
                    &s,
                );
                let noise = NoiseSource::Philox { seed, step };
                let (theta_t, theta0_t) = (tensor(&theta, &device), tensor(&theta0, &device));
                // p and g held nowhere else: on wgpu the kernel updates them in place.
                let inputs = StepInputs {
                    p: p_dev,
                    g: tensor(g, &device),
                    theta: &theta_t,
                    theta0: &theta0_t,
                    b: &b,
                    noise: &noise,
                };
                let Stepped {
                    p: p_new,
                    grad_theta,
                    grad_p: gp,
                } = adam.step(j, inputs, kl_coef, true);
                let (gp, p_got) = (read(gp.expect("asked for")), read(p_new.clone()));
                // θ's gradient with the KL pull.
                let pull = exp_f32(-2.0 * b[j]) * kl_coef;
                let g_theta_ref: Vec<f32> = (0..n)
                    .map(|i| g[i] + pull * (theta[i] - theta0[i]))
                    .collect();
                let g_theta_scale: Vec<f32> = (0..n)
                    .map(|i| g[i].abs() + pull * (theta[i] - theta0[i]).abs())
                    .collect();
                let what_theta = format!("KL pull on θ's gradient (step {step})");
                assert_matches(
                    &what_theta,
                    name,
                    &read(grad_theta),
                    &g_theta_ref,
                    &g_theta_scale,
                );
                let m_got = read(adam.m_p(j).expect("kept"));
                let v_got = read(adam.v_p(j).expect("kept"));
                let what = |x: &str| format!("noise-Adam {x} (step {step})");
                // The size of g_p's terms, and of what m and v add up from them.
                let gp_scale: Vec<f32> = (0..n)
                    .map(|i| {
                        p_host[i].exp() * (tau[i] * g[i]).abs()
                            + kl_coef * ((2.0 * (p_host[i] - b[j])).exp() + 1.0)
                    })
                    .collect();
                let (m0, v0) = match &moments {
                    Some((m, v)) => (m.clone(), v.clone()),
                    None => (vec![0.0; n], vec![0.0; n]),
                };
                let m_scale: Vec<f32> = (0..n)
                    .map(|i| s.beta1 * m0[i].abs() + s.one_minus_beta1 * gp_scale[i])
                    .collect();
                let v_scale: Vec<f32> = (0..n)
                    .map(|i| s.beta2 * v0[i] + s.one_minus_beta2 * gp_scale[i] * gp_scale[i])
                    .collect();
                assert_matches(&what("g_p"), name, &gp, &gp_ref, &gp_scale);
                assert_matches(&what("m"), name, &m_got, &m_ref, &m_scale);
                assert_matches(&what("v"), name, &v_got, &v_ref, &v_scale);
                // p from the device's own m and v: where g_p nearly cancels, m/sqrt(v) is
                // ±1 of a sign that rounding may flip, so p is checked against its update.
                let p_from_moments: Vec<f32> = (0..n)
                    .map(|i| {
                        p_host[i] - (m_got[i] / s.c1) / ((v_got[i] / s.c2).sqrt() + s.eps) * s.lr
                    })
                    .collect();
                let p_scale: Vec<f32> = p_host.iter().map(|x| x.abs() + s.lr).collect();
                if name == "cpu" {
                    assert_eq!(p_got, p_ref, "{} on cpu", what("p"));
                }
                assert_matches(&what("p"), name, &p_got, &p_from_moments, &p_scale);
                (p_host, p_dev) = (p_got, p_new);
                moments = Some((m_got, v_got));
            }
        }
    }
}

#[test]
fn given_tau_runs_the_same_path() {
    let (seed, step, j, n) = (3, 4, 5, 65_537);
    let mut inputs = Inputs(99);
    let theta = inputs.signed(n, 0.01, 0.1);
    let p = inputs.uniform(n, -6.0, -1.0);
    let g = inputs.signed(n, 1e-4, 1.0);
    let b = inputs.uniform(j as usize + 1, -6.0, -1.0);
    for (name, device) in devices() {
        let (theta_t, p_t, g_t) = (
            tensor(&theta, &device),
            tensor(&p, &device),
            tensor(&g, &device),
        );
        let philox = NoiseSource::Philox { seed, step };
        let given = NoiseSource::Given(noise::draw([n], &device, seed, step, j));
        let both = |noise: &NoiseSource<1>| {
            (read(noise::inject(theta_t.clone(), &p_t, j, noise)), {
                let mut adam = NoiseAdam::new(&[Group::Encoder; 6]);
                adam.begin_step();
                // p and g are held here too: the kernel must leave them as they are.
                let inputs = StepInputs {
                    p: p_t.clone(),
                    g: g_t.clone(),
                    theta: &theta_t,
                    theta0: &g_t,
                    b: &b,
                    noise,
                };
                let out = adam.step(j as usize, inputs, 0.01, true);
                let grad_p = out.grad_p.expect("asked for");
                (read(out.p), read(out.grad_theta), read(grad_p))
            })
        };
        let (a, b) = (both(&philox), both(&given));
        if name == "cpu" {
            assert!(a == b, "given τ differs from the generated one on {name}");
        } else {
            // Each shader is compiled on its own, so a driver may fuse their multiply-adds
            // differently: τ agrees to TAU_TOLERANCE, the results to as much relative to their
            // size (new p is left out: where g_p cancels, its Adam step may flip sign).
            let (inject, (_, grad_theta, grad_p)) = a;
            let (inject_b, (_, grad_theta_b, grad_p_b)) = b;
            for (what, x, y) in [
                ("inject", inject, inject_b),
                ("θ's gradient", grad_theta, grad_theta_b),
                ("p's gradient", grad_p, grad_p_b),
            ] {
                let what = format!("{what} with given τ against generated τ on {name}");
                assert_within_tau_tolerance(&what, &x, &y);
            }
        }
    }
}

#[test]
fn results_are_plain_tensors_from_autodiff_inputs() {
    let device = Device::flex().autodiff();
    let theta = Tensor::<1>::from_floats([0.1, -0.2, 0.3], &device).require_grad();
    let p = Tensor::<1>::from_floats([-3.0, -4.0, -5.0], &device).require_grad();
    let noise = NoiseSource::Philox { seed: 1, step: 1 };
    let injected = noise::inject(theta.clone(), &p, 0, &noise);
    assert!(!injected.is_autodiff());
    let plain = noise::inject(theta.inner(), &p.inner(), 0, &noise);
    assert_eq!(read(injected), read(plain));
}

#[test]
fn kl_sums_match_the_reference() {
    let mut inputs = Inputs(2718);
    let tensors: Vec<[Vec<f32>; 3]> = SIZES
        .iter()
        .map(|&n| {
            let theta = inputs.signed(n, 0.01, 0.1);
            let theta0: Vec<f32> = theta
                .iter()
                .map(|t| t + 0.01 * (inputs.next() - 0.5))
                .collect();
            [theta, theta0, inputs.uniform(n, -6.0, -1.0)]
        })
        .collect();
    // b_j near the p of its tensor, and for the last tensor equal to every p there (E = F = 0).
    let b: Vec<f32> = (0..SIZES.len())
        .map(|_| inputs.uniform(1, -4.0, -3.0)[0])
        .collect();
    let last = SIZES.len() - 1;
    let mut tensors = tensors;
    tensors[last][2] = vec![b[last]; SIZES[last]];
    let expected: Vec<f32> = tensors
        .iter()
        .zip(&b)
        .flat_map(|([theta, theta0, p], &b_j)| {
            let mut s = [0.0f64; 3];
            for i in 0..theta.len() {
                let d = f64::from(theta[i] - theta0[i]);
                let y = 2.0 * (f64::from(p[i]) - f64::from(b_j));
                s[0] += y.exp_m1();
                s[1] += y.exp_m1() - y;
                s[2] += d * d;
            }
            s.map(|v| v as f32)
        })
        .collect();
    for (name, device) in devices() {
        let list = |k: usize| -> Vec<Tensor<1>> {
            tensors.iter().map(|t| tensor(&t[k], &device)).collect()
        };
        // Leave garbage where the partial sums will likely be allocated: every slot must be
        // written, none may be assumed zero.
        read(Tensor::<1>::full([SIZES.len() * 256 * 3], 1e9, &device));
        let (theta_t, theta0_t, p_t) = (list(0), list(1), list(2));
        let (sums, none) = kl::sums(&theta_t, &theta0_t, &p_t, &b, None);
        assert!(none.is_empty());
        assert_eq!(sums.dims(), [SIZES.len(), 3]);
        let got = read(sums);
        for (row, n) in SIZES.iter().enumerate() {
            let rows = 3 * row..3 * row + 3;
            // Relative to each sum's size; where p = b_j (E = F = 0) the sums must be exactly 0.
            let scale: Vec<f32> = expected[rows.clone()]
                .iter()
                .map(|e| e.abs().max(f32::MIN_POSITIVE))
                .collect();
            let error = max_error(&got[rows.clone()], &expected[rows], &scale);
            eprintln!("KL sums on {name}, n = {n}: max relative error {error:.2e}");
            assert!(
                error <= RELATIVE_TOLERANCE,
                "KL sums on {name}, n = {n}: {error:e}"
            );
        }

        // The pass that also injects (PAC stage 1): the same sums, and θ' = θ + exp(p)·τ
        // against the host reference (f64, its own Philox and Box–Muller: nothing shared with
        // the kernels), from generated τ and, for tensor 1, from given τ (drawn on the device
        // under the same key, so the reference is the same).
        let (seed, step) = (8, 9);
        let source = |j: usize| {
            if j == 1 {
                NoiseSource::Given(noise::draw([SIZES[j]], &device, seed, step, j as u32))
            } else {
                NoiseSource::Philox { seed, step }
            }
        };
        let (sums, injected) = kl::sums(&theta_t, &theta0_t, &p_t, &b, Some(&source));
        assert_eq!(read(sums), got, "KL sums of the injecting pass on {name}");
        assert_eq!(injected.len(), SIZES.len());
        for (j, theta_noisy) in injected.into_iter().enumerate() {
            let got = read(theta_noisy);
            let [theta, _, p] = &tensors[j];
            let mut worst = 0.0f64;
            for (i, &g) in got.iter().enumerate() {
                let tau = host_tau(seed, step, j as u32, i as u32);
                let sigma = f64::from(p[i]).exp();
                let want = f64::from(theta[i]) + sigma * tau;
                let error = (f64::from(g) - want).abs();
                let allowed = injected_tolerance(want, sigma);
                worst = worst.max(error / allowed);
                assert!(
                    error <= allowed,
                    "θ'[{i}] of tensor {j} on {name}: {g} vs host {want} (τ {tau})"
                );
            }
            eprintln!(
                "θ' of tensor {j} (n = {}) on {name}: worst error {worst:.2} of the tolerance",
                got.len()
            );
        }
    }
}

/// Philox4x32-10 written out again for the host reference (Salmon et al. 2011; the constants
/// are Random123's), independent of the library's.
fn host_philox(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (counter, key);
    for _ in 0..10 {
        let p0 = u64::from(0xD251_1F53u32) * u64::from(c[0]);
        let p1 = u64::from(0xCD9E_8D57u32) * u64::from(c[2]);
        c = [
            (p1 >> 32) as u32 ^ c[1] ^ k[0],
            p1 as u32,
            (p0 >> 32) as u32 ^ c[3] ^ k[1],
            p0 as u32,
        ];
        k = [
            k[0].wrapping_add(0x9E37_79B9),
            k[1].wrapping_add(0xBB67_AE85),
        ];
    }
    c
}

/// τ of element i of tensor j at (seed, step) as src/pac/noise.rs documents it, in f64 with
/// std's ln, cos and sin: Philox words (x0, x1, x2, x3) of counter (i/4, j, 0, 0) and key
/// (seed, step); Box–Muller on each pair (x, y) with u1 = ((x >> 8) + 1)·2⁻²⁴,
/// a = (y >> 8)·2⁻²⁴, r = sqrt(−2 ln u1): element 4q is r·cos 2πa of (x0, x1), 4q + 1 its
/// r·sin 2πa, 4q + 2 and 4q + 3 the same of (x2, x3); each clipped to [−2, 2].
fn host_tau(seed: u32, step: u32, j: u32, i: u32) -> f64 {
    host_normal(seed, step, j, i).clamp(-2.0, 2.0)
}

/// [`host_tau`] before clipping.
fn host_normal(seed: u32, step: u32, j: u32, i: u32) -> f64 {
    let words = host_philox([i / 4, j, 0, 0], [seed, step]);
    let pair = (i % 4 / 2) as usize;
    let (x, y) = (words[2 * pair], words[2 * pair + 1]);
    let u1 = f64::from((x >> 8) + 1) / 16_777_216.0;
    let a = f64::from(y >> 8) / 16_777_216.0;
    let r = (-2.0 * u1.ln()).sqrt();
    let angle = std::f64::consts::TAU * a;
    if i.is_multiple_of(2) {
        r * angle.cos()
    } else {
        r * angle.sin()
    }
}

#[test]
fn prior_models_match_the_reference() {
    // K(λ)'s prior models θ0 + s·z, z the generator's normal draws before clipping: over a
    // million draws, about 45 000 lie beyond ±2 and must come out unclipped.
    let (seed, step, j, scale) = (31, PRIOR_STEPS + 5, 3, 0.0473f32);
    let mut inputs = Inputs(0x9e37_79b9);
    for n in SIZES {
        let theta = inputs.signed(n, 0.01, 0.1);
        let z: Vec<f64> = (0..n as u32)
            .map(|i| host_normal(seed, step, j, i))
            .collect();
        for (name, device) in devices() {
            let got = read(noise::prior(tensor(&theta, &device), scale, seed, step, j));
            let eps = f64::from(f32::EPSILON);
            let (mut worst, mut beyond) = (0.0f64, 0);
            for i in 0..n {
                let want = f64::from(theta[i]) + f64::from(scale) * z[i];
                // z's f32 evaluation to a few 1e-7 of r ≤ 5.8, then the product and the sum.
                let tol =
                    f64::from(scale) * 3.0 * f64::from(TAU_TOLERANCE) + 2.0 * eps * want.abs();
                worst = worst.max((f64::from(got[i]) - want).abs() / tol);
                beyond += usize::from(z[i].abs() > 2.0);
            }
            eprintln!(
                "prior on {name}, n = {n}: worst error {worst:.3} of the tolerance, {beyond} draws beyond ±2"
            );
            assert!(
                worst <= 1.0,
                "prior on {name}, n = {n}: {worst} × the tolerance"
            );
            if n == SIZES[4] {
                assert!(beyond > 40_000, "only {beyond} draws beyond ±2");
            }
        }
    }
}

/// How far the f32 θ' may be from the f64 reference: τ's f32 evaluation (ln to 1.4 ulp, cos
/// and sin to 9e-8 absolute, then −2·, sqrt and r·: a few 1e-7 of r ≤ 5.8, i.e. up to ~1e-6
/// absolute; TAU_TOLERANCE), exp(p) to 2.5 ulp, the product and the sum each half an ulp.
fn injected_tolerance(want: f64, sigma: f64) -> f64 {
    let eps = f64::from(f32::EPSILON);
    sigma * (f64::from(TAU_TOLERANCE) + 2.0 * 4.0 * eps) + 2.0 * eps * want.abs()
}

#[test]
fn host_philox_matches_random123_known_answers() {
    // The reference of kl_sums_match_the_reference must itself be right: Random123's
    // kat_vectors for philox4x32 10, and the published all-zero vector at tensor 0.
    assert_eq!(
        host_philox([0; 4], [0; 2]),
        [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
    );
    assert_eq!(
        host_philox(
            [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
            [0xa409_3822, 0x299f_31d0]
        ),
        [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
    );
}

#[test]
fn grid_folds_past_65_535_workgroups() {
    // One element more than a grid row of workgroups (256 threads, four elements each) holds:
    // the last one lands on row 1.
    let row = 4 * 256 * GRID_WIDTH as usize;
    let n = row + 1;
    let (seed, step, j) = (8, 9, 10);
    for (name, device) in devices() {
        let got = read(noise::draw([n], &device, seed, step, j));
        for i in [0, row - 1, n - 1] {
            let expected = noise::tau(seed, step, j, i as u32);
            assert!(
                (got[i] - expected).abs() <= TAU_TOLERANCE,
                "τ[{i}] on {name}: {} vs {expected}",
                got[i]
            );
        }
    }
}
