//! The noise-Adam: Adam for the posterior log-stds p (device tensors, one 1-D tensor per
//! trainable tensor) and the prior log-stds b (host f64, one per trainable tensor), stepped in
//! Stage 1 only, with the authors' step sizes (`myAdam` in their utils.py). The update of each
//! p_j is one fused kernel that also computes p_j's gradient and adds the KL pull to θ_j's:
//! shaders/noise_adam.wgsl on wgpu devices (launched only from here), the same formulas in Rust
//! on the CPU device.
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

use burn::backend::flex::FlexTensor;
use burn::backend::wgpu::CubeTensor;
use burn::backend::{Cube, Dispatch, Flex, TensorMetadata};
use burn::tensor::{DType, Shape, Tensor};

use super::backend::{AdamScalars, Inputs, PacBackend, Tau};
use super::noise::{CpuTau, NoiseSource, tau_params};
use crate::model::trainable::Group;
use crate::util::kernel::cpu::{
    Blocks, LANES, block, exp_f32, expm1_block, flex_tensor, lanes, par_fill, values,
};
use crate::util::kernel::launch::{
    Block, Io, bind, dense, empty, launch, quad_grid, spare, step_block, wgsl_kernel, writable,
};

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
/// Everything a checkpoint needs is public: `step`, `moments` (None before the first update
/// of that tensor; read and set them as m and v with [`NoiseAdam::m_p`], [`NoiseAdam::v_p`]
/// and [`NoiseAdam::set_moments`]), `m_b`/`v_b`.
pub struct NoiseAdam {
    pub config: NoiseAdamConfig,
    /// The group of each trainable tensor j (and so of p_j's entries and of b_j).
    pub groups: Vec<Group>,
    /// Steps taken so far; during a step (after [`NoiseAdam::begin_step`]) the current t.
    pub step: u64,
    /// Per tensor j, p_j's first and second moments in one tensor: m then v (2·numel values;
    /// one buffer, one binding of the kernel, so on wgpu a tensor's 2·numel f32 must fit the
    /// device's largest storage binding: WebGPU's default 128 MiB holds 16 M parameters).
    pub moments: Vec<Option<Tensor<1>>>,
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
            moments: vec![None; tensors],
            m_b: vec![0.0; tensors],
            v_b: vec![0.0; tensors],
        }
    }

    /// Call once per Stage-1 step, before the updates of p and b: t ← t + 1.
    pub fn begin_step(&mut self) {
        self.step += 1;
    }

    /// p_j's first moment m, None before its first update.
    pub fn m_p(&self, j: usize) -> Option<Tensor<1>> {
        let mv = self.moments[j].as_ref()?;
        let [len] = mv.dims();
        Some(mv.clone().narrow(0, 0, len / 2))
    }

    /// p_j's second moment v, None before its first update.
    pub fn v_p(&self, j: usize) -> Option<Tensor<1>> {
        let mv = self.moments[j].as_ref()?;
        let [len] = mv.dims();
        Some(mv.clone().narrow(0, len / 2, len / 2))
    }

    /// Sets p_j's moments (m and v of one length).
    pub fn set_moments(&mut self, j: usize, m: Tensor<1>, v: Tensor<1>) {
        assert_eq!(m.dims(), v.dims(), "m and v of tensor {j} differ in size");
        self.moments[j] = Some(Tensor::cat(vec![m, v], 0));
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

    /// The scalars of tensor `j`'s update at the current step, the KL term weighted by
    /// `kl_coef` = 1/(nγ).
    pub fn scalars(&self, j: usize, kl_coef: f32) -> AdamScalars {
        let c = self.config;
        let (c1, c2) = self.bias_corrections();
        AdamScalars {
            kl_coef,
            beta1: c.beta1 as f32,
            one_minus_beta1: (1.0 - c.beta1) as f32,
            beta2: c.beta2 as f32,
            one_minus_beta2: (1.0 - c.beta2) as f32,
            c1: c1 as f32,
            c2: c2 as f32,
            eps: c.eps as f32,
            lr: self.lr(j) as f32,
        }
    }

    /// Stage 1's work on tensor j after the backward pass, in one pass: p_j's gradient
    /// g_p = exp(p)·τ·g + kl_coef·expm1(2(p − b_j)) (g = ∂loss1/∂θ', τ the noise that made θ'),
    /// Adam on it (the moments are kept), and θ_j's gradient with the KL pull,
    /// g + exp(−2 b_j)·kl_coef·(θ − θ0). Returns g_p only where `keep_grad_p`.
    ///
    /// Takes p and g by value: on wgpu devices the kernel writes the new p and θ's gradient into
    /// their buffers (and the moments into theirs) where no other tensor holds them.
    pub fn step(&mut self, j: usize, x: StepInputs, kl_coef: f32, keep_grad_p: bool) -> Stepped {
        let scalars = self.scalars(j, kl_coef);
        let dispatch = |t: Tensor<1>| t.inner().into_dispatch();
        // Before the first step there are no moments: θ0 stands in, unread.
        let moments = self.moments[j].take();
        let first = moments.is_none();
        let mv = moments.unwrap_or_else(|| x.theta0.clone());
        let (p, mv, grad_theta, grad_p) = <Dispatch as PacBackend>::pac_noise_adam(
            dispatch(x.p),
            dispatch(x.g),
            dispatch(x.theta.clone()),
            dispatch(x.theta0.clone()),
            dispatch(mv),
            first,
            x.noise.to_dispatch(),
            j as u32,
            x.b.to_vec(),
            scalars,
            keep_grad_p,
        );
        self.moments[j] = Some(Tensor::from_dispatch(mv));
        Stepped {
            p: Tensor::from_dispatch(p),
            grad_theta: Tensor::from_dispatch(grad_theta),
            grad_p: grad_p.map(Tensor::from_dispatch),
        }
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

/// Tensor j's inputs to [`NoiseAdam::step`], all flattened.
pub struct StepInputs<'a> {
    pub p: Tensor<1>,
    /// ∂loss1/∂θ' at the perturbed weights θ'.
    pub g: Tensor<1>,
    /// The clean weights θ and their start values θ0.
    pub theta: &'a Tensor<1>,
    pub theta0: &'a Tensor<1>,
    /// Every b_j (host values: on wgpu devices they ride in the step's parameter block).
    pub b: &'a [f32],
    pub noise: &'a NoiseSource<1>,
}

/// What [`NoiseAdam::step`] gives back for tensor j.
pub struct Stepped {
    /// The new p_j.
    pub p: Tensor<1>,
    /// ∂(loss1 + loss2)/∂θ_j: the gradient with the KL pull towards θ0.
    pub grad_theta: Tensor<1>,
    /// p_j's gradient, where asked for.
    pub grad_p: Option<Tensor<1>>,
}

// ---- wgpu: shaders/noise_adam.wgsl -----------------------------------------------------------

wgsl_kernel!(NoiseAdamKernel, "philox.wgsl", "noise_adam.wgsl");

/// New p, moments (m then v), θ's gradient, and p's gradient where asked.
type Outputs<T> = (T, T, T, Option<T>);

/// Launches shaders/noise_adam.wgsl over tensor j. p, the moments and g are updated in place
/// ([`writable`]: in their own buffers where nothing else holds them, else in copies), as is
/// given τ where p's gradient replaces it.
pub(super) fn step_wgsl(
    x: Inputs<CubeTensor>,
    tau: Tau<Cube>,
    j: u32,
    b: &[f32],
    s: AdamScalars,
    write_grad: bool,
) -> Outputs<CubeTensor> {
    let [theta, theta0] = [x.theta, x.theta0].map(dense);
    let [p, g] = [x.p, x.g].map(writable);
    assert!(
        p.shape() == g.shape() && g.shape() == theta.shape() && theta.shape() == theta0.shape(),
        "p, g, θ and θ0 must have the same shape"
    );
    assert!((j as usize) < b.len(), "b has no entry {j}");
    let n = p.shape().num_elements();
    let n32 = u32::try_from(n)
        .ok()
        .filter(|n| n.checked_mul(2).is_some())
        .expect("tensor too large");
    let first = x.moments.is_none();
    let mv = match x.moments {
        Some(mv) => {
            let mv = writable(mv);
            assert_eq!(
                mv.shape().num_elements(),
                2 * n,
                "moments of tensor {j}: m then v"
            );
            mv
        }
        None => empty(&p, Shape::new([2 * n]), DType::F32),
    };
    let (seed, step, given) = tau_params(tau, n);
    let has_given = given.is_some();
    // τ in, g_p out: given τ is overwritten only where g_p is written.
    let aux_io = match (has_given, write_grad) {
        (true, true) => Io::ReadWrite,
        (true, false) => Io::Read,
        (false, _) => Io::Write,
    };
    let aux = match (given, write_grad) {
        (Some(given), true) => Some(writable(given)),
        (Some(given), false) => Some(given),
        (None, true) => Some(empty(&p, p.shape(), DType::F32)),
        (None, false) => None,
    };
    let mv_io = if first { Io::Write } else { Io::ReadWrite };
    let unused = spare(&p);
    let buffers = [
        (&p.handle, Io::ReadWrite),
        (&mv.handle, mv_io),
        (&g.handle, Io::ReadWrite),
        bind(aux.as_ref(), aux_io, &unused),
        (&theta.handle, Io::Read),
        (&theta0.handle, Io::Read),
    ];
    let tensor = [n32, j, u32::from(has_given), 0];
    let head = [
        seed,
        step,
        u32::from(first),
        u32::from(write_grad),
        s.kl_coef.to_bits(),
        s.beta1.to_bits(),
        s.one_minus_beta1.to_bits(),
        s.beta2.to_bits(),
        s.one_minus_beta2.to_bits(),
        s.c1.to_bits(),
        s.c2.to_bits(),
        s.eps.to_bits(),
        s.lr.to_bits(),
        0,
        0,
        0,
    ];
    launch(
        &p,
        NoiseAdamKernel,
        quad_grid(n),
        &buffers,
        &[Block::Kept(&tensor), Block::Step(&step_block(&head, b))],
    );
    let grad = if write_grad { aux } else { None };
    (p, mv, g, grad)
}

// ---- CPU: the same formulas in Rust ----------------------------------------------------------

/// One tensor's inputs on the CPU device, block by block.
struct Lanes<'a> {
    tau: CpuTau<'a>,
    p: &'a [f32],
    g: &'a [f32],
    theta: &'a [f32],
    theta0: &'a [f32],
    /// m and v; None before the first step.
    moments: Option<(&'a [f32], &'a [f32])>,
    b_j: f32,
    /// exp(−2 b_j)/(nγ): the KL pull's weight on θ − θ0.
    pull: f32,
    s: AdamScalars,
}

impl Blocks<5> for Lanes<'_> {
    /// New p, m, v, g_θ and g_p of the block at i0, operation for operation as the shader does
    /// them.
    #[inline(always)]
    fn block(&self, i0: usize) -> [[f32; LANES]; 5] {
        let s = &self.s;
        let (t, p, g) = (self.tau.block(i0), block(self.p, i0), block(self.g, i0));
        let (theta, theta0) = (block(self.theta, i0), block(self.theta0, i0));
        let (m0, v0) = match self.moments {
            Some((m, v)) => (block(m, i0), block(v, i0)),
            None => ([0.0; LANES], [0.0; LANES]),
        };
        let kl = expm1_block(&lanes!(l in LANES => 2.0 * (p[l] - self.b_j)), false);
        let mut out = [[0.0f32; LANES]; 5];
        for l in 0..LANES {
            let gp = exp_f32(p[l]) * t[l] * g[l] + s.kl_coef * kl[l];
            let m = m0[l] * s.beta1 + gp * s.one_minus_beta1;
            let v = v0[l] * s.beta2 + (gp * gp) * s.one_minus_beta2;
            let step = (m / s.c1) / ((v / s.c2).sqrt() + s.eps) * s.lr;
            let g_theta = g[l] + self.pull * (theta[l] - theta0[l]);
            [out[0][l], out[1][l], out[2][l], out[3][l], out[4][l]] =
                [p[l] - step, m, v, g_theta, gp];
        }
        out
    }
}

/// [`Lanes`] without p's gradient.
struct WithoutGrad<'a>(Lanes<'a>);

impl Blocks<4> for WithoutGrad<'_> {
    #[inline(always)]
    fn block(&self, i0: usize) -> [[f32; LANES]; 4] {
        let [p, m, v, g_theta, _] = self.0.block(i0);
        [p, m, v, g_theta]
    }
}

pub(super) fn step_cpu(
    x: Inputs<FlexTensor>,
    tau: Tau<Flex>,
    j: u32,
    b: &[f32],
    s: AdamScalars,
    write_grad: bool,
) -> Outputs<FlexTensor> {
    let shape = x.p.shape();
    assert!(
        [&x.g, &x.theta, &x.theta0]
            .iter()
            .all(|t| t.shape() == shape),
        "p, g, θ and θ0 must have the same shape"
    );
    let [p_v, g_v, theta_v, theta0_v] = [&x.p, &x.g, &x.theta, &x.theta0].map(values);
    let b_j = *b.get(j as usize).expect("b has no entry j");
    let pull = exp_f32(-2.0 * b_j) * s.kl_coef;
    let n = p_v.len();
    let mv = x.moments.as_ref().map(values);
    assert!(
        mv.as_ref().is_none_or(|mv| mv.len() == 2 * n),
        "moments of tensor {j}: m then v"
    );
    let moments = mv.as_ref().map(|mv| mv.split_at(n));
    let lanes = Lanes {
        tau: CpuTau::new(&tau, j, n),
        p: &p_v,
        g: &g_v,
        theta: &theta_v,
        theta0: &theta0_v,
        moments,
        b_j,
        pull,
        s,
    };
    // p, m and v (one buffer), g_θ and p's gradient: written whole by par_fill, never zeroed.
    let lens = [n, 2 * n, n, if write_grad { n } else { 0 }];
    let mut out = lens.map(Vec::<f32>::with_capacity);
    let [p, mv, g_theta, grad] = out.each_mut().map(|o| o.spare_capacity_mut());
    let (m, v) = mv[..2 * n].split_at_mut(n);
    let (p, g_theta) = (&mut p[..n], &mut g_theta[..n]);
    if write_grad {
        par_fill([p, m, v, g_theta, &mut grad[..n]], &lanes);
    } else {
        par_fill([p, m, v, g_theta], &WithoutGrad(lanes));
    }
    for (o, len) in out.iter_mut().zip(lens) {
        // SAFETY: par_fill wrote the first `len` values of each.
        unsafe { o.set_len(len) };
    }
    let [p, mv, g_theta, grad] = out;
    let tensor = |v: Vec<f32>| flex_tensor(v, shape.clone());
    (
        tensor(p),
        flex_tensor(mv, Shape::new([2 * n])),
        tensor(g_theta),
        write_grad.then(|| tensor(grad)),
    )
}
