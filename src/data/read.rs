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

/// Bounds on what reading one data file may hold in memory, checked while reading (a line
/// over the limit is refused before it is buffered whole, a gzip bomb is stopped after the
/// limit's worth of decompressed bytes).
///
/// | limit | default |
/// |---|---|
/// | [`max_line_bytes`](Self::max_line_bytes): one line of a JSONL file | 16 MiB |
/// | [`max_array_bytes`](Self::max_array_bytes): a whole JSON-array file, decompressed | 1 GiB |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Longest line of a JSONL file in bytes (without its line ending). Default 16 MiB.
    pub max_line_bytes: usize,
    /// Largest file holding one JSON array, in bytes after gunzipping. Default 1 GiB.
    pub max_array_bytes: u64,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_line_bytes: 16 << 20,
            max_array_bytes: 1 << 30,
        }
    }
}

/// The UTF-8 byte order mark, skipped at the start of a file.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Open a file for reading, gunzipping it if its name ends in `.gz`, without a leading UTF-8
/// byte order mark.
pub(crate) fn open_text(path: &Path) -> Result<Box<dyn BufRead>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let is_gzip = path.extension().is_some_and(|ext| ext == "gz");
    let inner: Box<dyn Read> = if is_gzip {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(file)
    };
    without_bom(inner).map_err(|e| Error::io(path, e))
}

/// `inner` buffered, its first three bytes dropped if they are a byte order mark.
pub(crate) fn without_bom(mut inner: Box<dyn Read>) -> std::io::Result<Box<dyn BufRead>> {
    let mut start = Vec::with_capacity(BOM.len());
    (&mut inner)
        .take(BOM.len() as u64)
        .read_to_end(&mut start)?;
    if start == BOM {
        start.clear();
    }
    Ok(Box::new(BufReader::new(
        std::io::Cursor::new(start).chain(inner),
    )))
}

/// What [`read_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LineRead {
    /// A line, now in the buffer without its `\n` or `\r\n`.
    Line,
    /// The end of the input.
    End,
    /// A line longer than the limit; the buffer holds at most the limit's worth of it.
    TooLong,
}

/// Read one line into `line` (cleared first) as bytes, buffering at most `max` bytes of it.
pub(crate) fn read_line(
    reader: &mut dyn BufRead,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<LineRead> {
    line.clear();
    let mut read_any = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            break;
        }
        read_any = true;
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(newline) => (newline, true),
            None => (available.len(), false),
        };
        // One byte over `max` is allowed while reading: it may be the `\r` of a `\r\n`.
        if line.len() + take > max.saturating_add(1) {
            return Ok(LineRead::TooLong);
        }
        line.extend_from_slice(&available[..take]);
        reader.consume(take + usize::from(done));
        if done {
            break;
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    if line.len() > max {
        return Ok(LineRead::TooLong);
    }
    Ok(if read_any {
        LineRead::Line
    } else {
        LineRead::End
    })
}

/// The JSON objects of a file, JSONL or JSON array, as [`Row`]s.
pub(crate) enum RowReader {
    Lines {
        path: Arc<Path>,
        reader: Box<dyn BufRead>,
        buffer: Vec<u8>,
        line: usize,
        max_line_bytes: usize,
        /// Set after an error that leaves the reader mid-line: the iteration ends there.
        stopped: bool,
    },
    Array {
        path: Arc<Path>,
        elements: std::iter::Enumerate<std::vec::IntoIter<Value>>,
    },
}

impl RowReader {
    /// Open `path`; a file whose first non-blank character (after any byte order mark) is `[`
    /// is one JSON array, read whole within `limits.max_array_bytes`; any other file is JSONL,
    /// read line by line within `limits.max_line_bytes`.
    pub(crate) fn open_with(path: &Arc<Path>, limits: ReadLimits) -> Result<RowReader> {
        let mut reader = open_text(path)?;
        // Skip leading whitespace (without buffering it), counting the lines it ends.
        let mut blank_lines = 0;
        let first = loop {
            let buffer = reader.fill_buf().map_err(|e| Error::io(path, e))?;
            match buffer.iter().position(|b| !b.is_ascii_whitespace()) {
                Some(i) => {
                    let byte = buffer[i];
                    blank_lines += buffer[..i].iter().filter(|&&b| b == b'\n').count();
                    reader.consume(i);
                    break Some(byte);
                }
                None if buffer.is_empty() => break None,
                None => {
                    let n = buffer.len();
                    blank_lines += buffer.iter().filter(|&&b| b == b'\n').count();
                    reader.consume(n);
                }
            }
        };
        if first == Some(b'[') {
            let mut bytes = Vec::new();
            reader
                .take(limits.max_array_bytes.saturating_add(1))
                .read_to_end(&mut bytes)
                .map_err(|e| Error::io(path, e))?;
            if bytes.len() as u64 > limits.max_array_bytes {
                return Err(Error::data(
                    path,
                    None,
                    None,
                    format!(
                        "the JSON array is larger than the limit of {} bytes (decompressed); \
                         split it or write it as JSONL",
                        limits.max_array_bytes
                    ),
                ));
            }
            let elements: Vec<Value> = serde_json::from_slice(&bytes).map_err(|e| {
                Error::data(
                    path,
                    Some(e.line() + blank_lines),
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
                reader,
                buffer: Vec::new(),
                line: blank_lines,
                max_line_bytes: limits.max_line_bytes,
                stopped: false,
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

    /// The next row; `None` at the end of the file (or after an error that ends reading).
    pub(crate) fn next_row(&mut self) -> Option<Result<Row>> {
        match self {
            RowReader::Lines {
                path,
                reader,
                buffer,
                line,
                max_line_bytes,
                stopped,
            } => loop {
                if *stopped {
                    return None;
                }
                let read = read_line(reader.as_mut(), buffer, *max_line_bytes);
                *line += 1;
                let location = Location::line(path.clone(), *line);
                match read {
                    Ok(LineRead::Line) => {}
                    Ok(LineRead::End) => return None,
                    Ok(LineRead::TooLong) => {
                        *stopped = true;
                        return Some(Err(location.error(
                            None,
                            format!("the line is longer than the limit of {max_line_bytes} bytes"),
                        )));
                    }
                    Err(e) => {
                        *stopped = true;
                        return Some(Err(location.error(None, format!("cannot read: {e}"))));
                    }
                }
                let text = match std::str::from_utf8(buffer) {
                    Ok(text) => text,
                    Err(e) => {
                        return Some(Err(location.error(
                            None,
                            format!("invalid UTF-8 at byte {} of the line", e.valid_up_to()),
                        )));
                    }
                };
                if text.trim().is_empty() {
                    continue;
                }
                return Some(match serde_json::from_str::<Value>(text) {
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
