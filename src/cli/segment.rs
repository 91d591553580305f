//! `segment` (phase 1) and `retry phase-1`.

use anyhow::anyhow;
use std::path::PathBuf;
use std::time::Duration;

use super::{Cli, CommandResult, Failure, SegmentChoice, Services};
use crate::phases::segment::{run_segment, SegmentContext};
use crate::schema::cache::SnapshotCache;
use crate::schema::resolve::{ResolveError, SchemaResolver};
use crate::stage::check_run_id;
use crate::stage::codec::PartCompression;
use crate::stage::parts::{PartSettings, MIN_CHUNK_BYTES};
use crate::stage::plan::RunPlan;

#[derive(Debug, Clone, clap::Args)]
pub struct SegmentArgs {
    /// The run this segment belongs to (names its folder in the staging area).
    #[arg(long, env = "ETL_RUN_ID")]
    pub run_id: String,
    /// Source DynamoDB table (may be omitted when the run is already planned).
    #[arg(long, env = "ETL_TABLE")]
    pub table: Option<String>,
    /// How many segments the table is scanned in (1 to 1,000,000).
    #[arg(long, env = "ETL_TOTAL_SEGMENTS",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub total_segments: u32,
    /// Which segment to scan, from 0, or `auto` for AWS_BATCH_JOB_ARRAY_INDEX.
    #[arg(long, env = "ETL_SEGMENT")]
    pub segment: SegmentChoice,
    #[command(flatten)]
    pub scan: ScanArgs,
}

/// Phase-1 knobs shared by `segment` and `retry phase-1`.
#[derive(Debug, Clone, clap::Args)]
pub struct ScanArgs {
    /// Folder of the static data-schemas (`<dir>/<table>/*.json`): the fallback when planning a
    /// run and the schema cache has no valid snapshot of the table or cannot be reached.
    #[arg(long, env = "ETL_SCHEMAS_DIR", default_value = "schemas")]
    pub schemas_dir: PathBuf,
    /// Plan with the static data-schemas even when the schema cache has a snapshot.
    #[arg(long, env = "ETL_NO_SCHEMA_CACHE")]
    pub no_schema_cache: bool,
    /// Strongly consistent reads (twice the read units).
    #[arg(long, env = "ETL_CONSISTENT_READ")]
    pub consistent_read: bool,
    /// Read capacity units per second this segment may use (token bucket charged with the
    /// consumed capacity DynamoDB reports). Needed on on-demand tables to cap cost.
    #[arg(long, env = "ETL_MAX_READ_UNITS")]
    pub max_read_units: Option<f64>,
    /// Close a CSV part after this many compressed MiB.
    #[arg(long, env = "ETL_PART_SIZE_MIB", default_value_t = 64)]
    pub part_size_mib: usize,
    /// Multipart upload chunk in MiB (at least 5). Each table being written holds up to one
    /// chunk, so this sets most of phase 1's memory.
    #[arg(long, env = "ETL_UPLOAD_CHUNK_MIB", default_value_t = 5)]
    pub upload_chunk_mib: usize,
    /// Upload chunks on the wire at once.
    #[arg(long, env = "ETL_UPLOADS_IN_FLIGHT", default_value_t = 2)]
    pub uploads_in_flight: usize,
    /// How CSV parts are compressed: zstd (`.csv.zst`, the default) or gzip (`.csv.gz`).
    /// Both warehouses load both.
    #[arg(long, env = "ETL_PART_COMPRESSION", value_enum, default_value_t = PartCompression::Zstd)]
    pub part_compression: PartCompression,
    /// The codec's level: zstd -7 (fastest) … 19, gzip 0 … 9. Level 1 is fast for both.
    #[arg(
        long,
        env = "ETL_COMPRESSION_LEVEL",
        default_value_t = 1,
        allow_hyphen_values = true
    )]
    pub compression_level: i32,
    /// Seconds between progress log lines.
    #[arg(long, env = "ETL_PROGRESS_SECONDS", default_value_t = 10)]
    pub progress_seconds: u64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RetryPhase1Args {
    /// Total segments of the run (must match its plan).
    pub total_segments: u32,
    /// The segment to scan again.
    pub segment: u32,
    /// The run to retry.
    #[arg(long, env = "ETL_RUN_ID")]
    pub run_id: String,
    #[command(flatten)]
    pub scan: ScanArgs,
}

impl ScanArgs {
    pub fn part_settings(&self) -> Result<PartSettings, Failure> {
        let chunk_bytes = self.upload_chunk_mib << 20;
        if chunk_bytes < MIN_CHUNK_BYTES {
            return Err(Failure::Fatal(anyhow!(
                "--upload-chunk-mib must be at least 5 (S3's smallest multipart part)"
            )));
        }
        if self.part_size_mib == 0 || self.uploads_in_flight == 0 {
            return Err(Failure::Fatal(anyhow!(
                "--part-size-mib and --uploads-in-flight must be at least 1"
            )));
        }
        if let Some(units) = self.max_read_units {
            if !(units.is_finite() && units > 0.0) {
                return Err(Failure::Fatal(anyhow!(
                    "--max-read-units must be a positive number, got {units}"
                )));
            }
        }
        self.part_compression
            .check_level(self.compression_level)
            .map_err(|e| Failure::Fatal(anyhow!("--compression-level: {e}")))?;
        Ok(PartSettings {
            part_bytes: self.part_size_mib << 20,
            chunk_bytes,
            max_in_flight: self.uploads_in_flight,
            compression: self.part_compression,
            level: self.compression_level,
        })
    }
}

pub async fn run(cli: &Cli, args: &SegmentArgs) -> CommandResult {
    let segment = args.segment.resolve()?;
    phase1(
        cli,
        &args.run_id,
        args.table.as_deref(),
        args.total_segments,
        segment,
        &args.scan,
    )
    .await
}

pub async fn retry(cli: &Cli, args: &RetryPhase1Args) -> CommandResult {
    phase1(
        cli,
        &args.run_id,
        None,
        args.total_segments,
        args.segment,
        &args.scan,
    )
    .await
}

async fn phase1(
    cli: &Cli,
    run_id: &str,
    table: Option<&str>,
    total_segments: u32,
    segment: u32,
    scan: &ScanArgs,
) -> CommandResult {
    check_run_id(run_id).map_err(|e| Failure::Fatal(anyhow!(e)))?;
    if segment >= total_segments {
        return Err(Failure::Fatal(anyhow!(
            "segment {segment} does not exist: segments are numbered 0 to {} for {total_segments} total segments",
            total_segments - 1
        )));
    }
    let parts = scan.part_settings()?;
    let services = Services::connect(cli).await?;
    services
        .store
        .check_access(&services.layout.run(run_id))
        .await
        .map_err(retry_or_fatal)?;
    let dynamodb = services.dynamodb(cli);
    let resolver = schema_resolver(&services, &scan.schemas_dir, scan.no_schema_cache);
    let plan = match RunPlan::load(&services.store, &services.layout, run_id).await? {
        Some(plan) => {
            if plan.total_segments != total_segments {
                return Err(Failure::Fatal(anyhow!(
                    "run {run_id} was planned with {} total segments, not {total_segments}; use `--total-segments {}`",
                    plan.total_segments,
                    plan.total_segments
                )));
            }
            if let Some(t) = table {
                if t != plan.source_table {
                    return Err(Failure::Fatal(anyhow!(
                        "run {run_id} copies table {}, not {t}; use a new --run-id for another table",
                        plan.source_table
                    )));
                }
            }
            // Logs that the run's pinned data-schemas are used.
            resolver
                .resolve(&plan.source_table, Some(&plan))
                .await
                .map_err(resolve_failure)?;
            plan
        }
        None => {
            let table = table.ok_or_else(|| {
                Failure::Fatal(anyhow!(
                    "run {run_id} has no plan yet; pass --table (or set ETL_TABLE) so phase 1 can plan it"
                ))
            })?;
            plan_new_run(
                cli,
                &services,
                &dynamodb,
                run_id,
                table,
                total_segments,
                &scan.schemas_dir,
                scan.no_schema_cache,
            )
            .await?
        }
    };
    let ctx = SegmentContext {
        dynamodb,
        store: services.store.clone(),
        layout: services.layout.clone(),
        parts,
        retry: cli.retry.policy(),
        consistent_read: scan.consistent_read,
        max_read_units: scan.max_read_units,
        progress_every: Duration::from_secs(scan.progress_seconds.max(1)),
    };
    tracing::info!(run_id, table = %plan.source_table, segment, total_segments, "phase 1 starting");
    match run_segment(&ctx, &plan, segment).await {
        Ok(m) => {
            let tables: Vec<String> = m
                .tables
                .iter()
                .filter(|(_, t)| t.rows > 0)
                .map(|(name, t)| format!("{name}={} rows/{} files", t.rows, t.files.len()))
                .collect();
            println!(
                "segment {segment}/{total_segments} of run {run_id}: {} items scanned, {} rejected, {:.1} read units, {} ms; {}",
                m.items_scanned,
                m.items_rejected.len(),
                m.read_units,
                m.duration_ms,
                tables.join(", ")
            );
            Ok(())
        }
        Err(e) => {
            let retriable = e.is_retriable();
            let err = anyhow::Error::new(e).context(format!(
                "phase 1 for segment {segment} of run {run_id} did not commit; retry with: dynamo-etl retry phase-1 {total_segments} {segment} --run-id {run_id}"
            ));
            Err(if retriable {
                Failure::Retry(err)
            } else {
                Failure::Fatal(err)
            })
        }
    }
}

/// The resolver every planning command uses: cache (unless switched off), then the static folder.
pub(super) fn schema_resolver(
    services: &Services,
    schemas_dir: &std::path::Path,
    no_cache: bool,
) -> SchemaResolver {
    let cache =
        (!no_cache).then(|| SnapshotCache::new(services.store.clone(), services.layout.clone()));
    SchemaResolver::new(cache, schemas_dir)
}

/// Resolves the data-schemas of a new run and pins it (shared by `plan`, `run` and phase 1).
#[allow(clippy::too_many_arguments)]
pub(super) async fn plan_new_run(
    cli: &Cli,
    services: &Services,
    dynamodb: &aws_sdk_dynamodb::Client,
    run_id: &str,
    table: &str,
    total_segments: u32,
    schemas_dir: &std::path::Path,
    no_cache: bool,
) -> Result<RunPlan, Failure> {
    let chosen = schema_resolver(services, schemas_dir, no_cache)
        .resolve(table, None)
        .await
        .map_err(resolve_failure)?;
    crate::phases::plan::plan_run(
        dynamodb,
        &services.store,
        &services.layout,
        &cli.retry.policy(),
        run_id,
        table,
        total_segments,
        chosen.schemas,
        chosen.source.to_string(),
    )
    .await
    .map_err(|e| {
        if e.is_retriable() {
            Failure::Retry(e.into())
        } else {
            Failure::Fatal(e.into())
        }
    })
}

fn resolve_failure(e: ResolveError) -> Failure {
    if e.is_retriable() {
        Failure::Retry(e.into())
    } else {
        Failure::Fatal(e.into())
    }
}

fn retry_or_fatal(e: crate::stage::store::StoreError) -> Failure {
    if e.is_retriable() {
        Failure::Retry(
            anyhow::Error::new(e).context("the staging bucket is unreachable; retry later"),
        )
    } else {
        Failure::Fatal(
            anyhow::Error::new(e).context("check --bucket, --s3-endpoint and the credentials"),
        )
    }
}
