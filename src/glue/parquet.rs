//! Reads examples from parquet: the hub's GLUE files and users' own `.parquet` files.
//!
//! Text columns must hold strings; the label column may hold integers (class ids), floats
//! (STS-B scores) or strings (spelled as in [`Task::parse_label`]). Errors name the file and
//! the 1-based row, in the place other readers put the line.

use std::fs::File;
use std::path::Path;

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use parquet::schema::types::Type;

use super::error::{DataError, io_found, parse_label, quoted};
use super::read::Columns;
use super::task::{Example, Label, Task};

/// The columns of a parquet file, in schema order.
pub(super) fn column_names(path: &Path) -> Result<Vec<String>, DataError> {
    guarded(path, || schema_names(path))
}

fn schema_names(path: &Path) -> Result<Vec<String>, DataError> {
    let whole = |expected: &str, found: String| DataError::new(path, None, expected, found);
    let file = File::open(path).map_err(|e| whole("a readable parquet file", io_found(&e)))?;
    let reader = SerializedFileReader::new(file)
        .map_err(|e| whole("a parquet file", format!("an unreadable one ({e})")))?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let fields = schema.root_schema().get_fields();
    Ok(fields.iter().map(|f| f.name().to_string()).collect())
}

/// The examples of the parquet file at `path`, taking the named columns. With `labelled` false
/// (test splits, whose hub files hold −1) the label column is not read.
pub fn read_parquet(
    path: &Path,
    columns: &Columns,
    task: &Task,
    labelled: bool,
) -> Result<Vec<Example>, DataError> {
    guarded(path, || read_rows(path, columns, task, labelled))
}

/// `read`, with a panic of the parquet crate as the file's error: it panics on some corrupt
/// files (a dictionary-encoded page without its dictionary) instead of returning an error.
fn guarded<T>(path: &Path, read: impl FnOnce() -> Result<T, DataError>) -> Result<T, DataError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).unwrap_or_else(|panic| {
        let message = (panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let found = format!("a corrupt one (the parquet reader stopped: {message})");
        Err(DataError::new(path, None, "a parquet file", found))
    })
}

fn read_rows(
    path: &Path,
    columns: &Columns,
    task: &Task,
    labelled: bool,
) -> Result<Vec<Example>, DataError> {
    let whole = |expected: &str, found: String| DataError::new(path, None, expected, found);
    let file = File::open(path).map_err(|e| whole("a readable parquet file", io_found(&e)))?;
    let reader = SerializedFileReader::new(file)
        .map_err(|e| whole("a parquet file", format!("an unreadable one ({e})")))?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let names: Vec<&str> = schema
        .root_schema()
        .get_fields()
        .iter()
        .map(|f| f.name())
        .collect();
    let find = |name: &str| {
        names.iter().position(|n| *n == name).ok_or_else(|| {
            whole(
                &format!("a column named {name:?}"),
                format!("columns {}", names.join(", ")),
            )
        })
    };
    let text_a = find(&columns.text_a)?;
    let text_b = columns.text_b.as_deref().map(find).transpose()?;
    let label = labelled.then(|| find(&columns.label)).transpose()?;
    // Only the columns read are decoded (others may be of types the record API refuses); a row
    // holds them in file order, so `slot` maps a file column to its place in the row.
    let mut read: Vec<usize> = [Some(text_a), text_b, label]
        .into_iter()
        .flatten()
        .collect();
    read.sort_unstable();
    read.dedup();
    let slot = |column: usize| read.binary_search(&column).expect("a read column");
    let fields = schema.root_schema().get_fields();
    let projection = Type::group_type_builder(schema.root_schema().name())
        .with_fields(read.iter().map(|&c| fields[c].clone()).collect())
        .build()
        .map_err(|e| whole("a parquet file", format!("an unreadable schema ({e})")))?;
    let rows = reader
        .get_row_iter(Some(projection))
        .map_err(|e| whole("a parquet file", format!("an unreadable one ({e})")))?;
    let mut examples = Vec::new();
    for (i, row) in rows.enumerate() {
        let at = i + 1;
        let row = row.map_err(|e| {
            DataError::new(
                path,
                Some(at),
                "a readable row",
                format!("a broken one ({e})"),
            )
        })?;
        let row_fields: Vec<&Field> = row.get_column_iter().map(|(_, field)| field).collect();
        let text = |column: usize| match row_fields[slot(column)] {
            Field::Str(s) => Ok(s.clone()),
            other => Err(DataError::new(
                path,
                Some(at),
                format!("a string in column {:?}", names[column]),
                quoted(&other.to_string()),
            )),
        };
        let label = match label {
            None => Label::None,
            Some(column) => {
                let spelled = match row_fields[slot(column)] {
                    Field::Str(s) => s.clone(),
                    other => other.to_string(),
                };
                parse_label(task, &spelled, path, at)?
            }
        };
        examples.push(Example {
            text_a: text(text_a)?,
            text_b: text_b.map(text).transpose()?,
            label,
        });
    }
    if examples.is_empty() {
        return Err(whole("a data row", "no rows".to_string()));
    }
    Ok(examples)
}
