//! A [`Llama`] to and from named tensors, through the weight-layout table ([`super::layout`]).
//!
//! Loading walks the modules and asks the table for each parameter's tensor by its
//! [`Slot`]: the table says which tensors exist (biases, q/k norms, an untied `lm_head`), their
//! names and shapes, and whether they are projections to transpose (`[out, in]` stored,
//! `[in, out]` held). Every row is used exactly once; a tensor a checkpoint holds beyond the
//! table is an error naming it (a tied checkpoint's stored `lm_head.weight` copy excepted).
//! Export reads the same rows back, projections transposed back with any LoRA adapter merged.

use std::collections::BTreeMap;

use burn::module::Param;
use burn::tensor::{DType, Device, Distribution, FloatDType, Tensor};

use super::config::ModelConfig;
use super::layers::{Attention, DecoderLayer, Mlp, Projection, RmsNorm};
use super::layout::{self, Role, Slot, TensorLayout};
use super::{Llama, Variant, VocabMatrix};
use crate::checkpoint::{Checkpoint, Conversion, Elements, HostTensor, StoredTensor};
use crate::{Error, Result};

impl Llama {
    /// Build the model from a loaded checkpoint in f32, moving its tensors onto `device`
    /// ([`Llama::from_checkpoint_as`] with f32).
    pub fn from_checkpoint(checkpoint: &mut Checkpoint, device: &Device) -> Result<Self> {
        Ok(Self::from_checkpoint_as(checkpoint, device, FloatDType::F32)?.0)
    }

    /// Build the model from a loaded checkpoint, holding the embedding, the output projection
    /// and every projection weight in `dtype` (norm gains and biases stay f32; see
    /// [`crate::dtype`]), and report what went onto `device`.
    ///
    /// Tensors are read, converted and uploaded one at a time, each taken out of the checkpoint
    /// as it goes: a Hugging Face checkpoint's tensors are read from their files only here, so
    /// host memory holds about one tensor (twice, for a projection's transpose) beyond what the
    /// device holds, never the model in f32. A tensor with finite elements beyond `dtype`'s
    /// range stays f32 and is listed in the report. The config is
    /// [validated](ModelConfig::validate) first; a tensor the model has no place for is an
    /// error listing the first ten such names (except `lm_head.weight` when embeddings are
    /// tied, a stored copy that is dropped).
    pub fn from_checkpoint_as(
        checkpoint: &mut Checkpoint,
        device: &Device,
        dtype: FloatDType,
    ) -> Result<(Self, LoadReport)> {
        let config = checkpoint.config.clone();
        let source = checkpoint.source.clone();
        config.validate_in(&source)?;
        if config.tie_word_embeddings {
            // A stored copy of the tied embedding (Hugging Face loading already drops it).
            checkpoint.tensors.remove(&layout::names(Slot::LmHead, 0).0);
        }
        let fetch = |t: &TensorLayout| {
            let tensor = checkpoint.take(&t.hf_name)?;
            if tensor.shape != t.shape {
                return Err(Error::checkpoint(
                    &source,
                    format!(
                        "tensor `{}` has shape {:?}, the config implies {:?}",
                        t.hf_name, tensor.shape, t.shape
                    ),
                ));
            }
            tensor.elements()
        };
        let mut weights = Weights::new(&config, device, dtype, Box::new(fetch));
        let model = Self::build(&config, &mut weights)?;
        let report = weights.into_report();
        if !checkpoint.tensors.is_empty() {
            return Err(unused_tensors(&checkpoint.source, &checkpoint.tensors));
        }
        Ok((model, report))
    }

    /// A model with random f32 weights (normal, σ = 0.02; norm gains and biases 1) — for tests
    /// and for training from scratch.
    ///
    /// Panics if `config` does not pass [`ModelConfig::validate`] (call it first on a config
    /// that did not come from [`Checkpoint::load`]).
    pub fn random(config: &ModelConfig, device: &Device) -> Self {
        if let Err(e) = config.validate() {
            panic!("{e}");
        }
        let fetch = |t: &TensorLayout| {
            if t.role == Role::Vector {
                return Ok(Elements::F32(vec![1.0; t.len()]));
            }
            let normal = Distribution::Normal(0.0, 0.02);
            Ok(Elements::F32(
                Tensor::<1>::random([t.len()], normal, &Device::flex())
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap_or_default(),
            ))
        };
        let mut weights = Weights::new(config, device, FloatDType::F32, Box::new(fetch));
        Self::build(config, &mut weights).expect("random weights always fit the config")
    }

    /// The float type of the large weights (the embedding's).
    pub fn dtype(&self) -> FloatDType {
        self.embed_tokens.dtype()
    }

    /// Assemble the modules, taking each parameter's tensor from `w` by its slot.
    /// The config must already be [validated](ModelConfig::validate) (both callers do).
    fn build(config: &ModelConfig, w: &mut Weights) -> Result<Self> {
        // The vocabulary matrices first, the largest tensors: their transient host copies then
        // come before the rest of the model is on the device, not on top of it.
        let embed_tokens = w.vocab(Slot::Embedding)?.ok_or_else(|| {
            Error::invalid("the weight layout has no token embedding".to_string())
        })?;
        let lm_head = w.vocab(Slot::LmHead)?;
        let (h, kv) = (config.num_attention_heads, config.num_key_value_heads);
        let variant = config.variant();
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in (0..config.num_hidden_layers).map(Some) {
            let q_norm = w.optional_norm(i, Slot::QNorm)?;
            let k_norm = w.optional_norm(i, Slot::KNorm)?;
            layers.push(DecoderLayer {
                input_layernorm: w.norm(i, Slot::AttnNorm)?,
                self_attn: Attention {
                    q_proj: w.projection(i, Slot::QWeight, Slot::QBias)?,
                    k_proj: w.projection(i, Slot::KWeight, Slot::KBias)?,
                    v_proj: w.projection(i, Slot::VWeight, Slot::VBias)?,
                    o_proj: w.projection(i, Slot::OWeight, None)?,
                    q_norm,
                    k_norm,
                    num_heads: h,
                    num_kv_heads: kv,
                    head_dim: config.head_dim(),
                },
                post_attention_layernorm: w.norm(i, Slot::MlpNorm)?,
                mlp: Mlp {
                    gate_proj: w.projection(i, Slot::GateWeight, None)?,
                    up_proj: w.projection(i, Slot::UpWeight, None)?,
                    down_proj: w.projection(i, Slot::DownWeight, None)?,
                    activation: variant.activation,
                },
            });
        }
        let norm = w.norm(None, Slot::FinalNorm)?;
        w.check_all_used()?;
        Ok(Llama {
            embed_tokens,
            layers,
            norm,
            lm_head,
            config: config.clone(),
        })
    }

    /// Every weight under its Hugging Face name and stored layout (the rows of
    /// [`layout::tensors`]), projections `[out, in]` with any LoRA adapter merged: what a
    /// Hugging Face checkpoint of this model holds.
    pub fn hf_tensors(&self) -> Result<BTreeMap<String, HostTensor>> {
        layout::tensors(&self.config)
            .into_iter()
            .map(|t| {
                let tensor = self.hf_tensor(&t)?;
                if tensor.shape != t.shape {
                    return Err(Error::invalid(format!(
                        "tensor `{}` has shape {:?}, the config implies {:?}",
                        t.hf_name, tensor.shape, t.shape
                    )));
                }
                Ok((t.hf_name, tensor))
            })
            .collect()
    }

    /// The tensor of table row `t` ([`layout::tensors`]) in its stored layout, LoRA merged,
    /// read back from the device as f32: one tensor of [`Llama::hf_tensors`].
    pub fn hf_tensor(&self, t: &TensorLayout) -> Result<HostTensor> {
        let missing = || Error::invalid(format!("the model has no tensor `{}`", t.hf_name));
        let layer = || t.layer.and_then(|i| self.layers.get(i)).ok_or_else(missing);
        let norm = |n: Option<&RmsNorm>| n.map(|n| host(n.weight.val())).ok_or_else(missing)?;
        let weight = |p: &Projection| host(p.merged_weight().transpose());
        let bias = |p: &Projection| p.bias.as_ref().map(|b| host(b.val())).ok_or_else(missing)?;
        match t.slot {
            Slot::Embedding => self.embed_tokens.host(),
            Slot::FinalNorm => host(self.norm.weight.val()),
            Slot::LmHead => self.lm_head.as_ref().ok_or_else(missing)?.host(),
            Slot::AttnNorm => host(layer()?.input_layernorm.weight.val()),
            Slot::QWeight => weight(&layer()?.self_attn.q_proj),
            Slot::QBias => bias(&layer()?.self_attn.q_proj),
            Slot::KWeight => weight(&layer()?.self_attn.k_proj),
            Slot::KBias => bias(&layer()?.self_attn.k_proj),
            Slot::VWeight => weight(&layer()?.self_attn.v_proj),
            Slot::VBias => bias(&layer()?.self_attn.v_proj),
            Slot::OWeight => weight(&layer()?.self_attn.o_proj),
            Slot::QNorm => norm(layer()?.self_attn.q_norm.as_ref()),
            Slot::KNorm => norm(layer()?.self_attn.k_norm.as_ref()),
            Slot::MlpNorm => host(layer()?.post_attention_layernorm.weight.val()),
            Slot::GateWeight => weight(&layer()?.mlp.gate_proj),
            Slot::UpWeight => weight(&layer()?.mlp.up_proj),
            Slot::DownWeight => weight(&layer()?.mlp.down_proj),
        }
    }
}

/// How many unused tensor names an error lists.
const LISTED_UNUSED: usize = 10;

/// The error for tensors a checkpoint holds that the model has no place for.
fn unused_tensors(source: &std::path::Path, left: &BTreeMap<String, StoredTensor>) -> Error {
    let names: Vec<String> = left
        .keys()
        .take(LISTED_UNUSED)
        .map(|n| format!("`{n}`"))
        .collect();
    let more = left.len().saturating_sub(LISTED_UNUSED);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    let hint = if left.contains_key(layout::VALUE_HEAD) {
        " — `score.weight` is a scalar value head (a Bradley–Terry reward model, e.g. from \
         `gram finetune --objective bt`): `gram judge`, `eval`, `rank`, `reward` and `serve` \
         read it, but it cannot be trained further"
    } else {
        ""
    };
    Error::checkpoint(
        source,
        format!(
            "{} tensor(s) are not used by the model (the weight layout of its config has no \
             place for them): {}{more}{hint}",
            left.len(),
            names.join(", ")
        ),
    )
}

/// Read a device tensor back into host memory as f32 (16-bit weights widened exactly).
pub(crate) fn host<const D: usize>(tensor: Tensor<D>) -> Result<HostTensor> {
    let shape = tensor.dims().to_vec();
    let fail = |e: &dyn std::fmt::Debug| {
        Error::Device(format!("reading a tensor back from the device: {e:?}"))
    };
    let data = tensor
        .cast(FloatDType::F32)
        .try_into_data()
        .map_err(|e| fail(&e))?;
    let data = data.try_to_vec::<f32>().map_err(|e| fail(&e))?;
    Ok(HostTensor { shape, data })
}

/// What [`Llama::from_checkpoint_as`] put on the device.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadReport {
    /// The type the large weights were asked to be held in.
    pub dtype: FloatDType,
    /// Bytes of weights on the device.
    pub device_bytes: u64,
    /// Tensors held in f32 instead of `dtype` because that many of their elements lie beyond
    /// its range: `(name, elements out of range)`.
    pub kept_f32: Vec<(String, usize)>,
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} weights, {:.2} GB on the device",
            self.dtype,
            self.device_bytes as f64 / 1e9
        )?;
        if !self.kept_f32.is_empty() {
            let listed: Vec<String> = (self.kept_f32.iter().take(LISTED_UNUSED))
                .map(|(name, n)| format!("`{name}` ({n})"))
                .collect();
            write!(
                f,
                "; {} tensor(s) kept in f32, elements beyond {:?}'s range: {}",
                self.kept_f32.len(),
                self.dtype,
                listed.join(", ")
            )?;
        }
        Ok(())
    }
}

/// The elements of a table row, as stored.
type Fetch<'a> = Box<dyn FnMut(&TensorLayout) -> Result<Elements> + 'a>;

/// Where [`Llama::build`] gets its tensors: the config's table rows, each taken once, and
/// `fetch(row)`, which returns the row-major elements of that tensor as stored; matrices are
/// converted to `dtype` and 1-D tensors to f32 on their way to the device.
struct Weights<'a> {
    device: &'a Device,
    rows: BTreeMap<(Option<usize>, Slot), TensorLayout>,
    /// RMSNorm epsilon and gain offset, for every norm.
    eps: f64,
    weight_offset: f64,
    fetch: Fetch<'a>,
    report: LoadReport,
}

impl<'a> Weights<'a> {
    fn new(config: &ModelConfig, device: &'a Device, dtype: FloatDType, fetch: Fetch<'a>) -> Self {
        let rows = layout::tensors(config)
            .into_iter()
            .map(|t| ((t.layer, t.slot), t))
            .collect();
        let Variant {
            norm_weight_offset, ..
        } = config.variant();
        Weights {
            device,
            rows,
            eps: config.rms_norm_eps,
            weight_offset: norm_weight_offset,
            fetch,
            report: LoadReport {
                dtype,
                device_bytes: 0,
                kept_f32: Vec::new(),
            },
        }
    }

    /// The parameter of `slot` (at `layer`), `None` if the table has no such tensor for this
    /// config. Projections arrive transposed to `[in, out]`.
    fn param<const D: usize>(
        &mut self,
        layer: Option<usize>,
        slot: Slot,
    ) -> Result<Option<Param<Tensor<D>>>> {
        let Some(t) = self.rows.remove(&(layer, slot)) else {
            return Ok(None);
        };
        let elements = self.upload_elements(&t)?;
        let dtype = elements.dtype();
        let (elements, shape) = match (t.role, t.shape.as_slice()) {
            (Role::Projection, &[d_out, d_in]) => {
                (elements.transpose(d_out, d_in), vec![d_in, d_out])
            }
            _ => (elements, t.shape.clone()),
        };
        let data = elements.into_data(shape);
        let tensor = Tensor::from_data(data, (self.device, DType::from(dtype)));
        Ok(Some(Param::from_tensor(tensor)))
    }

    /// A vocabulary matrix (`slot` is the embedding or the output projection), in blocks that
    /// fit one buffer binding of the device ([`VocabMatrix`]); `None` if the table has none.
    fn vocab(&mut self, slot: Slot) -> Result<Option<VocabMatrix>> {
        let Some(t) = self.rows.remove(&(None, slot)) else {
            return Ok(None);
        };
        let mut elements = self.upload_elements(&t)?;
        let [vocab, d] = [t.shape[0], t.shape[1]];
        let dtype = DType::from(elements.dtype());
        let per_block = VocabMatrix::rows_per_block(self.device, d, elements.bytes() / (vocab * d));
        let block_len = per_block.saturating_mul(d);
        // Cut from the end, uploading each block before cutting the next: the host holds the
        // rest of the matrix and one block, never two copies.
        let mut blocks = Vec::new();
        while !elements.is_empty() {
            let start = (elements.len() - 1) / block_len * block_len;
            let block = elements.split_off(start);
            let shape = vec![block.len() / d, d];
            let tensor = Tensor::from_data(block.into_data(shape), (self.device, dtype));
            blocks.push(Param::from_tensor(tensor));
        }
        blocks.reverse();
        Ok(Some(VocabMatrix { blocks }))
    }

    /// Row `t`'s elements converted to the type they are held in (vectors f32, matrices the
    /// model's type unless out of its range), counted in the report.
    fn upload_elements(&mut self, t: &TensorLayout) -> Result<Elements> {
        let target = match t.role {
            Role::Vector => FloatDType::F32,
            Role::Matrix | Role::Projection => self.report.dtype,
        };
        let Conversion {
            elements,
            out_of_range,
        } = (self.fetch)(t)?.convert(target);
        if out_of_range > 0 {
            self.report.kept_f32.push((t.hf_name.clone(), out_of_range));
        }
        self.report.device_bytes += elements.bytes() as u64;
        Ok(elements)
    }

    /// [`Weights::param`] of a tensor every config has.
    fn required<const D: usize>(
        &mut self,
        layer: Option<usize>,
        slot: Slot,
    ) -> Result<Param<Tensor<D>>> {
        self.param(layer, slot)?.ok_or_else(|| {
            Error::invalid(format!(
                "the weight layout has no {slot:?} (layer {layer:?})"
            ))
        })
    }

    fn optional_norm(&mut self, layer: Option<usize>, slot: Slot) -> Result<Option<RmsNorm>> {
        let eps = self.eps;
        Ok(self.param(layer, slot)?.map(|weight| RmsNorm {
            weight,
            eps,
            weight_offset: self.weight_offset,
        }))
    }

    fn norm(&mut self, layer: Option<usize>, slot: Slot) -> Result<RmsNorm> {
        self.optional_norm(layer, slot)?.ok_or_else(|| {
            Error::invalid(format!(
                "the weight layout has no {slot:?} (layer {layer:?})"
            ))
        })
    }

    /// The projection whose weight is `weight` and, when the table has it, bias `bias`.
    fn projection(
        &mut self,
        layer: Option<usize>,
        weight: Slot,
        bias: impl Into<Option<Slot>>,
    ) -> Result<Projection> {
        let weight = self.required(layer, weight)?;
        let bias = match bias.into() {
            Some(slot) => self.param(layer, slot)?,
            None => None,
        };
        Ok(Projection {
            weight,
            bias,
            lora: None,
        })
    }

    /// What went onto the device (ending the borrow of the tensors' source).
    fn into_report(self) -> LoadReport {
        self.report
    }

    /// Check that every row of the table went into the model.
    fn check_all_used(&self) -> Result<()> {
        match self.rows.values().next() {
            None => Ok(()),
            Some(t) => Err(Error::invalid(format!(
                "tensor `{}` of the weight layout has no place in the model",
                t.hf_name
            ))),
        }
    }
}
