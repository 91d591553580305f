//! Flag groups, each declared once and flattened into the commands that take it. Every flag also
//! reads the environment variable `ETL_<FLAG>` (`--total-segments` ↔ `ETL_TOTAL_SEGMENTS`). Each
//! group turns into the library's plain settings, checked before any I/O.
//!
//! clap drops a doc comment written on a `#[command(flatten)]` field, so a command that says
//! more about a shared flag adds it with [`note`] (`#[command(mut_arg("run_id", note("…")))]`
//! on its `Args`), and the flag's `--help` shows it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dynamo_etl::aws::{AwsConfig, S3Checksums};
use dynamo_etl::error::Error;
use dynamo_etl::phases::plan::SchemaOptions;
use dynamo_etl::phases::segment::SegmentSettings;
use dynamo_etl::phases::StagingConfig;
use dynamo_etl::retry::RetryPolicy;
use dynamo_etl::schema::naming;
use dynamo_etl::staging::layout::DEFAULT_PREFIX;
use dynamo_etl::staging::parts::codec::PartCompression;
use dynamo_etl::staging::parts::writer::{PartSettings, MIN_CHUNK_BYTES};
use dynamo_etl::warehouse::config::{PREVIOUS_SUFFIX, ROLLBACK_SUFFIX};
use dynamo_etl::warehouse::redshift::credentials::{
    Choice, IamCredentials, IamSettings, Mode, MAX_SECONDS, MIN_SECONDS,
};
use dynamo_etl::warehouse::redshift::{Credentials, Options as RedshiftOptions};
use dynamo_etl::warehouse::{DialectName, DialectOptions, Grantee, WarehouseConfig, WarehouseUrl};

/// A command's own words about a shared flag, appended to the flag's help.
pub fn note(text: &'static str) -> impl FnOnce(clap::Arg) -> clap::Arg {
    move |arg| {
        // clap drops the final period of a one-sentence doc comment; the note is a sentence of
        // its own.
        let help = match arg.get_help().map(|h| h.to_string()) {
            Some(help) if help.ends_with('.') => format!("{help} {text}"),
            Some(help) => format!("{help}. {text}"),
            None => text.to_string(),
        };
        arg.help(help)
    }
}

const CONNECTION: &str = "Connection (AWS, staging area)";
const RETRIES: &str = "Retries of AWS calls";
const WAREHOUSE: &str = "Warehouse";

/// Where and how to reach AWS (or local stand-ins).
#[derive(Debug, Clone, clap::Args)]
pub struct AwsFlags {
    /// AWS region (else the SDK's usual sources: AWS_REGION, the profile).
    #[arg(long, env = "ETL_REGION", global = true, help_heading = CONNECTION)]
    pub region: Option<String>,
    /// DynamoDB endpoint URL, e.g. http://127.0.0.1:8000 for DynamoDB Local.
    #[arg(long, env = "ETL_DYNAMODB_ENDPOINT", global = true, help_heading = CONNECTION)]
    pub dynamodb_endpoint: Option<String>,
    /// S3 endpoint URL for S3-compatible stores, e.g. http://127.0.0.1:5000.
    #[arg(long, env = "ETL_S3_ENDPOINT", global = true, help_heading = CONNECTION)]
    pub s3_endpoint: Option<String>,
    /// Path-style S3 addressing (bucket in the path). Default: on when --s3-endpoint is set.
    #[arg(long, env = "ETL_S3_PATH_STYLE", global = true, help_heading = CONNECTION)]
    pub s3_path_style: Option<bool>,
    /// When to send S3 request checksums; `when-required` for stores that reject the newer
    /// checksum headers.
    #[arg(long, env = "ETL_S3_CHECKSUMS", value_enum, default_value = "when-supported",
          global = true, help_heading = CONNECTION)]
    pub s3_checksums: ChecksumsArg,
    /// Endpoint URL of the Redshift and Redshift Serverless APIs (which issue IAM credentials),
    /// for a local stand-in.
    #[arg(long, env = "ETL_REDSHIFT_API_ENDPOINT", global = true, help_heading = CONNECTION)]
    pub redshift_api_endpoint: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ChecksumsArg {
    WhenSupported,
    WhenRequired,
}

impl AwsFlags {
    pub fn config(&self) -> AwsConfig {
        AwsConfig {
            region: self.region.clone(),
            dynamodb_endpoint: self.dynamodb_endpoint.clone(),
            s3_endpoint: self.s3_endpoint.clone(),
            s3_path_style: self.s3_path_style,
            s3_checksums: match self.s3_checksums {
                ChecksumsArg::WhenSupported => S3Checksums::WhenSupported,
                ChecksumsArg::WhenRequired => S3Checksums::WhenRequired,
            },
            redshift_api_endpoint: self.redshift_api_endpoint.clone(),
        }
    }
}

/// Where the staging area lives.
#[derive(Debug, Clone, clap::Args)]
pub struct StagingFlags {
    /// S3 bucket of the staging area (parts, manifests, run plans, schema cache).
    #[arg(long, env = "ETL_BUCKET", global = true, help_heading = CONNECTION)]
    pub bucket: Option<String>,
    /// Key prefix inside the bucket.
    #[arg(long, env = "ETL_PREFIX", default_value = DEFAULT_PREFIX, global = true,
          help_heading = CONNECTION)]
    pub prefix: String,
}

impl StagingFlags {
    pub fn config(&self) -> StagingConfig {
        StagingConfig {
            bucket: self.bucket.clone().filter(|b| !b.is_empty()),
            prefix: self.prefix.clone(),
        }
    }
}

/// The retry policy of AWS calls (throttling, 5xx, timeouts, dropped connections).
#[derive(Debug, Clone, clap::Args)]
pub struct RetryFlags {
    /// Attempts per call, the first included.
    #[arg(long, env = "ETL_RETRY_ATTEMPTS", default_value_t = 10, global = true,
          value_parser = clap::value_parser!(u32).range(1..=100), help_heading = RETRIES)]
    pub retry_attempts: u32,
    /// Cap on the summed retry delay of one call, in seconds.
    #[arg(long, env = "ETL_RETRY_MAX_SECONDS", default_value_t = 300, global = true,
          help_heading = RETRIES)]
    pub retry_max_seconds: u64,
    /// First retry delay in milliseconds (doubling, with jitter, up to 20 s).
    #[arg(long, env = "ETL_RETRY_MIN_DELAY_MS", default_value_t = 50, global = true,
          help_heading = RETRIES)]
    pub retry_min_delay_ms: u64,
}

impl RetryFlags {
    pub fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.retry_attempts as usize,
            min_delay: Duration::from_millis(self.retry_min_delay_ms),
            max_delay: Duration::from_secs(20),
            max_total: Duration::from_secs(self.retry_max_seconds),
        }
    }
}

/// The run a command acts on.
#[derive(Debug, Clone, clap::Args)]
pub struct RunFlag {
    /// The run: names its folder in the staging area (runs/<run-id>/).
    #[arg(long, env = "ETL_RUN_ID")]
    pub run_id: Option<String>,
}

impl RunFlag {
    /// The run id, which this command needs.
    pub fn required(&self) -> Result<&str, Error> {
        self.run_id
            .as_deref()
            .filter(|r| !r.is_empty())
            .ok_or_else(|| {
                Error::fatal("this command needs a run: pass --run-id or set ETL_RUN_ID")
            })
    }
}

/// The source table.
#[derive(Debug, Clone, clap::Args)]
pub struct TableFlag {
    /// Source DynamoDB table.
    #[arg(long, env = "ETL_TABLE")]
    pub table: Option<String>,
}

/// The DynamoDB export a run reads in place of scanning its table.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ExportFlags {
    /// Read this finished DynamoDB export (full, DynamoDB JSON) instead of scanning the table:
    /// s3://<bucket>/<export-prefix>/AWSDynamoDB/<export-id>. The bucket may be another one
    /// than the staging bucket. Reading an export consumes none of the table's read capacity.
    #[arg(
        long,
        env = "ETL_EXPORT_PREFIX",
        value_name = "S3_URL",
        conflicts_with = "export_arn"
    )]
    pub export_prefix: Option<String>,
    /// Read the finished export with this ARN instead of scanning the table (its location comes
    /// from DescribeExport).
    #[arg(long, env = "ETL_EXPORT_ARN", value_name = "ARN")]
    pub export_arn: Option<String>,
}

/// How long a command waits for a DynamoDB export to finish.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportWaitFlags {
    /// Seconds between two DescribeExport calls.
    #[arg(long, env = "ETL_POLL_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub poll_seconds: u64,
    /// Give up (exit 1, run again) when the export is still running after this many seconds.
    #[arg(long, env = "ETL_WAIT_SECONDS", default_value_t = 6 * 3600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub wait_seconds: u64,
}

impl ExportWaitFlags {
    pub fn poll(&self) -> Duration {
        Duration::from_secs(self.poll_seconds)
    }

    pub fn wait(&self) -> Duration {
        Duration::from_secs(self.wait_seconds)
    }
}

/// How many segments a table is scanned in.
#[derive(Debug, Clone, clap::Args)]
pub struct TotalSegmentsFlag {
    /// How many segments the table is scanned in (1 to 1,000,000).
    #[arg(long, env = "ETL_TOTAL_SEGMENTS",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub total_segments: Option<u32>,
}

/// A segment number, or `auto` to take it from `AWS_BATCH_JOB_ARRAY_INDEX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentChoice {
    Number(u32),
    Auto,
}

impl std::str::FromStr for SegmentChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "auto" {
            return Ok(SegmentChoice::Auto);
        }
        s.parse()
            .map(SegmentChoice::Number)
            .map_err(|_| format!("{s:?} is not a segment number or 'auto'"))
    }
}

impl SegmentChoice {
    pub fn resolve(self) -> Result<u32, Error> {
        match self {
            SegmentChoice::Number(n) => Ok(n),
            SegmentChoice::Auto => {
                let raw = std::env::var("AWS_BATCH_JOB_ARRAY_INDEX").map_err(|_| {
                    Error::fatal("--segment auto needs AWS_BATCH_JOB_ARRAY_INDEX (set by AWS Batch array jobs); pass a number outside Batch")
                })?;
                raw.trim().parse().map_err(|_| {
                    Error::fatal(format!(
                        "AWS_BATCH_JOB_ARRAY_INDEX={raw:?} is not a segment number"
                    ))
                })
            }
        }
    }
}

/// Which segment a phase works on.
#[derive(Debug, Clone, clap::Args)]
pub struct SegmentFlag {
    /// Which segment, from 0, or `auto` for AWS_BATCH_JOB_ARRAY_INDEX (AWS Batch array child).
    #[arg(long, env = "ETL_SEGMENT")]
    pub segment: SegmentChoice,
}

/// Where a new run's data-schemas come from.
#[derive(Debug, Clone, clap::Args)]
pub struct SchemaFlags {
    /// Folder of the reviewed static data-schemas (`<dir>/<table>/*.json`): the fallback when
    /// the schema cache has no valid snapshot of the table or cannot be reached.
    #[arg(long, env = "ETL_SCHEMAS_DIR", default_value = "schemas")]
    pub schemas_dir: PathBuf,
    /// Use the static data-schemas even when the schema cache has a snapshot.
    #[arg(long, env = "ETL_NO_SCHEMA_CACHE")]
    pub no_schema_cache: bool,
}

impl SchemaFlags {
    pub fn options(&self) -> SchemaOptions {
        SchemaOptions {
            dir: self.schemas_dir.clone(),
            use_cache: !self.no_schema_cache,
        }
    }
}

/// How DynamoDB is read: consistency and the read budget.
#[derive(Debug, Clone, clap::Args)]
pub struct ReadFlags {
    /// Strongly consistent reads (twice the read units).
    #[arg(long, env = "ETL_CONSISTENT_READ")]
    pub consistent_read: bool,
    /// Read capacity units per second (a token bucket charged with the consumed capacity
    /// DynamoDB reports). Needed on on-demand tables to cap cost.
    #[arg(long, env = "ETL_MAX_READ_UNITS")]
    pub max_read_units: Option<f64>,
}

impl ReadFlags {
    pub fn checked_read_units(&self) -> Result<Option<f64>, Error> {
        match self.max_read_units {
            Some(u) if !(u.is_finite() && u > 0.0) => Err(Error::fatal(format!(
                "--max-read-units must be a positive number, got {u}"
            ))),
            other => Ok(other),
        }
    }
}

/// How often a scan logs its progress.
#[derive(Debug, Clone, clap::Args)]
pub struct ProgressFlag {
    /// Seconds between progress log lines.
    #[arg(long, env = "ETL_PROGRESS_SECONDS", default_value_t = 10)]
    pub progress_seconds: u64,
}

impl ProgressFlag {
    pub fn every(&self) -> Duration {
        Duration::from_secs(self.progress_seconds.max(1))
    }
}

/// How phase 1 pages through a segment and saves where it got to.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckpointFlags {
    /// Seconds between a segment's checkpoints (one is also taken whenever a part fills up): a
    /// killed segment's retry goes on from its last one. 0 takes one after every page.
    #[arg(long, env = "ETL_CHECKPOINT_SECONDS", default_value_t = 60)]
    pub checkpoint_seconds: u64,
    /// Scan the segment from its first page even when it has a checkpoint.
    #[arg(long, env = "ETL_RESTART")]
    pub restart: bool,
    /// At most this many items per Scan page (default: DynamoDB's 1 MB pages). Smaller pages
    /// mean finer checkpoints and smoother pacing, at more requests.
    #[arg(long, env = "ETL_PAGE_ITEMS")]
    pub page_items: Option<u32>,
}

/// Phase 1's checkpoint flags on the commands that never checkpoint (`plan`, `infer-schema`
/// accepted and ignored them until they were split from the read flags): still accepted, hidden,
/// for one more release, with a warning to drop them. No variable: a job's environment may set
/// `ETL_CHECKPOINT_SECONDS` for every command, which is not a mistake.
#[derive(Debug, Clone, clap::Args)]
pub struct NoEffectCheckpointFlags {
    /// Has no effect here; read until the next release.
    #[arg(
        long = "checkpoint-seconds",
        id = "no_effect_checkpoint_seconds",
        hide = true
    )]
    pub checkpoint_seconds: Option<u64>,
    /// Has no effect here; read until the next release.
    #[arg(long = "restart", id = "no_effect_restart", hide = true)]
    pub restart: bool,
    /// Has no effect here; read until the next release.
    #[arg(long = "page-items", id = "no_effect_page_items", hide = true)]
    pub page_items: Option<u32>,
}

/// How phase 1 shapes its parts.
#[derive(Debug, Clone, clap::Args)]
pub struct PartFlags {
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
    /// How CSV parts are compressed: zstd (`.csv.zst`) or gzip (`.csv.gz`). Both warehouses
    /// load both.
    #[arg(long, env = "ETL_PART_COMPRESSION", value_enum, default_value = "zstd")]
    pub part_compression: CompressionArg,
    /// The codec's level: zstd -7 (fastest) … 19, gzip 0 … 9. Level 1 is fast for both.
    #[arg(
        long,
        env = "ETL_COMPRESSION_LEVEL",
        default_value_t = 1,
        allow_hyphen_values = true
    )]
    pub compression_level: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompressionArg {
    Zstd,
    Gzip,
}

impl PartFlags {
    pub fn settings(&self) -> Result<PartSettings, Error> {
        let chunk_bytes = self.upload_chunk_mib << 20;
        if chunk_bytes < MIN_CHUNK_BYTES {
            return Err(Error::fatal(
                "--upload-chunk-mib must be at least 5 (S3's smallest multipart part)",
            ));
        }
        if self.part_size_mib == 0 || self.uploads_in_flight == 0 {
            return Err(Error::fatal(
                "--part-size-mib and --uploads-in-flight must be at least 1",
            ));
        }
        let compression = match self.part_compression {
            CompressionArg::Zstd => PartCompression::Zstd,
            CompressionArg::Gzip => PartCompression::Gzip,
        };
        compression
            .check_level(self.compression_level)
            .map_err(|e| Error::fatal(format!("--compression-level: {e}")))?;
        Ok(PartSettings {
            part_bytes: self.part_size_mib << 20,
            chunk_bytes,
            max_in_flight: self.uploads_in_flight,
            compression,
            level: self.compression_level,
        })
    }
}

/// Phase 1's settings: how it reads and how it writes.
#[derive(Debug, Clone, clap::Args)]
pub struct ScanFlags {
    #[command(flatten)]
    pub read: ReadFlags,
    #[command(flatten)]
    pub progress: ProgressFlag,
    #[command(flatten)]
    pub checkpoints: CheckpointFlags,
    #[command(flatten)]
    pub parts: PartFlags,
}

impl ScanFlags {
    pub fn settings(&self) -> Result<SegmentSettings, Error> {
        Ok(SegmentSettings {
            parts: self.parts.settings()?,
            consistent_read: self.read.consistent_read,
            max_read_units: self.read.checked_read_units()?,
            progress_every: self.progress.every(),
            checkpoint_every: Duration::from_secs(self.checkpoints.checkpoint_seconds),
            restart: self.checkpoints.restart,
            page_items: match self.checkpoints.page_items {
                Some(0) => return Err(Error::fatal("--page-items must be at least 1")),
                other => other,
            },
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DialectArg {
    Postgres,
    Redshift,
}

impl DialectArg {
    pub fn name(self) -> DialectName {
        match self {
            DialectArg::Postgres => DialectName::Postgres,
            DialectArg::Redshift => DialectName::Redshift,
        }
    }
}

/// The warehouse's SQL dialect: the one declaration of `--dialect`.
#[derive(Debug, Clone, clap::Args)]
pub struct DialectFlag {
    /// The warehouse's SQL dialect (default: the one the scheme of --warehouse-url implies). A
    /// new run is planned for it: phase 1 shapes binary values, long strings and decimals by its
    /// limits, and the run keeps the dialect it was planned for.
    #[arg(long, env = "ETL_DIALECT", value_enum, help_heading = WAREHOUSE)]
    pub dialect: Option<DialectArg>,
}

/// Where the warehouse is: the one declaration of `--warehouse-url`.
#[derive(Debug, Clone, clap::Args)]
pub struct WarehouseUrlFlag {
    /// Connection URL: postgres://user:password@host:port/db, or redshift://… for Redshift.
    /// Never logged with its password.
    #[arg(long, env = "ETL_WAREHOUSE_URL", hide_env_values = true, help_heading = WAREHOUSE)]
    pub warehouse_url: Option<String>,
}

impl WarehouseUrlFlag {
    /// The URL, when one was given.
    pub fn given(&self) -> Option<&str> {
        self.warehouse_url.as_deref().filter(|u| !u.is_empty())
    }
}

/// Which warehouse a new run is for, where nothing connects to the warehouse (phase 1 and
/// `plan`): `--dialect`, else the dialect the warehouse URL's scheme implies.
#[derive(Debug, Clone, clap::Args)]
#[command(mut_arg(
    "warehouse_url",
    note(
        "Only its scheme is read here, for the dialect of a new run when --dialect is not given."
    )
))]
pub struct PlanDialectFlags {
    #[command(flatten)]
    pub dialect: DialectFlag,
    #[command(flatten)]
    pub url: WarehouseUrlFlag,
}

impl PlanDialectFlags {
    pub fn resolve(&self) -> Option<DialectName> {
        self.dialect.dialect.map(DialectArg::name).or_else(|| {
            WarehouseUrl::parse(self.url.given()?)
                .ok()?
                .implied_dialect()
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CredentialsArg {
    /// The user and password of the URL.
    Password,
    /// Temporary credentials from GetClusterCredentialsWithIAM / redshift-serverless
    /// GetCredentials.
    Iam,
}

/// How to reach the warehouse and what to call things there.
#[derive(Debug, Clone, clap::Args)]
pub struct WarehouseFlags {
    #[command(flatten)]
    pub url: WarehouseUrlFlag,
    #[command(flatten)]
    pub dialect: DialectFlag,
    /// Warehouse schema consumers read (default: the source table's name as an identifier).
    /// Staging is `<target>_staging`, the kept generation `<target>_previous`.
    #[arg(long, env = "ETL_TARGET", help_heading = WAREHOUSE)]
    pub target: Option<String>,
    /// Who gets USAGE and SELECT on the target after each swap, comma-separated: `name`,
    /// `group:name` or `role:name`.
    #[arg(long, env = "ETL_GRANT_SELECT_TO", value_delimiter = ',', help_heading = WAREHOUSE)]
    pub grant_select_to: Vec<Grantee>,
    /// Longest wait for locks during the swap, in seconds; then it gives up, target untouched.
    #[arg(long, env = "ETL_LOCK_TIMEOUT_SECONDS", default_value_t = 60, help_heading = WAREHOUSE)]
    pub lock_timeout_seconds: u64,
    /// SQL file run inside the swap transaction after the renames (e.g. re-create views).
    #[arg(long, env = "ETL_POST_SWAP_SQL", help_heading = WAREHOUSE)]
    pub post_swap_sql: Option<PathBuf>,
    /// Swap the run in without first refreshing the planner's statistics of its tables
    /// (ANALYZE of every staged table, which `replace` runs by default).
    #[arg(long, env = "ETL_NO_ANALYZE", help_heading = WAREHOUSE)]
    pub no_analyze: bool,
    /// Swap the run in (or apply the increment) without proving that the staged values equal
    /// what phase 1 wrote (the fingerprint check of the gate). Only for a night that must be
    /// served anyway: it is logged as an error, the rows are still counted, and an increment
    /// applied so drops the target's kept fingerprints.
    #[arg(long, env = "ETL_SKIP_VERIFY", help_heading = WAREHOUSE)]
    pub skip_verify: bool,
    /// Redshift: how sessions log in: `password` (the URL's) or `iam` (temporary credentials
    /// for the IAM identity the job runs as). Default: the URL's `credentials=` parameter,
    /// else password.
    #[arg(long, env = "ETL_REDSHIFT_CREDENTIALS", value_enum, help_heading = WAREHOUSE)]
    pub redshift_credentials: Option<CredentialsArg>,
    /// Redshift, IAM credentials: the provisioned cluster to ask (default: from the host
    /// <cluster>.<id>.<region>.redshift.amazonaws.com).
    #[arg(long, env = "ETL_REDSHIFT_CLUSTER_ID", conflicts_with = "redshift_workgroup",
          help_heading = WAREHOUSE)]
    pub redshift_cluster_id: Option<String>,
    /// Redshift, IAM credentials: the Serverless workgroup to ask (default: from the host
    /// <workgroup>.<account>.<region>.redshift-serverless.amazonaws.com).
    #[arg(long, env = "ETL_REDSHIFT_WORKGROUP", help_heading = WAREHOUSE)]
    pub redshift_workgroup: Option<String>,
    /// Redshift, IAM credentials: how long they last, 900 to 3600 seconds; new ones are
    /// fetched for new sessions shortly before they expire.
    #[arg(long, env = "ETL_REDSHIFT_CREDENTIALS_SECONDS", default_value_t = MAX_SECONDS,
          value_parser = clap::value_parser!(u32).range(MIN_SECONDS as i64..=MAX_SECONDS as i64),
          help_heading = WAREHOUSE)]
    pub redshift_credentials_seconds: u32,
    /// Redshift: IAM role ARN that COPY assumes to read the staging bucket (`default` for the
    /// cluster's default role).
    #[arg(long, env = "ETL_REDSHIFT_IAM_ROLE", help_heading = WAREHOUSE)]
    pub redshift_iam_role: Option<String>,
    /// Redshift: region of the staging bucket when it differs from the cluster's.
    #[arg(long, env = "ETL_REDSHIFT_S3_REGION", help_heading = WAREHOUSE)]
    pub redshift_s3_region: Option<String>,
    /// Redshift: WLM query group for this tool's sessions.
    #[arg(long, env = "ETL_REDSHIFT_QUERY_GROUP", help_heading = WAREHOUSE)]
    pub redshift_query_group: Option<String>,
}

impl WarehouseFlags {
    /// Whether a warehouse URL was given at all.
    pub fn is_given(&self) -> bool {
        self.url.given().is_some()
    }

    fn url(&self) -> Result<WarehouseUrl, Error> {
        let raw = self.url.given().ok_or_else(|| {
            Error::fatal("no warehouse: pass --warehouse-url or set ETL_WAREHOUSE_URL (postgres://… or redshift://…)")
        })?;
        WarehouseUrl::parse(raw).map_err(|e| Error::fatal(e.to_string()))
    }

    /// The dialect: `--dialect`, else the one the URL's scheme implies.
    pub fn dialect(&self) -> Result<DialectName, Error> {
        let url = self.url()?;
        match (self.dialect.dialect, url.implied_dialect()) {
            (Some(given), _) => Ok(given.name()),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(Error::fatal(format!(
                "cannot tell the dialect of {url}; pass --dialect postgres|redshift"
            ))),
        }
    }

    /// Checks the flags into a ready configuration; `source_table` names the default target.
    /// `aws` and `retry` serve the API calls of IAM credentials.
    pub fn config(
        &self,
        source_table: Option<&str>,
        aws: &AwsFlags,
        retry: &RetryFlags,
    ) -> Result<WarehouseConfig, Error> {
        let url = self.url()?;
        let dialect = self.dialect()?;
        let target = match (&self.target, source_table) {
            (Some(t), _) => t.clone(),
            (None, Some(table)) => naming::base_identifier(table),
            (None, None) => {
                return Err(Error::fatal(
                    "pass --target (the warehouse schema), or --run-id so it can be derived",
                ))
            }
        };
        let longest_suffix = PREVIOUS_SUFFIX.len().max(ROLLBACK_SUFFIX.len());
        if !naming::is_safe_identifier(&target)
            || target.len() + longest_suffix > naming::MAX_IDENTIFIER_BYTES
        {
            return Err(Error::fatal(format!(
                "target {target:?} must be lowercase letters, digits and _, at most {} bytes (so {target}_previous fits)",
                naming::MAX_IDENTIFIER_BYTES - longest_suffix
            )));
        }
        let post_swap_sql = match &self.post_swap_sql {
            None => None,
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                Error::fatal(format!(
                    "cannot read --post-swap-sql {}: {e}",
                    path.display()
                ))
            })?),
        };
        if dialect == DialectName::Redshift && self.redshift_iam_role.is_none() {
            return Err(Error::fatal("Redshift COPY needs an IAM role to read the staging bucket: pass --redshift-iam-role ARN (or `default`)"));
        }
        let credentials = self.credentials(&url, dialect, aws, retry)?;
        let options = match dialect {
            DialectName::Redshift => DialectOptions::Redshift(RedshiftOptions {
                iam_role: self.redshift_iam_role.clone(),
                s3_region: self.redshift_s3_region.clone(),
                query_group: self.redshift_query_group.clone(),
                credentials,
            }),
            other => DialectOptions::default_for(other),
        };
        Ok(WarehouseConfig {
            url,
            target,
            grantees: self.grant_select_to.clone(),
            lock_timeout: Duration::from_secs(self.lock_timeout_seconds.max(1)),
            post_swap_sql,
            analyze: !self.no_analyze,
            verify: !self.skip_verify,
            options,
        })
    }
}

impl WarehouseFlags {
    /// How sessions log in: the URL's password, or temporary IAM credentials (Redshift only).
    fn credentials(
        &self,
        url: &WarehouseUrl,
        dialect: DialectName,
        aws: &AwsFlags,
        retry: &RetryFlags,
    ) -> Result<Credentials, Error> {
        let choice = Choice {
            mode: self.redshift_credentials.map(|c| match c {
                CredentialsArg::Password => Mode::Password,
                CredentialsArg::Iam => Mode::Iam,
            }),
            cluster_id: self.redshift_cluster_id.clone(),
            workgroup: self.redshift_workgroup.clone(),
            seconds: self.redshift_credentials_seconds,
        };
        let wants_iam = match choice.mode {
            Some(mode) => mode == Mode::Iam,
            None => url.parameter("credentials").as_deref() == Some("iam"),
        };
        if wants_iam && dialect != DialectName::Redshift {
            return Err(Error::fatal(
                "IAM credentials are for Redshift: use a redshift:// URL (or --dialect redshift), or drop --redshift-credentials iam / credentials=iam",
            ));
        }
        let Some(settings) = IamSettings::from_url(url, &choice).map_err(Error::fatal)? else {
            return Ok(Credentials::Url);
        };
        Ok(Credentials::Iam(Arc::new(IamCredentials::new(
            settings,
            aws.config(),
            retry.policy(),
        ))))
    }
}

/// Print the SQL instead of running it.
#[derive(Debug, Clone, clap::Args)]
pub struct DryRunFlag {
    /// Print the SQL instead of running it.
    #[arg(long, env = "ETL_DRY_RUN")]
    pub dry_run: bool,
}

#[cfg(test)]
mod tests {
    use super::super::{Cli, Command};
    use clap::Parser;
    use dynamo_etl::error::Class;
    use dynamo_etl::warehouse::redshift::credentials::Target;
    use dynamo_etl::warehouse::redshift::Credentials;
    use dynamo_etl::warehouse::DialectOptions;

    fn rollback(extra: &[&str]) -> Result<Cli, clap::Error> {
        let mut args = vec![
            "dynamo-etl",
            "rollback",
            "--target",
            "t",
            "--redshift-iam-role",
            "default",
        ];
        args.extend(extra);
        Cli::try_parse_from(args)
    }

    fn credentials(cli: &Cli) -> Result<Credentials, dynamo_etl::error::Error> {
        let Command::Rollback(args) = &cli.command else {
            unreachable!()
        };
        args.warehouse
            .config(None, &cli.aws, &cli.retry)
            .map(|c| match c.options {
                DialectOptions::Redshift(o) => o.credentials,
                _ => Credentials::Url,
            })
    }

    #[test]
    fn iam_flags_pick_the_target_and_the_lifetime() {
        let cli = rollback(&[
            "--warehouse-url",
            "redshift://10.1.2.3:5439/dev",
            "--redshift-credentials",
            "iam",
            "--redshift-workgroup",
            "etl",
            "--redshift-credentials-seconds",
            "1200",
        ])
        .unwrap();
        let Credentials::Iam(iam) = credentials(&cli).unwrap() else {
            panic!("IAM credentials expected")
        };
        assert_eq!(iam.settings().target, Target::Workgroup("etl".into()));
        assert_eq!(iam.settings().seconds, 1200);
        // Without the flag, the URL's password is used.
        let cli = rollback(&["--warehouse-url", "redshift://u:p@h:5439/dev"]).unwrap();
        assert!(matches!(credentials(&cli).unwrap(), Credentials::Url));
    }

    #[test]
    fn iam_flags_are_checked_before_any_request() {
        for seconds in ["899", "3601"] {
            let parsed = rollback(&["--redshift-credentials-seconds", seconds]);
            assert!(parsed.is_err(), "{seconds}");
        }
        let both = rollback(&["--redshift-cluster-id", "a", "--redshift-workgroup", "b"]);
        assert!(both.is_err());
        let cli = rollback(&["--warehouse-url", "postgres://h:5432/db?credentials=iam"]).unwrap();
        let err = credentials(&cli).unwrap_err();
        assert_eq!(err.class(), Class::Fatal);
        assert!(err.to_string().contains("for Redshift"), "{err}");
        let cli = rollback(&[
            "--warehouse-url",
            "redshift://db.internal.example:5439/dev",
            "--redshift-credentials",
            "iam",
        ])
        .unwrap();
        let err = credentials(&cli).unwrap_err();
        assert_eq!(err.class(), Class::Fatal);
        assert!(err.to_string().contains("--redshift-cluster-id"), "{err}");
    }
}
