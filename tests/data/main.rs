//! Reading GLUE (TSV and the hub's parquet) and users' own files, and their one-line errors.
//! `cargo test --release --test data`.

#[path = "../common/mod.rs"]
mod common;

mod custom_task;
mod glue_data;
mod glue_errors;
mod glue_parquet;
