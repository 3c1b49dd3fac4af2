// Row-wise log-sum-exp of a chunk of logits: one workgroup per row.
//
//     log_sum_exp[t] = log Σ_v e^(z[t, v])
//
// Each invocation runs an online log-sum-exp over a strided slice of the row (a running
// maximum m and a sum s of e^(z − m), rescaled whenever m grows), then the workgroup merges the
// (m, s) pairs in a tree: m = max(m1, m2), s = s1·e^(m1 − m) + s2·e^(m2 − m). Stable for any
// finite logits because every exponent is <= 0.

@group(0) @binding(0) var<storage, read_write> logits: array<f32>;      // [rows, vocab]
@group(0) @binding(1) var<storage, read_write> log_sum_exp: array<f32>; // [rows]
@group(0) @binding(2) var<storage, read_write> params: array<u32>;      // [rows, vocab]

const WORKGROUP_SIZE: u32 = {{ workgroup_size }}u;
// Below every finite logit we accept, yet e^(LOWEST − m) is 0 rather than NaN.
const LOWEST: f32 = -3.0e38;

var<workgroup> row_max: array<f32, WORKGROUP_SIZE>;
var<workgroup> row_sum: array<f32, WORKGROUP_SIZE>;

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

    var m = LOWEST;
    var s = 0.0;
    for (var v = lid; v < vocab; v += WORKGROUP_SIZE) {
        let z = logits[base + v];
        if z > m {
            s = s * exp(m - z) + 1.0;
            m = z;
        } else {
            s += exp(z - m);
        }
    }
    row_max[lid] = m;
    row_sum[lid] = s;
    workgroupBarrier();

    for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
        if lid < stride {
            let m1 = row_max[lid];
            let m2 = row_max[lid + stride];
            let merged = max(m1, m2);
            row_sum[lid] = row_sum[lid] * exp(m1 - merged) + row_sum[lid + stride] * exp(m2 - merged);
            row_max[lid] = merged;
        }
        workgroupBarrier();
    }

    if lid == 0u {
        log_sum_exp[row] = row_max[0] + log_at_least_one(row_sum[0]);
    }
}
