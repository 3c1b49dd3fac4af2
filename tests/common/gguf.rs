//! Hand-written GGUF files for tests: metadata and F32 tensors as given ([`gguf_file`]), and
//! a complete one-layer model of any architecture ([`tiny_gguf_with`]).

/// A metadata value for [`gguf_bytes`].
pub enum Meta<'a> {
    Str(&'a str),
    U32(u32),
    F32(f32),
    Strs(&'a [&'a str]),
    I32s(&'a [i32]),
}

/// A hand-written GGUF v3 file: metadata as given, F32 tensors `(name, dims, offset)` and
/// `data` after the header (padded to the default 32-byte alignment).
pub fn gguf_file(
    metadata: &[(&str, Meta)],
    tensors: &[(&str, Vec<u64>, u64)],
    data: &[f32],
) -> Vec<u8> {
    let string = |out: &mut Vec<u8>, s: &str| {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    };
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        string(&mut out, key);
        match value {
            Meta::Str(s) => {
                out.extend(8u32.to_le_bytes());
                string(&mut out, s);
            }
            Meta::U32(v) => out.extend([4u32.to_le_bytes(), v.to_le_bytes()].concat()),
            Meta::F32(v) => out.extend([6u32.to_le_bytes(), v.to_le_bytes()].concat()),
            Meta::Strs(items) => {
                out.extend([9u32, 8].iter().flat_map(|t| t.to_le_bytes()));
                out.extend((items.len() as u64).to_le_bytes());
                items.iter().for_each(|s| string(&mut out, s));
            }
            Meta::I32s(items) => {
                out.extend([9u32, 5].iter().flat_map(|t| t.to_le_bytes()));
                out.extend((items.len() as u64).to_le_bytes());
                items.iter().for_each(|v| out.extend(v.to_le_bytes()));
            }
        }
    }
    for (name, dims, offset) in tensors {
        string(&mut out, name);
        out.extend((dims.len() as u32).to_le_bytes());
        dims.iter().for_each(|d| out.extend(d.to_le_bytes()));
        out.extend(0u32.to_le_bytes()); // F32
        out.extend(offset.to_le_bytes());
    }
    out.resize(out.len().div_ceil(32) * 32, 0);
    out.extend(data.iter().flat_map(|x| x.to_le_bytes()));
    out
}

/// [`gguf_file`] with string metadata and `data_len` zero bytes of tensor data.
pub fn gguf_bytes(
    metadata: &[(&str, &str)],
    tensors: &[(&str, Vec<u64>, u64)],
    data_len: usize,
) -> Vec<u8> {
    let metadata: Vec<_> = metadata.iter().map(|&(k, v)| (k, Meta::Str(v))).collect();
    let mut out = gguf_file(&metadata, tensors, &[]);
    out.resize(out.len() + data_len, 0);
    out
}

/// A one-layer GGUF of architecture `arch` (d = 8, 2 heads of width 4, 1 kv head, 4 tokens)
/// whose every tensor holds 0, 1, 2, ... and whose output projection is stored (untied).
pub fn tiny_gguf(arch: &str) -> Vec<u8> {
    tiny_gguf_with(arch, &[], |_| {})
}

/// [`tiny_gguf`] with the integer metadata `{arch}.{key}` of `overrides` set to their values,
/// and its list of tensors `(name, GGUF dims)` changed by `edit`.
pub fn tiny_gguf_with(
    arch: &str,
    overrides: &[(&str, u32)],
    edit: impl FnOnce(&mut Vec<(&'static str, Vec<u64>)>),
) -> Vec<u8> {
    let key = |k: &str| format!("{arch}.{k}");
    let keys: Vec<String> = [
        "block_count",
        "embedding_length",
        "feed_forward_length",
        "attention.head_count",
        "attention.head_count_kv",
        "context_length",
        "attention.layer_norm_rms_epsilon",
        "rope.freq_base",
    ]
    .iter()
    .map(|k| key(k))
    .collect();
    let tokens = ["a", "b", "ab", "<|end|>"];
    let int = |i: usize, default: u32| {
        let value = overrides
            .iter()
            .find(|(k, _)| key(k) == keys[i])
            .map_or(default, |&(_, v)| v);
        Meta::U32(value)
    };
    let metadata = [
        ("general.architecture", Meta::Str(arch)),
        (keys[0].as_str(), int(0, 1)),
        (keys[1].as_str(), int(1, 8)),
        (keys[2].as_str(), int(2, 8)),
        (keys[3].as_str(), int(3, 2)),
        (keys[4].as_str(), int(4, 1)),
        (keys[5].as_str(), int(5, 128)),
        (keys[6].as_str(), Meta::F32(1e-6)),
        (keys[7].as_str(), Meta::F32(1e6)),
        ("tokenizer.ggml.model", Meta::Str("gpt2")),
        ("tokenizer.ggml.tokens", Meta::Strs(&tokens)),
        ("tokenizer.ggml.merges", Meta::Strs(&["a b"])),
        ("tokenizer.ggml.token_type", Meta::I32s(&[1, 1, 1, 3])),
        ("tokenizer.ggml.eos_token_id", Meta::U32(3)),
    ];
    // GGUF dims are [in, out].
    let mut shapes: Vec<(&'static str, Vec<u64>)> = vec![
        ("token_embd.weight", vec![8, 4]),
        ("output.weight", vec![8, 4]),
        ("output_norm.weight", vec![8]),
        ("blk.0.attn_q.weight", vec![8, 8]),
        ("blk.0.attn_k.weight", vec![8, 4]),
        ("blk.0.attn_v.weight", vec![8, 4]),
        ("blk.0.attn_output.weight", vec![8, 8]),
        ("blk.0.ffn_gate.weight", vec![8, 8]),
        ("blk.0.ffn_up.weight", vec![8, 8]),
        ("blk.0.ffn_down.weight", vec![8, 8]),
        ("blk.0.attn_norm.weight", vec![8]),
        ("blk.0.ffn_norm.weight", vec![8]),
    ];
    edit(&mut shapes);
    let mut tensors = Vec::new();
    let mut data = Vec::new();
    for (name, dims) in shapes {
        let n: u64 = dims.iter().product();
        tensors.push((name, dims, 4 * data.len() as u64));
        data.extend((0..n).map(|x| x as f32));
        data.resize(data.len().div_ceil(8) * 8, 0.0); // keep offsets 32-byte aligned
    }
    gguf_file(&metadata, &tensors, &data)
}
