// Row softmax times a per-row factor, from the logits and their saved log-sum-exp: one
// workgroup per row.
//
//     out[t, v] = g_t · softmax(z_t)[v] = g_t · e^(z[t, v] − log_sum_exp[t])
//
// This is the gradient of Σ_t g_t·log_sum_exp[t] with respect to the logits: the backward
// pass of `row_log_sum_exp.wgsl`, with g the incoming gradient of each row's log-sum-exp (or 1,
// for the softmax itself).

@group(0) @binding(0) var<storage, read_write> logits: array<f32>;      // [rows, vocab]
@group(0) @binding(1) var<storage, read_write> log_sum_exp: array<f32>; // [rows]
@group(0) @binding(2) var<storage, read_write> factor: array<f32>;      // [rows]
@group(0) @binding(3) var<storage, read_write> out: array<f32>;         // [rows, vocab]
@group(0) @binding(4) var<storage, read_write> params: array<u32>;      // [rows, vocab]

const WORKGROUP_SIZE: u32 = {{ workgroup_size }}u;

@compute @workgroup_size({{ workgroup_size }}, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let rows = params[0];
    let vocab = params[1];
    let row = wid.x + wid.y * groups.x;
    if row >= rows {
        return;
    }
    let base = row * vocab;
    let g = factor[row];
    let lse = log_sum_exp[row];
    for (var v = lid; v < vocab; v += WORKGROUP_SIZE) {
        out[base + v] = g * exp(logits[base + v] - lse);
    }
}
