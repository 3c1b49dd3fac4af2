//! Dequantisation of every ggml block type, by hand and against python's `gguf` package.

use std::path::Path;

use gram::checkpoint::quant::GgmlType;

fn dequantize(ty: GgmlType, block: &[u8]) -> Vec<f32> {
    let mut out = vec![f32::NAN; block.len() / ty.block_bytes() * ty.block_len()];
    ty.dequantize(block, &mut out);
    out
}

fn f16(x: f32) -> [u8; 2] {
    half::f16::from_f32(x).to_le_bytes()
}

#[test]
fn dequantizes_plain_floats() {
    let values = [1.5f32, -0.25, 65504.0, 0.0];
    let f32_bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(dequantize(GgmlType::F32, &f32_bytes), values);
    let f16_bytes: Vec<u8> = values.iter().flat_map(|&v| f16(v)).collect();
    assert_eq!(dequantize(GgmlType::F16, &f16_bytes), values);
    // bf16 is the top half of the f32: 1.5 = 0x3FC0, -0.25 = 0xBE80, 256.0 = 0x4380.
    let bf16_bytes = [0xC0, 0x3F, 0x80, 0xBE, 0x80, 0x43, 0x00, 0x00];
    assert_eq!(
        dequantize(GgmlType::BF16, &bf16_bytes),
        [1.5, -0.25, 256.0, 0.0]
    );
}

#[test]
fn dequantizes_q8_0_block() {
    let mut block = f16(0.5).to_vec();
    let qs: Vec<i8> = (0..32i32)
        .map(|j| if j == 0 { -128 } else { (127 - 8 * j) as i8 })
        .collect();
    block.extend(qs.iter().map(|&q| q as u8));
    let expected: Vec<f32> = qs.iter().map(|&q| 0.5 * q as f32).collect();
    assert_eq!(dequantize(GgmlType::Q8_0, &block), expected);
    assert_eq!(dequantize(GgmlType::Q8_0, &block)[..3], [-64.0, 59.5, 55.5]);
}

/// Nibble `j` of byte `j` is `j & 15` (values 0..16), the high nibble `15 − j` (values 16..32).
fn nibble_block(header: &[u8]) -> Vec<u8> {
    let mut block = header.to_vec();
    block.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    block
}

#[test]
fn dequantizes_q4_0_block() {
    let got = dequantize(GgmlType::Q4_0, &nibble_block(&f16(2.0)));
    // x[j] = 2·(j − 8), x[16 + j] = 2·((15 − j) − 8)
    let expected: Vec<f32> = (0..16)
        .map(|j| 2.0 * (j as f32 - 8.0))
        .chain((0..16).map(|j| 2.0 * (7.0 - j as f32)))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(
        (got[0], got[15], got[16], got[31]),
        (-16.0, 14.0, 14.0, -16.0)
    );
}

#[test]
fn dequantizes_q4_1_block() {
    let header = [f16(0.25), f16(-1.0)].concat();
    let got = dequantize(GgmlType::Q4_1, &nibble_block(&header));
    // x[j] = 0.25·j − 1, x[16 + j] = 0.25·(15 − j) − 1
    assert_eq!(
        (got[0], got[1], got[15], got[16], got[31]),
        (-1.0, -0.75, 2.75, 2.75, -1.0)
    );
    let expected: Vec<f32> = (0..16)
        .map(|j| 0.25 * j as f32 - 1.0)
        .chain((0..16).map(|j| 0.25 * (15 - j) as f32 - 1.0))
        .collect();
    assert_eq!(got, expected);
}

/// Sub-block scales and mins of the hand-built K-quant blocks, packed as ggml's quantizer does:
/// bytes 0..4 hold sc[0..4] (+ top bits of sc[4..8] in bits 6–7), 4..8 m[0..4] (+ top bits of
/// m[4..8]), 8..12 the low nibbles of sc[4..8] and m[4..8].
const SC: [u8; 8] = [1, 2, 3, 4, 33, 40, 63, 17];
const MIN: [u8; 8] = [0, 5, 10, 15, 20, 62, 1, 2];

fn k_header() -> Vec<u8> {
    let mut scales = [0u8; 12];
    for k in 0..4 {
        scales[k] = SC[k] | (SC[k + 4] >> 4) << 6;
        scales[k + 4] = MIN[k] | (MIN[k + 4] >> 4) << 6;
        scales[k + 8] = (SC[k + 4] & 15) | (MIN[k + 4] & 15) << 4;
    }
    [f16(0.5).as_slice(), &f16(0.25), &scales].concat()
}

#[test]
fn unpacks_k_quant_scales() {
    let scales = &k_header()[4..];
    for j in 0..8 {
        assert_eq!(
            gram::checkpoint::quant::scale_min_k4(j, scales),
            (SC[j], MIN[j]),
            "sub-block {j}"
        );
    }
}

#[test]
fn dequantizes_q4_k_block() {
    // Every quant byte 0x73: even sub-blocks read 3, odd ones 7.
    let block = [k_header(), vec![0x73; 128]].concat();
    let got = dequantize(GgmlType::Q4_K, &block);
    for (sub, values) in got.chunks(32).enumerate() {
        let q = if sub % 2 == 0 { 3.0 } else { 7.0 };
        let want = 0.5 * SC[sub] as f32 * q - 0.25 * MIN[sub] as f32;
        assert!(
            values.iter().all(|&v| v == want),
            "sub-block {sub}: {values:?} != {want}"
        );
    }
    assert_eq!(got[0], 1.5); // 0.5·1·3 − 0
    assert_eq!(got[32 * 5], 0.5 * 40.0 * 7.0 - 0.25 * 62.0);
}

#[test]
fn dequantizes_q5_k_block() {
    // qh = 0b0101_0101: the fifth bit (+16) is set for even sub-blocks only.
    let block = [k_header(), vec![0b0101_0101; 32], vec![0x73; 128]].concat();
    let got = dequantize(GgmlType::Q5_K, &block);
    for (sub, values) in got.chunks(32).enumerate() {
        let q = if sub % 2 == 0 { 3.0 + 16.0 } else { 7.0 };
        let want = 0.5 * SC[sub] as f32 * q - 0.25 * MIN[sub] as f32;
        assert!(
            values.iter().all(|&v| v == want),
            "sub-block {sub}: {values:?} != {want}"
        );
    }
    assert_eq!(got[0], 9.5); // 0.5·1·19 − 0
}

#[test]
fn dequantizes_q6_k_block() {
    // ql = 0x21 (low nibble 1, high 2), qh = 0b11_10_01_00 (2-bit fields 0, 1, 2, 3), so the four
    // 32-value groups of each half read (1|0<<4)−32 = −31, (1|1<<4)−32 = −15, (2|2<<4)−32 = 2,
    // (2|3<<4)−32 = 18, with scales[8h + l/16 + 2k] for value 128h + 32k + l.
    let scales: [i8; 16] = [
        1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, -12, 13, -14, 15, -16,
    ];
    let block = [
        vec![0x21; 128],
        vec![0b1110_0100; 64],
        scales.iter().map(|&s| s as u8).collect(),
        f16(0.5).to_vec(),
    ]
    .concat();
    let got = dequantize(GgmlType::Q6_K, &block);
    let q = [-31.0, -15.0, 2.0, 18.0];
    for (i, &v) in got.iter().enumerate() {
        let (h, k, l) = (i / 128, i % 128 / 32, i % 32);
        let want = 0.5 * scales[8 * h + l / 16 + 2 * k] as f32 * q[k];
        assert_eq!(v, want, "value {i}");
    }
    assert_eq!(
        (got[0], got[16], got[32], got[255]),
        (-15.5, 31.0, -22.5, 0.5 * -16.0 * 18.0)
    );
}

/// Seeded random blocks of every quantised type against python's `gguf` package
/// (tests/data/quant_blocks.json, from scripts/quant-blocks-reference.py).
#[test]
fn random_blocks_match_gguf_py() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/quant_blocks.json");
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let types = [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ];
    for case in cases.as_array().unwrap() {
        let name = case["type"].as_str().unwrap();
        let ty = *types
            .iter()
            .find(|t| format!("{t:?}") == name)
            .unwrap_or_else(|| panic!("type {name}"));
        let hex = case["bytes"].as_str().unwrap();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let got = dequantize(ty, &bytes);
        let want = case["values"].as_array().unwrap();
        assert_eq!(got.len(), want.len(), "{name}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let w = w.as_f64().unwrap() as f32;
            assert!(
                (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                "{name}[{i}]: {g} != {w}"
            );
        }
    }
}
