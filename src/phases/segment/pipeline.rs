//! The shape every phase-1 pipeline shares, whatever its source and its transform:
//!
//! ```text
//! PageSource ──Message (≤ 2 pages)──> transform thread (a Stage) ──Upload (≤ 1)──> uploader
//! (async task)                        (spawn_blocking: CPU-bound)                  (≤ N chunks on the wire)
//! ```
//!
//! The source's end travels down the page channel as [`Message::End`] after its last page, so the
//! transform knows, from the channel alone, whether to finish its parts (the source finished), to
//! checkpoint them (it stopped), or to leave them unfinished (the channel closed without an end:
//! the source failed). [`first_cause`] then picks, of the three stages' results, the error that
//! caused the others.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use super::source::PageSource;
use super::{Job, SegmentError, TransformResult};
use crate::source::page::RawPage;
use crate::source::{Finished, Message, ScanCounters, ScanEnd, ScanError, Stopped};
use crate::staging::checkpoint::Checkpoint;
use crate::staging::parts::writer::{upload_chunks, Upload, Uploaded};
use crate::storage::StoreError;

/// Pages waiting for the transform (each at most 1 MB of items).
const PAGES_IN_FLIGHT: usize = 2;

/// The transform thread's work, page by page.
pub(super) trait Stage: Send + 'static {
    /// Transforms one page's items into rows of the part writers.
    fn page(&mut self, page: RawPage) -> Result<(), TransformStop>;
    /// The source finished: closes every part and says what was written.
    fn finish(self) -> Result<TransformResult, TransformStop>;
    /// The source stopped (`failed`: or failed) after the pages given so far: saves what can be
    /// saved and says why the transform ended without a result.
    fn stopped(self, failed: bool) -> TransformStop;
}

/// Why the transform thread stopped early.
#[derive(Debug)]
pub(super) enum TransformStop {
    /// The uploader or the source failed; their error is reported instead.
    Downstream,
    /// A page's items could not be read.
    BadPage(String),
    /// A change cannot be applied: the message says why and what to do.
    Refused(String),
    /// The source stopped or failed after `items` items; `checkpointed`: they are all in a
    /// checkpoint handed to the uploader.
    Stopped { items: u64, checkpointed: bool },
}

/// The channel from the transform to the uploader: the stage is built with its sender.
pub(super) fn chunk_channel() -> (mpsc::Sender<Upload>, mpsc::Receiver<Upload>) {
    mpsc::channel(1)
}

/// Runs one segment's pipeline: `source` → `stage` on the transform thread → the uploader
/// reading `uploads`. `resume` is the checkpoint the segment goes on from, whose parts are
/// complete already. Returns what the stage wrote once every part object is complete.
pub(super) async fn run<S: Stage>(
    job: &Job<'_>,
    resume: Option<&Checkpoint>,
    source: &dyn PageSource,
    stage: S,
    uploads: mpsc::Receiver<Upload>,
) -> Result<TransformResult, SegmentError> {
    let (page_tx, page_rx) = mpsc::channel::<Message>(PAGES_IN_FLIGHT);
    let uploader = tokio::spawn(upload_chunks(
        job.staging.store.clone(),
        uploads,
        job.settings.parts.max_in_flight,
    ));
    let transform = tokio::task::spawn_blocking(move || drive(stage, page_rx));
    let read = async move {
        let end = source.read(&job.counters, &page_tx).await;
        if let Ok(how) = &end {
            // A transform that is gone has failed; its result says why.
            let _ = page_tx.send(Message::End(*how)).await;
        }
        end
    };
    let reporter = report_progress(
        &job.counters,
        &job.plan.run_id,
        job.segment,
        job.settings.progress_every,
        Instant::now(),
    );
    let scanned = tokio::select! {
        r = read => r,
        _ = reporter => unreachable!("the reporter never finishes"),
    };
    let transformed = transform
        .await
        .expect("the transform thread does not panic");
    let uploaded = uploader.await.expect("the uploader does not panic");
    first_cause(job, scanned, transformed, uploaded, resume)
}

/// The transform thread: pages until the source's end, or until the channel closes without one.
fn drive<S: Stage>(
    mut stage: S,
    mut pages: mpsc::Receiver<Message>,
) -> Result<TransformResult, TransformStop> {
    loop {
        match pages.blocking_recv() {
            Some(Message::Page(page)) => stage.page(page)?,
            Some(Message::End(Finished)) => return stage.finish(),
            Some(Message::End(Stopped)) => return Err(stage.stopped(false)),
            None => return Err(stage.stopped(true)),
        }
    }
}

/// The outcome of a segment's three stages: the cause of a failure, not the knock-on "pipeline
/// stopped" errors of the other stages.
fn first_cause(
    job: &Job,
    scanned: Result<ScanEnd, ScanError>,
    transformed: Result<TransformResult, TransformStop>,
    uploaded: Result<Uploaded, StoreError>,
    resume: Option<&Checkpoint>,
) -> Result<TransformResult, SegmentError> {
    let plan = job.plan;
    let restored: HashSet<&str> = resume.map(|c| c.part_keys().collect()).unwrap_or_default();
    match (scanned, transformed, uploaded) {
        (Ok(Finished), Ok(mut t), Ok(done)) => {
            for file in t.tables.values_mut().flat_map(|o| o.files.iter_mut()) {
                match done.get(&file.key) {
                    Some(etag) => file.etag = etag.clone(),
                    None if restored.contains(file.key.as_str()) => {}
                    None => {
                        return Err(job.internal(format!(
                            "part {} was written but its upload did not complete",
                            file.key
                        )))
                    }
                }
            }
            Ok(t)
        }
        (_, Err(TransformStop::BadPage(problem)), _) => Err(job.internal(format!(
            "table {}: {problem}; DynamoDB should never send such a page: retry the segment \
             and report it if it happens again",
            plan.source_table
        ))),
        (_, Err(TransformStop::Refused(problem)), _) => Err(job.internal(problem)),
        (
            Ok(Stopped),
            Err(TransformStop::Stopped {
                items,
                checkpointed,
            }),
            uploaded,
        ) => Err(SegmentError::Interrupted {
            run_id: plan.run_id.clone(),
            segment: job.segment,
            why: job.stop.why().unwrap_or_else(|| "stop requested".into()),
            items,
            checkpointed: checkpointed && uploaded.is_ok(),
        }),
        (Err(e), _, _) if !matches!(e, ScanError::Downstream { .. }) => Err(e.into()),
        (_, _, Err(e)) => Err(e.into()),
        (_, Err(TransformStop::Downstream | TransformStop::Stopped { .. }), _) | (Err(_), _, _) => {
            Err(job.internal("the transform stopped without a result".into()))
        }
        (Ok(Stopped), Ok(_), _) => {
            Err(job.internal("the scan stopped but the transform finished".into()))
        }
    }
}

async fn report_progress(
    counters: &ScanCounters,
    run_id: &str,
    segment: u32,
    every: Duration,
    started: Instant,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let items = counters.items.load(Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64().max(0.001);
        tracing::info!(
            run_id,
            segment,
            items,
            pages = counters.pages.load(Ordering::Relaxed),
            read_units = counters.read_units(),
            items_per_sec = (items as f64 / secs).round(),
            throttled = counters.throttled.load(Ordering::Relaxed),
            "scanning"
        );
    }
}
