//! What a run shows a reader: its plots.

pub mod plots;
