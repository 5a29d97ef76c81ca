//! Softmax along the last dimension as one op each way with its own backward pass (the
//! gradient y·(dy − Σ dy·y) from the output y): shaders/softmax.wgsl on wgpu devices,
//! `forward_cpu` and `backward_cpu` on the CPU device. Autodiff would otherwise record
//! Burn's softmax as max, subtract, exp, sum and divide, and run their five backward passes.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::CubeTensor;
use burn::backend::{
    AutodiffBackend, Backend, Cube, Dispatch, Flex, TensorMetadata, backend_extension,
};
use burn::tensor::{DType, Tensor};

use crate::util::kernel::cpu::{
    Rows, exp_f32, flex_tensor, max_by_lanes, par_rows, rows, sum_by_lanes, values,
};
use crate::util::kernel::launch::{
    Block, Io, bind, dense, empty, launch, spare, thread_grid, wgsl_kernel,
};

/// Softmax of `x` along its last dimension, differentiable on autodiff devices.
pub fn softmax<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as SoftmaxBackend>::softmax_last(
        x.into_dispatch(),
    ))
}

#[backend_extension(Cube, Flex, Autodiff)]
pub trait SoftmaxBackend: Backend {
    /// Softmax along the last dimension.
    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// y·(dy − Σ dy·y) along the last dimension: the gradient at the input of Σ dy·softmax,
    /// from the softmax's output `y`.
    fn softmax_last_backward(y: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self>;
}

// ---- wgpu: shaders/softmax.wgsl --------------------------------------------------------------

wgsl_kernel!(SoftmaxKernel, "softmax.wgsl");

const OP_FORWARD: u32 = 0;
const OP_BACKWARD: u32 = 1;

impl SoftmaxBackend for Cube {
    fn softmax_last(x: CubeTensor) -> CubeTensor {
        launch_softmax(OP_FORWARD, dense(x), None)
    }

    fn softmax_last_backward(y: CubeTensor, dy: CubeTensor) -> CubeTensor {
        launch_softmax(OP_BACKWARD, dense(y), Some(dense(dy)))
    }
}

fn launch_softmax(op: u32, x: CubeTensor, dy: Option<CubeTensor>) -> CubeTensor {
    let out = empty(&x, x.shape(), DType::F32);
    let (rows, len) = rows(&x.shape());
    let unused = spare(&x);
    let buffers = [
        (&out.handle, Io::Write),
        (&x.handle, Io::Read),
        bind(dy.as_ref(), Io::Read, &unused),
    ];
    let word = |v: usize| u32::try_from(v).expect("tensor too large");
    let params = [op, word(rows), word(len), 0];
    launch(
        &out,
        SoftmaxKernel,
        thread_grid(rows),
        &buffers,
        &[Block::Kept(&params)],
    );
    out
}

// ---- CPU: the same formulas in Rust ----------------------------------------------------------

/// The softmax of each row of `x`.
struct ForwardCpu<'a> {
    x: &'a [f32],
}

impl Rows<1> for ForwardCpu<'_> {
    #[inline(always)]
    fn row(&self, r: usize, [out]: [&mut [f32]; 1]) {
        let len = out.len();
        out.copy_from_slice(&self.x[r * len..(r + 1) * len]);
        softmax_row(out);
    }
}

/// y·(dy − Σ dy·y) of each row of `y` and `dy`.
struct BackwardCpu<'a> {
    y: &'a [f32],
    dy: &'a [f32],
}

impl Rows<1> for BackwardCpu<'_> {
    #[inline(always)]
    fn row(&self, r: usize, [out]: [&mut [f32]; 1]) {
        let len = out.len();
        out.copy_from_slice(&self.dy[r * len..(r + 1) * len]);
        softmax_row_backward(&self.y[r * len..(r + 1) * len], out);
    }
}

/// The softmax of `row`, in place.
#[inline(always)]
pub(crate) fn softmax_row(row: &mut [f32]) {
    let top = max_by_lanes(row);
    for e in row.iter_mut() {
        *e = exp_f32(*e - top);
    }
    let inv = 1.0 / sum_by_lanes([row], |[e]| e);
    row.iter_mut().for_each(|e| *e *= inv);
}

/// dy ← y·(dy − Σ dy·y) for one row: the gradient at the input of Σ dy·softmax.
#[inline(always)]
pub(crate) fn softmax_row_backward(y: &[f32], dy: &mut [f32]) {
    let dot = sum_by_lanes([y, dy], |[y, g]| g * y);
    for (g, &y) in dy.iter_mut().zip(y) {
        *g = y * (*g - dot);
    }
}

pub(crate) fn forward_cpu(x: FlexTensor) -> FlexTensor {
    let (xv, shape) = (values(&x), x.shape());
    let mut out = vec![0.0f32; xv.len()];
    par_rows(rows(&shape).0, [&mut out], &ForwardCpu { x: &xv });
    flex_tensor(out, shape)
}

pub(crate) fn backward_cpu(y: FlexTensor, dy: FlexTensor) -> FlexTensor {
    let (yv, dyv, shape) = (values(&y), values(&dy), y.shape());
    let mut out = vec![0.0f32; yv.len()];
    par_rows(
        rows(&shape).0,
        [&mut out],
        &BackwardCpu { y: &yv, dy: &dyv },
    );
    flex_tensor(out, shape)
}

impl SoftmaxBackend for Flex {
    fn softmax_last(x: FlexTensor) -> FlexTensor {
        forward_cpu(x)
    }

    fn softmax_last_backward(y: FlexTensor, dy: FlexTensor) -> FlexTensor {
        backward_cpu(y, dy)
    }
}

// ---- autodiff: the backward pass is the op above ----------------------------------------------

#[derive(Debug)]
struct SoftmaxGrad;

impl<B: SoftmaxBackend> Backward<B, 1> for SoftmaxGrad {
    /// The output y.
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let y = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |dy| {
            B::softmax_last_backward(y, dy)
        });
    }
}

impl<B: SoftmaxBackend, C: CheckpointStrategy> SoftmaxBackend for Autodiff<B, C> {
    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match SoftmaxGrad
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::softmax_last(x.primitive().clone());
                prep.finish(y.clone(), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::softmax_last(x.into_primitive())),
        }
    }

    /// Not differentiable again: the result is a constant.
    fn softmax_last_backward(y: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::from_inner(B::softmax_last_backward(Self::inner(y), Self::inner(dy)))
    }
}
