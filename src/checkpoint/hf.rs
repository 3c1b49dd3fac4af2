//! Hugging Face model directories: `config.json`, `model.safetensors` (or shards listed in
//! `model.safetensors.index.json`), `tokenizer.json`, `tokenizer_config.json`.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use safetensors::Dtype;
use safetensors::tensor::TensorInfo;

use super::tensor::{FileDtype, StoredTensor};
use super::{Checkpoint, HostTensor};
use crate::config::{Architecture, ModelConfig};
use crate::model::layout::{self, Slot};
use crate::tokenizer::TextCodec;
use crate::{Error, Result};

/// Load a Hugging Face model directory. When embeddings are tied, a stored `lm_head.weight`
/// (a copy of the embedding) is dropped so that tied checkpoints look alike whatever their source.
pub fn load(dir: &Path) -> Result<Checkpoint> {
    let config_path = dir.join("config.json");
    let config = read_config(&config_path)?;
    config.validate_in(&config_path)?;
    let mut tensors = BTreeMap::new();
    for file in safetensors_files(dir)? {
        read_safetensors(&file, &mut tensors)?;
    }
    if config.tie_word_embeddings {
        tensors.remove(&layout::names(Slot::LmHead, 0).0);
    }
    // Checkpoints saved by transformers before 4.31 carry each layer's RoPE frequencies as a
    // buffer; the model recomputes them from the config.
    tensors.retain(|name, _| !name.ends_with(".self_attn.rotary_emb.inv_freq"));
    let codec = TextCodec::from_hf_dir(dir)?;
    Ok(Checkpoint {
        config,
        tensors,
        codec,
        source: dir.to_path_buf(),
    })
}

/// Parse `config.json`, naming an unsupported `model_type` and the supported ones.
fn read_config(path: &Path) -> Result<ModelConfig> {
    super::check_regular_file(path)?;
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::checkpoint(path, format!("invalid JSON: {e}")))?;
    let model_type = value
        .get("model_type")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    if Architecture::parse(model_type).is_none() {
        return Err(Error::checkpoint(
            path,
            format!(
                "field `model_type`: architecture `{model_type}` is not supported (supported: {})",
                Architecture::SUPPORTED
            ),
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| Error::checkpoint(path, format!("not a usable model config: {e}")))
}

/// The safetensors files of `dir`: `model.safetensors`, or the shards named in the index.
///
/// A shard must be named by a relative path of plain components (no `..`, `.`, root or drive
/// prefix) and be a regular file once symlinks are followed (not a FIFO, device or directory),
/// all checked before it is opened. Symlinks themselves are followed, wherever they lead: a
/// Hugging Face hub cache snapshot is a folder of symlinks into `../../blobs/`.
fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index_path = dir.join("model.safetensors.index.json");
    if !index_path.is_file() {
        return Err(Error::checkpoint(
            dir,
            "no model.safetensors or model.safetensors.index.json",
        ));
    }
    let text = std::fs::read_to_string(&index_path).map_err(|e| Error::io(&index_path, e))?;
    let index: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::checkpoint(&index_path, format!("invalid JSON: {e}")))?;
    let map = index
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| {
            Error::checkpoint(&index_path, "field `weight_map`: missing or not an object")
        })?;
    let shards = map
        .iter()
        .map(|(tensor, file)| {
            file.as_str().ok_or_else(|| {
                Error::checkpoint(
                    &index_path,
                    format!("field `weight_map.{tensor}`: not a file name"),
                )
            })
        })
        .collect::<Result<BTreeSet<&str>>>()?;
    shards
        .into_iter()
        .map(|shard| shard_path(dir, &index_path, shard))
        .collect()
}

/// The path of shard `name` listed in `index_path`, if it is a plain relative path inside `dir`
/// that leads to a regular file.
fn shard_path(dir: &Path, index_path: &Path, name: &str) -> Result<PathBuf> {
    use std::path::Component;
    let relative = Path::new(name);
    let plain = !name.is_empty()
        && relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        return Err(Error::checkpoint(
            index_path,
            format!(
                "field `weight_map`: shard {name:?} is not a relative path inside the model directory (no `..`, no absolute paths)"
            ),
        ));
    }
    let path = dir.join(relative);
    super::check_regular_file(&path)?;
    Ok(path)
}

/// Largest safetensors header read (the format's own limit).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Locate every tensor of the safetensors file at `path` and add it to `tensors`, unread.
///
/// Only the header is read here: each tensor's dtype (F32, F16 or BF16), shape and byte range
/// are checked against each other and against the file's length, so reading a tensor later
/// cannot run past the file or misread its size. Errors name the file and the tensor.
fn read_safetensors(path: &Path, tensors: &mut BTreeMap<String, StoredTensor>) -> Result<()> {
    use std::io::Read;
    super::check_regular_file(path)?;
    let invalid = |what: String| Error::checkpoint(path, format!("invalid safetensors: {what}"));
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|_| invalid("shorter than its 8-byte header length".into()))?;
    let header_len = u64::from_le_bytes(len);
    if header_len > MAX_HEADER_BYTES || header_len > file_len - 8 {
        return Err(invalid(format!(
            "header length {header_len} exceeds the file ({file_len} bytes) or 100 MB"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .map_err(|e| Error::io(path, e))?;
    let header: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| invalid(format!("header is not a JSON object: {e}")))?;
    let data_start = 8 + header_len;
    let data_len = file_len - data_start;
    let shared_path = std::sync::Arc::new(path.to_path_buf());
    for (name, value) in header {
        if name == "__metadata__" {
            continue;
        }
        let info: TensorInfo =
            serde_json::from_value(value).map_err(|e| invalid(format!("tensor `{name}`: {e}")))?;
        let dtype = match info.dtype {
            Dtype::F32 => FileDtype::F32,
            Dtype::F16 => FileDtype::F16,
            Dtype::BF16 => FileDtype::BF16,
            other => {
                return Err(Error::checkpoint(
                    path,
                    format!("tensor `{name}` has dtype {other:?} (supported: F32, F16, BF16)"),
                ));
            }
        };
        let (begin, end) = info.data_offsets;
        let bytes = info
            .shape
            .iter()
            .try_fold(dtype.size(), |n, &d| n.checked_mul(d));
        if bytes != end.checked_sub(begin) || end as u64 > data_len {
            return Err(invalid(format!(
                "tensor `{name}`: shape {:?} of {:?} does not fit bytes {begin}..{end} of the \
                 {data_len}-byte data section",
                info.shape, info.dtype
            )));
        }
        let tensor = StoredTensor::in_file(
            shared_path.clone(),
            data_start + begin as u64,
            dtype,
            info.shape,
        );
        if tensors.insert(name.clone(), tensor).is_some() {
            return Err(Error::checkpoint(
                path,
                format!("tensor `{name}` appears in more than one shard"),
            ));
        }
    }
    Ok(())
}

/// Write a Hugging Face model directory at `dir`: `config.json` (with `architectures` and
/// `torch_dtype: "float32"`), `model.safetensors` (F32), `tokenizer.json`, `tokenizer_config.json`.
///
/// Everything is written into a temporary sibling directory that is renamed to `dir` only once
/// complete; an existing `dir` is replaced. A failed save leaves `dir` as it was.
pub fn save_hf_dir(
    dir: &Path,
    config: &ModelConfig,
    tensors: &BTreeMap<String, HostTensor>,
    codec: &TextCodec,
) -> Result<()> {
    let shapes: Vec<(String, Vec<usize>)> = (tensors.iter())
        .map(|(name, t)| (name.clone(), t.shape.clone()))
        .collect();
    save_hf_dir_streaming(
        dir,
        config,
        &shapes,
        |name| Ok(Cow::Borrowed(&tensors[name])),
        codec,
    )
}

/// [`save_hf_dir`] for a model too large to hold on the host in f32: `shapes` names every
/// tensor and its shape up front (the safetensors header), and `fetch(name)` produces each
/// tensor's elements only when the writer reaches it (made then, or borrowed), so the host
/// holds one tensor at a time.
pub fn save_hf_dir_streaming<'a>(
    dir: &Path,
    config: &ModelConfig,
    shapes: &[(String, Vec<usize>)],
    fetch: impl FnMut(&str) -> Result<Cow<'a, HostTensor>>,
    codec: &TextCodec,
) -> Result<()> {
    let name = dir
        .file_name()
        .ok_or_else(|| Error::checkpoint(dir, "not a directory name to save into"))?
        .to_string_lossy();
    let sibling = |tag: &str| dir.with_file_name(format!(".{name}.{tag}-{}", std::process::id()));
    let staging = sibling("partial");
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    }
    std::fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    let written = write_files(&staging, config, shapes, fetch, codec);
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    let previous = sibling("previous");
    if dir.exists() {
        std::fs::rename(dir, &previous).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::rename(&staging, dir).map_err(|e| Error::io(dir, e))?;
    if previous.exists() {
        std::fs::remove_dir_all(&previous).map_err(|e| Error::io(&previous, e))?;
    }
    Ok(())
}

/// The files of [`save_hf_dir_streaming`], written into `dir`.
fn write_files<'a>(
    dir: &Path,
    config: &ModelConfig,
    shapes: &[(String, Vec<usize>)],
    fetch: impl FnMut(&str) -> Result<Cow<'a, HostTensor>>,
    codec: &TextCodec,
) -> Result<()> {
    let config_path = dir.join("config.json");
    let mut json = serde_json::to_value(config).expect("ModelConfig serialises");
    let object = json.as_object_mut().expect("ModelConfig is a JSON object");
    object.retain(|_, v| !v.is_null());
    object.insert(
        "architectures".into(),
        serde_json::json!([config.variant().hf_class]),
    );
    object.insert("torch_dtype".into(), "float32".into());
    let text = serde_json::to_string_pretty(&json).expect("a JSON value serialises");
    std::fs::write(&config_path, text).map_err(|e| Error::io(&config_path, e))?;
    write_safetensors(&dir.join("model.safetensors"), shapes, fetch)?;
    codec.write_hf_files(dir)
}

/// Write an F32 safetensors file one tensor at a time: the header (every tensor's dtype, shape
/// and byte range, in `shapes`' order, then spaces up to a multiple of 8 bytes), then each
/// tensor's little-endian elements as `fetch` returns them. A tensor whose shape differs from
/// the one announced is an error naming it.
fn write_safetensors<'a>(
    path: &Path,
    shapes: &[(String, Vec<usize>)],
    mut fetch: impl FnMut(&str) -> Result<Cow<'a, HostTensor>>,
) -> Result<()> {
    use std::io::Write;
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let mut offset = 0usize;
    for (name, shape) in shapes {
        let end = offset + 4 * shape.iter().product::<usize>();
        let entry =
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, end]});
        if header.insert(name.clone(), entry).is_some() {
            return Err(Error::checkpoint(
                path,
                format!("tensor `{name}` written twice"),
            ));
        }
        offset = end;
    }
    let mut header = serde_json::Value::Object(header).to_string().into_bytes();
    header.resize(header.len().next_multiple_of(8), b' ');
    let io = |e| Error::io(path, e);
    let file = std::fs::File::create(path).map_err(io)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    out.write_all(&(header.len() as u64).to_le_bytes())
        .map_err(io)?;
    out.write_all(&header).map_err(io)?;
    for (name, shape) in shapes {
        let tensor = fetch(name)?;
        if tensor.shape != *shape || tensor.data.len() != shape.iter().product::<usize>() {
            return Err(Error::checkpoint(
                path,
                format!(
                    "tensor `{name}` is {:?} ({} elements), announced as {shape:?}",
                    tensor.shape,
                    tensor.data.len()
                ),
            ));
        }
        for x in &tensor.data {
            out.write_all(&x.to_le_bytes()).map_err(io)?;
        }
    }
    let file = out.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)
}
