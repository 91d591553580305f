//! The schema job's scan: read the whole table (or a sample) as a parallel Scan, summarise every
//! item into an [`Inference`], and merge the per-segment summaries.
//!
//! Each segment streams pages through a bounded channel into its own summary, so memory holds a
//! couple of pages per running segment plus the summaries (which grow with the number of distinct
//! attributes, not with the items). At most `concurrency` segments run at once, and the read
//! budget is shared between them. Summaries form a lattice ([`Inference::merge`] is commutative
//! and associative), so the result does not depend on which segment finishes first.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use crate::retry::RetryPolicy;
use crate::schema::infer::{Classification, Inference};
use crate::source::page::RawPage;
use crate::source::{scan_segment, ScanCounters, ScanError, ScanSpec};

/// Pages waiting to be summarised, per segment.
const PAGES_IN_FLIGHT: usize = 2;

/// What to scan and how.
#[derive(Debug, Clone)]
pub struct InferSettings {
    pub table: String,
    /// Parallel Scan segments (DynamoDB's TotalSegments).
    pub segments: u32,
    /// Segments scanned at the same time.
    pub concurrency: u32,
    /// Read units per second for the whole scan, shared evenly by the running segments.
    pub max_read_units: Option<f64>,
    /// Stop after this many items in total (a sample).
    pub max_items: Option<u64>,
    pub consistent_read: bool,
    pub classification: Classification,
    pub key_attributes: Vec<String>,
    pub retry: RetryPolicy,
    pub progress_every: Duration,
}

impl InferSettings {
    /// The read-unit rate of one segment: the budget divided by the segments that can run at once,
    /// so the sum over running segments never exceeds it.
    pub fn segment_read_units(&self) -> Option<f64> {
        let running = self.concurrency.min(self.segments).max(1);
        self.max_read_units.map(|r| r / f64::from(running))
    }
}

/// The merged result of a scan.
#[derive(Debug, Clone)]
pub struct InferScan {
    pub inference: Inference,
    /// Items summarised.
    pub items: u64,
    /// False when `max_items` stopped the scan before the table's end.
    pub complete: bool,
    pub read_units: f64,
    pub pages: u64,
    pub retries: u64,
    pub duration: Duration,
}

/// Scans `settings.table` and summarises every item.
pub async fn scan_and_infer(
    client: &aws_sdk_dynamodb::Client,
    settings: &InferSettings,
) -> Result<InferScan, ScanError> {
    let started = Instant::now();
    let counters = Arc::new(ScanCounters::default());
    let claimed = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicU32::new(0));
    let permits = Arc::new(Semaphore::new(
        settings.concurrency.min(settings.segments).max(1) as usize,
    ));
    let mut tasks = JoinSet::new();
    for segment in 0..settings.segments {
        let client = client.clone();
        let counters = counters.clone();
        let claimed = claimed.clone();
        let finished = finished.clone();
        let permits = permits.clone();
        let settings = settings.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("never closed");
            let limit_reached = settings
                .max_items
                .is_some_and(|max| claimed.load(Ordering::Relaxed) >= max);
            let outcome = if limit_reached {
                Ok(SegmentOutcome::default())
            } else {
                infer_segment(&client, &settings, segment, &counters, &claimed).await
            };
            if let Ok(o) = &outcome {
                finished.fetch_add(1, Ordering::Relaxed);
                tracing::info!(table = %settings.table, segment, segments = settings.segments,
                    items = o.items, stopped_early = o.stopped, "segment summarised");
            }
            (segment, outcome)
        });
    }

    let mut parts: Vec<Option<SegmentOutcome>> = vec![None; settings.segments as usize];
    {
        let reporter = report_progress(&counters, &finished, settings, started);
        tokio::pin!(reporter);
        loop {
            let next = tokio::select! {
                next = tasks.join_next() => next,
                _ = &mut reporter => unreachable!("the reporter never finishes"),
            };
            let Some(joined) = next else { break };
            let (segment, outcome) = joined.expect("segment tasks do not panic");
            match outcome {
                Ok(o) => parts[segment as usize] = Some(o),
                Err(e) => {
                    // The other segments would only spend read capacity on a failed job.
                    tasks.abort_all();
                    return Err(e);
                }
            }
        }
    }

    // Merge in segment order: the result is the same in any order, this just makes it obvious.
    let mut inference = Inference::default();
    let mut stopped = false;
    for part in parts.into_iter().flatten() {
        inference.merge(&part.inference);
        stopped |= part.stopped;
    }
    let items = match settings.max_items {
        Some(max) => claimed.load(Ordering::Relaxed).min(max),
        None => claimed.load(Ordering::Relaxed),
    };
    // Reaching the limit exactly at the table's end still counts as a sample: whether more items
    // exist is unknown.
    let complete = !stopped && settings.max_items.is_none_or(|max| items < max);
    Ok(InferScan {
        inference,
        items,
        complete,
        read_units: counters.read_units(),
        pages: counters.pages.load(Ordering::Relaxed),
        retries: counters.retries.load(Ordering::Relaxed),
        duration: started.elapsed(),
    })
}

#[derive(Debug, Clone, Default)]
struct SegmentOutcome {
    inference: Inference,
    items: u64,
    /// The item limit was reached while this segment still had pages.
    stopped: bool,
    /// Why a page's items could not be read, if one could not.
    bad_page: Option<String>,
}

async fn infer_segment(
    client: &aws_sdk_dynamodb::Client,
    settings: &InferSettings,
    segment: u32,
    counters: &Arc<ScanCounters>,
    claimed: &AtomicU64,
) -> Result<SegmentOutcome, ScanError> {
    let spec = ScanSpec {
        table: settings.table.clone(),
        segment,
        total_segments: settings.segments,
        consistent_read: settings.consistent_read,
        max_read_units: settings.segment_read_units(),
        key_attributes: settings.key_attributes.clone(),
        retry: settings.retry,
    };
    let (tx, mut rx) = mpsc::channel::<RawPage>(PAGES_IN_FLIGHT);
    let scan = async move {
        let result = scan_segment(client, &spec, counters, &tx).await;
        drop(tx);
        result
    };
    let summarise = async {
        let mut out = SegmentOutcome::default();
        'pages: while let Some(page) = rx.recv().await {
            let items = match page.items() {
                Ok(items) => items,
                Err(e) => {
                    out.bad_page = Some(e.to_string());
                    break 'pages;
                }
            };
            for item in &items {
                let n = claimed.fetch_add(1, Ordering::Relaxed);
                if settings.max_items.is_some_and(|max| n >= max) {
                    out.stopped = true;
                    break 'pages;
                }
                out.inference.observe(item, &settings.classification);
                out.items += 1;
            }
        }
        // Closing the channel tells the scan to stop at its next page.
        drop(rx);
        out
    };
    let (scanned, mut out) = tokio::join!(scan, summarise);
    if let Some(problem) = out.bad_page.take() {
        return Err(ScanError::Request {
            table: settings.table.clone(),
            segment,
            total_segments: settings.segments,
            last_key: None,
            detail: format!("a page's items cannot be read: {problem}"),
            retriable: false,
        });
    }
    match scanned {
        Ok(()) => Ok(out),
        Err(ScanError::Downstream { .. }) if out.stopped => Ok(out),
        Err(e) => Err(e),
    }
}

async fn report_progress(
    counters: &ScanCounters,
    finished: &AtomicU32,
    settings: &InferSettings,
    started: Instant,
) {
    let mut ticker = tokio::time::interval(settings.progress_every);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let items = counters.items.load(Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64().max(0.001);
        tracing::info!(
            table = %settings.table,
            items,
            pages = counters.pages.load(Ordering::Relaxed),
            read_units = counters.read_units(),
            items_per_sec = (items as f64 / secs).round(),
            segments_done = finished.load(Ordering::Relaxed),
            segments = settings.segments,
            throttled = counters.throttled.load(Ordering::Relaxed),
            "scanning for data-schema inference"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(segments: u32, concurrency: u32, budget: Option<f64>) -> InferSettings {
        InferSettings {
            table: "t".into(),
            segments,
            concurrency,
            max_read_units: budget,
            max_items: None,
            consistent_read: false,
            classification: Classification {
                attribute: "pk".into(),
                delimiter: Some('#'),
            },
            key_attributes: vec!["pk".into()],
            retry: RetryPolicy::default(),
            progress_every: Duration::from_secs(10),
        }
    }

    #[test]
    fn the_budget_is_split_over_the_segments_running_at_once() {
        assert_eq!(settings(8, 8, Some(80.0)).segment_read_units(), Some(10.0));
        assert_eq!(settings(8, 2, Some(80.0)).segment_read_units(), Some(40.0));
        assert_eq!(settings(2, 8, Some(80.0)).segment_read_units(), Some(40.0));
        assert_eq!(settings(4, 4, None).segment_read_units(), None);
    }
}
