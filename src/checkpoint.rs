//! Checkpoint formats (being written on the `checkpoint` branch; this is the agreed interface).

use crate::config::ModelConfig;
use crate::tokenizer::TextCodec;
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A row-major f32 tensor in host memory.
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// A loaded checkpoint: config, tensors under Hugging Face names, tokenizer.
pub struct Checkpoint {
    pub config: ModelConfig,
    pub tensors: BTreeMap<String, HostTensor>,
    pub codec: TextCodec,
    pub source: PathBuf,
}

impl Checkpoint {
    pub fn load(path: &Path) -> Result<Checkpoint> {
        Err(Error::checkpoint(path, "checkpoint loading is not built yet"))
    }

    pub fn take(&mut self, name: &str) -> Result<HostTensor> {
        self.tensors
            .remove(name)
            .ok_or_else(|| Error::checkpoint(&self.source, format!("tensor `{name}` is missing")))
    }
}
