//! `upload` (phase 3 of one segment) and `retry phase-3`.

use super::super::flags::{RunFlag, SegmentChoice, WarehouseFlags};
use super::super::output::line;
use super::super::Cli;
use dynamo_etl::error::Error;
use dynamo_etl::warehouse::UploadOutcome;

pub const RETRY_EXAMPLE: &str = "Example (load segment 3 of run 2026-11-21 again; nothing is loaded twice):\n  dynamo-etl retry phase-3 3 --run-id 2026-11-21 --target platform --bucket etl-staging";

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub run: RunFlag,
    /// Which segment, from 0, or `auto` for AWS_BATCH_JOB_ARRAY_INDEX (AWS Batch array child).
    #[arg(
        long,
        env = "ETL_SEGMENT",
        required_unless_present = "all_segments",
        conflicts_with = "all_segments"
    )]
    pub segment: Option<SegmentChoice>,
    /// Load every segment phase 1 committed and staging does not hold yet, in one transaction
    /// with one COPY per table (the way to load Redshift).
    #[arg(long, env = "ETL_ALL_SEGMENTS")]
    pub all_segments: bool,
    #[command(flatten)]
    pub warehouse: WarehouseFlags,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RetryArgs {
    /// The segment to load again.
    pub segment: u32,
    #[command(flatten)]
    pub run: RunFlag,
    #[command(flatten)]
    pub warehouse: WarehouseFlags,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<(), Error> {
    let run_id = args.run.required()?;
    match args.segment {
        Some(segment) => phase3(cli, run_id, segment.resolve()?, &args.warehouse).await,
        None => all_segments(cli, run_id, &args.warehouse).await,
    }
}

async fn all_segments(cli: &Cli, run_id: &str, flags: &WarehouseFlags) -> Result<(), Error> {
    let (ctx, plan, warehouse) = super::planned_with_warehouse(cli, run_id, flags).await?;
    let started = std::time::Instant::now();
    let done = dynamo_etl::phases::upload::upload_all(&ctx, warehouse.as_ref(), &plan).await?;
    line(format!(
        "run {run_id}: {} segment(s) loaded into {} ({} rows), {} loaded before, in {} ms",
        done.loaded.len(),
        warehouse.config().staging(),
        done.loaded.values().sum::<u64>(),
        done.already.len(),
        started.elapsed().as_millis()
    ));
    Ok(())
}

pub async fn retry(cli: &Cli, args: &RetryArgs) -> Result<(), Error> {
    phase3(cli, args.run.required()?, args.segment, &args.warehouse).await
}

async fn phase3(
    cli: &Cli,
    run_id: &str,
    segment: u32,
    flags: &WarehouseFlags,
) -> Result<(), Error> {
    let (ctx, plan, warehouse) = super::planned_with_warehouse(cli, run_id, flags).await?;
    let started = std::time::Instant::now();
    match dynamo_etl::phases::upload::upload(&ctx, warehouse.as_ref(), &plan, segment).await? {
        UploadOutcome::Loaded { rows, tables } => {
            let detail: Vec<String> = tables
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(t, n)| format!("{t}={n}"))
                .collect();
            line(format!(
                "segment {segment} of run {run_id} loaded into {}: {rows} rows ({}) in {} ms",
                warehouse.config().staging(),
                detail.join(", "),
                started.elapsed().as_millis()
            ));
        }
        UploadOutcome::AlreadyLoaded => line(format!(
            "segment {segment} of run {run_id} was already loaded; nothing to do"
        )),
    }
    Ok(())
}
