//! `run`: every phase in one process, with progress bars on a terminal and a report.

use std::io::IsTerminal;

use super::super::flags::{
    note, RunFlag, ScanFlags, SchemaFlags, TableFlag, TotalSegmentsFlag, WarehouseFlags,
};
use super::super::output::{self, line, out};
use super::super::progress::Bars;
use super::super::{Cli, LogFormat};
use super::plan::{estimate_command, EstimateFlags};
use dynamo_etl::error::Error;
use dynamo_etl::phases::estimate::estimate;
use dynamo_etl::phases::plan::{
    given_run_id, new_run_id, plan_or_resume, resumable_run, RunRequest,
};
use dynamo_etl::phases::run::{run as run_all, Observer, Quiet, RunOptions};
use dynamo_etl::phases::Context;
use dynamo_etl::source::approximate_item_count;

/// Segments of a new run when none is given.
pub const DEFAULT_TOTAL_SEGMENTS: u32 = 4;

#[derive(Debug, Clone, clap::Args)]
#[command(
    mut_arg("table", note("May be omitted when resuming a planned run.")),
    mut_arg("total_segments", note("Default for a new run: 4; a planned run keeps its own.")),
    mut_arg("run_id", note(
        "Default: from AWS_BATCH_JOB_ID, else the newest run of --table not swapped in yet, else a new run. An existing run resumes."
    )),
    mut_arg("estimate", note("Here no run is then chosen, planned or scanned."))
)]
pub struct Args {
    #[command(flatten)]
    pub table: TableFlag,
    #[command(flatten)]
    pub total_segments: TotalSegmentsFlag,
    #[command(flatten)]
    pub run: RunFlag,
    /// Segments scanned and loaded at once (default: total segments, at most 8).
    #[arg(long, env = "ETL_CONCURRENCY")]
    pub concurrency: Option<usize>,
    /// Scan segments again even when an earlier attempt of the run committed them.
    #[arg(long, env = "ETL_RESCAN")]
    pub rescan: bool,
    /// Serve this run even though it was planned before the run the target serves (to re-serve
    /// an old generation on purpose; `rollback` is the normal way back one generation).
    #[arg(long, env = "ETL_ALLOW_OLDER")]
    pub allow_older: bool,
    #[command(flatten)]
    pub schemas: SchemaFlags,
    #[command(flatten)]
    pub scan: ScanFlags,
    #[command(flatten)]
    pub warehouse: WarehouseFlags,
    #[command(flatten)]
    pub estimate: EstimateFlags,
}

/// `run --estimate`: the estimate for this command's table, segments, concurrency and read
/// settings; nothing in the staging area or the warehouse is read or written.
async fn estimate_only(cli: &Cli, args: &Args) -> Result<(), Error> {
    let table = args.table.table.as_deref().ok_or_else(|| {
        Error::fatal("run --estimate needs the source table: pass --table or set ETL_TABLE")
    })?;
    let total = args
        .total_segments
        .total_segments
        .unwrap_or(DEFAULT_TOTAL_SEGMENTS);
    let at_once = args
        .concurrency
        .unwrap_or(total.min(8) as usize)
        .clamp(1, total as usize) as u32;
    let settings = args.estimate.settings(total, at_once, &args.scan.read)?;
    let mut command = estimate_command("run", table, &settings);
    if let Some(n) = args.concurrency {
        command.push_str(&format!(" --concurrency {n}"));
    }
    let ctx = cli.context().await?;
    let figures = estimate(&ctx, table, settings, &command).await?;
    out(&output::estimate::render(&figures));
    Ok(())
}

/// The run id: given, else the newest run of the table not swapped in, else a new one.
async fn choose_run(cli: &Cli, ctx: &Context, args: &Args) -> Result<String, Error> {
    if let Some(id) = given_run_id(args.run.run_id.as_deref()) {
        return Ok(id);
    }
    let table = args.table.table.as_deref().ok_or_else(|| {
        Error::fatal("pass --table (or set ETL_TABLE) to start or resume a run, or --run-id")
    })?;
    let warehouse =
        dynamo_etl::warehouse::open(args.warehouse.config(Some(table), &cli.aws, &cli.retry)?);
    let state = warehouse.state().await.ok();
    Ok(match resumable_run(ctx, table, state.as_ref()).await? {
        Some(id) => {
            tracing::info!(run_id = %id, table, "resuming run {id}: the newest run of table {table} that is not swapped in");
            id
        }
        None => {
            let id = new_run_id();
            tracing::info!(run_id = %id, table, "starting run {id}: table {table} has no run to resume");
            id
        }
    })
}

pub async fn run(cli: &Cli, args: &Args) -> Result<(), Error> {
    let segment = args.scan.settings()?;
    if args.estimate.estimate {
        return estimate_only(cli, args).await;
    }
    let ctx = cli.context().await?;
    let run_id = choose_run(cli, &ctx, args).await?;
    let planned = plan_or_resume(
        &ctx,
        RunRequest {
            run_id: &run_id,
            table: args.table.table.as_deref(),
            total_segments: args.total_segments.total_segments,
            default_total_segments: Some(DEFAULT_TOTAL_SEGMENTS),
            schemas: &args.schemas.options(),
            dialect: Some(args.warehouse.dialect()?),
        },
    )
    .await?;
    if planned.resumed {
        tracing::info!(run_id, "resuming the planned run");
    }
    let plan = planned.plan;
    let warehouse = dynamo_etl::warehouse::open(args.warehouse.config(
        Some(&plan.source_table),
        &cli.aws,
        &cli.retry,
    )?);
    let options = RunOptions {
        concurrency: args
            .concurrency
            .unwrap_or(plan.total_segments.min(8) as usize)
            .max(1),
        rescan: args.rescan,
        allow_older: args.allow_older,
        segment,
    };
    let show_bars = std::io::stderr().is_terminal() && cli.log_format != LogFormat::Json;
    // Progress bars get a length from DynamoDB's approximate item count, for an ETA.
    let per_segment = match show_bars {
        true => approximate_item_count(&ctx.dynamodb, &plan.source_table)
            .await
            .filter(|n| *n > 0)
            .map(|n| n.div_ceil(u64::from(plan.total_segments))),
        false => None,
    };
    let bars = Bars::new(plan.total_segments, per_segment);
    let observer: &dyn Observer = if show_bars { &bars } else { &Quiet };
    let outcome = run_all(&ctx, warehouse.as_ref(), &plan, options, observer).await;
    bars.finish();
    out(&output::run::render(&outcome.report));
    let staging = ctx.staging()?;
    let key = staging.layout.run_report(&plan.run_id);
    let text = serde_json::to_string_pretty(&outcome.report).expect("report serialises");
    match staging
        .store
        .put(&key, text.into(), "application/json")
        .await
    {
        Ok(()) => line(format!("  report saved to {}", staging.url(&key))),
        Err(e) => tracing::warn!(error = %e, "the report could not be saved"),
    }
    match outcome.failure {
        None => Ok(()),
        Some(e) => Err(e),
    }
}
