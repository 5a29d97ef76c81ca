//! The noise-Adam: Adam for the posterior log-stds p (device tensors, one 1-D tensor per
//! trainable tensor) and the prior log-stds b (host f64, one per trainable tensor), stepped in
//! Stage 1 only, with the authors' step sizes (`myAdam` in their utils.py).
//!
//! Per entry, with g its gradient and t the step count:
//!
//! m ← β1 m + (1 − β1) g,  v ← β2 v + (1 − β2) g²,
//! m̂ = m/(1 − β1^t),  v̂ = v/(1 − β2^t),  x ← x − lr·m̂/(sqrt(v̂) + eps),
//!
//! β = (0.9, 0.999), eps = 1e-8, no weight decay; lr = 0.1 for encoder entries and
//! 1e-2·max(50·0.9^floor(t/10), 1) for head entries.
//!
//! t counts from 1 at the first update: [`NoiseAdam::begin_step`] increments `step` before the
//! updates, and that t serves both the bias correction and the head schedule (the head's
//! factor is 50 for updates 1–9, 45 from the 10th, 40.5 from the 20th, …, never below 1).
//! Established from pac-bound.json's noise-Adam trajectory: counting from 1 matches it to
//! ~1e-15 relative, counting the schedule from 0 misses it by ~2e-2 (as in the authors' code,
//! where `state['step'] += 1` comes before the factor is computed).

use burn::tensor::Tensor;

use crate::train::params::Group;

/// The noise-Adam's hyper-parameters (defaults: the authors' values).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NoiseAdamConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Step size of encoder entries (the authors' 0.1).
    pub encoder_lr: f64,
    /// Base step size of head entries (the authors' `lr4clf`, 1e-2).
    pub head_lr: f64,
    /// The head's initial factor (50), multiplied by `head_decay` every `head_decay_every`
    /// steps, never below 1.
    pub head_factor: f64,
    pub head_decay: f64,
    pub head_decay_every: u64,
}

impl Default for NoiseAdamConfig {
    fn default() -> Self {
        NoiseAdamConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            encoder_lr: 0.1,
            head_lr: 1e-2,
            head_factor: 50.0,
            head_decay: 0.9,
            head_decay_every: 10,
        }
    }
}

impl NoiseAdamConfig {
    /// The step size of `group` at step count `t` (t ≥ 1):
    /// encoder: `encoder_lr`; head: head_lr·max(head_factor·head_decay^floor(t/every), 1).
    pub fn lr(&self, group: Group, t: u64) -> f64 {
        match group {
            Group::Encoder => self.encoder_lr,
            Group::Head => {
                // powf (libm pow), as Python's math.pow in the authors' code.
                let decays = (t / self.head_decay_every) as f64;
                self.head_lr * (self.head_factor * self.head_decay.powf(decays)).max(1.0)
            }
        }
    }
}

/// The noise-Adam state: `step` and the moments of p (device) and b (host).
///
/// Everything a checkpoint needs is public: `step`, `m_p`/`v_p` (None before the first update
/// of that tensor), `m_b`/`v_b`.
pub struct NoiseAdam {
    pub config: NoiseAdamConfig,
    /// The group of each trainable tensor j (and so of p_j's entries and of b_j).
    pub groups: Vec<Group>,
    /// Steps taken so far; during a step (after [`NoiseAdam::begin_step`]) the current t.
    pub step: u64,
    pub m_p: Vec<Option<Tensor<1>>>,
    pub v_p: Vec<Option<Tensor<1>>>,
    pub m_b: Vec<f64>,
    pub v_b: Vec<f64>,
}

impl NoiseAdam {
    /// The authors' noise-Adam for trainable tensors of the given groups.
    pub fn new(groups: &[Group]) -> Self {
        Self::with_config(NoiseAdamConfig::default(), groups)
    }

    pub fn with_config(config: NoiseAdamConfig, groups: &[Group]) -> Self {
        let tensors = groups.len();
        NoiseAdam {
            config,
            groups: groups.to_vec(),
            step: 0,
            m_p: vec![None; tensors],
            v_p: vec![None; tensors],
            m_b: vec![0.0; tensors],
            v_b: vec![0.0; tensors],
        }
    }

    /// Call once per Stage-1 step, before the updates of p and b: t ← t + 1.
    pub fn begin_step(&mut self) {
        self.step += 1;
    }

    /// The step size of tensor `j` at the current step.
    pub fn lr(&self, j: usize) -> f64 {
        self.config.lr(self.groups[j], self.step)
    }

    /// (1 − β1^t, 1 − β2^t) at the current step.
    fn bias_corrections(&self) -> (f64, f64) {
        assert!(self.step > 0, "call begin_step before the updates");
        let t = self.step as f64;
        (
            1.0 - self.config.beta1.powf(t),
            1.0 - self.config.beta2.powf(t),
        )
    }

    /// The updated p of trainable tensor `j` (flattened) given its gradient, on p's device.
    pub fn update_p(&mut self, j: usize, p: Tensor<1>, grad: Tensor<1>) -> Tensor<1> {
        let c = self.config;
        let (bias1, bias2) = self.bias_corrections();
        let lr = self.lr(j);
        let m = match self.m_p[j].take() {
            Some(m) => m * c.beta1 + grad.clone() * (1.0 - c.beta1),
            None => grad.clone() * (1.0 - c.beta1),
        };
        let v = match self.v_p[j].take() {
            Some(v) => v * c.beta2 + grad.clone() * grad * (1.0 - c.beta2),
            None => grad.clone() * grad * (1.0 - c.beta2),
        };
        let m_hat = m.clone() / bias1;
        let denom = (v.clone() / bias2).sqrt().add_scalar(c.eps);
        let updated = p - m_hat / denom * lr;
        self.m_p[j] = Some(m);
        self.v_p[j] = Some(v);
        updated
    }

    /// Updates every b_j in place given ∂loss2/∂b (host f64).
    pub fn update_b(&mut self, b: &mut [f64], grad: &[f64]) {
        assert!(
            b.len() == self.groups.len() && grad.len() == b.len(),
            "one b_j and one gradient per tensor"
        );
        let c = self.config;
        let (bias1, bias2) = self.bias_corrections();
        for j in 0..b.len() {
            let g = grad[j];
            self.m_b[j] = c.beta1 * self.m_b[j] + (1.0 - c.beta1) * g;
            self.v_b[j] = c.beta2 * self.v_b[j] + (1.0 - c.beta2) * g * g;
            let m_hat = self.m_b[j] / bias1;
            let v_hat = self.v_b[j] / bias2;
            b[j] -= self.lr(j) * m_hat / (v_hat.sqrt() + c.eps);
        }
    }
}
