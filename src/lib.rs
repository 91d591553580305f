//! dynamo-etl copies DynamoDB tables into a SQL warehouse (Amazon Redshift or PostgreSQL) through
//! an S3 staging area, in four restartable phases: segment (scan → CSV parts), prepare (staging
//! schema), upload (exactly-once COPY) and replace (gated atomic swap).
//!
//! The library is layered; every import points down this list, never up or across a cycle:
//!
//! 1. [`error`], [`retry`], [`aws`], [`stop`] — the retry-or-fatal classification, the one retry
//!    policy, SDK clients from plain settings, the request to stop early;
//! 2. [`value`] — DynamoDB values, their wire format and exact number, time and JSON codecs;
//! 3. [`schema`] — data-schemas: types, naming, inference, evolution (pure);
//! 4. [`storage`] — object storage: a trait, S3 and in-memory implementations;
//! 5. [`staging`] — the run's objects: layout, plan, manifests, run history, schema cache and
//!    resolution, runbook commands, CSV parts (writer, reader, the one CSV contract);
//! 6. [`source`] (DynamoDB scans) and [`transform`] (item → row, pure);
//! 7. [`warehouse`] — the warehouse protocol and one folder per dialect;
//! 8. [`phases`] — one module per command.
//!
//! The command line lives in the binary (`src/main.rs`, `src/cli/`), above all of it. The test
//! kit ([`testkit`]) is compiled only for tests, benchmarks and the helper binaries.

pub mod aws;
pub mod error;
pub mod phases;
pub mod retry;
pub mod schema;
pub mod source;
pub mod staging;
pub mod stop;
pub mod storage;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod transform;
pub mod value;
pub mod warehouse;
