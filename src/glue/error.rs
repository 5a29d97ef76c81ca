//! The one-line error every data reader gives, and the small helpers that word it.

use std::path::{Path, PathBuf};

use super::task::{Label, Task};
use crate::util::text::escape_controls;

/// A one-line error naming the file, the line (1-based; absent when the whole file is at
/// fault), what was expected and what was found.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{}: expected {expected}, found {found}", location(.file, .line))]
pub struct DataError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub expected: String,
    pub found: String,
}

fn location(file: &Path, line: &Option<usize>) -> String {
    match line {
        Some(line) => format!("{}:{line}", file.display()),
        None => file.display().to_string(),
    }
}

impl DataError {
    /// The error; control characters in `expected` and `found` (a header or key holding a
    /// newline) are escaped, so that the message stays one line.
    pub fn new(
        file: &Path,
        line: Option<usize>,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> DataError {
        DataError {
            file: file.to_path_buf(),
            line,
            expected: escape_controls(&expected.into()),
            found: escape_controls(&found.into()),
        }
    }
}

/// A field for an error message: quoted, escaped and cut to 60 characters.
pub(super) fn quoted(text: &str) -> String {
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{:?}...", &text[..end]),
        None => format!("{text:?}"),
    }
}

/// What an I/O error found, for a [`DataError`]: "no such file", else the error's text.
pub(super) fn io_found(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        _ => e.to_string(),
    }
}

/// The label `text` of `task` at `path`:`line`, or an error saying which labels it takes.
pub(super) fn parse_label(
    task: &Task,
    text: &str,
    path: &Path,
    line: usize,
) -> Result<Label, DataError> {
    task.parse_label(text).ok_or_else(|| {
        let expected = if task.is_regression() {
            "a numeric similarity score".to_string()
        } else {
            format!("a label (one of {})", task.glue_labels().join(", "))
        };
        DataError::new(path, Some(line), expected, quoted(text))
    })
}
