//! AdamW over the trainable tensors, with PyTorch's exact update (decoupled weight decay, bias
//! correction, eps added to the corrected root).

use burn::tensor::Tensor;

/// AdamW hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// First and second moments per trainable tensor, and the number of steps taken.
pub struct AdamW {
    pub config: AdamWConfig,
    /// Steps taken so far (PyTorch's `step`; the next update uses `step + 1`).
    pub step: u64,
    pub m: Vec<Option<Tensor<1>>>,
    pub v: Vec<Option<Tensor<1>>>,
}

impl AdamW {
    pub fn new(config: AdamWConfig, tensors: usize) -> Self {
        AdamW {
            config,
            step: 0,
            m: vec![None; tensors],
            v: vec![None; tensors],
        }
    }

    /// Call once per optimiser step, before the per-tensor updates.
    pub fn begin_step(&mut self) {
        self.step += 1;
    }

    /// The updated value of trainable tensor `j` given its gradient and learning rate.
    pub fn update(&mut self, j: usize, theta: Tensor<1>, grad: Tensor<1>, lr: f64) -> Tensor<1> {
        let c = self.config;
        let t = self.step as i32;
        // The operations in PyTorch's order, so that f32 rounding matches:
        // m.lerp_(g, 1 − β1) and v.mul_(β2).addcmul_(g, g, value = 1 − β2).
        let m = match self.m[j].take() {
            Some(m) => m.clone() + (grad.clone() - m) * (1.0 - c.beta1),
            None => grad.clone() * (1.0 - c.beta1),
        };
        let v = match self.v[j].take() {
            Some(v) => v * c.beta2 + grad.clone() * (1.0 - c.beta2) * grad,
            None => grad.clone() * (1.0 - c.beta2) * grad,
        };
        let bias1 = 1.0 - c.beta1.powi(t);
        let bias2 = 1.0 - c.beta2.powi(t);
        let denom = (v.clone().sqrt() / bias2.sqrt()).add_scalar(c.eps);
        let decayed = theta * (1.0 - lr * c.weight_decay);
        let updated = decayed - m.clone() / denom * (lr / bias1);
        self.m[j] = Some(m);
        self.v[j] = Some(v);
        updated
    }
}
