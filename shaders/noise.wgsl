// PAC-tuning weight noise. Launched only by src/pac/noise.rs; `tau` there is this file's twin.
//
// τ for element i of trainable tensor j at (seed, step):
//   (x0, x1, _, _) = Philox4x32-10(counter = (i, j, 0, 0), key = (seed, step))
//   u1 = ((x0 >> 8) + 1) · 2⁻²⁴ ∈ (0, 1],   u2 = (x1 >> 8) · 2⁻²⁴ ∈ [0, 1)
//   τ  = clamp(sqrt(−2 ln u1) · cos(2π u2), −2, 2)
// ln and cos are Cephes' f32 polynomials (logf, sinf, cosf) after an exact range reduction, not
// the WGSL built-ins, which WGSL and Vulkan let be far off (cos to 2⁻¹¹, log to 2⁻²¹ absolute
// near 1; lavapipe's built-ins put τ up to 2.5·10⁻⁵ off).
// With only +, −, × (correctly rounded in Vulkan) and sqrt left, τ matches the Rust twin to
// about an ulp on any device (a driver may fuse a multiply-add or round sqrt differently).
//
// One thread per element, 256 per workgroup, workgroups on a 2-D grid (x ≤ 65 535).
// Every storage binding is read_write, as cubecl binds them (tensors share pages).

struct Params {
    op: u32,       // one of the OP_ constants
    n: u32,        // elements
    seed: u32,
    step: u32,
    j: u32,        // trainable tensor: Philox counter word 1 and index into b
    given: u32,    // 1: τ = given[i] instead of Philox
    word: u32,     // OP_WORD: which Philox output word
    kl_coef: f32,  // OP_GRAD_P: 1/(nγ), 0 where the KL term is off
}

const OP_DRAW: u32 = 0u;    // out = τ
const OP_WORD: u32 = 1u;    // out = Philox output word, as raw bits
const OP_INJECT: u32 = 2u;  // out = θ + exp(p)·τ
const OP_REMOVE: u32 = 3u;  // out = θ − exp(p)·τ
const OP_GRAD_P: u32 = 4u;  // out = exp(p)·τ·g + kl_coef·expm1(2(p − b_j))

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;      // θ, or g = ∂loss1/∂θ' for OP_GRAD_P
@group(0) @binding(2) var<storage, read_write> p: array<f32>;
@group(0) @binding(3) var<storage, read_write> b: array<f32>;      // every b_j
@group(0) @binding(4) var<storage, read_write> given: array<f32>;
@group(0) @binding(5) var<storage, read_write> params: Params;

const M0: u32 = 0xD2511F53u;
const M1: u32 = 0xCD9E8D57u;
const W0: u32 = 0x9E3779B9u;
const W1: u32 = 0xBB67AE85u;
const TWO_POW_MINUS_24: f32 = 5.9604644775390625e-8;
const TWO_PI_OVER_2_24: f32 = 3.745070278644561767578125e-7;  // f32(2π) · 2⁻²⁴, exact
const SQRT_2: f32 = 1.4142135623730951;
const LN_2_HI: f32 = 0.693359375;
const LN_2_LO: f32 = -2.12194440e-4;

// (high, low) words of the 64-bit product a·b, from 16-bit limbs: WGSL has no 64-bit integers.
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
    let a0 = a & 0xFFFFu;
    let a1 = a >> 16u;
    let b0 = b & 0xFFFFu;
    let b1 = b >> 16u;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let mid = ((a0 * b0) >> 16u) + (p01 & 0xFFFFu) + (p10 & 0xFFFFu);
    let hi = a1 * b1 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, a * b);
}

fn philox(i: u32) -> vec4<u32> {
    var c = vec4<u32>(i, params.j, 0u, 0u);
    var k = vec2<u32>(params.seed, params.step);
    for (var r = 0u; r < 10u; r++) {
        let r0 = mulhilo(M0, c.x);
        let r1 = mulhilo(M1, c.z);
        c = vec4<u32>(r1.x ^ c.y ^ k.x, r1.y, r0.x ^ c.w ^ k.y, r0.y);
        k += vec2<u32>(W0, W1);
    }
    return c;
}

// ln u for u = m · 2⁻²⁴, m ∈ [1, 2²⁴]: u = 2ᵉ·f with f ∈ [√½, √2), then Cephes' logf polynomial.
fn ln_unit(u: f32) -> f32 {
    let bits = bitcast<u32>(u);
    var e = f32(i32(bits >> 23u) - 127);
    var f = bitcast<f32>((bits & 0x007FFFFFu) | 0x3F800000u);
    if f > SQRT_2 {
        f = 0.5 * f;
        e = e + 1.0;
    }
    let x = f - 1.0;
    let z = x * x;
    var y = 7.0376836292e-2;
    y = y * x - 1.1514610310e-1;
    y = y * x + 1.1676998740e-1;
    y = y * x - 1.2420140846e-1;
    y = y * x + 1.4249322787e-1;
    y = y * x - 1.6668057665e-1;
    y = y * x + 2.0000714765e-1;
    y = y * x - 2.4999993993e-1;
    y = y * x + 3.3333331174e-1;
    y = y * x * z;
    y = y + LN_2_LO * e;
    y = y - 0.5 * z;
    return x + y + LN_2_HI * e;
}

// cos(2π n · 2⁻²⁴) for n ∈ [0, 2²⁴): the quadrant from n's top bits, the rest t ∈ [−π/4, π/4)
// into Cephes' sinf or cosf polynomial.
fn cos_turn(n: u32) -> f32 {
    let a = n + 0x200000u;
    let t = f32(i32(a & 0x3FFFFFu) - 0x200000) * TWO_PI_OVER_2_24;
    let z = t * t;
    // Quadrant q: cos, −sin, −cos, sin.
    let q = (a >> 22u) & 3u;
    let value = select(sin_poly(t, z), cos_poly(z), (q & 1u) == 0u);
    return select(-value, value, ((q + 1u) & 2u) == 0u);
}

fn sin_poly(t: f32, z: f32) -> f32 {
    return ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1) * z * t + t;
}

fn cos_poly(z: f32) -> f32 {
    let y = ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2) * z * z;
    return y - 0.5 * z + 1.0;
}

fn tau(i: u32) -> f32 {
    if params.given == 1u {
        return given[i];
    }
    let w = philox(i);
    let u1 = f32((w.x >> 8u) + 1u) * TWO_POW_MINUS_24;
    return clamp(sqrt(-2.0 * ln_unit(u1)) * cos_turn(w.y >> 8u), -2.0, 2.0);
}

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let i = (group.y * groups.x + group.x) * 256u + lane;
    if i >= params.n {
        return;
    }
    switch params.op {
        case OP_DRAW: {
            out[i] = tau(i);
        }
        case OP_WORD: {
            out[i] = bitcast<f32>(philox(i)[params.word]);
        }
        case OP_INJECT: {
            out[i] = x[i] + exp(p[i]) * tau(i);
        }
        case OP_REMOVE: {
            out[i] = x[i] - exp(p[i]) * tau(i);
        }
        default: {
            let pi = p[i];
            out[i] = exp(pi) * tau(i) * x[i] + params.kl_coef * expm1(2.0 * (pi - b[params.j]));
        }
    }
}

// e^y − 1, exact to a few ulp near 0 where exp(y) − 1 cancels (Taylor to y^8 for |y| < 0.5):
// p = b gives exactly 0, as the closed-form KL gradient requires.
fn expm1(y: f32) -> f32 {
    if abs(y) < 0.5 {
        return y + y * y * (0.5 + y * (1.0 / 6.0 + y * (1.0 / 24.0 + y * (1.0 / 120.0
            + y * (1.0 / 720.0 + y * (1.0 / 5040.0 + y * (1.0 / 40320.0)))))));
    }
    return exp(y) - 1.0;
}
