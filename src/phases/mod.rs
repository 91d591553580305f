//! The pipeline's phases, each usable on its own (AWS Batch runs one per job) or chained by `run`.

pub mod gc;
pub mod infer;
pub mod load;
pub mod pipeline;
pub mod plan;
pub mod segment;
pub mod status;
