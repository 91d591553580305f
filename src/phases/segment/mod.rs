//! Phase 1, `segment`: scan segment k of N (or read its share of an export, or of an
//! incremental export for an increment run), classify and convert every item, write compressed
//! CSV parts per table, and commit the segment with its manifest.
//!
//! Restartable: the manifest is written last, after every part object is complete, so a failed
//! run leaves none. Along the way the segment takes checkpoints (see `staging::checkpoint`): a
//! rerun of a segment that has one keeps the parts it names, deletes whatever else is under the
//! segment and scans on from its key; without one (or with `--restart`, or for a segment that was
//! committed already) the segment's prefix is emptied first, manifest first, and the scan starts
//! from the first page. On SIGTERM the scan stops before its next page, the pages it has are
//! written and checkpointed, and the segment ends with a retry-class error.
//!
//! The pieces, in the order an item meets them:
//!
//! - [`source`]: where pages come from — the seam [`source::PageSource`], implemented by the
//!   DynamoDB scan and by an export's data files (and by a scripted double in the unit tests);
//! - [`pipeline`]: the shape every phase-1 pipeline shares — the source on the async side, a
//!   transform thread, the uploader, bounded channels between them, the end of the source sent
//!   down the page channel, and which stage's error is the cause;
//! - [`items`]: the transform of a full copy (items → table parts, with checkpoints);
//! - [`changes`]: the transform of an increment (change lines → the increment layout's parts);
//! - this module: the segment's prefix made ready, the pipeline run, the manifest committed.

mod changes;
mod items;
mod pipeline;
pub mod source;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::plan::{plan_or_resume, RunRequest};
use super::Context;
use crate::error::{Class, Classify, Error};
use crate::source::{ScanCounters, ScanError};
use crate::staging::checkpoint::{self, Checkpoint, Found};
use crate::staging::commands::Step;
use crate::staging::fingerprint::FINGERPRINT_METHOD;
use crate::staging::manifest::{
    Rejection, Resumed, SegmentManifest, TableDrift, TableOutput, MANIFEST_FORMAT,
};
use crate::staging::parts::writer::PartSettings;
use crate::staging::plan::RunPlan;
use crate::staging::Staging;
use crate::stop::Stop;
use crate::storage::{abort_uploads, StoreError};
use source::PageSource;

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
    run_segment_from(ctx, settings, plan, segment, counters, None).await
}

/// [`run_segment`] reading the pages `given` sends instead of the source the plan names (a batch
/// of `follow` hands over the change lines it read from the stream).
pub async fn run_segment_from(
    ctx: &Context,
    settings: &SegmentSettings,
    plan: &RunPlan,
    segment: u32,
    counters: Arc<ScanCounters>,
    given: Option<Box<dyn PageSource>>,
) -> Result<SegmentManifest, Error> {
    let committed = async {
        let staging = ctx.staging().map_err(|e| SegmentError::Internal {
            run_id: plan.run_id.clone(),
            segment,
            problem: e.to_string(),
        })?;
        let job = Job {
            staging,
            plan,
            segment,
            settings: *settings,
            counters,
            stop: &ctx.stop,
            fingerprints: true,
        };
        commit(job, |job, resume| match given {
            Some(source) => Ok(source),
            None => source::open(ctx, job, resume),
        })
        .await
    };
    committed.await.map_err(|e| {
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

/// One segment's phase 1: what its stages read, in one place.
pub(crate) struct Job<'a> {
    pub staging: &'a Staging,
    pub plan: &'a RunPlan,
    pub segment: u32,
    /// A resumed segment's parts keep the codec they were started with.
    pub settings: SegmentSettings,
    /// Progress, shared with whoever shows it; a resumed segment's start from its checkpoint's.
    pub counters: Arc<ScanCounters>,
    /// Asked for by a signal: the source stops before its next page.
    pub stop: &'a Stop,
    /// Whether the parts are fingerprinted (the gate's proof). Always in phase 1; only
    /// [`replay`] may leave it out, for the benchmark that measures what the proof costs.
    pub fingerprints: bool,
}

impl Job<'_> {
    /// A failure no retry fixes, naming the run and segment.
    fn internal(&self, problem: String) -> SegmentError {
        SegmentError::Internal {
            run_id: self.plan.run_id.clone(),
            segment: self.segment,
            problem,
        }
    }
}

/// Makes the segment's prefix ready, reads the pages `open` gives (the segment's checkpoint in
/// hand, when it resumes), and writes the manifest once every part is complete.
async fn commit(
    mut job: Job<'_>,
    open: impl FnOnce(&Job, Option<&Checkpoint>) -> Result<Box<dyn PageSource>, SegmentError>,
) -> Result<SegmentManifest, SegmentError> {
    let (plan, segment, staging) = (job.plan, job.segment, job.staging);
    if segment >= plan.total_segments {
        return Err(job.internal(format!(
            "segment must be below the run's {} total segments",
            plan.total_segments
        )));
    }
    let started = Instant::now();
    // An increment's segment takes no checkpoints: its retry reads its files again.
    let restart = job.settings.restart || plan.increment.is_some();
    let resume = start(staging, plan, segment, restart).await?;
    if let Some(c) = &resume {
        let codec = c.codec().map_err(|e| job.internal(e))?;
        if codec != job.settings.parts.compression {
            tracing::info!(run_id = %plan.run_id, segment, codec = codec.name(),
                "the checkpointed parts are {}: the rest of the segment is written with it too", codec.name());
        }
        job.settings.parts.compression = codec;
        let counters = &job.counters;
        counters.items.store(c.items_scanned, Ordering::Relaxed);
        counters.pages.store(c.pages, Ordering::Relaxed);
        counters
            .read_milliunits
            .store((c.read_units * 1000.0).round() as u64, Ordering::Relaxed);
        tracing::info!(run_id = %plan.run_id, segment, items = c.items_scanned, saved_at = %c.saved_at,
            "resuming segment {segment} from its checkpoint after {} items", c.items_scanned);
    }
    let resume = resume.as_deref();
    let base = Progress::of(resume);
    let source = open(&job, resume)?;
    let (chunks, uploads) = pipeline::chunk_channel();
    let out = match plan.increment {
        Some(_) => {
            let stage = changes::ChangeTransform::new(&job, chunks)?;
            pipeline::run(&job, None, source.as_ref(), stage, uploads).await?
        }
        None => {
            let stage = items::ItemTransform::new(&job, resume, chunks)?;
            pipeline::run(&job, resume, source.as_ref(), stage, uploads).await?
        }
    };
    let counters = &job.counters;
    // Fingerprinted when every table with rows has its fingerprint (an increment's too): a
    // segment resumed from the checkpoint of a version without them has parts without, and is
    // then counted only.
    let fingerprinted = out
        .tables
        .values()
        .all(|t| t.rows == 0 || t.fingerprint.is_some());
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
        retries: base.retries + counters.retries.load(Ordering::Relaxed) + staging.store.retries(),
        started_at: base.started_at,
        finished_at: chrono::Utc::now(),
        duration_ms: base.duration_ms + started.elapsed().as_millis() as u64,
        resumed: resume.map(|c| Resumed {
            items: c.items_scanned,
            read_units: c.read_units,
            saved_at: c.saved_at,
        }),
        fingerprint_method: fingerprinted.then_some(FINGERPRINT_METHOD),
    };
    manifest.check_accounting().map_err(|e| job.internal(e))?;
    let scanned = counters.items.load(Ordering::Relaxed);
    if scanned != manifest.items_scanned {
        return Err(job.internal(format!(
            "{scanned} items were scanned but {} reached the transform",
            manifest.items_scanned
        )));
    }
    let key = staging.layout.segment_manifest(&plan.run_id, segment);
    staging
        .store
        .put(&key, manifest.to_json().into(), "application/json")
        .await?;
    // The checkpoint has served; a rerun of a committed segment scans it afresh anyway.
    let checkpoint_key = staging.layout.segment_checkpoint(&plan.run_id, segment);
    if let Err(e) = staging.store.delete_keys(&[checkpoint_key]).await {
        tracing::warn!(run_id = %plan.run_id, segment, error = %e, "the segment's checkpoint could not be removed; it is ignored from now on");
    }
    for r in &manifest.items_rejected {
        tracing::warn!(run_id = %plan.run_id, segment, key = %r.key, reason = %r.reason,
            "item rejected; it is listed in the manifest");
    }
    Ok(manifest)
}

/// What a resumed segment had done before: the base of its counters and times.
pub(crate) struct Progress {
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub duration_ms: u64,
    pub retries: u64,
}

impl Progress {
    pub(crate) fn of(resume: Option<&Checkpoint>) -> Progress {
        match resume {
            Some(c) => Progress {
                started_at: c.started_at,
                duration_ms: c.duration_ms,
                retries: c.retries,
            },
            None => Progress {
                started_at: chrono::Utc::now(),
                duration_ms: 0,
                retries: 0,
            },
        }
    }
}

/// Gets the segment's prefix ready: un-commits the segment (its manifest first, so a crash in
/// between leaves no manifest), aborts the multipart uploads a killed attempt left unfinished
/// (S3 keeps, and bills, their parts until then), and deletes every object an earlier attempt
/// wrote — except, when the segment resumes, its checkpoint and the parts that names. Returns
/// that checkpoint.
async fn start(
    staging: &Staging,
    plan: &RunPlan,
    segment: u32,
    restart: bool,
) -> Result<Option<Box<Checkpoint>>, SegmentError> {
    let run_id = plan.run_id.as_str();
    let manifest_key = staging.layout.segment_manifest(run_id, segment);
    let checkpoint_key = staging.layout.segment_checkpoint(run_id, segment);
    let prefix = staging.layout.segment(run_id, segment);
    let found = staging.store.list(&prefix).await?;
    let committed = found.iter().any(|o| o.key == manifest_key);
    let resume = if committed {
        // Running a committed segment again asks for a fresh scan.
        None
    } else {
        match checkpoint::find(staging, plan, segment, &found).await? {
            Found::Resume(_) if restart => {
                tracing::info!(
                    run_id,
                    segment,
                    "ignoring the segment's checkpoint (--restart): scanning from the first page"
                );
                None
            }
            Found::Resume(c) => Some(c),
            Found::Fresh { ignored: Some(why) } => {
                tracing::warn!(
                    run_id,
                    segment,
                    "not resuming from the checkpoint {why}; scanning from the first page"
                );
                None
            }
            Found::Fresh { ignored: None } => None,
        }
    };
    staging
        .store
        .delete_keys(std::slice::from_ref(&manifest_key))
        .await?;
    let aborted = abort_uploads(staging.store.as_ref(), &prefix).await?;
    let mut keep: HashSet<&str> = HashSet::new();
    if let Some(c) = &resume {
        keep.extend(c.part_keys());
        keep.insert(checkpoint_key.as_str());
    }
    let stale: Vec<String> = found
        .iter()
        .filter(|o| o.key != manifest_key && !keep.contains(o.key.as_str()))
        .map(|o| o.key.clone())
        .collect();
    staging.store.delete_keys(&stale).await?;
    if !stale.is_empty() || aborted > 0 {
        tracing::info!(
            run_id,
            segment,
            removed = stale.len(),
            aborted_uploads = aborted,
            "removed what an earlier attempt wrote{}",
            if resume.is_some() {
                " after its checkpoint"
            } else {
                ""
            }
        );
    }
    Ok(resume)
}

/// How phase 1 reads and shapes its output.
#[derive(Debug, Clone, Copy)]
pub struct SegmentSettings {
    pub parts: PartSettings,
    pub consistent_read: bool,
    /// Read units per second for this segment.
    pub max_read_units: Option<f64>,
    /// How often progress is logged.
    pub progress_every: Duration,
    /// A checkpoint is taken at least this often (and whenever a part fills up).
    pub checkpoint_every: Duration,
    /// Ignore the segment's checkpoint and scan it from its first page.
    pub restart: bool,
    /// At most this many items per Scan page (`None`: DynamoDB's 1 MB pages).
    pub page_items: Option<u32>,
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
    #[error("segment {segment} of run {run_id} stopped ({why}) after {items} items; {}",
        if *.checkpointed { "a checkpoint holds them, and the retry goes on from there" }
        else { "the retry goes on from the last checkpoint, or from the start when there is none" })]
    Interrupted {
        run_id: String,
        segment: u32,
        why: String,
        items: u64,
        checkpointed: bool,
    },
}

impl Classify for SegmentError {
    fn class(&self) -> Class {
        match self {
            SegmentError::Scan(e) => e.class(),
            SegmentError::Store(e) => e.class(),
            SegmentError::Internal { .. } => Class::Fatal,
            SegmentError::Interrupted { .. } => Class::Retry,
        }
    }
}

/// What the transform thread hands back.
pub struct TransformResult {
    pub tables: BTreeMap<String, TableOutput>,
    pub rejected: Vec<Rejection>,
    pub drift: BTreeMap<String, TableDrift>,
    pub items: u64,
}

/// Phase 1 of `segment` over `pages` held in memory (Scan response bodies, in order), into
/// `staging`: everything phase 1 does per item and per page — parse, classify, convert within
/// the dialect's limits, CSV, compress, checksums, fingerprints, checkpoints, uploads, the
/// manifest — with the pages standing in for DynamoDB. For the per-item benchmark, which
/// measures this path as a whole; `fingerprints: false` leaves the fingerprints out (the
/// manifest then has none), so that the benchmark can tell what they cost.
#[cfg(feature = "testkit")]
pub async fn replay(
    plan: &RunPlan,
    staging: &Staging,
    segment: u32,
    settings: SegmentSettings,
    pages: Vec<crate::source::page::RawPage>,
    fingerprints: bool,
) -> Result<SegmentManifest, SegmentError> {
    struct Replay(Vec<crate::source::page::RawPage>);
    impl PageSource for Replay {
        fn read<'a>(
            &'a self,
            counters: &'a Arc<ScanCounters>,
            pages: &'a tokio::sync::mpsc::Sender<crate::source::Message>,
        ) -> futures::future::BoxFuture<'a, Result<crate::source::ScanEnd, ScanError>> {
            Box::pin(async move {
                for page in &self.0 {
                    counters.pages.fetch_add(1, Ordering::Relaxed);
                    counters.items.fetch_add(page.len(), Ordering::Relaxed);
                    let message = crate::source::Message::Page(page.clone());
                    if pages.send(message).await.is_err() {
                        return Err(ScanError::Downstream {
                            table: "replay".into(),
                            segment: 0,
                        });
                    }
                }
                Ok(crate::source::ScanEnd::Finished)
            })
        }
    }
    let stop = Stop::default();
    let job = Job {
        staging,
        plan,
        segment,
        settings,
        counters: Arc::new(ScanCounters::default()),
        stop: &stop,
        fingerprints,
    };
    commit(job, |_, _| {
        Ok(Box::new(Replay(pages)) as Box<dyn PageSource>)
    })
    .await
}
