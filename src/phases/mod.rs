//! The pipeline's phases, each usable on its own (AWS Batch runs one per job) or chained by `run`.

pub mod infer;
pub mod segment;
