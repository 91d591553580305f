//! The integration tests: one test binary (each extra binary would link the whole AWS SDK
//! again), one module per area, all against the real local stack — DynamoDB Local, the
//! S3-compatible server and PostgreSQL — started by `jobs/stack-up`. A test finds the stack in
//! the environment or `.stack/env` and fails, saying how to start it, when it is not up.

mod support;

/// The binary's own command line, compiled in here so that tests parse with the real argument
/// parser (the job definitions) and read with the real formatting (the estimate's figures).
#[allow(dead_code)]
#[path = "../../src/cli/mod.rs"]
mod cli;

mod all_segments;
mod command_line;
mod credentials;
mod dialects;
mod docs;
mod estimate;
mod exit_codes;
mod export;
mod fingerprints;
mod follow;
mod increment;
mod infer_schema;
mod jobs;
mod layers;
mod limits;
mod phase1;
mod pipeline;
mod redshift_sql;
mod resume;
mod safety;
mod schemas;
mod staging;
mod statistics;
mod storage;
mod warehouse;
