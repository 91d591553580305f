//! dynamo-etl copies DynamoDB tables into a SQL warehouse (Amazon Redshift or PostgreSQL) through
//! an S3 staging area, in four restartable phases: segment (scan → CSV parts), prepare (staging
//! schema), upload (exactly-once COPY) and replace (gated atomic swap).
//!
//! Data flows one way: [`source`] → [`transform`] → [`stage`] → warehouse; [`schema`] is shared;
//! [`phases`] and [`cli`] wire them together.

pub mod aws;
pub mod cli;
pub mod fixtures;
pub mod item;
pub mod phases;
pub mod retry;
pub mod schema;
pub mod source;
pub mod stage;
pub mod transform;
pub mod warehouse;
