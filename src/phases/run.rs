//! `run`: every phase of a run in one process — phase 1 for all segments under a concurrency
//! limit, prepare, phase 3 for all segments, replace — and the run report.
//!
//! Re-running `run` for the same run id resumes it: committed segments are not scanned again
//! (unless asked), loaded segments are not loaded again (the ledger), and a staging schema already
//! prepared for the run is kept.

use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::replace::{may_replace, Replaced};
use super::segment::{run_segment, SegmentSettings};
use super::Context;
use crate::error::{Class, Error};
use crate::schema::SchemaSource;
use crate::source::ScanCounters;
use crate::staging::commands::{Runbook, Step};
use crate::staging::lease::RunLease;
use crate::staging::manifest::{self, DriftSum, Rejection, SegmentManifest, TableDrift};
use crate::staging::plan::RunPlan;
use crate::warehouse::fingerprint::ProvenColumns;
use crate::warehouse::{GateRefusal, RunLoad, UploadOutcome, Warehouse};

/// Callbacks for progress display; all default to nothing.
pub trait Observer: Sync {
    fn phase(&self, _name: &str) {}
    fn segment_started(&self, _segment: u32, _counters: Arc<ScanCounters>) {}
    fn segment_finished(&self, _segment: u32, _result: Result<&SegmentManifest, &str>) {}
    fn upload_finished(&self, _segment: u32, _result: Result<u64, &str>) {}
}

/// An observer that shows nothing (logs still go to stderr).
pub struct Quiet;
impl Observer for Quiet {}

#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Segments scanned (and loaded) at once.
    pub concurrency: usize,
    /// Scan committed segments again instead of keeping them.
    pub rescan: bool,
    /// Let a run planned before the served one replace it.
    pub allow_older: bool,
    pub segment: SegmentSettings,
}

/// Per-segment figures of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentFigures {
    pub segment: u32,
    pub items_scanned: u64,
    pub rows: u64,
    pub read_units: f64,
    pub phase1_ms: u64,
    pub phase3_ms: Option<u64>,
    /// True when phase 1 was not run again because the segment was already committed.
    pub reused: bool,
    /// Read units per second over phase 1's time as a share of `--max-read-units` (1.0 = the
    /// whole budget), when a budget was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_use: Option<f64>,
    /// Items a checkpoint held when phase 1 resumed from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_after: Option<u64>,
}

/// The report of `run`, printed by the command line and saved as `runs/<id>/report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub run_id: String,
    pub source_table: String,
    pub target: String,
    pub total_segments: u32,
    pub schema_source: SchemaSource,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    /// Rows per warehouse table, from the manifests.
    pub rows: BTreeMap<String, u64>,
    pub items_scanned: u64,
    pub items_rejected: Vec<Rejection>,
    pub read_units: f64,
    pub retries: u64,
    pub segments: Vec<SegmentFigures>,
    /// Attributes that went to `_extra`, summed over segments, per table.
    pub drift: BTreeMap<String, TableDrift>,
    /// `swapped`, `refused: …` or `not reached: …`.
    pub outcome: String,
    /// Per table, the columns whose values the gate proved equal to what phase 1 wrote, and
    /// those it could only count (empty when the run was not swapped, not fingerprinted, or
    /// swapped with `--skip-verify`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub proof: BTreeMap<String, ProvenColumns>,
    /// Commands that would finish the run, when it did not finish.
    pub next_steps: Vec<String>,
}

/// How the run ended.
#[derive(Debug)]
pub struct RunOutcome {
    pub report: RunReport,
    /// Where the report was saved (`runs/<run-id>/report.json`), when it could be.
    pub report_url: Option<String>,
    /// `None` when the run is swapped in; else why not, with its class and next steps.
    pub failure: Option<Error>,
}

/// One segment's phase 1: its manifest and whether it was committed before.
struct Scanned {
    manifest: SegmentManifest,
    reused: bool,
}

/// Runs all phases of `plan`'s run.
pub async fn run(
    ctx: &Context,
    warehouse: &dyn Warehouse,
    plan: &RunPlan,
    options: RunOptions,
    observer: &dyn Observer,
) -> RunOutcome {
    let started = Instant::now();
    let started_at = chrono::Utc::now().to_rfc3339();
    let runbook = ctx.runbook(&plan.run_id, Some(&warehouse.config().target));
    let mut progress = Progress::default();
    // One process works on a run at a time; a copy submitted twice is told who holds it.
    let lease = match ctx.staging() {
        Ok(staging) => RunLease::acquire(staging, &plan.run_id)
            .await
            .map_err(|e| Error::from(e).next(runbook.command(Step::Status))),
        Err(e) => Err(e),
    };
    let leased = lease.is_ok();
    let scanned = match lease {
        Err(e) => {
            progress.stopped(&e);
            BTreeMap::new()
        }
        Ok(lease) => {
            let scanned = work(
                ctx,
                warehouse,
                plan,
                options,
                observer,
                &mut progress,
                &runbook,
            )
            .await;
            lease.release().await;
            scanned
        }
    };
    let report = RunReport::new(
        plan,
        warehouse,
        &scanned,
        &progress,
        options.segment.max_read_units,
        (started_at, started),
    );
    let failure = (!progress.swapped).then(|| {
        let class = match progress.failures.contains(&Class::Fatal) {
            true => Class::Fatal,
            false => Class::Retry,
        };
        let err = Error::retry(format!(
            "run {} did not finish: {}",
            plan.run_id, report.outcome
        ))
        .reclassify(class);
        report.next_steps.iter().fold(err, |e, s| e.next(s))
    });
    // A copy that did not get the lease leaves the report to the one that did.
    let report_url = match leased {
        true => save(ctx, &report).await,
        false => None,
    };
    RunOutcome {
        report,
        report_url,
        failure,
    }
}

/// Saves the report next to the run's plan; a failure to save is logged, not fatal.
async fn save(ctx: &Context, report: &RunReport) -> Option<String> {
    let staging = ctx.staging().ok()?;
    let key = staging.layout.run_report(&report.run_id);
    let text = serde_json::to_string_pretty(report).expect("report serialises");
    match staging
        .store
        .put(&key, text.into(), "application/json")
        .await
    {
        Ok(()) => Some(staging.url(&key)),
        Err(e) => {
            tracing::warn!(run_id = %report.run_id, error = %e, "the report could not be saved");
            None
        }
    }
}

/// Every phase, unless the run may not replace what the target serves.
async fn work(
    ctx: &Context,
    warehouse: &dyn Warehouse,
    plan: &RunPlan,
    options: RunOptions,
    observer: &dyn Observer,
    progress: &mut Progress,
    runbook: &Runbook,
) -> BTreeMap<u32, Scanned> {
    if let Err(e) = forward_check(warehouse, plan, options).await {
        progress.stopped(&e);
        return BTreeMap::new();
    }
    let scanned = scan_all(ctx, plan, options, observer, progress, runbook).await;
    if progress.failures.is_empty() {
        load_and_swap(ctx, warehouse, plan, options, observer, progress, runbook).await;
    } else {
        progress.outcome = "not reached: some segments did not scan".into();
        progress.steps.push(format!(
            "{}   # continues with the committed segments",
            runbook.command(Step::Run)
        ));
    }
    scanned
}

/// Refuses a run that may not replace what the target serves before anything is scanned. A
/// warehouse that cannot be reached yet does not stop the scan: the load says so later.
async fn forward_check(
    warehouse: &dyn Warehouse,
    plan: &RunPlan,
    options: RunOptions,
) -> Result<(), Error> {
    match warehouse.state().await {
        Ok(state) => may_replace(
            &state,
            &warehouse.config().target,
            plan,
            options.allow_older,
        ),
        Err(e) => {
            tracing::warn!(run_id = %plan.run_id, error = %e,
                "the warehouse cannot be read yet; scanning anyway, the load will need it");
            Ok(())
        }
    }
}

/// Whether the target serves the run now (another process swapped it in).
async fn served_meanwhile(warehouse: &dyn Warehouse, plan: &RunPlan) -> bool {
    warehouse
        .state()
        .await
        .is_ok_and(|s| s.serving.is_some_and(|m| m.run_id == plan.run_id))
}

/// What the phases after the scan did, for the report.
#[derive(Default)]
struct Progress {
    /// The class of every failure seen.
    failures: Vec<Class>,
    /// Commands that would finish the run.
    steps: Vec<String>,
    phase3_ms: BTreeMap<u32, u64>,
    outcome: String,
    swapped: bool,
    /// Per table, the columns the gate proved and counted only.
    proof: BTreeMap<String, ProvenColumns>,
}

impl Progress {
    /// The run stopped before any work: `e` says why.
    fn stopped(&mut self, e: &Error) {
        self.outcome = format!("refused: {}", e.chain());
        self.failures.push(e.class());
        self.steps.extend(e.next_steps().iter().cloned());
    }

    fn failed(&mut self, e: &Error, step: String) {
        self.failures.push(e.class());
        self.steps.push(format!("{step}   # {}", e.chain()));
    }
}

/// Phase 1 for every segment not committed yet (or all, with `rescan`).
async fn scan_all(
    ctx: &Context,
    plan: &RunPlan,
    options: RunOptions,
    observer: &dyn Observer,
    progress: &mut Progress,
    runbook: &Runbook,
) -> BTreeMap<u32, Scanned> {
    let results: Vec<(u32, Result<Scanned, Error>)> = stream::iter(0..plan.total_segments)
        .map(|k| async move { (k, scan_one(ctx, plan, options, observer, k).await) })
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;
    let mut scanned = BTreeMap::new();
    for (k, result) in results {
        match result {
            Ok(s) => {
                scanned.insert(k, s);
            }
            Err(e) => {
                tracing::error!(run_id = %plan.run_id, segment = k, error = %e.chain(), "phase 1 failed for a segment");
                let step = runbook.command(Step::RetryPhase1 {
                    total_segments: plan.total_segments,
                    segment: k,
                });
                progress.failed(&e, step.to_string());
            }
        }
    }
    scanned
}

async fn scan_one(
    ctx: &Context,
    plan: &RunPlan,
    options: RunOptions,
    observer: &dyn Observer,
    k: u32,
) -> Result<Scanned, Error> {
    if !options.rescan {
        if let Ok(Some(manifest)) = manifest::read(ctx.staging()?, plan, k).await {
            observer.segment_finished(k, Ok(&manifest));
            return Ok(Scanned {
                manifest,
                reused: true,
            });
        }
    }
    let counters = Arc::new(ScanCounters::default());
    observer.segment_started(k, counters.clone());
    let result = run_segment(ctx, &options.segment, plan, k, counters).await;
    match &result {
        Ok(m) => observer.segment_finished(k, Ok(m)),
        Err(e) => observer.segment_finished(k, Err(&e.chain())),
    }
    Ok(Scanned {
        manifest: result?,
        reused: false,
    })
}

/// Prepare (unless staging holds the run already), phase 3 for every segment, replace.
async fn load_and_swap(
    ctx: &Context,
    warehouse: &dyn Warehouse,
    plan: &RunPlan,
    options: RunOptions,
    observer: &dyn Observer,
    progress: &mut Progress,
    runbook: &Runbook,
) {
    observer.phase("phase 2: prepare");
    if served_meanwhile(warehouse, plan).await {
        progress.swapped = true;
        progress.outcome = "already served: another process swapped this run in".into();
        return;
    }
    if let Err(e) = prepare_unless_staged(ctx, warehouse, plan).await {
        progress.outcome = format!("not reached: prepare failed: {}", e.chain());
        progress.failed(
            &e,
            format!("{}   # after fixing the cause", runbook.command(Step::Run)),
        );
        return;
    }
    observer.phase("phase 3: load");
    let uploads = match warehouse.run_load() {
        RunLoad::PerSegment => load_each(ctx, warehouse, plan, options, observer).await,
        RunLoad::OneTransaction => load_at_once(ctx, warehouse, plan, observer).await,
    };
    for (k, result, ms) in uploads {
        match result {
            Ok(()) => {
                progress.phase3_ms.insert(k, ms);
            }
            Err(e) => {
                tracing::error!(run_id = %plan.run_id, segment = k, error = %e.chain(), "phase 3 failed for a segment");
                let step = e.next_steps().first().cloned().unwrap_or_else(|| {
                    runbook
                        .command(Step::RetryPhase3 { segment: k })
                        .to_string()
                });
                progress.failed(&e, step);
            }
        }
    }
    finish_after_load(ctx, warehouse, plan, options, observer, progress, runbook).await;
}

/// Phase 3 with one transaction per segment, `options.concurrency` segments at once: each
/// segment's result and milliseconds.
async fn load_each(
    ctx: &Context,
    warehouse: &dyn Warehouse,
    plan: &RunPlan,
    options: RunOptions,
    observer: &dyn Observer,
) -> Vec<(u32, Result<(), Error>, u64)> {
    stream::iter(0..plan.total_segments)
        .map(|k| async move {
            let t = Instant::now();
            let r = super::upload::upload(ctx, warehouse, plan, k).await;
            match &r {
                Ok(UploadOutcome::Loaded { rows, .. }) => observer.upload_finished(k, Ok(*rows)),
                Ok(UploadOutcome::AlreadyLoaded) => observer.upload_finished(k, Ok(0)),
                Err(e) => observer.upload_finished(k, Err(&e.chain())),
            }
            (k, r.map(drop), t.elapsed().as_millis() as u64)
        })
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await
}

/// Phase 3 for every segment in one transaction with one COPY per table (how Redshift wants
/// it): every segment gets the load's result and its milliseconds. A failure is reported once,
/// for the first segment.
async fn load_at_once(
    ctx: &Context,
    warehouse: &dyn Warehouse,
    plan: &RunPlan,
    observer: &dyn Observer,
) -> Vec<(u32, Result<(), Error>, u64)> {
    let t = Instant::now();
    let result = super::upload::upload_all(ctx, warehouse, plan).await;
    let ms = t.elapsed().as_millis() as u64;
    match result {
        Ok(done) => (0..plan.total_segments)
            .map(|k| {
                observer.upload_finished(k, Ok(done.loaded.get(&k).copied().unwrap_or(0)));
                (k, Ok(()), ms)
            })
            .collect(),
        Err(e) => {
            for k in 0..plan.total_segments {
                observer.upload_finished(k, Err(&e.chain()));
            }
            vec![(0, Err(e), ms)]
        }
    }
}

/// After phase 3: replace, unless a segment did not load.
async fn finish_after_load(
    ctx: &Context,
    warehouse: &dyn Warehouse,
    plan: &RunPlan,
    options: RunOptions,
    observer: &dyn Observer,
    progress: &mut Progress,
    runbook: &Runbook,
) {
    if !progress.failures.is_empty() {
        progress.outcome = "not reached: some segments did not load".into();
        progress.steps.push(format!(
            "{}   # after the retries above",
            runbook.command(Step::Replace)
        ));
        return;
    }
    observer.phase("phase 4: replace");
    match super::replace::replace(ctx, warehouse, plan, options.allow_older).await {
        Ok(Replaced::Swapped { proof, .. }) => {
            progress.swapped = true;
            progress.outcome = "swapped".into();
            progress.proof = proof;
        }
        Ok(Replaced::AlreadyServed) => {
            progress.swapped = true;
            progress.outcome = "already served: another process swapped this run in".into();
        }
        Err(e) => {
            progress.outcome = match e.is::<GateRefusal>() {
                true => format!("refused: {}", e.chain()),
                false => format!("not reached: replace failed: {}", e.chain()),
            };
            progress.failures.push(e.class());
            progress.steps.extend(e.next_steps().iter().cloned());
        }
    }
}

/// Phase 2, unless staging already holds this run (a resumed run keeps its loaded segments).
async fn prepare_unless_staged(
    ctx: &Context,
    warehouse: &dyn Warehouse,
    plan: &RunPlan,
) -> Result<(), Error> {
    let staged = match warehouse.state().await {
        Ok(state) => state.staged.map(|s| s.run_id),
        Err(_) => None,
    };
    if staged.as_deref() == Some(plan.run_id.as_str()) {
        tracing::info!(run_id = %plan.run_id, staging = %warehouse.config().staging(),
            "staging already prepared for this run; keeping its loaded segments");
        return Ok(());
    }
    super::prepare::prepare(ctx, warehouse, plan).await
}

impl RunReport {
    fn new(
        plan: &RunPlan,
        warehouse: &dyn Warehouse,
        scanned: &BTreeMap<u32, Scanned>,
        progress: &Progress,
        max_read_units: Option<f64>,
        (started_at, started): (String, Instant),
    ) -> RunReport {
        let mut rows: BTreeMap<String, u64> = BTreeMap::new();
        let mut drift = DriftSum::default();
        let mut rejected = Vec::new();
        let (mut items, mut read_units, mut retries) = (0, 0.0, 0);
        let mut segments = Vec::new();
        for (k, s) in scanned {
            let m = &s.manifest;
            for (table, out) in &m.tables {
                *rows.entry(table.clone()).or_default() += out.rows;
            }
            drift.add(&m.drift);
            rejected.extend(m.items_rejected.iter().cloned());
            items += m.items_scanned;
            read_units += m.read_units;
            retries += m.retries;
            segments.push(SegmentFigures {
                segment: *k,
                items_scanned: m.items_scanned,
                rows: m.rows(),
                read_units: m.read_units,
                phase1_ms: m.duration_ms,
                phase3_ms: progress.phase3_ms.get(k).copied(),
                reused: s.reused,
                budget_use: max_read_units
                    .zip(m.read_rate())
                    .map(|(max, rate)| rate / max),
                resumed_after: m.resumed.as_ref().map(|r| r.items),
            });
        }
        RunReport {
            run_id: plan.run_id.clone(),
            source_table: plan.source_table.clone(),
            target: warehouse.config().target.clone(),
            total_segments: plan.total_segments,
            schema_source: plan.schema_source.clone(),
            started_at,
            finished_at: chrono::Utc::now().to_rfc3339(),
            duration_ms: started.elapsed().as_millis() as u64,
            rows,
            items_scanned: items,
            items_rejected: rejected,
            read_units,
            retries,
            segments,
            drift: drift.entries(),
            outcome: progress.outcome.clone(),
            proof: progress.proof.clone(),
            next_steps: progress.steps.clone(),
        }
    }
}
