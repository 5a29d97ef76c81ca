//! LayerNorm along the last dimension (HF `LayerNorm`, whose `weight` and `bias` are `gamma`
//! and `beta` here, as Burn names them) as one op each way with its own backward pass:
//! shaders/layer_norm.wgsl on wgpu devices, plain Rust on the CPU device. Autodiff would
//! otherwise record Burn's layer norm as nine ops and run their backward passes one by one.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::CubeTensor;
use burn::backend::{
    AutodiffBackend, Backend, Cube, Dispatch, Flex, TensorMetadata, backend_extension,
};
use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::{DType, Device, Shape, Tensor};

use burn::cubecl::server::Handle;

use crate::util::kernel::cpu::{
    RowSums, Rows, flex_tensor, par_row_sums, par_rows, rows, sum_by_lanes, values,
};
use crate::util::kernel::launch::{
    Block, Io, bind, dense, empty, launch, spare, thread_grid, wgsl_kernel,
};

/// γ·(x − μ)/√(σ² + ε) + β over the last dimension of the input, μ and σ² its mean and
/// (biased) variance there.
#[derive(Module, Debug)]
pub struct LayerNorm {
    pub gamma: Param<Tensor<1>>,
    /// None for HF's `LayerNorm(bias=False)`: β = 0.
    pub beta: Option<Param<Tensor<1>>>,
    epsilon: f64,
}

impl LayerNorm {
    /// γ = 1 and β = 0 over `d` features.
    pub fn new(d: usize, epsilon: f64, device: &Device) -> Self {
        LayerNorm {
            gamma: Initializer::Ones.init([d], device),
            beta: Some(Initializer::Zeros.init([d], device)),
            epsilon,
        }
    }

    /// γ = 1 over `d` features, without β.
    pub fn without_bias(d: usize, epsilon: f64, device: &Device) -> Self {
        LayerNorm {
            beta: None,
            ..Self::new(d, epsilon, device)
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let (y, _stats) = <Dispatch as LayerNormBackend>::layer_norm_forward(
            x.into_dispatch(),
            self.gamma.val().into_dispatch(),
            match &self.beta {
                Some(beta) => beta.val(),
                None => Tensor::zeros(self.gamma.dims(), &self.gamma.device()),
            }
            .into_dispatch(),
            self.epsilon as f32,
        );
        Tensor::from_dispatch(y)
    }
}

#[backend_extension(Cube, Flex, Autodiff)]
pub trait LayerNormBackend: Backend {
    /// (y, stats): y = γ·x̂ + β with x̂ = (x − μ)·r, r = 1/√(σ² + ε), along the last
    /// dimension; stats `[rows, 2]` holds each row's (μ, r) for the backward pass.
    fn layer_norm_forward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// The gradients (x, γ, β) of Σ dy·y.
    fn layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        dy: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

// ---- wgpu: shaders/layer_norm.wgsl -----------------------------------------------------------

wgsl_kernel!(LayerNormKernel, "layer_norm.wgsl");

const OP_FORWARD: u32 = 0;
const OP_BACKWARD_INPUT: u32 = 1;
const OP_BACKWARD_PARAMS: u32 = 2;

impl LayerNormBackend for Cube {
    fn layer_norm_forward(
        x: CubeTensor,
        gamma: CubeTensor,
        beta: CubeTensor,
        epsilon: f32,
    ) -> (CubeTensor, CubeTensor) {
        let (x, gamma, beta) = (dense(x), dense(gamma), dense(beta));
        let (n, len) = rows(&x.shape());
        let y = empty(&x, x.shape(), DType::F32);
        let stats = empty(&x, Shape::new([n, 2]), DType::F32);
        let unused = spare(&x);
        let buffers = [
            (&y.handle, Io::Write),
            (&x.handle, Io::Read),
            (&gamma.handle, Io::Read),
            (&beta.handle, Io::Read),
            bind(None, Io::Unused, &unused),
            (&stats.handle, Io::Write),
        ];
        launch_layer_norm(&x, OP_FORWARD, (n, len, epsilon), n, &buffers);
        (y, stats)
    }

    fn layer_norm_backward(
        x: CubeTensor,
        gamma: CubeTensor,
        stats: CubeTensor,
        dy: CubeTensor,
    ) -> (CubeTensor, CubeTensor, CubeTensor) {
        let (x, gamma, stats, dy) = (dense(x), dense(gamma), dense(stats), dense(dy));
        let (n, len) = rows(&x.shape());
        let dx = empty(&x, x.shape(), DType::F32);
        let dgamma = empty(&x, Shape::new([len]), DType::F32);
        let dbeta = empty(&x, Shape::new([len]), DType::F32);
        let unused = [spare(&x), spare(&x)];
        let mut buffers = [
            (&dx.handle, Io::Write),
            (&x.handle, Io::Read),
            (&gamma.handle, Io::Read),
            bind(None, Io::Unused, &unused[0]),
            (&dy.handle, Io::Read),
            (&stats.handle, Io::Read),
        ];
        launch_layer_norm(&x, OP_BACKWARD_INPUT, (n, len, 0.0), n, &buffers);
        buffers[0] = (&dgamma.handle, Io::Write);
        buffers[2] = bind(None, Io::Unused, &unused[1]);
        buffers[3] = (&dbeta.handle, Io::Write);
        launch_layer_norm(&x, OP_BACKWARD_PARAMS, (n, len, 0.0), len, &buffers);
        (dx, dgamma, dbeta)
    }
}

/// One launch of `threads` threads on `on`'s device over `buffers` (the shader's bindings
/// 0–5), for `n` rows of `len` values and ε.
fn launch_layer_norm(
    on: &CubeTensor,
    op: u32,
    (n, len, epsilon): (usize, usize, f32),
    threads: usize,
    buffers: &[(&Handle, Io); 6],
) {
    let word = |v: usize| u32::try_from(v).expect("tensor too large");
    let params = [op, word(n), word(len), epsilon.to_bits()];
    launch(
        on,
        LayerNormKernel,
        thread_grid(threads),
        buffers,
        &[Block::Kept(&params)],
    );
}

// ---- CPU: the same formulas in Rust ----------------------------------------------------------

/// y and (μ, r) of each row of `x`.
struct ForwardCpu<'a> {
    x: &'a [f32],
    gamma: &'a [f32],
    beta: &'a [f32],
    epsilon: f32,
}

impl Rows<2> for ForwardCpu<'_> {
    #[inline(always)]
    fn row(&self, r: usize, [y, stats]: [&mut [f32]; 2]) {
        let len = y.len();
        let x = &self.x[r * len..(r + 1) * len];
        let n = len as f32;
        let mean = sum_by_lanes([x], |[v]| v) / n;
        let variance = sum_by_lanes([x], |[v]| (v - mean) * (v - mean)) / n;
        let rstd = 1.0 / (variance + self.epsilon).sqrt();
        let terms = x.iter().zip(self.gamma).zip(self.beta);
        for (y, ((&x, &gamma), &beta)) in y.iter_mut().zip(terms) {
            *y = (x - mean) * rstd * gamma + beta;
        }
        stats.copy_from_slice(&[mean, rstd]);
    }
}

/// The inputs of the backward pass.
struct BackwardCpu<'a> {
    x: &'a [f32],
    gamma: &'a [f32],
    stats: &'a [f32],
    dy: &'a [f32],
    len: usize,
}

impl BackwardCpu<'_> {
    /// Row `r` of x and of dy, and its (μ, r).
    #[inline(always)]
    fn row_inputs(&self, r: usize) -> (&[f32], &[f32], f32, f32) {
        let rows = r * self.len..(r + 1) * self.len;
        let (x, dy) = (&self.x[rows.clone()], &self.dy[rows]);
        (x, dy, self.stats[2 * r], self.stats[2 * r + 1])
    }
}

impl Rows<1> for BackwardCpu<'_> {
    #[inline(always)]
    fn row(&self, r: usize, [dx]: [&mut [f32]; 1]) {
        let (x, dy, mean, rstd) = self.row_inputs(r);
        let n = self.len as f32;
        let mean_g = sum_by_lanes([dy, self.gamma], |[d, gamma]| d * gamma) / n;
        let terms = [x, dy, self.gamma];
        let mean_gx = sum_by_lanes(terms, |[v, d, gamma]| d * gamma * ((v - mean) * rstd)) / n;
        for (dx, ((&v, &d), &gamma)) in dx.iter_mut().zip(x.iter().zip(dy).zip(self.gamma)) {
            let xhat = (v - mean) * rstd;
            *dx = rstd * (d * gamma - mean_g - xhat * mean_gx);
        }
    }
}

impl RowSums for BackwardCpu<'_> {
    /// Σ dy·x̂ into `acc[..len]`, Σ dy into `acc[len..]`.
    #[inline(always)]
    fn add_row(&self, r: usize, acc: &mut [f64]) {
        let (x, dy, mean, rstd) = self.row_inputs(r);
        let (gx, g) = acc.split_at_mut(self.len);
        for ((gx, g), (&v, &d)) in gx.iter_mut().zip(g).zip(x.iter().zip(dy)) {
            *gx += f64::from(d * ((v - mean) * rstd));
            *g += f64::from(d);
        }
    }
}

impl LayerNormBackend for Flex {
    fn layer_norm_forward(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f32,
    ) -> (FlexTensor, FlexTensor) {
        let (xv, shape) = (values(&x), x.shape());
        let n = rows(&shape).0;
        let (mut y, mut stats) = (vec![0.0f32; xv.len()], vec![0.0f32; 2 * n]);
        let kernel = ForwardCpu {
            x: &xv,
            gamma: &values(&gamma),
            beta: &values(&beta),
            epsilon,
        };
        par_rows(n, [&mut y, &mut stats], &kernel);
        (
            flex_tensor(y, shape),
            flex_tensor(stats, Shape::new([n, 2])),
        )
    }

    fn layer_norm_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        stats: FlexTensor,
        dy: FlexTensor,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (xv, shape) = (values(&x), x.shape());
        let (n, len) = rows(&shape);
        let (gamma, stats, dy) = (values(&gamma), values(&stats), values(&dy));
        let kernel = BackwardCpu {
            x: &xv,
            gamma: &gamma,
            stats: &stats,
            dy: &dy,
            len,
        };
        let mut dx = vec![0.0f32; xv.len()];
        par_rows(n, [&mut dx], &kernel);
        let sums = par_row_sums(n, 2 * len, &kernel);
        let column = |part: usize| {
            let v = sums[part * len..(part + 1) * len].iter().map(|&s| s as f32);
            flex_tensor(v.collect(), Shape::new([len]))
        };
        (flex_tensor(dx, shape), column(0), column(1))
    }
}

// ---- autodiff: the backward pass is the op above ----------------------------------------------

#[derive(Debug)]
struct LayerNormGrad;

impl<B: LayerNormBackend> Backward<B, 3> for LayerNormGrad {
    /// x, γ and the forward's stats.
    type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, gamma, stats) = ops.state;
        let dy = grads.consume::<B>(&ops.node);
        let (dx, dgamma, dbeta) = B::layer_norm_backward(x, gamma, stats, dy);
        let [x_node, gamma_node, beta_node] = ops.parents;
        for (node, grad) in [(x_node, dx), (gamma_node, dgamma), (beta_node, dbeta)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: LayerNormBackend, C: CheckpointStrategy> LayerNormBackend for Autodiff<B, C> {
    fn layer_norm_forward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (xp, gp, bp) = (
            x.primitive().clone(),
            gamma.primitive().clone(),
            beta.primitive().clone(),
        );
        let (y, stats) = B::layer_norm_forward(xp.clone(), gp.clone(), bp, epsilon);
        let y = match LayerNormGrad
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((xp, gp, stats.clone()), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        (y, Self::from_inner(stats))
    }

    /// Not differentiable again: the results are constants.
    fn layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        dy: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (dx, dgamma, dbeta) = B::layer_norm_backward(
            Self::inner(x),
            Self::inner(gamma),
            Self::inner(stats),
            Self::inner(dy),
        );
        (
            Self::from_inner(dx),
            Self::from_inner(dgamma),
            Self::from_inner(dbeta),
        )
    }
}
