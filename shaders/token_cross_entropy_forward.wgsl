// Masked token cross-entropy, forward pass: one workgroup per token row.
//
// Each invocation runs an online log-sum-exp over a strided slice of the row (a running
// maximum m and a sum s of e^(z − m), rescaled whenever m grows), then the workgroup merges the
// (m, s) pairs in a tree: m = max(m1, m2), s = s1·e^(m1 − m) + s2·e^(m2 − m). Stable for any
// finite logits because every exponent is <= 0.
//
// Outputs per row t: log_sum_exp[t] = m + log s (saved for the backward pass) and
// masked_nll[t] = mask_t·(log_sum_exp[t] − z[t, target_t]). A row with mask 0 contributes 0
// whatever its target (padding may use −100); a counted row whose target lies outside
// [0, vocab) yields NaN so the error cannot go unnoticed.

@group(0) @binding(0) var<storage, read> logits: array<f32>;           // [tokens, vocab]
@group(0) @binding(1) var<storage, read> targets: array<i32>;          // [tokens]
@group(0) @binding(2) var<storage, read> mask: array<f32>;             // [tokens]
@group(0) @binding(3) var<storage, read_write> log_sum_exp: array<f32>; // [tokens]
@group(0) @binding(4) var<storage, read_write> masked_nll: array<f32>;  // [tokens]
@group(0) @binding(5) var<storage, read> params: array<u32>;           // [tokens, vocab]

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
    let tokens = params[0];
    let vocab = params[1];
    let row = wid.x + wid.y * groups.x;
    if row >= tokens {
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
        let lse = row_max[0] + log_at_least_one(row_sum[0]);
        log_sum_exp[row] = lse;
        let weight = mask[row];
        var nll = 0.0;
        if weight != 0.0 {
            let target_index = targets[row];
            if target_index >= 0 && u32(target_index) < vocab {
                nll = weight * (lse - logits[base + u32(target_index)]);
            } else {
                nll = bitcast<f32>(0x7fc00000u); // NaN: a counted token with an impossible target
            }
        }
        masked_nll[row] = nll;
    }
}
