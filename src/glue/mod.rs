//! GLUE tasks and users' data: the task registry ([`task`]), where a split is read from
//! ([`source`]), the readers, few-shot sampling.
//!
//! A split is read from a `glue_data` folder (`--data-dir`, else env `GLUE_DIR`), from a user's
//! own file (`--train-file`/`--dev-file`) or, with neither, from the hub ([`hub`]).

pub mod custom;
mod error;
#[cfg(feature = "native")]
pub mod hub;
#[cfg(feature = "native")]
pub mod parquet;
pub mod read;
pub mod sample;
pub mod source;
pub mod task;

pub use error::DataError;
pub use read::{Columns, read_predictions};
pub use source::{DataSource, Dataset, read_user_file};
pub use task::{CustomLabels, Example, FileFormat, Label, Split, Task, UnknownSplit, UnknownTask};
