//! Reading the JSON objects of a data file: JSONL or one JSON array, gzipped or not.

use super::row::{Location, Row};
use crate::{Error, Result};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;

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

/// The JSON objects of a file, JSONL or JSON array, as [`Row`]s.
pub(crate) enum RowReader {
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

impl RowReader {
    /// Open `path`; a file whose first non-blank character is `[` is one JSON array.
    pub(crate) fn open(path: &Arc<Path>) -> Result<RowReader> {
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
            Ok(RowReader::Array {
                path: path.clone(),
                elements: elements.into_iter().enumerate(),
            })
        } else {
            Ok(RowReader::Lines {
                path: path.clone(),
                lines: reader.lines(),
                line: 0,
            })
        }
    }

    /// Every remaining row.
    pub(crate) fn read_all(mut self) -> Result<Vec<Row>> {
        let mut rows = Vec::new();
        while let Some(row) = self.next_row() {
            rows.push(row?);
        }
        Ok(rows)
    }

    /// The next row; `None` at the end of the file.
    pub(crate) fn next_row(&mut self) -> Option<Result<Row>> {
        match self {
            RowReader::Lines { path, lines, line } => loop {
                let text = match lines.next()? {
                    Ok(text) => text,
                    Err(e) => return Some(Err(Error::io(&**path, e))),
                };
                *line += 1;
                if text.trim().is_empty() {
                    continue;
                }
                let location = Location::line(path.clone(), *line);
                return Some(match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Object(fields)) => Ok(Row::new(location, fields)),
                    Ok(_) => Err(location.error(None, "the line is not a JSON object")),
                    Err(e) => Err(location.error(None, format!("malformed JSON: {e}"))),
                });
            },
            RowReader::Array { path, elements } => {
                let (index, value) = elements.next()?;
                let location = Location::element(path.clone(), index);
                Some(match value {
                    Value::Object(fields) => Ok(Row::new(location, fields)),
                    _ => Err(location.error(None, "the element is not a JSON object")),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_stem_drops_gz_and_extension() {
        assert_eq!(
            file_stem(Path::new("a/helpful-base.test.jsonl.gz")),
            "helpful-base.test"
        );
        assert_eq!(file_stem(Path::new("chat.json")), "chat");
    }
}
