//! Exporting the trained model as a Hugging Face directory that `gram judge --model DIR` loads.

use super::Learner;
use crate::Result;
use crate::checkpoint::{HostTensor, save_hf_dir_streaming};
use crate::model::layout::VALUE_HEAD;
use crate::model::layout::{self, TensorLayout};
use crate::tokenizer::TextCodec;
use burn::module::Module;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

/// The model's weights under Hugging Face names and layouts ([`crate::model::Llama::hf_tensors`]:
/// the weight-layout table, LoRA adapters merged), plus `score.weight` (`[1, d]`) for a
/// Bradley–Terry head.
pub fn hf_tensors(model: &Learner) -> Result<BTreeMap<String, HostTensor>> {
    let mut out = model.llama.hf_tensors()?;
    if let Some(w) = &model.score {
        out.insert(
            VALUE_HEAD.into(),
            crate::model::weights::host(w.val().transpose())?,
        );
    }
    Ok(out)
}

/// Export the trained model as a Hugging Face directory (see [`save_hf_dir_streaming`]) that
/// `gram judge --model DIR` loads: the tensors of [`hf_tensors`], each read back from the device
/// as the file reaches it, so the host never holds the model in f32. Read from the model
/// without autodiff, so the reads leave no graph (which gradient checkpointing would keep).
pub fn export(model: &Learner, codec: &TextCodec, dir: &Path) -> Result<()> {
    let model = model.valid();
    let config = &model.llama.config;
    let rows: BTreeMap<String, TensorLayout> = layout::tensors(config)
        .into_iter()
        .map(|t| (t.hf_name.clone(), t))
        .collect();
    let mut shapes: Vec<(String, Vec<usize>)> = (rows.values())
        .map(|t| (t.hf_name.clone(), t.shape.clone()))
        .collect();
    let score = model.score.as_ref().map(|w| w.val().transpose());
    let model = &model;
    if let Some(w) = &score {
        shapes.push((VALUE_HEAD.into(), w.dims().to_vec()));
    }
    let fetch = |name: &str| match (rows.get(name), &score) {
        (Some(t), _) => model.llama.hf_tensor(t).map(Cow::Owned),
        (None, Some(w)) => crate::model::weights::host(w.clone()).map(Cow::Owned),
        (None, None) => Err(crate::Error::invalid(format!(
            "no tensor `{name}` to export"
        ))),
    };
    save_hf_dir_streaming(dir, config, &shapes, fetch, codec)
}
