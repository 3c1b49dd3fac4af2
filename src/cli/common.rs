//! Options shared by every subcommand that loads a model to judge with.

use std::path::PathBuf;

/// How to load the judge: model, device, prompt and batching.
#[derive(clap::Args, Debug, Clone)]
pub struct JudgeArgs {
    /// A GGUF file or a Hugging Face model directory.
    #[arg(long)]
    pub model: PathBuf,
    /// `auto` (best wgpu adapter), `vulkan`, `metal`, `dx12`, an adapter index, or `cpu`.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// A judge prompt template with `{prompt}`, `{response_a}`, `{response_b}`.
    #[arg(long)]
    pub template: Option<PathBuf>,
    /// The two verdict labels, each a single token.
    #[arg(long, value_delimiter = ',', num_args = 2, default_value = "A,B")]
    pub labels: Vec<String>,
    /// Sequences per forward pass (default: 1 on `cpu`, where padding and attention memory
    /// cost more than batching saves — measured 146 vs 121 tokens/s at 1 vs 8 — and 8 on GPUs).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Longest judge input in tokens (default: the model's context length).
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Feed the filled judge prompt as plain text, without the model's chat template.
    #[arg(long)]
    pub no_chat_template: bool,
}

impl JudgeArgs {
    /// Load the model-backed judge these options describe.
    pub fn load(&self) -> gram::Result<gram::judge::GramJudge> {
        let device = gram::device::select(&self.device)?;
        let template = match &self.template {
            Some(path) => {
                Some(std::fs::read_to_string(path).map_err(|e| gram::Error::io(path, e))?)
            }
            None => None,
        };
        let options = gram::judge::JudgeOptions {
            template,
            labels: (self.labels[0].clone(), self.labels[1].clone()),
            batch_size: self
                .batch_size
                .unwrap_or(if device == burn::tensor::Device::flex() {
                    1
                } else {
                    8
                }),
            max_len: self.max_len,
            chat_template: !self.no_chat_template,
        };
        gram::judge::GramJudge::load(&self.model, &device, options)
    }
}
