//! Exporting the trained model as a Hugging Face directory that `gram judge --model DIR` loads.

use super::{Learner, to_vec};
use crate::Result;
use crate::checkpoint::{HostTensor, save_hf_dir};
use crate::model::{Projection, RmsNorm};
use crate::tokenizer::TextCodec;
use burn::tensor::Tensor;
use std::collections::BTreeMap;
use std::path::Path;

/// The model's weights under Hugging Face names and layouts (projections back to `[out, in]`),
/// plus `score.weight` (`[1, d]`) for a Bradley–Terry head.
pub fn hf_tensors(model: &Learner) -> Result<BTreeMap<String, HostTensor>> {
    let mut out = BTreeMap::new();
    let llama = &model.llama;
    let mut put = |name: String, tensor: HostTensor| {
        out.insert(name, tensor);
    };
    put(
        "model.embed_tokens.weight".into(),
        host(llama.embed_tokens.val())?,
    );
    for (i, layer) in llama.layers.iter().enumerate() {
        let p = format!("model.layers.{i}");
        put(
            format!("{p}.input_layernorm.weight"),
            norm(&layer.input_layernorm)?,
        );
        put(
            format!("{p}.post_attention_layernorm.weight"),
            norm(&layer.post_attention_layernorm)?,
        );
        let attn = &layer.self_attn;
        for (name, proj) in [
            ("q_proj", &attn.q_proj),
            ("k_proj", &attn.k_proj),
            ("v_proj", &attn.v_proj),
            ("o_proj", &attn.o_proj),
        ] {
            projection(&mut put, &format!("{p}.self_attn.{name}"), proj)?;
        }
        if let (Some(q), Some(k)) = (&attn.q_norm, &attn.k_norm) {
            put(format!("{p}.self_attn.q_norm.weight"), norm(q)?);
            put(format!("{p}.self_attn.k_norm.weight"), norm(k)?);
        }
        for (name, proj) in [
            ("gate_proj", &layer.mlp.gate_proj),
            ("up_proj", &layer.mlp.up_proj),
            ("down_proj", &layer.mlp.down_proj),
        ] {
            projection(&mut put, &format!("{p}.mlp.{name}"), proj)?;
        }
    }
    put("model.norm.weight".into(), norm(&llama.norm)?);
    if let Some(w) = &llama.lm_head {
        put("lm_head.weight".into(), host(w.val())?);
    }
    if let Some(w) = &model.score {
        put("score.weight".into(), host(w.val().transpose())?);
    }
    Ok(out)
}

fn host<const D: usize>(tensor: Tensor<D>) -> Result<HostTensor> {
    let shape = tensor.dims().to_vec();
    Ok(HostTensor {
        shape,
        data: to_vec(tensor)?,
    })
}

fn norm(n: &RmsNorm) -> Result<HostTensor> {
    host(n.weight.val())
}

/// A projection under its Hugging Face name, `[out, in]`, with any LoRA adapter merged.
fn projection(put: &mut impl FnMut(String, HostTensor), name: &str, p: &Projection) -> Result<()> {
    put(
        format!("{name}.weight"),
        host(p.merged_weight().transpose())?,
    );
    if let Some(b) = &p.bias {
        put(format!("{name}.bias"), host(b.val())?);
    }
    Ok(())
}

/// Export the trained model as a Hugging Face directory (see [`save_hf_dir`]) that
/// `gram judge --model DIR` loads.
pub fn export(model: &Learner, codec: &TextCodec, dir: &Path) -> Result<()> {
    save_hf_dir(dir, &model.llama.config, &hf_tensors(model)?, codec)
}
