//! The judge: a causal LM reads a judge prompt and its next-token logits for the two verdict
//! tokens say which response is better.
//!
//! For a pair `(x, y_a, y_b)` the judge prompt is filled, wrapped in the model's chat template as
//! one user turn (generation prompt appended), tokenized, and run through the model. At the last
//! position only the two rows of the output projection that belong to the verdict tokens are
//! applied: `z = h_last · W[{A, B}]ᵀ`. The pair is scored again with the responses swapped and
//!
//! ```text
//! p_a = ( σ(z_A − z_B)|_(a,b)  +  σ(z_B − z_A)|_(b,a) ) / 2
//! ```
//!
//! which cancels the model's position bias.
//!
//! A Bradley–Terry reward model (a checkpoint with a scalar value head `score.weight`, as
//! `gram finetune --objective bt` exports it) is judged through the same path: each response
//! is read alone after the prompt, as one user and one assistant turn
//! ([`crate::prompt::reward_sequence`]), its reward is `r = h_last · w`, and
//! `p_a = σ(r_a − r_b)` — the same in both orders, since such a model never sees the pair.
//!
//! Shared prefixes are computed once ([`KvCache`]): the judge instruction before `{prompt}` is the
//! same for every pair, so its keys and values are kept for the judge's lifetime; sequences that
//! share more than that (the two orders of a pair share the question; a ranking's comparisons
//! share the prompt) form a *family* whose common prefix is run once, and its members run after
//! it. Families nest: within one, the sequences that share still more form families of their
//! own — RM-Bench's 3 × 3 grid of one prompt shows each of its six responses first in three
//! comparisons, a best-of-n ranking each candidate first in n − 1, and that response is run
//! once, not three or n − 1 times. Only the remaining tokens of each sequence go through the
//! model; the scores are the same as running every sequence whole (tested to 1e-4).
//!
//! A forward pass ([`Llama::pass`]) packs up to `batch_size` sequences (a prefix run counts as
//! one), each continuing its own cache: every projection is one product over all their token
//! rows, and each attends only to its own keys and values. On a GPU, sequences of different
//! lengths after the same cache are also right-padded into one batch (padding never changes a
//! score, see [`crate::model`]); on `cpu`, where padding costs its full arithmetic, they are
//! not.
//!
//! With a [`TrunkStore`] ([`GramJudge::with_trunk_store`]) each call's decoder passes record
//! the input of the store's layer `L` on disk, and a later judge whose bottom `L` layers are
//! the same (a fine-tune of the same base with the top layers trained) replays them, running
//! only layers `L..N`: the same scores bit for bit, at `(N − L)/N` of the forward work.

use crate::checkpoint::Checkpoint;
use crate::dtype::Dtype;
use crate::model::layout::VALUE_HEAD;
use crate::model::{
    Keep, KvCache, Llama, LoadReport, PassGroup, Trunk, TrunkStore, common_prefix, trunk,
};
use crate::prompt::{PromptBuilder, PromptTemplate, reward_sequence, verdict_tokens};
use crate::tokenizer::{ChatTemplateKwargs, TextCodec};
use crate::{Error, Judge, Pair, Result, Verdict};
use burn::tensor::{Device, Tensor, TensorData};
use std::path::Path;

/// Tells a judge call's trunk recordings from other computations' ([`trunk::computation_key`]);
/// a new value whenever the judge lays out its passes differently, so that recordings of the
/// old layout are not replayed.
const JUDGE_CALL: u64 = 2;

/// The longest judge input by default (when the model's context is longer): attention memory
/// grows with the square of the length, and 32k-token contexts do not fit a batch.
pub const DEFAULT_MAX_LEN: usize = 4096;

/// Sequences per forward pass when the user names none, on `cpu` and on a GPU.
///
/// On `cpu` a pass pays through taller products: its sequences' token rows are packed, unpadded,
/// each after its own cached prefix, so every projection is one product over all of them. A
/// loop of the decoder layer's products on OpenBLAS reached 67–76% of its 1024³ rate at 100
/// rows, 79–88% at 200 and 91–100% at 400; a pass of 8 HH sequences holds about 1,600.
/// Measured (`judge_bench --pairs 16 --rounds 2 --no-torch`, 2-core VM): 8 judged 1.03–1.07
/// pairs/s at 72% of the matmul rate against 0.93–0.98 at 65–70% for one pair per pass
/// (batch 2, unpacked); 4 and 16 were within 3% of 8.
pub const DEFAULT_BATCH_SIZE: usize = 8;

/// How the judge builds its input and batches work.
#[derive(Debug, Clone)]
pub struct JudgeOptions {
    /// A judge prompt template with `{prompt}`, `{response_a}`, `{response_b}`; `None` = ours.
    pub template: Option<String>,
    /// The two verdict labels (each must be one token).
    pub labels: (String, String),
    /// Sequences per forward pass.
    pub batch_size: usize,
    /// Longest judge input in tokens; `None` = the model's context length capped at
    /// [`DEFAULT_MAX_LEN`]. More than the context length is an error.
    pub max_len: Option<usize>,
    /// Wrap the filled prompt in the model's chat template.
    pub chat_template: bool,
    /// Extra chat-template variables (e.g. Qwen3's `enable_thinking: false`).
    pub chat_template_kwargs: ChatTemplateKwargs,
    /// The float type of the weights ([`crate::dtype`]); by default f32, the exact one
    /// (the CLI's `--dtype` defaults to `auto`).
    pub dtype: Dtype,
}

impl Default for JudgeOptions {
    fn default() -> Self {
        JudgeOptions {
            template: None,
            labels: ("A".into(), "B".into()),
            batch_size: DEFAULT_BATCH_SIZE,
            max_len: None,
            chat_template: true,
            chat_template_kwargs: ChatTemplateKwargs::new(),
            dtype: Dtype::F32,
        }
    }
}

/// Counters a run of the judge accumulates.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JudgeStats {
    /// Pairs judged.
    pub pairs: usize,
    /// Ordered sequences whose responses were shortened to fit `max_len`.
    pub truncated: usize,
    /// Tokens of the judged sequences, whether run or read from a shared-prefix cache.
    pub tokens: usize,
    /// Tokens run through the model, padding and shared prefixes included (each prefix once).
    pub computed_tokens: usize,
    /// Padding tokens run through the model.
    pub padding: usize,
    /// Forward passes (batches and prefix fills).
    pub batches: usize,
    /// Matmul FLOPs of the forward passes run (padding included), by
    /// [`crate::config::ModelConfig::forward_flops`] plus the verdict logits; replaying a
    /// trunk, of the layers run.
    pub flops: f64,
}

impl JudgeStats {
    /// The counters of several judges (replicas) together.
    pub fn sum(stats: impl IntoIterator<Item = JudgeStats>) -> JudgeStats {
        stats
            .into_iter()
            .fold(JudgeStats::default(), |total, s| JudgeStats {
                pairs: total.pairs + s.pairs,
                truncated: total.truncated + s.truncated,
                tokens: total.tokens + s.tokens,
                computed_tokens: total.computed_tokens + s.computed_tokens,
                padding: total.padding + s.padding,
                batches: total.batches + s.batches,
                flops: total.flops + s.flops,
            })
    }
}

/// A language model used as a pairwise judge.
pub struct GramJudge {
    model: Llama,
    prompts: PromptBuilder,
    verdict_tokens: [u32; 2],
    pad_id: u32,
    batch_size: usize,
    /// Whether sequences of different lengths are right-padded into one batch (on a GPU), or
    /// only equal lengths share one (on `cpu`; see [`GramJudge::jobs`]).
    pads: bool,
    stats: JudgeStats,
    /// Token ids of the judge prompt up to its first variable text.
    template_prefix: Vec<u32>,
    /// Keys and values of `template_prefix`, filled on first use.
    template_cache: Option<KvCache>,
    /// A scalar value head `w`, `[d, 1]` (a Bradley–Terry reward model's `score.weight`,
    /// transposed): when present, each response is scored alone instead of the verdict tokens
    /// being read (see the module docs).
    value_head: Option<Tensor<2>>,
    /// What loading put on the device, when the judge loaded its model.
    load_report: Option<LoadReport>,
    /// Where the bottom layers' outputs are recorded and replayed from, if anywhere.
    trunk_store: Option<TrunkStore>,
}

/// Sequences (`members`, indices into a call's sequences) that all continue one cache.
struct Group {
    members: Vec<usize>,
    past: Option<KvCache>,
}

/// One piece of a pass: members of group `group`, either run once up to `prefix` (their
/// common prefix, kept as the cache of a new group of them) or, with no `prefix`, scored as
/// one right-padded batch.
struct Job {
    group: usize,
    members: Vec<usize>,
    prefix: Option<usize>,
}

impl Job {
    fn batch(group: usize, members: Vec<usize>) -> Self {
        Job {
            group,
            members,
            prefix: None,
        }
    }

    /// Sequences this job adds to a pass: a prefix run is one.
    fn load(&self) -> usize {
        match self.prefix {
            Some(_) => 1,
            None => self.members.len(),
        }
    }
}

/// Sequences sharing a common prefix beyond what is already cached: `members` index the
/// sequences, `prefix` is their common prefix length, capped so every member keeps a token to
/// run.
struct Family {
    members: Vec<usize>,
    prefix: usize,
}

/// Group the sequences `members` into families that share more than `shared` leading tokens
/// (sorting by ids puts them next to each other), families ordered by their longest member so
/// batches of similar lengths pad little.
fn families(sequences: &[Vec<u32>], members: &[usize], shared: usize) -> Vec<Family> {
    let mut order = members.to_vec();
    order.sort_by(|&a, &b| sequences[a].cmp(&sequences[b]));
    let mut families: Vec<Family> = Vec::new();
    for i in order {
        if let Some(family) = families.last_mut() {
            let last = family.members[family.members.len() - 1];
            let common = common_prefix(&sequences[last], &sequences[i]);
            if common > shared {
                family.prefix = family.prefix.min(common);
                family.members.push(i);
                continue;
            }
        }
        families.push(Family {
            members: vec![i],
            prefix: sequences[i].len(),
        });
    }
    for family in &mut families {
        let shortest = family.members.iter().map(|&i| sequences[i].len()).min();
        family.prefix = family.prefix.min(shortest.unwrap_or(1).saturating_sub(1));
        family.members.sort_by_key(|&i| sequences[i].len());
    }
    let longest = |f: &Family| f.members.iter().map(|&i| sequences[i].len()).max();
    families.sort_by_key(longest);
    families
}

impl GramJudge {
    /// Load a checkpoint (GGUF file or Hugging Face directory) onto `device`, its weights in
    /// `options.dtype` resolved for the device ([`Dtype::resolve`]).
    ///
    /// A checkpoint with a `score.weight` tensor (`[1, hidden_size]`) is a Bradley–Terry
    /// reward model, judged by its value head ([`GramJudge::with_value_head`]).
    pub fn load(path: &Path, device: &Device, options: JudgeOptions) -> Result<Self> {
        let dtype = options.dtype.resolve(device)?;
        let mut checkpoint = Checkpoint::load(path)?;
        let value_head = match checkpoint.tensors.remove(VALUE_HEAD) {
            Some(stored) => {
                let d = checkpoint.config.hidden_size;
                if stored.shape != [1, d] {
                    return Err(Error::checkpoint(
                        path,
                        format!(
                            "tensor `{VALUE_HEAD}` has shape {:?}; a value head is [1, {d}]",
                            stored.shape
                        ),
                    ));
                }
                let w = stored.elements()?.into_f32();
                Some(Tensor::<2>::from_data(TensorData::new(w, [d, 1]), device))
            }
            None => None,
        };
        let (model, report) = Llama::from_checkpoint_as(&mut checkpoint, device, dtype)?;
        let mut judge = Self::new(model, checkpoint.codec, options)?;
        if let Some(w) = value_head {
            judge = judge.with_value_head(w)?;
        }
        judge.load_report = Some(report);
        Ok(judge)
    }

    /// Wrap an in-memory model and its tokenizer.
    pub fn new(model: Llama, codec: TextCodec, options: JudgeOptions) -> Result<Self> {
        if options.batch_size == 0 {
            return Err(Error::invalid("--batch-size must be at least 1"));
        }
        let verdict_tokens = verdict_tokens(&codec, &options.labels)?;
        let template = PromptTemplate::or_default(options.template.as_deref())?;
        let context = model.config.max_position_embeddings;
        let max_len = match options.max_len {
            None => context.min(DEFAULT_MAX_LEN),
            Some(max_len) if max_len > context => {
                return Err(Error::invalid(format!(
                    "--max-len {max_len} exceeds the model's context length of {context} tokens"
                )));
            }
            Some(max_len) => max_len,
        };
        let pad_id = codec.padding_id();
        let prompts = PromptBuilder::new(codec, template, options.chat_template, max_len)
            .with_chat_template_kwargs(options.chat_template_kwargs);
        // What two judge prompts with nothing in common share: the template's fixed head.
        let one = prompts.encode("x", "y", "z")?;
        let two = prompts.encode("1", "2", "3")?;
        let template_prefix = one[..common_prefix(&one, &two)].to_vec();
        let pads = !crate::matmul::on_flex(&model.device());
        Ok(GramJudge {
            model,
            prompts,
            verdict_tokens,
            pad_id,
            batch_size: options.batch_size,
            pads,
            stats: JudgeStats::default(),
            template_prefix,
            template_cache: None,
            value_head: None,
            load_report: None,
            trunk_store: None,
        })
    }

    /// Record the input of layer `store.layer()` of every call's decoder passes in `store`, and
    /// replay a call's passes from it when it holds them (see the module docs).
    pub fn with_trunk_store(mut self, store: TrunkStore) -> Self {
        self.trunk_store = Some(store);
        self
    }

    /// Judge as a Bradley–Terry reward model with the value head `w` (`[hidden_size, 1]`, on
    /// the model's device): each response is read alone after the prompt and
    /// `p_a = σ(r_a − r_b)`, `r = h_last · w`.
    pub fn with_value_head(mut self, w: Tensor<2>) -> Result<Self> {
        let d = self.model.config.hidden_size;
        if w.dims() != [d, 1] {
            return Err(Error::invalid(format!(
                "a value head is [{d}, 1] for this model, got {:?}",
                w.dims()
            )));
        }
        self.value_head = Some(w);
        Ok(self)
    }

    /// Whether the judge is a Bradley–Terry reward model ([`GramJudge::with_value_head`]).
    pub fn has_value_head(&self) -> bool {
        self.value_head.is_some()
    }

    /// A reward model's verdicts: `r` for `(prompt, response_a)` and `(prompt, response_b)`,
    /// `p_a = σ(r_a − r_b)` in both orders.
    fn judge_by_value_head(&mut self, pairs: &[Pair]) -> Result<Vec<Verdict>> {
        let codec = self.prompts.codec();
        let max_len = self.prompts.max_len();
        let mut sequences = Vec::with_capacity(2 * pairs.len());
        for pair in pairs {
            for response in [&pair.response_a, &pair.response_b] {
                sequences.push(reward_sequence(codec, &pair.prompt, response, max_len)?);
            }
        }
        let rewards = self.margins(&sequences)?;
        self.stats.pairs += pairs.len();
        Ok(rewards
            .chunks_exact(2)
            .map(|r| Verdict::from_margins(r[0] - r[1], r[1] - r[0]))
            .collect())
    }

    /// The model being used.
    pub fn model(&self) -> &Llama {
        &self.model
    }

    /// How prompts are built and tokenized.
    pub fn prompts(&self) -> &PromptBuilder {
        &self.prompts
    }

    /// What loading put on the device ([`GramJudge::load`]; `None` for a judge made with
    /// [`GramJudge::new`]).
    pub fn load_report(&self) -> Option<&LoadReport> {
        self.load_report.as_ref()
    }

    /// Sequences per forward pass.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The verdict token ids `[A, B]`.
    pub fn verdict_tokens(&self) -> [u32; 2] {
        self.verdict_tokens
    }

    /// Counters since the judge was created.
    pub fn stats(&self) -> JudgeStats {
        self.stats
    }

    /// Verdict margins `z_A − z_B` for already tokenized sequences, in input order (with a
    /// value head, each sequence's reward `r` instead).
    ///
    /// Sequences run in passes of up to `batch_size`, grouped by shared prefix and length;
    /// shared prefixes are run once, nested (see the module docs and [`GramJudge::run_groups`]).
    pub fn margins(&mut self, sequences: &[Vec<u32>]) -> Result<Vec<f64>> {
        if let Some(i) = sequences.iter().position(|s| s.is_empty()) {
            return Err(Error::invalid(format!(
                "cannot judge an empty token sequence (sequence {i})"
            )));
        }
        let mut margins = vec![0.0; sequences.len()];
        // What decides this call's decoder passes: the batch size and the sequences (the
        // template's cache is filled whole, outside any recording).
        let key = self.trunk_store.as_ref().map(|_| {
            let sequences: Vec<&[u32]> = sequences.iter().map(Vec::as_slice).collect();
            trunk::computation_key(&[JUDGE_CALL, self.batch_size as u64], &sequences)
        });
        let mut trunk = match (&self.trunk_store, key) {
            (Some(store), Some(key)) => Some(store.trunk(key)?),
            _ => None,
        };
        // Sequences that continue the template's fixed head start from its cache.
        let template = &self.template_prefix;
        let (after_template, whole): (Vec<usize>, Vec<usize>) =
            (0..sequences.len()).partition(|&i| {
                !template.is_empty()
                    && sequences[i].len() > template.len()
                    && sequences[i].starts_with(template)
            });
        let mut groups = Vec::new();
        if !after_template.is_empty() {
            let past = Some(self.template_cache()?);
            groups.push(Group {
                members: after_template,
                past,
            });
        }
        if !whole.is_empty() {
            groups.push(Group {
                members: whole,
                past: None,
            });
        }
        self.run_groups(sequences, &groups, &mut margins, trunk.as_mut())?;
        if let (Some(store), Some(key), Some(trunk)) = (&self.trunk_store, key, trunk) {
            store.finish(key, trunk)?;
        }
        Ok(margins)
    }

    /// Score the members of `groups` into `margins`, each group's members continuing its cache.
    ///
    /// Within a group, members that share more than its cache form families ([`families`]); a
    /// family with its own prefix run (see [`GramJudge::jobs`]) becomes a group of its own,
    /// after that run — so a ranking's comparisons share the prompt, and within it the first
    /// response that several of them show first. Jobs are packed into passes of up to
    /// `batch_size` sequences (a prefix run counts as one), and the groups a pass's prefix runs
    /// open are scored before the next pass, so at most one pass's caches are held per level.
    fn run_groups(
        &mut self,
        sequences: &[Vec<u32>],
        groups: &[Group],
        margins: &mut [f64],
        mut trunk: Option<&mut Trunk>,
    ) -> Result<()> {
        let jobs = self.jobs(sequences, groups);
        let mut rest = jobs.as_slice();
        while !rest.is_empty() {
            let mut load = 0;
            let take = (rest.iter())
                .take_while(|job| {
                    load += job.load();
                    load <= self.batch_size
                })
                .count()
                .max(1);
            let (pass, later) = rest.split_at(take);
            let children = self.run_pass(sequences, groups, pass, margins, trunk.as_deref_mut())?;
            self.run_groups(sequences, &children, margins, trunk.as_deref_mut())?;
            rest = later;
        }
        Ok(())
    }

    /// The jobs of `groups`, in order: each family that runs its common prefix once (a
    /// [`Job`] with a `prefix`), then the group's other members, in length order, as padded
    /// batches.
    ///
    /// On a GPU (`pads`), a family runs its prefix only when it fills a batch, and the other
    /// members are right-padded `batch_size` at a time: fewer, fuller attention launches. On
    /// `cpu`, where padding costs its full arithmetic and a pass's height comes from packing,
    /// every family of two or more runs its prefix, and only members of equal length share a
    /// batch.
    fn jobs(&self, sequences: &[Vec<u32>], groups: &[Group]) -> Vec<Job> {
        let mut jobs = Vec::new();
        for (g, group) in groups.iter().enumerate() {
            let shared = group.past.as_ref().map_or(0, KvCache::len);
            let mut pooled = Vec::new();
            for family in families(sequences, &group.members, shared) {
                let fills = !self.pads || family.members.len() >= self.batch_size;
                if family.members.len() > 1 && family.prefix > shared && fills {
                    jobs.push(Job {
                        group: g,
                        members: family.members,
                        prefix: Some(family.prefix),
                    });
                } else {
                    pooled.extend(family.members);
                }
            }
            pooled.sort_by_key(|&i| sequences[i].len());
            let mut batch: Vec<usize> = Vec::new();
            for i in pooled {
                let joins = batch.len() < self.batch_size
                    && (self.pads
                        || batch
                            .iter()
                            .all(|&j| sequences[j].len() == sequences[i].len()));
                if !joins && !batch.is_empty() {
                    jobs.push(Job::batch(g, std::mem::take(&mut batch)));
                }
                batch.push(i);
            }
            if !batch.is_empty() {
                jobs.push(Job::batch(g, batch));
            }
        }
        jobs
    }

    /// The keys and values of the template prefix, run on first use.
    fn template_cache(&mut self) -> Result<KvCache> {
        if self.template_cache.is_none() {
            let ids = self.template_prefix.clone();
            let group = PassGroup {
                ids: vec![&ids],
                past: None,
                keep: Keep::Cache,
            };
            self.count_pass(&[group], 1.0, 0);
            self.template_cache = Some(self.model.prefill(&ids, None, None)?);
        }
        Ok(self.template_cache.clone().expect("filled above"))
    }

    /// The share of a forward pass's work a pass does: all of it, or replaying a trunk of
    /// `L` layers, the layers above it, `(N − L)/N`.
    fn work_share(&self, trunk: Option<&Trunk>) -> f64 {
        let n = self.model.config.num_hidden_layers;
        match trunk {
            Some(trunk) if trunk.is_replay() => (n - trunk.layer()) as f64 / n as f64,
            _ => 1.0,
        }
    }

    /// Count a pass over `pass` at `share` of a whole forward's work, each sequence of a
    /// [`Keep::LastRows`] group read as `outputs` scores.
    fn count_pass(&mut self, pass: &[PassGroup], share: f64, outputs: usize) {
        let config = &self.model.config;
        self.stats.batches += 1;
        for group in pass {
            let skip = group.past.map_or(0, KvCache::len);
            let width = group.ids.iter().map(|s| s.len()).max().unwrap_or(0);
            let b = group.ids.len();
            self.stats.computed_tokens += b * width;
            self.stats.flops += b as f64 * share * config.forward_flops(width, 2 * skip + width);
            if group.keep == Keep::LastRows {
                for seq in &group.ids {
                    self.stats.tokens += skip + seq.len();
                    self.stats.padding += width - seq.len();
                }
                self.stats.flops += b as f64 * 2.0 * (outputs * config.hidden_size) as f64;
            }
        }
    }

    /// Run one pass of `jobs` (of `groups`): write `z_A − z_B` (or the reward `r`) of each
    /// batch's members into `margins`, and return the groups that the prefix runs open.
    fn run_pass(
        &mut self,
        sequences: &[Vec<u32>],
        groups: &[Group],
        jobs: &[Job],
        margins: &mut [f64],
        trunk: Option<&mut Trunk>,
    ) -> Result<Vec<Group>> {
        let share = self.work_share(trunk.as_deref());
        // Scores read per sequence: the two verdict logits, or one reward.
        let outputs = if self.value_head.is_some() { 1 } else { 2 };
        let pass: Vec<PassGroup> = jobs
            .iter()
            .map(|job| {
                let past = groups[job.group].past.as_ref();
                let skip = past.map_or(0, KvCache::len);
                match job.prefix {
                    Some(prefix) => PassGroup {
                        ids: vec![&sequences[job.members[0]][skip..prefix]],
                        past,
                        keep: Keep::Cache,
                    },
                    None => PassGroup {
                        ids: job.members.iter().map(|&i| &sequences[i][skip..]).collect(),
                        past,
                        keep: Keep::LastRows,
                    },
                }
            })
            .collect();
        self.count_pass(&pass, share, outputs);
        let (last, caches) = self.model.pass(&pass, self.pad_id, trunk)?;
        if let Some(last) = last {
            // [Σ B, outputs]
            let scores = match &self.value_head {
                None => self.model.token_logits(last, &self.verdict_tokens),
                Some(w) => last.matmul(w.clone()),
            };
            // A failed device computation (e.g. a buffer over the adapter's limits) surfaces
            // here, at the read-back: an error, not a panic.
            let fail = |e: &dyn std::fmt::Debug| {
                Error::Device(format!("reading scores back from the device: {e:?}"))
            };
            let scores = scores.try_into_data().map_err(|e| fail(&e))?;
            let scores = scores.try_to_vec::<f32>().map_err(|e| fail(&e))?;
            let scored = (jobs.iter()).filter(|job| job.prefix.is_none());
            for (k, &i) in scored.flat_map(|job| &job.members).enumerate() {
                margins[i] = match outputs {
                    2 => (scores[2 * k] - scores[2 * k + 1]) as f64,
                    _ => scores[k] as f64,
                };
            }
        }
        Ok((jobs.iter().zip(caches))
            .filter_map(|(job, cache)| {
                cache.map(|past| Group {
                    members: job.members.clone(),
                    past: Some(past),
                })
            })
            .collect())
    }
}

impl Judge for GramJudge {
    fn tokens_judged(&self) -> Option<u64> {
        Some(self.stats.tokens as u64)
    }

    fn judge(&mut self, pairs: &[Pair]) -> Result<Vec<Verdict>> {
        if self.value_head.is_some() {
            return self.judge_by_value_head(pairs);
        }
        let mut sequences = Vec::with_capacity(2 * pairs.len());
        for pair in pairs {
            let forward =
                self.prompts
                    .sequence(&pair.prompt, &pair.response_a, &pair.response_b)?;
            let reverse =
                self.prompts
                    .sequence(&pair.prompt, &pair.response_b, &pair.response_a)?;
            self.stats.truncated += forward.truncated as usize + reverse.truncated as usize;
            sequences.push(forward.ids);
            sequences.push(reverse.ids);
        }
        let margins = self.margins(&sequences)?;
        self.stats.pairs += pairs.len();
        Ok(margins
            .chunks_exact(2)
            .map(|m| Verdict::from_margins(m[0], m[1]))
            .collect())
    }
}
