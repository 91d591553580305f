//! Reading DynamoDB: one segment of a parallel Scan, page by page, within a read budget, with the
//! shared retry policy. Pages go into a bounded channel so the transform can never fall behind by
//! more than a couple of pages.

pub mod budget;
pub mod page;

use aws_sdk_dynamodb::types::{AttributeValue, KeyType, ReturnConsumedCapacity};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

use crate::item::ItemView;
use crate::retry::{describe, is_retriable, is_throttling_code, RetryPolicy};
use crate::transform::item_key;
use budget::ReadBudget;
use page::{CaptureBody, RawPage};

/// One Scan page at most this many bytes (DynamoDB's own cap).
const PAGE_BYTES: f64 = 1024.0 * 1024.0;

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
    Table { table: String, detail: String },
    #[error("scan of table {table} segment {segment} stopped: the pipeline behind it stopped")]
    Downstream { table: String, segment: u32 },
}

impl ScanError {
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            ScanError::Request {
                retriable: true,
                ..
            }
        )
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
}

/// The key attribute names of a table (partition key first).
pub async fn key_attributes(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    retry: &RetryPolicy,
) -> Result<Vec<String>, ScanError> {
    let out = retry
        .run(
            || client.describe_table().table_name(table).send(),
            is_retriable,
            |_, _| {},
        )
        .await
        .map_err(|e| {
            let not_found = e
                .as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception());
            ScanError::Table {
                table: table.to_string(),
                detail: if not_found {
                    "no such table at this endpoint and region; check --table, --region and --dynamodb-endpoint".to_string()
                } else {
                    describe(&e)
                },
            }
        })?;
    let schema = out
        .table()
        .map(|t| t.key_schema().to_vec())
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
pub async fn approximate_item_count(client: &aws_sdk_dynamodb::Client, table: &str) -> Option<u64> {
    let out = client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .ok()?;
    out.table()?.item_count().map(|n| n.max(0) as u64)
}

/// Scans one segment and sends its pages to `pages`. Returns when the segment is exhausted. The
/// caller owns the sender, so it can record how the scan ended before closing the channel.
pub async fn scan_segment(
    client: &aws_sdk_dynamodb::Client,
    spec: &ScanSpec,
    counters: &Arc<ScanCounters>,
    pages: &mpsc::Sender<RawPage>,
) -> Result<(), ScanError> {
    let mut budget = spec.max_read_units.map(ReadBudget::new);
    let unit_per_item_read = if spec.consistent_read { 1.0 } else { 0.5 };
    // Units per item, learned from pages; starts pessimistic (4 KB items).
    let mut units_per_item = unit_per_item_read;
    let mut start_key: Option<HashMap<String, AttributeValue>> = None;
    loop {
        let limit = budget.as_ref().and_then(|b| {
            // Keep each page at about a quarter second of budget so pacing stays smooth.
            let target = b.rate() / 4.0;
            let full_page = PAGE_BYTES / 4096.0 * unit_per_item_read;
            (target < full_page).then(|| ((target / units_per_item).floor() as i32).max(1))
        });
        if let Some(b) = budget.as_mut() {
            let estimate = limit
                .map(|l| f64::from(l) * units_per_item)
                .unwrap_or(PAGE_BYTES / 4096.0 * unit_per_item_read);
            b.wait_for(estimate).await;
        }
        let capture = CaptureBody::default();
        let failed = |detail: String, retriable: bool| ScanError::Request {
            table: spec.table.clone(),
            segment: spec.segment,
            total_segments: spec.total_segments,
            last_key: start_key
                .as_ref()
                .map(|k| item_key(&ItemView::from_sdk(k), &spec.key_attributes)),
            detail,
            retriable,
        };
        spec.retry
            .run(
                || {
                    client
                        .scan()
                        .table_name(&spec.table)
                        .segment(spec.segment as i32)
                        .total_segments(spec.total_segments as i32)
                        .consistent_read(spec.consistent_read)
                        .return_consumed_capacity(ReturnConsumedCapacity::Total)
                        .set_limit(limit)
                        .set_exclusive_start_key(start_key.clone())
                        .customize()
                        .interceptor(capture.clone())
                        .send()
                },
                is_retriable,
                |e, delay| {
                    counters.retries.fetch_add(1, Ordering::Relaxed);
                    let throttled = is_throttling_code(
                        e.as_service_error()
                            .and_then(aws_sdk_dynamodb::error::ProvideErrorMetadata::code),
                    );
                    if throttled {
                        counters.throttled.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::warn!(table = %spec.table, segment = spec.segment, throttled,
                        delay_ms = delay.as_millis() as u64, error = %describe(e), "scan page failed; retrying");
                },
            )
            .await
            .map_err(|e| failed(describe(&e), is_retriable(&e)))?;
        let body = capture.take().ok_or_else(|| {
            failed(
                "the Scan response body was not captured (an SDK change?)".into(),
                false,
            )
        })?;
        // A body that is not JSON came damaged in transit: worth a retry of the segment.
        let (page, meta) = RawPage::split(body)
            .map_err(|e| failed(format!("the Scan response is not valid JSON: {e}"), true))?;
        let units = meta
            .capacity_units
            .unwrap_or_else(|| estimate_units(&page, unit_per_item_read));
        if let Some(b) = budget.as_mut() {
            b.charge(units);
        }
        if meta.scanned_count > 0 {
            units_per_item = (units / meta.scanned_count as f64).max(0.01);
        }
        counters.pages.fetch_add(1, Ordering::Relaxed);
        counters.items.fetch_add(meta.count, Ordering::Relaxed);
        counters
            .read_milliunits
            .fetch_add((units * 1000.0).round() as u64, Ordering::Relaxed);
        start_key = meta.last_evaluated_key;
        if !page.is_empty() && pages.send(page).await.is_err() {
            return Err(ScanError::Downstream {
                table: spec.table.clone(),
                segment: spec.segment,
            });
        }
        if start_key.is_none() {
            return Ok(());
        }
    }
}

/// Read units of a page when the service does not report them: DynamoDB rounds the page's total
/// item size up to 4 KB blocks. The items' JSON text stands in for their size (an over-estimate,
/// which errs on the side of the budget).
fn estimate_units(page: &RawPage, per_block: f64) -> f64 {
    (page.items_bytes() as f64 / 4096.0).ceil() * per_block
}
