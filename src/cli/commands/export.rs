//! `export start` / `export wait`: a DynamoDB export of the table to the staging bucket, for a
//! run that reads it instead of scanning (`plan --export-arn`).

use super::super::flags::{note, ExportWaitFlags, RunFlag, TableFlag};
use super::super::output::line;
use super::super::Cli;
use dynamo_etl::error::Error;
use dynamo_etl::phases::export::{start, started_for, wait, StartRequest};
use dynamo_etl::phases::plan::{given_run_id, new_run_id};

#[derive(Debug, Clone, clap::Args)]
#[command(mut_arg("run_id", note(
    "The export is written under runs/<run-id>/export. Default: from AWS_BATCH_JOB_ID, else a new one."
)))]
pub struct StartArgs {
    #[command(flatten)]
    pub table: TableFlag,
    #[command(flatten)]
    pub run: RunFlag,
    /// The instant to export, RFC 3339 (within the table's point-in-time recovery window).
    /// Default: now.
    #[arg(long, env = "ETL_EXPORT_TIME", value_name = "TIME", value_parser = parse_time)]
    pub export_time: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Clone, clap::Args)]
#[command(mut_arg("run_id", note(
    "Without --export-arn: wait for the export `export start` started for this run (it notes the ARN in runs/<run-id>/export-started.json)."
)))]
pub struct WaitArgs {
    /// The export to wait for (printed by `export start`). Default: the export `export start`
    /// started for --run-id.
    #[arg(long, env = "ETL_EXPORT_ARN", value_name = "ARN")]
    pub export_arn: Option<String>,
    #[command(flatten)]
    pub run: RunFlag,
    #[command(flatten)]
    pub wait: ExportWaitFlags,
}

pub fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("{text:?} is not an RFC 3339 time (2026-12-01T03:00:00Z): {e}"))
}

pub async fn run_start(cli: &Cli, args: &StartArgs) -> Result<(), Error> {
    let table = args.table.table.as_deref().ok_or_else(|| {
        Error::fatal("export start needs the source table: pass --table or set ETL_TABLE")
    })?;
    let run_id = given_run_id(args.run.run_id.as_deref()).unwrap_or_else(new_run_id);
    let ctx = cli.context().await?;
    let started = start(
        &ctx,
        StartRequest {
            table,
            run_id: &run_id,
            export_time: args.export_time,
            incremental: None,
        },
    )
    .await?;
    line(&started.export_arn);
    Ok(())
}

pub async fn run_wait(cli: &Cli, args: &WaitArgs) -> Result<(), Error> {
    let ctx = cli.context().await?;
    let arn = match &args.export_arn {
        Some(arn) => arn.clone(),
        None => {
            let run_id = args.run.required().map_err(|_| {
                Error::fatal("export wait needs the export: pass --export-arn, or --run-id of the run `export start` started it for")
            })?;
            started_for(ctx.staging()?, run_id).await?.export_arn
        }
    };
    let location = wait(&ctx, &arn, args.wait.poll(), args.wait.wait()).await?;
    line(location);
    Ok(())
}
