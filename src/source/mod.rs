//! Reading DynamoDB: the table's description, and one segment of a parallel Scan ([`scan`]),
//! page by page ([`page`]), within a read budget ([`budget`]), with the shared retry policy.

pub mod budget;
pub mod export;
pub mod page;
pub mod scan;
mod skip;
pub mod stream;
pub mod table;

use aws_sdk_dynamodb::types::KeyType;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::aws::Endpoint;
use crate::error::{Class, Classify};
use crate::retry::{describe, sdk_failure, RetryPolicy, SdkFailure};

pub use scan::scan_segment;
pub use ScanEnd::{Finished, Stopped};

/// A DynamoDB client and where it points (for messages).
#[derive(Clone)]
pub struct DynamoDb {
    pub client: aws_sdk_dynamodb::Client,
    pub endpoint: Endpoint,
}

impl DynamoDb {
    /// An SDK error in words, naming the endpoint when nothing answered there.
    pub fn describe<E>(
        &self,
        err: &aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
    ) -> String
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        match sdk_failure(err) {
            SdkFailure::Unreachable => format!("{}: {}", self.endpoint, describe(err)),
            _ => describe(err),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("scan of table {table} segment {segment} of {total_segments} failed{}: {detail}",
        .last_key.as_ref().map(|k| format!(" after key {k}")).unwrap_or_default())]
    Request {
        table: String,
        segment: u32,
        total_segments: u32,
        last_key: Option<String>,
        detail: String,
        retriable: bool,
    },
    #[error("table {table}: {detail}")]
    Table {
        table: String,
        detail: String,
        retriable: bool,
    },
    #[error("scan of table {table} segment {segment} stopped: the pipeline behind it stopped")]
    Downstream { table: String, segment: u32 },
    /// Reading an export in place of the scan failed.
    #[error(transparent)]
    Export(#[from] export::ExportError),
}

impl Classify for ScanError {
    fn class(&self) -> Class {
        match self {
            ScanError::Request {
                retriable: true, ..
            } => Class::Retry,
            ScanError::Table {
                retriable: true, ..
            } => Class::Retry,
            ScanError::Export(e) => e.class(),
            _ => Class::Fatal,
        }
    }
}

/// Counters shared with progress reporting; updated as pages arrive.
#[derive(Debug, Default)]
pub struct ScanCounters {
    pub pages: AtomicU64,
    pub items: AtomicU64,
    /// Read units × 1000, to keep an integer atomic.
    pub read_milliunits: AtomicU64,
    pub retries: AtomicU64,
    pub throttled: AtomicU64,
}

impl ScanCounters {
    pub fn read_units(&self) -> f64 {
        self.read_milliunits.load(Ordering::Relaxed) as f64 / 1000.0
    }
}

/// What to scan and how.
#[derive(Debug, Clone)]
pub struct ScanSpec {
    pub table: String,
    pub segment: u32,
    pub total_segments: u32,
    pub consistent_read: bool,
    /// Read units per second for this segment; `None` leaves pacing to DynamoDB throttling.
    pub max_read_units: Option<f64>,
    /// Key attributes, for naming the resume point in errors.
    pub key_attributes: Vec<String>,
    pub retry: RetryPolicy,
    /// Where to start (`ExclusiveStartKey`): a resumed segment's checkpoint key.
    pub start_key:
        Option<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>,
    /// At most this many items per page (`Limit`); `None`: DynamoDB's 1 MB pages.
    pub page_items: Option<u32>,
    /// When requested, the scan stops before its next page (an in-flight request is dropped).
    pub stop: crate::stop::Stop,
}

/// How a scan ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanEnd {
    /// The segment is exhausted.
    Finished,
    /// A stop was requested; the pages sent so far are all there is.
    Stopped,
}

/// What a reader of one segment (a Scan, an export's data files) sends the transform over a
/// bounded channel: its pages in order, then how it ended. A channel that closes without an
/// `End` tells the transform the reader failed; the reader's error goes to whoever ran it.
#[derive(Debug)]
pub enum Message {
    Page(page::RawPage),
    End(ScanEnd),
}

/// The key attribute names of a table (partition key first).
pub async fn key_attributes(
    dynamodb: &DynamoDb,
    table: &str,
    retry: &RetryPolicy,
) -> Result<Vec<String>, ScanError> {
    let schema = table::describe(dynamodb, table, retry)
        .await?
        .key_schema
        .unwrap_or_default();
    let mut keys: Vec<(bool, String)> = schema
        .iter()
        .map(|k| {
            (
                k.key_type() != &KeyType::Hash,
                k.attribute_name().to_string(),
            )
        })
        .collect();
    keys.sort();
    Ok(keys.into_iter().map(|(_, name)| name).collect())
}

/// DynamoDB's approximate item count of a table (refreshed by the service about every six hours);
/// only used to estimate progress.
pub async fn approximate_item_count(dynamodb: &DynamoDb, table: &str) -> Option<u64> {
    let out = dynamodb
        .client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .ok()?;
    out.table()?.item_count().map(|n| n.max(0) as u64)
}
