//! One error type for the whole library.
//!
//! Every error says *where* it happened: a file and, for line-oriented data, the 1-based line
//! and the field that is wrong, so a user can fix the input without reading our code.

use std::fmt;
use std::path::{Path, PathBuf};

/// What went wrong, with enough context to act on it.
#[derive(Debug)]
pub enum Error {
    /// Reading or writing a file failed.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A data row is malformed: `file:line`, the offending field (if any) and why.
    Data {
        path: PathBuf,
        line: Option<usize>,
        field: Option<String>,
        message: String,
    },
    /// A checkpoint (GGUF, safetensors, config.json, tokenizer) is missing, corrupt or unsupported.
    Checkpoint { path: PathBuf, message: String },
    /// No usable compute device, or a device the user named does not exist.
    Device(String),
    /// A request that cannot be served as given (bad option, label that is not one token, ...).
    Invalid(String),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// A malformed data row: `path:line`, `field`, `message`.
    pub fn data(
        path: impl AsRef<Path>,
        line: Option<usize>,
        field: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Error::Data {
            path: path.as_ref().to_path_buf(),
            line,
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }

    /// A problem with a checkpoint file or directory.
    pub fn checkpoint(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::Checkpoint {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }

    /// A request that cannot be served as given.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid(message.into())
    }
}

/// Look `name` up among named `choices` (option values such as `--strategy knockout`); an
/// unknown name is an error that lists the accepted ones, e.g.
/// "unknown ranking strategy `best` (expected linear, knockout or round-robin)".
pub fn parse_choice<T: Copy>(what: &str, name: &str, choices: &[(&str, T)]) -> Result<T> {
    if let Some(&(_, value)) = choices.iter().find(|(choice, _)| *choice == name) {
        return Ok(value);
    }
    let names: Vec<&str> = choices.iter().map(|(choice, _)| *choice).collect();
    let expected = match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    Err(Error::invalid(format!(
        "unknown {what} `{name}` (expected {expected})"
    )))
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Data {
                path,
                line,
                field,
                message,
            } => {
                write!(f, "{}", path.display())?;
                if let Some(line) = line {
                    write!(f, ":{line}")?;
                }
                if let Some(field) = field {
                    write!(f, ": field `{field}`")?;
                }
                write!(f, ": {message}")
            }
            Error::Checkpoint { path, message } => write!(f, "{}: {message}", path.display()),
            Error::Device(message) | Error::Invalid(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The message a caught panic carried (its `&str` or `String` payload), for error messages.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}
