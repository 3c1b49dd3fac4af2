//! The judge prompt and the model-backed judge (being written).

use crate::{Judge, Pair, Result, Verdict};
use std::path::Path;

/// How the judge builds its input and batches work.
#[derive(Debug, Clone)]
pub struct JudgeOptions {
    /// A judge prompt template with `{prompt}`, `{response_a}`, `{response_b}`; `None` = ours.
    pub template: Option<String>,
    /// The two verdict labels (each must be one token).
    pub labels: (String, String),
    /// Sequences per forward pass.
    pub batch_size: usize,
    /// Longest judge input in tokens; `None` = the model's context length.
    pub max_len: Option<usize>,
    /// Wrap the filled prompt in the model's chat template.
    pub chat_template: bool,
}

/// A language model used as a pairwise judge.
pub struct GramJudge {}

impl GramJudge {
    /// Load a checkpoint onto `device`.
    pub fn load(
        _model: &Path,
        _device: &burn::tensor::Device,
        _options: JudgeOptions,
    ) -> Result<Self> {
        Err(crate::Error::invalid("the judge is not built yet"))
    }
}

impl Judge for GramJudge {
    fn judge(&mut self, _pairs: &[Pair]) -> Result<Vec<Verdict>> {
        Err(crate::Error::invalid("the judge is not built yet"))
    }
}
