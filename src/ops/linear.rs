//! The affine layer x·W + b (HF `nn.Linear` and GPT-2's `Conv1D`) as one op each way. On the CPU
//! device it calls gemm straight into buffers of its own, the bias already in the output and the
//! transposes read in place: Burn flex zeroes every product's output and then copies it to
//! realign it, which cost a tenth of a training step. On wgpu devices it is Burn's own linear op.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::CubeTensor;
use burn::backend::{
    AutodiffBackend, Backend, Cube, Dispatch, Flex, TensorMetadata, backend_extension,
};
use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::{Device, Shape, Tensor};

use crate::util::kernel::cpu::{
    Matrix, RowSums, flex_tensor, matmul, matmul_add, par_row_sums, rows, values,
};

/// x·W + b over the last dimension of x, with W stored `[in, out]` as Burn's `Linear` stores
/// it (the name `Linear` tells burn-store to transpose HF's `[out, in]` weights). Without a
/// bias (HF's `bias=False`), b is 0.
#[derive(Module, Debug)]
pub struct Linear {
    pub weight: Param<Tensor<2>>,
    pub bias: Option<Param<Tensor<1>>>,
}

impl Linear {
    /// A `d_in → d_out` layer with weights (and a bias, if `bias`) drawn N(0, `std`²).
    pub fn normal(d_in: usize, d_out: usize, std: f64, bias: bool, device: &Device) -> Self {
        let init = Initializer::Normal { mean: 0.0, std };
        Linear {
            weight: init.init([d_in, d_out], device),
            bias: bias.then(|| init.init([d_out], device)),
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        linear(x, self.weight.val(), self.bias.as_ref().map(Param::val))
    }
}

/// x·W + b over the last dimension of `x` (x·W without a bias), W `[in, out]`; differentiable on
/// autodiff devices.
pub fn linear<const D: usize>(
    x: Tensor<D>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
) -> Tensor<D> {
    let (x, weight) = (x.into_dispatch(), weight.into_dispatch());
    Tensor::from_dispatch(match bias {
        Some(bias) => <Dispatch as LinearBackend>::linear_forward(x, weight, bias.into_dispatch()),
        None => <Dispatch as LinearBackend>::linear_forward_unbiased(x, weight),
    })
}

#[backend_extension(Cube, Flex, Autodiff)]
pub trait LinearBackend: Backend {
    /// x·W + b over the last dimension of x.
    fn linear_forward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// x·W over the last dimension of x.
    fn linear_forward_unbiased(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// dy·Wᵀ: the gradient for x of Σ dy·(x·W + b).
    fn linear_backward_input(weight: FloatTensor<Self>, dy: FloatTensor<Self>)
    -> FloatTensor<Self>;
    /// xᵀ·dy over every row: the gradient for W.
    fn linear_backward_weight(x: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self>;
    /// dy summed over every row: the gradient for b.
    fn linear_backward_bias(dy: FloatTensor<Self>) -> FloatTensor<Self>;
}

// ---- wgpu: Burn's linear op and its backward passes -------------------------------------------

impl LinearBackend for Cube {
    fn linear_forward(x: CubeTensor, weight: CubeTensor, bias: CubeTensor) -> CubeTensor {
        Cube::linear(x, weight, Some(bias))
    }

    fn linear_forward_unbiased(x: CubeTensor, weight: CubeTensor) -> CubeTensor {
        Cube::linear(x, weight, None)
    }

    fn linear_backward_input(weight: CubeTensor, dy: CubeTensor) -> CubeTensor {
        Cube::linear_x_backward(weight, dy)
    }

    fn linear_backward_weight(x: CubeTensor, dy: CubeTensor) -> CubeTensor {
        Cube::linear_weight_backward(x, dy)
    }

    fn linear_backward_bias(dy: CubeTensor) -> CubeTensor {
        Cube::linear_bias_backward(dy)
    }
}

// ---- CPU: gemm into our own buffers ----------------------------------------------------------

/// `shape` with its last dimension `last`.
fn with_last(shape: &Shape, last: usize) -> Shape {
    let mut dims = shape.as_slice().to_vec();
    *dims.last_mut().expect("a tensor of rank ≥ 1") = last;
    Shape::from(dims)
}

/// The columns' sums of a row-major matrix.
struct ColumnSums<'a> {
    values: &'a [f32],
    width: usize,
}

impl RowSums for ColumnSums<'_> {
    #[inline(always)]
    fn add_row(&self, r: usize, acc: &mut [f64]) {
        let row = &self.values[r * self.width..(r + 1) * self.width];
        for (a, &v) in acc.iter_mut().zip(row) {
            *a += f64::from(v);
        }
    }
}

/// x·W added to `y` (the bias repeated per row, or zeros), the product straight into `y`.
fn flex_linear(x: FlexTensor, weight: FlexTensor, mut y: Vec<f32>) -> FlexTensor {
    let shape = x.shape();
    let ((n, d_in), d_out) = (rows(&shape), weight.shape()[1]);
    let (x, weight) = (values(&x), values(&weight));
    let (x, w) = (
        Matrix::new(&x, n, d_in, d_in),
        Matrix::new(&weight, d_in, d_out, d_out),
    );
    matmul_add(&mut y, x, w);
    flex_tensor(y, with_last(&shape, d_out))
}

impl LinearBackend for Flex {
    fn linear_forward(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        let n = rows(&x.shape()).0;
        flex_linear(x, weight, values(&bias).repeat(n))
    }

    fn linear_forward_unbiased(x: FlexTensor, weight: FlexTensor) -> FlexTensor {
        let (n, d_out) = (rows(&x.shape()).0, weight.shape()[1]);
        flex_linear(x, weight, vec![0.0; n * d_out])
    }

    fn linear_backward_input(weight: FlexTensor, dy: FlexTensor) -> FlexTensor {
        let shape = dy.shape();
        let ((n, d_out), d_in) = (rows(&shape), weight.shape()[0]);
        let (dy, weight) = (values(&dy), values(&weight));
        let dx = matmul(
            Matrix::new(&dy, n, d_out, d_out),
            Matrix::new(&weight, d_in, d_out, d_out).t(),
        );
        flex_tensor(dx, with_last(&shape, d_in))
    }

    fn linear_backward_weight(x: FlexTensor, dy: FlexTensor) -> FlexTensor {
        let ((n, d_in), (_, d_out)) = (rows(&x.shape()), rows(&dy.shape()));
        let (x, dy) = (values(&x), values(&dy));
        let dw = matmul(
            Matrix::new(&x, n, d_in, d_in).t(),
            Matrix::new(&dy, n, d_out, d_out),
        );
        flex_tensor(dw, Shape::new([d_in, d_out]))
    }

    fn linear_backward_bias(dy: FlexTensor) -> FlexTensor {
        let (n, d_out) = rows(&dy.shape());
        let dy = values(&dy);
        let kernel = ColumnSums {
            values: &dy,
            width: d_out,
        };
        let sums = par_row_sums(n, d_out, &kernel);
        flex_tensor(
            sums.into_iter().map(|s| s as f32).collect(),
            Shape::new([d_out]),
        )
    }
}

// ---- autodiff: the backward pass is the ops above ----------------------------------------------

#[derive(Debug)]
struct LinearGrad;

/// Parents x, W and, with N = 3, b.
impl<B: LinearBackend, const N: usize> Backward<B, N> for LinearGrad {
    /// x and W.
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, weight) = ops.state;
        let dy = grads.consume::<B>(&ops.node);
        if let Some(Some(node)) = ops.parents.get(2) {
            grads.register::<B>(node.id, B::linear_backward_bias(dy.clone()));
        }
        if let Some(node) = &ops.parents[1] {
            grads.register::<B>(node.id, B::linear_backward_weight(x, dy.clone()));
        }
        if let Some(node) = &ops.parents[0] {
            grads.register::<B>(node.id, B::linear_backward_input(weight, dy));
        }
    }
}

impl<B: LinearBackend, C: CheckpointStrategy> LinearBackend for Autodiff<B, C> {
    fn linear_forward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (xp, wp) = (x.primitive().clone(), weight.primitive().clone());
        let y = B::linear_forward(xp.clone(), wp.clone(), bias.primitive().clone());
        match LinearGrad
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((xp, wp), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn linear_forward_unbiased(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (xp, wp) = (x.primitive().clone(), weight.primitive().clone());
        let y = B::linear_forward_unbiased(xp.clone(), wp.clone());
        match LinearGrad
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((xp, wp), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    /// Not differentiable again: the results are constants.
    fn linear_backward_input(
        weight: FloatTensor<Self>,
        dy: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::from_inner(B::linear_backward_input(
            Self::inner(weight),
            Self::inner(dy),
        ))
    }

    fn linear_backward_weight(x: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::from_inner(B::linear_backward_weight(Self::inner(x), Self::inner(dy)))
    }

    fn linear_backward_bias(dy: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::from_inner(B::linear_backward_bias(Self::inner(dy)))
    }
}
