// Exact GELU, x·Φ(x), and its gradient. Launched only by src/ops/gelu.rs, whose CPU twin
// computes the same formulas.
//
// One thread per quad of elements 4q .. 4q + 3, 256 threads per workgroup, workgroups on a 2-D
// grid (rows of GRID_WIDTH in src/util/kernel/launch.rs). Every storage binding is read_write, as cubecl
// binds them.

struct Params {
    op: u32,  // OP_FORWARD or OP_BACKWARD
    n: u32,   // elements
    pad0: u32,
    pad1: u32,
}

const OP_FORWARD: u32 = 0u;   // out = x·Φ(x)
const OP_BACKWARD: u32 = 1u;  // out = dy·(Φ(x) + x·φ(x))

const FRAC_1_SQRT_2: f32 = 0.70710678118654752;
const FRAC_1_SQRT_2PI: f32 = 0.39894228040143268;

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> params_buffer: Params;

// erfc(z) for z ≥ 0 as t·exp(−z² + P(t)), t = 1/(1 + z/2): the Chebyshev fit of Numerical
// Recipes' erfcc, relative error below 1.2e-7.
fn erfc_nonneg(z: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * z);
    var poly = 0.17087277;
    poly = poly * t - 0.82215223;
    poly = poly * t + 1.48851587;
    poly = poly * t - 1.13520398;
    poly = poly * t + 0.27886807;
    poly = poly * t - 0.18628806;
    poly = poly * t + 0.09678418;
    poly = poly * t + 0.37409196;
    poly = poly * t + 1.00002368;
    poly = poly * t - 1.26551223;
    return t * exp(poly - z * z);
}

// Φ(x) = erfc(−x/√2)/2.
fn normal_cdf(v: f32) -> f32 {
    let half_tail = 0.5 * erfc_nonneg(abs(v) * FRAC_1_SQRT_2);
    return select(half_tail, 1.0 - half_tail, v >= 0.0);
}

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    // Read once: a store may alias a read_write binding, which would force fresh loads.
    let params = params_buffer;
    let q = (group.y * groups.x + group.x) * 256u + lane;
    for (var k = 0u; k < 4u && 4u * q + k < params.n; k++) {
        let i = 4u * q + k;
        let v = x[i];
        if params.op == OP_FORWARD {
            out[i] = v * normal_cdf(v);
        } else {
            let density = FRAC_1_SQRT_2PI * exp(-0.5 * v * v);
            out[i] = dy[i] * (normal_cdf(v) + v * density);
        }
    }
}
