//! Burn's own fused ops where the model uses them on the CPU device, against the exact function
//! written from primitive ops (what the wgpu path runs): values and gradients on random inputs.

use burn::tensor::activation;
use burn::tensor::{Device, Distribution, Tensor};
use pac_wgpu::model::bert::gelu;

/// GELU from primitives: x · (erf(x/√2) + 1)/2.
fn gelu_composed(x: Tensor<3>) -> Tensor<3> {
    let cdf = (x.clone() / std::f32::consts::SQRT_2).erf().add_scalar(1.0) * 0.5;
    x * cdf
}

/// GELU's output and the gradient of Σ w·gelu(x) for the input `x`, through `f`.
fn value_and_grad(
    f: impl Fn(Tensor<3>) -> Tensor<3>,
    x: &Tensor<3>,
    w: &Tensor<3>,
    device: &Device,
) -> (Vec<f32>, Vec<f32>) {
    let x = Tensor::<3>::from_data(x.to_data(), device).require_grad();
    let y = f(x.clone());
    let grads = (y.clone() * Tensor::from_data(w.to_data(), device))
        .sum()
        .backward();
    let g = x.grad(&grads).expect("x's gradient");
    let read = |t: Tensor<3>| t.into_data().try_to_vec::<f32>().unwrap();
    (read(y.inner()), read(g))
}

#[test]
fn cpu_gelu_matches_the_exact_composition_in_value_and_gradient() {
    let plain = Device::flex();
    plain.seed(7);
    let x = Tensor::<3>::random([3, 17, 64], Distribution::Uniform(-6.0, 6.0), &plain);
    let w = Tensor::<3>::random([3, 17, 64], Distribution::Normal(0.0, 1.0), &plain);
    let device = plain.clone().autodiff();
    let (y, g) = value_and_grad(gelu, &x, &w, &device);
    let (y_ref, g_ref) = value_and_grad(gelu_composed, &x, &w, &device);
    let worst = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(p, q)| (p - q).abs() / q.abs().max(1.0))
            .fold(0.0f32, f32::max)
    };
    // The model takes Burn's fused op on the CPU device (one pass each way), not the composition.
    let (y_burn, g_burn) = value_and_grad(activation::gelu, &x, &w, &device);
    assert!(
        y == y_burn && g == g_burn,
        "the CPU path is not Burn's gelu"
    );
    let differ = y.iter().zip(&y_ref).filter(|(a, b)| a != b).count();
    let (dy, dg) = (worst(&y, &y_ref), worst(&g, &g_ref));
    eprintln!(
        "{differ} of {} values differ from the composition's",
        y.len()
    );
    eprintln!("gelu on cpu: value {dy:.2e}, gradient {dg:.2e} from the composition");
    // A few f32 roundings apart (the same erf, another order of operations); the tanh
    // approximation's gradient is 1e-3 off.
    assert!(dy <= 4.0 * f32::EPSILON, "value {dy}");
    assert!(dg <= 4.0 * f32::EPSILON, "gradient {dg}");
}
