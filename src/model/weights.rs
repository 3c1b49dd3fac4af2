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
use burn::tensor::{Device, Distribution, Tensor, TensorData};

use super::config::ModelConfig;
use super::layers::{Attention, DecoderLayer, Mlp, Projection, RmsNorm};
use super::layout::{self, Role, Slot, TensorLayout};
use super::{Llama, Variant};
use crate::checkpoint::{Checkpoint, HostTensor};
use crate::{Error, Result};

impl Llama {
    /// Build the model from a loaded checkpoint, moving its tensors onto `device`.
    ///
    /// Tensors are consumed from the checkpoint as they are uploaded, so host memory holds at
    /// most one copy of the weights. The config is [validated](ModelConfig::validate) first;
    /// a tensor the model has no place for is an error listing the first ten such names
    /// (except `lm_head.weight` when embeddings are tied, a stored copy that is dropped).
    pub fn from_checkpoint(checkpoint: &mut Checkpoint, device: &Device) -> Result<Self> {
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
            Ok(tensor.data)
        };
        let model = Self::build(&config, Weights::new(&config, device, Box::new(fetch)))?;
        if !checkpoint.tensors.is_empty() {
            return Err(unused_tensors(&checkpoint.source, &checkpoint.tensors));
        }
        Ok(model)
    }

    /// A model with random weights (normal, σ = 0.02; norm gains and biases 1) — for tests and
    /// for training from scratch.
    ///
    /// Panics if `config` does not pass [`ModelConfig::validate`] (call it first on a config
    /// that did not come from [`Checkpoint::load`]).
    pub fn random(config: &ModelConfig, device: &Device) -> Self {
        if let Err(e) = config.validate() {
            panic!("{e}");
        }
        let fetch = |t: &TensorLayout| {
            if t.role == Role::Vector {
                return Ok(vec![1.0; t.len()]);
            }
            let normal = Distribution::Normal(0.0, 0.02);
            Ok(Tensor::<1>::random([t.len()], normal, &Device::flex())
                .into_data()
                .try_to_vec::<f32>()
                .unwrap_or_default())
        };
        Self::build(config, Weights::new(config, device, Box::new(fetch)))
            .expect("random weights always fit the config")
    }

    /// Assemble the modules, taking each parameter's tensor from `w` by its slot.
    /// The config must already be [validated](ModelConfig::validate) (both callers do).
    fn build(config: &ModelConfig, mut w: Weights) -> Result<Self> {
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
        let embed_tokens = w.required(None, Slot::Embedding)?;
        let lm_head = w.param(None, Slot::LmHead)?;
        w.finish()?;
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
                let tensor = self.export(&t)?;
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

    /// The tensor of table row `t`, read back from the device.
    fn export(&self, t: &TensorLayout) -> Result<HostTensor> {
        let missing = || Error::invalid(format!("the model has no tensor `{}`", t.hf_name));
        let layer = || t.layer.and_then(|i| self.layers.get(i)).ok_or_else(missing);
        let norm = |n: Option<&RmsNorm>| n.map(|n| host(n.weight.val())).ok_or_else(missing)?;
        let weight = |p: &Projection| host(p.merged_weight().transpose());
        let bias = |p: &Projection| p.bias.as_ref().map(|b| host(b.val())).ok_or_else(missing)?;
        match t.slot {
            Slot::Embedding => host(self.embed_tokens.val()),
            Slot::FinalNorm => host(self.norm.weight.val()),
            Slot::LmHead => host(self.lm_head.as_ref().ok_or_else(missing)?.val()),
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
fn unused_tensors(source: &std::path::Path, left: &BTreeMap<String, HostTensor>) -> Error {
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
    let hint = if left.contains_key("score.weight") {
        " — `score.weight` is a scalar value head (a Bradley–Terry reward model, e.g. from \
         `gram finetune --objective bt`), which scores one response at a time rather than \
         judging pairs with verdict tokens"
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

/// Read a device tensor back into host memory.
pub(crate) fn host<const D: usize>(tensor: Tensor<D>) -> Result<HostTensor> {
    let shape = tensor.dims().to_vec();
    let fail = |e: &dyn std::fmt::Debug| {
        Error::Device(format!("reading a tensor back from the device: {e:?}"))
    };
    let data = tensor.try_into_data().map_err(|e| fail(&e))?;
    let data = data.try_to_vec::<f32>().map_err(|e| fail(&e))?;
    Ok(HostTensor { shape, data })
}

/// Where [`Llama::build`] gets its tensors: the config's table rows, each taken once, and
/// `fetch(row)`, which returns the row-major f32 data of that tensor as stored.
struct Weights<'a> {
    device: &'a Device,
    rows: BTreeMap<(Option<usize>, Slot), TensorLayout>,
    /// RMSNorm epsilon and gain offset, for every norm.
    eps: f64,
    weight_offset: f64,
    fetch: Box<dyn FnMut(&TensorLayout) -> Result<Vec<f32>> + 'a>,
}

impl<'a> Weights<'a> {
    fn new(
        config: &ModelConfig,
        device: &'a Device,
        fetch: Box<dyn FnMut(&TensorLayout) -> Result<Vec<f32>> + 'a>,
    ) -> Self {
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
        let data = (self.fetch)(&t)?;
        let (data, shape) = match (t.role, t.shape.as_slice()) {
            (Role::Projection, &[d_out, d_in]) => {
                (transpose(&data, d_out, d_in), vec![d_in, d_out])
            }
            _ => (data, t.shape.clone()),
        };
        let tensor = Tensor::from_data(TensorData::new(data, shape), self.device);
        Ok(Some(Param::from_tensor(tensor)))
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

    /// Check that every row of the table went into the model.
    fn finish(self) -> Result<()> {
        match self.rows.values().next() {
            None => Ok(()),
            Some(t) => Err(Error::invalid(format!(
                "tensor `{}` of the weight layout has no place in the model",
                t.hf_name
            ))),
        }
    }
}

/// `[rows, cols]` row-major data transposed to `[cols, rows]`.
fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; data.len()];
    for (r, row) in data.chunks_exact(cols).enumerate() {
        for (c, &value) in row.iter().enumerate() {
            out[c * rows + r] = value;
        }
    }
    out
}
