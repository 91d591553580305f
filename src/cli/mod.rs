//! The command line: flags (every one also read from an `ETL_*` variable), checked into a ready
//! plan before any I/O, then handed to the phases. Exit codes: 0 done; 1 finished but something
//! needs a retry (the message says which command); 2 usage, configuration or fatal error.

mod drift;
mod infer;
mod ops;
mod run;
mod segment;
mod warehouse;

use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;

use crate::aws::AwsArgs;
use crate::retry::RetryPolicy;
use crate::stage::store::ObjectStore;
use crate::stage::Layout;

pub const EXIT_OK: i32 = 0;
pub const EXIT_RETRY: i32 = 1;
pub const EXIT_FATAL: i32 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "dynamo-etl",
    version,
    about = "Copy DynamoDB tables into Redshift or PostgreSQL, exactly and resumably",
    long_about = "Copy DynamoDB tables into Redshift or PostgreSQL through an S3 staging area.\n\n\
                  Exit codes: 0 done; 1 finished but something needs a retry (the message names the \
                  command); 2 usage, configuration or fatal error."
)]
pub struct Cli {
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(flatten)]
    pub staging: StagingArgs,
    #[command(flatten)]
    pub retry: RetryArgs,
    /// Log format on stderr: text for people, json for machines; auto picks text on a terminal.
    #[arg(
        long,
        env = "ETL_LOG_FORMAT",
        value_enum,
        default_value = "auto",
        global = true
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Auto,
    Text,
    Json,
}

/// Where the staging area lives.
#[derive(Debug, Clone, clap::Args)]
pub struct StagingArgs {
    /// S3 bucket of the staging area (parts, manifests, run plans, schema cache).
    #[arg(long, env = "ETL_BUCKET", global = true)]
    pub bucket: Option<String>,
    /// Key prefix inside the bucket.
    #[arg(long, env = "ETL_PREFIX", default_value = "dynamo-etl", global = true)]
    pub prefix: String,
}

/// The retry policy for AWS calls (throttling, 5xx, timeouts, dropped connections).
#[derive(Debug, Clone, clap::Args)]
pub struct RetryArgs {
    /// Attempts per call, the first included.
    #[arg(long, env = "ETL_RETRY_ATTEMPTS", default_value_t = 10, global = true,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub retry_attempts: u32,
    /// Cap on the summed retry delay of one call, in seconds.
    #[arg(
        long,
        env = "ETL_RETRY_MAX_SECONDS",
        default_value_t = 300,
        global = true
    )]
    pub retry_max_seconds: u64,
    /// First retry delay in milliseconds (doubling, with jitter, up to 20 s).
    #[arg(
        long,
        env = "ETL_RETRY_MIN_DELAY_MS",
        default_value_t = 50,
        global = true
    )]
    pub retry_min_delay_ms: u64,
}

impl RetryArgs {
    pub fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.retry_attempts as usize,
            min_delay: std::time::Duration::from_millis(self.retry_min_delay_ms),
            max_delay: std::time::Duration::from_secs(20),
            max_total: std::time::Duration::from_secs(self.retry_max_seconds),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Infer data-schemas from the table and store them as a new schema cache snapshot.
    InferSchema(infer::InferArgs),
    /// Report what a run's data did not fit: attributes sent to _extra, unclassified items.
    Drift(drift::DriftArgs),
    /// Pin a run: id, table, total segments and data-schemas (prints the run id).
    Plan(run::PlanArgs),
    /// Every phase locally in one process: plan, phase 1, prepare, phase 3, replace, report.
    Run(run::RunArgs),
    /// Phase 1: scan one segment, write its CSV parts and commit its manifest.
    Segment(segment::SegmentArgs),
    /// Phase 2: drop and re-create the staging schema for a run.
    Prepare(warehouse::PrepareArgs),
    /// Phase 3: load one segment into staging, exactly once, counts checked.
    Upload(warehouse::UploadArgs),
    /// Phase 4: if every segment is loaded and counted, swap staging in (previous kept).
    Replace(warehouse::ReplaceArgs),
    /// Swap the previous generation back in.
    Rollback(warehouse::RollbackArgs),
    /// Per-segment state of a run, the swap state, and the command for each gap.
    Status(ops::StatusArgs),
    /// Delete the staging data of runs older than the last N successful ones (dry run by default).
    Gc(ops::GcArgs),
    /// Retry entry points for operators' runbooks.
    #[command(subcommand)]
    Retry(RetryCommand),
}

#[derive(Debug, Subcommand)]
pub enum RetryCommand {
    /// Re-run phase 1 for one segment: `retry phase-1 <total-segments> <segment>`.
    #[command(name = "phase-1")]
    Phase1(segment::RetryPhase1Args),
    /// Re-run phase 3 for one segment: `retry phase-3 <segment>`.
    #[command(name = "phase-3")]
    Phase3(warehouse::RetryPhase3Args),
}

/// How a command failed, which decides the exit code.
#[derive(Debug)]
pub enum Failure {
    /// Something transient or incomplete: running the named command again should fix it.
    Retry(anyhow::Error),
    /// Bad usage, bad configuration, or a fault a retry will not fix.
    Fatal(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Fatal(e.into())
    }
}

pub type CommandResult = Result<(), Failure>;

/// Parses the command line, runs the command and returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_FATAL } else { EXIT_OK };
            let _ = e.print();
            return code;
        }
    };
    init_logging(cli.log_format, matches!(cli.command, Command::Run(_)));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return EXIT_FATAL;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => EXIT_OK,
        Err(Failure::Retry(e)) => {
            eprintln!("error: {e:#}");
            EXIT_RETRY
        }
        Err(Failure::Fatal(e)) => {
            eprintln!("error: {e:#}");
            EXIT_FATAL
        }
    }
}

async fn run(cli: Cli) -> CommandResult {
    match &cli.command {
        Command::InferSchema(args) => infer::run(&cli, args).await,
        Command::Drift(args) => drift::run(&cli, args).await,
        Command::Segment(args) => segment::run(&cli, args).await,
        Command::Retry(RetryCommand::Phase1(args)) => segment::retry(&cli, args).await,
        Command::Prepare(args) => warehouse::prepare(&cli, args).await,
        Command::Upload(args) => warehouse::upload(&cli, args).await,
        Command::Replace(args) => warehouse::replace(&cli, args).await,
        Command::Rollback(args) => warehouse::rollback(&cli, args).await,
        Command::Retry(RetryCommand::Phase3(args)) => warehouse::retry(&cli, args).await,
        Command::Status(args) => ops::status(&cli, args).await,
        Command::Plan(args) => run::plan(&cli, args).await,
        Command::Run(args) => run::run(&cli, args).await,
        Command::Gc(args) => ops::gc(&cli, args).await,
    }
}

/// Logs go to stderr. When `run` draws progress bars on a terminal, only warnings are logged so
/// the bars stay readable (ETL_LOG overrides).
fn init_logging(format: LogFormat, draws_bars: bool) {
    use tracing_subscriber::EnvFilter;
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let level = if draws_bars && std::io::stderr().is_terminal() && !json {
        "warn"
    } else {
        "info"
    };
    let filter = EnvFilter::try_from_env("ETL_LOG").unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{level},aws_config=warn,aws_smithy_runtime=warn,sqlx=warn"
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.with_target(false).try_init()
    };
}

/// Shared connections, built once the arguments are checked.
pub struct Services {
    pub sdk: aws_config::SdkConfig,
    pub store: ObjectStore,
    pub layout: Layout,
}

impl Services {
    pub async fn connect(cli: &Cli) -> Result<Services, Failure> {
        let bucket = cli.staging.bucket.as_deref().ok_or_else(|| {
            Failure::Fatal(anyhow::anyhow!(
                "no staging bucket: pass --bucket or set ETL_BUCKET"
            ))
        })?;
        let sdk = crate::aws::load(&cli.aws).await?;
        let store = ObjectStore::new(crate::aws::s3(&sdk, &cli.aws), bucket, cli.retry.policy());
        Ok(Services {
            sdk,
            store,
            layout: Layout::new(&cli.staging.prefix),
        })
    }

    pub fn dynamodb(&self, cli: &Cli) -> aws_sdk_dynamodb::Client {
        crate::aws::dynamodb(&self.sdk, &cli.aws)
    }
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
    pub fn resolve(self) -> Result<u32, Failure> {
        match self {
            SegmentChoice::Number(n) => Ok(n),
            SegmentChoice::Auto => {
                let raw = std::env::var("AWS_BATCH_JOB_ARRAY_INDEX").map_err(|_| {
                    Failure::Fatal(anyhow::anyhow!(
                        "--segment auto needs AWS_BATCH_JOB_ARRAY_INDEX (set by AWS Batch array jobs); pass a number outside Batch"
                    ))
                })?;
                raw.trim().parse().map_err(|_| {
                    Failure::Fatal(anyhow::anyhow!(
                        "AWS_BATCH_JOB_ARRAY_INDEX={raw:?} is not a segment number"
                    ))
                })
            }
        }
    }
}

/// Default folder of the reviewed static data-schemas.
pub fn default_schemas_dir() -> PathBuf {
    PathBuf::from("schemas")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// DESIGN.md: every flag also reads an `ETL_*` environment variable (positional arguments of
    /// the runbook's retry commands excepted).
    #[test]
    fn every_flag_has_an_etl_environment_variable() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.is_positional() || id == "help" || id == "version" {
                    continue;
                }
                match arg.get_env() {
                    Some(name) if name.to_string_lossy().starts_with("ETL_") => {}
                    _ => missing.push(format!("{path} --{id}")),
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "dynamo-etl", &mut missing);
        assert!(
            missing.is_empty(),
            "flags without an ETL_* variable: {missing:?}"
        );
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
