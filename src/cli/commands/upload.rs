//! `upload` (phase 3 of one segment) and `retry phase-3`.

use super::super::flags::{RunFlag, SegmentFlag, WarehouseFlags};
use super::super::output::line;
use super::super::Cli;
use dynamo_etl::error::Error;
use dynamo_etl::warehouse::UploadOutcome;

pub const RETRY_EXAMPLE: &str = "Example (load segment 3 of run 2026-11-21 again; nothing is loaded twice):\n  dynamo-etl retry phase-3 3 --run-id 2026-11-21 --target platform --bucket etl-staging";

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub run: RunFlag,
    #[command(flatten)]
    pub segment: SegmentFlag,
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
    let segment = args.segment.segment.resolve()?;
    phase3(cli, args.run.required()?, segment, &args.warehouse).await
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
    let (ctx, plan) = super::planned(cli, run_id).await?;
    let warehouse = dynamo_etl::warehouse::open(flags.config(Some(&plan.source_table))?);
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
