//! Reading model checkpoints into host memory, and writing them back.
//!
//! Two sources, one result: a single GGUF file ([`gguf`], quantised tensors dequantised to f32)
//! or a Hugging Face directory ([`hf`]: `config.json`, safetensors, tokenizer files) both load
//! into a [`Checkpoint`] whose tensors carry Hugging Face names and layouts
//! (`model.layers.{i}.self_attn.q_proj.weight`, shape `[out, in]`, row-major f32).
//! [`save_hf_dir`] writes a Hugging Face directory that transformers and [`Checkpoint::load`] read.

pub mod gguf;
pub mod hf;
pub mod quant;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::ModelConfig;
use crate::tokenizer::TextCodec;
use crate::{Error, Result};

pub use hf::save_hf_dir;

/// A dense row-major f32 tensor in host memory.
#[derive(Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    /// A tensor of `shape` holding `data`; `None` unless `data.len()` is the product of `shape`.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Option<Self> {
        (shape.iter().product::<usize>() == data.len()).then_some(HostTensor { shape, data })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

impl fmt::Debug for HostTensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head = &self.data[..self.data.len().min(4)];
        write!(
            f,
            "HostTensor {{ shape: {:?}, data: {head:?}{} }}",
            self.shape,
            if self.data.len() > 4 { "..." } else { "" }
        )
    }
}

/// A model loaded into host memory: configuration, HF-named f32 tensors, tokenizer.
#[derive(Debug)]
pub struct Checkpoint {
    pub config: ModelConfig,
    /// Hugging Face names and layouts; `lm_head.weight` is absent when embeddings are tied.
    pub tensors: BTreeMap<String, HostTensor>,
    pub codec: TextCodec,
    /// The GGUF file or directory it was read from.
    pub source: PathBuf,
}

impl Checkpoint {
    /// Load a `.gguf` file or a Hugging Face model directory.
    pub fn load(path: &Path) -> Result<Checkpoint> {
        if path.is_dir() {
            hf::load(path)
        } else if path.is_file() {
            gguf::load(path)
        } else {
            Err(Error::checkpoint(
                path,
                "no such file or directory (expected a .gguf file or a Hugging Face model directory)",
            ))
        }
    }

    /// Remove and return the tensor `name`; an error naming it (and the checkpoint) if absent.
    pub fn take(&mut self, name: &str) -> Result<HostTensor> {
        self.tensors
            .remove(name)
            .ok_or_else(|| Error::checkpoint(&self.source, format!("tensor `{name}` is missing")))
    }
}
