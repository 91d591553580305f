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

use crate::phases::load::{self, prepared_run, SwapOutcome, UploadOutcome};
use crate::phases::segment::{run_segment_with, SegmentContext};
use crate::retry::RetryPolicy;
use crate::source::ScanCounters;
use crate::stage::manifest::SegmentManifest;
use crate::stage::plan::RunPlan;
use crate::transform::{DriftCount, Rejection, TableDrift};
use crate::warehouse::{connect, Dialect, WarehouseConfig};

/// Callbacks for progress display; all default to nothing.
pub trait PipelineObserver: Sync {
    fn phase(&self, _name: &str) {}
    fn segment_started(&self, _segment: u32, _counters: Arc<ScanCounters>) {}
    fn segment_finished(&self, _segment: u32, _result: Result<&SegmentManifest, &str>) {}
    fn upload_finished(&self, _segment: u32, _result: Result<u64, &str>) {}
}

/// Observer that shows nothing (logs still go to stderr).
pub struct Quiet;
impl PipelineObserver for Quiet {}

#[derive(Debug, Clone, Copy)]
pub struct PipelineOptions {
    /// Segments scanned (and loaded) at once.
    pub concurrency: usize,
    /// Scan committed segments again instead of keeping them.
    pub rescan: bool,
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
}

/// The report printed at the end of `run` and saved as `runs/<id>/report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub run_id: String,
    pub source_table: String,
    pub target: String,
    pub total_segments: u32,
    pub schema_source: String,
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
    /// Commands that would finish the run, when it did not finish.
    pub next_steps: Vec<String>,
}

impl RunReport {
    pub fn render(&self) -> String {
        let mut out = format!(
            "run {} of table {} → {} ({} segments, schemas {}): {} in {:.1} s\n",
            self.run_id,
            self.source_table,
            self.target,
            self.total_segments,
            self.schema_source,
            self.outcome,
            self.duration_ms as f64 / 1000.0
        );
        out.push_str(&format!(
            "  items scanned {}, rejected {}, read units {:.1}, retries {}\n",
            self.items_scanned,
            self.items_rejected.len(),
            self.read_units,
            self.retries
        ));
        out.push_str("  rows per table:\n");
        for (table, rows) in &self.rows {
            out.push_str(&format!("    {table:<24} {rows:>12}\n"));
        }
        out.push_str("  segments (phase 1 ms / phase 3 ms):\n");
        for s in &self.segments {
            out.push_str(&format!(
                "    {:>4}: {} items, {:.1} read units, {} ms{} / {}\n",
                s.segment,
                s.items_scanned,
                s.read_units,
                s.phase1_ms,
                if s.reused { " (committed earlier)" } else { "" },
                s.phase3_ms.map_or("-".to_string(), |m| format!("{m} ms"))
            ));
        }
        if !self.drift.is_empty() {
            out.push_str("  drift (attributes that went to _extra):\n");
            for (table, attrs) in &self.drift {
                for (attr, count) in attrs {
                    out.push_str(&format!(
                        "    {table}.{attr}: {} items, e.g. {}\n",
                        count.count,
                        count.examples.join(" ")
                    ));
                }
            }
        }
        for r in self.items_rejected.iter().take(10) {
            out.push_str(&format!("  rejected {}: {}\n", r.key, r.reason));
        }
        if self.items_rejected.len() > 10 {
            out.push_str(&format!(
                "  … and {} more rejected items (see report.json)\n",
                self.items_rejected.len() - 10
            ));
        }
        for step in &self.next_steps {
            out.push_str(&format!("  next: {step}\n"));
        }
        out
    }
}

/// How the run ended.
#[derive(Debug)]
pub struct PipelineOutcome {
    pub report: RunReport,
    /// The run is served from the target.
    pub swapped: bool,
    /// Fatal (not retriable) trouble was seen.
    pub fatal: bool,
}

/// A segment's phase 1: its manifest and whether it was reused, or the error and whether a
/// retry may help.
type ScanResult = Result<(SegmentManifest, bool), (String, bool)>;

/// Runs all phases of `plan`'s run.
pub async fn run_pipeline(
    segment_ctx: &SegmentContext,
    dialect: &dyn Dialect,
    warehouse: &WarehouseConfig,
    plan: &RunPlan,
    options: PipelineOptions,
    retry: &RetryPolicy,
    observer: &dyn PipelineObserver,
) -> PipelineOutcome {
    let started = Instant::now();
    let started_at = chrono::Utc::now().to_rfc3339();
    let store = &segment_ctx.store;
    let layout = &segment_ctx.layout;
    let run_id = &plan.run_id;
    let n = plan.total_segments;
    let mut next_steps = Vec::new();
    let mut fatal = false;

    // Phase 1.
    observer.phase("phase 1: scan");
    let results: Vec<(u32, ScanResult)> = stream::iter(0..n)
        .map(|k| async move {
            if !options.rescan {
                let key = layout.segment_manifest(run_id, k);
                if let Ok(Some(bytes)) = store.get(&key).await {
                    if let Ok(m) = SegmentManifest::from_json(&bytes, &key) {
                        observer.segment_finished(k, Ok(&m));
                        return (k, Ok((m, true)));
                    }
                }
            }
            let counters = Arc::new(ScanCounters::default());
            observer.segment_started(k, counters.clone());
            let result = run_segment_with(segment_ctx, plan, k, counters).await;
            match &result {
                Ok(m) => observer.segment_finished(k, Ok(m)),
                Err(e) => observer.segment_finished(k, Err(&e.to_string())),
            }
            (
                k,
                result
                    .map(|m| (m, false))
                    .map_err(|e| (e.to_string(), e.is_retriable())),
            )
        })
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;
    let mut manifests: BTreeMap<u32, (SegmentManifest, bool)> = BTreeMap::new();
    for (k, r) in results {
        match r {
            Ok(m) => {
                manifests.insert(k, m);
            }
            Err((e, retriable)) => {
                fatal |= !retriable;
                tracing::error!(run_id, segment = k, error = %e, "phase 1 failed for a segment");
                next_steps.push(format!(
                    "dynamo-etl retry phase-1 {n} {k} --run-id {run_id}   # {e}"
                ));
            }
        }
    }
    let mut phase3_ms: BTreeMap<u32, u64> = BTreeMap::new();
    let outcome: String;
    let mut swapped = false;
    if next_steps.is_empty() {
        // Phase 2, unless staging already holds this run (a resumed run).
        observer.phase("phase 2: prepare");
        let already = match connect(warehouse, dialect).await {
            Ok(mut conn) => prepared_run(&mut conn, &warehouse.staging())
                .await
                .ok()
                .flatten(),
            Err(_) => None,
        };
        let prepared = if already.as_deref() == Some(run_id.as_str()) {
            tracing::info!(run_id, staging = %warehouse.staging(), "staging already prepared for this run; keeping its loaded segments");
            Ok(())
        } else {
            load::prepare(dialect, warehouse, plan).await
        };
        match prepared {
            Err(e) => {
                fatal |= !e.is_retriable();
                outcome = format!("not reached: prepare failed: {e}");
                next_steps.push(format!(
                    "dynamo-etl run --run-id {run_id}   # after fixing: {e}"
                ));
            }
            Ok(()) => {
                // Phase 3.
                observer.phase("phase 3: load");
                let uploads: Vec<(u32, Result<UploadOutcome, String>, u64, bool)> =
                    stream::iter(0..n)
                        .map(|k| async move {
                            let t = Instant::now();
                            let r = load::upload(dialect, warehouse, store, layout, plan, k).await;
                            let retriable = r.as_ref().err().is_none_or(|e| {
                                e.is_retriable()
                                    || matches!(e, crate::warehouse::WarehouseError::Refused(_))
                            });
                            let r = r.map_err(|e| e.to_string());
                            match &r {
                                Ok(UploadOutcome::Loaded { rows, .. }) => {
                                    observer.upload_finished(k, Ok(*rows))
                                }
                                Ok(UploadOutcome::AlreadyLoaded) => {
                                    observer.upload_finished(k, Ok(0))
                                }
                                Err(e) => observer.upload_finished(k, Err(e)),
                            }
                            (k, r, t.elapsed().as_millis() as u64, retriable)
                        })
                        .buffer_unordered(options.concurrency.max(1))
                        .collect()
                        .await;
                for (k, r, ms, retriable) in uploads {
                    match r {
                        Ok(_) => {
                            phase3_ms.insert(k, ms);
                        }
                        Err(e) => {
                            fatal |= !retriable;
                            tracing::error!(run_id, segment = k, error = %e, "phase 3 failed for a segment");
                            next_steps.push(format!(
                                "dynamo-etl retry phase-3 {k} --run-id {run_id}   # {e}"
                            ));
                        }
                    }
                }
                if next_steps.is_empty() {
                    observer.phase("phase 4: replace");
                    match load::replace(dialect, warehouse, store, layout, plan, retry).await {
                        Ok(SwapOutcome::Swapped { .. }) => {
                            swapped = true;
                            outcome = "swapped".into();
                            if let Err(e) = crate::stage::runs::record_swap(
                                store,
                                layout,
                                run_id,
                                &warehouse.target,
                            )
                            .await
                            {
                                tracing::warn!(run_id, error = %e, "the swap committed but its record could not be written");
                            }
                        }
                        Ok(SwapOutcome::Refused(r)) => {
                            outcome = format!("refused: {}", r.problems.join("; "));
                            next_steps.extend(r.commands);
                        }
                        Err(e) => {
                            fatal |= !e.is_retriable();
                            outcome = format!("not reached: replace failed: {e}");
                            next_steps.push(format!("dynamo-etl replace --run-id {run_id}"));
                        }
                    }
                } else {
                    outcome = "not reached: some segments did not load".into();
                    next_steps.push(format!(
                        "dynamo-etl replace --run-id {run_id}   # after the retries above"
                    ));
                }
            }
        }
    } else {
        outcome = "not reached: some segments did not scan".into();
        next_steps.push(format!(
            "dynamo-etl run --run-id {run_id}   # continues with the committed segments"
        ));
    }

    let mut rows: BTreeMap<String, u64> = BTreeMap::new();
    let mut drift: BTreeMap<String, TableDrift> = BTreeMap::new();
    let mut rejected = Vec::new();
    let (mut items, mut read_units, mut retries) = (0, 0.0, 0);
    let mut segments = Vec::new();
    for (k, (m, reused)) in &manifests {
        for (table, out) in &m.tables {
            *rows.entry(table.clone()).or_default() += out.rows;
        }
        for (table, attrs) in &m.drift {
            let merged = drift.entry(table.clone()).or_default();
            for (attr, count) in attrs {
                let e: &mut DriftCount = merged.entry(attr.clone()).or_default();
                e.count += count.count;
                for ex in &count.examples {
                    if e.examples.len() < crate::transform::EXAMPLE_KEYS {
                        e.examples.push(ex.clone());
                    }
                }
            }
        }
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
            phase3_ms: phase3_ms.get(k).copied(),
            reused: *reused,
        });
    }
    let report = RunReport {
        run_id: run_id.clone(),
        source_table: plan.source_table.clone(),
        target: warehouse.target.clone(),
        total_segments: n,
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
        drift,
        outcome,
        next_steps,
    };
    PipelineOutcome {
        report,
        swapped,
        fatal,
    }
}
