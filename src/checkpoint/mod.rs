//! Reading model checkpoints into host memory, and writing them back.
//!
//! Two sources, one result: a single GGUF file ([`gguf`], quantised tensors dequantised to f32)
//! or a Hugging Face directory ([`hf`]: `config.json`, safetensors, tokenizer files) both load
//! into a [`Checkpoint`] whose tensors carry Hugging Face names and layouts
//! (`model.layers.{i}.self_attn.q_proj.weight`, shape `[out, in]`, row-major). A Hugging Face
//! directory's tensors stay in their files until taken ([`StoredTensor`]), so loading a model
//! reads, converts and uploads one tensor at a time.
//! [`save_hf_dir`] writes a Hugging Face directory that transformers and [`Checkpoint::load`] read.

pub mod gguf;
pub mod hf;
pub mod quant;
pub mod tensor;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::ModelConfig;
use crate::tokenizer::TextCodec;
use crate::{Error, Result};

pub use hf::{save_hf_dir, save_hf_dir_streaming};
pub use tensor::{Conversion, Elements, FileDtype, StoredTensor};

/// Refuse to read `path` unless it is a regular file once symlinks are followed: a FIFO or a
/// device (`/dev/zero`) would block or never end, a directory cannot be read.
pub(crate) fn check_regular_file(path: &Path) -> Result<()> {
    let metadata = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if metadata.is_file() {
        return Ok(());
    }
    let kind = if metadata.is_dir() {
        "a directory"
    } else {
        "a FIFO, socket or device"
    };
    Err(Error::checkpoint(
        path,
        format!("is {kind}, not a regular file"),
    ))
}

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

/// An opened model: configuration, HF-named tensors (in memory or still in their files),
/// tokenizer.
#[derive(Debug)]
pub struct Checkpoint {
    pub config: ModelConfig,
    /// Hugging Face names and layouts; `lm_head.weight` is absent when embeddings are tied.
    pub tensors: BTreeMap<String, StoredTensor>,
    pub codec: TextCodec,
    /// The GGUF file or directory it was read from.
    pub source: PathBuf,
}

impl Checkpoint {
    /// Load a `.gguf` file or a Hugging Face model directory.
    ///
    /// The result is [validated](Checkpoint::validate): a config we cannot build, a layer count
    /// the tensors disagree with or a vocabulary smaller than the tokenizer's is an error.
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let checkpoint = if path.is_dir() {
            hf::load(path)
        } else if path.is_file() {
            gguf::load(path)
        } else {
            Err(Error::checkpoint(
                path,
                "no such file or directory (expected a .gguf file or a Hugging Face model directory)",
            ))
        }?;
        checkpoint.validate()?;
        Ok(checkpoint)
    }

    /// Check the config ([`ModelConfig::validate`]) and what it must agree with: the decoder
    /// layers present among the tensors (`model.layers.{i}.…` for every `i` below
    /// `num_hidden_layers`, none above) and the tokenizer (`vocab_size` at least one more than
    /// its largest token id). Errors name the checkpoint and the config field.
    pub fn validate(&self) -> Result<()> {
        let config = &self.config;
        config.validate_in(&self.source)?;
        let layers: std::collections::BTreeSet<usize> = self
            .tensors
            .keys()
            .map(String::as_str)
            .filter_map(crate::model::layout::hf_layer)
            .collect();
        let expected = config.num_hidden_layers;
        if layers.len() != expected || layers.last().is_some_and(|&last| last + 1 != expected) {
            let found = match (layers.first(), layers.last()) {
                (Some(first), Some(last)) => {
                    format!("{} layers (numbered {first} to {last})", layers.len())
                }
                _ => "no layers".to_owned(),
            };
            return Err(Error::checkpoint(
                &self.source,
                format!(
                    "field `num_hidden_layers`: the config says {expected} layers, the tensors hold {found}"
                ),
            ));
        }
        let tokens = self.codec.id_bound();
        if config.vocab_size < tokens {
            return Err(Error::checkpoint(
                &self.source,
                format!(
                    "field `vocab_size`: {} is smaller than the tokenizer's {tokens} token ids",
                    config.vocab_size
                ),
            ));
        }
        Ok(())
    }

    /// Remove and return the tensor `name`; an error naming it (and the checkpoint) if absent.
    pub fn take(&mut self, name: &str) -> Result<StoredTensor> {
        self.tensors
            .remove(name)
            .ok_or_else(|| Error::checkpoint(&self.source, format!("tensor `{name}` is missing")))
    }

    /// Every tensor read into host memory as f32, taken from the checkpoint (a whole model at
    /// once: for inspection and conversion, not for loading a model to run).
    pub fn take_host_tensors(&mut self) -> Result<BTreeMap<String, HostTensor>> {
        std::mem::take(&mut self.tensors)
            .into_iter()
            .map(|(name, t)| Ok((name, t.into_host()?)))
            .collect()
    }
}
