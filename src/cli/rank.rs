//! `gram rank`: rank each row's responses with the judge.
//!
//! Input: JSON lines `{"prompt", "responses": [...]}` (other fields pass through). Output: each
//! row plus `best`, `order`, `scores`, `comparisons`, `forward_passes` (see [`gram::rank`]).

use super::common::JudgeArgs;
use gram::rank::{Row, Strategy, rank_rows, read_rows};
use gram::{Error, Result};
use serde_json::{Map, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub judge: JudgeArgs,
    /// JSON-lines input; `-` reads standard input.
    pub input: PathBuf,
    /// Where to write the ranked rows (JSON lines); default: standard output.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// `linear` (best-of-n), `knockout` or `round-robin` (Bradley–Terry).
    #[arg(long, default_value = "linear")]
    pub strategy: Strategy,
    /// Rows ranked together: each step's comparisons of these rows form one judge call.
    #[arg(long, default_value_t = 64)]
    pub rows_per_call: usize,
}

pub fn run(args: Args) -> Result<()> {
    let mut judge = args.judge.load()?;
    process_rows(
        &args.input,
        args.output.as_deref(),
        args.rows_per_call,
        |rows, source| rank_rows(&mut judge, rows, source, args.strategy),
    )
}

/// Read JSON-lines rows from `input` (`-` = stdin), transform them `rows_per_call` at a time,
/// and write the results as JSON lines to `output` (default stdout) as each chunk finishes.
pub fn process_rows(
    input: &Path,
    output: Option<&Path>,
    rows_per_call: usize,
    mut transform: impl FnMut(&[Row], &Path) -> Result<Vec<Map<String, Value>>>,
) -> Result<()> {
    if rows_per_call == 0 {
        return Err(Error::invalid("--rows-per-call must be at least 1"));
    }
    let mut text = String::new();
    if input == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Error::io("<stdin>", e))?;
    } else {
        text = std::fs::read_to_string(input).map_err(|e| Error::io(input, e))?;
    }
    let rows = read_rows(input, &text)?;
    let output_name = output.unwrap_or(Path::new("<stdout>"));
    let mut writer: Box<dyn Write> = match output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| Error::io(path, e))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    for chunk in rows.chunks(rows_per_call) {
        for row in transform(chunk, input)? {
            let line = serde_json::to_string(&row).expect("JSON values serialise");
            writeln!(writer, "{line}").map_err(|e| Error::io(output_name, e))?;
        }
        writer.flush().map_err(|e| Error::io(output_name, e))?;
    }
    Ok(())
}
