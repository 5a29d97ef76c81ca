//! The backend extension behind [`noise`](super::noise), [`noise_adam`](super::noise_adam) and
//! [`kl`](super::kl): its trait and the types its methods take. WGSL kernels run it on wgpu
//! devices (`Cube`), plain Rust on the CPU device (`Flex`); `backend_impls.rs` forwards
//! each method to the file that owns the shader. Callers use the `Tensor` functions there.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, ExtensionType, backend_extension};
use burn::tensor::Shape;

/// Where τ comes from.
#[derive(ExtensionType)]
pub enum Tau<B: Backend> {
    /// Philox4x32-10 keyed by (seed, step), counter (element index / 4, tensor id): four τ per
    /// call.
    Philox { seed: u32, step: u32 },
    /// A caller's τ, used as given.
    Given(FloatTensor<B>),
}

/// The scalars of one update of a p_j, in f32 as the kernels use them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamScalars {
    /// 1/(nγ): the weight of the KL term in p's gradient.
    pub kl_coef: f32,
    pub beta1: f32,
    pub one_minus_beta1: f32,
    pub beta2: f32,
    pub one_minus_beta2: f32,
    /// The bias corrections 1 − β1^t and 1 − β2^t.
    pub c1: f32,
    pub c2: f32,
    pub eps: f32,
    pub lr: f32,
}

/// One tensor's inputs to the noise-Adam kernel, on one backend; `moments` (m then v, 2n
/// values) is None before the first step.
pub struct Inputs<T> {
    pub p: T,
    pub g: T,
    pub theta: T,
    pub theta0: T,
    pub moments: Option<T>,
}

#[backend_extension(Cube, Flex)]
pub trait PacBackend: Backend {
    /// θ + exp(p)·τ for tensor `j`.
    fn pac_inject(
        theta: FloatTensor<Self>,
        p: FloatTensor<Self>,
        #[extension_type] tau: Tau<Self>,
        j: u32,
    ) -> FloatTensor<Self>;

    /// Stage 1's pass over tensor j after the backward pass (see [`noise_adam`]): the new p,
    /// the new moments `mv` (m then v), θ's gradient with the KL pull, and p's gradient where
    /// `write_grad`; b_j = `b[j]`. With `first` (no moments yet) `mv` is not read. On wgpu
    /// devices p, mv and g are updated in their own buffers where nothing else holds them.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn pac_noise_adam(
        p: FloatTensor<Self>,
        g: FloatTensor<Self>,
        theta: FloatTensor<Self>,
        theta0: FloatTensor<Self>,
        mv: FloatTensor<Self>,
        first: bool,
        #[extension_type] tau: Tau<Self>,
        j: u32,
        b: Vec<f32>,
        scalars: AdamScalars,
        write_grad: bool,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        Option<FloatTensor<Self>>,
    );

    /// θ + `scale`·z for tensor `j`, z the unclipped normal draws behind τ at (seed, step).
    fn pac_prior(
        theta: FloatTensor<Self>,
        scale: f32,
        seed: u32,
        step: u32,
        j: u32,
    ) -> FloatTensor<Self>;

    /// τ of shape `shape` for tensor `j`, on the device of `on`.
    fn pac_draw(
        on: FloatTensor<Self>,
        shape: Shape,
        seed: u32,
        step: u32,
        j: u32,
    ) -> FloatTensor<Self>;

    /// `partials` (256 slots of (E, F, D) per tensor, flat; see [`super::kl`]) with the slots
    /// of tensor `j` filled from its θ, θ0, p and b_j = `b[j]`; where `inject`, also
    /// θ + exp(p)·τ from the same pass (else `tau` is not read).
    #[allow(clippy::too_many_arguments)]
    fn pac_kl_partials(
        partials: FloatTensor<Self>,
        theta: FloatTensor<Self>,
        theta0: FloatTensor<Self>,
        p: FloatTensor<Self>,
        b: Vec<f32>,
        j: u32,
        #[extension_type] tau: Tau<Self>,
        inject: bool,
    ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>);

    /// Each tensor's slots of `partials` summed: shape [L, 3].
    fn pac_kl_finish(partials: FloatTensor<Self>) -> FloatTensor<Self>;
}
