//! `follow`: tail the table's DynamoDB stream into the tables the target serves, one
//! transaction per batch, the stream positions recorded with each.

use super::super::flags::{ExportWaitFlags, PartFlags, SchemaFlags, TableFlag, WarehouseFlags};
use super::super::output::{self, line};
use super::super::Cli;
use dynamo_etl::error::Error;
use dynamo_etl::phases::follow::{follow, FollowRequest};
use dynamo_etl::phases::increment::IncrementRequest;
use dynamo_etl::phases::segment::SegmentSettings;
use dynamo_etl::warehouse::DialectName;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub table: TableFlag,
    #[command(flatten)]
    pub warehouse: WarehouseFlags,
    /// Seconds of stream records gathered into one batch (one transaction). Default: 10 on
    /// PostgreSQL, 60 on Redshift.
    #[arg(long, env = "ETL_BATCH_SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub batch_seconds: Option<u64>,
    /// Stop after this many batches applied.
    #[arg(long, env = "ETL_MAX_BATCHES", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_batches: Option<u64>,
    /// Stop once a batch has applied every record the stream held (for cron and tests).
    #[arg(long, env = "ETL_UNTIL_CAUGHT_UP")]
    pub until_caught_up: bool,
    /// Milliseconds to wait before asking the shards again when none had a record.
    #[arg(long, env = "ETL_IDLE_POLL_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(200..=60_000))]
    pub idle_poll_ms: u64,
    /// When the stream no longer holds the records after the target's position (down longer
    /// than the stream keeps them, 24 hours), exit 2 instead of catching up with an incremental
    /// export from the target's watermark.
    #[arg(long, env = "ETL_NO_CATCH_UP")]
    pub no_catch_up: bool,
    /// Catch up a lost position with this finished incremental export
    /// (s3://<bucket>/<export-prefix>/AWSDynamoDB/<export-id>, its window starting at the
    /// target's watermark) instead of exporting the changes.
    #[arg(
        long,
        env = "ETL_CATCH_UP_EXPORT_PREFIX",
        value_name = "S3_URL",
        conflicts_with = "no_catch_up"
    )]
    pub catch_up_export_prefix: Option<String>,
    #[command(flatten)]
    pub parts: PartFlags,
    #[command(flatten)]
    pub schemas: SchemaFlags,
    #[command(flatten)]
    pub wait: ExportWaitFlags,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<(), Error> {
    let table = args.table.table.as_deref().ok_or_else(|| {
        Error::fatal("follow needs the source table: pass --table or set ETL_TABLE")
    })?;
    let ctx = cli.context().await?;
    let warehouse =
        dynamo_etl::warehouse::open(args.warehouse.config(Some(table), &cli.aws, &cli.retry)?);
    let batch_seconds = args
        .batch_seconds
        .unwrap_or(match warehouse.config().options.name() {
            DialectName::Redshift => 60,
            _ => 10,
        });
    let settings = SegmentSettings {
        parts: args.parts.settings()?,
        consistent_read: false,
        max_read_units: None,
        progress_every: Duration::from_secs(30),
        checkpoint_every: Duration::from_secs(60),
        restart: true,
        page_items: None,
    };
    let export =
        dynamo_etl::phases::export::resolve(&ctx, args.catch_up_export_prefix.as_deref(), None)
            .await?;
    let catch_up = (!args.no_catch_up).then(|| IncrementRequest {
        table,
        export,
        export_window: None,
        to: None,
        new_and_old_images: true,
        schemas: args.schemas.options(),
        // Follow applies with the served copy's data-schemas; so does its catch-up.
        served_schemas: true,
        total_segments: 1,
        settings,
        poll: args.wait.poll(),
        wait: args.wait.wait(),
    });
    let request = FollowRequest {
        table,
        batch_seconds: Duration::from_secs(batch_seconds),
        max_batches: args.max_batches,
        until_caught_up: args.until_caught_up,
        idle_poll: Duration::from_millis(args.idle_poll_ms),
        settings,
        catch_up,
    };
    let target = warehouse.config().target.clone();
    let end = follow(&ctx, warehouse.as_ref(), &request, |batch| {
        line(output::follow::batch_line(&target, batch));
    })
    .await?;
    line(format!(
        "follow of {table} into {target} ended: {}; {} batches, {} records applied",
        end.why, end.batches, end.records
    ));
    Ok(())
}
