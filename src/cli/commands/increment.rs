//! `increment`: apply the table's changes since the target's watermark (DynamoDB incremental
//! exports) to the tables the target serves.

use super::super::flags::{
    note, ExportWaitFlags, PartFlags, SchemaFlags, TableFlag, WarehouseFlags,
};
use super::super::output::line;
use super::super::Cli;
use dynamo_etl::error::Error;
use dynamo_etl::phases::increment::{increment, instant, IncrementRequest};
use dynamo_etl::phases::segment::SegmentSettings;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
#[command(mut_arg("schemas_dir", note(
    "Here the current data-schemas: when they differ from the served copy's, increment refuses (a full copy brings new ones) unless --served-schemas."
)))]
pub struct Args {
    #[command(flatten)]
    pub table: TableFlag,
    #[command(flatten)]
    pub warehouse: WarehouseFlags,
    /// Apply this finished incremental export instead of exporting the changes:
    /// s3://<bucket>/<export-prefix>/AWSDynamoDB/<export-id>. Its window must start at the
    /// target's watermark.
    #[arg(
        long,
        env = "ETL_INCREMENTAL_EXPORT_PREFIX",
        value_name = "S3_URL",
        conflicts_with_all = ["incremental_export_arn", "deprecated_export_arn"]
    )]
    pub incremental_export_prefix: Option<String>,
    /// Apply the finished incremental export with this ARN (location and window from
    /// DescribeExport).
    #[arg(long, env = "ETL_INCREMENTAL_EXPORT_ARN", value_name = "ARN")]
    pub incremental_export_arn: Option<String>,
    /// Deprecated spelling of --incremental-export-prefix (and ETL_EXPORT_PREFIX of
    /// ETL_INCREMENTAL_EXPORT_PREFIX), read until the next release.
    #[arg(
        long = "export-prefix",
        env = "ETL_EXPORT_PREFIX",
        value_name = "S3_URL",
        hide = true,
        conflicts_with_all = ["incremental_export_arn", "deprecated_export_arn"]
    )]
    pub deprecated_export_prefix: Option<String>,
    /// Deprecated spelling of --incremental-export-arn (and ETL_EXPORT_ARN of
    /// ETL_INCREMENTAL_EXPORT_ARN), read until the next release.
    #[arg(
        long = "export-arn",
        env = "ETL_EXPORT_ARN",
        value_name = "ARN",
        hide = true,
        conflicts_with = "incremental_export_prefix"
    )]
    pub deprecated_export_arn: Option<String>,
    /// Apply changes written before this RFC 3339 time. Default: the newest time the table's
    /// point-in-time recovery can export.
    #[arg(long, env = "ETL_TO", value_name = "TIME", value_parser = super::export::parse_time)]
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    /// The export's view: new and old images, or new images only (either is enough: the old
    /// rows are found by key).
    #[arg(long, env = "ETL_VIEW", value_enum, default_value_t = View::NewAndOldImages)]
    pub view: View,
    /// Segments each increment's export is read in (in this process, one after the other).
    #[arg(long, env = "ETL_TOTAL_SEGMENTS", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub total_segments: u32,
    #[command(flatten)]
    pub parts: PartFlags,
    #[command(flatten)]
    pub schemas: SchemaFlags,
    /// Apply with the served copy's data-schemas even though the current ones differ.
    #[arg(long, env = "ETL_SERVED_SCHEMAS")]
    pub served_schemas: bool,
    #[command(flatten)]
    pub wait: ExportWaitFlags,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum View {
    NewAndOldImages,
    NewImage,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<(), Error> {
    let table = args.table.table.as_deref().ok_or_else(|| {
        Error::fatal("increment needs the source table: pass --table or set ETL_TABLE")
    })?;
    let ctx = cli.context().await?;
    let warehouse =
        dynamo_etl::warehouse::open(args.warehouse.config(Some(table), &cli.aws, &cli.retry)?);
    let export = dynamo_etl::phases::export::resolve(
        &ctx,
        args.incremental_export_prefix.as_deref(),
        args.incremental_export_arn.as_deref(),
    )
    .await?;
    let export_window = match args.incremental_export_arn.as_deref() {
        Some(arn) => dynamo_etl::phases::export::incremental_window(&ctx, arn).await?,
        None => None,
    };
    let request = IncrementRequest {
        table,
        export,
        export_window,
        to: args.to,
        new_and_old_images: args.view == View::NewAndOldImages,
        schemas: args.schemas.options(),
        served_schemas: args.served_schemas,
        total_segments: args.total_segments,
        settings: SegmentSettings {
            parts: args.parts.settings()?,
            consistent_read: false,
            max_read_units: None,
            progress_every: Duration::from_secs(30),
            checkpoint_every: Duration::from_secs(60),
            restart: true,
            page_items: None,
        },
        poll: args.wait.poll(),
        wait: args.wait.wait(),
    };
    let (done, after) = increment(&ctx, warehouse.as_ref(), &request).await?;
    let target = &warehouse.config().target;
    if done.is_empty() {
        line(format!(
            "{target} is current to {} (less than 15 minutes ago, the shortest window an incremental export covers): nothing to apply",
            instant(after.at)
        ));
    }
    for d in &done {
        line(match d.changes {
            Some(n) => format!(
                "increment {} applied to {target}: {n} changes from {} to {} (apply {} ms)",
                d.run_id,
                d.from,
                d.to,
                d.apply_ms.unwrap_or(0)
            ),
            None => format!(
                "increment {} ({} to {}) was applied to {target} before: nothing changed",
                d.run_id, d.from, d.to
            ),
        });
    }
    let lag = chrono::Utc::now() - after.at;
    line(format!(
        "watermark of {target}: {} (run {}), {} min behind now",
        instant(after.at),
        after.serving,
        lag.num_minutes()
    ));
    Ok(())
}
