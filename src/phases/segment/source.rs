//! Where a segment's pages come from: the seam in front of the pipeline. The pipeline asks a
//! [`PageSource`] for the segment's pages and does not know whether they are Scan responses or
//! lines of an export's data files; the unit tests put a scripted source here.

use futures::future::BoxFuture;
use std::sync::Arc;
use tokio::sync::mpsc;

use super::{Job, SegmentError};
use crate::phases::Context;
use crate::source::export::{read_segment, Export, ExportKind, ExportSource};
use crate::source::page::parse_key;
use crate::source::{scan_segment, DynamoDb, Message, ScanCounters, ScanEnd, ScanError, ScanSpec};
use crate::staging::checkpoint::Checkpoint;
use crate::stop::Stop;
use crate::storage::Store;

/// Sends one segment's pages, in order, as [`Message::Page`]s, counting them in the counters;
/// stops between pages when a stop is requested. Returns how it ended; the pipeline sends that
/// down the channel after the last page.
pub trait PageSource: Send + Sync {
    fn read<'a>(
        &'a self,
        counters: &'a Arc<ScanCounters>,
        pages: &'a mpsc::Sender<Message>,
    ) -> BoxFuture<'a, Result<ScanEnd, ScanError>>;
}

/// The source a run's plan names: its export (full, or incremental for an increment run), else a
/// Scan of the table from the checkpoint's key, when the segment resumes.
pub(super) fn open(
    ctx: &Context,
    job: &Job,
    resume: Option<&Checkpoint>,
) -> Result<Box<dyn PageSource>, SegmentError> {
    let plan = job.plan;
    if let Some(source) = &plan.export {
        let store = ctx
            .store_of(&source.bucket)
            .map_err(|e| job.internal(e.to_string()))?;
        return Ok(Box::new(ExportFiles {
            store,
            source: source.clone(),
            kind: match plan.increment {
                Some(_) => ExportKind::Incremental,
                None => ExportKind::Full,
            },
            run_id: plan.run_id.clone(),
            table: plan.source_table.clone(),
            segments: (job.segment, plan.total_segments),
            stop: job.stop.clone(),
        }));
    }
    if plan.increment.is_some() {
        return Err(job.internal("an increment run's plan names no incremental export".into()));
    }
    let start_key = match resume {
        Some(c) => Some(parse_key(&c.resume_key).map_err(|e| {
            job.internal(format!(
                "its checkpoint's resume key cannot be read ({e}); run the segment with --restart"
            ))
        })?),
        None => None,
    };
    Ok(Box::new(TableScan {
        dynamodb: ctx.dynamodb.clone(),
        spec: ScanSpec {
            table: plan.source_table.clone(),
            segment: job.segment,
            total_segments: plan.total_segments,
            consistent_read: job.settings.consistent_read,
            max_read_units: job.settings.max_read_units,
            key_attributes: plan.key_attributes.clone(),
            retry: ctx.retry,
            start_key,
            page_items: job.settings.page_items,
            stop: job.stop.clone(),
        },
    }))
}

/// A parallel Scan of the table (`source::scan`).
struct TableScan {
    dynamodb: DynamoDb,
    spec: ScanSpec,
}

impl PageSource for TableScan {
    fn read<'a>(
        &'a self,
        counters: &'a Arc<ScanCounters>,
        pages: &'a mpsc::Sender<Message>,
    ) -> BoxFuture<'a, Result<ScanEnd, ScanError>> {
        Box::pin(scan_segment(&self.dynamodb, &self.spec, counters, pages))
    }
}

/// The segment's share of an export's data files (`source::export`). It takes no checkpoints:
/// a retry reads its files from the start.
struct ExportFiles {
    store: Store,
    source: ExportSource,
    kind: ExportKind,
    run_id: String,
    table: String,
    /// This segment and the run's total.
    segments: (u32, u32),
    stop: Stop,
}

impl PageSource for ExportFiles {
    fn read<'a>(
        &'a self,
        counters: &'a Arc<ScanCounters>,
        pages: &'a mpsc::Sender<Message>,
    ) -> BoxFuture<'a, Result<ScanEnd, ScanError>> {
        Box::pin(async move {
            let export = Export::open_kind(self.store.as_ref(), &self.source, self.kind).await?;
            tracing::info!(run_id = %self.run_id, segment = self.segments.0, export = %self.source.url(),
                "reading the export in place of a scan; export segments take no checkpoints, so a retry reads its files from the start");
            read_segment(
                self.store.as_ref(),
                &export,
                self.segments,
                &self.stop,
                counters,
                pages,
                &self.table,
            )
            .await
        })
    }
}

/// Change lines held in memory (a batch of `follow`), sent as pages of about 1 MB.
pub struct ChangeLines {
    pages: Vec<(bytes::Bytes, u64)>,
    stop: Stop,
    table: String,
}

impl ChangeLines {
    /// `lines`: each one change line as an incremental export writes it (`Keys`, `NewImage`,
    /// `Metadata`), in the order they are to be applied.
    pub fn new(lines: &[Vec<u8>], stop: Stop, table: &str) -> ChangeLines {
        const PAGE_BYTES: usize = 1 << 20;
        let mut pages = Vec::new();
        let mut page: Vec<u8> = Vec::new();
        let mut count = 0u64;
        for line in lines {
            page.push(if count == 0 { b'[' } else { b',' });
            page.extend_from_slice(line);
            count += 1;
            if page.len() >= PAGE_BYTES {
                page.push(b']');
                pages.push((bytes::Bytes::from(std::mem::take(&mut page)), count));
                count = 0;
            }
        }
        if count > 0 {
            page.push(b']');
            pages.push((bytes::Bytes::from(page), count));
        }
        ChangeLines {
            pages,
            stop,
            table: table.to_string(),
        }
    }
}

impl PageSource for ChangeLines {
    fn read<'a>(
        &'a self,
        counters: &'a Arc<ScanCounters>,
        pages: &'a mpsc::Sender<Message>,
    ) -> BoxFuture<'a, Result<ScanEnd, ScanError>> {
        Box::pin(async move {
            use std::sync::atomic::Ordering;
            for (bytes, count) in &self.pages {
                if self.stop.is_requested() {
                    return Ok(ScanEnd::Stopped);
                }
                counters.pages.fetch_add(1, Ordering::Relaxed);
                counters.items.fetch_add(*count, Ordering::Relaxed);
                let page = crate::source::page::RawPage::of_items(bytes.clone(), *count);
                if pages.send(Message::Page(page)).await.is_err() {
                    return Err(ScanError::Downstream {
                        table: self.table.clone(),
                        segment: 0,
                    });
                }
            }
            Ok(ScanEnd::Finished)
        })
    }
}
