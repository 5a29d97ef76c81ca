//! PyTorch's AdamW step as Burn tensor operations, 14 per tensor (each f64 scalar rounded to
//! f32 by the operation that takes it): the reference of tests/kernels/adamw.rs and the
//! unfused side of examples/bench_adamw.rs.

use burn::tensor::Tensor;
use pac_wgpu::optim::AdamWConfig;

/// Step t on one tensor: the new θ, m and v (`moments` None before the first step).
pub fn adamw_by_tensor_ops(
    theta: Tensor<1>,
    g: Tensor<1>,
    moments: Option<(Tensor<1>, Tensor<1>)>,
    c: AdamWConfig,
    t: i32,
    lr: f64,
) -> [Tensor<1>; 3] {
    let (m, v) = match moments {
        Some((m, v)) => (
            m.clone() + (g.clone() - m) * (1.0 - c.beta1),
            v * c.beta2 + g.clone() * (1.0 - c.beta2) * g,
        ),
        None => (g.clone() * (1.0 - c.beta1), g.clone() * (1.0 - c.beta2) * g),
    };
    let (c1, c2) = (1.0 - c.beta1.powi(t), 1.0 - c.beta2.powi(t));
    let denom = (v.clone().sqrt() / c2.sqrt()).add_scalar(c.eps);
    let theta = theta * (1.0 - lr * c.weight_decay) - m.clone() / denom * (lr / c1);
    [theta, m, v]
}
