//! Sharded runs and putting them back together.
//!
//! `gram judge --shard i/N --output part` and `gram eval --shard i/N --verdicts part` process
//! the i-th of N contiguous slices of their rows ([`Shard::rows`]) and write, beside their
//! output `part`, a manifest `part.shard.json` ([`Manifest`]): which slice, of how many rows,
//! and the inputs the run read. The manifest is written after the output is complete, so a
//! part without one is an interrupted run. `gram merge` takes the parts in any order, checks
//! that they are one complete set (the same inputs, every slice exactly once, the row ranges
//! tiling `0..total`), and writes what one process would have: for `judge` the parts' bytes
//! concatenated in slice order; for `eval` the report, scored from every part's verdicts.
//!
//! Eval verdicts are stored as decimal strings (Rust's shortest round-trip form), which read
//! back bit for bit, so a merged report equals the one-process report exactly.

use crate::io::AtomicFile;
use crate::parallel::Shard;
use crate::{Error, Result, Verdict};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::{Path, PathBuf};

/// What a sharded run wrote beside its output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The subcommand: `judge` or `eval`.
    pub command: String,
    pub shard: Shard,
    /// This part's rows are `start..end` of the run's `total` rows.
    pub start: usize,
    pub end: usize,
    pub total: usize,
    /// The settings every part must share (input paths, format, row limit, ...).
    pub inputs: serde_json::Value,
}

impl Manifest {
    /// The manifest file of the output `output`: `output.shard.json`.
    pub fn path_for(output: &Path) -> PathBuf {
        let mut name = output.file_name().unwrap_or_default().to_os_string();
        name.push(".shard.json");
        output.with_file_name(name)
    }

    /// Write it beside `output` (atomically; call once `output` is complete).
    pub fn write(&self, output: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::invalid(format!("shard manifest: {e}")))?;
        crate::io::write_atomic(Self::path_for(output), (text + "\n").as_bytes())
    }

    /// The manifest of the part `output`.
    pub fn read(output: &Path) -> Result<Self> {
        let path = Self::path_for(output);
        let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::data(
                output,
                None,
                None,
                format!(
                    "no shard manifest {} beside it: not the output of a --shard run, or the \
                     run did not finish",
                    path.display()
                ),
            ),
            _ => Error::io(&path, e),
        })?;
        serde_json::from_str(&text)
            .map_err(|e| Error::data(&path, None, None, format!("not a shard manifest: {e}")))
    }
}

/// A complete set of parts, in slice order.
#[derive(Debug)]
pub struct Parts {
    /// Each part's output file and manifest.
    pub parts: Vec<(PathBuf, Manifest)>,
}

impl Parts {
    /// Read the manifests of `outputs` and check they form one complete run: the same command,
    /// inputs, shard count and row total; each slice exactly once; rows tiling `0..total`.
    pub fn open(outputs: &[PathBuf]) -> Result<Self> {
        let mut parts = Vec::with_capacity(outputs.len());
        for output in outputs {
            parts.push((output.clone(), Manifest::read(output)?));
        }
        let Some((first_path, first)) = parts.first().cloned() else {
            return Err(Error::invalid("no parts to merge"));
        };
        for (path, manifest) in &parts[1..] {
            let differs = |what: &str| {
                Error::data(
                    path,
                    None,
                    None,
                    format!(
                        "its {what} differs from {}'s: the parts are not one run",
                        first_path.display()
                    ),
                )
            };
            if manifest.command != first.command {
                return Err(differs("command"));
            }
            if manifest.inputs != first.inputs {
                return Err(differs("inputs"));
            }
            if manifest.shard.count != first.shard.count || manifest.total != first.total {
                return Err(differs("shard count or row total"));
            }
        }
        parts.sort_by_key(|(_, manifest)| manifest.shard.index);
        let count = first.shard.count;
        let given: Vec<String> = parts.iter().map(|(_, m)| m.shard.to_string()).collect();
        for (expected, (path, manifest)) in parts.iter().enumerate() {
            if manifest.shard.index < expected {
                let twice = format!("slice {} is given twice", manifest.shard);
                return Err(Error::data(path, None, None, twice));
            }
            if manifest.shard.index > expected {
                return Err(Error::invalid(format!(
                    "slice {expected}/{count} is missing (given: {})",
                    given.join(", ")
                )));
            }
        }
        if parts.len() != count {
            return Err(Error::invalid(format!(
                "slice {}/{count} is missing (given: {})",
                parts.len(),
                given.join(", ")
            )));
        }
        // The slices' rows must tile 0..total.
        let mut next = 0;
        for (path, manifest) in &parts {
            if manifest.start != next || manifest.end < manifest.start {
                return Err(Error::data(
                    path,
                    None,
                    None,
                    format!(
                        "rows {}..{}, where row {next} should come next",
                        manifest.start, manifest.end
                    ),
                ));
            }
            next = manifest.end;
        }
        if next != first.total {
            return Err(Error::invalid(format!(
                "the slices end at row {next} of {}",
                first.total
            )));
        }
        Ok(Parts { parts })
    }

    /// The subcommand that wrote the parts.
    pub fn command(&self) -> &str {
        &self.parts[0].1.command
    }

    /// The inputs the parts share.
    pub fn inputs(&self) -> &serde_json::Value {
        &self.parts[0].1.inputs
    }

    /// Write the parts' bytes one after another, in slice order, to `output` (atomically).
    /// Returns the bytes written.
    pub fn concatenate(&self, output: &Path) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        for (path, _) in &self.parts {
            bytes.extend(std::fs::read(path).map_err(|e| Error::io(path, e))?);
        }
        let mut file = AtomicFile::create(output)?;
        file.write_all(&bytes)?;
        file.commit()?;
        Ok(bytes)
    }
}

/// Verdicts on the rows `start..` of an evaluation, one line per row: `{"row": k, "verdicts":
/// [[p_a, p_a_forward, p_a_reverse], ...]}` with each number a decimal string.
pub fn write_verdicts(output: &Path, start: usize, rows: &[Vec<Verdict>]) -> Result<()> {
    let mut file = AtomicFile::create(output)?;
    for (k, verdicts) in rows.iter().enumerate() {
        file.write_json_line(&verdict_line(start + k, verdicts))?;
    }
    file.commit()
}

/// One line of a verdicts file: row `row`'s verdicts, each probability a decimal string.
pub fn verdict_line(row: usize, verdicts: &[Verdict]) -> serde_json::Value {
    let verdicts: Vec<[String; 3]> = verdicts
        .iter()
        .map(|v| [v.p_a, v.p_a_forward, v.p_a_reverse].map(|p| p.to_string()))
        .collect();
    json!({"row": row, "verdicts": verdicts})
}

/// The row number and verdicts of a [`verdict_line`], or why `line` is not one.
pub fn parse_verdict_line(line: &str) -> std::result::Result<(usize, Vec<Verdict>), String> {
    #[derive(Deserialize)]
    struct Line {
        row: usize,
        verdicts: Vec<[String; 3]>,
    }
    let line: Line = serde_json::from_str(line).map_err(|e| format!("not a verdict line: {e}"))?;
    let number = |text: &String| {
        text.parse::<f64>()
            .map_err(|_| format!("`{text}` is not a probability"))
    };
    let mut verdicts = Vec::with_capacity(line.verdicts.len());
    for [p_a, forward, reverse] in &line.verdicts {
        verdicts.push(Verdict {
            p_a: number(p_a)?,
            p_a_forward: number(forward)?,
            p_a_reverse: number(reverse)?,
        });
    }
    Ok((line.row, verdicts))
}

/// The rows of a [`write_verdicts`] file, checked to be rows `start..end` in order.
pub fn read_verdicts(path: &Path, start: usize, end: usize) -> Result<Vec<Vec<Verdict>>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut rows = Vec::with_capacity(end.saturating_sub(start));
    for (i, line) in text.lines().enumerate() {
        let at = |message: String| Error::data(path, Some(i + 1), None, message);
        let (row, verdicts) = parse_verdict_line(line).map_err(at)?;
        if row != start + rows.len() {
            return Err(at(format!(
                "row {row} where row {} was expected",
                start + rows.len()
            )));
        }
        rows.push(verdicts);
    }
    if start + rows.len() != end {
        return Err(Error::data(
            path,
            None,
            None,
            format!(
                "{} rows where rows {start}..{end} were expected (truncated?)",
                rows.len()
            ),
        ));
    }
    Ok(rows)
}
