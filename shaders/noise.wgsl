// PAC-tuning weight noise. Launched only by src/pac/noise.rs, behind shaders/philox.wgsl (τ).
//
// One thread per quad of elements 4q .. 4q + 3 (the four τ of one Philox call), 256 threads per
// workgroup, workgroups on a 2-D grid (rows of GRID_WIDTH in src/util/kernel/launch.rs).
// Every storage binding is read_write, as cubecl binds them (tensors share pages).
// The parameters come in two blocks, each a buffer that src/util/kernel/launch.rs uploads once and
// binds again wherever the same words recur: the tensor's (the same every step) and the step's.

struct Params {
    op: u32,       // one of the OP_ constants
    n: u32,        // elements
    j: u32,        // trainable tensor: Philox counter word 1
    given: u32,    // 1: τ = given[i] instead of Philox
    scale: u32,    // OP_PRIOR's s, as f32 bits
    pad3: u32,
    pad1: u32,
    pad2: u32,
}

struct Step {
    seed: u32,     // the Philox key
    count: u32,
}

const OP_DRAW: u32 = 0u;    // out = τ
const OP_INJECT: u32 = 1u;  // out = θ + exp(p)·τ
const OP_PRIOR: u32 = 2u;   // out = θ + s·z, z the unclipped normal draws behind τ

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read_write> theta: array<f32>;
@group(0) @binding(2) var<storage, read_write> p: array<f32>;
@group(0) @binding(3) var<storage, read_write> given: array<f32>;
@group(0) @binding(4) var<storage, read_write> params_buffer: Params;
@group(0) @binding(5) var<storage, read_write> step_buffer: Step;

// τ of quad q: given, or generated.
fn tau(q: u32, params: Params, step: Step) -> vec4<f32> {
    if params.given == 0u {
        return tau_quad(q, params.j, step.seed, step.count);
    }
    var t = vec4<f32>(0.0);
    for (var k = 0u; k < 4u && 4u * q + k < params.n; k++) {
        t[k] = given[4u * q + k];
    }
    return t;
}

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    // Read once: every binding is read_write, so each store below might alias the parameters
    // and make every later `params_buffer.x` a fresh load (on lavapipe, half the pass's time).
    let params = params_buffer;
    let step = step_buffer;
    let q = (group.y * groups.x + group.x) * 256u + lane;
    if 4u * q >= params.n {
        return;
    }
    if params.op == OP_PRIOR {
        let z = normal_quad(q, params.j, step.seed, step.count);
        let s = bitcast<f32>(params.scale);
        for (var k = 0u; k < 4u && 4u * q + k < params.n; k++) {
            out[4u * q + k] = theta[4u * q + k] + s * z[k];
        }
        return;
    }
    let t = tau(q, params, step);
    for (var k = 0u; k < 4u && 4u * q + k < params.n; k++) {
        let i = 4u * q + k;
        if params.op == OP_INJECT {
            out[i] = theta[i] + exp(p[i]) * t[k];
        } else {
            out[i] = t[k];
        }
    }
}
