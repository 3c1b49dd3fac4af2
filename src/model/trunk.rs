//! Frozen-trunk record and replay: run the bottom layers of a model once for many runs that
//! share them.
//!
//! A model fine-tuned with `--train-layers K` keeps its base model's embedding and bottom
//! `L = N − K` layers. For a token sequence the input of layer `L`,
//!
//! ```text
//! x_L = (layer_{L−1} ∘ … ∘ layer_0)(s · E[t])          [B, T, d] per decoder pass
//! ```
//!
//! is then the same for the base model and for every fine-tune of it: evaluating several
//! fine-tunes on one benchmark, or training several of them on the same batches, computes it
//! again each time, and it is `L/N` of the forward work. A [`Trunk`] records `x_L` of each
//! decoder pass of a computation and replays it: in replay the pass starts at layer `L` from
//! the recorded tensor, skipping the embedding and layers `0..L`. The top layers see
//! bit-identical inputs, so a replayed run's results are exactly the recorded run's.
//!
//! [`TrunkStore`] keeps recordings on disk, one file per computation, named by a hash of what
//! decides them: the trunk's weights ([`trunk_fingerprint`]), `L`, and the caller's key (the
//! token ids and batching of the computation). A model whose bottom layers differ gets another
//! fingerprint, so it never reads another model's recordings.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor, TensorData};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::Llama;
use crate::io::Fnv;
use crate::{Error, Result};

/// The inputs of layer `layer` for each decoder pass of one computation, being recorded or
/// replayed.
pub struct Trunk {
    layer: usize,
    mode: Mode,
}

enum Mode {
    /// Passes run so far, in order.
    Record(Vec<Tensor<3>>),
    /// Passes still to replay, in order.
    Replay(VecDeque<Tensor<3>>),
}

impl Trunk {
    /// Record the input of layer `layer` of every pass.
    pub fn record(layer: usize) -> Self {
        Trunk {
            layer,
            mode: Mode::Record(Vec::new()),
        }
    }

    /// Replay `passes` (as [`Trunk::into_passes`] gave them after recording), one per pass.
    pub fn replay(layer: usize, passes: Vec<Tensor<3>>) -> Self {
        Trunk {
            layer,
            mode: Mode::Replay(passes.into()),
        }
    }

    /// The first layer run (replay) or whose input is recorded (record).
    pub fn layer(&self) -> usize {
        self.layer
    }

    /// Whether this trunk replays.
    pub fn is_replay(&self) -> bool {
        matches!(self.mode, Mode::Replay(_))
    }

    /// The recorded passes (record), or those not replayed yet (replay).
    pub fn into_passes(self) -> Vec<Tensor<3>> {
        match self.mode {
            Mode::Record(passes) => passes,
            Mode::Replay(passes) => passes.into(),
        }
    }

    /// Replay: the next pass's input of layer `layer`, which must be `[b, t, d]`.
    pub(crate) fn next_input(&mut self, dims: [usize; 3]) -> Result<Option<Tensor<3>>> {
        let Mode::Replay(passes) = &mut self.mode else {
            return Ok(None);
        };
        let x = passes.pop_front().ok_or_else(|| {
            Error::invalid("trunk replay: more decoder passes than were recorded")
        })?;
        if x.dims() != dims {
            return Err(Error::invalid(format!(
                "trunk replay: the recorded pass is {:?}, this pass is {dims:?}",
                x.dims()
            )));
        }
        Ok(Some(x))
    }

    /// Record: keep `x`, the input of layer `layer`.
    pub(crate) fn keep(&mut self, layer: usize, x: &Tensor<3>) {
        if let Mode::Record(passes) = &mut self.mode
            && layer == self.layer
        {
            passes.push(x.clone());
        }
    }
}

/// The key of a computation over `sequences`: `context` (what else decides its decoder passes,
/// e.g. the batch size) and every sequence's length and ids.
pub fn computation_key(context: &[u64], sequences: &[&[u32]]) -> u64 {
    let mut hash = Fnv::default();
    for &c in context {
        hash.u64(c);
    }
    hash.u64(sequences.len() as u64);
    for s in sequences {
        hash.u64(s.len() as u64);
        for &id in s.iter() {
            hash.bytes(&id.to_le_bytes());
        }
    }
    hash.finish()
}

/// A fingerprint of everything `x_L` depends on in `model`: the embedding's and layers
/// `0..layer`'s parameters (shapes, float types and values, read back as f32) and the settings
/// the layers compute with (variant, attention shapes, norm eps, RoPE). Hashes `L/N` of the model's weights once (about a second per
/// 100M parameters).
pub fn trunk_fingerprint(model: &Llama, layer: usize) -> u64 {
    struct Hash(Fnv);
    impl ModuleVisitor for Hash {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let t = param.val();
            for &n in t.dims().iter() {
                self.0.u64(n as u64);
            }
            self.0.bytes(format!("{:?}", t.dtype()).as_bytes());
            let values = t.into_data().convert::<f32>();
            self.0.bytes(values.as_bytes());
        }
    }
    let mut hash = Hash(Fnv::default());
    hash.0.u64(layer as u64);
    // What of the config the trunk's computation reads (the parameters' shapes carry the
    // rest): the architecture's variant, the attention shapes, the norms' eps and RoPE. Not
    // fields that only name things (token ids, context length), which differ between a GGUF
    // file and the same weights exported as a Hugging Face directory.
    let c = &model.config;
    let computed = format!(
        "{:?} {} {} {} {} {} {:?}",
        c.variant(),
        c.num_attention_heads,
        c.num_key_value_heads,
        c.head_dim(),
        c.rms_norm_eps,
        c.rope_theta,
        c.rope_scaling
    );
    hash.0.bytes(computed.as_bytes());
    model.embed_tokens.visit(&mut hash);
    for l in &model.layers[..layer.min(model.layers.len())] {
        l.visit(&mut hash);
    }
    hash.0.finish()
}

/// Trunk recordings on disk: `DIR/<hash>.trunk`, one file per computation.
#[derive(Debug)]
pub struct TrunkStore {
    dir: PathBuf,
    layer: usize,
    /// [`trunk_fingerprint`] of the model using the store.
    fingerprint: u64,
    device: Device,
}

/// A recording file starts with this, then the pass count (u32), then each pass: its three
/// dims (u32 each) and its values (f32, little-endian).
const MAGIC: &[u8; 8] = b"GRAMTRK1";

impl TrunkStore {
    /// A store in `dir` (created if missing) for `model`, whose bottom `layer` layers are the
    /// trunk: `0 < layer < N`.
    pub fn open(dir: &Path, model: &Llama, layer: usize) -> Result<Self> {
        let n = model.layers.len();
        if layer == 0 || layer >= n {
            return Err(Error::invalid(format!(
                "--trunk-layers {layer}: the trunk is 1 to {} of the model's {n} layers",
                n.saturating_sub(1)
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Ok(TrunkStore {
            dir: dir.to_path_buf(),
            layer,
            fingerprint: trunk_fingerprint(model, layer),
            device: model.device(),
        })
    }

    /// The trunk's layer count `L`.
    pub fn layer(&self) -> usize {
        self.layer
    }

    fn path(&self, key: u64) -> PathBuf {
        let mut hash = Fnv::default();
        hash.u64(self.fingerprint).u64(self.layer as u64).u64(key);
        self.dir.join(format!("{:016x}.trunk", hash.finish()))
    }

    /// A [`Trunk`] for the computation `key`: replaying its recording if the store has one,
    /// recording otherwise.
    pub fn trunk(&self, key: u64) -> Result<Trunk> {
        let path = self.path(key);
        if !path.exists() {
            return Ok(Trunk::record(self.layer));
        }
        let passes = read_passes(&path, &self.device)?;
        Ok(Trunk::replay(self.layer, passes))
    }

    /// Keep what `trunk` recorded under `key` (written to a temporary name of this process's
    /// and renamed, so a half-written file is never read, even with two runs recording the same
    /// computation); a replay must have used every pass.
    pub fn finish(&self, key: u64, trunk: Trunk) -> Result<()> {
        let replay = trunk.is_replay();
        let passes = trunk.into_passes();
        if replay {
            if !passes.is_empty() {
                return Err(Error::invalid(format!(
                    "trunk replay: {} recorded decoder passes were not used",
                    passes.len()
                )));
            }
            return Ok(());
        }
        let path = self.path(key);
        let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
        write_passes(&tmp, &passes).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
    }
}

fn write_passes(path: &Path, passes: &[Tensor<3>]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    out.write_all(MAGIC)?;
    out.write_all(&(passes.len() as u32).to_le_bytes())?;
    for x in passes {
        for n in x.dims() {
            out.write_all(&(n as u32).to_le_bytes())?;
        }
        let data = x.clone().into_data().convert::<f32>();
        out.write_all(data.as_bytes())?;
    }
    out.into_inner()?.sync_all()
}

fn read_passes(path: &Path, device: &Device) -> Result<Vec<Tensor<3>>> {
    let bad = |what: &str| Error::invalid(format!("{}: {what}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut reader = bytes.as_slice();
    let word = |reader: &mut &[u8]| -> Result<usize> {
        let mut b = [0u8; 4];
        reader
            .read_exact(&mut b)
            .map_err(|_| bad("cut short (not a trunk recording, or written by a killed run)"))?;
        Ok(u32::from_le_bytes(b) as usize)
    };
    let mut magic = [0u8; 8];
    if reader.read_exact(&mut magic).is_err() || &magic != MAGIC {
        return Err(bad("not a trunk recording"));
    }
    let count = word(&mut reader)?;
    let mut passes = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let dims = [word(&mut reader)?, word(&mut reader)?, word(&mut reader)?];
        let len = dims.iter().product::<usize>() * 4;
        if reader.len() < len {
            return Err(bad("cut short"));
        }
        let (values, rest) = reader.split_at(len);
        reader = rest;
        let values: Vec<f32> = values
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        passes.push(Tensor::from_data(TensorData::new(values, dims), device));
    }
    if !reader.is_empty() {
        return Err(bad("trailing bytes after the last pass"));
    }
    Ok(passes)
}
