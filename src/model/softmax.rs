//! Softmax along the last dimension as one op each way with its own backward pass (the
//! gradient y·(dy − Σ dy·y) from the output y): shaders/softmax.wgsl on wgpu devices,
//! [`forward_cpu`] and [`backward_cpu`] on the CPU device. Autodiff would otherwise record
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
use burn::tensor::{DType, Shape, Tensor};

use crate::kernel::{
    Io, LANES, block, dense, empty, exp_f32, flex_tensor, launch, par_rows, thread_grid, values,
    wgsl_kernel,
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

/// (rows, values per row) of a tensor taken along its last dimension.
fn rows(shape: &Shape) -> (usize, usize) {
    let len = shape.as_slice().last().copied().unwrap_or(1);
    (shape.num_elements() / len.max(1), len)
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
    // The forward pass reads no dy: x fills its binding, marked unused.
    let (dy, dy_io) = match &dy {
        Some(dy) => (dy, Io::Read),
        None => (&x, Io::Unused),
    };
    let buffers = [
        (&out.handle, Io::Write),
        (&x.handle, Io::Read),
        (&dy.handle, dy_io),
    ];
    let word = |v: usize| u32::try_from(v).expect("tensor too large");
    let params = [op, word(rows), word(len), 0];
    launch(&out, SoftmaxKernel, thread_grid(rows), &buffers, &[&params]);
    out
}

// ---- CPU: the same formulas in Rust ----------------------------------------------------------

/// The row's values in blocks of [`LANES`]: `f(i0, block, valid)` for the block at `i0`, whose
/// lanes from `valid` on repeat the row's last value.
#[inline(always)]
fn blocks(row: &[f32], mut f: impl FnMut(usize, [f32; LANES], usize)) {
    for i0 in (0..row.len()).step_by(LANES) {
        f(i0, block(row, i0), LANES.min(row.len() - i0));
    }
}

/// The sum of `lanes`' first `valid` values.
#[inline(always)]
fn add_lanes(acc: &mut [f32; LANES], lanes: &[f32; LANES], valid: usize) {
    for l in 0..LANES {
        acc[l] += if l < valid { lanes[l] } else { 0.0 };
    }
}

pub(crate) fn forward_cpu(x: FlexTensor) -> FlexTensor {
    let (xv, shape) = (values(&x), x.shape());
    let (_, len) = rows(&shape);
    let mut out = vec![0.0f32; xv.len()];
    par_rows(&mut out, len, |r, out_row| {
        let row = &xv[r * len..(r + 1) * len];
        let mut top = [f32::NEG_INFINITY; LANES];
        blocks(row, |_, v, _| {
            for l in 0..LANES {
                top[l] = top[l].max(v[l]);
            }
        });
        let top = top.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = [0.0f32; LANES];
        blocks(row, |i0, v, valid| {
            let e: [f32; LANES] = std::array::from_fn(|l| exp_f32(v[l] - top));
            out_row[i0..i0 + valid].copy_from_slice(&e[..valid]);
            add_lanes(&mut sum, &e, valid);
        });
        let inv = 1.0 / sum.iter().sum::<f32>();
        out_row.iter_mut().for_each(|e| *e *= inv);
    });
    flex_tensor(out, shape)
}

pub(crate) fn backward_cpu(y: FlexTensor, dy: FlexTensor) -> FlexTensor {
    let (yv, dyv, shape) = (values(&y), values(&dy), y.shape());
    let (_, len) = rows(&shape);
    let mut out = vec![0.0f32; yv.len()];
    par_rows(&mut out, len, |r, out_row| {
        let (y_row, dy_row) = (&yv[r * len..(r + 1) * len], &dyv[r * len..(r + 1) * len]);
        let mut dot = [0.0f32; LANES];
        blocks(y_row, |i0, y, valid| {
            let g = block(dy_row, i0);
            add_lanes(&mut dot, &std::array::from_fn(|l| g[l] * y[l]), valid);
        });
        let dot = dot.iter().sum::<f32>();
        for ((o, y), g) in out_row.iter_mut().zip(y_row).zip(dy_row) {
            *o = y * (g - dot);
        }
    });
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
struct SoftmaxBackward;

impl<B: SoftmaxBackend> Backward<B, 1> for SoftmaxBackward {
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
        match SoftmaxBackward
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
