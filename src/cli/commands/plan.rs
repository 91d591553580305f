//! `plan`: pin a run for AWS Batch and print its id.

use super::super::flags::{PlanDialectFlag, RunFlag, SchemaFlags, TableFlag, TotalSegmentsFlag};
use super::super::output::line;
use super::super::Cli;
use dynamo_etl::error::Error;
use dynamo_etl::phases::plan::{given_run_id, new_run_id, plan_new};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub table: TableFlag,
    #[command(flatten)]
    pub total_segments: TotalSegmentsFlag,
    /// Default run id: from AWS_BATCH_JOB_ID, else a new one.
    #[command(flatten)]
    pub run: RunFlag,
    #[command(flatten)]
    pub schemas: SchemaFlags,
    #[command(flatten)]
    pub dialect: PlanDialectFlag,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<(), Error> {
    let table = args.table.table.as_deref().ok_or_else(|| {
        Error::fatal("plan needs the source table: pass --table or set ETL_TABLE")
    })?;
    let total = args
        .total_segments
        .total_segments
        .ok_or_else(|| Error::fatal("plan needs --total-segments (or ETL_TOTAL_SEGMENTS)"))?;
    let dialect = args.dialect.resolve().ok_or_else(|| {
        Error::fatal("plan needs the warehouse the run is for: pass --dialect postgres|redshift (or set ETL_DIALECT, or ETL_WAREHOUSE_URL)")
    })?;
    let run_id = given_run_id(args.run.run_id.as_deref()).unwrap_or_else(new_run_id);
    let ctx = cli.context().await?;
    let plan = plan_new(
        &ctx,
        &run_id,
        table,
        total,
        &args.schemas.options(),
        dialect,
    )
    .await?;
    tracing::info!(run_id = %plan.run_id, table = %plan.source_table, segments = plan.total_segments,
        tables = plan.schemas.len(), schema_source = %plan.schema_source, dialect = %plan.dialect, "run planned");
    line(&plan.run_id);
    Ok(())
}
