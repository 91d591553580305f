//! `plan` (pin a run) and `run` (every phase in one process, with progress and a report).

use anyhow::anyhow;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::segment::{plan_new_run, ScanArgs};
use super::warehouse::WarehouseArgs;
use super::{Cli, CommandResult, Failure, Services};
use crate::phases::pipeline::{run_pipeline, PipelineObserver, PipelineOptions, Quiet};
use crate::phases::plan::derive_run_id;
use crate::phases::segment::SegmentContext;
use crate::source::ScanCounters;
use crate::stage::manifest::SegmentManifest;
use crate::stage::plan::RunPlan;
use crate::warehouse::dialect_for;

#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    /// Source DynamoDB table.
    #[arg(long, env = "ETL_TABLE")]
    pub table: String,
    /// How many segments the table is scanned in.
    #[arg(long, env = "ETL_TOTAL_SEGMENTS", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub total_segments: u32,
    /// Run id (default: from AWS_BATCH_JOB_ID, else today's UTC date).
    #[arg(long, env = "ETL_RUN_ID")]
    pub run_id: Option<String>,
    /// Folder of the static data-schemas (the fallback when the schema cache has none).
    #[arg(long, env = "ETL_SCHEMAS_DIR", default_value = "schemas")]
    pub schemas_dir: std::path::PathBuf,
    /// Plan with the static data-schemas even when the schema cache has a snapshot.
    #[arg(long, env = "ETL_NO_SCHEMA_CACHE")]
    pub no_schema_cache: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Source DynamoDB table (may be omitted when resuming a planned run).
    #[arg(long, env = "ETL_TABLE")]
    pub table: Option<String>,
    /// How many segments the table is scanned in.
    #[arg(long, env = "ETL_TOTAL_SEGMENTS", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub total_segments: u32,
    /// Run id (default: from AWS_BATCH_JOB_ID, else today's UTC date). An existing run resumes.
    #[arg(long, env = "ETL_RUN_ID")]
    pub run_id: Option<String>,
    /// Segments scanned and loaded at once (default: total segments, at most 8).
    #[arg(long, env = "ETL_CONCURRENCY")]
    pub concurrency: Option<usize>,
    /// Scan segments again even when an earlier attempt of the run committed them.
    #[arg(long, env = "ETL_RESCAN")]
    pub rescan: bool,
    #[command(flatten)]
    pub scan: ScanArgs,
    #[command(flatten)]
    pub warehouse: WarehouseArgs,
}

pub async fn plan(cli: &Cli, args: &PlanArgs) -> CommandResult {
    let services = Services::connect(cli).await?;
    let run_id = derive_run_id(args.run_id.as_deref());
    let plan = plan_new_run(
        cli,
        &services,
        &services.dynamodb(cli),
        &run_id,
        &args.table,
        args.total_segments,
        &args.schemas_dir,
        args.no_schema_cache,
    )
    .await?;
    eprintln!(
        "run {} planned: table {}, {} segments, {} tables, schemas from {}",
        plan.run_id,
        plan.source_table,
        plan.total_segments,
        plan.schemas.len(),
        plan.schema_source
    );
    println!("{}", plan.run_id);
    Ok(())
}

pub async fn run(cli: &Cli, args: &RunArgs) -> CommandResult {
    let services = Services::connect(cli).await?;
    let run_id = derive_run_id(args.run_id.as_deref());
    let dynamodb = services.dynamodb(cli);
    let plan = match RunPlan::load(&services.store, &services.layout, &run_id).await? {
        Some(existing) => {
            if args
                .table
                .as_deref()
                .is_some_and(|t| t != existing.source_table)
            {
                return Err(Failure::Fatal(anyhow!(
                    "run {run_id} copies table {}, not {}; pass another --run-id",
                    existing.source_table,
                    args.table.as_deref().unwrap_or_default()
                )));
            }
            tracing::info!(run_id, "resuming the planned run");
            existing
        }
        None => {
            let table = args.table.as_deref().ok_or_else(|| {
                Failure::Fatal(anyhow!(
                    "pass --table (or set ETL_TABLE) to start run {run_id}"
                ))
            })?;
            plan_new_run(
                cli,
                &services,
                &dynamodb,
                &run_id,
                table,
                args.total_segments,
                &args.scan.schemas_dir,
                args.scan.no_schema_cache,
            )
            .await?
        }
    };
    let warehouse = args.warehouse.config(Some(&plan.source_table))?;
    let dialect = dialect_for(warehouse.dialect);
    let show_bars = std::io::stderr().is_terminal() && cli.log_format != super::LogFormat::Json;
    let ctx = SegmentContext {
        dynamodb,
        store: services.store.clone(),
        layout: services.layout.clone(),
        parts: args.scan.part_settings()?,
        retry: cli.retry.policy(),
        consistent_read: args.scan.consistent_read,
        max_read_units: args.scan.max_read_units,
        progress_every: Duration::from_secs(args.scan.progress_seconds.max(1)),
    };
    let options = PipelineOptions {
        concurrency: args
            .concurrency
            .unwrap_or(plan.total_segments.min(8) as usize)
            .max(1),
        rescan: args.rescan,
    };
    // Progress bars get a length from DynamoDB's approximate item count, for an ETA.
    let per_segment = match show_bars {
        true => crate::source::approximate_item_count(&ctx.dynamodb, &plan.source_table)
            .await
            .filter(|n| *n > 0)
            .map(|n| n.div_ceil(u64::from(plan.total_segments))),
        false => None,
    };
    let bars = Bars::new(plan.total_segments, per_segment);
    let observer: &dyn PipelineObserver = if show_bars { &bars } else { &Quiet };
    let outcome = run_pipeline(
        &ctx,
        dialect.as_ref(),
        &warehouse,
        &plan,
        options,
        &cli.retry.policy(),
        observer,
    )
    .await;
    bars.finish();
    let report = &outcome.report;
    print!("{}", report.render());
    let key = services.layout.run_report(&plan.run_id);
    match services
        .store
        .put(
            &key,
            serde_json::to_string_pretty(report)
                .expect("report serialises")
                .into(),
            "application/json",
        )
        .await
    {
        Ok(()) => println!("  report saved to s3://{}/{key}", services.store.bucket()),
        Err(e) => tracing::warn!(error = %e, "the report could not be saved"),
    }
    if outcome.swapped {
        Ok(())
    } else if outcome.fatal {
        Err(Failure::Fatal(anyhow!(
            "run {} did not finish: {}",
            plan.run_id,
            report.outcome
        )))
    } else {
        Err(Failure::Retry(anyhow!(
            "run {} did not finish: {}; next: {}",
            plan.run_id,
            report.outcome,
            report.next_steps.join("; ")
        )))
    }
}

/// Progress bars on a terminal: one per segment for the scan, refreshed from its counters.
struct Bars {
    multi: MultiProgress,
    header: ProgressBar,
    segments: Mutex<HashMap<u32, ProgressBar>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// Estimated items per segment, when the table's item count is known.
    per_segment: Option<u64>,
}

impl Bars {
    fn new(total: u32, per_segment: Option<u64>) -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4));
        let header = multi.add(ProgressBar::new(u64::from(total)));
        header.set_style(
            ProgressStyle::with_template("{msg:24} [{bar:30}] {pos}/{len} segments {elapsed}")
                .expect("template")
                .progress_chars("=> "),
        );
        Bars {
            multi,
            header,
            segments: Mutex::new(HashMap::new()),
            stop: Arc::default(),
            per_segment,
        }
    }

    fn finish(&self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.header.finish_and_clear();
        for bar in self.segments.lock().expect("not poisoned").values() {
            bar.finish_and_clear();
        }
    }
}

impl PipelineObserver for Bars {
    fn phase(&self, name: &str) {
        self.header.set_position(0);
        self.header.set_message(name.to_string());
    }

    fn segment_started(&self, segment: u32, counters: Arc<ScanCounters>) {
        let (bar, template) = match self.per_segment {
            Some(estimate) => (
                ProgressBar::new(estimate),
                "  segment {prefix:>4} [{bar:24}] {human_pos}/~{human_len} items, ETA {eta} {msg}",
            ),
            None => (
                ProgressBar::new_spinner(),
                "  segment {prefix:>4} {spinner} {human_pos} items {msg}",
            ),
        };
        let bar = self.multi.add(bar);
        bar.set_style(
            ProgressStyle::with_template(template)
                .expect("template")
                .progress_chars("=> "),
        );
        bar.set_prefix(segment.to_string());
        self.segments
            .lock()
            .expect("not poisoned")
            .insert(segment, bar.clone());
        let stop = self.stop.clone();
        tokio::spawn(async move {
            use std::sync::atomic::Ordering;
            while !bar.is_finished() && !stop.load(Ordering::Relaxed) {
                let items = counters.items.load(Ordering::Relaxed);
                // The count is an estimate: grow the bar rather than overflow it.
                if bar.length().is_some_and(|len| items > len) {
                    bar.set_length(items);
                }
                bar.set_position(items);
                let rate = items as f64 / bar.elapsed().as_secs_f64().max(0.001);
                bar.set_message(format!(
                    "({rate:.0}/s, {:.1} read units)",
                    counters.read_units()
                ));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
    }

    fn segment_finished(&self, segment: u32, result: Result<&SegmentManifest, &str>) {
        self.header.inc(1);
        if let Some(bar) = self.segments.lock().expect("not poisoned").remove(&segment) {
            match result {
                Ok(m) => {
                    bar.set_length(m.items_scanned);
                    bar.set_position(m.items_scanned);
                    bar.finish_with_message(format!(
                        "done: {} rows, {} ms",
                        m.rows(),
                        m.duration_ms
                    ));
                }
                Err(e) => bar.abandon_with_message(format!("failed: {e}")),
            }
        }
    }

    fn upload_finished(&self, segment: u32, result: Result<u64, &str>) {
        self.header.inc(1);
        if let Err(e) = result {
            let _ = self
                .multi
                .println(format!("  segment {segment}: load failed: {e}"));
        }
    }
}
