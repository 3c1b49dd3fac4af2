//! ggml tensor element types and their dequantisation to f32.
//!
//! A quantised tensor is a sequence of fixed-size *blocks*, each covering `block_len` consecutive
//! values of a row (rows are always a whole number of blocks). Multi-byte fields are
//! little-endian; `f16` is IEEE half precision. The layouts below are ggml's (`ggml-common.h`)
//! and the formulas are those of its `dequantize_row_*` functions.

/// A tensor element type as numbered in ggml / GGUF (`ggml_type`), with ggml's names.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    /// 4-byte IEEE float.
    F32,
    /// 2-byte IEEE half float.
    F16,
    /// 2-byte bfloat16 (the top half of an f32).
    BF16,
    /// 32 values in 18 bytes: `d: f16, qs: [u8; 16]`.
    /// Low nibbles hold values 0..16, high nibbles values 16..32:
    /// `x[j] = d·((qs[j] & 15) − 8)`, `x[j+16] = d·((qs[j] >> 4) − 8)`.
    Q4_0,
    /// 32 values in 20 bytes: `d: f16, m: f16, qs: [u8; 16]`.
    /// `x[j] = d·(qs[j] & 15) + m`, `x[j+16] = d·(qs[j] >> 4) + m`.
    Q4_1,
    /// 32 values in 34 bytes: `d: f16, qs: [i8; 32]`. `x[j] = d·qs[j]`.
    Q8_0,
    /// 256 values in 144 bytes: `d: f16, dmin: f16, scales: [u8; 12], qs: [u8; 128]`.
    /// Eight sub-blocks of 32 values, each with a 6-bit scale `sc` and 6-bit min `m` packed
    /// in `scales` (see [`scale_min_k4`]). Sub-block pair `p` (values 64p..64p+64) reads
    /// `qs[32p..32p+32]`: `x[64p+l] = d·sc[2p]·(q[l] & 15) − dmin·m[2p]`,
    /// `x[64p+32+l] = d·sc[2p+1]·(q[l] >> 4) − dmin·m[2p+1]`.
    Q4_K,
    /// 256 values in 176 bytes: `d: f16, dmin: f16, scales: [u8; 12], qh: [u8; 32], qs: [u8; 128]`.
    /// As Q4_K with a fifth bit from `qh`: for sub-block pair `p`,
    /// `x[64p+l] = d·sc[2p]·((q[l] & 15) + 16·bit(qh[l], 2p)) − dmin·m[2p]`,
    /// `x[64p+32+l] = d·sc[2p+1]·((q[l] >> 4) + 16·bit(qh[l], 2p+1)) − dmin·m[2p+1]`.
    Q5_K,
    /// 256 values in 210 bytes: `ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16`.
    /// Sixteen sub-blocks of 16 values with signed 8-bit scales; 6-bit quants = 4 low bits
    /// from `ql` + 2 high bits from `qh`, offset by 32. For half `h` (values 128h..128h+128),
    /// `ql' = ql[64h..]`, `qh' = qh[32h..]`, `sc' = scales[8h..]` and `l < 32`, `s = l / 16`:
    /// `x[128h+l]    = d·sc'[s]  ·((ql'[l] & 15)    | ((qh'[l] >> 0) & 3) << 4) − 32)`,
    /// `x[128h+l+32] = d·sc'[s+2]·((ql'[l+32] & 15) | ((qh'[l] >> 2) & 3) << 4) − 32)`,
    /// `x[128h+l+64] = d·sc'[s+4]·((ql'[l] >> 4)    | ((qh'[l] >> 4) & 3) << 4) − 32)`,
    /// `x[128h+l+96] = d·sc'[s+6]·((ql'[l+32] >> 4) | ((qh'[l] >> 6) & 3) << 4) − 32)`.
    Q6_K,
}

impl GgmlType {
    /// The type with ggml id `id`, or `None` if we cannot dequantise it.
    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            8 => GgmlType::Q8_0,
            12 => GgmlType::Q4_K,
            13 => GgmlType::Q5_K,
            14 => GgmlType::Q6_K,
            30 => GgmlType::BF16,
            _ => return None,
        })
    }

    /// Values per block.
    pub fn block_len(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0 => 32,
            GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q4_0 => 18,
            GgmlType::Q4_1 => 20,
            GgmlType::Q8_0 => 34,
            GgmlType::Q4_K => 144,
            GgmlType::Q5_K => 176,
            GgmlType::Q6_K => 210,
        }
    }

    /// Bytes taken by `n` values, or `None` if `n` is not a whole number of blocks or overflows.
    pub fn bytes_for(self, n: usize) -> Option<usize> {
        if n % self.block_len() != 0 {
            return None;
        }
        (n / self.block_len()).checked_mul(self.block_bytes())
    }

    /// Dequantise `data` (exactly `bytes_for(out.len())` bytes) into `out`.
    ///
    /// # Panics
    /// If the lengths disagree; callers check them with [`GgmlType::bytes_for`] first.
    pub fn dequantize(self, data: &[u8], out: &mut [f32]) {
        assert_eq!(
            Some(data.len()),
            self.bytes_for(out.len()),
            "{self:?} length mismatch"
        );
        let blocks = data
            .chunks_exact(self.block_bytes())
            .zip(out.chunks_exact_mut(self.block_len()));
        match self {
            GgmlType::F32 => {
                blocks.for_each(|(b, y)| y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            GgmlType::F16 => blocks.for_each(|(b, y)| y[0] = f16(b, 0)),
            GgmlType::BF16 => {
                blocks.for_each(|(b, y)| y[0] = half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            }
            GgmlType::Q4_0 => {
                blocks.for_each(|(b, y)| q4_block(f16(b, 0), -8.0 * f16(b, 0), &b[2..18], y))
            }
            GgmlType::Q4_1 => {
                blocks.for_each(|(b, y)| q4_block(f16(b, 0), f16(b, 2), &b[4..20], y))
            }
            GgmlType::Q8_0 => blocks.for_each(|(b, y)| {
                let d = f16(b, 0);
                for (y, &q) in y.iter_mut().zip(&b[2..34]) {
                    *y = d * f32::from(q as i8);
                }
            }),
            GgmlType::Q4_K => blocks.for_each(|(b, y)| k_quant_block(b, &[], &b[16..144], y)),
            GgmlType::Q5_K => {
                blocks.for_each(|(b, y)| k_quant_block(b, &b[16..48], &b[48..176], y))
            }
            GgmlType::Q6_K => blocks.for_each(|(b, y)| q6_k_block(b, y)),
        }
    }
}

/// The little-endian f16 at `b[at..at+2]` as f32.
fn f16(b: &[u8], at: usize) -> f32 {
    half::f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Q4_0 / Q4_1 body: `y[j] = d·(qs[j] & 15) + m`, `y[j+16] = d·(qs[j] >> 4) + m`
/// (Q4_0 is the case `m = −8d`).
fn q4_block(d: f32, m: f32, qs: &[u8], y: &mut [f32]) {
    let (lo, hi) = y.split_at_mut(16);
    for ((&q, lo), hi) in qs.iter().zip(lo).zip(hi) {
        *lo = d * f32::from(q & 15) + m;
        *hi = d * f32::from(q >> 4) + m;
    }
}

/// The 6-bit scale and min of sub-block `j` (0..8) packed in the 12 `scales` bytes of a
/// Q4_K/Q5_K block: for `j < 4`, `sc = s[j] & 63`, `m = s[j+4] & 63`; otherwise the low four
/// bits come from `s[j+4]` (low nibble for `sc`, high for `m`) and the top two bits from the
/// top two bits of `s[j−4]` (`sc`) and `s[j]` (`m`).
pub fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// Q4_K (`qh` empty) and Q5_K super-block; the formulas are on [`GgmlType::Q4_K`] / [`GgmlType::Q5_K`].
fn k_quant_block(b: &[u8], qh: &[u8], qs: &[u8], y: &mut [f32]) {
    let (d, dmin, scales) = (f16(b, 0), f16(b, 2), &b[4..16]);
    for (p, (q, y)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        for half in 0..2 {
            let sub = 2 * p + half;
            let (sc, m) = scale_min_k4(sub, scales);
            let (scale, min) = (d * f32::from(sc), dmin * f32::from(m));
            for l in 0..32 {
                let low = if half == 0 { q[l] & 15 } else { q[l] >> 4 };
                let high = qh.get(l).map_or(0, |&h| ((h >> sub) & 1) << 4);
                y[32 * half + l] = scale * f32::from(low | high) - min;
            }
        }
    }
}

/// Q6_K super-block; the formula is on [`GgmlType::Q6_K`].
fn q6_k_block(b: &[u8], y: &mut [f32]) {
    let (ql, qh, scales, d) = (&b[0..128], &b[128..192], &b[192..208], f16(b, 208));
    for h in 0..2 {
        let (ql, qh, sc, y) = (
            &ql[64 * h..],
            &qh[32 * h..],
            &scales[8 * h..],
            &mut y[128 * h..],
        );
        for l in 0..32 {
            let s = l / 16;
            let q = [
                (ql[l] & 15) | (qh[l] & 3) << 4,
                (ql[l + 32] & 15) | ((qh[l] >> 2) & 3) << 4,
                (ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4,
                (ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4,
            ];
            for (k, q) in q.into_iter().enumerate() {
                y[l + 32 * k] = d * f32::from(sc[s + 2 * k] as i8) * f32::from(q as i8 - 32);
            }
        }
    }
}
