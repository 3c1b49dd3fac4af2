//! Reading the preference data people already have.
//!
//! One reader handles every format we know; it detects the format from the first row (or takes
//! it from `--format`) and then holds every row of the file to that format. A file is JSONL
//! (one object per line, blank lines skipped) or one JSON array of objects; a `.gz` suffix means
//! gzip. A UTF-8 byte order mark at the start is skipped; invalid UTF-8 is an error at its
//! line; lines and whole JSON-array files are bounded ([`ReadLimits`]: 16 MiB a line, 1 GiB an
//! array file, decompressed). Each row becomes a [`Record`]: its [`Content`] (a labeled [`Preference`], an unlabeled
//! [`Pair`], an RM-Bench [`StyleGrid`] or a RewardBench 2 best-of-n set of [`Completions`]), the benchmark's own group (subset, domain, source),
//! and every field we did not consume, passed through untouched.
//!
//! | [`Format`] | row | parsed in |
//! |---|---|---|
//! | `preference` | `prompt`, `chosen`, `rejected`; or whole conversations in `chosen`, `rejected` | `preference.rs` |
//! | `pairs` | `prompt`, `response_a`, `response_b`, optional `label` `"A"`/`"B"` | `pairs.rs` |
//! | `hh` | HH-RLHF: `chosen`, `rejected` whole `\n\nHuman: … \n\nAssistant: …` dialogues | `hh.rs` |
//! | `rm-bench` | `prompt`, `chosen[3]`, `rejected[3]` (concise, detailed, detailed markdown) | `rm_bench.rs` |
//! | `llmbar` | `input`, `output_1`, `output_2`, `label` 1/2 | `llmbar.rs` |
//! | `llama-factory` | `conversations[{from, value}]`, `chosen{from, value}`, `rejected{from, value}` | `llama_factory.rs` |
//! | `judgebench` | `question`, `response_A`, `response_B`, `label` `"A>B"`/`"B>A"`, `source` | `judgebench.rs` |
//! | `rewardbench` | `prompt`, `chosen`, `rejected`, `subset` | `preference.rs` |
//! | `rewardbench2` | `id`, `prompt`, `chosen[]`, `rejected[]`, `num_correct`, `num_incorrect`, `total_completions`, `subset` | `rewardbench2.rs` |
//!
//! Every prompt field (`prompt`, `input`, `question`) may be a string or a list of chat
//! messages `[{role, content}]` (ShareGPT's `[{from, value}]` too); a multi-turn prompt keeps
//! its turns, rendered as a `Human: … Assistant: …` transcript in the judge's question block.
//! Every response field may be a string or one assistant message (`[{"role": "assistant",
//! "content": …}]` or the object alone), which is unwrapped. A string rendered by a chat
//! template (`<|im_start|>user\n…`) is undone ([`crate::chat_format`]).
//!
//! Errors name the file, the row and the field: rows of a JSONL file by their 1-based line,
//! elements of a JSON array by their 0-based index (the message says which).
//!
//! Every input row, of these formats or not, is a [`Row`] with its [`Location`] (`row.rs`);
//! reading files is `read.rs`. Two other kinds of input live here too: model-output files
//! turned into unlabeled pairs for stage 1 ([`unlabeled`]), and the JSON-lines rows that
//! `gram rank` and `gram reward` pass through with fields added ([`jsonl`]).

mod dialogue;
mod hh;
pub mod jsonl;
mod judgebench;
mod llama_factory;
mod llmbar;
mod pairs;
mod preference;
mod read;
mod rewardbench2;
mod rm_bench;
mod row;
pub mod unlabeled;

pub use dialogue::Role;
pub(crate) use read::RowReader;
pub use read::{ReadLimits, file_stem};
pub use rewardbench2::Completions;
pub use rm_bench::{RM_BENCH_STYLES, StyleGrid};
pub use row::{Location, Origin, Row};

use crate::{Error, Pair, Preference, Result};
use serde_json::{Map, Value, json};
use std::path::Path;
use std::sync::Arc;

/// A preference-data format (see the module table); `Auto` detects it from the first row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Auto,
    Preference,
    Pairs,
    Hh,
    RmBench,
    Llmbar,
    LlamaFactory,
    Judgebench,
    Rewardbench,
    Rewardbench2,
}

impl Format {
    /// The name `--format` takes.
    pub fn name(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Preference => "preference",
            Format::Pairs => "pairs",
            Format::Hh => "hh",
            Format::RmBench => "rm-bench",
            Format::Llmbar => "llmbar",
            Format::LlamaFactory => "llama-factory",
            Format::Judgebench => "judgebench",
            Format::Rewardbench => "rewardbench",
            Format::Rewardbench2 => "rewardbench2",
        }
    }

    /// The format a row's fields announce, or `None` if it fits none.
    pub fn detect(row: &Map<String, Value>) -> Option<Format> {
        let has = |field: &str| row.contains_key(field);
        let is_str = |field: &str| row.get(field).is_some_and(Value::is_string);
        let first_item = |field: &str| {
            row.get(field)
                .and_then(Value::as_array)
                .and_then(|items| items.first())
        };
        let is_string_list = |field: &str| first_item(field).is_some_and(Value::is_string);
        let is_message_list = |field: &str| first_item(field).is_some_and(Value::is_object);
        if has("conversations") && has("chosen") && has("rejected") {
            Some(Format::LlamaFactory)
        } else if has("input") && has("output_1") && has("output_2") {
            Some(Format::Llmbar)
        } else if has("question") && has("response_A") && has("response_B") {
            Some(Format::Judgebench)
        } else if has("prompt") && has("response_a") && has("response_b") {
            Some(Format::Pairs)
        } else if has("prompt") && has("num_correct") && has("subset") {
            Some(Format::Rewardbench2)
        } else if has("prompt") && is_string_list("chosen") && is_string_list("rejected") {
            Some(Format::RmBench)
        } else if has("prompt") && is_str("chosen") && is_str("rejected") && is_str("subset") {
            Some(Format::Rewardbench)
        } else if !has("prompt") && is_str("chosen") && is_str("rejected") {
            let dialogue = row["chosen"].as_str().unwrap_or_default();
            dialogue.contains(hh::HH_ASSISTANT).then_some(Format::Hh)
        } else if (has("prompt") && has("chosen") && has("rejected"))
            || (is_message_list("chosen") && is_message_list("rejected"))
        {
            Some(Format::Preference)
        } else {
            None
        }
    }
}

/// What a data row holds: the comparison (or comparisons) it asks a judge for.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// A labeled pair.
    Preference(Preference),
    /// An unlabeled pair.
    Pair(Pair),
    /// RM-Bench: each chosen style variant against each rejected one (9 preferences).
    StyleGrid(StyleGrid),
    /// RewardBench 2: correct and incorrect completions to one prompt (best-of-n).
    BestOfN(Completions),
}

impl Content {
    /// The texts as row fields: `prompt` with `chosen` and `rejected` (lists of the style
    /// variants for a grid, of the completions for a best-of-n set), or with `response_a` and
    /// `response_b` for an unlabeled pair.
    pub fn fields(&self) -> Map<String, Value> {
        let (prompt, a, b) = match self {
            Content::Preference(p) => (&p.prompt, json!(p.chosen), json!(p.rejected)),
            Content::StyleGrid(g) => (&g.prompt, json!(g.chosen), json!(g.rejected)),
            Content::BestOfN(c) => (&c.prompt, json!(c.chosen), json!(c.rejected)),
            Content::Pair(p) => (&p.prompt, json!(p.response_a), json!(p.response_b)),
        };
        let (a_name, b_name) = match self {
            Content::Pair(_) => ("response_a", "response_b"),
            _ => ("chosen", "rejected"),
        };
        let mut fields = Map::new();
        fields.insert("prompt".into(), json!(prompt));
        fields.insert(a_name.into(), a);
        fields.insert(b_name.into(), b);
        fields
    }
}

/// One row of a data file, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub location: Location,
    pub content: Content,
    /// The benchmark's own grouping: RewardBench `subset`, RM-Bench `domain` (field or file
    /// stem), JudgeBench `source`, the file stem for LLMBar and HH-RLHF; `None` otherwise.
    pub group: Option<String>,
    /// Every field of the row the format did not consume (ids, subsets, model names, ...).
    pub extra: Map<String, Value>,
}

impl Record {
    /// The labeled preferences in this row: one, nine for an RM-Bench grid, each correct
    /// completion over each incorrect one for a best-of-n set, none if unlabeled.
    pub fn preferences(&self) -> Vec<Preference> {
        match &self.content {
            Content::Preference(preference) => vec![preference.clone()],
            Content::Pair(_) => Vec::new(),
            Content::StyleGrid(grid) => grid.preferences(),
            Content::BestOfN(completions) => completions.preferences(),
        }
    }

    /// A passthrough field as text (strings as they are, other values as JSON), or the group
    /// when `field` is `"group"`; `None` if the row has no such field.
    pub fn field(&self, field: &str) -> Option<String> {
        match self.extra.get(field) {
            Some(Value::String(text)) => Some(text.clone()),
            Some(value) => Some(value.to_string()),
            None if field == "group" => self.group.clone(),
            None => None,
        }
    }
}

/// Read every row of `path` (see [`open`]).
pub fn read_preferences(path: impl AsRef<Path>, format: Format) -> Result<Vec<Record>> {
    open(path, format)?.collect()
}

/// Open `path` for reading row by row, within the default [`ReadLimits`]. With
/// [`Format::Auto`] the format is detected from the first row; a file with no rows is then an
/// error.
pub fn open(path: impl AsRef<Path>, format: Format) -> Result<Records> {
    open_with(path, format, ReadLimits::default())
}

/// [`open`] within `limits`: a JSONL line longer than `limits.max_line_bytes` is an error at
/// its `file:line` naming the limit (found while reading, before the line is held whole), and
/// so is a JSON-array file over `limits.max_array_bytes` after gunzipping.
pub fn open_with(path: impl AsRef<Path>, format: Format, limits: ReadLimits) -> Result<Records> {
    let path: Arc<Path> = Arc::from(path.as_ref());
    let stem = file_stem(&path);
    let mut rows = RowReader::open_with(&path, limits)?;
    let pending = rows.next_row().transpose()?;
    let format = match (format, &pending) {
        (Format::Auto, None) => {
            return Err(Error::data(
                &path,
                None,
                None,
                "no rows to detect the format from",
            ));
        }
        (Format::Auto, Some(row)) => Format::detect(&row.fields).ok_or_else(|| {
            row.location.error(
                None,
                "the row fits no known preference format (see `--format`)",
            )
        })?,
        (format, _) => format,
    };
    Ok(Records {
        format,
        stem,
        rows,
        pending,
    })
}

/// The rows of one file as [`Record`]s, in file order.
pub struct Records {
    format: Format,
    stem: String,
    rows: RowReader,
    pending: Option<Row>,
}

impl Records {
    /// The format every row is read as (never `Auto`).
    pub fn format(&self) -> Format {
        self.format
    }
}

impl Iterator for Records {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        let row = match self.pending.take() {
            Some(row) => row,
            None => match self.rows.next_row()? {
                Ok(row) => row,
                Err(error) => return Some(Err(error)),
            },
        };
        Some(parse_row(self.format, &self.stem, row))
    }
}

/// Parse one row as `format`; `stem` (the file's) is the group of formats grouped by file.
fn parse_row(format: Format, stem: &str, mut row: Row) -> Result<Record> {
    let (content, group) = match format {
        Format::Auto => unreachable!("`open` resolves Auto before reading rows"),
        Format::Preference => (preference::parse(&mut row)?, None),
        Format::Rewardbench => {
            let subset = required_str(&row, "subset")?;
            (preference::parse(&mut row)?, Some(subset))
        }
        Format::Rewardbench2 => {
            let subset = required_str(&row, "subset")?;
            (rewardbench2::parse(&mut row)?, Some(subset))
        }
        Format::Pairs => (pairs::parse(&mut row)?, None),
        Format::Hh => (hh::parse(&mut row)?, Some(stem.to_owned())),
        Format::RmBench => {
            let domain = row.peek_str("domain")?.unwrap_or_else(|| stem.to_owned());
            (rm_bench::parse(&mut row)?, Some(domain))
        }
        Format::Llmbar => (llmbar::parse(&mut row)?, Some(stem.to_owned())),
        Format::LlamaFactory => (llama_factory::parse(&mut row)?, None),
        Format::Judgebench => {
            let source = row.peek_str("source")?;
            (judgebench::parse(&mut row)?, source)
        }
    };
    Ok(Record {
        location: row.location,
        content,
        group,
        extra: row.fields,
    })
}

/// A string field that must be present, left in place for the passthrough.
fn required_str(row: &Row, field: &str) -> Result<String> {
    row.peek_str(field)?
        .ok_or_else(|| row.location.error(Some(field), "missing"))
}
