//! Exporting the trained model as a Hugging Face directory that `gram judge --model DIR` loads.

use super::Learner;
use crate::Result;
use crate::checkpoint::{HostTensor, save_hf_dir};
use crate::tokenizer::TextCodec;
use std::collections::BTreeMap;
use std::path::Path;

/// The model's weights under Hugging Face names and layouts ([`crate::model::Llama::hf_tensors`]:
/// the weight-layout table, LoRA adapters merged), plus `score.weight` (`[1, d]`) for a
/// Bradley–Terry head.
pub fn hf_tensors(model: &Learner) -> Result<BTreeMap<String, HostTensor>> {
    let mut out = model.llama.hf_tensors()?;
    if let Some(w) = &model.score {
        out.insert(
            "score.weight".into(),
            crate::model::weights::host(w.val().transpose())?,
        );
    }
    Ok(out)
}

/// Export the trained model as a Hugging Face directory (see [`save_hf_dir`]) that
/// `gram judge --model DIR` loads.
pub fn export(model: &Learner, codec: &TextCodec, dir: &Path) -> Result<()> {
    save_hf_dir(dir, &model.llama.config, &hf_tensors(model)?, codec)
}
