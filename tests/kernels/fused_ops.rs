//! The model's fused ops, each one op each way with its own backward pass (`ops::gelu`,
//! `ops::softmax` and `ops::layer_norm`: a WGSL kernel and its CPU twin; `ops::linear`:
//! gemm on the CPU), against the same function written from primitive ops and differentiated by
//! autodiff: values and gradients on random inputs, on every test device.

use crate::common;

use burn::module::Param;
use burn::nn::LayerNormConfig;
use burn::tensor::activation;
use burn::tensor::{Device, Distribution, Gradients, Tensor};
use pac_wgpu::ops::attention::attention;
use pac_wgpu::ops::gelu::gelu;
use pac_wgpu::ops::layer_norm::LayerNorm;
use pac_wgpu::ops::linear::linear;
use pac_wgpu::ops::softmax::softmax;

/// GELU from primitives: x · (erf(x/√2) + 1)/2.
fn gelu_composed(x: Tensor<3>) -> Tensor<3> {
    let cdf = (x.clone() / std::f32::consts::SQRT_2).erf().add_scalar(1.0) * 0.5;
    x * cdf
}

/// The output of `f` and the gradient of Σ w·f(x) for the input `x`.
fn value_and_grad<const D: usize>(
    f: &impl Fn(Tensor<D>) -> Tensor<D>,
    x: &Tensor<D>,
    w: &Tensor<D>,
    device: &Device,
) -> (Vec<f32>, Vec<f32>) {
    let x = Tensor::<D>::from_data(x.to_data(), device).require_grad();
    let y = f(x.clone());
    let grads = (y.clone() * Tensor::from_data(w.to_data(), device))
        .sum()
        .backward();
    let g = x.grad(&grads).expect("x's gradient");
    let read = |t: Tensor<D>| t.into_data().try_to_vec::<f32>().unwrap();
    (read(y.inner()), read(g))
}

/// The largest |a − b| / max(|b|, 1).
fn worst(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(p, q)| (p - q).abs() / q.abs().max(1.0))
        .fold(0.0f32, f32::max)
}

/// A differentiated input, of any rank.
trait Input {
    fn grad_values(&self, grads: &Gradients) -> Vec<f32>;
}

impl<const D: usize> Input for Tensor<D> {
    fn grad_values(&self, grads: &Gradients) -> Vec<f32> {
        let grad = self.grad(grads).expect("a gradient for every input");
        grad.into_data().try_to_vec::<f32>().unwrap()
    }
}

/// The value of `y`, then the gradient of Σ w·y for each of `inputs`.
fn value_and_grads<const N: usize>(
    y: Tensor<3>,
    w: &Tensor<3>,
    inputs: [&dyn Input; N],
) -> Vec<Vec<f32>> {
    let weights = Tensor::from_data(w.to_data(), &y.device());
    let grads = (y.clone() * weights).sum().backward();
    let mut out = vec![y.inner().into_data().try_to_vec::<f32>().unwrap()];
    out.extend(inputs.iter().map(|t| t.grad_values(&grads)));
    out
}

/// `ours` against `reference` on every test device, and against `ours` on the CPU device, in
/// value and in the gradient of Σ w·f(x): within `tolerance` of the reference, 1e-6 of the twin
/// (the same formulas; a device's exp and its rounding may differ by a few ulp).
fn check_on_every_device<const D: usize>(
    name: &str,
    ours: impl Fn(Tensor<D>) -> Tensor<D>,
    reference: impl Fn(Tensor<D>) -> Tensor<D>,
    (x, w): (&Tensor<D>, &Tensor<D>),
    tolerance: f32,
) {
    let (y_cpu, g_cpu) = value_and_grad(&ours, x, w, &Device::flex().autodiff());
    for selected in common::test_devices() {
        let device = selected.device.clone().autodiff();
        let (y, g) = value_and_grad(&ours, x, w, &device);
        let (y_ref, g_ref) = value_and_grad(&reference, x, w, &device);
        let (dy, dg) = (worst(&y, &y_ref), worst(&g, &g_ref));
        let (ty, tg) = (worst(&y, &y_cpu), worst(&g, &g_cpu));
        eprintln!(
            "{name} on {}: value {dy:.2e}, gradient {dg:.2e} from the composition; \
             {ty:.2e}, {tg:.2e} from the CPU twin",
            selected.name
        );
        assert!(dy <= tolerance, "{name}: value {dy} from the composition");
        assert!(
            dg <= tolerance,
            "{name}: gradient {dg} from the composition"
        );
        assert!(ty <= 1e-6, "{name}: value {ty} from the CPU twin");
        assert!(tg <= 1e-6, "{name}: gradient {tg} from the CPU twin");
    }
}

#[test]
fn gelu_matches_the_exact_composition_in_value_and_gradient_on_every_device() {
    let host = Device::flex();
    host.seed(7);
    // An element count that is no multiple of 4 or of the CPU's blocks, over its thread split.
    let shape = [4, 130, 257];
    let x = Tensor::<3>::random(shape, Distribution::Uniform(-8.0, 8.0), &host);
    let w = Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), &host);
    // The erfc fit is within 1.2e-7 of erfc; the composition's erf has its own error (on wgpu,
    // cubecl's), and the tanh approximation's gradient is 1e-3 off.
    check_on_every_device("gelu", gelu, gelu_composed, (&x, &w), 2e-6);
}

#[test]
fn softmax_matches_burns_composition_in_value_and_gradient_on_every_device() {
    let host = Device::flex();
    host.seed(11);
    // Rows of 45 (no multiple of the CPU's blocks), attention-like scores with masked keys.
    let shape = [3, 4, 37, 45];
    let scores = Tensor::<4>::random(shape, Distribution::Normal(0.0, 3.0), &host);
    let masked = Tensor::<4>::random([3, 1, 1, 45], Distribution::Bernoulli(0.2), &host);
    let x = scores + masked * -1e9;
    let w = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &host);
    let composed = |t: Tensor<4>| activation::softmax(t, 3);
    check_on_every_device("softmax", softmax, composed, (&x, &w), 2e-6);
}

#[test]
fn layer_norm_matches_burns_module_in_value_and_gradients_on_every_device() {
    let host = Device::flex();
    host.seed(13);
    // Rows of 37 (no multiple of the CPU's blocks), away from zero mean and unit variance.
    let shape = [3, 29, 37];
    let x = Tensor::<3>::random(shape, Distribution::Normal(0.7, 2.5), &host);
    let w = Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), &host);
    let gamma = Tensor::<1>::random([37], Distribution::Normal(1.0, 0.3), &host);
    let beta = Tensor::<1>::random([37], Distribution::Normal(0.0, 0.3), &host);
    let eps = 1e-12;
    // The value, then the gradients for x, γ and β of Σ w·f(x), through `ours` or Burn's module.
    let run = |ours: bool, device: &Device| -> Vec<Vec<f32>> {
        let on = |t: &Tensor<1>| Param::from_tensor(Tensor::from_data(t.to_data(), device));
        let x = Tensor::<3>::from_data(x.to_data(), device).require_grad();
        let (y, g, b) = if ours {
            let mut m = LayerNorm::new(37, eps, device);
            (m.gamma, m.beta) = (on(&gamma), Some(on(&beta)));
            let b = m.beta.as_ref().expect("β").val();
            (m.forward(x.clone()), m.gamma.val(), b)
        } else {
            let mut m = LayerNormConfig::new(37).with_epsilon(eps).init(device);
            (m.gamma, m.beta) = (on(&gamma), Some(on(&beta)));
            let b = m.beta.as_ref().expect("β").val();
            (m.forward(x.clone()), m.gamma.val(), b)
        };
        value_and_grads(y, &w, [&x, &g, &b])
    };
    let names = ["value", "x's gradient", "γ's gradient", "β's gradient"];
    // γ's and β's gradients are sums over 87 rows.
    compare_outputs("layer norm", names, run, common::test_devices(), 1e-5);
}

/// `run(true, device)` (ours) against `run(false, device)` (Burn's) on `devices`, and against
/// `run(true, CPU device)`: every named output within `tolerance`.
fn compare_outputs<const N: usize>(
    op: &str,
    names: [&str; N],
    run: impl Fn(bool, &Device) -> Vec<Vec<f32>>,
    devices: Vec<pac_wgpu::util::device::SelectedDevice>,
    tolerance: f32,
) {
    let twin = run(true, &Device::flex().autodiff());
    for selected in devices {
        let device = selected.device.clone().autodiff();
        let (ours, burns) = (run(true, &device), run(false, &device));
        for (k, name) in names.iter().enumerate() {
            let (d, t) = (worst(&ours[k], &burns[k]), worst(&ours[k], &twin[k]));
            eprintln!(
                "{op} on {}: {name} {d:.2e} from Burn's, {t:.2e} from the CPU device",
                selected.name
            );
            assert!(d <= tolerance, "{op}: {name} {d} from Burn's");
            assert!(t <= tolerance, "{op}: {name} {t} from the CPU device");
        }
    }
}

/// `linear` against Burn's matmul and add on `devices`, and against itself on the CPU device,
/// for x `[batch, len, d_in]` and W `[d_in, d_out]`: the value and the gradients for x, W and b.
fn check_linear(
    [batch, len, d_in, d_out]: [usize; 4],
    devices: Vec<pac_wgpu::util::device::SelectedDevice>,
) {
    let host = Device::flex();
    host.seed(17);
    let x = Tensor::<3>::random([batch, len, d_in], Distribution::Normal(0.3, 1.0), &host);
    let w = Tensor::<3>::random([batch, len, d_out], Distribution::Normal(0.0, 1.0), &host);
    let weight = Tensor::<2>::random([d_in, d_out], Distribution::Normal(0.0, 0.1), &host);
    let bias = Tensor::<1>::random([d_out], Distribution::Normal(0.0, 0.5), &host);
    // The value, then the gradients for x, W and b of Σ w·f(x), through `ours` or Burn's ops.
    let run = |ours: bool, device: &Device| -> Vec<Vec<f32>> {
        let x = Tensor::<3>::from_data(x.to_data(), device).require_grad();
        let weight = Tensor::<2>::from_data(weight.to_data(), device).require_grad();
        let bias = Tensor::<1>::from_data(bias.to_data(), device).require_grad();
        let y = if ours {
            linear(x.clone(), weight.clone(), Some(bias.clone()))
        } else {
            x.clone().matmul(weight.clone().unsqueeze()) + bias.clone().unsqueeze()
        };
        value_and_grads(y, &w, [&x, &weight, &bias])
    };
    let names = ["value", "x's gradient", "W's gradient", "b's gradient"];
    // W's gradient sums batch·len products of size ≈1 in f32, in another order (measured
    // 1.8e-5 over 335 rows).
    let op = format!("linear {batch}×{len}×{d_in}→{d_out}");
    compare_outputs(&op, names, run, devices, 1e-4);
}

#[test]
fn linear_matches_burns_matmul_and_add_in_value_and_gradients_on_every_device() {
    // Sizes of no block multiple (small: lavapipe compiles a matmul for every shape).
    check_linear([3, 13, 43, 29], common::test_devices());
}

#[test]
fn linear_matches_burns_matmul_and_add_on_the_cpu_over_all_its_threads() {
    // Products large enough for gemm to split them over the threads.
    let cpu = common::test_devices().swap_remove(0);
    check_linear([5, 67, 203, 157], vec![cpu]);
}

/// Multi-head attention from Burn's ops, as the model wrote it before the fused op.
fn attention_composed(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    mask: Tensor<2>,
    heads: usize,
) -> Tensor<3> {
    let [batch, q_len, hidden] = q.dims();
    let d = hidden / heads;
    let split = |t: Tensor<3>| {
        let [_, len, _] = t.dims();
        t.reshape([batch, len, heads, d]).swap_dims(1, 2)
    };
    let [_, len] = mask.dims();
    let scores = split(q).matmul(split(k).swap_dims(2, 3)) / (d as f32).sqrt()
        + mask.reshape([batch, 1, 1, len]);
    activation::softmax(scores, 3)
        .matmul(split(v))
        .swap_dims(1, 2)
        .reshape([batch, q_len, hidden])
}

/// `attention` against Burn's composition for queries of `q_len` positions over 11 keys, the
/// second sequence's last 4 masked, 3 heads of 7.
fn check_attention(q_len: usize) {
    let host = Device::flex();
    host.seed(19);
    let (batch, len, heads, hidden) = (2, 11, 3, 21);
    let normal =
        |dims: [usize; 3]| Tensor::<3>::random(dims, Distribution::Normal(0.0, 1.5), &host);
    let (q, k, v) = (
        normal([batch, q_len, hidden]),
        normal([batch, len, hidden]),
        normal([batch, len, hidden]),
    );
    let w = normal([batch, q_len, hidden]);
    let mut mask = vec![0.0f32; batch * len];
    mask[len + 7..].fill(-1e9); // the model's score at padding
    let run = |ours: bool, device: &Device| -> Vec<Vec<f32>> {
        let on = |t: &Tensor<3>| Tensor::<3>::from_data(t.to_data(), device).require_grad();
        let (q, k, v) = (on(&q), on(&k), on(&v));
        let mask = Tensor::<2>::from_data(
            burn::tensor::TensorData::new(mask.clone(), [batch, len]),
            device,
        );
        let y = if ours {
            attention(q.clone(), k.clone(), v.clone(), mask, heads)
        } else {
            attention_composed(q.clone(), k.clone(), v.clone(), mask, heads)
        };
        value_and_grads(y, &w, [&q, &k, &v])
    };
    let names = ["value", "q's gradient", "k's gradient", "v's gradient"];
    let op = format!("attention of {q_len} queries");
    compare_outputs(&op, names, run, common::test_devices(), 1e-5);
}

#[test]
fn attention_matches_burns_composition_in_value_and_gradients_on_every_device() {
    check_attention(11);
}

#[test]
fn attention_of_the_first_position_alone_matches_burns_composition() {
    check_attention(1);
}
