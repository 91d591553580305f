//! Phase 1: scan segment k of N, classify and convert every item, write compressed CSV parts per
//! table, and commit the segment with its manifest.
//!
//! Restartable: the manifest is written last, after every part object is complete, so a failed
//! run leaves none. Along the way the segment takes checkpoints (see `staging::checkpoint`): a
//! rerun of a segment that has one keeps the parts it names, deletes whatever else is under the
//! segment and scans on from its key; without one (or with `--restart`, or for a segment that was
//! committed already) the segment's prefix is emptied first, manifest first, and the scan starts
//! from the first page. On SIGTERM the scan stops before its next page, the pages it has are
//! written and checkpointed, and the segment ends with a retry-class error.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub use super::phase1::{SegmentError, SegmentSettings};

use super::phase1::TransformResult;
use super::plan::{plan_or_resume, RunRequest};
use super::Context;
use crate::error::Error;
use crate::source::export::{read_segment, Export, ExportKind};
use crate::source::page::{parse_key, RawPage};
use crate::source::{scan_segment, Finished, ScanCounters, ScanEnd, ScanError, ScanSpec, Stopped};
use crate::staging::checkpoint::{self, Checkpoint, Found, CHECKPOINT_FORMAT};
use crate::staging::commands::Step;
use crate::staging::manifest::{Rejection, Resumed, SegmentManifest, TableOutput, MANIFEST_FORMAT};
use crate::staging::parts::writer::{upload_chunks, PartSettings, PartWriter, Upload, Uploaded};
use crate::staging::plan::RunPlan;
use crate::staging::Staging;
use crate::storage::{abort_uploads, ObjectStore, StoreError};
use crate::transform::Transformer;

/// Pages waiting for the transform (each at most 1 MB of items).
const PAGES_IN_FLIGHT: usize = 2;

/// How the scan ended, for the transform thread (which sees only the channel close).
const SCAN_RUNNING: u8 = 0;
const SCAN_FINISHED: u8 = 1;
const SCAN_STOPPED: u8 = 2;
const SCAN_FAILED: u8 = 3;

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
    let staging = ctx.staging().map_err(|e| internal(e.to_string()))?;
    // An increment's segment takes no checkpoints: its retry reads its files again.
    let restart = settings.restart || plan.increment.is_some();
    let resume = start(staging, plan, segment, restart).await?;
    let mut settings = *settings;
    if let Some(c) = &resume {
        let codec = c.codec().map_err(internal)?;
        if codec != settings.parts.compression {
            tracing::info!(run_id = %plan.run_id, segment, codec = codec.name(),
                "the checkpointed parts are {}: the rest of the segment is written with it too", codec.name());
        }
        settings.parts.compression = codec;
        counters.items.store(c.items_scanned, Ordering::Relaxed);
        counters.pages.store(c.pages, Ordering::Relaxed);
        counters
            .read_milliunits
            .store((c.read_units * 1000.0).round() as u64, Ordering::Relaxed);
        tracing::info!(run_id = %plan.run_id, segment, items = c.items_scanned, saved_at = %c.saved_at,
            "resuming segment {segment} from its checkpoint after {} items", c.items_scanned);
    }
    let base = Progress::of(resume.as_deref());
    let export = match &plan.export {
        Some(source) => {
            let store = ctx
                .store_of(&source.bucket)
                .map_err(|e| internal(e.to_string()))?;
            let kind = match plan.increment {
                Some(_) => ExportKind::Incremental,
                None => ExportKind::Full,
            };
            let export = Export::open_kind(store.as_ref(), source, kind)
                .await
                .map_err(ScanError::from)?;
            tracing::info!(run_id = %plan.run_id, segment, export = %source.url(),
                "reading the export in place of a scan; export segments take no checkpoints, so a retry reads its files from the start");
            Some((store, export))
        }
        None => None,
    };
    let out = stream(
        ctx,
        staging,
        &settings,
        plan,
        segment,
        &counters,
        (
            resume.as_deref(),
            export
                .as_ref()
                .map(|(store, export)| (store.as_ref(), export)),
        ),
    )
    .await?;
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
        started_at: base.started_at.clone(),
        finished_at: chrono::Utc::now().to_rfc3339(),
        duration_ms: base.duration_ms + started.elapsed().as_millis() as u64,
        resumed: resume.as_ref().map(|c| Resumed {
            items: c.items_scanned,
            read_units: c.read_units,
            saved_at: c.saved_at.clone(),
        }),
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
struct Progress {
    started_at: String,
    duration_ms: u64,
    retries: u64,
}

impl Progress {
    fn of(resume: Option<&Checkpoint>) -> Progress {
        match resume {
            Some(c) => Progress {
                started_at: c.started_at.clone(),
                duration_ms: c.duration_ms,
                retries: c.retries,
            },
            None => Progress {
                started_at: chrono::Utc::now().to_rfc3339(),
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

/// The pipeline of one segment: scan (or the export's data files, when `export` is given) →
/// transform thread → uploader, with bounded channels between them; `resume` is the checkpoint
/// a scan goes on from. Returns what the transform wrote once every part object is complete.
async fn stream(
    ctx: &Context,
    staging: &Staging,
    settings: &SegmentSettings,
    plan: &RunPlan,
    segment: u32,
    counters: &Arc<ScanCounters>,
    (resume, export): (Option<&Checkpoint>, Option<(&dyn ObjectStore, &Export)>),
) -> Result<TransformResult, SegmentError> {
    let internal = |problem: String| SegmentError::Internal {
        run_id: plan.run_id.clone(),
        segment,
        problem,
    };
    if plan.increment.is_some() {
        let (store, export) = export.ok_or_else(|| {
            internal("an increment run's plan names no incremental export".into())
        })?;
        return super::changes::stream_changes(
            staging,
            settings,
            plan,
            segment,
            counters,
            (store, export, &ctx.stop),
        )
        .await;
    }
    let schemas = plan.schema_set().map_err(|e| internal(e.to_string()))?;
    let start_key = match resume {
        Some(c) => Some(parse_key(&c.resume_key).map_err(|e| {
            internal(format!(
                "its checkpoint's resume key cannot be read ({e}); run the segment with --restart"
            ))
        })?),
        None => None,
    };
    let mut transformer = Transformer::new(
        &schemas,
        &plan.key_attributes,
        crate::warehouse::limits(plan.dialect),
    );
    if let Some(c) = resume {
        transformer.restore_drift(&c.drift);
    }
    let (page_tx, page_rx) = mpsc::channel::<RawPage>(PAGES_IN_FLIGHT);
    let (chunk_tx, chunk_rx) = mpsc::channel::<Upload>(1);
    let uploader = tokio::spawn(upload_chunks(
        staging.store.clone(),
        chunk_rx,
        settings.parts.max_in_flight,
    ));
    let scan_end = Arc::new(AtomicU8::new(SCAN_RUNNING));
    let progress = Progress::of(resume);
    let checkpoints = Checkpoints {
        key: staging.layout.segment_checkpoint(&plan.run_id, segment),
        template: Checkpoint {
            format: CHECKPOINT_FORMAT,
            run_id: plan.run_id.clone(),
            source_table: plan.source_table.clone(),
            segment,
            total_segments: plan.total_segments,
            plan_fingerprint: plan.fingerprint(),
            compression: settings.parts.compression.name().to_string(),
            resume_key: String::new(),
            tables: BTreeMap::new(),
            items_scanned: 0,
            items_rejected: Vec::new(),
            drift: BTreeMap::new(),
            read_units: 0.0,
            pages: 0,
            retries: progress.retries,
            started_at: progress.started_at,
            saved_at: String::new(),
            duration_ms: progress.duration_ms,
        },
        every: settings.checkpoint_every,
        started: Instant::now(),
        counters: counters.clone(),
        store_retries: {
            let store = staging.store.clone();
            Box::new(move || store.retries())
        },
    };
    let transform = {
        let scan_end = scan_end.clone();
        let layout = staging.layout.clone();
        let parts = settings.parts;
        let run_id = plan.run_id.clone();
        let restored = Restored::of(resume);
        tokio::task::spawn_blocking(move || {
            let key_of = move |table: &str, index| {
                layout.part(&run_id, segment, table, index, parts.compression)
            };
            Transform {
                transformer,
                chunks: chunk_tx,
                settings: parts,
                key_of,
                checkpoints,
            }
            .run(page_rx, restored, &scan_end)
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
        start_key,
        page_items: settings.page_items,
        stop: ctx.stop.clone(),
    };
    let scan = async {
        let result = match export {
            Some((store, export)) => {
                read_segment(
                    store,
                    export,
                    (segment, plan.total_segments),
                    &ctx.stop,
                    counters,
                    &page_tx,
                    &plan.source_table,
                )
                .await
            }
            None => scan_segment(&ctx.dynamodb, &spec, counters, &page_tx).await,
        };
        // Tell the transform how the scan ended before it sees the channel close: after a failed
        // scan it must not finish (and so commit) the parts, and after a stop it checkpoints.
        let end = match &result {
            Ok(Finished) => SCAN_FINISHED,
            Ok(Stopped) => SCAN_STOPPED,
            Err(_) => SCAN_FAILED,
        };
        scan_end.store(end, Ordering::SeqCst);
        drop(page_tx);
        result
    };
    let reporter = report_progress(
        counters,
        &plan.run_id,
        segment,
        settings.progress_every,
        Instant::now(),
    );
    let scanned = tokio::select! {
        r = scan => r,
        _ = reporter => unreachable!("the reporter never finishes"),
    };
    let transformed = transform.await.expect("transform thread does not panic");
    let uploaded = uploader.await.expect("uploader does not panic");
    let why = ctx.stop.why().unwrap_or_else(|| "stop requested".into());
    first_cause(plan, segment, (scanned, why), transformed, uploaded, resume)
}

/// The outcome of a segment's three stages: the cause of a failure, not the knock-on "pipeline
/// stopped" errors of the other stages.
fn first_cause(
    plan: &RunPlan,
    segment: u32,
    (scanned, why): (Result<ScanEnd, ScanError>, String),
    transformed: Result<TransformResult, TransformStop>,
    uploaded: Result<Uploaded, StoreError>,
    resume: Option<&Checkpoint>,
) -> Result<TransformResult, SegmentError> {
    let internal = |problem: String| SegmentError::Internal {
        run_id: plan.run_id.clone(),
        segment,
        problem,
    };
    let restored: HashSet<&str> = resume.map(|c| c.part_keys().collect()).unwrap_or_default();
    match (scanned, transformed, uploaded) {
        (Ok(Finished), Ok(mut t), Ok(done)) => {
            for file in t.tables.values_mut().flat_map(|o| o.files.iter_mut()) {
                match done.get(&file.key) {
                    Some(etag) => file.etag = etag.clone(),
                    None if restored.contains(file.key.as_str()) => {}
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
        (
            Ok(Stopped),
            Err(TransformStop::Stopped {
                items,
                checkpointed,
            }),
            uploaded,
        ) => Err(SegmentError::Interrupted {
            run_id: plan.run_id.clone(),
            segment,
            why,
            items,
            checkpointed: checkpointed && uploaded.is_ok(),
        }),
        (Err(e), _, _) if !matches!(e, ScanError::Downstream { .. }) => Err(e.into()),
        (_, _, Err(e)) => Err(e.into()),
        (_, Err(TransformStop::Downstream | TransformStop::Stopped { .. }), _) | (Err(_), _, _) => {
            Err(internal("the transform stopped without a result".into()))
        }
        (Ok(Stopped), Ok(_), _) => Err(internal(
            "the scan stopped but the transform finished".into(),
        )),
    }
}

/// Why the transform thread stopped early.
enum TransformStop {
    /// The uploader or the scan failed; their error is reported instead.
    Downstream,
    /// A page's items could not be read.
    BadPage(String),
    /// The scan stopped or failed after `items` items; `checkpointed`: they are all in a
    /// checkpoint handed to the uploader.
    Stopped { items: u64, checkpointed: bool },
}

/// Where a resumed segment's transform starts: the checkpoint's parts, rejections and count.
#[derive(Default)]
struct Restored {
    tables: BTreeMap<String, TableOutput>,
    rejected: Vec<Rejection>,
    items: u64,
    read_units: f64,
    pages: u64,
    resume_key: Option<String>,
}

impl Restored {
    fn of(resume: Option<&Checkpoint>) -> Restored {
        match resume {
            None => Restored::default(),
            Some(c) => Restored {
                tables: c.tables.clone(),
                rejected: c.items_rejected.clone(),
                items: c.items_scanned,
                read_units: c.read_units,
                pages: c.pages,
                resume_key: Some(c.resume_key.clone()),
            },
        }
    }
}

/// When and where the transform thread takes checkpoints.
struct Checkpoints {
    key: String,
    /// Everything that does not change between checkpoints.
    template: Checkpoint,
    every: Duration,
    /// When this attempt started (the checkpoint's duration adds it).
    started: Instant,
    counters: Arc<ScanCounters>,
    store_retries: Box<dyn Fn() -> u64 + Send>,
}

/// The transform thread: pages in, chunks and checkpoints out.
struct Transform<K> {
    transformer: Transformer,
    chunks: mpsc::Sender<Upload>,
    settings: PartSettings,
    key_of: K,
    checkpoints: Checkpoints,
}

impl<K: Fn(&str, u32) -> String + Send + Sync + Clone + 'static> Transform<K> {
    fn run(
        mut self,
        mut pages: mpsc::Receiver<RawPage>,
        restored: Restored,
        scan_end: &AtomicU8,
    ) -> Result<TransformResult, TransformStop> {
        let names: Vec<String> = self.transformer.tables().map(|s| s.table.clone()).collect();
        let overflow_table = self.transformer.overflow_table();
        let mut restored_tables = restored.tables;
        let mut writers: Vec<Option<PartWriter>> = names
            .iter()
            .map(|name| {
                restored_tables
                    .remove(name)
                    .map(|done| self.writer(name, done))
            })
            .collect();
        let mut rejected = restored.rejected;
        let mut items = restored.items;
        let (mut read_units, mut page_number) = (restored.read_units, restored.pages);
        // The key after the last page whose items are all checkpointed, and after the last page
        // transformed.
        let mut checkpointed_key = restored.resume_key.clone();
        let mut last_key = restored.resume_key;
        let mut last_checkpoint = Instant::now();
        while let Some(page) = pages.blocking_recv() {
            page_number += 1;
            read_units += page.read_units;
            let page_items = page.items().map_err(|e| {
                TransformStop::BadPage(format!(
                    "scan page {page_number} (after {items} items) cannot be read: {e}"
                ))
            })?;
            let parts_before = finished_parts(&writers);
            for item in &page_items {
                items += 1;
                match self.transformer.convert(item) {
                    Ok(row) => {
                        self.write(&mut writers, &names, row.table, &row.fields)?;
                        for fields in &row.overflow {
                            self.write(&mut writers, &names, overflow_table, fields)?;
                        }
                    }
                    Err(rejection) => rejected.push(rejection),
                }
            }
            last_key.clone_from(&page.last_key);
            let rolled = finished_parts(&writers) != parts_before;
            let due = rolled || last_checkpoint.elapsed() >= self.checkpoints.every;
            if let (true, Some(key)) = (due, &last_key) {
                let at = Position {
                    key,
                    items,
                    read_units,
                    pages: page_number,
                };
                self.checkpoint(&mut writers, &names, &rejected, at)?;
                checkpointed_key = last_key.clone();
                last_checkpoint = Instant::now();
            }
        }
        match scan_end.load(Ordering::SeqCst) {
            SCAN_FINISHED => {}
            SCAN_STOPPED | SCAN_FAILED => {
                // Save what the pages transformed so far hold, so the retry goes on from here.
                let mut checkpointed = checkpointed_key.is_some() && checkpointed_key == last_key;
                if let (false, Some(key)) = (checkpointed, &last_key) {
                    let at = Position {
                        key,
                        items,
                        read_units,
                        pages: page_number,
                    };
                    self.checkpoint(&mut writers, &names, &rejected, at)?;
                    checkpointed = true;
                }
                if !checkpointed {
                    // Nothing to save: dropping the writers leaves their parts unfinished, and the
                    // uploader aborts them. A stop is still a stop (an export segment, or a scan
                    // stopped before its first page): the retry starts the segment over.
                    return Err(match scan_end.load(Ordering::SeqCst) {
                        SCAN_STOPPED => TransformStop::Stopped {
                            items,
                            checkpointed: false,
                        },
                        _ => TransformStop::Downstream,
                    });
                }
                return Err(TransformStop::Stopped {
                    items,
                    checkpointed,
                });
            }
            _ => {
                // Dropping the writers leaves their parts unfinished; the uploader aborts them.
                return Err(TransformStop::Downstream);
            }
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
            drift: self.transformer.drift(),
            items,
        })
    }

    fn writer(&self, table: &str, done: TableOutput) -> PartWriter {
        let (name, key_of) = (table.to_string(), self.key_of.clone());
        PartWriter::resume(
            Box::new(move |index| key_of(&name, index)),
            self.settings,
            self.chunks.clone(),
            done,
        )
    }

    fn write(
        &self,
        writers: &mut [Option<PartWriter>],
        names: &[String],
        table: usize,
        fields: &[Option<Cow<str>>],
    ) -> Result<(), TransformStop> {
        writers[table]
            .get_or_insert_with(|| self.writer(&names[table], TableOutput::default()))
            .write_row(fields)
            .map_err(|_| TransformStop::Downstream)
    }

    /// Closes every open part and hands the uploader a checkpoint naming them all, to be written
    /// once they are complete.
    fn checkpoint(
        &self,
        writers: &mut [Option<PartWriter>],
        names: &[String],
        rejected: &[Rejection],
        at: Position,
    ) -> Result<(), TransformStop> {
        let mut tables = BTreeMap::new();
        for (name, writer) in names.iter().zip(writers.iter_mut()) {
            if let Some(w) = writer {
                w.roll().map_err(|_| TransformStop::Downstream)?;
                tables.insert(name.clone(), w.finished().clone());
            }
        }
        let c = &self.checkpoints;
        let mut checkpoint = Checkpoint {
            resume_key: at.key.to_string(),
            tables,
            items_scanned: at.items,
            items_rejected: rejected.to_vec(),
            drift: self.transformer.drift(),
            read_units: at.read_units,
            pages: at.pages,
            retries: c.template.retries
                + c.counters.retries.load(Ordering::Relaxed)
                + (c.store_retries)(),
            saved_at: chrono::Utc::now().to_rfc3339(),
            duration_ms: c.template.duration_ms + c.started.elapsed().as_millis() as u64,
            ..c.template.clone()
        };
        let content = Box::new(move |done: &Uploaded| {
            for file in checkpoint
                .tables
                .values_mut()
                .flat_map(|t| t.files.iter_mut())
            {
                if let Some(etag) = done.get(&file.key) {
                    file.etag.clone_from(etag);
                }
            }
            checkpoint.to_json()
        });
        self.chunks
            .blocking_send(Upload::Record {
                key: c.key.clone(),
                content,
            })
            .map_err(|_| TransformStop::Downstream)
    }
}

/// Where a checkpoint is taken: after the page with this `LastEvaluatedKey`.
struct Position<'a> {
    key: &'a str,
    items: u64,
    read_units: f64,
    pages: u64,
}

fn finished_parts(writers: &[Option<PartWriter>]) -> usize {
    writers
        .iter()
        .flatten()
        .map(|w| w.finished().files.len())
        .sum()
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
