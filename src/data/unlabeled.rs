//! Building unlabeled pairs from files of model outputs on the same prompts (GRAM's first,
//! unsupervised stage trains on such pairs).
//!
//! Inputs, each detected from its first row:
//! - AlpacaEval `model_outputs.json`: rows `instruction`, `output`, `generator`;
//! - Arena-Hard: `question.jsonl` rows `question_id`, `turns[{content}]`, and per-model answer
//!   files with rows `question_id`, `model_id`, `choices[0].turns[0].content`;
//! - plain JSONL `prompt`, `response` (and optionally `model`; else the file stem names it).
//!
//! Prompts and responses may be chat messages or chat-template-rendered text, read as every
//! data format reads them (see [`super`]).
//!
//! Outputs are grouped by prompt text; empty responses are dropped (a model that said nothing
//! is not a response worth judging); responses whose whitespace-normalised text is the same
//! are kept once (the first seen); every two different responses to a prompt form a pair, or
//! `per_prompt` pairs of them drawn at random; each pair's A/B order is random. Randomness
//! comes from one ChaCha8 generator seeded with `seed`, so a run is reproducible.

use super::dialogue::response_text;
use super::{ReadLimits, Row, RowReader, file_stem};
use crate::io::AtomicFile;
use crate::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One model's response to one prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub prompt: String,
    pub model: String,
    pub response: String,
}

/// An unlabeled pair as `gram pairs` writes it (one JSON object per line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelPair {
    pub prompt: String,
    pub response_a: String,
    pub response_b: String,
    pub model_a: String,
    pub model_b: String,
}

/// How many pairs to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairOptions {
    /// Pairs per prompt, drawn without replacement; `None` = every pair.
    pub per_prompt: Option<usize>,
    /// Seed of the generator that draws pairs and A/B orders.
    pub seed: u64,
    /// The most pairs one call may make, checked before any is made: every pair of n
    /// responses is n(n − 1)/2, so a few thousand responses to one prompt would otherwise
    /// ask for gigabytes.
    pub max_pairs: usize,
}

impl Default for PairOptions {
    /// Every pair, seed 0, at most [`PairOptions::DEFAULT_MAX_PAIRS`].
    fn default() -> Self {
        PairOptions {
            per_prompt: None,
            seed: 0,
            max_pairs: Self::DEFAULT_MAX_PAIRS,
        }
    }
}

impl PairOptions {
    /// One million pairs: 44 times AlpacaEval's every-pair set (805 prompts × 28).
    pub const DEFAULT_MAX_PAIRS: usize = 1_000_000;
}

/// The pairs built, with the counts behind them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairSet {
    pub pairs: Vec<ModelPair>,
    /// Distinct prompts seen.
    pub prompts: usize,
    /// Outputs dropped because their prompt already had the same (whitespace-normalised) text.
    pub duplicates: usize,
    /// Outputs dropped because they are empty or only whitespace.
    pub empty: usize,
}

/// What kind of file a model-output file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutputFile {
    AlpacaEval,
    ArenaQuestions,
    ArenaAnswers,
    Plain,
}

impl OutputFile {
    fn detect(row: &Row) -> Result<OutputFile> {
        let has = |field: &str| row.fields.contains_key(field);
        if has("instruction") && has("output") {
            Ok(OutputFile::AlpacaEval)
        } else if has("question_id") && has("choices") {
            Ok(OutputFile::ArenaAnswers)
        } else if has("question_id") && has("turns") {
            Ok(OutputFile::ArenaQuestions)
        } else if has("prompt") && has("response") {
            Ok(OutputFile::Plain)
        } else {
            Err(row.location.error(
                None,
                "not a model-output row (AlpacaEval `instruction`/`output`, Arena-Hard \
                 `question_id`/`turns` or `choices`, or `prompt`/`response`)",
            ))
        }
    }
}

/// Read the model outputs of several files, within the default [`ReadLimits`]. Arena-Hard
/// question files among them supply the prompts of the answer files, in whatever order the
/// files are given.
pub fn read_outputs(paths: &[PathBuf]) -> Result<Vec<Output>> {
    read_outputs_with(paths, ReadLimits::default())
}

/// [`read_outputs`] within `limits` (see [`super::open_with`]).
pub fn read_outputs_with(paths: &[PathBuf], limits: ReadLimits) -> Result<Vec<Output>> {
    let mut files = Vec::new();
    for path in paths {
        let path: Arc<Path> = Arc::from(path.as_path());
        let rows = RowReader::open_with(&path, limits)?.read_all()?;
        let kind = match rows.first() {
            Some(row) => OutputFile::detect(row)?,
            None => return Err(Error::data(&path, None, None, "no rows")),
        };
        files.push((path, kind, rows));
    }
    let mut questions: HashMap<String, String> = HashMap::new();
    for (_, _, rows) in files
        .iter_mut()
        .filter(|(_, kind, _)| *kind == OutputFile::ArenaQuestions)
    {
        for row in rows.iter_mut() {
            let id = row.take_str("question_id")?;
            let turns = row.take("turns")?;
            let prompt = turn_content(row, "turns", &turns)?;
            questions.insert(id, prompt);
        }
    }
    let mut outputs = Vec::new();
    for (path, kind, rows) in files {
        let stem = file_stem(&path);
        for mut row in rows {
            let output = match kind {
                OutputFile::ArenaQuestions => continue,
                OutputFile::AlpacaEval => Output {
                    prompt: row.take_prompt("instruction")?,
                    response: take_output(&mut row, "output")?,
                    model: row.peek_str("generator")?.unwrap_or_else(|| stem.clone()),
                },
                OutputFile::Plain => Output {
                    prompt: row.take_prompt("prompt")?,
                    response: take_output(&mut row, "response")?,
                    model: row.peek_str("model")?.unwrap_or_else(|| stem.clone()),
                },
                OutputFile::ArenaAnswers => {
                    let id = row.take_str("question_id")?;
                    let prompt = questions.get(&id).cloned().ok_or_else(|| {
                        row.location.error(
                            Some("question_id"),
                            format!("no question {id:?} in the Arena-Hard question files given"),
                        )
                    })?;
                    let model = row.peek_str("model_id")?.unwrap_or_else(|| stem.clone());
                    let choices = row.take("choices")?;
                    let turns = choices.get(0).and_then(|choice| choice.get("turns"));
                    let turns = turns
                        .ok_or_else(|| row.location.error(Some("choices[0].turns"), "missing"))?;
                    let response = turn_content(&row, "choices[0].turns", turns)?;
                    Output {
                        prompt,
                        model,
                        response,
                    }
                }
            };
            outputs.push(output);
        }
    }
    Ok(outputs)
}

/// The `content` of the first element of the turn list `turns` (field `field`).
fn turn_content(row: &Row, field: &str, turns: &Value) -> Result<String> {
    let content = format!("{field}[0].content");
    match turns.get(0).and_then(|turn| turn.get("content")) {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(other) => Err(row.wrong_type(&content, "a string", other)),
        None => Err(row.location.error(Some(&content), "missing")),
    }
}

/// Group outputs by prompt (first-appearance order), drop repeated texts, and pair the rest.
///
/// Time and memory are linear in the outputs plus the pairs made: repeated texts are found
/// through a hash set, and with `per_prompt = Some(k)` the k pairs of a prompt with n
/// responses are drawn as k indices into the n(n − 1)/2 possible pairs (Floyd's or rejection
/// sampling, O(k)) and decoded to `(i, j)` directly, never listing every pair. More than
/// `options.max_pairs` pairs in all is an error naming the largest prompt's share, found
/// before any pair is made.
pub fn build_pairs(outputs: &[Output], options: PairOptions) -> Result<PairSet> {
    let mut order: Vec<&str> = Vec::new();
    let mut by_prompt: HashMap<&str, Vec<&Output>> = HashMap::new();
    let mut seen: HashMap<&str, HashSet<String>> = HashMap::new();
    let (mut duplicates, mut empty) = (0, 0);
    for output in outputs {
        let normalised = output
            .response
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let texts = seen.entry(&output.prompt).or_default();
        if normalised.is_empty() {
            empty += 1;
            continue;
        }
        if !texts.insert(normalised) {
            duplicates += 1;
            continue;
        }
        by_prompt
            .entry(&output.prompt)
            .or_insert_with(|| {
                order.push(&output.prompt);
                Vec::new()
            })
            .push(output);
    }
    let prompts = seen.len();
    let made = |n: usize| {
        let every = n * n.saturating_sub(1) / 2;
        options.per_prompt.map_or(every, |k| k.min(every))
    };
    let count = (order.iter()).fold(0usize, |sum, p| {
        sum.saturating_add(made(by_prompt[p].len()))
    });
    if count > options.max_pairs {
        let largest = (order.iter()).max_by_key(|p| by_prompt[*p].len());
        let (prompt, n) = largest.map_or(("", 0), |p| (*p, by_prompt[p].len()));
        let head: String = prompt.chars().take(60).collect();
        return Err(Error::invalid(format!(
            "{count} pairs would be made, over the limit of {} (the prompt {head:?}… alone has \
             {n} responses: {} pairs); draw fewer per prompt with --per-prompt K, or raise \
             --max-pairs",
            options.max_pairs,
            made(n)
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let mut pairs = Vec::new();
    for prompt in order {
        let responses = &by_prompt[prompt];
        let n = responses.len();
        let total = n * (n - 1) / 2;
        // The chosen pairs as sorted indices into the lexicographic list of (i, j), i < j.
        let picked: Box<dyn Iterator<Item = usize>> = match options.per_prompt {
            Some(k) if k < total => {
                let mut picked = rand::seq::index::sample(&mut rng, total, k).into_vec();
                picked.sort_unstable();
                Box::new(picked.into_iter())
            }
            _ => Box::new(0..total),
        };
        // Decode sorted indices walking the rows: row i holds n − 1 − i pairs.
        let (mut i, mut row_start) = (0, 0);
        let chosen: Vec<(usize, usize)> = picked
            .map(|index| {
                while index >= row_start + (n - 1 - i) {
                    row_start += n - 1 - i;
                    i += 1;
                }
                (i, i + 1 + (index - row_start))
            })
            .collect();
        for (i, j) in chosen {
            let (a, b) = if rng.random_bool(0.5) {
                (responses[j], responses[i])
            } else {
                (responses[i], responses[j])
            };
            pairs.push(ModelPair {
                prompt: prompt.to_owned(),
                response_a: a.response.clone(),
                response_b: b.response.clone(),
                model_a: a.model.clone(),
                model_b: b.model.clone(),
            });
        }
    }
    Ok(PairSet {
        pairs,
        prompts,
        duplicates,
        empty,
    })
}

/// Write pairs as JSONL: to a temporary file beside `path`, renamed into place when complete,
/// so a reader never sees half a file.
pub fn write_pairs(path: &Path, pairs: &[ModelPair]) -> Result<()> {
    let mut file = AtomicFile::create(path)?;
    for pair in pairs {
        file.write_json_line(pair)?;
    }
    file.commit()
}

/// Remove a model output: text or one assistant message (see [`response_text`]); an empty one
/// is kept here and counted as dropped later.
fn take_output(row: &mut Row, field: &str) -> Result<String> {
    let value = row.take(field)?;
    response_text(row, field, &value)
}
