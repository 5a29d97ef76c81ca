//! Parquet files as the hub's GLUE holds them: snappy-compressed, nullable columns, written with
//! the `parquet` crate's own writer.

use std::path::Path;
use std::sync::Arc;

use pac_wgpu::glue::{Example, Label};
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, FloatType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

/// One column of a file to write.
pub enum Column {
    Text(&'static str, Vec<String>),
    Long(&'static str, Vec<i64>),
    Float(&'static str, Vec<f32>),
    Int(&'static str, Vec<i32>),
}

pub fn texts(values: &[&str]) -> Vec<String> {
    values.iter().map(|s| s.to_string()).collect()
}

/// Writes `columns` (all of one length) as a one-row-group parquet file.
pub fn write_parquet(path: &Path, columns: Vec<Column>) {
    let fields: Vec<String> = columns
        .iter()
        .map(|c| match c {
            Column::Text(name, _) => format!("OPTIONAL BYTE_ARRAY {name} (UTF8);"),
            Column::Long(name, _) => format!("OPTIONAL INT64 {name};"),
            Column::Float(name, _) => format!("OPTIONAL FLOAT {name};"),
            Column::Int(name, _) => format!("OPTIONAL INT32 {name};"),
        })
        .collect();
    let schema =
        parse_message_type(&format!("message glue {{ {} }}", fields.join(" "))).expect("schema");
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = SerializedFileWriter::new(file, Arc::new(schema), Arc::new(props)).unwrap();
    let mut group = writer.next_row_group().unwrap();
    for column in &columns {
        let mut w = group.next_column().unwrap().expect("a column per field");
        let defined = |n: usize| vec![1i16; n];
        match column {
            Column::Text(_, v) => {
                let bytes: Vec<ByteArray> = v.iter().map(|s| ByteArray::from(s.as_str())).collect();
                let def = defined(v.len());
                w.typed::<ByteArrayType>()
                    .write_batch(&bytes, Some(&def), None)
            }
            Column::Long(_, v) => {
                w.typed::<Int64Type>()
                    .write_batch(v, Some(&defined(v.len())), None)
            }
            Column::Float(_, v) => {
                w.typed::<FloatType>()
                    .write_batch(v, Some(&defined(v.len())), None)
            }
            Column::Int(_, v) => {
                w.typed::<Int32Type>()
                    .write_batch(v, Some(&defined(v.len())), None)
            }
        }
        .unwrap();
        w.close().unwrap();
    }
    group.close().unwrap();
    writer.close().unwrap();
}

/// A pair task's split in the hub's form: sentence1, sentence2, label (class id, −1 without a
/// gold label), idx.
pub fn write_pair_split(path: &Path, examples: &[Example]) {
    let label = |e: &Example| match e.label {
        Label::Class(id) => id as i64,
        _ => -1,
    };
    write_parquet(
        path,
        vec![
            Column::Text(
                "sentence1",
                examples.iter().map(|e| e.text_a.clone()).collect(),
            ),
            Column::Text(
                "sentence2",
                examples.iter().map(|e| e.text_b.clone().unwrap()).collect(),
            ),
            Column::Long("label", examples.iter().map(label).collect()),
            Column::Int("idx", (0..examples.len() as i32).collect()),
        ],
    )
}
