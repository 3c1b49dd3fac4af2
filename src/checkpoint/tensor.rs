//! A checkpoint tensor on its way to the device: where its elements are (in memory, or still in
//! a safetensors file, read only when the model takes it) and their conversion to the float
//! type the model holds it in.
//!
//! Reading one tensor at a time is what keeps loading's host memory near one tensor rather
//! than the whole model: a Hugging Face checkpoint's tensors are located when it is opened
//! ([`StoredTensor::in_file`]) and each is read, converted and uploaded in turn.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::tensor::{FloatDType, TensorData};
use half::{bf16, f16};

use super::HostTensor;
use crate::{Error, Result};

/// Row-major elements in one of the float types weights are stored and held in.
#[derive(Debug, Clone, PartialEq)]
pub enum Elements {
    F32(Vec<f32>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
}

/// [`Elements::convert`]'s result: the elements in the type asked for, or in f32 when some of
/// them lie outside its range.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion {
    pub elements: Elements,
    /// Finite elements whose magnitude exceeds the largest finite value of the type asked for
    /// (65,504 for f16): they would have become infinite, so the tensor was kept in f32.
    pub out_of_range: usize,
}

impl Elements {
    /// The float type of the elements.
    pub fn dtype(&self) -> FloatDType {
        match self {
            Elements::F32(_) => FloatDType::F32,
            Elements::F16(_) => FloatDType::F16,
            Elements::BF16(_) => FloatDType::BF16,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Elements::F32(v) => v.len(),
            Elements::F16(v) => v.len(),
            Elements::BF16(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the elements take: 4 or 2 per element.
    pub fn bytes(&self) -> usize {
        match self {
            Elements::F32(v) => 4 * v.len(),
            Elements::F16(_) | Elements::BF16(_) => 2 * self.len(),
        }
    }

    /// The elements widened to f32 (exact from f16 and bf16).
    pub fn into_f32(self) -> Vec<f32> {
        match self {
            Elements::F32(v) => v,
            Elements::F16(v) => v.into_iter().map(f16::to_f32).collect(),
            Elements::BF16(v) => v.into_iter().map(bf16::to_f32).collect(),
        }
    }

    /// The elements in `target` (f16 or bf16; any other type means f32), rounded to nearest
    /// even; widening is exact. When narrowing would turn finite elements infinite (|x| above
    /// 65,504 for f16, above 3.39e38 for bf16) the result is f32 instead and
    /// [`Conversion::out_of_range`] counts them; NaN and ±∞ pass through.
    pub fn convert(self, target: FloatDType) -> Conversion {
        let limit = match target {
            FloatDType::F16 => f16::MAX.to_f32(),
            FloatDType::BF16 => bf16::MAX.to_f32(),
            _ => f32::INFINITY,
        };
        let out_of_range = match &self {
            Elements::F32(v) => v.iter().filter(|&&x| exceeds(x, limit)).count(),
            Elements::BF16(v) => v.iter().filter(|x| exceeds(x.to_f32(), limit)).count(),
            // f16's range lies inside bf16's and f32's.
            Elements::F16(_) => 0,
        };
        if out_of_range > 0 || !matches!(target, FloatDType::F16 | FloatDType::BF16) {
            return Conversion {
                elements: Elements::F32(self.into_f32()),
                out_of_range,
            };
        }
        let elements = match (self, target) {
            (Elements::F16(v), FloatDType::F16) => Elements::F16(v),
            (Elements::F32(v), FloatDType::F16) => {
                Elements::F16(v.into_iter().map(f16::from_f32).collect())
            }
            (Elements::BF16(v), FloatDType::F16) => {
                Elements::F16(v.into_iter().map(|x| f16::from_f32(x.to_f32())).collect())
            }
            // The target is bf16.
            (Elements::BF16(v), _) => Elements::BF16(v),
            (Elements::F32(v), _) => Elements::BF16(v.into_iter().map(bf16::from_f32).collect()),
            (Elements::F16(v), _) => {
                Elements::BF16(v.into_iter().map(|x| bf16::from_f32(x.to_f32())).collect())
            }
        };
        Conversion {
            elements,
            out_of_range: 0,
        }
    }

    /// `[rows, cols]` row-major elements transposed to `[cols, rows]`.
    pub fn transpose(self, rows: usize, cols: usize) -> Elements {
        match self {
            Elements::F32(v) => Elements::F32(transpose(&v, rows, cols)),
            Elements::F16(v) => Elements::F16(transpose(&v, rows, cols)),
            Elements::BF16(v) => Elements::BF16(transpose(&v, rows, cols)),
        }
    }

    /// Split off the elements from `at` on and give their memory back (the vector is shrunk),
    /// so cutting a tensor into blocks from its end never holds it twice.
    pub fn split_off(&mut self, at: usize) -> Elements {
        fn cut<T>(v: &mut Vec<T>, at: usize) -> Vec<T> {
            let tail = v.split_off(at);
            v.shrink_to_fit();
            tail
        }
        match self {
            Elements::F32(v) => Elements::F32(cut(v, at)),
            Elements::F16(v) => Elements::F16(cut(v, at)),
            Elements::BF16(v) => Elements::BF16(cut(v, at)),
        }
    }

    /// The elements as burn tensor data of `shape` (which must hold [`Elements::len`] elements).
    pub fn into_data(self, shape: Vec<usize>) -> TensorData {
        match self {
            Elements::F32(v) => TensorData::new(v, shape),
            Elements::F16(v) => TensorData::new(v, shape),
            Elements::BF16(v) => TensorData::new(v, shape),
        }
    }
}

/// `n` elements read as stored bytes by `read`, then each put in host byte order by `from_le`
/// (the identity on little-endian hosts).
fn read_le<T: bytemuck::Pod>(
    n: usize,
    read: impl FnOnce(&mut [u8]) -> Result<()>,
    from_le: fn(T) -> T,
) -> Result<Vec<T>> {
    let mut v = vec![T::zeroed(); n];
    read(bytemuck::cast_slice_mut(&mut v))?;
    v.iter_mut().for_each(|x| *x = from_le(*x));
    Ok(v)
}

/// Whether `x` is finite and beyond `±limit`.
fn exceeds(x: f32, limit: f32) -> bool {
    x.is_finite() && x.abs() > limit
}

/// `[rows, cols]` row-major data transposed to `[cols, rows]`.
fn transpose<T: Copy + Default>(data: &[T], rows: usize, cols: usize) -> Vec<T> {
    let mut out = vec![T::default(); data.len()];
    for (r, row) in data.chunks_exact(cols).enumerate() {
        for (c, &value) in row.iter().enumerate() {
            out[c * rows + r] = value;
        }
    }
    out
}

/// A tensor of a checkpoint: its shape and where its elements are.
#[derive(Debug, Clone)]
pub struct StoredTensor {
    pub shape: Vec<usize>,
    location: Location,
}

#[derive(Debug, Clone)]
enum Location {
    /// Already in memory (a dequantised GGUF tensor, or one made by hand).
    Host(Vec<f32>),
    /// `shape.product()` little-endian elements of `dtype` at byte `offset` of `path`.
    File {
        path: Arc<PathBuf>,
        offset: u64,
        dtype: FileDtype,
    },
}

/// The element types a safetensors checkpoint may store weights in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileDtype {
    F32,
    F16,
    BF16,
}

impl FileDtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            FileDtype::F32 => 4,
            FileDtype::F16 | FileDtype::BF16 => 2,
        }
    }
}

impl StoredTensor {
    /// A tensor whose elements are in `path` at byte `offset`, not read yet. The caller has
    /// checked that the file holds them there.
    pub fn in_file(path: Arc<PathBuf>, offset: u64, dtype: FileDtype, shape: Vec<usize>) -> Self {
        StoredTensor {
            shape,
            location: Location::File {
                path,
                offset,
                dtype,
            },
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements in their stored type, read from the file if they are still there (one
    /// read of exactly their bytes, no second copy).
    pub fn elements(self) -> Result<Elements> {
        match self.location {
            Location::Host(data) => Ok(Elements::F32(data)),
            Location::File {
                path,
                offset,
                dtype,
            } => {
                let n = self.shape.iter().product::<usize>();
                let read = |bytes: &mut [u8]| read_at(&path, offset, bytes);
                Ok(match dtype {
                    FileDtype::F32 => Elements::F32(read_le(n, read, |x: f32| {
                        f32::from_bits(u32::from_le(x.to_bits()))
                    })?),
                    FileDtype::F16 => Elements::F16(read_le(n, read, |x: f16| {
                        f16::from_bits(u16::from_le(x.to_bits()))
                    })?),
                    FileDtype::BF16 => Elements::BF16(read_le(n, read, |x: bf16| {
                        bf16::from_bits(u16::from_le(x.to_bits()))
                    })?),
                })
            }
        }
    }

    /// A copy of the tensor in host memory as f32 (read from its file if it is there).
    pub fn to_host(&self) -> Result<HostTensor> {
        self.clone().into_host()
    }

    /// The tensor in host memory as f32.
    pub fn into_host(self) -> Result<HostTensor> {
        let shape = self.shape.clone();
        Ok(HostTensor {
            shape,
            data: self.elements()?.into_f32(),
        })
    }
}

impl From<HostTensor> for StoredTensor {
    fn from(t: HostTensor) -> Self {
        StoredTensor {
            shape: t.shape,
            location: Location::Host(t.data),
        }
    }
}

/// Fill `bytes` from `path` starting at byte `offset`.
fn read_at(path: &Path, offset: u64, bytes: &mut [u8]) -> Result<()> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_exact(bytes))
        .map_err(|e| Error::io(path, e))
}
