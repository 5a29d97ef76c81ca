//! Parity of PAC-tuning's host maths (`pac::bound`) and noise-Adam (`pac::noise_adam`) with
//! tests/golden/pac-bound.json (the authors' reference functions in float64), a
//! finite-difference check of the closed-form gradients, and the device kernels against the
//! host reference on the golden inputs. Run with `--nocapture` to see the measured errors.
//!

use crate::common;

use burn::tensor::{Device, DeviceKind, Tensor, TensorData};
use pac_wgpu::model::trainable::Group;
use pac_wgpu::pac::bound::{
    self, KHat, TensorSums, bound_terms, estimate_k, gamma_grid, prior_std_grid,
};
use pac_wgpu::pac::noise::NoiseSource;
use pac_wgpu::pac::noise_adam::{NoiseAdam, StepInputs};
use pac_wgpu::pac::{kl, noise_adam};
use serde_json::Value;

/// The golden file's tolerance: relative, or absolute where the expected value is near 0.
const TOLERANCE: f64 = 1e-6;

/// |actual − expected| relative to |expected|, or absolute where |expected| < TOLERANCE.
fn error(actual: f64, expected: f64) -> f64 {
    let diff = (actual - expected).abs();
    if expected.abs() < TOLERANCE {
        diff
    } else {
        diff / expected.abs()
    }
}

/// Asserts every entry within `tolerance` (see [`error`]) and prints the worst error.
fn check(what: &str, actual: &[f64], expected: &[f64], tolerance: f64) -> f64 {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    let (worst, at) = actual
        .iter()
        .zip(expected)
        .map(|(&a, &e)| error(a, e))
        .enumerate()
        .fold(
            (0.0f64, 0),
            |(w, at), (i, e)| {
                if e > w { (e, i) } else { (w, at) }
            },
        );
    eprintln!(
        "{what}: worst error {worst:.2e} (entry {at} of {})",
        actual.len()
    );
    assert!(
        worst <= tolerance,
        "{what}: entry {at} is {} but the golden value is {} (error {worst:e} > {tolerance:e})",
        actual[at],
        expected[at]
    );
    worst
}

fn check1(what: &str, actual: f64, expected: f64) {
    check(what, &[actual], &[expected], TOLERANCE);
}

fn golden() -> Value {
    common::read_json(&common::golden_dir().join("pac-bound.json"))
}

/// The CPU device, then the wgpu device where there is an adapter (kernels.rs lists
/// `a_wgpu_adapter_is_present` as not run where there is none).
fn devices() -> Vec<(&'static str, Device)> {
    let mut devices = vec![("cpu", Device::flex())];
    if !pac_wgpu::util::device::adapters().is_empty() {
        devices.push(("wgpu", Device::wgpu(DeviceKind::DefaultDevice)));
    } else if cfg!(pac_test_lavapipe) {
        common::missing(
            "a wgpu adapter",
            "apt-get install mesa-vulkan-drivers libvulkan1",
        );
    }
    devices
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn nums(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(num)
        .collect()
}

/// The golden file's parameter set, split per tensor.
struct Fixture {
    numels: Vec<usize>,
    theta: Vec<f64>,
    theta0: Vec<f64>,
    p: Vec<f64>,
    b: Vec<f64>,
    n: usize,
    gamma: f64,
    tau: Vec<f64>,
    dloss1: Vec<f64>,
    k_hat: KHat,
}

impl Fixture {
    fn new(g: &Value) -> Self {
        let numels: Vec<usize> = g["shapes"]
            .as_array()
            .expect("shapes")
            .iter()
            .map(|s| nums(s).iter().map(|&d| d as usize).product())
            .collect();
        let ke = &g["k_estimation"];
        let fixture = Fixture {
            theta: nums(&g["theta"]),
            theta0: nums(&g["theta0"]),
            p: nums(&g["p"]),
            b: nums(&g["b"]),
            n: g["n"].as_u64().expect("n") as usize,
            gamma: num(&g["gamma"]),
            tau: nums(&g["tau"]),
            dloss1: nums(&g["dloss1_dtheta_perturbed"]),
            k_hat: KHat::new(nums(&ke["prior_std"]), nums(&ke["K_monotone"])),
            numels,
        };
        let d: usize = fixture.numels.iter().sum();
        assert_eq!(fixture.theta.len(), d, "θ has one entry per scalar");
        assert_eq!(fixture.b.len(), fixture.numels.len(), "one b_j per tensor");
        fixture
    }

    /// The index range of tensor j in the flat vectors.
    fn range(&self, j: usize) -> std::ops::Range<usize> {
        let start: usize = self.numels[..j].iter().sum();
        start..start + self.numels[j]
    }

    fn sums(&self) -> Vec<TensorSums> {
        (0..self.numels.len())
            .map(|j| {
                let r = self.range(j);
                TensorSums::from_values(
                    &self.theta[r.clone()],
                    &self.theta0[r.clone()],
                    &self.p[r],
                    self.b[j],
                )
            })
            .collect()
    }

    fn terms(&self) -> bound::BoundTerms {
        bound_terms(
            &self.sums(),
            &self.b,
            self.n,
            (self.gamma, self.gamma),
            &self.k_hat,
        )
    }
}

#[test]
fn kl_wdecay_k_and_loss2_match_the_authors() {
    let g = golden();
    let f = Fixture::new(&g);
    let sums = f.sums();
    check1("wdecay", bound::wdecay(&sums, &f.b), num(&g["wdecay"]));
    check1("kl", bound::kl(&sums, &f.b), num(&g["kl"]));
    let terms = f.terms();
    check1("C", terms.c, num(&g["C"]));
    check1("wdecay (bound terms)", terms.wdecay, num(&g["wdecay"]));
    check1("kl (bound terms)", terms.kl, num(&g["kl"]));
    check1("K̂(exp(mean b))", terms.k, num(&g["K"]));
    check1("loss2", terms.loss2, num(&g["loss2"]));
    assert_eq!(terms.gamma, f.gamma, "γ1 = γ2 fixes γ");
    assert_eq!(terms.kl_coef, 1.0 / (f.n as f64 * f.gamma));
}

#[test]
fn gradients_match_the_authors() {
    let g = golden();
    let f = Fixture::new(&g);
    let terms = f.terms();
    let (mut grad_p, mut grad_theta) = (Vec::new(), Vec::new());
    for j in 0..f.numels.len() {
        let r = f.range(j);
        grad_p.extend(grad_p_reference(
            &f.p[r.clone()],
            &f.tau[r.clone()],
            &f.dloss1[r.clone()],
            f.b[j],
            terms.kl_coef,
        ));
        grad_theta.extend(grad_theta_total_reference(
            &f.dloss1[r.clone()],
            &f.theta[r.clone()],
            &f.theta0[r],
            f.b[j],
            terms.kl_coef,
        ));
    }
    check("grad_p", &grad_p, &nums(&g["grad_p"]), TOLERANCE);
    check("grad_b", &terms.grad_b, &nums(&g["grad_b"]), TOLERANCE);
    check(
        "grad_theta_total",
        &grad_theta,
        &nums(&g["grad_theta_total"]),
        TOLERANCE,
    );
}

#[test]
fn k_estimation_matches_the_authors() {
    let g = golden();
    let ke = &g["k_estimation"];
    let gamma = num(&g["gamma"]);
    check(
        "prior std grid",
        &prior_std_grid(),
        &nums(&ke["prior_std"]),
        TOLERANCE,
    );
    let losses: Vec<Vec<Vec<f64>>> = ke["losses"]
        .as_array()
        .expect("losses")
        .iter()
        .map(|point| point.as_array().expect("rows").iter().map(nums).collect())
        .collect();
    let estimate = estimate_k(&losses, &gamma_grid((gamma, gamma)));
    check("K_raw", &estimate.raw, &nums(&ke["K_raw"]), TOLERANCE);
    check(
        "K_monotone",
        &estimate.monotone,
        &nums(&ke["K_monotone"]),
        TOLERANCE,
    );
    let k_hat = KHat::new(prior_std_grid(), estimate.monotone);
    let (at, expected): (Vec<f64>, Vec<f64>) = ke["K_at"]
        .as_object()
        .expect("K_at")
        .iter()
        .map(|(s, k)| (s.parse::<f64>().expect("K_at key"), num(k)))
        .unzip();
    let got: Vec<f64> = at.iter().map(|&s| k_hat.value(s)).collect();
    check("K̂ at K_at", &got, &expected, TOLERANCE);
}

/// The golden trajectory's setting: p starts at 0 (its first entry stays 0 after an update with
/// gradient sin(0) = 0), gradient sin(0.7 i + t) at step t = 0..24, entries below
/// `pretrain_dim` in the encoder group.
struct Trajectory {
    pretrain_dim: usize,
    watch: Vec<usize>,
    expected: Vec<Vec<f64>>,
}

impl Trajectory {
    fn new(g: &Value) -> Self {
        let na = &g["noise_adam"];
        assert_eq!(
            num(&na["lr4clf"]),
            noise_adam::NoiseAdamConfig::default().head_lr,
            "the golden trajectory's head step size"
        );
        Trajectory {
            pretrain_dim: na["pretrain_dim"].as_u64().expect("pretrain_dim") as usize,
            watch: nums(&na["watch_indices"])
                .iter()
                .map(|&i| i as usize)
                .collect(),
            expected: na["trajectory"]
                .as_array()
                .expect("trajectory")
                .iter()
                .map(nums)
                .collect(),
        }
    }

    fn grad(i: usize, t: usize) -> f64 {
        (0.7 * i as f64 + t as f64).sin()
    }

    fn group(&self, i: usize) -> Group {
        if i < self.pretrain_dim {
            Group::Encoder
        } else {
            Group::Head
        }
    }
}

#[test]
fn noise_adam_host_maths_follow_the_golden_trajectory() {
    let g = golden();
    let traj = Trajectory::new(&g);
    let d = Fixture::new(&g).p.len();
    // update_b is the f64 maths: give every scalar its own "tensor" and group.
    let groups: Vec<Group> = (0..d).map(|i| traj.group(i)).collect();
    let mut adam = NoiseAdam::new(&groups);
    let mut p = vec![0.0; d];
    let (mut got, mut expected) = (Vec::new(), Vec::new());
    for (t, watched) in traj.expected.iter().enumerate() {
        adam.begin_step();
        let grad: Vec<f64> = (0..d).map(|i| Trajectory::grad(i, t)).collect();
        adam.update_b(&mut p, &grad);
        got.extend(traj.watch.iter().map(|&i| p[i]));
        expected.extend(watched);
    }
    check(
        "noise-Adam in f64 (update_b), 25 steps × watched entries",
        &got,
        &expected,
        TOLERANCE,
    );
    assert_eq!(adam.step, traj.expected.len() as u64);
}

/// f32 device p against the f64 golden trajectory, through the fused kernel: the kernel takes
/// g = ∂loss1/∂θ' and τ, not p's gradient, so the test passes τ = 1, no KL term and
/// g = grad·exp(−p) (from the current f32 p, rounded to f32); exp(p)·g then gives back grad to a
/// few ulp (≤ 3·2⁻²⁴ relative with the device's exp). Every update moves p by at most its step
/// size (≤ 0.5), and a relative error δ in the gradients moves it by ≲ 2δ of that; over 25
/// steps that adds up to at most 25 × 0.5 × 2 × 3·2⁻²⁴ ≈ 4.5e-6 (far less in practice, as the
/// errors are not all of one sign), plus the rounding of p itself.
const DEVICE_TRAJECTORY_TOLERANCE: f64 = 5e-6;

#[test]
fn noise_adam_device_p_follows_the_golden_trajectory() {
    let g = golden();
    let traj = Trajectory::new(&g);
    let f = Fixture::new(&g);
    let groups: Vec<Group> = (0..f.numels.len())
        .map(|j| {
            let r = f.range(j);
            let group = traj.group(r.start);
            assert_eq!(
                group,
                traj.group(r.end - 1),
                "a tensor straddles pretrain_dim"
            );
            group
        })
        .collect();
    for (name, device) in devices() {
        let mut adam = NoiseAdam::new(&groups);
        let mut p: Vec<Tensor<1>> = f
            .numels
            .iter()
            .map(|&numel| Tensor::zeros([numel], &device))
            .collect();
        let (mut worst, mut worst_relative) = (0.0f64, 0.0f64);
        for (t, expected) in traj.expected.iter().enumerate() {
            adam.begin_step();
            for (j, p_j) in p.iter_mut().enumerate() {
                let p_now = read(p_j.clone());
                let g: Vec<f64> = f
                    .range(j)
                    .zip(&p_now)
                    .map(|(i, &p_i)| Trajectory::grad(i, t) * (-p_i).exp())
                    .collect();
                let ones = NoiseSource::Given(Tensor::ones([f.numels[j]], &device));
                let b = vec![0.0; f.numels.len()];
                let zeros = Tensor::zeros([f.numels[j]], &device);
                let inputs = StepInputs {
                    p: p_j.clone(),
                    g: tensor(&g, &device),
                    theta: &zeros,
                    theta0: &zeros,
                    b: &b,
                    noise: &ones,
                };
                *p_j = adam.step(j, inputs, 0.0, false).p;
            }
            let flat: Vec<f64> = p.iter().flat_map(|t| read(t.clone())).collect();
            for (k, &i) in traj.watch.iter().enumerate() {
                worst = worst.max((flat[i] - expected[k]).abs());
                worst_relative = worst_relative.max(error(flat[i], expected[k]));
            }
        }
        eprintln!(
            "noise-Adam in f32 (fused kernel) on {name}: worst |Δp| {worst:.2e} (tolerance \
             {DEVICE_TRAJECTORY_TOLERANCE:e}), worst relative {worst_relative:.2e}"
        );
        assert!(
            worst <= DEVICE_TRAJECTORY_TOLERANCE,
            "f32 p on {name} drifted from the golden trajectory by {worst:e}"
        );
        assert!(adam.moments.iter().all(Option::is_some));
    }
}

/// Deterministic inputs: xorshift64*, uniform in [0, 1).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn uniform(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..n).map(|_| lo + (hi - lo) * self.next()).collect()
    }
}

/// The per-tensor sums of flat host vectors split by `numels`.
fn sums_of(
    numels: &[usize],
    theta: &[f64],
    theta0: &[f64],
    p: &[f64],
    b: &[f64],
) -> Vec<TensorSums> {
    let mut start = 0;
    numels
        .iter()
        .zip(b)
        .map(|(&numel, &b_j)| {
            let r = start..start + numel;
            start += numel;
            TensorSums::from_values(&theta[r.clone()], &theta0[r.clone()], &p[r], b_j)
        })
        .collect()
}

#[test]
fn closed_form_gradients_match_finite_differences() {
    let numels = [12, 3, 20, 5, 10, 2];
    let d: usize = numels.iter().sum();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let theta0 = rng.uniform(d, -0.3, 0.3);
    let theta: Vec<f64> = theta0
        .iter()
        .zip(rng.uniform(d, 0.01, 0.05))
        .zip(rng.uniform(d, 0.0, 1.0))
        .map(|((&t0, delta), sign)| if sign < 0.5 { t0 - delta } else { t0 + delta })
        .collect();
    let p = rng.uniform(d, -4.3, -3.3);
    let b = rng.uniform(numels.len(), -3.9, -3.3);
    // A K̂ with a different slope on every segment, so the K̂ path is exercised.
    let grid = prior_std_grid();
    let ks: Vec<f64> = grid.iter().map(|s| 0.05 + s + 3.0 * s * s).collect();
    let k_hat = KHat::new(grid.clone(), ks);
    let n = 20;
    let h = 1e-6;
    let l = numels.len() as f64;
    let scale = (b.iter().sum::<f64>() / l).exp();
    assert!(
        grid.iter().all(|s| (scale - s).abs() > 1e-3 * s),
        "exp(mean b) = {scale} sits on a knot of K̂"
    );
    assert!(
        k_hat.derivative(scale) > 0.0,
        "the K̂ path must carry gradient"
    );

    // γ clipped to 10, then free (γ's own gradient vanishes there, which this checks too).
    for gamma_range in [(10.0, 10.0), (1e-3, 1e6)] {
        // loss2 at (θ, p, b), the function the closed-form gradients differentiate.
        let at = |theta: &[f64], p: &[f64], b: &[f64]| {
            bound_terms(
                &sums_of(&numels, theta, &theta0, p, b),
                b,
                n,
                gamma_range,
                &k_hat,
            )
            .loss2
        };
        let sums = sums_of(&numels, &theta, &theta0, &p, &b);
        let terms = bound_terms(&sums, &b, n, gamma_range, &k_hat);
        assert!(
            (terms.gamma == terms.gamma_unclipped) == (gamma_range.0 != gamma_range.1),
            "γ {} should be clipped only in the first case",
            terms.gamma
        );
        let (mut analytic, mut numeric) = (Vec::new(), Vec::new());
        let mut start = 0;
        for (j, &numel) in numels.iter().enumerate() {
            let r = start..start + numel;
            start += numel;
            // ∂loss2/∂p and ∂loss2/∂θ: the per-element gradients with dloss1 = 0.
            analytic.extend(grad_p_reference(
                &p[r.clone()],
                &vec![0.0; numel],
                &vec![0.0; numel],
                b[j],
                terms.kl_coef,
            ));
            analytic.extend(grad_theta_total_reference(
                &vec![0.0; numel],
                &theta[r.clone()],
                &theta0[r.clone()],
                b[j],
                terms.kl_coef,
            ));
            for i in r.clone() {
                let (mut up, mut down) = (p.clone(), p.clone());
                up[i] += h;
                down[i] -= h;
                numeric.push((at(&theta, &up, &b) - at(&theta, &down, &b)) / (2.0 * h));
            }
            for i in r {
                let (mut up, mut down) = (theta.clone(), theta.clone());
                up[i] += h;
                down[i] -= h;
                numeric.push((at(&up, &p, &b) - at(&down, &p, &b)) / (2.0 * h));
            }
        }
        analytic.extend(&terms.grad_b);
        for j in 0..numels.len() {
            let (mut up, mut down) = (b.clone(), b.clone());
            up[j] += h;
            down[j] -= h;
            numeric.push((at(&theta, &p, &up) - at(&theta, &p, &down)) / (2.0 * h));
        }
        // Central differences of a loss2 ≈ 0.3 with h = 1e-6: truncation ~h², rounding
        // ~1e-16·0.3/h ≈ 3e-11; gradients here are 1e-5 .. 1e-1.
        let worst = (0..analytic.len())
            .map(|i| (analytic[i] - numeric[i]).abs() / analytic[i].abs().max(1e-4))
            .fold(0.0f64, f64::max);
        eprintln!(
            "finite differences, γ range {gamma_range:?} (γ = {:.4}): worst error {worst:.2e} over {} gradients",
            terms.gamma,
            analytic.len()
        );
        assert!(
            worst <= 1e-5,
            "closed-form gradients differ from finite differences by {worst:e}"
        );
    }
}

fn tensor(values: &[f64], device: &Device) -> Tensor<1> {
    let values: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    let len = values.len();
    Tensor::from_data(TensorData::new(values, [len]), device)
}

fn read(t: Tensor<1>) -> Vec<f64> {
    let values: Vec<f32> = t.into_data().try_into_vec().expect("f32 data");
    values.into_iter().map(f64::from).collect()
}

/// The f32 kernels on the golden inputs, against the f64 host reference. The inputs themselves
/// round to f32 (p ≈ −4 moves by up to 2.4e-7, which exp(2p − 2b) turns into ~1e-6 relative),
/// so the error is measured against the size of the terms (|exp(p)τg| + kl_coef·(exp(2p−2b)+1)
/// for g_p, |g| + |kl_coef·exp(−2b)(θ−θ0)| for θ) and held to 4e-6.
const KERNEL_TOLERANCE: f64 = 4e-6;

#[test]
fn device_kernels_match_the_host_reference() {
    let g = golden();
    let f = Fixture::new(&g);
    let terms = f.terms();
    for (name, device) in devices() {
        let b: Vec<f32> = f.b.iter().map(|&b_j| b_j as f32).collect();
        // p's and θ's gradients come out of the fused noise-Adam pass.
        let mut adam = NoiseAdam::new(&vec![Group::Encoder; f.numels.len()]);
        adam.begin_step();
        let (mut worst_p, mut worst_theta) = (0.0f64, 0.0f64);
        let (mut thetas, mut theta0s, mut ps) = (Vec::new(), Vec::new(), Vec::new());
        for j in 0..f.numels.len() {
            let r = f.range(j);
            let p = tensor(&f.p[r.clone()], &device);
            let g1 = tensor(&f.dloss1[r.clone()], &device);
            let tau = tensor(&f.tau[r.clone()], &device);
            let theta = tensor(&f.theta[r.clone()], &device);
            let theta0 = tensor(&f.theta0[r.clone()], &device);

            let tau = NoiseSource::Given(tau);
            let inputs = StepInputs {
                p: p.clone(),
                g: g1,
                theta: &theta,
                theta0: &theta0,
                b: &b,
                noise: &tau,
            };
            let out = adam.step(j, inputs, terms.kl_coef as f32, true);
            let got = read(out.grad_p.expect("asked for"));
            let expected = grad_p_reference(
                &f.p[r.clone()],
                &f.tau[r.clone()],
                &f.dloss1[r.clone()],
                f.b[j],
                terms.kl_coef,
            );
            for (k, i) in r.clone().enumerate() {
                let scale = (f.p[i].exp() * f.tau[i] * f.dloss1[i]).abs()
                    + terms.kl_coef * ((2.0 * f.p[i] - 2.0 * f.b[j]).exp() + 1.0);
                worst_p = worst_p.max((got[k] - expected[k]).abs() / scale);
            }

            let got = read(out.grad_theta);
            let expected = grad_theta_total_reference(
                &f.dloss1[r.clone()],
                &f.theta[r.clone()],
                &f.theta0[r.clone()],
                f.b[j],
                terms.kl_coef,
            );
            let coef = terms.kl_coef * (-2.0 * f.b[j]).exp();
            for (k, i) in r.enumerate() {
                let scale = f.dloss1[i].abs() + (coef * (f.theta[i] - f.theta0[i])).abs();
                worst_theta = worst_theta.max((got[k] - expected[k]).abs() / scale);
            }
            thetas.push(theta);
            theta0s.push(theta0);
            ps.push(p);
        }
        // The device sums feed the host KL through TensorSums::from_rows.
        let rows: Vec<f32> = kl::sums(&thetas, &theta0s, &ps, &b, None)
            .0
            .into_data()
            .try_into_vec()
            .expect("f32 sums");
        let sums = TensorSums::from_rows(&rows, &f.numels);
        let kl_error = error(bound::kl(&sums, &f.b), num(&g["kl"]));
        let device_terms = bound_terms(&sums, &f.b, f.n, (f.gamma, f.gamma), &f.k_hat);
        let grad_b_error = device_terms
            .grad_b
            .iter()
            .zip(nums(&g["grad_b"]))
            .map(|(&a, e)| error(a, e))
            .fold(0.0f64, f64::max);
        eprintln!(
            "kernels on {name}: grad_p worst {worst_p:.2e}, grad_theta_total worst \
             {worst_theta:.2e} (of the terms' size); from the device sums: KL {kl_error:.2e}, \
             grad_b {grad_b_error:.2e} relative"
        );
        assert!(worst_p <= KERNEL_TOLERANCE, "grad_p on {name}: {worst_p:e}");
        assert!(
            worst_theta <= KERNEL_TOLERANCE,
            "grad_theta_total on {name}: {worst_theta:e}"
        );
        assert!(kl_error <= 1e-5, "KL from the {name} sums: {kl_error:e}");
        assert!(
            grad_b_error <= 1e-5,
            "grad_b from the {name} sums: {grad_b_error:e}"
        );
    }
}

#[test]
fn init_log_std_and_b() {
    let (p_enc, p_head) = bound::init_log_std(0.04, 0.02);
    assert!((p_enc - 2.0 * 0.04f64.ln()).abs() < 1e-15);
    assert!((p_head - 0.02f64.ln()).abs() < 1e-15);
    let b = bound::initial_b(
        &[Group::Encoder, Group::Encoder, Group::Head],
        (p_enc, p_head),
    );
    assert_eq!(b, vec![p_enc, p_enc, p_head]);
    // Posterior at the prior and θ = θ0: KL = 0.
    let sums: Vec<TensorSums> = [(5, p_enc), (3, p_enc), (2, p_head)]
        .iter()
        .map(|&(numel, p)| {
            TensorSums::from_values(&vec![0.1; numel], &vec![0.1; numel], &vec![p; numel], p)
        })
        .collect();
    assert!(bound::kl(&sums, &b).abs() < 1e-12);
}

#[test]
fn head_schedule_counts_steps_from_one() {
    let config = noise_adam::NoiseAdamConfig::default();
    assert_eq!(config.lr(Group::Encoder, 1), 0.1);
    assert!((config.lr(Group::Head, 1) - 0.5).abs() < 1e-15);
    assert!((config.lr(Group::Head, 9) - 0.5).abs() < 1e-15);
    assert!((config.lr(Group::Head, 10) - 0.45).abs() < 1e-15);
    assert!((config.lr(Group::Head, 20) - 0.405).abs() < 1e-15);
    assert!((config.lr(Group::Head, 10_000) - 0.01).abs() < 1e-15);
}

#[test]
fn k_search_running_max_and_k_hat_shape() {
    // The second prior std's losses spread less, so its raw K is lower; the running max
    // keeps the first.
    let wide = vec![vec![0.1, 0.9, 0.5, 0.4], vec![0.2, 0.8, 0.6, 0.3]];
    let narrow = vec![vec![0.5, 0.51, 0.49, 0.5], vec![0.5, 0.5, 0.52, 0.48]];
    let est = estimate_k(&[wide, narrow], &gamma_grid((10.0, 10.0)));
    assert!(est.raw[1] < est.raw[0], "{est:?}");
    assert_eq!(est.monotone, vec![est.raw[0], est.raw[0]]);
    // Identical losses: the moment is exactly 1 and the search still ends.
    let flat = vec![vec![0.7; 5]; 3];
    let k = bound::search_k(&flat, &gamma_grid((5.0, 10.0)), bound::K_START);
    assert!((0.0..bound::K_START).contains(&k), "{k}");

    let k_hat = KHat::new(vec![0.1, 0.2, 0.3], vec![1.0, 2.0, 4.0]);
    assert_eq!(k_hat.value(0.05), 1.0, "constant K_1 below s_1");
    assert_eq!(k_hat.derivative(0.05), 0.0);
    // The first two segments are the interpolation; past the last knot the slope is m_2.
    assert!((k_hat.value(0.15) - 1.5).abs() < 1e-12);
    assert!((k_hat.value(0.25) - 3.0).abs() < 1e-12);
    assert!((k_hat.derivative(0.35) - 20.0).abs() < 1e-12);
    // From the fourth point on the authors' recursion leaves the points: slopes 10, 20, 10
    // give coefficients 10, 10, 0, so K̂(s_4) = 6, not K_4 = 5.
    let k_hat = KHat::new(vec![0.1, 0.2, 0.3, 0.4], vec![1.0, 2.0, 4.0, 5.0]);
    assert!((k_hat.value(0.4) - 6.0).abs() < 1e-12);
    assert!((k_hat.derivative(0.35) - 20.0).abs() < 1e-12);
}

#[test]
fn kernel_rows_keep_the_kl_of_large_tensors() {
    // BERT-base's largest tensors: 2.36M scalars at p ≈ b ≈ −8, where Σ e^(2p) against d_j and
    // Σ p against d_j b_j would cancel to nothing in f32. The kernel rows are centred on b_j.
    let numels = [2_359_296usize, 768];
    let b_used = [-8.1f32, -7.3];
    let b: Vec<f64> = b_used.iter().map(|&x| f64::from(x)).collect();
    // Posterior at the prior, θ = θ0: KL = 0, ∂KL/∂b = 0.
    let sums = TensorSums::from_rows(&[0.0; 6], &numels);
    assert!(
        bound::kl(&sums, &b).abs() < 1e-6,
        "{}",
        bound::kl(&sums, &b)
    );
    for g in bound::kl_grad_b(&sums, &b) {
        assert!(g.abs() < 1e-6, "{g}");
    }
    // Moved posterior: KL_j = ½(F_j + e^(−2b_j) D_j), ∂KL/∂b_j = −E_j − e^(−2b_j) D_j.
    let rows = [1234.5f32, 56.25, 3.0e-5, -2.5, 0.125, 1.0e-6];
    let sums = TensorSums::from_rows(&rows, &numels);
    let expected_kl: f64 = (0..2)
        .map(|j| {
            0.5 * (f64::from(rows[3 * j + 1]) + (-2.0 * b[j]).exp() * f64::from(rows[3 * j + 2]))
        })
        .sum();
    let kl = bound::kl(&sums, &b);
    assert!(
        (kl - expected_kl).abs() <= 1e-9 * expected_kl,
        "{kl} vs {expected_kl}"
    );
    for (j, g) in bound::kl_grad_b(&sums, &b).into_iter().enumerate() {
        let expected = -f64::from(rows[3 * j]) - (-2.0 * b[j]).exp() * f64::from(rows[3 * j + 2]);
        assert!(
            (g - expected).abs() <= 1e-9 * expected.abs(),
            "{g} vs {expected}"
        );
    }
}

/// Host f64 reference of the fused p-gradient of one tensor j (the kernel is
/// `NoiseAdam::step`): g_p,i = exp(p_i)·τ_i·∂loss1/∂θ'_i + kl_coef·(exp(2p_i − 2b_j) − 1).
fn grad_p_reference(p: &[f64], tau: &[f64], dloss1: &[f64], b_j: f64, kl_coef: f64) -> Vec<f64> {
    assert!(
        tau.len() == p.len() && dloss1.len() == p.len(),
        "p, τ and the gradient differ in size"
    );
    (0..p.len())
        .map(|i| p[i].exp() * tau[i] * dloss1[i] + kl_coef * ((2.0 * p[i] - 2.0 * b_j).exp() - 1.0))
        .collect()
}

/// Host f64 reference of θ's total gradient for one tensor j (tests only; the kernel is
/// `NoiseAdam::step`, as `Stepped::grad_theta`): ∂loss1/∂θ'_i + kl_coef·exp(−2b_j)(θ_i − θ0_i).
fn grad_theta_total_reference(
    dloss1: &[f64],
    theta: &[f64],
    theta0: &[f64],
    b_j: f64,
    kl_coef: f64,
) -> Vec<f64> {
    assert!(
        theta.len() == dloss1.len() && theta0.len() == dloss1.len(),
        "θ, θ0 and the gradient differ in size"
    );
    let coef = kl_coef * (-2.0 * b_j).exp();
    (0..dloss1.len())
        .map(|i| dloss1[i] + coef * (theta[i] - theta0[i]))
        .collect()
}
