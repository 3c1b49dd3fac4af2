//! One row of input, wherever it came from: its JSON fields and its [`Location`].
//!
//! Every reader of rows uses this type: the preference formats ([`super::open`]), the
//! model-output files of [`super::unlabeled`], the JSON-lines input of `gram rank` and
//! `gram reward` ([`super::jsonl`]), and the rows of an HTTP request body (`crate::serve`).

use super::dialogue::{prompt_text, response_text};
use crate::{Error, Result};
use serde_json::{Map, Value};
use std::path::Path;
use std::sync::Arc;

/// Where a row is, as errors report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub origin: Origin,
    /// The row's number: a JSONL file's 1-based line, a JSON array's 0-based element index, or
    /// a 0-based index in a request body's list (see [`Origin`]).
    pub row: usize,
}

/// What holds a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A line of a JSONL file; errors name it `file:line`.
    Line(Arc<Path>),
    /// An element of a file holding one JSON array; errors name it `file:index` and say it is
    /// an element index counting from 0.
    Element(Arc<Path>),
    /// An element of a list in an HTTP request body (`rows`, `pairs`, ...; the name given),
    /// which has no file; errors name it `rows:N` with N counting from 1.
    Request(&'static str),
}

impl Location {
    /// Line `line` (1-based) of the JSONL file `path`.
    pub fn line(path: Arc<Path>, line: usize) -> Location {
        Location {
            origin: Origin::Line(path),
            row: line,
        }
    }

    /// Element `index` (0-based) of the JSON array in `path`.
    pub fn element(path: Arc<Path>, index: usize) -> Location {
        Location {
            origin: Origin::Element(path),
            row: index,
        }
    }

    /// Element `index` (0-based) of the request body's list `list` (`rows`, `pairs`).
    pub fn request(list: &'static str, index: usize) -> Location {
        Location {
            origin: Origin::Request(list),
            row: index,
        }
    }

    /// The file the row is in; `None` for a request row.
    pub fn path(&self) -> Option<&Path> {
        match &self.origin {
            Origin::Line(path) | Origin::Element(path) => Some(path),
            Origin::Request(_) => None,
        }
    }

    /// A data error at this row, naming `field`.
    pub fn error(&self, field: Option<&str>, message: impl Into<String>) -> Error {
        let mut message = message.into();
        match &self.origin {
            Origin::Line(path) => Error::data(path, Some(self.row), field, message),
            Origin::Element(path) => {
                message.push_str(&format!(
                    " (JSON array element {}, counting from 0)",
                    self.row
                ));
                Error::data(path, Some(self.row), field, message)
            }
            Origin::Request(list) => Error::data(list, Some(self.row + 1), field, message),
        }
    }
}

/// One row: a JSON object and where it is.
///
/// Two ways to read it: the format parsers *take* fields (`take*`, errors such as "missing",
/// "expected a string, found a number"), leaving what they did not consume to pass through;
/// `gram rank` and `gram reward` *read* fields in place ([`Row::prompt`], [`Row::response`],
/// [`Row::responses`], errors such as "is missing") and pass the whole row through. Prompt and
/// response fields are text or chat messages either way.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub location: Location,
    pub fields: Map<String, Value>,
}

impl Row {
    pub fn new(location: Location, fields: Map<String, Value>) -> Row {
        Row { location, fields }
    }

    /// A required prompt field, left in place: text or chat messages, as the judge reads it
    /// (see [`prompt_text`]).
    pub fn prompt(&self, field: &str) -> Result<String> {
        prompt_text(self, field, self.get(field)?)
    }

    /// A required response field, left in place: text or one assistant message (see
    /// [`response_text`]).
    pub fn response(&self, field: &str) -> Result<String> {
        response_text(self, field, self.get(field)?)
    }

    /// A required list of responses, left in place, each as [`Row::response`] reads one
    /// (errors name the element, `field[i]`).
    pub fn responses(&self, field: &str) -> Result<Vec<String>> {
        match self.get(field)? {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| response_text(self, &format!("{field}[{i}]"), item))
                .collect(),
            other => Err(self.wrong_type(field, "a list of responses", other)),
        }
    }

    /// A field that must be present, left in place.
    fn get(&self, field: &str) -> Result<&Value> {
        self.fields
            .get(field)
            .ok_or_else(|| self.location.error(Some(field), "is missing"))
    }

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

    /// Remove a prompt field: non-blank text or chat messages (see [`prompt_text`]).
    pub(crate) fn take_prompt(&mut self, field: &str) -> Result<String> {
        let value = self.take(field)?;
        let text = prompt_text(self, field, &value)?;
        self.non_blank(field, text)
    }

    /// Remove a response field: non-blank text or one assistant message (see
    /// [`response_text`]).
    pub(crate) fn take_response(&mut self, field: &str) -> Result<String> {
        let value = self.take(field)?;
        let text = response_text(self, field, &value)?;
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

    /// "expected `expected`, found <the JSON type of `found`>" on `field`.
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
