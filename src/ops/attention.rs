//! Multi-head scaled dot-product attention with an additive key mask, as one op each way with
//! its own backward pass. On the CPU device each (sequence, head) runs start to end while its
//! scores stay in cache: one product for the scores (the mask already in place, the scale in
//! the product), softmax in place, one product for the output; the backward pass likewise.
//! Autodiff would otherwise record a dozen ops, each a pass over every score of the layer. On
//! wgpu devices it is Burn's products around our softmax kernel.
//!
//! q `[batch, q_len, heads·d]`, k and v `[batch, len, heads·d]`, mask `[batch, len]` (0 or
//! `model::mask::MASKED_SCORE`); the scores of head h are q_h·k_hᵀ/√d + mask, the output
//! softmax(scores)·v_h, in the columns of head h.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::CubeTensor;
use burn::backend::{
    AutodiffBackend, Backend, Cube, Dispatch, Flex, TensorMetadata, backend_extension,
};
use burn::tensor::{Shape, Tensor};

use super::softmax::{SoftmaxBackend, softmax_row, softmax_row_backward};
use crate::util::kernel::cpu::{Matrix, Rows, flex_tensor, matmul_here, par_rows, values};

/// softmax(q_h·k_hᵀ/√d + mask)·v_h for every head h; differentiable on autodiff devices.
pub fn attention(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    mask: Tensor<2>,
    heads: usize,
) -> Tensor<3> {
    let (out, _probs) = <Dispatch as AttentionBackend>::attention_forward(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        mask.into_dispatch(),
        heads,
    );
    Tensor::from_dispatch(out)
}

#[backend_extension(Cube, Flex, Autodiff)]
pub trait AttentionBackend: Backend {
    /// (output `[batch, q_len, heads·d]`, probabilities `[batch, heads, q_len, len]`).
    fn attention_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        heads: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// The gradients (q, k, v) of Σ dout·output, from the forward's probabilities.
    fn attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        probs: FloatTensor<Self>,
        dout: FloatTensor<Self>,
        heads: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// (batch, q_len, len, heads, d) of a call.
#[derive(Clone, Copy)]
struct Dims {
    batch: usize,
    q_len: usize,
    len: usize,
    heads: usize,
    d: usize,
}

impl Dims {
    fn of(q: &Shape, k: &Shape, heads: usize) -> Self {
        let (q, k) = (q.as_slice(), k.as_slice());
        assert!(
            q.len() == 3 && k.len() == 3,
            "attention takes [batch, len, heads·d]"
        );
        assert_eq!(
            q[2] % heads,
            0,
            "{} columns do not split into {heads} heads",
            q[2]
        );
        Dims {
            batch: q[0],
            q_len: q[1],
            len: k[1],
            heads,
            d: q[2] / heads,
        }
    }

    /// (sequence, head) pairs.
    fn tasks(&self) -> usize {
        self.batch * self.heads
    }

    fn scale(&self) -> f32 {
        1.0 / (self.d as f32).sqrt()
    }
}

// ---- wgpu: Burn's products around our softmax kernel -------------------------------------------

/// `[batch, len, heads·d]` → `[batch, heads, len, d]` (a view).
fn split_heads<B: Backend>(t: FloatTensor<B>, dims: Dims) -> FloatTensor<B> {
    let len = t.shape()[1];
    let t = B::float_reshape(t, Shape::new([dims.batch, len, dims.heads, dims.d]));
    B::float_swap_dims(t, 1, 2)
}

/// `[batch, heads, len, d]` → `[batch, len, heads·d]`.
fn merge_heads<B: Backend>(t: FloatTensor<B>, dims: Dims) -> FloatTensor<B> {
    let len = t.shape()[2];
    let t = B::float_swap_dims(t, 1, 2);
    B::float_reshape(t, Shape::new([dims.batch, len, dims.heads * dims.d]))
}

fn transposed<B: Backend>(t: FloatTensor<B>) -> FloatTensor<B> {
    B::float_swap_dims(t, 2, 3)
}

impl AttentionBackend for Cube {
    fn attention_forward(
        q: CubeTensor,
        k: CubeTensor,
        v: CubeTensor,
        mask: CubeTensor,
        heads: usize,
    ) -> (CubeTensor, CubeTensor) {
        let dims = Dims::of(&q.shape(), &k.shape(), heads);
        let (q, k, v) = (
            split_heads::<Cube>(q, dims),
            split_heads::<Cube>(k, dims),
            split_heads::<Cube>(v, dims),
        );
        let scores = Cube::float_matmul(q, transposed::<Cube>(k));
        let scores = Cube::float_mul_scalar(scores, dims.scale().into());
        let mask = Cube::float_reshape(mask, Shape::new([dims.batch, 1, 1, dims.len]));
        let probs = Cube::softmax_last(Cube::float_add(scores, mask));
        let out = Cube::float_matmul(probs.clone(), v);
        (merge_heads::<Cube>(out, dims), probs)
    }

    fn attention_backward(
        q: CubeTensor,
        k: CubeTensor,
        v: CubeTensor,
        probs: CubeTensor,
        dout: CubeTensor,
        heads: usize,
    ) -> (CubeTensor, CubeTensor, CubeTensor) {
        let dims = Dims::of(&q.shape(), &k.shape(), heads);
        let split = |t| split_heads::<Cube>(t, dims);
        let (q, k, v, dout) = (split(q), split(k), split(v), split(dout));
        let dv = Cube::float_matmul(transposed::<Cube>(probs.clone()), dout.clone());
        let dprobs = Cube::float_matmul(dout, transposed::<Cube>(v));
        let dscores = Cube::softmax_last_backward(probs, dprobs);
        let dscores = Cube::float_mul_scalar(dscores, dims.scale().into());
        let dq = Cube::float_matmul(dscores.clone(), k);
        let dk = Cube::float_matmul(transposed::<Cube>(dscores), q);
        let merge = |t| merge_heads::<Cube>(t, dims);
        (merge(dq), merge(dk), merge(dv))
    }
}

// ---- CPU: one (sequence, head) at a time, its scores in cache -------------------------------

/// The inputs of a call, each `[batch, len, heads·d]` row-major.
struct Inputs<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    dims: Dims,
}

impl Inputs<'_> {
    /// Head h of sequence b of `x` (`len` rows of d values, heads·d apart).
    fn head<'x>(&self, x: &'x [f32], len: usize, task: usize) -> Matrix<'x> {
        let Dims { heads, d, .. } = self.dims;
        let (b, h) = (task / heads, task % heads);
        let start = b * len * heads * d + h * d;
        Matrix::new(&x[start..], len, d, heads * d)
    }

    fn q(&self, task: usize) -> Matrix<'_> {
        self.head(self.q, self.dims.q_len, task)
    }

    fn k(&self, task: usize) -> Matrix<'_> {
        self.head(self.k, self.dims.len, task)
    }

    fn v(&self, task: usize) -> Matrix<'_> {
        self.head(self.v, self.dims.len, task)
    }
}

/// The forward pass of one (sequence, head) task: its probabilities and its output
/// `[q_len, d]`.
struct ForwardCpu<'a> {
    inputs: Inputs<'a>,
    mask: &'a [f32],
}

impl Rows<2> for ForwardCpu<'_> {
    #[inline(always)]
    fn row(&self, task: usize, [probs, out]: [&mut [f32]; 2]) {
        let Dims { len, heads, .. } = self.inputs.dims;
        let mask = &self.mask[(task / heads) * len..][..len];
        for row in probs.chunks_exact_mut(len) {
            row.copy_from_slice(mask);
        }
        let (q, k) = (self.inputs.q(task), self.inputs.k(task));
        matmul_here(probs, q, k.t(), self.inputs.dims.scale(), true);
        probs.chunks_exact_mut(len).for_each(softmax_row);
        let p = Matrix::new(probs, self.inputs.dims.q_len, len, len);
        matmul_here(out, p, self.inputs.v(task), 1.0, false);
    }
}

/// The backward pass of one task: the gradients of its q, k and v heads.
struct BackwardCpu<'a> {
    inputs: Inputs<'a>,
    probs: &'a [f32],
    dout: &'a [f32],
}

impl Rows<3> for BackwardCpu<'_> {
    #[inline(always)]
    fn row(&self, task: usize, [dq, dk, dv]: [&mut [f32]; 3]) {
        let Dims { q_len, len, .. } = self.inputs.dims;
        let probs = &self.probs[task * q_len * len..][..q_len * len];
        let p = Matrix::new(probs, q_len, len, len);
        let dout = self.inputs.head(self.dout, q_len, task);
        matmul_here(dv, p.t(), dout, 1.0, false);
        let mut dscores = vec![0.0; q_len * len];
        matmul_here(&mut dscores, dout, self.inputs.v(task).t(), 1.0, false);
        for (ds, p) in dscores.chunks_exact_mut(len).zip(probs.chunks_exact(len)) {
            softmax_row_backward(p, ds);
        }
        let ds = Matrix::new(&dscores, q_len, len, len);
        let scale = self.inputs.dims.scale();
        matmul_here(dq, ds, self.inputs.k(task), scale, false);
        matmul_here(dk, ds.t(), self.inputs.q(task), scale, false);
    }
}

/// `[batch, heads, len, d]` (a task's rows together) → `[batch, len, heads·d]`.
fn heads_to_columns(x: &[f32], dims: Dims, len: usize) -> FlexTensor {
    let Dims {
        batch, heads, d, ..
    } = dims;
    let mut out = vec![0.0; x.len()];
    for (b, seq) in out.chunks_exact_mut(len * heads * d).enumerate() {
        for (t, row) in seq.chunks_exact_mut(heads * d).enumerate() {
            for (h, cols) in row.chunks_exact_mut(d).enumerate() {
                let start = ((b * heads + h) * len + t) * d;
                cols.copy_from_slice(&x[start..start + d]);
            }
        }
    }
    flex_tensor(out, Shape::new([batch, len, heads * d]))
}

impl AttentionBackend for Flex {
    fn attention_forward(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        mask: FlexTensor,
        heads: usize,
    ) -> (FlexTensor, FlexTensor) {
        let dims = Dims::of(&q.shape(), &k.shape(), heads);
        let Dims { q_len, len, d, .. } = dims;
        let (q, k, v, mask) = (values(&q), values(&k), values(&v), values(&mask));
        let tasks = dims.tasks();
        let mut probs = vec![0.0; tasks * q_len * len];
        let mut out = vec![0.0; tasks * q_len * d];
        let kernel = ForwardCpu {
            inputs: Inputs {
                q: &q,
                k: &k,
                v: &v,
                dims,
            },
            mask: &mask,
        };
        par_rows(tasks, [&mut probs, &mut out], &kernel);
        (
            heads_to_columns(&out, dims, q_len),
            flex_tensor(probs, Shape::new([dims.batch, heads, q_len, len])),
        )
    }

    fn attention_backward(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        probs: FlexTensor,
        dout: FlexTensor,
        heads: usize,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let dims = Dims::of(&q.shape(), &k.shape(), heads);
        let Dims { q_len, len, d, .. } = dims;
        let (q, k, v) = (values(&q), values(&k), values(&v));
        let (probs, dout) = (values(&probs), values(&dout));
        let tasks = dims.tasks();
        let mut dq = vec![0.0; tasks * q_len * d];
        let (mut dk, mut dv) = (vec![0.0; tasks * len * d], vec![0.0; tasks * len * d]);
        let kernel = BackwardCpu {
            inputs: Inputs {
                q: &q,
                k: &k,
                v: &v,
                dims,
            },
            probs: &probs,
            dout: &dout,
        };
        par_rows(tasks, [&mut dq, &mut dk, &mut dv], &kernel);
        (
            heads_to_columns(&dq, dims, q_len),
            heads_to_columns(&dk, dims, len),
            heads_to_columns(&dv, dims, len),
        )
    }
}

// ---- autodiff: the backward pass is the op above ----------------------------------------------

#[derive(Debug)]
struct AttentionGrad;

impl<B: AttentionBackend> Backward<B, 3> for AttentionGrad {
    /// q, k, v, the probabilities and the number of heads.
    type State = (
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        usize,
    );

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (q, k, v, probs, heads) = ops.state;
        let dout = grads.consume::<B>(&ops.node);
        let (dq, dk, dv) = B::attention_backward(q, k, v, probs, dout, heads);
        let [q_node, k_node, v_node] = ops.parents;
        for (node, grad) in [(q_node, dq), (k_node, dk), (v_node, dv)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: AttentionBackend, C: CheckpointStrategy> AttentionBackend for Autodiff<B, C> {
    fn attention_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        heads: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (qp, kp, vp) = (
            q.primitive().clone(),
            k.primitive().clone(),
            v.primitive().clone(),
        );
        let mask = Self::inner(mask);
        let (out, probs) = B::attention_forward(qp.clone(), kp.clone(), vp.clone(), mask, heads);
        let out = match AttentionGrad
            .prepare::<C>([q.node(), k.node(), v.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((qp, kp, vp, probs.clone(), heads), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        };
        (out, Self::from_inner(probs))
    }

    /// Not differentiable again: the results are constants.
    fn attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        probs: FloatTensor<Self>,
        dout: FloatTensor<Self>,
        heads: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (dq, dk, dv) = B::attention_backward(
            Self::inner(q),
            Self::inner(k),
            Self::inner(v),
            Self::inner(probs),
            Self::inner(dout),
            heads,
        );
        (
            Self::from_inner(dq),
            Self::from_inner(dk),
            Self::from_inner(dv),
        )
    }
}
