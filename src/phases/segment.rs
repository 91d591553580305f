//! Phase 1: scan segment k of N, classify and convert every item, write compressed CSV parts per
//! table, and commit the segment with its manifest.
//!
//! Idempotent: the segment's prefix is emptied first (manifest first, so a half-deleted segment is
//! never mistaken for a committed one) and the manifest is written last, after every part object
//! is complete. A failed run therefore leaves no manifest, and a rerun leaves exactly the objects
//! of a fresh run.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use super::plan::{plan_or_resume, RunRequest};
use super::Context;
use crate::error::{Class, Classify, Error};
use crate::source::page::RawPage;
use crate::source::{scan_segment, ScanCounters, ScanError, ScanSpec};
use crate::staging::commands::Step;
use crate::staging::manifest::{
    Rejection, SegmentManifest, TableDrift, TableOutput, MANIFEST_FORMAT,
};
use crate::staging::parts::writer::{upload_chunks, Chunk, PartSettings, PartWriter, Uploaded};
use crate::staging::plan::RunPlan;
use crate::staging::Staging;
use crate::storage::{abort_uploads, delete_prefix, StoreError};
use crate::transform::Transformer;

/// How phase 1 reads and shapes its output.
#[derive(Debug, Clone, Copy)]
pub struct SegmentSettings {
    pub parts: PartSettings,
    pub consistent_read: bool,
    /// Read units per second for this segment.
    pub max_read_units: Option<f64>,
    /// How often progress is logged.
    pub progress_every: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("segment {segment} of run {run_id}: {problem}")]
    Internal {
        run_id: String,
        segment: u32,
        problem: String,
    },
}

impl Classify for SegmentError {
    fn class(&self) -> Class {
        match self {
            SegmentError::Scan(e) => e.class(),
            SegmentError::Store(e) => e.class(),
            SegmentError::Internal { .. } => Class::Fatal,
        }
    }
}

/// Pages waiting for the transform (each at most 1 MB of items).
const PAGES_IN_FLIGHT: usize = 2;

/// What the transform thread hands back.
struct TransformResult {
    tables: BTreeMap<String, TableOutput>,
    rejected: Vec<Rejection>,
    drift: BTreeMap<String, TableDrift>,
    items: u64,
}

/// `segment` and `retry phase-1`: plans the run unless it has a plan (which must agree with the
/// request), then runs phase 1 for one segment.
pub async fn segment(
    ctx: &Context,
    request: RunRequest<'_>,
    settings: &SegmentSettings,
    segment: u32,
) -> Result<SegmentManifest, Error> {
    let total = request.total_segments.unwrap_or(0);
    if segment >= total {
        return Err(Error::fatal(format!(
            "segment {segment} does not exist: segments are numbered 0 to {} for {total} total segments",
            total.saturating_sub(1)
        )));
    }
    let plan = plan_or_resume(ctx, request).await?.plan;
    tracing::info!(run_id = %plan.run_id, table = %plan.source_table, segment,
        total_segments = plan.total_segments, "phase 1 starting");
    run_segment(
        ctx,
        settings,
        &plan,
        segment,
        Arc::new(ScanCounters::default()),
    )
    .await
}

/// Runs phase 1 for one segment and returns the committed manifest. `counters` show progress
/// while it runs. A failure names the command that retries the segment.
pub async fn run_segment(
    ctx: &Context,
    settings: &SegmentSettings,
    plan: &RunPlan,
    segment: u32,
    counters: Arc<ScanCounters>,
) -> Result<SegmentManifest, Error> {
    scan_and_commit(ctx, settings, plan, segment, counters)
        .await
        .map_err(|e| {
            Error::from(e)
                .context(format!(
                    "phase 1 for segment {segment} of run {} did not commit",
                    plan.run_id
                ))
                .next(ctx.runbook(&plan.run_id, None).command(Step::RetryPhase1 {
                    total_segments: plan.total_segments,
                    segment,
                }))
        })
}

async fn scan_and_commit(
    ctx: &Context,
    settings: &SegmentSettings,
    plan: &RunPlan,
    segment: u32,
    counters: Arc<ScanCounters>,
) -> Result<SegmentManifest, SegmentError> {
    let internal = |problem: String| SegmentError::Internal {
        run_id: plan.run_id.clone(),
        segment,
        problem,
    };
    if segment >= plan.total_segments {
        return Err(internal(format!(
            "segment must be below the run's {} total segments",
            plan.total_segments
        )));
    }
    let started = Instant::now();
    let started_at = chrono::Utc::now().to_rfc3339();
    let staging = ctx.staging().map_err(|e| internal(e.to_string()))?;
    clear(staging, &plan.run_id, segment).await?;
    let out = stream(ctx, staging, settings, plan, segment, &counters, started).await?;
    let manifest = SegmentManifest {
        format: MANIFEST_FORMAT,
        run_id: plan.run_id.clone(),
        source_table: plan.source_table.clone(),
        segment,
        total_segments: plan.total_segments,
        schema_source: plan.schema_source.clone(),
        tables: out.tables,
        items_scanned: out.items,
        items_rejected: out.rejected,
        drift: out.drift,
        read_units: counters.read_units(),
        pages: counters.pages.load(Ordering::Relaxed),
        retries: counters.retries.load(Ordering::Relaxed) + staging.store.retries(),
        started_at,
        finished_at: chrono::Utc::now().to_rfc3339(),
        duration_ms: started.elapsed().as_millis() as u64,
    };
    manifest.check_accounting().map_err(internal)?;
    let scanned = counters.items.load(Ordering::Relaxed);
    if scanned != manifest.items_scanned {
        return Err(internal(format!(
            "{scanned} items were scanned but {} reached the transform",
            manifest.items_scanned
        )));
    }
    let key = staging.layout.segment_manifest(&plan.run_id, segment);
    staging
        .store
        .put(&key, manifest.to_json().into(), "application/json")
        .await?;
    for r in &manifest.items_rejected {
        tracing::warn!(run_id = %plan.run_id, segment, key = %r.key, reason = %r.reason,
            "item rejected; it is listed in the manifest");
    }
    Ok(manifest)
}

/// Un-commits the segment (its manifest first, so a crash in between leaves no manifest), then
/// removes everything an earlier attempt wrote under its prefix, the multipart uploads a killed
/// attempt left unfinished included (S3 keeps, and bills, their parts until they are aborted).
async fn clear(staging: &Staging, run_id: &str, segment: u32) -> Result<(), SegmentError> {
    let manifest_key = staging.layout.segment_manifest(run_id, segment);
    let prefix = staging.layout.segment(run_id, segment);
    staging
        .store
        .delete_keys(std::slice::from_ref(&manifest_key))
        .await?;
    let aborted = abort_uploads(staging.store.as_ref(), &prefix).await?;
    let removed = delete_prefix(staging.store.as_ref(), &prefix).await?;
    if removed > 0 || aborted > 0 {
        tracing::info!(
            run_id,
            segment,
            removed,
            aborted_uploads = aborted,
            "removed the output of an earlier attempt"
        );
    }
    Ok(())
}

/// The pipeline of one segment: scan → transform thread → uploader, with bounded channels
/// between them. Returns what the transform wrote once every part object is complete.
async fn stream(
    ctx: &Context,
    staging: &Staging,
    settings: &SegmentSettings,
    plan: &RunPlan,
    segment: u32,
    counters: &Arc<ScanCounters>,
    started: Instant,
) -> Result<TransformResult, SegmentError> {
    let schemas = plan.schema_set().map_err(|e| SegmentError::Internal {
        run_id: plan.run_id.clone(),
        segment,
        problem: e.to_string(),
    })?;
    let transformer = Transformer::new(
        &schemas,
        &plan.key_attributes,
        crate::warehouse::limits(plan.dialect),
    );
    let (page_tx, page_rx) = mpsc::channel::<RawPage>(PAGES_IN_FLIGHT);
    let (chunk_tx, chunk_rx) = mpsc::channel::<Chunk>(1);
    let uploader = tokio::spawn(upload_chunks(
        staging.store.clone(),
        chunk_rx,
        settings.parts.max_in_flight,
    ));
    let scan_ok = Arc::new(AtomicBool::new(false));
    let transform = {
        let scan_ok = scan_ok.clone();
        let layout = staging.layout.clone();
        let parts = settings.parts;
        let run_id = plan.run_id.clone();
        tokio::task::spawn_blocking(move || {
            transform_pages(
                transformer,
                page_rx,
                chunk_tx,
                parts,
                &scan_ok,
                move |table, index| layout.part(&run_id, segment, table, index, parts.compression),
            )
        })
    };
    let spec = ScanSpec {
        table: plan.source_table.clone(),
        segment,
        total_segments: plan.total_segments,
        consistent_read: settings.consistent_read,
        max_read_units: settings.max_read_units,
        key_attributes: plan.key_attributes.clone(),
        retry: ctx.retry,
    };
    let scan = async {
        let result = scan_segment(&ctx.dynamodb, &spec, counters, &page_tx).await;
        // Tell the transform how the scan ended before it sees the channel close: after a failed
        // scan it must not finish (and so commit) the parts.
        scan_ok.store(result.is_ok(), Ordering::SeqCst);
        drop(page_tx);
        result
    };
    let reporter = report_progress(
        counters,
        &plan.run_id,
        segment,
        settings.progress_every,
        started,
    );
    let scanned = tokio::select! {
        r = scan => r,
        _ = reporter => unreachable!("the reporter never finishes"),
    };
    let transformed = transform.await.expect("transform thread does not panic");
    let uploaded = uploader.await.expect("uploader does not panic");
    first_cause(plan, segment, scanned, transformed, uploaded)
}

/// The outcome of a segment's three stages: the cause of a failure, not the knock-on "pipeline
/// stopped" errors of the other stages.
fn first_cause(
    plan: &RunPlan,
    segment: u32,
    scanned: Result<(), ScanError>,
    transformed: Result<TransformResult, TransformStop>,
    uploaded: Result<Uploaded, StoreError>,
) -> Result<TransformResult, SegmentError> {
    let internal = |problem: String| SegmentError::Internal {
        run_id: plan.run_id.clone(),
        segment,
        problem,
    };
    match (scanned, transformed, uploaded) {
        (Ok(()), Ok(mut t), Ok(done)) => {
            for file in t.tables.values_mut().flat_map(|o| o.files.iter_mut()) {
                match done.get(&file.key) {
                    Some(etag) => file.etag = etag.clone(),
                    None => {
                        return Err(internal(format!(
                            "part {} was written but its upload did not complete",
                            file.key
                        )))
                    }
                }
            }
            Ok(t)
        }
        (_, Err(TransformStop::BadPage(problem)), _) => Err(internal(format!(
            "table {}: {problem}; DynamoDB should never send such a page: retry the segment \
             and report it if it happens again",
            plan.source_table
        ))),
        (Err(e), _, _) if !matches!(e, ScanError::Downstream { .. }) => Err(e.into()),
        (_, _, Err(e)) => Err(e.into()),
        (_, Err(TransformStop::Downstream), _) | (Err(_), _, _) => {
            Err(internal("the transform stopped without a result".into()))
        }
    }
}

/// Why the transform thread stopped early.
enum TransformStop {
    /// The uploader or the scan failed; their error is reported instead.
    Downstream,
    /// A page's items could not be read.
    BadPage(String),
}

/// The transform thread: pages in, chunks out.
fn transform_pages(
    mut transformer: Transformer,
    mut pages: mpsc::Receiver<RawPage>,
    chunks: mpsc::Sender<Chunk>,
    settings: PartSettings,
    scan_ok: &AtomicBool,
    key_of: impl Fn(&str, u32) -> String + Send + Sync + Clone + 'static,
) -> Result<TransformResult, TransformStop> {
    let names: Vec<String> = transformer.tables().map(|s| s.table.clone()).collect();
    let overflow_table = transformer.overflow_table();
    let mut writers: Vec<Option<PartWriter>> = (0..names.len()).map(|_| None).collect();
    let mut rejected = Vec::new();
    let mut items = 0u64;
    let mut page_number = 0u64;
    while let Some(page) = pages.blocking_recv() {
        page_number += 1;
        let page_items = page.items().map_err(|e| {
            TransformStop::BadPage(format!(
                "scan page {page_number} (after {items} items) cannot be read: {e}"
            ))
        })?;
        for item in &page_items {
            items += 1;
            match transformer.convert(item) {
                Ok(row) => {
                    let mut write = |table: usize, fields: &[Option<Cow<str>>]| {
                        writers[table]
                            .get_or_insert_with(|| {
                                let name = names[table].clone();
                                let key_of = key_of.clone();
                                PartWriter::new(
                                    Box::new(move |index| key_of(&name, index)),
                                    settings,
                                    chunks.clone(),
                                )
                            })
                            .write_row(fields)
                            .map_err(|_| TransformStop::Downstream)
                    };
                    write(row.table, &row.fields)?;
                    for fields in &row.overflow {
                        write(overflow_table, fields)?;
                    }
                }
                Err(rejection) => rejected.push(rejection),
            }
        }
    }
    if !scan_ok.load(Ordering::SeqCst) {
        // Dropping the writers leaves their parts unfinished; the uploader aborts them.
        return Err(TransformStop::Downstream);
    }
    let mut tables = BTreeMap::new();
    for (name, writer) in names.into_iter().zip(writers) {
        let output = match writer {
            Some(w) => w.finish().map_err(|_| TransformStop::Downstream)?,
            None => TableOutput::default(),
        };
        tables.insert(name, output);
    }
    Ok(TransformResult {
        tables,
        rejected,
        drift: transformer.drift(),
        items,
    })
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
