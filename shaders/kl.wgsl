// The KL term of PAC-tuning. Launched only by src/pac/kl.rs, behind shaders/philox.wgsl (τ);
// kl.rs's CPU code is this file's twin.
//
// Sums of trainable tensor j, with y = 2(p − b_j): E_j = Σ (e^y − 1), F_j = Σ (e^y − 1 − y) and
// D_j = Σ (θ − θ0)². They give KL_j = ½(F_j + e^(−2b_j) D_j) and ∂KL/∂b_j = −E_j − e^(−2b_j) D_j
// without the cancellation of Σ e^(2p) against d_j (both are exactly 0 where p = b_j). Two launches:
//   OP_PARTIALS, once per tensor: up to 256 workgroups stride over its quads of elements and
//     tree-reduce in workgroup memory; workgroup w writes slot w of the tensor's 256 slots in
//     `partials` (workgroup 0 zeroes the slots no workgroup owns). With `inject` the same pass,
//     which reads θ and p anyway, writes PAC stage 1's perturbed weights θ + exp(p)·τ to `out`
//     (as shaders/noise.wgsl's OP_INJECT does, with the same τ);
//   OP_FINISH, once for all tensors: workgroup j tree-reduces the 256 slots of tensor j into
//     out[3j..3j + 3] = (E_j, F_j, D_j).
// (The KL pull on θ's gradient rides on shaders/noise_adam.wgsl's pass over the tensor.)
//
// Every storage binding is read_write, as cubecl binds them (tensors share pages). The
// parameters come in two blocks that src/util/kernel/launch.rs keeps on the device: the tensor's and
// the step's (the Philox key, then every b_j: one upload per step, bound for every tensor).
// 8 storage bindings: WebGPU's default per-stage limit (tests/shader_limits.rs checks it).

struct Params {
    op: u32,       // one of the OP_ constants
    n: u32,        // elements of tensor j (OP_PARTIALS)
    j: u32,        // the tensor's index in b, its slot block in `partials` and its Philox word
    inject: u32,   // 1: also out = θ + exp(p)·τ (OP_PARTIALS)
    given: u32,    // 1: τ = given[i] instead of Philox
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

struct Step {
    seed: u32,
    count: u32,
}

struct StepBlock {
    step: Step,
    b: array<f32>,   // every b_j
}

const OP_PARTIALS: u32 = 0u;
const OP_FINISH: u32 = 1u;
const SLOTS: u32 = 256u;

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read_write> theta: array<f32>;
@group(0) @binding(2) var<storage, read_write> theta0: array<f32>;
@group(0) @binding(3) var<storage, read_write> p: array<f32>;
@group(0) @binding(4) var<storage, read_write> partials: array<f32>;  // 3 per slot, 256 slots per tensor
@group(0) @binding(5) var<storage, read_write> given: array<f32>;
@group(0) @binding(6) var<storage, read_write> params_buffer: Params;
@group(0) @binding(7) var<storage, read_write> step_buffer: StepBlock;

var<workgroup> acc: array<vec3<f32>, 256>;
// The op, read by one lane and shared: a value loaded from a read_write buffer is not uniform
// to WGSL's uniformity analysis (Tint, in browsers, refuses barriers that depend on it).
var<workgroup> shared_op: u32;

// Σ acc[0..256] once every lane has stored its value; call from uniform control flow.
fn workgroup_sum(lane: u32) -> vec3<f32> {
    workgroupBarrier();
    for (var half = 128u; half > 0u; half >>= 1u) {
        if lane < half {
            acc[lane] += acc[lane + half];
        }
        workgroupBarrier();
    }
    return acc[0];
}

fn write_slot(slot: u32, v: vec3<f32>) {
    partials[3u * slot] = v.x;
    partials[3u * slot + 1u] = v.y;
    partials[3u * slot + 2u] = v.z;
}

fn partial_sums(w: u32, groups: u32, lane: u32, params: Params, step: Step, bj: f32) {
    var s = vec3<f32>(0.0);
    // Quads 4q .. 4q + 3: τ comes four to a Philox call.
    for (var q = w * 256u + lane; 4u * q < params.n; q += groups * 256u) {
        var t = vec4<f32>(0.0);
        if params.inject == 1u && params.given == 0u {
            t = tau_quad(q, params.j, step.seed, step.count);
        }
        for (var k = 0u; k < 4u && 4u * q + k < params.n; k++) {
            let i = 4u * q + k;
            let pi = p[i];
            let th = theta[i];
            let y = 2.0 * (pi - bj);
            let f = exmx(y);
            let d = th - theta0[i];
            s += vec3<f32>(y + f, f, d * d);
            if params.inject == 1u {
                var tau = t[k];
                if params.given == 1u {
                    tau = given[i];
                }
                out[i] = th + exp(pi) * tau;
            }
        }
    }
    acc[lane] = s;
    let total = workgroup_sum(lane);
    let base = params.j * SLOTS;
    if lane == 0u {
        write_slot(base + w, total);
    }
    if w == 0u && lane >= groups {
        write_slot(base + lane, vec3<f32>(0.0));
    }
}

fn finish(j: u32, lane: u32) {
    let slot = 3u * (j * SLOTS + lane);
    acc[lane] = vec3<f32>(partials[slot], partials[slot + 1u], partials[slot + 2u]);
    let total = workgroup_sum(lane);
    if lane == 0u {
        out[3u * j] = total.x;
        out[3u * j + 1u] = total.y;
        out[3u * j + 2u] = total.z;
    }
}

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    // Read once (every binding is read_write, so a store might alias the parameters).
    let params = params_buffer;
    if lane == 0u {
        shared_op = params.op;
    }
    switch workgroupUniformLoad(&shared_op) {
        case OP_PARTIALS: {
            let step = step_buffer.step;
            let bj = step_buffer.b[params.j];
            partial_sums(group.x, groups.x, lane, params, step, bj);
        }
        default: {
            finish(group.x, lane);
        }
    }
}

// e^y − 1 − y without cancellation near 0 (Taylor to y^8 for |y| < 0.5).
fn exmx(y: f32) -> f32 {
    if abs(y) < 0.5 {
        return y * y * (0.5 + y * (1.0 / 6.0 + y * (1.0 / 24.0 + y * (1.0 / 120.0
            + y * (1.0 / 720.0 + y * (1.0 / 5040.0 + y * (1.0 / 40320.0)))))));
    }
    return exp(y) - 1.0 - y;
}
