// LayerNorm along rows, and its gradients. Launched only by src/ops/layer_norm.rs, whose CPU
// twin computes the same formulas.
//
// One thread per row (OP_FORWARD, OP_BACKWARD_INPUT) or per column (OP_BACKWARD_PARAMS), 256
// threads per workgroup, workgroups on a 2-D grid (rows of GRID_WIDTH in src/util/kernel/launch.rs). Every
// storage binding is read_write, as cubecl binds them.

struct Params {
    op: u32,
    rows: u32,
    len: u32,      // values per row
    epsilon: u32,  // ε as f32 bits
}

const OP_FORWARD: u32 = 0u;         // out = γ·x̂ + β, x̂ = (x − μ)·r, r = 1/√(σ² + ε); stats = (μ, r)
const OP_BACKWARD_INPUT: u32 = 1u;  // out = r·(g − mean g − x̂·mean(g·x̂)), g = dy·γ
const OP_BACKWARD_PARAMS: u32 = 2u; // out[c] = Σ_rows dy·x̂ (γ's gradient), beta[c] = Σ_rows dy (β's)

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> gamma: array<f32>;
@group(0) @binding(3) var<storage, read_write> beta: array<f32>;   // β, or β's gradient
@group(0) @binding(4) var<storage, read_write> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;  // (μ, r) per row
@group(0) @binding(6) var<storage, read_write> params_buffer: Params;

fn forward(row: u32, params: Params) {
    let start = row * params.len;
    let n = f32(params.len);
    var sum = 0.0;
    for (var c = 0u; c < params.len; c++) {
        sum += x[start + c];
    }
    let mean = sum / n;
    var squares = 0.0;
    for (var c = 0u; c < params.len; c++) {
        let d = x[start + c] - mean;
        squares += d * d;
    }
    let r = 1.0 / sqrt(squares / n + bitcast<f32>(params.epsilon));
    for (var c = 0u; c < params.len; c++) {
        out[start + c] = (x[start + c] - mean) * r * gamma[c] + beta[c];
    }
    stats[2u * row] = mean;
    stats[2u * row + 1u] = r;
}

fn backward_input(row: u32, params: Params) {
    let start = row * params.len;
    let n = f32(params.len);
    let mean = stats[2u * row];
    let r = stats[2u * row + 1u];
    var sum_g = 0.0;
    var sum_gx = 0.0;
    for (var c = 0u; c < params.len; c++) {
        let g = dy[start + c] * gamma[c];
        sum_g += g;
        sum_gx += g * (x[start + c] - mean) * r;
    }
    let mean_g = sum_g / n;
    let mean_gx = sum_gx / n;
    for (var c = 0u; c < params.len; c++) {
        let g = dy[start + c] * gamma[c];
        let xhat = (x[start + c] - mean) * r;
        out[start + c] = r * (g - mean_g - xhat * mean_gx);
    }
}

fn backward_params(column: u32, params: Params) {
    var sum_gx = 0.0;
    var sum_g = 0.0;
    for (var row = 0u; row < params.rows; row++) {
        let i = row * params.len + column;
        let g = dy[i];
        sum_gx += g * (x[i] - stats[2u * row]) * stats[2u * row + 1u];
        sum_g += g;
    }
    out[column] = sum_gx;
    beta[column] = sum_g;
}

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    // Read once: a store may alias a read_write binding, which would force fresh loads.
    let params = params_buffer;
    let id = (group.y * groups.x + group.x) * 256u + lane;
    if params.op == OP_BACKWARD_PARAMS {
        if id < params.len {
            backward_params(id, params);
        }
    } else if id < params.rows {
        if params.op == OP_FORWARD {
            forward(id, params);
        } else {
            backward_input(id, params);
        }
    }
}
