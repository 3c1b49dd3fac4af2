//! The GGUF container (version 2 and 3): metadata, tensor directory and tensor data.
//!
//! Layout (all integers little-endian):
//! ```text
//! magic "GGUF" | version: u32 | tensor_count: u64 | kv_count: u64
//! kv_count × (key: string, value_type: u32, value)
//! tensor_count × (name: string, n_dims: u32, dims: [u64; n_dims], ggml_type: u32, offset: u64)
//! padding to `general.alignment` (default 32)
//! tensor data; each tensor at data_start + offset
//! ```
//! where `string` is `len: u64` + UTF-8 bytes and an array value is `item_type: u32, len: u64,
//! items`. `dims[0]` is the fastest-varying (column) dimension, so a GGUF tensor with dims
//! `[in, out]` is the row-major HF matrix `[out, in]`.
//!
//! Every length is checked against the bytes that remain before anything is sliced or
//! allocated, so a truncated or corrupt file is an [`Error::Checkpoint`], never a panic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::checkpoint::HostTensor;
use crate::checkpoint::quant::GgmlType;
use crate::{Error, Result};

/// The four bytes every GGUF file starts with.
const MAGIC: &[u8; 4] = b"GGUF";
/// Tensor data alignment when `general.alignment` is absent.
const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml tensors have at most 4 dimensions.
const MAX_DIMS: u32 = 4;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<MetaValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl MetaValue {
    /// The value as an integer, if it is one of the integer types.
    pub fn as_i64(&self) -> Option<i64> {
        Some(match *self {
            MetaValue::U8(v) => v.into(),
            MetaValue::I8(v) => v.into(),
            MetaValue::U16(v) => v.into(),
            MetaValue::I16(v) => v.into(),
            MetaValue::U32(v) => v.into(),
            MetaValue::I32(v) => v.into(),
            MetaValue::U64(v) => i64::try_from(v).ok()?,
            MetaValue::I64(v) => v,
            _ => return None,
        })
    }

    /// The value as a float, if it is numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v.into()),
            MetaValue::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(items) => Some(items),
            _ => None,
        }
    }
}

/// Where one tensor's bytes are and how to read them.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// GGUF order: `dims[0]` varies fastest.
    pub dims: Vec<usize>,
    pub ggml_type: GgmlType,
    /// Absolute byte range in the file.
    pub start: usize,
    pub len: usize,
}

impl TensorInfo {
    /// The row-major (HF) shape: the GGUF dims reversed.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }
}

/// A parsed GGUF file held in memory.
#[derive(Debug)]
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: BTreeMap<String, MetaValue>,
    pub tensors: Vec<TensorInfo>,
    bytes: Vec<u8>,
}

impl GgufFile {
    /// Read and parse the file at `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::parse(path, bytes)
    }

    /// Parse `bytes`, the contents of `path` (named in errors).
    pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        let mut r = Reader {
            bytes: &bytes,
            pos: 0,
            path,
        };
        if r.take(4, "magic")? != MAGIC {
            return Err(Error::checkpoint(
                path,
                "not a GGUF file (bad magic; expected \"GGUF\")",
            ));
        }
        let version = r.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(Error::checkpoint(
                path,
                format!("unsupported GGUF version {version} (supported: 2, 3)"),
            ));
        }
        let tensor_count = r.u64("tensor_count")?;
        let kv_count = r.u64("kv_count")?;
        // A key-value pair takes at least 8 (key length) + 4 (type) + 1 bytes.
        r.check_count(kv_count, 13, "kv_count")?;
        let mut metadata = BTreeMap::new();
        for i in 0..kv_count {
            let key = r.string(&format!("metadata key #{i}"))?;
            let ty = r.u32(&format!("type of `{key}`"))?;
            let value = r.value(ty, &key)?;
            if metadata.contains_key(&key) {
                return Err(Error::checkpoint(
                    path,
                    format!("metadata `{key}` appears more than once"),
                ));
            }
            metadata.insert(key, value);
        }

        // A tensor info takes at least 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset) bytes.
        r.check_count(tensor_count, 24, "tensor_count")?;
        let mut raw = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for i in 0..tensor_count {
            let name = r.string(&format!("name of tensor #{i}"))?;
            if !names.insert(name.clone()) {
                return Err(Error::checkpoint(
                    path,
                    format!("tensor `{name}` appears more than once"),
                ));
            }
            let n_dims = r.u32(&format!("n_dims of `{name}`"))?;
            if !(1..=MAX_DIMS).contains(&n_dims) {
                return Err(Error::checkpoint(
                    path,
                    format!("tensor `{name}` has {n_dims} dimensions (1 to {MAX_DIMS})"),
                ));
            }
            let dims = (0..n_dims)
                .map(|_| {
                    r.u64(&format!("dims of `{name}`"))
                        .and_then(|d| r.usize(d, &format!("dims of `{name}`")))
                })
                .collect::<Result<Vec<_>>>()?;
            let type_id = r.u32(&format!("type of `{name}`"))?;
            let offset = r.u64(&format!("offset of `{name}`"))?;
            raw.push((name, dims, type_id, offset));
        }

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_i64() {
                Some(a) if a > 0 && (a as u64).is_power_of_two() => a as u64,
                _ => {
                    return Err(Error::checkpoint(
                        path,
                        format!("general.alignment = {v:?} is not a positive power of two"),
                    ));
                }
            },
        };
        let data_start = (r.pos as u64).div_ceil(alignment) * alignment;
        let tensors = raw
            .into_iter()
            .map(|(name, dims, type_id, offset)| {
                locate(
                    path,
                    bytes.len(),
                    data_start,
                    alignment,
                    name,
                    dims,
                    type_id,
                    offset,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(GgufFile {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
            bytes,
        })
    }

    /// Metadata value `key`, or an error naming it.
    pub fn get(&self, key: &str) -> Result<&MetaValue> {
        self.metadata
            .get(key)
            .ok_or_else(|| Error::checkpoint(&self.path, format!("metadata `{key}` is missing")))
    }

    /// String metadata `key`.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        self.get(key)?
            .as_str()
            .ok_or_else(|| self.wrong_type(key, "a string"))
    }

    /// Non-negative integer metadata `key`.
    pub fn get_usize(&self, key: &str) -> Result<usize> {
        self.get(key)?
            .as_i64()
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| self.wrong_type(key, "a non-negative integer"))
    }

    /// Numeric metadata `key` as f64.
    pub fn get_f64(&self, key: &str) -> Result<f64> {
        self.get(key)?
            .as_f64()
            .ok_or_else(|| self.wrong_type(key, "a number"))
    }

    /// Optional metadata: `Ok(None)` when absent, the error of `read` when present but wrong.
    pub fn optional<'a, T>(
        &'a self,
        key: &str,
        read: impl Fn(&'a Self, &str) -> Result<T>,
    ) -> Result<Option<T>> {
        if self.metadata.contains_key(key) {
            read(self, key).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Array-of-strings metadata `key`.
    pub fn get_strings(&self, key: &str) -> Result<Vec<String>> {
        self.get_array(key, "an array of strings", |v| {
            v.as_str().map(str::to_owned)
        })
    }

    /// Array-of-integers metadata `key`.
    pub fn get_ints(&self, key: &str) -> Result<Vec<i64>> {
        self.get_array(key, "an array of integers", MetaValue::as_i64)
    }

    /// Array metadata `key` with every item converted by `item` (`expected` names the type).
    fn get_array<T>(
        &self,
        key: &str,
        expected: &str,
        item: impl Fn(&MetaValue) -> Option<T>,
    ) -> Result<Vec<T>> {
        let items = self
            .get(key)?
            .as_array()
            .ok_or_else(|| self.wrong_type(key, "an array"))?;
        items
            .iter()
            .map(|v| item(v).ok_or_else(|| self.wrong_type(key, expected)))
            .collect()
    }

    /// The tensor `name` dequantised to f32, in row-major shape (GGUF dims reversed), exactly
    /// as stored (no row permutation).
    pub fn tensor_f32(&self, name: &str) -> Result<HostTensor> {
        let info = self
            .tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| Error::checkpoint(&self.path, format!("tensor `{name}` is missing")))?;
        Ok(self.dequantize(info))
    }

    /// Dequantise a tensor of this file (its byte range was validated when parsing).
    pub(super) fn dequantize(&self, info: &TensorInfo) -> HostTensor {
        let mut data = vec![0.0; info.dims.iter().product()];
        info.ggml_type
            .dequantize(&self.bytes[info.start..info.start + info.len], &mut data);
        HostTensor {
            shape: info.shape(),
            data,
        }
    }

    pub(super) fn wrong_type(&self, key: &str, expected: &str) -> Error {
        Error::checkpoint(&self.path, format!("metadata `{key}` is not {expected}"))
    }
}

/// Validate one tensor info and turn it into an absolute byte range.
#[allow(clippy::too_many_arguments)]
fn locate(
    path: &Path,
    file_len: usize,
    data_start: u64,
    alignment: u64,
    name: String,
    dims: Vec<usize>,
    type_id: u32,
    offset: u64,
) -> Result<TensorInfo> {
    let bad = |message: String| Error::checkpoint(path, format!("tensor `{name}`: {message}"));
    if dims.contains(&0) {
        return Err(bad(format!("dims {dims:?} include a zero")));
    }
    let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| {
        bad(format!("ggml type {type_id} is not supported (supported: F32, F16, BF16, Q4_0, Q4_1, Q8_0, Q4_K, Q5_K, Q6_K)"))
    })?;
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(format!("dims {dims:?} overflow")))?;
    if dims
        .first()
        .is_some_and(|&cols| !cols.is_multiple_of(ggml_type.block_len()))
    {
        return Err(bad(format!(
            "row length {} is not a multiple of the {ggml_type:?} block ({})",
            dims[0],
            ggml_type.block_len()
        )));
    }
    let len = ggml_type.bytes_for(count).ok_or_else(|| {
        bad(format!(
            "{count} {ggml_type:?} values do not fill whole blocks"
        ))
    })?;
    if !offset.is_multiple_of(alignment) {
        return Err(bad(format!(
            "offset {offset} is not a multiple of the alignment {alignment}"
        )));
    }
    let start = data_start.checked_add(offset).filter(|&s| s <= file_len as u64).ok_or_else(|| {
        bad(format!("data offset {offset} (+{data_start}) is past the end of the file ({file_len} bytes; truncated?)"))
    })? as usize;
    if len > file_len - start {
        return Err(bad(format!(
            "{len} bytes of data at byte {start} run past the end of the file ({file_len} bytes; truncated?)"
        )));
    }
    Ok(TensorInfo {
        name,
        dims,
        ggml_type,
        start,
        len,
    })
}

/// A bounds-checked little-endian reader over the file's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    /// The next `n` bytes, or an error saying what was being read when the file ended.
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let remaining = self.bytes.len() - self.pos;
        if n > remaining {
            return Err(Error::checkpoint(
                self.path,
                format!(
                    "unexpected end of file at byte {} reading {what} ({n} bytes needed, {remaining} left; truncated?)",
                    self.pos
                ),
            ));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        Ok(self
            .take(N, what)?
            .try_into()
            .expect("take returned N bytes"))
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn usize(&self, v: u64, what: &str) -> Result<usize> {
        usize::try_from(v).map_err(|_| {
            Error::checkpoint(self.path, format!("{what}: {v} does not fit in memory"))
        })
    }

    /// Refuse `count` items of at least `min_bytes` each when the rest of the file cannot hold
    /// them (so a corrupt count cannot trigger a huge allocation or a long loop).
    fn check_count(&self, count: u64, min_bytes: u64, what: &str) -> Result<()> {
        let remaining = (self.bytes.len() - self.pos) as u64;
        if count.saturating_mul(min_bytes) > remaining {
            return Err(Error::checkpoint(
                self.path,
                format!(
                    "{what} = {count} cannot fit in the {remaining} bytes left at byte {} (corrupt or truncated)",
                    self.pos
                ),
            ));
        }
        Ok(())
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u64(what)?;
        self.check_count(len, 1, what)?;
        let bytes = self.take(len as usize, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| Error::checkpoint(self.path, format!("{what} is not valid UTF-8")))
    }

    /// A value of GGUF type `ty` for metadata `key`.
    fn value(&mut self, ty: u32, key: &str) -> Result<MetaValue> {
        Ok(match ty {
            0 => MetaValue::U8(self.array::<1>(key)?[0]),
            1 => MetaValue::I8(self.array::<1>(key)?[0] as i8),
            2 => MetaValue::U16(u16::from_le_bytes(self.array(key)?)),
            3 => MetaValue::I16(i16::from_le_bytes(self.array(key)?)),
            4 => MetaValue::U32(self.u32(key)?),
            5 => MetaValue::I32(i32::from_le_bytes(self.array(key)?)),
            6 => MetaValue::F32(f32::from_le_bytes(self.array(key)?)),
            7 => match self.array::<1>(key)?[0] {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                b => {
                    return Err(Error::checkpoint(
                        self.path,
                        format!("metadata `{key}`: bool byte {b} is not 0 or 1"),
                    ));
                }
            },
            8 => MetaValue::String(self.string(key)?),
            9 => {
                let item_ty = self.u32(key)?;
                if item_ty == 9 {
                    return Err(Error::checkpoint(
                        self.path,
                        format!("metadata `{key}`: nested arrays are not supported"),
                    ));
                }
                let len = self.u64(key)?;
                self.check_count(len, min_value_bytes(item_ty), key)?;
                let items = (0..len)
                    .map(|_| self.value(item_ty, key))
                    .collect::<Result<Vec<_>>>()?;
                MetaValue::Array(items)
            }
            10 => MetaValue::U64(self.u64(key)?),
            11 => MetaValue::I64(i64::from_le_bytes(self.array(key)?)),
            12 => MetaValue::F64(f64::from_le_bytes(self.array(key)?)),
            other => {
                return Err(Error::checkpoint(
                    self.path,
                    format!("metadata `{key}`: unknown value type {other}"),
                ));
            }
        })
    }
}

/// Fewest bytes a value of GGUF type `ty` occupies (strings: their 8-byte length).
fn min_value_bytes(ty: u32) -> u64 {
    match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        _ => 8,
    }
}
