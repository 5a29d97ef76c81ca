//! AdamW over the trainable tensors, with PyTorch's exact update (decoupled weight decay, bias
//! correction, eps added to the corrected root). Each tensor's update is one fused op:
//! shaders/adamw.wgsl on wgpu devices (one launch where Burn's tensor operations took 14),
//! `step_cpu` on the CPU device, both with PyTorch's operations in its order.

use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::CubeTensor;
use burn::backend::{Backend, Cube, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::{DType, Tensor};

use crate::util::kernel::cpu::{InPlace, LANES, block, flex_tensor, par_in_place, values};
use crate::util::kernel::launch::{
    Block, Io, dense, empty, launch, quad_grid, wgsl_kernel, writable,
};

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
    /// Per trainable tensor, (m, v); None before its first update.
    pub moments: Vec<Option<(Tensor<1>, Tensor<1>)>>,
}

impl AdamW {
    pub fn new(config: AdamWConfig, tensors: usize) -> Self {
        AdamW {
            config,
            step: 0,
            moments: vec![None; tensors],
        }
    }

    /// Call once per optimiser step, before the per-tensor updates.
    pub fn begin_step(&mut self) {
        self.step += 1;
    }

    /// The updated value of trainable tensor `j` given its gradient and learning rate. On wgpu
    /// devices θ and the moments are updated in their own buffers where nothing else holds them.
    pub fn update(&mut self, j: usize, theta: Tensor<1>, grad: Tensor<1>, lr: f64) -> Tensor<1> {
        let scalars = self.scalars(lr);
        let dispatch = |t: Tensor<1>| t.inner().into_dispatch();
        let moments = self.moments[j].take();
        let first = moments.is_none();
        // Before the first update there are no moments: the gradient stands in, unread (θ
        // would then be shared, and copied before its update).
        let (m, v) = moments.unwrap_or_else(|| (grad.clone(), grad.clone()));
        let (theta, m, v) = <Dispatch as AdamWBackend>::adamw_step(
            dispatch(theta),
            dispatch(grad),
            dispatch(m),
            dispatch(v),
            first,
            scalars,
        );
        self.moments[j] = Some((Tensor::from_dispatch(m), Tensor::from_dispatch(v)));
        Tensor::from_dispatch(theta)
    }

    /// The f32 scalars of the current step at learning rate `lr`, each rounded from f64 as
    /// PyTorch's (and Burn's) scalar operations round them.
    fn scalars(&self, lr: f64) -> AdamWScalars {
        assert!(self.step > 0, "call begin_step before the updates");
        let c = self.config;
        let t = self.step as i32;
        let (c1, c2) = (1.0 - c.beta1.powi(t), 1.0 - c.beta2.powi(t));
        AdamWScalars {
            one_minus_beta1: (1.0 - c.beta1) as f32,
            beta2: c.beta2 as f32,
            one_minus_beta2: (1.0 - c.beta2) as f32,
            sqrt_c2: c2.sqrt() as f32,
            eps: c.eps as f32,
            decay: (1.0 - lr * c.weight_decay) as f32,
            step_size: (lr / c1) as f32,
        }
    }
}

/// One update's scalars, in f32 as the kernels use them (c1, c2: 1 − β1^t, 1 − β2^t).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWScalars {
    pub one_minus_beta1: f32,
    pub beta2: f32,
    pub one_minus_beta2: f32,
    /// sqrt(c2).
    pub sqrt_c2: f32,
    pub eps: f32,
    /// 1 − lr·weight_decay.
    pub decay: f32,
    /// lr/c1.
    pub step_size: f32,
}

#[backend_extension(Cube, Flex)]
pub trait AdamWBackend: Backend {
    /// The new θ, m and v of one tensor given its gradient `g`. With `first` (no moments yet)
    /// `m` and `v` are not read.
    fn adamw_step(
        theta: FloatTensor<Self>,
        g: FloatTensor<Self>,
        m: FloatTensor<Self>,
        v: FloatTensor<Self>,
        first: bool,
        scalars: AdamWScalars,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

// ---- wgpu: shaders/adamw.wgsl ----------------------------------------------------------------

wgsl_kernel!(AdamWKernel, "adamw.wgsl");

impl AdamWBackend for Cube {
    fn adamw_step(
        theta: CubeTensor,
        g: CubeTensor,
        m: CubeTensor,
        v: CubeTensor,
        first: bool,
        s: AdamWScalars,
    ) -> (CubeTensor, CubeTensor, CubeTensor) {
        let (theta, g) = (writable(theta), dense(g));
        assert_eq!(
            theta.shape(),
            g.shape(),
            "θ and its gradient differ in shape"
        );
        let n = theta.shape().num_elements();
        let (m, v, io) = match first {
            true => {
                let fresh = || empty(&theta, theta.shape(), DType::F32);
                (fresh(), fresh(), Io::Write)
            }
            false => {
                let (m, v) = (writable(m), writable(v));
                assert!(
                    m.shape() == theta.shape() && v.shape() == theta.shape(),
                    "AdamW's moments differ from θ in shape"
                );
                (m, v, Io::ReadWrite)
            }
        };
        let buffers = [
            (&theta.handle, Io::ReadWrite),
            (&m.handle, io),
            (&v.handle, io),
            (&g.handle, Io::Read),
        ];
        let tensor = [
            u32::try_from(n).expect("tensor too large"),
            u32::from(first),
            0,
            0,
        ];
        let step = [
            s.one_minus_beta1,
            s.beta2,
            s.one_minus_beta2,
            s.sqrt_c2,
            s.eps,
            s.decay,
            s.step_size,
            0.0,
        ]
        .map(f32::to_bits);
        launch(
            &theta,
            AdamWKernel,
            quad_grid(n),
            &buffers,
            &[Block::Kept(&tensor), Block::Step(&step)],
        );
        (theta, m, v)
    }
}

// ---- CPU: the same formulas in Rust ----------------------------------------------------------

/// θ, m and v updated in place, block by block, given the gradient and the scalars.
struct Lanes<'a> {
    g: &'a [f32],
    first: bool,
    s: AdamWScalars,
}

impl InPlace<3> for Lanes<'_> {
    /// Operation for operation as the shader does them.
    #[inline(always)]
    fn update(&self, i0: usize, [theta, m, v]: [&mut [f32]; 3]) {
        let s = &self.s;
        let g = block(self.g, i0);
        let (theta0, m0, v0) = (block(theta, 0), block(m, 0), block(v, 0));
        let mut out = [[0.0f32; LANES]; 3];
        for l in 0..LANES {
            let (m, v) = match self.first {
                true => (g[l] * s.one_minus_beta1, g[l] * s.one_minus_beta2 * g[l]),
                false => (
                    m0[l] + (g[l] - m0[l]) * s.one_minus_beta1,
                    v0[l] * s.beta2 + g[l] * s.one_minus_beta2 * g[l],
                ),
            };
            let denom = v.sqrt() / s.sqrt_c2 + s.eps;
            let theta = theta0[l] * s.decay - m / denom * s.step_size;
            [out[0][l], out[1][l], out[2][l]] = [theta, m, v];
        }
        for (to, from) in [theta, m, v].into_iter().zip(&out) {
            to.copy_from_slice(&from[..to.len()]);
        }
    }
}

/// `t` as a tensor whose storage is its values in order, so that it can be written in place
/// (`storage_mut` copies it first where another tensor shares it).
fn dense_cpu(t: FlexTensor) -> FlexTensor {
    let n = t.shape().num_elements();
    let whole = t.is_contiguous() && t.layout().start_offset() == 0 && t.bytes().len() == 4 * n;
    if whole {
        t
    } else {
        flex_tensor(values(&t).into_owned(), t.shape())
    }
}

impl AdamWBackend for Flex {
    fn adamw_step(
        theta: FlexTensor,
        g: FlexTensor,
        m: FlexTensor,
        v: FlexTensor,
        first: bool,
        s: AdamWScalars,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let shape = theta.shape();
        assert_eq!(shape, g.shape(), "θ and its gradient differ in shape");
        let (m, v) = match first {
            true => {
                let zeros = || FlexTensor::zeros(shape.clone(), DType::F32);
                (zeros(), zeros())
            }
            false => {
                assert!(
                    m.shape() == shape && v.shape() == shape,
                    "AdamW's moments differ from θ in shape"
                );
                (dense_cpu(m), dense_cpu(v))
            }
        };
        let (mut theta, mut m, mut v) = (dense_cpu(theta), m, v);
        let g = values(&g);
        let lanes = Lanes { g: &g, first, s };
        par_in_place(
            [&mut theta, &mut m, &mut v].map(|t| t.storage_mut::<f32>()),
            &lanes,
        );
        (theta, m, v)
    }
}
