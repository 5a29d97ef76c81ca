// AdamW's update of one trainable tensor, in one pass instead of a dozen element-wise kernels.
// Launched only by src/optim/adamw.rs, whose CPU twin computes the same formulas.
//
// PyTorch's AdamW, operation for operation (so that f32 rounding matches its order):
//
//   m ← m + (g − m)·(1 − β1)            m.lerp_(g, 1 − β1); m = g·(1 − β1) at the first step
//   v ← v·β2 + g·(1 − β2)·g             v.mul_(β2).addcmul_(g, g, 1 − β2); v = g·(1 − β2)·g first
//   θ ← θ·(1 − lr·λ) − m / (sqrt(v)/sqrt(c2) + eps)·(lr/c1)     c1, c2: bias corrections
//
// θ, m and v are updated in place, each element by the thread that reads it, after it reads it.
// One thread per quad of elements 4q .. 4q + 3, 256 threads per workgroup, 2-D grid. Every
// storage binding is read_write, as cubecl binds them.

// The tensor's parameter block (the same every step but the first).
struct Params {
    n: u32,
    first: u32,     // 1: no moments yet (m and v are written, not read)
    pad0: u32,
    pad1: u32,
}

// The step's parameter block, the same for every tensor of a group (encoder or head).
struct Step {
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    sqrt_c2: f32,   // sqrt(1 − β2^t)
    eps: f32,
    decay: f32,     // 1 − lr·λ
    step_size: f32, // lr/(1 − β1^t)
    pad: u32,
}

@group(0) @binding(0) var<storage, read_write> theta: array<f32>;
@group(0) @binding(1) var<storage, read_write> m: array<f32>;
@group(0) @binding(2) var<storage, read_write> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> g: array<f32>;
@group(0) @binding(4) var<storage, read_write> params_buffer: Params;
@group(0) @binding(5) var<storage, read_write> step_buffer: Step;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    // Read once: a store may alias a read_write binding, which would force fresh loads.
    let params = params_buffer;
    let s = step_buffer;
    let q = (group.y * groups.x + group.x) * 256u + lane;
    for (var k = 0u; k < 4u && 4u * q + k < params.n; k++) {
        let i = 4u * q + k;
        let gi = g[i];
        var mi = gi * s.one_minus_beta1;
        var vi = gi * s.one_minus_beta2 * gi;
        if params.first == 0u {
            let m0 = m[i];
            mi = m0 + (gi - m0) * s.one_minus_beta1;
            vi = v[i] * s.beta2 + vi;
        }
        let denom = sqrt(vi) / s.sqrt_c2 + s.eps;
        theta[i] = theta[i] * s.decay - mi / denom * s.step_size;
        m[i] = mi;
        v[i] = vi;
    }
}
