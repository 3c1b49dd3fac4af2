//! Resuming an interrupted evaluation: the verdicts of every call to the judge, appended to a
//! journal beside the run's output as they are computed.
//!
//! The journal `<output>.journal.jsonl` holds a first line `{"journal": "gram eval", "inputs":
//! {...}}` (everything that decides the verdicts: model fingerprint, benchmark files, prompt,
//! dtype, row range), then one line per judged record in the verdicts-file format
//! ([`crate::merge::verdict_line`]; decimal strings, which read back bit for bit). Each call's
//! lines are written and synced to disk together, so a kill loses at most the call in flight;
//! a last line cut short (no newline) is dropped when the journal is read.
//!
//! A run that resumes ([`Journal::resume`]) checks the inputs are its own, judges only the
//! records after the last one recorded, and scores all of them as one run would. The journal is
//! removed once the run's outputs are written ([`Journal::finish`]), so its presence always
//! means an unfinished run.

use crate::merge::{parse_verdict_line, verdict_line};
use crate::{Error, Result, Verdict};
use serde_json::{Value, json};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The journal of one evaluation, open for appending.
pub struct Journal {
    path: PathBuf,
    file: std::fs::File,
    /// Row number of the next record to append.
    next_row: usize,
}

impl Journal {
    /// The journal of a run whose output is `output`: `output.journal.jsonl`.
    pub fn path_for(output: &Path) -> PathBuf {
        let mut name = output.file_name().unwrap_or_default().to_os_string();
        name.push(".journal.jsonl");
        output.with_file_name(name)
    }

    /// Start the journal `path` of a run over rows `start..` with `inputs`. An existing journal
    /// is an interrupted run's: refused, so hours of verdicts are never overwritten by accident.
    pub fn create(path: &Path, inputs: &Value, start: usize) -> Result<Journal> {
        if path.exists() {
            return Err(Error::invalid(format!(
                "{} holds the verdicts of an interrupted run: add --resume to continue it, or \
                 delete it to start over",
                path.display()
            )));
        }
        let mut file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
        let header = json!({"journal": "gram eval", "inputs": inputs});
        writeln!(file, "{header}")
            .and_then(|()| file.sync_data())
            .map_err(|e| Error::io(path, e))?;
        Ok(Journal {
            path: path.to_path_buf(),
            file,
            next_row: start,
        })
    }

    /// Reopen the journal `path` of an interrupted run over rows `start..`: its inputs must equal
    /// `inputs`. Returns the journal, open to append after its last whole line, and the verdicts
    /// of the records it holds (rows `start..start + n`, in order).
    pub fn resume(
        path: &Path,
        inputs: &Value,
        start: usize,
    ) -> Result<(Journal, Vec<Vec<Verdict>>)> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::invalid(format!(
                    "--resume: no journal {} (start without --resume)",
                    path.display()
                )));
            }
            Err(e) => return Err(Error::io(path, e)),
        };
        // Only whole lines count: a kill can cut the last one short.
        let whole = text.rfind('\n').map_or(0, |i| i + 1);
        let mut lines = text[..whole].lines().enumerate();
        let at = |i: usize, message: String| Error::data(path, Some(i + 1), None, message);
        let Some((_, first)) = lines.next() else {
            return Err(Error::data(
                path,
                None,
                None,
                "an empty journal: delete it to start over",
            ));
        };
        let header: Value =
            serde_json::from_str(first).map_err(|e| at(0, format!("not a journal header: {e}")))?;
        if header.get("journal") != Some(&json!("gram eval")) {
            return Err(at(0, "not a journal of `gram eval`".into()));
        }
        let recorded = header.get("inputs").unwrap_or(&Value::Null);
        if let Some(why) = difference(recorded, inputs) {
            return Err(Error::data(
                path,
                Some(1),
                Some("inputs"),
                format!(
                    "--resume: this run differs from the interrupted one in {why}; run it as \
                     before, or delete the journal to start over"
                ),
            ));
        }
        let mut rows = Vec::new();
        for (i, line) in lines {
            let (row, verdicts) = parse_verdict_line(line).map_err(|m| at(i, m))?;
            if row != start + rows.len() {
                let expected = start + rows.len();
                return Err(at(
                    i,
                    format!("row {row} where row {expected} was expected"),
                ));
            }
            rows.push(verdicts);
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        file.set_len(whole as u64)
            .and_then(|()| file.seek(SeekFrom::End(0)).map(|_| ()))
            .map_err(|e| Error::io(path, e))?;
        let next_row = start + rows.len();
        let journal = Journal {
            path: path.to_path_buf(),
            file,
            next_row,
        };
        Ok((journal, rows))
    }

    /// Record the verdicts of the next records, one line each, synced to disk before returning.
    pub fn append(&mut self, records: &[Vec<Verdict>]) -> Result<()> {
        let mut text = String::new();
        for verdicts in records {
            text += &verdict_line(self.next_row, verdicts).to_string();
            text.push('\n');
            self.next_row += 1;
        }
        (self.file.write_all(text.as_bytes()))
            .and_then(|()| self.file.sync_data())
            .map_err(|e| Error::io(&self.path, e))
    }

    /// The run's outputs are written: remove the journal.
    pub fn finish(self) -> Result<()> {
        std::fs::remove_file(&self.path).map_err(|e| Error::io(&self.path, e))
    }
}

/// The first input (`key: recorded → now`) in which `now` differs from `recorded`, if any.
fn difference(recorded: &Value, now: &Value) -> Option<String> {
    if recorded == now {
        return None;
    }
    let (Value::Object(old), Value::Object(new)) = (recorded, now) else {
        return Some(format!("its inputs ({recorded} → {now})"));
    };
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter().find_map(|key| {
        let (a, b) = (old.get(key), new.get(key));
        (a != b).then(|| {
            let show = |v: Option<&Value>| v.map_or("(none)".to_owned(), short);
            format!("`{key}` ({} → {})", show(a), show(b))
        })
    })
}

/// `value` as JSON text, long texts (a prompt template) cut to their first 60 characters.
fn short(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}
