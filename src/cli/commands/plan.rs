//! `plan`: pin a run for AWS Batch and print its id; with `--estimate`, print what a full scan
//! of the table would cost and take instead, and pin nothing.

use super::super::flags::{
    note, ExportFlags, NoEffectCheckpointFlags, PlanDialectFlags, ReadFlags, RunFlag, SchemaFlags,
    TableFlag, TotalSegmentsFlag,
};
use super::super::output::{self, line, out};
use super::super::Cli;
use dynamo_etl::error::Error;
use dynamo_etl::phases::estimate::{estimate, EstimateSettings, DEFAULT_READ_PRICE_PER_MILLION};
use dynamo_etl::phases::export::started_for;
use dynamo_etl::phases::plan::{given_run_id, new_run_id, plan_new};

#[derive(Debug, Clone, clap::Args)]
#[command(
    mut_arg("run_id", note("Default: from AWS_BATCH_JOB_ID, else a new one.")),
    mut_arg("consistent_read", note(
        "Here read only with --estimate, as the setting phase 1 will run with."
    )),
    mut_arg("max_read_units", note(
        "Here read only with --estimate, as the budget of each segment of phase 1, all of them at once (as AWS Batch runs them)."
    ))
)]
pub struct Args {
    #[command(flatten)]
    pub table: TableFlag,
    #[command(flatten)]
    pub total_segments: TotalSegmentsFlag,
    #[command(flatten)]
    pub run: RunFlag,
    #[command(flatten)]
    pub schemas: SchemaFlags,
    #[command(flatten)]
    pub dialect: PlanDialectFlags,
    #[command(flatten)]
    pub export: ExportFlags,
    /// Plan the run to read the export `export start` started for this run id (the ARN it
    /// noted in runs/<run-id>/export-started.json), as with --export-arn. Needs a finished
    /// export (`export wait`).
    #[arg(long, env = "ETL_EXPORT_OF_RUN", conflicts_with_all = ["export_prefix", "export_arn"])]
    pub export_of_run: bool,
    #[command(flatten)]
    pub estimate: EstimateFlags,
    #[command(flatten)]
    pub read: ReadFlags,
    #[command(flatten)]
    pub no_effect: NoEffectCheckpointFlags,
}

/// `--estimate` and its price; `plan` and `run` take it.
#[derive(Debug, Clone, clap::Args)]
pub struct EstimateFlags {
    /// Print the read units, cost and time of a full scan of the table, worked out from
    /// DescribeTable, then stop: nothing is planned, scanned or written.
    #[arg(long, env = "ETL_ESTIMATE")]
    pub estimate: bool,
    /// With --estimate: USD per million read request units. Default: the us-east-1 on-demand
    /// list price (Standard table class).
    #[arg(long, env = "ETL_READ_PRICE_PER_MILLION", default_value_t = DEFAULT_READ_PRICE_PER_MILLION,
          value_name = "USD")]
    pub read_price_per_million: f64,
}

impl EstimateFlags {
    /// The estimate's settings for a run of `total` segments, `at_once` of them scanning at the
    /// same time, read as `read` says.
    pub fn settings(
        &self,
        total: u32,
        at_once: u32,
        read: &ReadFlags,
    ) -> Result<EstimateSettings, Error> {
        let settings = EstimateSettings {
            total_segments: total,
            segments_at_once: at_once,
            max_read_units: read.checked_read_units()?,
            consistent_read: read.consistent_read,
            read_price_per_million: self.read_price_per_million,
        };
        settings.check()?;
        Ok(settings)
    }
}

/// The command line that reproduces an estimate, for the message when running it again helps.
pub fn estimate_command(command: &str, table: &str, settings: &EstimateSettings) -> String {
    let mut text = format!(
        "dynamo-etl {command} --estimate --table {table} --total-segments {}",
        settings.total_segments
    );
    if let Some(units) = settings.max_read_units {
        text.push_str(&format!(" --max-read-units {units}"));
    }
    if settings.consistent_read {
        text.push_str(" --consistent-read");
    }
    if settings.read_price_per_million != DEFAULT_READ_PRICE_PER_MILLION {
        text.push_str(&format!(
            " --read-price-per-million {}",
            settings.read_price_per_million
        ));
    }
    text
}

pub async fn run(cli: &Cli, args: &Args) -> Result<(), Error> {
    let table = args.table.table.as_deref().ok_or_else(|| {
        Error::fatal("plan needs the source table: pass --table or set ETL_TABLE")
    })?;
    let total = args
        .total_segments
        .total_segments
        .ok_or_else(|| Error::fatal("plan needs --total-segments (or ETL_TOTAL_SEGMENTS)"))?;
    if args.estimate.estimate {
        let settings = args.estimate.settings(total, total, &args.read)?;
        let command = estimate_command("plan", table, &settings);
        let ctx = cli.context().await?;
        let figures = estimate(&ctx, table, settings, &command).await?;
        out(&output::estimate::render(&figures));
        return Ok(());
    }
    let dialect = args.dialect.resolve().ok_or_else(|| {
        Error::fatal("plan needs the warehouse the run is for: pass --dialect postgres|redshift (or set ETL_DIALECT, or ETL_WAREHOUSE_URL)")
    })?;
    let run_id = given_run_id(args.run.run_id.as_deref()).unwrap_or_else(new_run_id);
    let ctx = cli.context().await?;
    let noted_arn = match args.export_of_run {
        true => {
            let noted = started_for(ctx.staging()?, &run_id).await?;
            if noted.table != table {
                return Err(Error::fatal(format!(
                    "run {run_id}'s export is of table {}, not {table}; plan it with --table {}, or start an export of {table}",
                    noted.table, noted.table
                )));
            }
            Some(noted.export_arn)
        }
        false => None,
    };
    let export = dynamo_etl::phases::export::resolve(
        &ctx,
        args.export.export_prefix.as_deref(),
        args.export.export_arn.as_deref().or(noted_arn.as_deref()),
    )
    .await?;
    let plan = plan_new(
        &ctx,
        &run_id,
        table,
        total,
        &args.schemas.options(),
        dialect,
        export,
    )
    .await?;
    tracing::info!(run_id = %plan.run_id, table = %plan.source_table, segments = plan.total_segments,
        tables = plan.schemas.len(), schema_source = %plan.schema_source, dialect = %plan.dialect,
        export = plan.export.as_ref().map(|e| e.url()).unwrap_or_default(), "run planned");
    line(&plan.run_id);
    Ok(())
}
