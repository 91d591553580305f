//! `segment` (phase 1 of one segment) and `retry phase-1`.

use super::super::flags::{
    note, PlanDialectFlags, RunFlag, ScanFlags, SchemaFlags, SegmentFlag, TableFlag,
    TotalSegmentsFlag,
};
use super::super::output::line;
use super::super::Cli;
use dynamo_etl::error::Error;
use dynamo_etl::phases::plan::RunRequest;
use dynamo_etl::schema::DialectName;

pub const RETRY_EXAMPLE: &str = "Example (scan segment 3 of run 2026-11-21's 8 segments again):\n  dynamo-etl retry phase-1 8 3 --run-id 2026-11-21 --bucket etl-staging";

#[derive(Debug, Clone, clap::Args)]
#[command(mut_arg("table", note("May be omitted when the run is already planned.")))]
pub struct Args {
    #[command(flatten)]
    pub run: RunFlag,
    #[command(flatten)]
    pub table: TableFlag,
    #[command(flatten)]
    pub total_segments: TotalSegmentsFlag,
    #[command(flatten)]
    pub segment: SegmentFlag,
    #[command(flatten)]
    pub schemas: SchemaFlags,
    #[command(flatten)]
    pub dialect: PlanDialectFlags,
    #[command(flatten)]
    pub scan: ScanFlags,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RetryArgs {
    /// Total segments of the run (must match its plan).
    pub total_segments: u32,
    /// The segment to scan again.
    pub segment: u32,
    #[command(flatten)]
    pub run: RunFlag,
    #[command(flatten)]
    pub schemas: SchemaFlags,
    #[command(flatten)]
    pub scan: ScanFlags,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<(), Error> {
    let total = args
        .total_segments
        .total_segments
        .ok_or_else(|| Error::fatal("phase 1 needs --total-segments (or ETL_TOTAL_SEGMENTS)"))?;
    let segment = args.segment.segment.resolve()?;
    let job = Job {
        run_id: args.run.required()?,
        table: args.table.table.as_deref(),
        total,
        segment,
        schemas: &args.schemas,
        dialect: args.dialect.resolve(),
        scan: &args.scan,
    };
    phase1(cli, job).await
}

pub async fn retry(cli: &Cli, args: &RetryArgs) -> Result<(), Error> {
    let job = Job {
        run_id: args.run.required()?,
        table: None,
        total: args.total_segments,
        segment: args.segment,
        schemas: &args.schemas,
        // The run is planned already: it has its dialect.
        dialect: None,
        scan: &args.scan,
    };
    phase1(cli, job).await
}

struct Job<'a> {
    run_id: &'a str,
    table: Option<&'a str>,
    total: u32,
    segment: u32,
    schemas: &'a SchemaFlags,
    dialect: Option<DialectName>,
    scan: &'a ScanFlags,
}

async fn phase1(cli: &Cli, job: Job<'_>) -> Result<(), Error> {
    let (run_id, total, segment) = (job.run_id, job.total, job.segment);
    let settings = job.scan.settings()?;
    let ctx = cli.context().await?;
    let request = RunRequest {
        run_id,
        table: job.table,
        total_segments: Some(total),
        default_total_segments: None,
        schemas: &job.schemas.options(),
        dialect: job.dialect,
    };
    let m = dynamo_etl::phases::segment::segment(&ctx, request, &settings, segment).await?;
    let tables: Vec<String> = m
        .tables
        .iter()
        .filter(|(_, t)| t.rows > 0)
        .map(|(name, t)| format!("{name}={} rows/{} files", t.rows, t.files.len()))
        .collect();
    let resumed = m.resumed.as_ref().map_or(String::new(), |r| {
        format!(
            " (resumed after {} items: this attempt read {:.1} units)",
            r.items,
            m.read_units - r.read_units
        )
    });
    let budget = match (settings.max_read_units, m.read_rate()) {
        (Some(max), Some(rate)) => format!(
            ", {rate:.1} read units/s = {:.0}% of --max-read-units",
            rate / max * 100.0
        ),
        _ => String::new(),
    };
    line(format!(
        "segment {segment}/{total} of run {run_id}: {} items scanned, {} rejected, {:.1} read units{budget}, {} ms{resumed}; {}",
        m.items_scanned,
        m.items_rejected.len(),
        m.read_units,
        m.duration_ms,
        tables.join(", ")
    ));
    Ok(())
}
