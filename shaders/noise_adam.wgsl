// What PAC stage 1 does to one trainable tensor j after the backward pass, in one pass: the
// noise-Adam step of the posterior log-stds p, fused with their gradient, and the KL pull on θ's
// gradient (instead of two more kernels and a dozen tensor operations). Launched only by
// src/pac/noise_adam.rs, behind shaders/philox.wgsl (τ), whose CPU code is this file's twin.
//
//   g_p = exp(p)·τ·g + kl_coef·expm1(2(p − b_j))     g = ∂loss1/∂θ' (θ' = θ + exp(p)·τ)
//   m ← m·β1 + g_p·(1 − β1),   v ← v·β2 + (g_p·g_p)·(1 − β2)     (m = v = 0 at the first step)
//   p ← p − (m/c1) / (sqrt(v/c2) + eps) · lr                       c1, c2: bias corrections
//   g_θ = g + exp(−2 b_j)·kl_coef·(θ − θ0)                        ∂(loss1 + loss2)/∂θ
//
// The products are grouped as the CPU twin groups them (and as Burn's tensor operations did),
// so the two agree to a few ulp (exp here is the built-in, there a polynomial).
// Everything is updated in place, each element by the thread that reads it, after it reads it:
// p; m and v, packed in one buffer (m at i, v at n + i); g becomes g_θ; `aux` holds the given τ
// where there is one and receives g_p where asked (test-only both). That keeps the shader at 8
// storage bindings, WebGPU's default per-stage limit (tests/shader_limits.rs checks it).
// One thread per quad of elements 4q .. 4q + 3, 256 threads per workgroup, 2-D grid.
// Every storage binding is read_write, as cubecl binds them (tensors share pages).

// Two parameter blocks, each a buffer that src/util/kernel/launch.rs uploads once and binds again
// wherever the same words recur: the tensor's (the same every step) and the step's (the same for
// every tensor of a group; it ends with every b_j).
struct Params {
    n: u32,
    j: u32,           // trainable tensor: Philox counter word 1 and index into b
    given: u32,       // 1: τ = aux[i] instead of Philox
    pad: u32,
}

struct Step {
    seed: u32,        // the Philox key
    count: u32,
    first: u32,       // 1: no moments yet (m = v = 0)
    write_grad: u32,  // 1: also write g_p to aux
    kl_coef: f32,     // 1/(nγ)
    beta1: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    c1: f32,          // 1 − β1^t
    c2: f32,          // 1 − β2^t
    eps: f32,
    lr: f32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

struct StepBlock {
    step: Step,
    b: array<f32>,    // every b_j
}

@group(0) @binding(0) var<storage, read_write> p: array<f32>;       // p in, new p out
@group(0) @binding(1) var<storage, read_write> mv: array<f32>;      // m then v (2n), in and out
@group(0) @binding(2) var<storage, read_write> g: array<f32>;       // g in, g_θ out
@group(0) @binding(3) var<storage, read_write> aux: array<f32>;     // given τ in, g_p out
@group(0) @binding(4) var<storage, read_write> theta: array<f32>;
@group(0) @binding(5) var<storage, read_write> theta0: array<f32>;
@group(0) @binding(6) var<storage, read_write> params_buffer: Params;
@group(0) @binding(7) var<storage, read_write> step_buffer: StepBlock;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    // Read once: every binding is read_write, so each store below might alias the parameters
    // and make every later `params_buffer.x` a fresh load (half this pass's time on lavapipe).
    let params = params_buffer;
    let step = step_buffer.step;
    let bj = step_buffer.b[params.j];
    let q = (group.y * groups.x + group.x) * 256u + lane;
    if 4u * q >= params.n {
        return;
    }
    var t = vec4<f32>(0.0);
    if params.given == 0u {
        t = tau_quad(q, params.j, step.seed, step.count);
    }
    let pull = exp(-2.0 * bj) * step.kl_coef;
    for (var k = 0u; k < 4u && 4u * q + k < params.n; k++) {
        let i = 4u * q + k;
        var tau = t[k];
        if params.given == 1u {
            tau = aux[i];
        }
        let pi = p[i];
        let gi = g[i];
        g[i] = gi + pull * (theta[i] - theta0[i]);
        let gp = exp(pi) * tau * gi + step.kl_coef * expm1(2.0 * (pi - bj));
        var mi = 0.0;
        var vi = 0.0;
        if step.first == 0u {
            mi = mv[i];
            vi = mv[params.n + i];
        }
        mi = mi * step.beta1 + gp * step.one_minus_beta1;
        vi = vi * step.beta2 + (gp * gp) * step.one_minus_beta2;
        let delta = (mi / step.c1) / (sqrt(vi / step.c2) + step.eps) * step.lr;
        p[i] = pi - delta;
        mv[i] = mi;
        mv[params.n + i] = vi;
        if step.write_grad == 1u {
            aux[i] = gp;
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
