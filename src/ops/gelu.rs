//! Exact (erf) GELU, x·Φ(x), as one op each way with its own backward pass: shaders/gelu.wgsl
//! on wgpu devices, `forward_cpu` and `backward_cpu` on the CPU device. Both take Φ from
//! the same erfc fit (relative error below 1.2e-7) and vectorise on the CPU, where Burn's own op
//! calls a scalar erf per element and autodiff's composition takes five passes each way.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::CubeTensor;
use burn::backend::{
    AutodiffBackend, Backend, Cube, Dispatch, Flex, TensorMetadata, backend_extension,
};
use burn::tensor::{DType, Tensor};

use crate::util::kernel::cpu::{
    Blocks, LANES, block, exp_f32, flex_tensor, lanes, par_map, values,
};
use crate::util::kernel::launch::{
    Block, Io, bind, dense, empty, launch, quad_grid, spare, wgsl_kernel,
};

/// x·Φ(x) for every element of `x`, differentiable on autodiff devices.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as GeluBackend>::gelu_exact(x.into_dispatch()))
}

#[backend_extension(Cube, Flex, Autodiff)]
pub trait GeluBackend: Backend {
    /// x·Φ(x).
    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// dy·(Φ(x) + x·φ(x)): the gradient at `x` of Σ dy·gelu(x).
    fn gelu_exact_backward(x: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self>;
}

// ---- wgpu: shaders/gelu.wgsl -----------------------------------------------------------------

wgsl_kernel!(GeluKernel, "gelu.wgsl");

const OP_FORWARD: u32 = 0;
const OP_BACKWARD: u32 = 1;

impl GeluBackend for Cube {
    fn gelu_exact(x: CubeTensor) -> CubeTensor {
        launch_gelu(OP_FORWARD, dense(x), None)
    }

    fn gelu_exact_backward(x: CubeTensor, dy: CubeTensor) -> CubeTensor {
        launch_gelu(OP_BACKWARD, dense(x), Some(dense(dy)))
    }
}

fn launch_gelu(op: u32, x: CubeTensor, dy: Option<CubeTensor>) -> CubeTensor {
    let out = empty(&x, x.shape(), DType::F32);
    let n = x.shape().num_elements();
    let unused = spare(&x);
    let buffers = [
        (&out.handle, Io::Write),
        (&x.handle, Io::Read),
        bind(dy.as_ref(), Io::Read, &unused),
    ];
    let params = [op, u32::try_from(n).expect("tensor too large"), 0, 0];
    launch(
        &out,
        GeluKernel,
        quad_grid(n),
        &buffers,
        &[Block::Kept(&params)],
    );
    out
}

// ---- CPU: the same formulas in Rust ----------------------------------------------------------

const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// erfc(z) for z ≥ 0 as t·exp(−z² + P(t)), t = 1/(1 + z/2): the Chebyshev fit of Numerical
/// Recipes' erfcc, relative error below 1.2e-7.
#[allow(clippy::excessive_precision)]
#[inline(always)]
fn erfc_nonneg(z: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * z);
    let mut poly = 0.17087277;
    poly = poly * t - 0.82215223;
    poly = poly * t + 1.48851587;
    poly = poly * t - 1.13520398;
    poly = poly * t + 0.27886807;
    poly = poly * t - 0.18628806;
    poly = poly * t + 0.09678418;
    poly = poly * t + 0.37409196;
    poly = poly * t + 1.00002368;
    poly = poly * t - 1.26551223;
    t * exp_f32(poly - z * z)
}

/// Φ(v) = erfc(−v/√2)/2.
#[inline(always)]
fn normal_cdf(v: f32) -> f32 {
    let half_tail = 0.5 * erfc_nonneg(v.abs() * std::f32::consts::FRAC_1_SQRT_2);
    if v >= 0.0 { 1.0 - half_tail } else { half_tail }
}

/// x·Φ(x) of `x`'s blocks.
struct ForwardCpu<'a> {
    x: &'a [f32],
}

impl Blocks<1> for ForwardCpu<'_> {
    #[inline(always)]
    fn block(&self, i0: usize) -> [[f32; LANES]; 1] {
        let v = block(self.x, i0);
        [lanes!(l in LANES => v[l] * normal_cdf(v[l]))]
    }
}

/// dy·(Φ(x) + x·φ(x)) of the blocks of `x` and `dy`.
struct BackwardCpu<'a> {
    x: &'a [f32],
    dy: &'a [f32],
}

impl Blocks<1> for BackwardCpu<'_> {
    #[inline(always)]
    fn block(&self, i0: usize) -> [[f32; LANES]; 1] {
        let (v, g) = (block(self.x, i0), block(self.dy, i0));
        [lanes!(l in LANES => {
            let density = FRAC_1_SQRT_2PI * exp_f32(-0.5 * v[l] * v[l]);
            g[l] * (normal_cdf(v[l]) + v[l] * density)
        })]
    }
}

pub(crate) fn forward_cpu(x: FlexTensor) -> FlexTensor {
    let xv = values(&x);
    let [out] = par_map(xv.len(), &ForwardCpu { x: &xv });
    flex_tensor(out, x.shape())
}

pub(crate) fn backward_cpu(x: FlexTensor, dy: FlexTensor) -> FlexTensor {
    let (xv, dyv) = (values(&x), values(&dy));
    let [out] = par_map(xv.len(), &BackwardCpu { x: &xv, dy: &dyv });
    flex_tensor(out, x.shape())
}

impl GeluBackend for Flex {
    fn gelu_exact(x: FlexTensor) -> FlexTensor {
        forward_cpu(x)
    }

    fn gelu_exact_backward(x: FlexTensor, dy: FlexTensor) -> FlexTensor {
        backward_cpu(x, dy)
    }
}

// ---- autodiff: the backward pass is the op above ----------------------------------------------

#[derive(Debug)]
struct GeluGrad;

impl<B: GeluBackend> Backward<B, 1> for GeluGrad {
    /// The input x.
    type State = NodeId;

    fn backward(self, ops: Ops<NodeId, 1>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let x = checkpointer.retrieve_node_output(ops.state);
        unary::<B, _>(ops.parents, ops.node, grads, |dy| {
            B::gelu_exact_backward(x, dy)
        });
    }
}

impl<B: GeluBackend, C: CheckpointStrategy> GeluBackend for Autodiff<B, C> {
    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match GeluGrad.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let state = prep.checkpoint(&x);
                prep.finish(state, B::gelu_exact(x.primitive().clone()))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::gelu_exact(x.into_primitive())),
        }
    }

    /// Not differentiable again: the result is a constant.
    fn gelu_exact_backward(x: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::from_inner(B::gelu_exact_backward(Self::inner(x), Self::inner(dy)))
    }
}
