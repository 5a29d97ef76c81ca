//! Readers for GLUE's TSV files, users' own TSV/CSV/JSONL files and prediction files.
//!
//! Every file must be UTF-8; a leading byte-order mark is skipped, and lines end in `\n` or
//! `\r\n` (the last one may lack it). Bad input gives a [`DataError`], never a panic.

use std::path::{Path, PathBuf};

use super::error::{DataError, io_found, parse_label, quoted};
use super::task::{Example, FileFormat, Label, Split, Task};

/// Column names to read from a user's TSV/CSV header or JSONL keys.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Columns {
    pub text_a: String,
    pub text_b: Option<String>,
    /// Empty for a file without labels (new text to predict): every label reads as none.
    pub label: String,
}

impl Columns {
    /// Whether rows carry a label column.
    pub fn labelled(&self) -> bool {
        !self.label.is_empty()
    }
}

impl Default for Columns {
    /// `sentence` and `label`, no second text.
    fn default() -> Columns {
        Columns {
            text_a: "sentence".to_string(),
            text_b: None,
            label: "label".to_string(),
        }
    }
}

/// Which field of a row holds what.
struct Layout {
    columns: usize,
    text_a: usize,
    text_b: Option<usize>,
    label: Option<usize>,
}

/// Reads a whole file as UTF-8 text without its byte-order mark.
fn read_text(path: &Path) -> Result<String, DataError> {
    let bytes = std::fs::read(path)
        .map_err(|e| DataError::new(path, None, "a readable file", io_found(&e)))?;
    decode_text(path, bytes)
}

/// A file's bytes as UTF-8 text without its byte-order mark; `path` names it in errors.
fn decode_text(path: &Path, bytes: Vec<u8>) -> Result<String, DataError> {
    let mut text = String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let at = e.utf8_error().valid_up_to();
        let line = 1 + bytes[..at].iter().filter(|&&b| b == b'\n').count();
        DataError::new(
            path,
            Some(line),
            "UTF-8 text",
            format!("byte 0x{:02x}", bytes[at]),
        )
    })?;
    if text.starts_with('\u{feff}') {
        text.drain(..'\u{feff}'.len_utf8());
    }
    if let Some((line, row)) = numbered_lines(&text).find(|(_, row)| row.len() > MAX_ROW_BYTES) {
        return Err(DataError::new(
            path,
            Some(line),
            "a row of at most 1 MiB",
            format!("a row of {:.1} MiB", row.len() as f64 / (1 << 20) as f64),
        ));
    }
    Ok(text)
}

/// The longest row a data file may hold (GLUE's longest are a few KB): anything longer is
/// not a sentence, and tokenizing it would take minutes to keep the first `--max-length` tokens.
const MAX_ROW_BYTES: usize = 1 << 20;

/// Lines with their 1-based numbers.
fn numbered_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(i, line)| (i + 1, line))
}

fn example(
    fields: &[&str],
    layout: &Layout,
    task: &Task,
    path: &Path,
    line: usize,
) -> Result<Example, DataError> {
    if fields.len() != layout.columns {
        return Err(DataError::new(
            path,
            Some(line),
            format!("{} columns", layout.columns),
            fields.len().to_string(),
        ));
    }
    let label = match layout.label {
        Some(column) => parse_label(task, fields[column], path, line)?,
        None => Label::None,
    };
    Ok(Example {
        text_a: fields[layout.text_a].to_string(),
        text_b: layout.text_b.map(|column| fields[column].to_string()),
        label,
    })
}

fn no_rows(path: &Path, text: &str, header: bool) -> DataError {
    if text.is_empty() {
        DataError::new(path, Some(1), "a data row", "an empty file")
    } else {
        let line = if header { 2 } else { 1 };
        DataError::new(path, Some(line), "a data row", "end of file")
    }
}

/// The first of `task`'s files for `split` that exists under `dir`.
pub fn find_glue_file(dir: &Path, task: &Task, split: Split) -> Option<(PathBuf, FileFormat)> {
    task.files(split)
        .into_iter()
        .map(|format| (dir.join(format.path), format))
        .find(|(path, _)| path.is_file())
}

/// Reads `split` of `task` from a `glue_data` folder; returns the file read and its examples.
pub fn read_glue(
    dir: &Path,
    task: &Task,
    split: Split,
) -> Result<(PathBuf, Vec<Example>), DataError> {
    let Some((path, format)) = find_glue_file(dir, task, split) else {
        return Err(match task.files(split).first() {
            Some(format) => {
                let path = dir.join(format.path);
                let found = if path.is_dir() {
                    "a folder"
                } else {
                    "no such file"
                };
                DataError::new(&path, None, "a GLUE file", found)
            }
            None => DataError::new(
                dir,
                None,
                format!("a split of {task} ({})", split_names(task)),
                split.name(),
            ),
        });
    };
    let examples = read_glue_file(&path, &format, task)?;
    Ok((path, examples))
}

fn split_names(task: &Task) -> String {
    let names: Vec<&str> = task.splits().iter().map(|s| s.name()).collect();
    names.join(", ")
}

/// Reads one GLUE TSV file laid out as `format` says.
pub fn read_glue_file(
    path: &Path,
    format: &FileFormat,
    task: &Task,
) -> Result<Vec<Example>, DataError> {
    parse_glue_file(path, read_text(path)?, format, task)
}

/// [`read_glue_file`] on the file's bytes (the browser has no files); `path` names them.
pub fn read_glue_bytes(
    path: &Path,
    bytes: Vec<u8>,
    format: &FileFormat,
    task: &Task,
) -> Result<Vec<Example>, DataError> {
    parse_glue_file(path, decode_text(path, bytes)?, format, task)
}

fn parse_glue_file(
    path: &Path,
    text: String,
    format: &FileFormat,
    task: &Task,
) -> Result<Vec<Example>, DataError> {
    let layout = Layout {
        columns: format.columns,
        text_a: format.text_a,
        text_b: format.text_b,
        label: format.label,
    };
    let mut lines = numbered_lines(&text);
    if format.header
        && let Some((line, header)) = lines.next()
    {
        let columns = header.split('\t').count();
        if columns != format.columns {
            return Err(DataError::new(
                path,
                Some(line),
                format!("a header of {} columns", format.columns),
                columns.to_string(),
            ));
        }
    }
    let examples = lines
        .map(|(line, row)| {
            let fields: Vec<&str> = row.split('\t').collect();
            example(&fields, &layout, task, path, line)
        })
        .collect::<Result<Vec<_>, _>>()?;
    if examples.is_empty() {
        return Err(no_rows(path, &text, format.header));
    }
    Ok(examples)
}

/// Reads a user's text file with a header (`.tsv`: tab-split, no quoting; `.csv`: RFC 4180
/// quoting) or JSON Lines (`.jsonl`/`.json`: one object per line), taking the named columns
/// (parquet files go to [`super::parquet`], see [`super::source::read_user_file`]).
/// Labels are spelled as in [`Task::parse_label`]; JSON labels may also be numbers.
pub fn read_text_file(
    path: &Path,
    columns: &Columns,
    task: &Task,
) -> Result<Vec<Example>, DataError> {
    parse_text_file(path, None, columns, task)
}

/// [`read_text_file`] on the file's bytes (the browser has no files); `path` names them, and
/// its extension gives the format.
pub fn read_text_bytes(
    path: &Path,
    bytes: Vec<u8>,
    columns: &Columns,
    task: &Task,
) -> Result<Vec<Example>, DataError> {
    parse_text_file(path, Some(bytes), columns, task)
}

/// A user's text file from `bytes`, else read from `path`.
fn parse_text_file(
    path: &Path,
    bytes: Option<Vec<u8>>,
    columns: &Columns,
    task: &Task,
) -> Result<Vec<Example>, DataError> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if !matches!(extension.as_str(), "tsv" | "csv" | "jsonl" | "json") {
        let found = match extension.as_str() {
            "" => "no extension".to_string(),
            ext => format!("extension .{ext}"),
        };
        return Err(DataError::new(
            path,
            None,
            "a .tsv, .csv, .jsonl or .parquet file",
            found,
        ));
    }
    let text = match bytes {
        Some(bytes) => decode_text(path, bytes)?,
        None => read_text(path)?,
    };
    let examples = match extension.as_str() {
        "tsv" => {
            let rows = numbered_lines(&text).map(|(line, row)| (line, row.split('\t').collect()));
            read_table(rows, path, columns, task)?
        }
        "csv" => {
            let records = csv_records(&text, path)?;
            let rows = records
                .iter()
                .map(|(line, fields)| (*line, fields.iter().map(String::as_str).collect()));
            read_table(rows, path, columns, task)?
        }
        _ => numbered_lines(&text)
            .map(|(line, row)| json_example(row, path, line, columns, task))
            .collect::<Result<Vec<_>, _>>()?,
    };
    if examples.is_empty() {
        let header = matches!(extension.as_str(), "tsv" | "csv");
        return Err(no_rows(path, &text, header));
    }
    Ok(examples)
}

/// The columns of a user's text file: the header of a TSV or CSV file, the keys of a JSON Lines
/// file's first object in their order.
pub(super) fn column_names(path: &Path) -> Result<Vec<String>, DataError> {
    let text = read_text(path)?;
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    let names = match extension.to_ascii_lowercase().as_str() {
        "tsv" => numbered_lines(&text)
            .next()
            .map(|(_, row)| row.split('\t').map(|c| c.trim().to_string()).collect()),
        "csv" => csv_records(&text, path)?
            .into_iter()
            .next()
            .map(|(_, header)| header),
        _ => match numbered_lines(&text).next() {
            Some((line, row)) => Some(
                serde_json::from_str::<KeysInOrder>(row)
                    .map_err(|e| DataError::new(path, Some(line), "a JSON object", e.to_string()))?
                    .0,
            ),
            None => None,
        },
    };
    names.ok_or_else(|| no_rows(path, &text, true))
}

/// A JSON object's keys in the order they are written.
struct KeysInOrder(Vec<String>);

impl<'de> serde::Deserialize<'de> for KeysInOrder {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = KeysInOrder;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<KeysInOrder, A::Error> {
                let mut keys = Vec::new();
                while let Some((key, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                    keys.push(key);
                }
                Ok(KeysInOrder(keys))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// Rows of a table whose first row is the header.
fn read_table<'a>(
    mut rows: impl Iterator<Item = (usize, Vec<&'a str>)>,
    path: &Path,
    columns: &Columns,
    task: &Task,
) -> Result<Vec<Example>, DataError> {
    let Some((header_line, header)) = rows.next() else {
        return Ok(Vec::new());
    };
    let find = |name: &str| {
        header.iter().position(|h| h.trim() == name).ok_or_else(|| {
            DataError::new(
                path,
                Some(header_line),
                format!("a column named {name:?}"),
                format!("columns {}", header.join(", ")),
            )
        })
    };
    let layout = Layout {
        columns: header.len(),
        text_a: find(&columns.text_a)?,
        text_b: columns.text_b.as_deref().map(find).transpose()?,
        label: columns
            .labelled()
            .then(|| find(&columns.label))
            .transpose()?,
    };
    rows.map(|(line, fields)| example(&fields, &layout, task, path, line))
        .collect()
}

/// Splits CSV text into records, each with the line it starts on. `"` opens a quoted field
/// at the start of a field; inside it `""` is a quote and newlines and commas are text.
fn csv_records(text: &str, path: &Path) -> Result<Vec<(usize, Vec<String>)>, DataError> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let (mut line, mut record_line) = (1, 1);
    let mut in_quotes = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (in_quotes, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => in_quotes = false,
            (false, '"') if field.is_empty() => in_quotes = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push((record_line, std::mem::take(&mut record)));
                line += 1;
                record_line = line;
            }
            (_, c) => {
                line += usize::from(c == '\n');
                field.push(c);
            }
        }
    }
    if in_quotes {
        return Err(DataError::new(
            path,
            Some(record_line),
            "a closing quote",
            "end of file",
        ));
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push((record_line, record));
    }
    Ok(records)
}

fn json_example(
    row: &str,
    path: &Path,
    line: usize,
    columns: &Columns,
    task: &Task,
) -> Result<Example, DataError> {
    let error = |expected: String, found: String| DataError::new(path, Some(line), expected, found);
    let object = match serde_json::from_str::<serde_json::Value>(row) {
        Ok(serde_json::Value::Object(object)) => object,
        Ok(other) => return Err(error("a JSON object".into(), quoted(&other.to_string()))),
        Err(e) => return Err(error("a JSON object".into(), format!("invalid JSON ({e})"))),
    };
    let field = |name: &str| {
        object.get(name).ok_or_else(|| {
            let keys: Vec<&str> = object.keys().map(String::as_str).collect();
            error(
                format!("a key {name:?}"),
                format!("keys {}", keys.join(", ")),
            )
        })
    };
    let text = |name: &str| match field(name)? {
        serde_json::Value::String(text) => Ok(text.clone()),
        // The label column read as text (a custom task's labels): numbers as JSON spells them.
        number @ serde_json::Value::Number(_) if name == columns.label => Ok(number.to_string()),
        other => Err(error(
            format!("a string for {name:?}"),
            quoted(&other.to_string()),
        )),
    };
    let label = match columns.labelled() {
        false => Label::None,
        true => match field(&columns.label)? {
            serde_json::Value::String(text) => parse_label(task, text, path, line)?,
            other => parse_label(task, &other.to_string(), path, line)?,
        },
    };
    Ok(Example {
        text_a: text(&columns.text_a)?,
        text_b: columns.text_b.as_deref().map(text).transpose()?,
        label,
    })
}

/// Reads a predictions file in GLUE's submission format: `index<TAB>prediction` rows, in any
/// order, after an optional `index` header; predictions spelled as in [`Task::parse_label`].
/// The indices must be 0..n, each once; returns the predictions in index order.
pub fn read_predictions(path: &Path, task: &Task) -> Result<Vec<Label>, DataError> {
    let text = read_text(path)?;
    let mut lines = numbered_lines(&text).peekable();
    // `predict --probabilities` adds a third column, named in its header.
    let header = lines.next_if(|(_, row)| {
        row.split('\t')
            .next()
            .is_some_and(|f| f.eq_ignore_ascii_case("index"))
    });
    let columns = header.map_or(2, |(_, row)| row.split('\t').count().max(2));
    let header = header.is_some();
    let rows = lines
        .map(|(line, row)| {
            let fields: Vec<&str> = row.split('\t').collect();
            let (&[index, prediction, ..], true) = (&fields[..], fields.len() == columns) else {
                return Err(DataError::new(
                    path,
                    Some(line),
                    match columns {
                        2 => "2 columns (index, prediction)".to_string(),
                        n => format!("{n} columns, as the header names"),
                    },
                    fields.len().to_string(),
                ));
            };
            let index = index
                .trim()
                .parse::<usize>()
                .map_err(|_| DataError::new(path, Some(line), "a row index", quoted(index)))?;
            Ok((line, index, parse_label(task, prediction, path, line)?))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if rows.is_empty() {
        return Err(no_rows(path, &text, header));
    }
    let mut predictions = vec![None; rows.len()];
    for (line, index, label) in rows {
        let n = predictions.len();
        let slot = predictions.get_mut(index).ok_or_else(|| {
            DataError::new(
                path,
                Some(line),
                format!("an index below {n} (one row per example)"),
                index.to_string(),
            )
        })?;
        if slot.replace(label).is_some() {
            return Err(DataError::new(
                path,
                Some(line),
                "each index once",
                format!("index {index} again"),
            ));
        }
    }
    Ok(predictions.into_iter().flatten().collect())
}
