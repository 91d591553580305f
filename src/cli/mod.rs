//! The command line: clap types and flag groups, logging, progress bars and the exit-code map.
//! Each subcommand is one small file in [`commands`]: parse → one phase function → print.

pub mod commands;
pub mod exit;
pub mod flags;
pub mod output;
pub mod progress;

use clap::{Parser, Subcommand};
use std::io::IsTerminal;

use dynamo_etl::error::Error;
use dynamo_etl::phases::Context;
use dynamo_etl::stop::Stop;
use flags::{AwsFlags, RetryFlags, StagingFlags};

#[derive(Debug, Parser)]
#[command(
    name = "dynamo-etl",
    version,
    about = "Copy DynamoDB tables into Redshift or PostgreSQL, exactly and resumably",
    long_about = "Copy DynamoDB tables into Redshift or PostgreSQL through an S3 staging area.\n\n\
                  Exit codes: 0 done; 1 needs a retry (the message names the command); \
                  2 usage, configuration or a fault no retry fixes."
)]
pub struct Cli {
    #[command(flatten)]
    pub aws: AwsFlags,
    #[command(flatten)]
    pub staging: StagingFlags,
    #[command(flatten)]
    pub retry: RetryFlags,
    /// Log format on stderr: text for people, json for machines; auto picks text on a terminal.
    #[arg(
        long,
        env = "ETL_LOG_FORMAT",
        value_enum,
        default_value = "auto",
        global = true,
        help_heading = "Output"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
    /// Requested by SIGTERM / SIGINT (see [`watch_signals`]).
    #[arg(skip)]
    pub stop: Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Auto,
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Infer data-schemas from the table and store them as a new schema cache snapshot.
    InferSchema(commands::infer_schema::Args),
    /// Report what a run's data did not fit: attributes sent to _extra, unclassified items.
    Drift(commands::drift::Args),
    /// Pin a run: id, table, total segments and data-schemas (prints the run id).
    Plan(commands::plan::Args),
    /// Every phase locally in one process: plan, phase 1, prepare, phase 3, replace, report.
    Run(commands::run::Args),
    /// Phase 1: scan one segment, write its CSV parts and commit its manifest.
    Segment(commands::segment::Args),
    /// Phase 2: drop and re-create the staging schema for a run.
    Prepare(commands::prepare::Args),
    /// Phase 3: load one segment into staging, exactly once, counts checked.
    Upload(commands::upload::Args),
    /// Phase 4: if every segment is loaded and counted, swap staging in (previous kept).
    Replace(commands::replace::Args),
    /// Swap the previous generation back in.
    Rollback(commands::rollback::Args),
    /// Per-segment state of a run, the swap state, and the command for each gap.
    Status(commands::status::Args),
    /// Delete the staging data of runs older than the last N successful ones (dry run by default).
    Gc(commands::gc::Args),
    /// Retry entry points for operators' runbooks.
    #[command(subcommand)]
    Retry(RetryCommand),
    /// Apply the table's changes since the target's watermark (incremental exports) to the
    /// served tables, in one transaction per window.
    Increment(commands::increment::Args),
    /// A DynamoDB export of the table to S3, for a run that reads it instead of scanning.
    #[command(subcommand)]
    Export(ExportCommand),
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Start a full export (DynamoDB JSON) of the table to the staging bucket; prints its ARN.
    Start(commands::export::StartArgs),
    /// Wait for an export to finish; prints its location for `plan --export-prefix`.
    Wait(commands::export::WaitArgs),
}

#[derive(Debug, Subcommand)]
pub enum RetryCommand {
    /// Re-run phase 1 for one segment: `retry phase-1 <total-segments> <segment>`.
    #[command(name = "phase-1", after_help = commands::segment::RETRY_EXAMPLE)]
    Phase1(commands::segment::RetryArgs),
    /// Re-run phase 3 for one segment: `retry phase-3 <segment>`.
    #[command(name = "phase-3", after_help = commands::upload::RETRY_EXAMPLE)]
    Phase3(commands::upload::RetryArgs),
}

impl Cli {
    /// The connections every command builds from the shared flags.
    pub async fn context(&self) -> Result<Context, Error> {
        let mut ctx = Context::connect(
            &self.aws.config(),
            &self.staging.config(),
            self.retry.policy(),
        )
        .await?;
        ctx.stop = self.stop.clone();
        Ok(ctx)
    }
}

/// Parses the command line, runs the command and returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return exit::code(exit::Ended::Usage(e)),
    };
    init_logging(cli.log_format, matches!(cli.command, Command::Run(_)));
    let result = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(async {
            tokio::spawn(watch_signals(cli.stop.clone()));
            tokio::select! {
                result = run(&cli) => result,
                why = grace_expired(&cli.stop) => Err(Error::retry(format!(
                    "stopped by {why}: the command did not end within {} s of it, so it was cut short; run it again",
                    STOP_GRACE.as_secs()
                ))),
            }
        }),
        Err(e) => Err(Error::fatal(format!("cannot start the async runtime: {e}"))),
    };
    exit::code(exit::Ended::Ran(result))
}

/// How long a command has to end after SIGTERM / SIGINT before it is cut short: well under the
/// 30 seconds AWS Batch (through ECS's default stop timeout) waits before SIGKILL.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(20);

/// Turns the first SIGTERM or SIGINT into a stop request (phase 1 checkpoints, phase 3 rolls
/// back); a second one ends the process at once.
async fn watch_signals(stop: Stop) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    let why = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::warn!(
        signal = why,
        "{why}: stopping at the next safe point (phase 1 saves a checkpoint, phase 3 rolls back)"
    );
    stop.request(why);
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    eprintln!("error: a second signal: stopping at once");
    std::process::exit(exit::EXIT_RETRY);
}

/// Resolves [`STOP_GRACE`] after a stop was requested, with what requested it.
async fn grace_expired(stop: &Stop) -> String {
    stop.requested().await;
    tokio::time::sleep(STOP_GRACE).await;
    stop.why().unwrap_or_default()
}

async fn run(cli: &Cli) -> Result<(), Error> {
    use commands::*;
    match &cli.command {
        Command::InferSchema(args) => infer_schema::run(cli, args).await,
        Command::Drift(args) => drift::run(cli, args).await,
        Command::Plan(args) => plan::run(cli, args).await,
        Command::Run(args) => run::run(cli, args).await,
        Command::Segment(args) => segment::run(cli, args).await,
        Command::Retry(RetryCommand::Phase1(args)) => segment::retry(cli, args).await,
        Command::Prepare(args) => prepare::run(cli, args).await,
        Command::Upload(args) => upload::run(cli, args).await,
        Command::Retry(RetryCommand::Phase3(args)) => upload::retry(cli, args).await,
        Command::Replace(args) => replace::run(cli, args).await,
        Command::Rollback(args) => rollback::run(cli, args).await,
        Command::Status(args) => status::run(cli, args).await,
        Command::Gc(args) => gc::run(cli, args).await,
        Command::Increment(args) => increment::run(cli, args).await,
        Command::Export(ExportCommand::Start(args)) => export::run_start(cli, args).await,
        Command::Export(ExportCommand::Wait(args)) => export::run_wait(cli, args).await,
    }
}

/// Logs go to stderr. When `run` draws progress bars on a terminal, only warnings are logged so
/// the bars stay readable (ETL_LOG overrides). The SDK's config loader only logs errors: its
/// warnings are the credential chain's attempts, which our own message sums up.
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
            "{level},aws_config=error,aws_smithy_runtime=warn,sqlx=warn"
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn walk(cmd: &clap::Command, path: &str, check: &mut dyn FnMut(&str, &clap::Arg)) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            check(&format!("{path} {id}"), arg);
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), check);
        }
    }

    /// Every flag also reads an `ETL_*` environment variable (positional arguments of the
    /// runbook's retry commands excepted), and every argument says what it is for.
    #[test]
    fn every_flag_has_an_etl_variable_and_a_description() {
        let mut missing = Vec::new();
        walk(&Cli::command(), "dynamo-etl", &mut |path, arg| {
            if arg.get_help().is_none() {
                missing.push(format!("{path}: no description"));
            }
            if arg.is_positional() {
                return;
            }
            match arg.get_env() {
                Some(name) if name.to_string_lossy().starts_with("ETL_") => {}
                _ => missing.push(format!("{path}: no ETL_* variable")),
            }
        });
        assert!(missing.is_empty(), "{missing:#?}");
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// `--help` of a command shows its own flags first and the shared connection flags under
    /// their own heading; the runbook commands show an example.
    #[test]
    fn help_puts_a_commands_own_flags_first() {
        let mut cli = Cli::command();
        cli.build();
        let help = cli
            .find_subcommand_mut("upload")
            .unwrap()
            .render_help()
            .to_string();
        let own = help.find("--segment").expect("upload's own flag");
        let connection = help
            .find("Connection (AWS, staging area)")
            .expect("heading");
        assert!(own < connection, "{help}");
        let retry = cli
            .find_subcommand_mut("retry")
            .unwrap()
            .find_subcommand_mut("phase-1")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(
            retry.contains("dynamo-etl retry phase-1 8 3 --run-id"),
            "{retry}"
        );
    }
}
