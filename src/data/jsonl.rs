//! JSON-lines rows in, JSON-lines rows out: the plumbing of `gram rank` and `gram reward`,
//! whose rows pass through whole with fields added.

use super::read::{LineRead, ReadLimits, read_line, without_bom};
use super::row::{Location, Row};
use crate::{Error, Result};
use serde_json::{Map, Value};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

/// Read JSON-lines rows (blank lines skipped, lines numbered from 1, a leading byte order mark
/// skipped); each must be a JSON object. `source` names the text in errors.
pub fn read_rows(source: &Path, text: &str) -> Result<Vec<Row>> {
    let source: Arc<Path> = Arc::from(source);
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            let location = Location::line(source.clone(), index + 1);
            match serde_json::from_str(line) {
                Ok(Value::Object(fields)) => Ok(Row::new(location, fields)),
                Ok(_) => Err(location.error(None, "a row must be a JSON object")),
                Err(e) => Err(location.error(None, format!("invalid JSON: {e}"))),
            }
        })
        .collect()
}

/// Read JSON-lines rows from `input` (`-` = stdin), transform them `rows_per_call` at a time,
/// and write the results as JSON lines to `output` (default stdout) as each chunk finishes.
///
/// The input is read line by line as bytes within the default [`ReadLimits`] (a line over
/// 16 MiB, or invalid UTF-8, is an error naming its line); a leading byte order mark is skipped.
pub fn process_rows(
    input: &Path,
    output: Option<&Path>,
    rows_per_call: usize,
    mut transform: impl FnMut(&[Row]) -> Result<Vec<Map<String, Value>>>,
) -> Result<()> {
    if rows_per_call == 0 {
        return Err(Error::invalid("--rows-per-call must be at least 1"));
    }
    let rows = read_input(input, ReadLimits::default())?;
    let output_name = output.unwrap_or(Path::new("<stdout>"));
    let mut writer: Box<dyn Write> = match output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| Error::io(path, e))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    for chunk in rows.chunks(rows_per_call) {
        for row in transform(chunk)? {
            let line = serde_json::to_string(&row).expect("JSON values serialise");
            writeln!(writer, "{line}").map_err(|e| Error::io(output_name, e))?;
        }
        writer.flush().map_err(|e| Error::io(output_name, e))?;
    }
    Ok(())
}

/// Every row of `input` (`-` = stdin), read line by line within `limits`.
fn read_input(input: &Path, limits: ReadLimits) -> Result<Vec<Row>> {
    let source: Arc<Path> = Arc::from(input);
    let name = if input == Path::new("-") {
        Path::new("<stdin>")
    } else {
        input
    };
    let raw: Box<dyn Read> = if input == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(input).map_err(|e| Error::io(input, e))?)
    };
    let mut reader = without_bom(raw).map_err(|e| Error::io(name, e))?;
    let (mut rows, mut line, mut buffer) = (Vec::new(), 0, Vec::new());
    loop {
        let read = read_line(reader.as_mut(), &mut buffer, limits.max_line_bytes);
        line += 1;
        let location = Location::line(source.clone(), line);
        match read.map_err(|e| Error::io(name, e))? {
            LineRead::End => return Ok(rows),
            LineRead::TooLong => {
                return Err(location.error(
                    None,
                    format!(
                        "the line is longer than the limit of {} bytes",
                        limits.max_line_bytes
                    ),
                ));
            }
            LineRead::Line => {}
        }
        let text = std::str::from_utf8(&buffer).map_err(|e| {
            location.error(
                None,
                format!("invalid UTF-8 at byte {} of the line", e.valid_up_to()),
            )
        })?;
        if text.trim().is_empty() {
            continue;
        }
        rows.push(match serde_json::from_str(text) {
            Ok(Value::Object(fields)) => Row::new(location, fields),
            Ok(_) => return Err(location.error(None, "a row must be a JSON object")),
            Err(e) => return Err(location.error(None, format!("invalid JSON: {e}"))),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_name_the_bad_line_and_field() {
        let rows = read_rows(
            Path::new("in.jsonl"),
            "{\"prompt\":\"p\",\"responses\":[\"a\"]}\n\n{\"prompt\":1}\n",
        )
        .unwrap();
        assert_eq!(rows[1].location.row, 3);
        let err = rows[1].prompt("prompt").unwrap_err().to_string();
        assert_eq!(
            err,
            "in.jsonl:3: field `prompt`: expected a string or a list of chat messages [{\"role\", \"content\"}], found a number"
        );
        let err = read_rows(Path::new("in.jsonl"), "[1]")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("in.jsonl:1:"), "{err}");
    }

    #[test]
    fn request_rows_are_numbered_from_one() {
        let row = Row::new(Location::request("rows", 0), Map::new());
        let err = row.responses("responses").unwrap_err().to_string();
        assert_eq!(err, "rows:1: field `responses`: is missing");
    }
}
