// Softmax along rows, and its gradient. Launched only by src/ops/softmax.rs, whose CPU twin
// computes the same formulas.
//
// One thread per row of `len` values, 256 threads per workgroup, workgroups on a 2-D grid (rows
// of GRID_WIDTH in src/util/kernel/launch.rs). Every storage binding is read_write, as cubecl binds them.

struct Params {
    op: u32,    // OP_FORWARD or OP_BACKWARD
    rows: u32,
    len: u32,   // values per row
    pad0: u32,
}

const OP_FORWARD: u32 = 0u;   // out = e^(x − max x) / Σ e^(x − max x)
const OP_BACKWARD: u32 = 1u;  // out = y·(dy − Σ dy·y), y the forward's output

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;   // the scores, or y
@group(0) @binding(2) var<storage, read_write> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> params_buffer: Params;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    // Read once: a store may alias a read_write binding, which would force fresh loads.
    let params = params_buffer;
    let row = (group.y * groups.x + group.x) * 256u + lane;
    if row >= params.rows {
        return;
    }
    let start = row * params.len;
    let end = start + params.len;
    if params.op == OP_FORWARD {
        var top = x[start];
        for (var i = start + 1u; i < end; i++) {
            top = max(top, x[i]);
        }
        var sum = 0.0;
        for (var i = start; i < end; i++) {
            let e = exp(x[i] - top);
            out[i] = e;
            sum += e;
        }
        let inv = 1.0 / sum;
        for (var i = start; i < end; i++) {
            out[i] *= inv;
        }
    } else {
        var dot = 0.0;
        for (var i = start; i < end; i++) {
            dot += dy[i] * x[i];
        }
        for (var i = start; i < end; i++) {
            out[i] = x[i] * (dy[i] - dot);
        }
    }
}
