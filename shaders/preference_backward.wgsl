// Preference loss, backward pass (one invocation per pair).
//
// With g = ∂(outer)/∂(mean loss) and B the batch size:
//     ∂L/∂z_correct = g·(σ(Δ) − 1 + ε)/B = g·(ε − σ(−Δ))/B,   ∂L/∂z_other = −∂L/∂z_correct.

@group(0) @binding(0) var<storage, read> margin_logits: array<f32>;     // [batch, 2]
@group(0) @binding(1) var<storage, read> correct: array<i32>;           // [batch]
@group(0) @binding(2) var<storage, read> grad_loss: array<f32>;         // [1]
@group(0) @binding(3) var<storage, read_write> grad_logits: array<f32>; // [batch, 2]
@group(0) @binding(4) var<storage, read> params: array<u32>;            // [batch, bits of ε]

@compute @workgroup_size({{ workgroup_size }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let batch = params[0];
    let epsilon = bitcast<f32>(params[1]);
    let i = gid.x;
    if i >= batch {
        return;
    }
    let c = u32(clamp(correct[i], 0, 1));
    let delta = margin_logits[2u * i + c] - margin_logits[2u * i + 1u - c];
    let d = grad_loss[0] * (epsilon - sigmoid(-delta)) / f32(batch);
    grad_logits[2u * i + c] = d;
    grad_logits[2u * i + 1u - c] = -d;
}
