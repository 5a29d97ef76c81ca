// PAC-tuning's noise generator, shared: src/pac/noise.rs and src/pac/noise_adam.rs put this
// file in front of their own shader (WGSL has no includes); `tau_quad` in noise.rs is its twin.
//
// τ for the quad q (elements 4q .. 4q + 3) of trainable tensor j at (seed, step):
//   (x0, x1, x2, x3) = Philox4x32-10(counter = (q, j, 0, 0), key = (seed, step))
//   r = sqrt(−2 ln u1) with u1 = ((x0 >> 8) + 1) · 2⁻²⁴ ∈ (0, 1],  a = (x1 >> 8) · 2⁻²⁴ turns
//   τ_4q = r cos 2πa,  τ_4q+1 = r sin 2πa;  likewise x2, x3 for τ_4q+2, τ_4q+3;
//   every τ clamped to [−2, 2] (`normal_quad`: the same draws unclamped).
// Both Box–Muller outputs of both pairs: one Philox call per four τ.
// ln and cos are Cephes' f32 polynomials (logf, sinf, cosf) after an exact range reduction, not
// the WGSL built-ins, which WGSL and Vulkan let be far off (cos to 2⁻¹¹, log to 2⁻²¹ absolute
// near 1; lavapipe's built-ins put τ up to 2.5·10⁻⁵ off); sin is cos a quarter turn on, taken
// exactly in the integer angle. With only +, −, × (correctly rounded in Vulkan) and sqrt left,
// τ matches the Rust twin to about an ulp on any device (a driver may fuse a multiply-add or
// round sqrt differently).

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

fn philox(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
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

// (r cos 2πa, r sin 2πa) from one word pair; sin 2πa = cos 2π(a + ¾).
fn box_muller(x: u32, y: u32) -> vec2<f32> {
    let r = sqrt(-2.0 * ln_unit(f32((x >> 8u) + 1u) * TWO_POW_MINUS_24));
    let n = y >> 8u;
    return vec2<f32>(r * cos_turn(n), r * cos_turn((n + 0xC00000u) & 0xFFFFFFu));
}

// The four normal draws of quad q before clipping (K(λ)'s prior models use them so).
fn normal_quad(q: u32, j: u32, seed: u32, step: u32) -> vec4<f32> {
    let w = philox(vec4<u32>(q, j, 0u, 0u), vec2<u32>(seed, step));
    return vec4<f32>(box_muller(w.x, w.y), box_muller(w.z, w.w));
}

fn tau_quad(q: u32, j: u32, seed: u32, step: u32) -> vec4<f32> {
    return clamp(normal_quad(q, j, seed, step), vec4<f32>(-2.0), vec4<f32>(2.0));
}
