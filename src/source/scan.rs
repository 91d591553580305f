//! One segment of a parallel Scan, page by page, within a read budget. Pages go into a bounded
//! channel so the transform can never fall behind by more than a couple of pages.

use aws_sdk_dynamodb::types::{AttributeValue, ReturnConsumedCapacity};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

use super::budget::ReadBudget;
use super::page::{CaptureBody, PageMeta, RawPage};
use super::{DynamoDb, Message, ScanCounters, ScanEnd, ScanError, ScanSpec};
use crate::retry::{is_throttling_code, sdk_failure};
use crate::value::json::item_key;
use crate::value::ItemView;

/// One Scan page at most this many bytes (DynamoDB's own cap).
const PAGE_BYTES: f64 = 1024.0 * 1024.0;

/// Scans one segment and sends its pages to `pages`. Returns when the segment is exhausted, or
/// stopped; the caller owns the sender, so it sends the [`Message::End`] (or, after an error,
/// closes the channel without one).
pub async fn scan_segment(
    dynamodb: &DynamoDb,
    spec: &ScanSpec,
    counters: &Arc<ScanCounters>,
    pages: &mpsc::Sender<Message>,
) -> Result<ScanEnd, ScanError> {
    let mut pacer = Pacer::new(spec);
    let mut start_key: Option<HashMap<String, AttributeValue>> = spec.start_key.clone();
    loop {
        let next = async {
            let limit = pacer.before_page().await;
            let limit = match (limit, spec.page_items) {
                (Some(l), Some(p)) => Some(l.min(p as i32)),
                (l, p) => l.or(p.map(|p| p as i32)),
            };
            let sent = tokio::time::Instant::now();
            let fetched = fetch_page(dynamodb, spec, start_key.as_ref(), limit, counters).await;
            fetched.map(|(page, meta)| (page, meta, sent.elapsed()))
        };
        let (mut page, meta, took) = tokio::select! {
            biased;
            _ = spec.stop.requested() => return Ok(ScanEnd::Stopped),
            fetched = next => fetched?,
        };
        let units = meta
            .capacity_units
            .unwrap_or_else(|| estimate_units(&page, pacer.units_per_block));
        pacer.after_page(units, meta.scanned_count, took);
        page.read_units = units;
        counters.pages.fetch_add(1, Ordering::Relaxed);
        counters.items.fetch_add(meta.count, Ordering::Relaxed);
        counters
            .read_milliunits
            .fetch_add((units * 1000.0).round() as u64, Ordering::Relaxed);
        start_key = meta.last_evaluated_key;
        if !page.is_empty() && pages.send(Message::Page(page)).await.is_err() {
            return Err(ScanError::Downstream {
                table: spec.table.clone(),
                segment: spec.segment,
            });
        }
        if start_key.is_none() {
            return Ok(ScanEnd::Finished);
        }
    }
}

/// Keeps a scan within its read budget: waits before each page and sizes it from the read
/// units items have cost so far.
struct Pacer {
    budget: Option<ReadBudget>,
    /// Read units per 4 KB block: 0.5 eventually consistent, 1 strongly consistent.
    units_per_block: f64,
    /// Units per item, learned from pages; starts pessimistic (4 KB items).
    units_per_item: f64,
    /// How long a page request takes, smoothed over the pages so far.
    page_seconds: Option<f64>,
}

/// The shortest stretch of budget one page is sized for: short enough that pacing stays smooth.
const MIN_PAGE_WINDOW: f64 = 0.25;
/// The longest: the bucket keeps at most one second of unused budget.
const MAX_PAGE_WINDOW: f64 = 1.0;

/// Seconds of budget to size the next page for. Pages are fetched one after another, so a page
/// worth less budget than the time its request takes leaves the budget unspent; twice the
/// observed request time keeps the scan ahead of its budget on a slow server.
fn page_window(page_seconds: Option<f64>) -> f64 {
    page_seconds.map_or(MIN_PAGE_WINDOW, |t| {
        (2.0 * t).clamp(MIN_PAGE_WINDOW, MAX_PAGE_WINDOW)
    })
}

impl Pacer {
    fn new(spec: &ScanSpec) -> Self {
        let units_per_block = if spec.consistent_read { 1.0 } else { 0.5 };
        Pacer {
            budget: spec.max_read_units.map(ReadBudget::new),
            units_per_block,
            units_per_item: units_per_block,
            page_seconds: None,
        }
    }

    /// Waits until the next page fits the budget; returns its `Limit`, if the budget needs one.
    async fn before_page(&mut self) -> Option<i32> {
        let full_page = PAGE_BYTES / 4096.0 * self.units_per_block;
        let units_per_item = self.units_per_item;
        let budget = self.budget.as_mut()?;
        let target = budget.rate() * page_window(self.page_seconds);
        let limit = (target < full_page).then(|| ((target / units_per_item).floor() as i32).max(1));
        let estimate = limit.map_or(full_page, |l| f64::from(l) * units_per_item);
        budget.wait_for(estimate).await;
        limit
    }

    /// Charges what a page consumed.
    fn after_page(&mut self, units: f64, scanned: u64, took: Duration) {
        if let Some(b) = self.budget.as_mut() {
            b.charge(units);
        }
        let t = took.as_secs_f64();
        self.page_seconds = Some(self.page_seconds.map_or(t, |avg| 0.8 * avg + 0.2 * t));
        if scanned > 0 {
            self.units_per_item = (units / scanned as f64).max(0.01);
        }
    }
}

/// One Scan request under the retry policy, its body taken as bytes and its envelope read.
async fn fetch_page(
    dynamodb: &DynamoDb,
    spec: &ScanSpec,
    start_key: Option<&HashMap<String, AttributeValue>>,
    limit: Option<i32>,
    counters: &ScanCounters,
) -> Result<(RawPage, PageMeta), ScanError> {
    let failed = |detail: String, retriable: bool| ScanError::Request {
        table: spec.table.clone(),
        segment: spec.segment,
        total_segments: spec.total_segments,
        last_key: start_key.map(|k| item_key(&ItemView::from_sdk(k), &spec.key_attributes)),
        detail,
        retriable,
    };
    let capture = CaptureBody::default();
    spec.retry
        .run_sdk(
            || {
                dynamodb
                    .client
                    .scan()
                    .table_name(&spec.table)
                    .segment(spec.segment as i32)
                    .total_segments(spec.total_segments as i32)
                    .consistent_read(spec.consistent_read)
                    .return_consumed_capacity(ReturnConsumedCapacity::Total)
                    .set_limit(limit)
                    .set_exclusive_start_key(start_key.cloned())
                    .customize()
                    .interceptor(capture.clone())
                    .send()
            },
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
                    delay_ms = delay.as_millis() as u64, error = %dynamodb.describe(e), "scan page failed; retrying");
            },
        )
        .await
        .map_err(|e| failed(dynamodb.describe(&e), sdk_failure(&e).is_retriable()))?;
    let body = capture
        .take()
        .ok_or_else(|| {
            failed(
                "the Scan response body was not captured (an SDK change?)".into(),
                false,
            )
        })?
        // Damaged on the way: worth a retry of the segment, as a body that is not JSON.
        .map_err(|damaged| failed(damaged.to_string(), true))?;
    // A body that is not JSON came damaged in transit: worth a retry of the segment.
    RawPage::split(body)
        .map_err(|e| failed(format!("the Scan response is not valid JSON: {e}"), true))
}

/// Read units of a page when the service does not report them: DynamoDB rounds the page's total
/// item size up to 4 KB blocks. The items' JSON text stands in for their size (an over-estimate,
/// which errs on the side of the budget).
fn estimate_units(page: &RawPage, per_block: f64) -> f64 {
    (page.items_bytes() as f64 / 4096.0).ceil() * per_block
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cover_twice_the_request_time_within_bounds() {
        assert_eq!(page_window(None), MIN_PAGE_WINDOW);
        assert_eq!(page_window(Some(0.01)), MIN_PAGE_WINDOW);
        assert!((page_window(Some(0.3)) - 0.6).abs() < 1e-9);
        assert_eq!(page_window(Some(5.0)), MAX_PAGE_WINDOW);
    }

    /// A server slower than a quarter second per page still gets the whole budget asked of it:
    /// simulated requests of 0.3 s, each costing what its item limit says.
    #[tokio::test(start_paused = true)]
    async fn a_slow_server_still_gets_the_budget_spent() {
        let spec_rate = 20.0;
        let mut pacer = Pacer {
            budget: Some(ReadBudget::new(spec_rate)),
            units_per_block: 0.5,
            units_per_item: 0.05,
            page_seconds: None,
        };
        let start = tokio::time::Instant::now();
        let mut spent = 0.0;
        for _ in 0..300 {
            let limit = pacer.before_page().await.expect("a budget sets a limit");
            let latency = Duration::from_millis(300);
            tokio::time::sleep(latency).await;
            let units = f64::from(limit) * 0.05;
            spent += units;
            pacer.after_page(units, u64::from(limit as u32), latency);
        }
        let rate = spent / start.elapsed().as_secs_f64();
        assert!(
            rate >= 0.9 * spec_rate && rate <= 1.05 * spec_rate,
            "{rate} units/s of {spec_rate}"
        );
    }
}
