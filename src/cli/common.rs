//! Options shared by every subcommand that loads a model to judge with or trains one.

use gram::judge::GramJudge;
use gram::merge::Manifest;
use gram::parallel::{Replicas, Shard};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// How to load the judge: model, device, prompt and batching.
#[derive(clap::Args, Debug, Clone)]
pub struct JudgeArgs {
    /// A GGUF file or a Hugging Face model directory.
    #[arg(long)]
    pub model: PathBuf,
    /// `auto` (best wgpu adapter), `vulkan`, `metal`, `dx12`, an adapter index, or `cpu`.
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[command(flatten)]
    pub dtype: DtypeArg,
    #[command(flatten)]
    pub prompt: PromptArgs,
    /// Sequences per forward pass, packed without padding on `cpu` (see
    /// `gram::judge::DEFAULT_BATCH_SIZE`).
    #[arg(long, default_value_t = gram::judge::DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,
    /// Longest judge input in tokens [default: the model's context length, at most 4096, as
    /// attention memory grows with its square]; longer inputs have their responses shortened.
    /// Above the model's context length it is an error.
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Record what the model's bottom `--trunk-layers` layers output for every judged pair in
    /// this folder, and replay it when the folder holds it, running only the layers above: for
    /// judging several fine-tunes of one base model (trained with `--train-layers K`, so
    /// `--trunk-layers` N − K) on the same pairs. Scores are unchanged, bit for bit; a model
    /// whose bottom layers differ never reads another's recordings. Takes disk: 4·d bytes per
    /// token run (2.3 KB at d = 576).
    #[arg(long, value_name = "DIR", requires = "trunk_layers")]
    pub trunk_cache: Option<PathBuf>,
    /// The number of bottom layers `--trunk-cache` records and replays.
    #[arg(long, value_name = "L", requires = "trunk_cache")]
    pub trunk_layers: Option<usize>,
}

/// The float type the weights are held in on the device.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct DtypeArg {
    /// Weights' float type: `auto` (f16 on GPUs with f16 arithmetic, f32 on `cpu`), `f32`,
    /// `f16` (bf16 checkpoints are converted; a tensor with values beyond f16's range stays
    /// f32), or `bf16` (`cpu` only). Activations, norms, softmax and losses are f32 always.
    #[arg(long, value_enum, default_value = "auto")]
    pub dtype: gram::dtype::Dtype,
}

/// How the judge prompt is written: the same at training and at inference.
#[derive(clap::Args, Debug, Clone)]
pub struct PromptArgs {
    /// A named prompt, labels and chat-template options: `gram` = the released GRAM
    /// checkpoints' evaluation prompt byte for byte, labels A,B, `enable_thinking=false`.
    #[arg(long, conflicts_with_all = ["template", "labels"])]
    pub preset: Option<String>,
    /// A judge prompt template with `{prompt}`, `{response_a}`, `{response_b}`.
    #[arg(long)]
    pub template: Option<PathBuf>,
    /// The two verdict labels, each a single token.
    #[arg(long, value_delimiter = ',', num_args = 2, default_value = "A,B")]
    pub labels: Vec<String>,
    /// Feed the filled judge prompt as plain text, without the model's chat template.
    #[arg(long)]
    pub no_chat_template: bool,
    /// Extra chat-template variables as a JSON object, as transformers'
    /// `apply_chat_template(**kwargs)` takes them, e.g. '{"enable_thinking": false}'
    /// (added to, and overriding, a preset's).
    #[arg(long, value_name = "JSON")]
    pub chat_template_kwargs: Option<String>,
}

impl PromptArgs {
    /// The preset named by `--preset`, if any.
    fn preset(&self) -> gram::Result<Option<&'static gram::preset::Preset>> {
        self.preset.as_deref().map(gram::preset::preset).transpose()
    }

    /// The preset's or the template file's text, `None` for the default prompt.
    pub fn template_text(&self) -> gram::Result<Option<String>> {
        if let Some(preset) = self.preset()? {
            return Ok(Some(preset.template.to_owned()));
        }
        self.template
            .as_ref()
            .map(|path| std::fs::read_to_string(path).map_err(|e| gram::Error::io(path, e)))
            .transpose()
    }

    /// The verdict labels `(A, B)`: the preset's, or `--labels`.
    pub fn labels(&self) -> gram::Result<(String, String)> {
        Ok(match self.preset()? {
            Some(preset) => preset.labels(),
            None => (self.labels[0].clone(), self.labels[1].clone()),
        })
    }

    /// The preset's chat-template variables with `--chat-template-kwargs` over them.
    pub fn chat_template_kwargs(&self) -> gram::Result<gram::tokenizer::ChatTemplateKwargs> {
        let mut kwargs = self
            .preset()?
            .map(|p| p.chat_template_kwargs())
            .unwrap_or_default();
        if let Some(text) = &self.chat_template_kwargs {
            let wrong = |why: String| {
                gram::Error::invalid(format!(
                    "--chat-template-kwargs must be a JSON object ({why}): {text}"
                ))
            };
            match serde_json::from_str::<serde_json::Value>(text)
                .map_err(|e| wrong(e.to_string()))?
            {
                serde_json::Value::Object(given) => kwargs.extend(given),
                _ => return Err(wrong("not an object".into())),
            }
        }
        Ok(kwargs)
    }
}

impl JudgeArgs {
    /// The model and prompt settings as `GET /health` shows them: the model's file or folder
    /// name (not its path), device, preset or template, labels, chat-template options.
    pub fn describe(&self) -> gram::Result<serde_json::Value> {
        let name = self
            .model
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.model.display().to_string());
        let template = match (&self.prompt.preset, &self.prompt.template) {
            (Some(preset), _) => format!("preset {preset}"),
            (None, Some(path)) => format!("file {}", path.display()),
            (None, None) => "default".to_owned(),
        };
        let (a, b) = self.prompt.labels()?;
        Ok(serde_json::json!({
            "name": name,
            "device": self.device,
            "template": template,
            "labels": [a, b],
            "chat_template": !self.prompt.no_chat_template,
            "chat_template_kwargs": self.prompt.chat_template_kwargs()?,
            "max_len": self.max_len,
            "batch_size": self.batch_size,
        }))
    }

    /// What decides the verdicts, for a resumed run to compare with the run it continues: a
    /// fingerprint of the model's files ([`gram::io::fingerprint`]), the prompt template's
    /// text, labels, chat-template options, longest input and dtype.
    pub fn settings(&self) -> gram::Result<serde_json::Value> {
        let (a, b) = self.prompt.labels()?;
        Ok(serde_json::json!({
            "model": gram::io::fingerprint(&self.model),
            "template": self.prompt.template_text()?,
            "labels": [a, b],
            "chat_template": !self.prompt.no_chat_template,
            "chat_template_kwargs": self.prompt.chat_template_kwargs()?,
            "max_len": self.max_len,
            "dtype": format!("{:?}", self.dtype.dtype).to_lowercase(),
        }))
    }

    /// Load the model-backed judge these options describe.
    pub fn load(&self) -> gram::Result<gram::judge::GramJudge> {
        self.load_on(&gram::device::select(&self.device)?)
    }

    /// Load the judge these options describe on `device` (instead of `--device`).
    pub fn load_on(&self, device: &burn::tensor::Device) -> gram::Result<gram::judge::GramJudge> {
        let options = gram::judge::JudgeOptions {
            template: self.prompt.template_text()?,
            labels: self.prompt.labels()?,
            batch_size: self.batch_size,
            max_len: self.max_len,
            chat_template: !self.prompt.no_chat_template,
            chat_template_kwargs: self.prompt.chat_template_kwargs()?,
            dtype: self.dtype.dtype,
        };
        let mut judge = gram::judge::GramJudge::load(&self.model, device, options)?;
        if let (Some(dir), Some(layers)) = (&self.trunk_cache, self.trunk_layers) {
            let store = gram::model::TrunkStore::open(dir, judge.model(), layers)?;
            judge = judge.with_trunk_store(store);
        }
        if let Some(report) = judge.load_report() {
            eprintln!("weights: {report}");
        }
        if judge.has_value_head() {
            eprintln!(
                "a Bradley–Terry reward model (value head `score.weight`): each response is \
                 scored alone after the prompt, p_a = σ(r_a − r_b); the judge prompt and labels \
                 are not used"
            );
        }
        Ok(judge)
    }
}

/// Scoring beyond one device (`gram judge`, `gram eval`): replicas in this process, or one
/// slice of the rows for a run split across processes or machines.
#[derive(clap::Args, Debug, Clone)]
pub struct ScaleArgs {
    /// Judge on several devices at once, e.g. `0,1`, `vulkan:0,cpu`, or `cpu,cpu` (two
    /// replicas on one device): each batch of pairs is split between them.
    #[arg(long, conflicts_with = "device", value_name = "LIST")]
    pub devices: Option<String>,
    /// Process only slice I of N contiguous slices of the rows (I counts from 0), writing a
    /// manifest beside the output; `gram merge` puts the slices back together.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
}

impl ScaleArgs {
    /// One judge per device of `--devices` (or `--device`), acting as one.
    pub fn load(&self, judge: &JudgeArgs) -> gram::Result<Replicas<GramJudge>> {
        let devices = gram::device::select_list(self.devices.as_deref().unwrap_or(&judge.device))?;
        let judges = (devices.iter())
            .map(|device| judge.load_on(device))
            .collect::<gram::Result<Vec<_>>>()?;
        Replicas::new(judges)
    }

    /// The rows this run processes, given the [`gram::parallel::blocks`] of all rows: its
    /// slice, or all of them.
    pub fn rows(&self, blocks: &[Range<usize>]) -> Range<usize> {
        let total = blocks.last().map_or(0, |b| b.end);
        self.shard.map_or(0..total, |shard| shard.rows(blocks))
    }

    /// After a complete `--shard` run over `rows` of `total`, write its manifest beside
    /// `output` (nothing otherwise).
    pub fn finish(
        &self,
        command: &str,
        output: &Path,
        rows: Range<usize>,
        total: usize,
        inputs: serde_json::Value,
    ) -> gram::Result<()> {
        let Some(shard) = self.shard else {
            return Ok(());
        };
        let manifest = Manifest {
            command: command.into(),
            shard,
            start: rows.start,
            end: rows.end,
            total,
            inputs,
        };
        manifest.write(output)?;
        eprintln!(
            "slice {shard}: rows {}..{} of {total}; combine the slices with `gram merge`",
            rows.start, rows.end
        );
        Ok(())
    }
}

/// Bounds on the work of ranking and rewarding (see [`gram::rank::Limits`]); a row or call over
/// them is refused with an error naming the row and the limit.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct RankLimitArgs {
    /// Most responses per row [default: 1024 for `linear`/`knockout` and rewards against a
    /// reference, 64 for `round-robin`, which makes n(n−1)/2 comparisons]; sets both limits.
    #[arg(long)]
    pub max_responses: Option<usize>,
    /// Most comparisons (each two forward passes) of one call, all its rows together.
    #[arg(long, default_value_t = gram::rank::Limits::default().max_comparisons)]
    pub max_comparisons: usize,
}

impl RankLimitArgs {
    pub fn limits(&self) -> gram::rank::Limits {
        let limits = gram::rank::Limits {
            max_comparisons: self.max_comparisons,
            ..Default::default()
        };
        match self.max_responses {
            Some(max) => limits.with_max_responses(max),
            None => limits,
        }
    }
}
