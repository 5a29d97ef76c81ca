//! The noise of PAC-tuning: τ ~ N(0, I) clipped to [−2, 2], regenerated whenever it is needed
//! instead of stored.
//!
//! τ comes in quads: elements 4q .. 4q + 3 of trainable tensor `j` at (`seed`, `step`) are
//! [`tau_quad`]: Philox4x32-10 with key (seed, step) and counter (q, j, 0, 0), then Box–Muller in
//! f32 on both word pairs, keeping both the cosine and the sine output (one Philox call per four
//! τ). On wgpu devices the work runs in shaders/noise.wgsl behind shaders/philox.wgsl (launched
//! only from here; shaders/noise_adam.wgsl and shaders/kl.wgsl draw the same τ); on the CPU
//! device it runs [`tau_lanes`], bit-identical to [`tau_quad`]. The Philox words are identical
//! on both. τ takes ln and cos from polynomials built of +, −, × (not the WGSL built-ins, which
//! Vulkan lets be far off), so it agrees to about an ulp: a driver may still fuse a multiply-add
//! or round sqrt differently (tests/kernels/pac_kernels.rs measures by how much).
//!
//! Inputs may live on an autodiff device (their values are used); every result is a plain tensor
//! on the inner device, and none of these operations is recorded for autodiff.

use std::borrow::Cow;
use std::f32::consts::TAU;

use burn::backend::Dispatch;
use burn::backend::flex::FlexTensor;
use burn::backend::wgpu::CubeTensor;
use burn::backend::{Cube, Flex, TensorMetadata};
use burn::tensor::{DType, Device, Shape, Tensor};

use super::backend::{PacBackend, Tau};
use crate::util::kernel::cpu::{
    Blocks, LANES, block, exp_f32, flex_tensor, lanes, par_map, values,
};
use crate::util::kernel::launch::{
    Block, Io, bind, dense, empty, launch, quad_grid, spare, wgsl_kernel,
};

/// Where the τ of an operation comes from.
#[derive(Clone)]
// `Given` is for parity tests; boxing it would only burden their call sites.
#[allow(clippy::large_enum_variant)]
pub enum NoiseSource<const D: usize> {
    /// The generator, keyed by (seed, step); the tensor id comes with each call.
    Philox { seed: u32, step: u32 },
    /// A τ tensor of θ's shape, used exactly as given (for parity tests against recorded noise).
    Given(Tensor<D>),
}

impl<const D: usize> NoiseSource<D> {
    pub(super) fn to_dispatch(&self) -> Tau<Dispatch> {
        match self {
            Self::Philox { seed, step } => Tau::Philox {
                seed: *seed,
                step: *step,
            },
            Self::Given(tau) => Tau::Given(tau.clone().inner().into_dispatch()),
        }
    }
}

/// θ' = θ + exp(p)·τ for trainable tensor `j`.
pub fn inject<const D: usize>(
    theta: Tensor<D>,
    p: &Tensor<D>,
    j: u32,
    noise: &NoiseSource<D>,
) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as PacBackend>::pac_inject(
        theta.inner().into_dispatch(),
        p.clone().inner().into_dispatch(),
        noise.to_dispatch(),
        j,
    ))
}

/// θ + s·z for trainable tensor `j`, z ~ N(0, I) unclipped: the draws behind τ at (`seed`,
/// `step`) before clipping. K(λ)'s prior models, drawn and applied in one pass on the device.
pub fn prior(theta: Tensor<1>, scale: f32, seed: u32, step: u32, j: u32) -> Tensor<1> {
    Tensor::from_dispatch(<Dispatch as PacBackend>::pac_prior(
        theta.inner().into_dispatch(),
        scale,
        seed,
        step,
        j,
    ))
}

/// τ itself for trainable tensor `j`, of shape `shape`.
pub fn draw<const D: usize>(
    shape: [usize; D],
    device: &Device,
    seed: u32,
    step: u32,
    j: u32,
) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as PacBackend>::pac_draw(
        anchor(device),
        Shape::from(shape),
        seed,
        step,
        j,
    ))
}

/// A one-element tensor that tells the extension which device to run on.
fn anchor(device: &Device) -> burn::backend::DispatchTensor {
    Tensor::<1>::empty([1], device).inner().into_dispatch()
}

/// Philox4x32-10 (Salmon et al., SC 2011): the four output words for `counter` under `key`.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    const M0: u32 = 0xD251_1F53;
    const M1: u32 = 0xCD9E_8D57;
    const W0: u32 = 0x9E37_79B9;
    const W1: u32 = 0xBB67_AE85;
    let mulhilo = |a: u32, b: u32| {
        let product = u64::from(a) * u64::from(b);
        ((product >> 32) as u32, product as u32)
    };
    let (mut c, mut k) = (counter, key);
    for _ in 0..10 {
        let (hi0, lo0) = mulhilo(M0, c[0]);
        let (hi1, lo1) = mulhilo(M1, c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
        k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
    }
    c
}

/// τ of the quad `q` (elements 4q .. 4q + 3) of trainable tensor `j` at (`seed`, `step`): the
/// reference the WGSL kernels are tested against, operation for operation.
pub fn tau_quad(seed: u32, step: u32, j: u32, q: u32) -> [f32; 4] {
    normal_quad(seed, step, j, q).map(|z| z.clamp(-2.0, 2.0))
}

/// The four normal draws of quad `q` before clipping (shaders/philox.wgsl's `normal_quad`).
pub fn normal_quad(seed: u32, step: u32, j: u32, q: u32) -> [f32; 4] {
    let [x0, x1, x2, x3] = philox4x32_10([q, j, 0, 0], [seed, step]);
    let ([a, b], [c, d]) = (box_muller(x0, x1), box_muller(x2, x3));
    [a, b, c, d]
}

/// τ of element `i` of trainable tensor `j` at (`seed`, `step`).
pub fn tau(seed: u32, step: u32, j: u32, i: u32) -> f32 {
    tau_quad(seed, step, j, i / 4)[(i % 4) as usize]
}

/// Both Box–Muller outputs of one word pair: r·cos 2πa and r·sin 2πa with
/// r = sqrt(−2 ln u1), u1 = ((x >> 8) + 1)·2⁻²⁴, a = (y >> 8)·2⁻²⁴.
#[inline(always)]
fn box_muller(x: u32, y: u32) -> [f32; 2] {
    const TWO_POW_MINUS_24: f32 = 1.0 / 16_777_216.0;
    // Through i32 (exact: at most 2²⁴), which converts in one vector instruction; u32 does not.
    let m = ((x >> 8) + 1) as i32;
    let r = (-2.0 * ln_unit(m as f32 * TWO_POW_MINUS_24)).sqrt();
    let [cos, sin] = cos_sin_turn(y >> 8);
    [r * cos, r * sin]
}

/// Philox calls the CPU kernels interleave: independent rounds let the CPU overlap their
/// multiplies' latency, which bounds one call at a time.
const QUADS: usize = LANES / 4;

/// [`tau`] of elements `i0..i0 + LANES` (`i0` a multiple of 4), call for call the operations of
/// [`tau_quad`] (so the same bits): the CPU kernels' generator.
#[inline(always)]
pub fn tau_lanes(seed: u32, step: u32, j: u32, i0: u32) -> [f32; LANES] {
    let z = normal_lanes(seed, step, j, i0);
    lanes!(l in LANES => z[l].clamp(-2.0, 2.0))
}

/// [`normal_quad`]'s draws of elements `i0..i0 + LANES`, the same bits.
#[inline(always)]
pub fn normal_lanes(seed: u32, step: u32, j: u32, i0: u32) -> [f32; LANES] {
    const M0: u32 = 0xD251_1F53;
    const M1: u32 = 0xCD9E_8D57;
    const W0: u32 = 0x9E37_79B9;
    const W1: u32 = 0xBB67_AE85;
    debug_assert!(i0.is_multiple_of(4), "τ blocks start on a quad");
    let mut c0: [u32; QUADS] = lanes!(l in QUADS => (i0 / 4).wrapping_add(l as u32));
    let mut c1 = [j; QUADS];
    let mut c2 = [0u32; QUADS];
    let mut c3 = [0u32; QUADS];
    let mut k = [seed, step];
    for _ in 0..10 {
        for l in 0..QUADS {
            let p0 = u64::from(M0) * u64::from(c0[l]);
            let p1 = u64::from(M1) * u64::from(c2[l]);
            (c0[l], c1[l], c2[l], c3[l]) = (
                (p1 >> 32) as u32 ^ c1[l] ^ k[0],
                p1 as u32,
                (p0 >> 32) as u32 ^ c3[l] ^ k[1],
                p0 as u32,
            );
        }
        k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
    }
    // Word pair p is (c0, c1) of quad p/2 for even p, (c2, c3) for odd; its two τ are elements
    // 2p and 2p + 1. Pair by pair in plain arrays, with no branches: the loops vectorise.
    let x: [u32; 2 * QUADS] =
        lanes!(p in 2 * QUADS => if p % 2 == 0 { c0[p / 2] } else { c2[p / 2] });
    let y: [u32; 2 * QUADS] =
        lanes!(p in 2 * QUADS => if p % 2 == 0 { c1[p / 2] } else { c3[p / 2] });
    let mut out = [0.0; LANES];
    for p in 0..2 * QUADS {
        let [a, b] = box_muller(x[p], y[p]);
        out[2 * p] = a;
        out[2 * p + 1] = b;
    }
    out
}

/// ln u for u = m · 2⁻²⁴, m ∈ [1, 2²⁴]: u = 2ᵉ·f with f ∈ [√½, √2), then Cephes' logf
/// polynomial (max error 1.4 ulp over all 2²⁴ inputs). Constants as written in the shader.
#[allow(clippy::excessive_precision)]
#[inline(always)]
fn ln_unit(u: f32) -> f32 {
    const LN_2_HI: f32 = 0.693359375;
    const LN_2_LO: f32 = -2.12194440e-4;
    let bits = u.to_bits();
    let e = ((bits >> 23) as i32 - 127) as f32;
    let f = f32::from_bits((bits & 0x007F_FFFF) | 0x3F80_0000);
    // Selects, not a branch, so that lanes vectorise.
    let high = f > std::f32::consts::SQRT_2;
    let (f, e) = (
        if high { f * 0.5 } else { f },
        if high { e + 1.0 } else { e },
    );
    let x = f - 1.0;
    let z = x * x;
    let mut y = 7.0376836292e-2;
    y = y * x - 1.1514610310e-1;
    y = y * x + 1.1676998740e-1;
    y = y * x - 1.2420140846e-1;
    y = y * x + 1.4249322787e-1;
    y = y * x - 1.6668057665e-1;
    y = y * x + 2.0000714765e-1;
    y = y * x - 2.4999993993e-1;
    y = y * x + 3.3333331174e-1;
    y = y * x * z;
    y += LN_2_LO * e;
    y -= 0.5 * z;
    x + y + LN_2_HI * e
}

/// (cos, sin)(2π n · 2⁻²⁴) for n ∈ [0, 2²⁴): the quadrant from n's top bits, the rest
/// t ∈ [−π/4, π/4) into Cephes' sinf and cosf polynomials (max error 9·10⁻⁸ over all 2²⁴
/// inputs), shared by both. The shader calls its `cos_turn` for each, the sine a quarter turn
/// on: the same t and polynomials, so the same numbers.
#[allow(clippy::excessive_precision)]
#[inline(always)]
fn cos_sin_turn(n: u32) -> [f32; 2] {
    const TWO_PI_OVER_2_24: f32 = TAU / 16_777_216.0;
    let a = n + 0x20_0000;
    let t = ((a & 0x3F_FFFF) as i32 - 0x20_0000) as f32 * TWO_PI_OVER_2_24;
    let z = t * t;
    let sin = ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1) * z * t + t;
    let cos = {
        let y =
            ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2) * z * z;
        y - 0.5 * z + 1.0
    };
    // Quadrant q: (cos, sin) = (C, S), (−S, C), (−C, −S), (S, −C).
    let q = (a >> 22) & 3;
    let (u, v) = if q & 1 == 0 { (cos, sin) } else { (sin, cos) };
    [
        if (q + 1) & 2 == 0 { u } else { -u },
        if q & 2 == 0 { v } else { -v },
    ]
}

// ---- wgpu: shaders/noise.wgsl ----------------------------------------------------------------

wgsl_kernel!(NoiseKernel, "philox.wgsl", "noise.wgsl");

/// The `op` codes of shaders/noise.wgsl.
const OP_DRAW: u32 = 0;
const OP_INJECT: u32 = 1;
const OP_PRIOR: u32 = 2;

/// τ's parameters for a shader: (seed, step, given τ laid out densely, if any), checked
/// against the `n` elements it must cover.
pub(super) fn tau_params(tau: Tau<Cube>, n: usize) -> (u32, u32, Option<CubeTensor>) {
    match tau {
        Tau::Philox { seed, step } => (seed, step, None),
        Tau::Given(t) => {
            assert_eq!(t.shape().num_elements(), n, "given τ must match θ's shape");
            (0, 0, Some(dense(t)))
        }
    }
}

/// One launch of shaders/noise.wgsl; `theta` and `p` are None for the ops that read nothing.
fn launch_noise(
    op: u32,
    out: &CubeTensor,
    inputs: (Option<&CubeTensor>, Option<&CubeTensor>),
    tau: Tau<Cube>,
    j: u32,
    scale: f32,
) {
    let n = out.shape().num_elements();
    let (seed, step, given) = tau_params(tau, n);
    let unused = [spare(out), spare(out), spare(out)];
    let buffers = [
        (&out.handle, Io::Write),
        bind(inputs.0, Io::Read, &unused[0]),
        bind(inputs.1, Io::Read, &unused[1]),
        bind(given.as_ref(), Io::Read, &unused[2]),
    ];
    let tensor = [
        op,
        u32::try_from(n).expect("tensor too large"),
        j,
        u32::from(given.is_some()),
        scale.to_bits(),
        0,
        0,
        0,
    ];
    launch(
        out,
        NoiseKernel,
        quad_grid(n),
        &buffers,
        &[Block::Kept(&tensor), Block::Step(&[seed, step])],
    );
}

pub(super) fn inject_wgsl(theta: CubeTensor, p: CubeTensor, tau: Tau<Cube>, j: u32) -> CubeTensor {
    let (theta, p) = (dense(theta), dense(p));
    assert_eq!(theta.shape(), p.shape(), "θ and p must have the same shape");
    let out = empty(&theta, theta.shape(), DType::F32);
    launch_noise(OP_INJECT, &out, (Some(&theta), Some(&p)), tau, j, 0.0);
    out
}

pub(super) fn prior_wgsl(
    theta: CubeTensor,
    scale: f32,
    seed: u32,
    step: u32,
    j: u32,
) -> CubeTensor {
    let theta = dense(theta);
    let out = empty(&theta, theta.shape(), DType::F32);
    let philox = Tau::Philox { seed, step };
    launch_noise(OP_PRIOR, &out, (Some(&theta), None), philox, j, scale);
    out
}

/// τ for every element of `shape`.
pub(super) fn draw_wgsl(on: CubeTensor, shape: Shape, seed: u32, step: u32, j: u32) -> CubeTensor {
    let out = empty(&on, shape, DType::F32);
    launch_noise(
        OP_DRAW,
        &out,
        (None, None),
        Tau::Philox { seed, step },
        j,
        0.0,
    );
    out
}

// ---- CPU: the same formulas in Rust ----------------------------------------------------------

/// τ of one CPU call, a block of [`LANES`] elements at a time.
pub(super) enum CpuTau<'a> {
    Philox { seed: u32, step: u32, j: u32 },
    Given(Cow<'a, [f32]>),
}

impl<'a> CpuTau<'a> {
    pub(super) fn new(tau: &'a Tau<Flex>, j: u32, n: usize) -> Self {
        match tau {
            Tau::Philox { seed, step } => Self::Philox {
                seed: *seed,
                step: *step,
                j,
            },
            Tau::Given(t) => {
                let v = values(t);
                assert_eq!(v.len(), n, "given τ must match θ's shape");
                Self::Given(v)
            }
        }
    }

    /// τ of the block at `i0` (values past the end, drawn or padded, are thrown away).
    #[inline(always)]
    pub(super) fn block(&self, i0: usize) -> [f32; LANES] {
        match self {
            Self::Philox { seed, step, j } => tau_lanes(*seed, *step, *j, i0 as u32),
            Self::Given(v) => block(v, i0),
        }
    }
}

/// θ + exp(p)·τ, block by block.
struct Inject<'a> {
    theta: &'a [f32],
    p: &'a [f32],
    tau: CpuTau<'a>,
}

impl Blocks<1> for Inject<'_> {
    #[inline(always)]
    fn block(&self, i0: usize) -> [[f32; LANES]; 1] {
        let (t, theta, p) = (self.tau.block(i0), block(self.theta, i0), block(self.p, i0));
        [lanes!(l in LANES => theta[l] + exp_f32(p[l]) * t[l])]
    }
}

pub(super) fn inject_cpu(theta: FlexTensor, p: FlexTensor, tau: Tau<Flex>, j: u32) -> FlexTensor {
    assert_eq!(theta.shape(), p.shape(), "θ and p must have the same shape");
    let (theta_v, p_v) = (values(&theta), values(&p));
    let n = theta_v.len();
    let tau = CpuTau::new(&tau, j, n);
    let [out] = par_map(
        n,
        &Inject {
            theta: &theta_v,
            p: &p_v,
            tau,
        },
    );
    flex_tensor(out, theta.shape())
}

/// θ + s·z (z unclipped; `theta` None: z alone, clipped, i.e. τ), block by block.
struct Draw<'a> {
    theta: Option<&'a [f32]>,
    scale: f32,
    key: (u32, u32, u32),
}

impl Blocks<1> for Draw<'_> {
    #[inline(always)]
    fn block(&self, i0: usize) -> [[f32; LANES]; 1] {
        let (seed, step, j) = self.key;
        match self.theta {
            Some(theta) => {
                let (z, theta) = (normal_lanes(seed, step, j, i0 as u32), block(theta, i0));
                [lanes!(l in LANES => theta[l] + self.scale * z[l])]
            }
            None => [tau_lanes(seed, step, j, i0 as u32)],
        }
    }
}

pub(super) fn prior_cpu(theta: FlexTensor, scale: f32, seed: u32, step: u32, j: u32) -> FlexTensor {
    let theta_v = values(&theta);
    let draw = Draw {
        theta: Some(&theta_v),
        scale,
        key: (seed, step, j),
    };
    let [out] = par_map(theta_v.len(), &draw);
    flex_tensor(out, theta.shape())
}

pub(super) fn draw_cpu(shape: Shape, seed: u32, step: u32, j: u32) -> FlexTensor {
    let draw = Draw {
        theta: None,
        scale: 0.0,
        key: (seed, step, j),
    };
    let [out] = par_map(shape.num_elements(), &draw);
    flex_tensor(out, shape)
}
