//! Reading the preference data people already have.
//!
//! One reader handles every format we know; it detects the format from the first row (or takes
//! it from `--format`) and then holds every row of the file to that format. A file is JSONL
//! (one object per line, blank lines skipped) or one JSON array of objects; a `.gz` suffix means
//! gzip. Each row becomes a [`Record`]: the [`Example`] (a labeled [`Preference`], an unlabeled
//! [`Pair`], or an RM-Bench [`StyleGrid`]), the benchmark's own group (subset, domain, source),
//! and every field we did not consume, passed through untouched.
//!
//! | [`Format`] | row |
//! |---|---|
//! | `preference` | `prompt`, `chosen`, `rejected`: strings, or chat lists `[{role, content}]` |
//! | `pairs` | `prompt`, `response_a`, `response_b`, optional `label` `"A"`/`"B"` |
//! | `hh` | HH-RLHF: `chosen`, `rejected` whole `\n\nHuman: … \n\nAssistant: …` dialogues |
//! | `rm-bench` | `prompt`, `chosen[3]`, `rejected[3]` (concise, detailed, detailed markdown) |
//! | `llmbar` | `input`, `output_1`, `output_2`, `label` 1/2 |
//! | `llama-factory` | `conversations[{from, value}]`, `chosen{from, value}`, `rejected{from, value}` |
//! | `judgebench` | `question`, `response_A`, `response_B`, `label` `"A>B"`/`"B>A"`, `source` |
//! | `rewardbench` | `prompt`, `chosen`, `rejected`, `subset` |
//!
//! Errors name the file, the row and the field: rows of a JSONL file by their 1-based line,
//! elements of a JSON array by their 0-based index (the message says which).

use crate::{Error, Pair, Preference, Result};
use serde_json::{Map, Value};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;

/// The number of style variants per response in RM-Bench: concise, detailed, detailed markdown.
pub const RM_BENCH_STYLES: usize = 3;

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
        } else if has("prompt") && is_string_list("chosen") && is_string_list("rejected") {
            Some(Format::RmBench)
        } else if has("prompt") && is_str("chosen") && is_str("rejected") && is_str("subset") {
            Some(Format::Rewardbench)
        } else if !has("prompt") && is_str("chosen") && is_str("rejected") {
            let dialogue = row["chosen"].as_str().unwrap_or_default();
            dialogue.contains(HH_ASSISTANT).then_some(Format::Hh)
        } else if (has("prompt") && has("chosen") && has("rejected"))
            || (is_message_list("chosen") && is_message_list("rejected"))
        {
            Some(Format::Preference)
        } else {
            None
        }
    }
}

/// Where a row is: its file and its row number, as errors report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub path: Arc<Path>,
    /// The 1-based line of a JSONL file, or the 0-based element index of a JSON array.
    pub row: usize,
    /// Whether `row` is a JSON array element index rather than a line number.
    pub element: bool,
}

impl Location {
    /// A data error at this row, naming `field`.
    pub fn error(&self, field: Option<&str>, message: impl Into<String>) -> Error {
        let mut message = message.into();
        if self.element {
            message.push_str(&format!(
                " (JSON array element {}, counting from 0)",
                self.row
            ));
        }
        Error::data(&self.path, Some(self.row), field, message)
    }
}

/// What a row holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Example {
    /// A labeled pair.
    Preference(Preference),
    /// An unlabeled pair.
    Pair(Pair),
    /// RM-Bench: each chosen style variant against each rejected one (9 preferences).
    StyleGrid(StyleGrid),
}

/// One RM-Bench prompt: [`RM_BENCH_STYLES`] style variants of the chosen and of the rejected
/// response, in the order concise, detailed plain, detailed markdown.
#[derive(Debug, Clone, PartialEq)]
pub struct StyleGrid {
    pub prompt: String,
    pub chosen: [String; RM_BENCH_STYLES],
    pub rejected: [String; RM_BENCH_STYLES],
}

impl StyleGrid {
    /// The preference chosen style `i` over rejected style `j`.
    pub fn preference(&self, i: usize, j: usize) -> Preference {
        Preference {
            prompt: self.prompt.clone(),
            chosen: self.chosen[i].clone(),
            rejected: self.rejected[j].clone(),
        }
    }
}

/// One row of a data file.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub location: Location,
    pub example: Example,
    /// The benchmark's own grouping: RewardBench `subset`, RM-Bench `domain` (field or file
    /// stem), JudgeBench `source`, the file stem for LLMBar and HH-RLHF; `None` otherwise.
    pub group: Option<String>,
    /// Every field of the row the format did not consume (ids, subsets, model names, ...).
    pub extra: Map<String, Value>,
}

impl Record {
    /// The labeled preferences in this row: one, nine for an RM-Bench grid, none if unlabeled.
    pub fn preferences(&self) -> Vec<Preference> {
        match &self.example {
            Example::Preference(preference) => vec![preference.clone()],
            Example::Pair(_) => Vec::new(),
            Example::StyleGrid(grid) => (0..RM_BENCH_STYLES)
                .flat_map(|i| (0..RM_BENCH_STYLES).map(move |j| (i, j)))
                .map(|(i, j)| grid.preference(i, j))
                .collect(),
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

/// Open `path` for reading row by row. With [`Format::Auto`] the format is detected from the
/// first row; a file with no rows is then an error.
pub fn open(path: impl AsRef<Path>, format: Format) -> Result<Records> {
    let path: Arc<Path> = Arc::from(path.as_ref());
    let stem = file_stem(&path);
    let mut rows = Rows::open(&path)?;
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
        (Format::Auto, Some((location, row))) => Format::detect(row).ok_or_else(|| {
            location.error(
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
    rows: Rows,
    pending: Option<(Location, Map<String, Value>)>,
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
        let (location, row) = match self.pending.take() {
            Some(row) => row,
            None => match self.rows.next_row()? {
                Ok(row) => row,
                Err(error) => return Some(Err(error)),
            },
        };
        Some(parse_row(
            self.format,
            &self.stem,
            Row {
                location,
                fields: row,
            },
        ))
    }
}

/// The file name without `.gz` and its data extension: `helpful-base.test.jsonl.gz` ->
/// `helpful-base.test`.
pub fn file_stem(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    match name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem.to_owned(),
        _ => name.to_owned(),
    }
}

/// Open a file for reading, gunzipping it if its name ends in `.gz`.
pub(crate) fn open_text(path: &Path) -> Result<Box<dyn BufRead>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let is_gzip = path.extension().is_some_and(|ext| ext == "gz");
    Ok(if is_gzip {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::new(file))
    })
}

/// The JSON objects of a file, JSONL or JSON array, with their locations.
pub(crate) enum Rows {
    Lines {
        path: Arc<Path>,
        lines: std::io::Lines<Box<dyn BufRead>>,
        line: usize,
    },
    Array {
        path: Arc<Path>,
        elements: std::iter::Enumerate<std::vec::IntoIter<Value>>,
    },
}

impl Rows {
    /// Open `path`; a file whose first non-blank character is `[` is one JSON array.
    pub(crate) fn open(path: &Arc<Path>) -> Result<Rows> {
        let mut reader = open_text(path)?;
        let first = loop {
            let buffer = reader.fill_buf().map_err(|e| Error::io(path, e))?;
            match buffer.iter().position(|b| !b.is_ascii_whitespace()) {
                Some(i) => break Some(buffer[i]),
                None if buffer.is_empty() => break None,
                None => {
                    let n = buffer.len();
                    reader.consume(n);
                }
            }
        };
        if first == Some(b'[') {
            let mut text = String::new();
            reader
                .read_to_string(&mut text)
                .map_err(|e| Error::io(path, e))?;
            let elements: Vec<Value> = serde_json::from_str(&text).map_err(|e| {
                Error::data(
                    path,
                    Some(e.line()),
                    None,
                    format!("not a valid JSON array: {e}"),
                )
            })?;
            Ok(Rows::Array {
                path: path.clone(),
                elements: elements.into_iter().enumerate(),
            })
        } else {
            Ok(Rows::Lines {
                path: path.clone(),
                lines: reader.lines(),
                line: 0,
            })
        }
    }

    /// The next object and where it is; `None` at the end of the file.
    pub(crate) fn next_row(&mut self) -> Option<Result<(Location, Map<String, Value>)>> {
        match self {
            Rows::Lines { path, lines, line } => loop {
                let text = match lines.next()? {
                    Ok(text) => text,
                    Err(e) => return Some(Err(Error::io(&**path, e))),
                };
                *line += 1;
                if text.trim().is_empty() {
                    continue;
                }
                let location = Location {
                    path: path.clone(),
                    row: *line,
                    element: false,
                };
                return Some(match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Object(row)) => Ok((location, row)),
                    Ok(_) => Err(location.error(None, "the line is not a JSON object")),
                    Err(e) => Err(location.error(None, format!("malformed JSON: {e}"))),
                });
            },
            Rows::Array { path, elements } => {
                let (index, value) = elements.next()?;
                let location = Location {
                    path: path.clone(),
                    row: index,
                    element: true,
                };
                Some(match value {
                    Value::Object(row) => Ok((location, row)),
                    _ => Err(location.error(None, "the element is not a JSON object")),
                })
            }
        }
    }
}

/// A row being taken apart: fields are removed as they are consumed, the rest pass through.
pub(crate) struct Row {
    pub(crate) location: Location,
    pub(crate) fields: Map<String, Value>,
}

impl Row {
    /// Remove and return a field that must be present.
    pub(crate) fn take(&mut self, field: &str) -> Result<Value> {
        self.fields
            .remove(field)
            .ok_or_else(|| self.location.error(Some(field), "missing"))
    }

    /// Remove a field that must be a string.
    pub(crate) fn take_str(&mut self, field: &str) -> Result<String> {
        match self.take(field)? {
            Value::String(text) => Ok(text),
            other => Err(self.wrong_type(field, "a string", &other)),
        }
    }

    /// Remove a field that must be a non-blank string (a prompt or a response).
    pub(crate) fn take_text(&mut self, field: &str) -> Result<String> {
        let text = self.take_str(field)?;
        self.non_blank(field, text)
    }

    /// `text`, or an error on `field` if it is empty or only whitespace.
    pub(crate) fn non_blank(&self, field: &str, text: String) -> Result<String> {
        if text.trim().is_empty() {
            Err(self.location.error(Some(field), "empty text"))
        } else {
            Ok(text)
        }
    }

    /// A string field, left in place for the passthrough; `None` if absent.
    pub(crate) fn peek_str(&self, field: &str) -> Result<Option<String>> {
        match self.fields.get(field) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(other) => Err(self.wrong_type(field, "a string", other)),
        }
    }

    pub(crate) fn wrong_type(&self, field: &str, expected: &str, found: &Value) -> Error {
        let found = match found {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        };
        self.location
            .error(Some(field), format!("expected {expected}, found {found}"))
    }
}

fn parse_row(format: Format, stem: &str, mut row: Row) -> Result<Record> {
    let (example, group) = match format {
        Format::Auto => unreachable!("`open` resolves Auto before reading rows"),
        Format::Preference => (preference_row(&mut row)?, None),
        Format::Rewardbench => {
            let subset = row.peek_str("subset")?;
            let subset = subset.ok_or_else(|| row.location.error(Some("subset"), "missing"))?;
            (preference_row(&mut row)?, Some(subset))
        }
        Format::Pairs => (pairs_row(&mut row)?, None),
        Format::Hh => (hh_row(&mut row)?, Some(stem.to_owned())),
        Format::RmBench => {
            let domain = row.peek_str("domain")?.unwrap_or_else(|| stem.to_owned());
            (rm_bench_row(&mut row)?, Some(domain))
        }
        Format::Llmbar => (llmbar_row(&mut row)?, Some(stem.to_owned())),
        Format::LlamaFactory => (llama_factory_row(&mut row)?, None),
        Format::Judgebench => {
            let source = row.peek_str("source")?;
            (judgebench_row(&mut row)?, source)
        }
    };
    Ok(Record {
        location: row.location,
        example,
        group,
        extra: row.fields,
    })
}

/// A speaker in a dialogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    /// Accepts the OpenAI (`user`, `assistant`) and ShareGPT (`human`, `gpt`) names.
    fn parse(name: &str) -> Option<Role> {
        match name {
            "system" => Some(Role::System),
            "user" | "human" => Some(Role::User),
            "assistant" | "gpt" => Some(Role::Assistant),
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Role::System => "System",
            Role::User => "Human",
            Role::Assistant => "Assistant",
        }
    }
}

/// A dialogue as the judge reads it: a lone user turn is its bare text; anything longer is a
/// transcript of `Human: …`, `Assistant: …` (and `System: …`) turns separated by blank lines.
fn render_transcript(turns: &[(Role, String)]) -> String {
    match turns {
        [(Role::User, text)] => text.trim().to_owned(),
        _ => turns
            .iter()
            .map(|(role, text)| format!("{}: {}", role.label(), text.trim()))
            .collect::<Vec<_>>()
            .join("\n\n"),
    }
}

/// A chat message list `[{role, content}]` (or ShareGPT `[{from, value}]`) as turns.
fn parse_messages(row: &Row, field: &str, messages: &[Value]) -> Result<Vec<(Role, String)>> {
    messages
        .iter()
        .enumerate()
        .map(|(i, message)| {
            let name = format!("{field}[{i}]");
            let message = message
                .as_object()
                .ok_or_else(|| row.wrong_type(&name, "a message object", message))?;
            let (role_key, text_key) = if message.contains_key("from") {
                ("from", "value")
            } else {
                ("role", "content")
            };
            let role = match message.get(role_key) {
                Some(Value::String(role)) => Role::parse(role).ok_or_else(|| {
                    row.location.error(
                        Some(&format!("{name}.{role_key}")),
                        format!("unknown role `{role}`"),
                    )
                })?,
                Some(other) => {
                    return Err(row.wrong_type(&format!("{name}.{role_key}"), "a string", other));
                }
                None => {
                    return Err(row
                        .location
                        .error(Some(&format!("{name}.{role_key}")), "missing"));
                }
            };
            let text = match message.get(text_key) {
                Some(Value::String(text)) => text.clone(),
                Some(other) => {
                    return Err(row.wrong_type(&format!("{name}.{text_key}"), "a string", other));
                }
                None => {
                    return Err(row
                        .location
                        .error(Some(&format!("{name}.{text_key}")), "missing"));
                }
            };
            Ok((role, text))
        })
        .collect()
}

/// `prompt`, `chosen`, `rejected`: strings, or chat lists sharing all but a final assistant turn.
/// With chat lists the shared messages are the prompt; a `prompt` field is then only needed
/// (and only read) when the lists hold nothing but the final assistant message.
fn preference_row(row: &mut Row) -> Result<Example> {
    let chosen = row.take("chosen")?;
    let rejected = row.take("rejected")?;
    let preference = match (chosen, rejected) {
        (Value::String(chosen), Value::String(rejected)) => Preference {
            prompt: row.take_text("prompt")?,
            chosen: row.non_blank("chosen", chosen)?,
            rejected: row.non_blank("rejected", rejected)?,
        },
        (Value::Array(chosen), Value::Array(rejected)) => {
            let mut chosen = parse_messages(row, "chosen", &chosen)?;
            let mut rejected = parse_messages(row, "rejected", &rejected)?;
            let chosen_reply = final_assistant_turn(row, "chosen", &mut chosen)?;
            let rejected_reply = final_assistant_turn(row, "rejected", &mut rejected)?;
            if chosen != rejected {
                return Err(row.location.error(
                    Some("rejected"),
                    "chosen and rejected conversations differ before their last assistant message",
                ));
            }
            let prompt = match (chosen.is_empty(), row.fields.contains_key("prompt")) {
                (false, true) => {
                    row.take_str("prompt")?;
                    render_transcript(&chosen)
                }
                (false, false) => render_transcript(&chosen),
                (true, _) => row.take_text("prompt")?,
            };
            let prompt = row.non_blank("prompt", prompt)?;
            Preference {
                prompt,
                chosen: chosen_reply,
                rejected: rejected_reply,
            }
        }
        (Value::String(_), other) => {
            return Err(row.wrong_type("rejected", "a string like `chosen`", &other));
        }
        (Value::Array(_), other) => {
            return Err(row.wrong_type("rejected", "a message list like `chosen`", &other));
        }
        (other, _) => return Err(row.wrong_type("chosen", "a string or a message list", &other)),
    };
    Ok(Example::Preference(preference))
}

/// Pop the last turn of a conversation, which must be a non-blank assistant message.
fn final_assistant_turn(row: &Row, field: &str, turns: &mut Vec<(Role, String)>) -> Result<String> {
    match turns.pop() {
        Some((Role::Assistant, text)) => row.non_blank(field, text),
        Some(_) => Err(row
            .location
            .error(Some(field), "the last message is not the assistant's")),
        None => Err(row.location.error(Some(field), "empty conversation")),
    }
}

/// `prompt`, `response_a`, `response_b`, optional `label` "A"/"B".
fn pairs_row(row: &mut Row) -> Result<Example> {
    let pair = Pair {
        prompt: row.take_text("prompt")?,
        response_a: row.take_text("response_a")?,
        response_b: row.take_text("response_b")?,
    };
    let label = match row.fields.remove("label") {
        None | Some(Value::Null) => return Ok(Example::Pair(pair)),
        Some(Value::String(label)) => label,
        Some(other) => return Err(row.wrong_type("label", "\"A\" or \"B\"", &other)),
    };
    let (chosen, rejected) = match label.trim() {
        "A" | "a" => (pair.response_a, pair.response_b),
        "B" | "b" => (pair.response_b, pair.response_a),
        _ => {
            return Err(row.location.error(
                Some("label"),
                format!("expected \"A\" or \"B\", found {label:?}"),
            ));
        }
    };
    Ok(Example::Preference(Preference {
        prompt: pair.prompt,
        chosen,
        rejected,
    }))
}

const HH_HUMAN: &str = "\n\nHuman:";
const HH_ASSISTANT: &str = "\n\nAssistant:";

/// HH-RLHF: two whole dialogues that share everything before the final assistant turn.
///
/// The split point is the last `\n\nAssistant:` marker inside the longest common prefix of the
/// two dialogues: the prompt is everything before it (rendered as a transcript), each response
/// the text after it. This holds where a response itself contains a further marker (a few rows
/// do). An empty final assistant turn is kept: in HH-RLHF saying nothing is a labeled outcome.
fn hh_row(row: &mut Row) -> Result<Example> {
    let chosen = row.take_str("chosen")?;
    let rejected = row.take_str("rejected")?;
    let common = chosen
        .char_indices()
        .zip(rejected.chars())
        .find(|((_, a), b)| a != b)
        .map_or(chosen.len().min(rejected.len()), |((i, _), _)| i);
    let split = chosen[..common].rfind(HH_ASSISTANT).ok_or_else(|| {
        row.location.error(
            Some("chosen"),
            "the dialogues share no prefix ending in an `Assistant:` turn",
        )
    })?;
    let reply = |dialogue: &str| dialogue[split + HH_ASSISTANT.len()..].trim().to_owned();
    let turns = hh_turns(&chosen[..split]);
    if turns.is_empty() {
        return Err(row
            .location
            .error(Some("chosen"), "no `Human:` turn before the final answer"));
    }
    Ok(Example::Preference(Preference {
        prompt: render_transcript(&turns),
        chosen: reply(&chosen),
        rejected: reply(&rejected),
    }))
}

/// Split `\n\nHuman: … \n\nAssistant: …` text into turns (text before the first marker is
/// dropped; HH dialogues start with a marker).
fn hh_turns(dialogue: &str) -> Vec<(Role, String)> {
    let mut turns = Vec::new();
    let mut rest = dialogue;
    let next_marker = |text: &str| {
        [(HH_HUMAN, Role::User), (HH_ASSISTANT, Role::Assistant)]
            .into_iter()
            .filter_map(|(marker, role)| text.find(marker).map(|at| (at, marker, role)))
            .min_by_key(|(at, _, _)| *at)
    };
    let mut current = next_marker(rest);
    while let Some((at, marker, role)) = current {
        rest = &rest[at + marker.len()..];
        current = next_marker(rest);
        let end = current.map_or(rest.len(), |(next, _, _)| next);
        turns.push((role, rest[..end].trim().to_owned()));
    }
    turns
}

/// RM-Bench: `prompt`, and [`RM_BENCH_STYLES`] variants each of `chosen` and `rejected`.
fn rm_bench_row(row: &mut Row) -> Result<Example> {
    let prompt = row.take_text("prompt")?;
    let mut variants = |field: &str| -> Result<[String; RM_BENCH_STYLES]> {
        let value = row.take(field)?;
        let items = value
            .as_array()
            .ok_or_else(|| row.wrong_type(field, "a list of 3 strings", &value))?;
        if items.len() != RM_BENCH_STYLES {
            return Err(row.location.error(
                Some(field),
                format!(
                    "expected {RM_BENCH_STYLES} style variants, found {}",
                    items.len()
                ),
            ));
        }
        let mut texts: [String; RM_BENCH_STYLES] = Default::default();
        for (i, item) in items.iter().enumerate() {
            let name = format!("{field}[{i}]");
            let text = item
                .as_str()
                .ok_or_else(|| row.wrong_type(&name, "a string", item))?;
            texts[i] = row.non_blank(&name, text.to_owned())?;
        }
        Ok(texts)
    };
    let chosen = variants("chosen")?;
    let rejected = variants("rejected")?;
    Ok(Example::StyleGrid(StyleGrid {
        prompt,
        chosen,
        rejected,
    }))
}

/// LLMBar: `input`, `output_1`, `output_2`, `label` 1 or 2 (number or string).
fn llmbar_row(row: &mut Row) -> Result<Example> {
    let prompt = row.take_text("input")?;
    let output_1 = row.take_text("output_1")?;
    let output_2 = row.take_text("output_2")?;
    let label = row.take("label")?;
    let label = match &label {
        Value::String(text) => text.trim().to_owned(),
        Value::Number(number) => number.to_string(),
        other => return Err(row.wrong_type("label", "1 or 2", other)),
    };
    let (chosen, rejected) = match label.as_str() {
        "1" => (output_1, output_2),
        "2" => (output_2, output_1),
        _ => {
            return Err(row
                .location
                .error(Some("label"), format!("expected 1 or 2, found {label}")));
        }
    };
    Ok(Example::Preference(Preference {
        prompt,
        chosen,
        rejected,
    }))
}

/// LLaMA-Factory: `conversations[{from, value}]` (optional `system`), `chosen`/`rejected`
/// `{from, value}` answers to the last turn.
fn llama_factory_row(row: &mut Row) -> Result<Example> {
    let conversations = row.take("conversations")?;
    let messages = conversations
        .as_array()
        .ok_or_else(|| row.wrong_type("conversations", "a message list", &conversations))?;
    let mut turns = parse_messages(row, "conversations", messages)?;
    if turns.is_empty() {
        return Err(row
            .location
            .error(Some("conversations"), "empty conversation"));
    }
    if row.fields.contains_key("system") {
        let system = row.take_str("system")?;
        if !system.trim().is_empty() {
            turns.insert(0, (Role::System, system));
        }
    }
    let mut answer = |field: &str| -> Result<String> {
        let value = row.take(field)?;
        let message = std::slice::from_ref(&value);
        let mut turns = parse_messages(row, field, message)?;
        final_assistant_turn(row, field, &mut turns)
    };
    let chosen = answer("chosen")?;
    let rejected = answer("rejected")?;
    Ok(Example::Preference(Preference {
        prompt: render_transcript(&turns),
        chosen,
        rejected,
    }))
}

/// JudgeBench: `question`, `response_A`, `response_B`, `label` "A>B" or "B>A".
fn judgebench_row(row: &mut Row) -> Result<Example> {
    let prompt = row.take_text("question")?;
    let response_a = row.take_text("response_A")?;
    let response_b = row.take_text("response_B")?;
    let label = row.take_str("label")?;
    let (chosen, rejected) = match label.trim() {
        "A>B" => (response_a, response_b),
        "B>A" => (response_b, response_a),
        _ => {
            return Err(row.location.error(
                Some("label"),
                format!("expected \"A>B\" or \"B>A\", found {label:?}"),
            ));
        }
    };
    Ok(Example::Preference(Preference {
        prompt,
        chosen,
        rejected,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hh_turns_split_on_markers() {
        let turns = hh_turns("\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how are you?");
        assert_eq!(
            turns,
            vec![
                (Role::User, "hi".to_owned()),
                (Role::Assistant, "hello".to_owned()),
                (Role::User, "how are you?".to_owned())
            ]
        );
        assert_eq!(render_transcript(&turns[..1]), "hi");
        assert_eq!(
            render_transcript(&turns),
            "Human: hi\n\nAssistant: hello\n\nHuman: how are you?"
        );
    }

    #[test]
    fn file_stem_drops_gz_and_extension() {
        assert_eq!(
            file_stem(Path::new("a/helpful-base.test.jsonl.gz")),
            "helpful-base.test"
        );
        assert_eq!(file_stem(Path::new("chat.json")), "chat");
    }
}
