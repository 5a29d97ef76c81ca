//! The KL term of PAC-tuning, per trainable tensor j: the sums the closed form needs
//! (with y = 2(p − b_j): E_j = Σ (e^y − 1), F_j = Σ (e^y − 1 − y), D_j = Σ (θ − θ0)²). (Its pull
//! of θ towards θ0 rides on the noise-Adam's pass, see [`super::noise_adam`].) Summing relative
//! to b_j avoids the cancellation of Σ exp(2p) against d_j: where p = b_j, E_j and F_j are
//! exactly 0, as are KL and ∂KL/∂b_j.
//!
//! On wgpu devices the work runs in shaders/kl.wgsl (launched only from here), with a
//! workgroup tree reduction instead of Burn's whole-tensor `sum()`, which is wrong on lavapipe
//! past ~262k elements; on the CPU device it runs the same formulas in Rust, summing in f64.
//! Results stay on the device: the caller reads a number only where it needs one. PAC stage 1
//! injects its noise in the same pass (it reads θ and p anyway): see [`sums`].
//!
//! Inputs may live on an autodiff device (their values are used); every result is a plain tensor
//! on the inner device, and none of these operations is recorded for autodiff.

use burn::backend::flex::FlexTensor;
use burn::backend::wgpu::CubeTensor;
use burn::backend::{Cube, Dispatch, Flex, TensorMetadata};
use burn::cubecl::CubeCount;
use burn::tensor::{DType, Shape, Tensor};

use super::backend::{PacBackend, Tau};
use super::noise::{self, NoiseSource, tau_params};
use crate::util::kernel::cpu::{
    BlockSums, LANES, block, expm1_block, flex_tensor, lanes, par_sum, values,
};
use crate::util::kernel::launch::{
    Block, Io, WORKGROUP, bind, dense, empty, launch, spare, step_block, wgsl_kernel,
};

/// Row j of the first result is (E_j, F_j, D_j) for the j-th tensors of the three lists, each
/// flattened to one dimension, and b_j = `b[j]` (host values: on wgpu devices they ride in the
/// step's parameter block, one upload per call); shape [L, 3].
///
/// With `inject`, the same pass also perturbs every θ_j as [`super::noise::inject`] does, with
/// the τ of `inject(j)`: the second result holds θ'_j = θ_j + exp(p_j)·τ_j (PAC stage 1 reads θ
/// and p once for both). Without, it is empty.
///
/// One launch per tensor fills that tensor's partial sums, one more adds them all up.
pub fn sums(
    theta: &[Tensor<1>],
    theta0: &[Tensor<1>],
    p: &[Tensor<1>],
    b: &[f32],
    inject: Option<&dyn Fn(usize) -> NoiseSource<1>>,
) -> (Tensor<2>, Vec<Tensor<1>>) {
    let tensors = theta.len();
    assert!(
        tensors > 0 && theta0.len() == tensors && p.len() == tensors,
        "one θ, θ0 and p per trainable tensor"
    );
    let device = theta[0].clone().inner().device();
    assert_eq!(b.len(), tensors, "one b_j per trainable tensor");
    let mut partials = Tensor::<1>::empty([tensors * SLOTS * 3], &device).into_dispatch();
    let mut injected = Vec::new();
    for j in 0..tensors {
        // Without injection τ is not read; any source fills the argument.
        let tau = inject.map_or(NoiseSource::Philox { seed: 0, step: 0 }, |tau| tau(j));
        let (filled, theta_noisy) = <Dispatch as PacBackend>::pac_kl_partials(
            partials,
            theta[j].clone().inner().into_dispatch(),
            theta0[j].clone().inner().into_dispatch(),
            p[j].clone().inner().into_dispatch(),
            b.to_vec(),
            j as u32,
            tau.to_dispatch(),
            inject.is_some(),
        );
        partials = filled;
        injected.extend(theta_noisy.map(Tensor::from_dispatch));
    }
    let sums = Tensor::from_dispatch(<Dispatch as PacBackend>::pac_kl_finish(partials));
    (sums, injected)
}

/// Partial-sum slots per tensor, which is also the most workgroups one tensor's pass uses.
const SLOTS: usize = 256;

/// The fewest elements a thread of the partial-sums pass adds up (where the tensor allows).
const PER_THREAD: usize = 32;

fn check_partials(shape: &Shape, j: u32) {
    let len = shape.num_elements();
    assert!(
        len.is_multiple_of(3 * SLOTS) && (j as usize) < len / (3 * SLOTS),
        "no partial-sum slots for tensor {j}"
    );
}

// ---- wgpu: shaders/kl.wgsl -------------------------------------------------------------------

wgsl_kernel!(KlKernel, "philox.wgsl", "kl.wgsl");

/// The `op` codes of shaders/kl.wgsl.
const OP_PARTIALS: u32 = 0;
const OP_FINISH: u32 = 1;

pub(super) fn partials_wgsl(
    partials: CubeTensor,
    theta: CubeTensor,
    theta0: CubeTensor,
    p: CubeTensor,
    b: &[f32],
    j: u32,
    inject: Option<Tau<Cube>>,
) -> (CubeTensor, Option<CubeTensor>) {
    let (theta, theta0, p) = (dense(theta), dense(theta0), dense(p));
    assert!((j as usize) < b.len(), "b has no entry {j}");
    let n = theta.shape().num_elements();
    assert!(
        theta0.shape().num_elements() == n && p.shape().num_elements() == n,
        "θ, θ0 and p of tensor {j} differ in size"
    );
    check_partials(&partials.shape(), j);
    // Written in place: `sums` creates `partials` and threads it through alone. (`can_mut` is
    // no test of that: the queued launches of earlier tensors hold the handle too.)
    assert!(
        partials.is_contiguous(),
        "the partial sums are written in place"
    );
    let (seed, step, given, out) = match inject {
        Some(tau) => {
            let (seed, step, given) = tau_params(tau, n);
            (
                seed,
                step,
                given,
                Some(empty(&theta, theta.shape(), DType::F32)),
            )
        }
        None => (0, 0, None, None),
    };
    // Each thread sums at least PER_THREAD elements before the workgroup's tree reduction, whose
    // barriers cost lavapipe far more than the sums.
    let groups = n.div_ceil(WORKGROUP as usize * PER_THREAD).clamp(1, SLOTS);
    let tensor = [
        OP_PARTIALS,
        u32::try_from(n).expect("tensor too large"),
        j,
        u32::from(out.is_some()),
        u32::from(given.is_some()),
        0,
        0,
        0,
    ];
    let unused = [spare(&theta), spare(&theta)];
    launch(
        &theta,
        KlKernel,
        CubeCount::Static(groups as u32, 1, 1),
        &[
            bind(out.as_ref(), Io::Write, &unused[0]),
            (&theta.handle, Io::Read),
            (&theta0.handle, Io::Read),
            (&p.handle, Io::Read),
            (&partials.handle, Io::Write),
            bind(given.as_ref(), Io::Read, &unused[1]),
        ],
        &[
            Block::Kept(&tensor),
            Block::Step(&step_block(&[seed, step], b)),
        ],
    );
    (partials, out)
}

pub(super) fn finish_wgsl(partials: CubeTensor) -> CubeTensor {
    let partials = dense(partials);
    let tensors = partials.shape().num_elements() / (3 * SLOTS);
    assert!(tensors <= 65_535, "at most 65 535 tensors");
    let out = empty(&partials, Shape::new([tensors, 3]), DType::F32);
    let unused = [(); 4].map(|_| spare(&partials));
    launch(
        &partials,
        KlKernel,
        CubeCount::Static(tensors as u32, 1, 1),
        &[
            (&out.handle, Io::Write),
            (&unused[0].handle, Io::Unused),
            (&unused[1].handle, Io::Unused),
            (&unused[2].handle, Io::Unused),
            (&partials.handle, Io::Read),
            (&unused[3].handle, Io::Unused),
        ],
        // The step block's shape with one (unread) b_j: the shader's layout needs one.
        &[
            Block::Kept(&[OP_FINISH, 0, 0, 0, 0, 0, 0, 0]),
            Block::Kept(&[0, 0, 0]),
        ],
    );
    out
}

// ---- CPU: the same formulas in Rust ----------------------------------------------------------

/// Tensor `j`'s slots: its sums, summed in f64, in the first, zeros in the rest.
/// With `inject`, also θ + exp(p)·τ (noise.rs's CPU kernel: the CPU gains nothing from one pass).
/// One tensor's three KL sums on the CPU device: each term in f32 (the shader's formulas),
/// summed in f64.
struct Terms<'a> {
    theta: &'a [f32],
    theta0: &'a [f32],
    p: &'a [f32],
    b_j: f32,
}

impl BlockSums for Terms<'_> {
    #[inline(always)]
    fn sums(&self, i0: usize, len: usize) -> [f64; 3] {
        let (th, th0) = (block(self.theta, i0), block(self.theta0, i0));
        let p = block(self.p, i0);
        let y: [f32; LANES] = lanes!(l in LANES => 2.0 * (p[l] - self.b_j));
        let f = expm1_block(&y, true);
        let mut s = [0.0f64; 3];
        for l in 0..len {
            let d = f64::from(th[l] - th0[l]);
            s[0] += f64::from(f[l] + y[l]);
            s[1] += f64::from(f[l]);
            s[2] += d * d;
        }
        s
    }
}

pub(super) fn partials_cpu(
    partials: FlexTensor,
    theta: FlexTensor,
    theta0: FlexTensor,
    p: FlexTensor,
    b: &[f32],
    j: u32,
    inject: Option<Tau<Flex>>,
) -> (FlexTensor, Option<FlexTensor>) {
    let injected = inject.map(|tau| noise::inject_cpu(theta.clone(), p.clone(), tau, j));
    let (theta, theta0, p) = (values(&theta), values(&theta0), values(&p));
    let b_j = *b.get(j as usize).expect("b has no entry j");
    assert!(
        theta0.len() == theta.len() && p.len() == theta.len(),
        "θ, θ0 and p of tensor {j} differ in size"
    );
    check_partials(&partials.shape(), j);
    let terms = Terms {
        theta: &theta,
        theta0: &theta0,
        p: &p,
        b_j,
    };
    let sums = par_sum(theta.len(), &terms);
    let mut partials = partials;
    assert!(
        partials.is_contiguous() && partials.layout().start_offset() == 0,
        "the partial sums are written in place"
    );
    let j = j as usize;
    let slots = &mut partials.storage_mut::<f32>()[3 * SLOTS * j..3 * SLOTS * (j + 1)];
    slots.fill(0.0);
    slots[..3].copy_from_slice(&sums.map(|s| s as f32));
    (partials, injected)
}

pub(super) fn finish_cpu(partials: FlexTensor) -> FlexTensor {
    let slots = values(&partials);
    let out: Vec<f32> = slots
        .chunks(3 * SLOTS)
        .flat_map(|tensor| {
            let sums = tensor.chunks(3).fold([0.0f64; 3], |s, slot| {
                [
                    s[0] + f64::from(slot[0]),
                    s[1] + f64::from(slot[1]),
                    s[2] + f64::from(slot[2]),
                ]
            });
            sums.map(|s| s as f32)
        })
        .collect();
    let tensors = out.len() / 3;
    flex_tensor(out, Shape::new([tensors, 3]))
}
