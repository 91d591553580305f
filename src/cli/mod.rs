//! The command line: clap types and flag groups, logging, progress bars and the exit-code map.
//! Each subcommand is one small file in [`commands`]: parse → one phase function → print.

pub mod commands;
pub mod deprecated;
pub mod exit;
pub mod flags;
pub mod output;
pub mod progress;
#[cfg(test)]
mod reference;

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
    /// Prove that a generation of the target (staging, served, previous) holds exactly what
    /// phase 1 wrote: per table and column, proven, count-only or MISMATCH.
    Verify(commands::verify::Args),
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
    /// Tail the table's DynamoDB stream into the served tables: one transaction per batch,
    /// the stream positions recorded with it, so nothing is lost or applied twice.
    Follow(commands::follow::Args),
    /// A DynamoDB export of the table to S3, for a run that reads it instead of scanning.
    #[command(subcommand)]
    Export(ExportCommand),
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Start a full export (DynamoDB JSON) of the table to the staging bucket; prints its ARN.
    Start(commands::export::StartArgs),
    /// Wait for an export to finish; prints its location for `plan --export-prefix` (or, for an
    /// incremental export, `increment --incremental-export-prefix`).
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
    let (cli, deprecations) = match deprecated::parse_from(std::env::args_os()) {
        Ok(parsed) => (parsed.cli, parsed.deprecations),
        Err(e) => return exit::code(exit::Ended::Usage(e)),
    };
    init_logging(cli.log_format, matches!(cli.command, Command::Run(_)));
    for d in &deprecations {
        tracing::warn!(deprecated = %d.old, replacement = %d.new, "{}", d.message);
    }
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
        Command::Verify(args) => verify::run(cli, args).await,
        Command::Status(args) => status::run(cli, args).await,
        Command::Gc(args) => gc::run(cli, args).await,
        Command::Increment(args) => increment::run(cli, args).await,
        Command::Follow(args) => follow::run(cli, args).await,
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

    /// Calls `check` with every argument of `cmd` and of its subcommands, and its path.
    pub(super) fn walk(cmd: &clap::Command, path: &str, check: &mut dyn FnMut(&str, &clap::Arg)) {
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

    /// Every argument of every command, nested ones (`retry phase-1`) included, says what it
    /// is for, and every flag reads the variable `ETL_<FLAG>`: `--total-segments` ↔
    /// `ETL_TOTAL_SEGMENTS`. Exempt from the name: the runbook's positional arguments, which read
    /// none, and the hidden spellings kept for one release ([`deprecated`]).
    #[test]
    fn every_argument_has_help_and_every_flag_reads_etl_flag() {
        let kept: Vec<&str> = (deprecated::RENAMED_FLAGS.iter().map(|f| f.id))
            .chain(deprecated::NO_EFFECT_FLAGS.iter().map(|f| f.id))
            .collect();
        let mut wrong = Vec::new();
        walk(&Cli::command(), "dynamo-etl", &mut |path, arg| {
            if arg
                .get_help()
                .is_none_or(|h| h.to_string().trim().is_empty())
            {
                wrong.push(format!("{path}: no help"));
            }
            if arg.is_positional() {
                return;
            }
            if arg.is_hide_set() {
                if !kept.contains(&arg.get_id().as_str()) {
                    wrong.push(format!("{path}: hidden, but not a deprecated spelling"));
                }
                return;
            }
            let long = arg.get_long().unwrap_or_default();
            let expected = format!("ETL_{}", long.to_uppercase().replace('-', "_"));
            match arg.get_env() {
                Some(name) if name == expected.as_str() => {}
                other => wrong.push(format!("{path}: --{long} reads {other:?}, not {expected}")),
            }
        });
        fn about(cmd: &clap::Command, path: &str, wrong: &mut Vec<String>) {
            for sub in cmd.get_subcommands() {
                let path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() {
                    wrong.push(format!("{path}: no description"));
                }
                about(sub, &path, wrong);
            }
        }
        about(&Cli::command(), "dynamo-etl", &mut wrong);
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    /// What a command says of a shared flag reaches its `--help`: every shown argument's help is
    /// in its command's help text, notes added with `flags::note` included.
    #[test]
    fn every_argument_s_help_is_in_its_commands_help() {
        fn check(cmd: &mut clap::Command, path: &str, wrong: &mut Vec<String>) {
            let help = cmd.render_long_help().to_string();
            let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
            for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
                let text = arg.get_long_help().or(arg.get_help());
                let text = text.map(|t| t.to_string()).unwrap_or_default();
                let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
                if !flat.contains(&text) {
                    wrong.push(format!("{path} --help lacks {:?}: {text}", arg.get_id()));
                }
            }
            let names: Vec<String> = cmd
                .get_subcommands()
                .map(|s| s.get_name().to_string())
                .collect();
            for name in names {
                let sub = cmd.find_subcommand_mut(&name).unwrap();
                check(sub, &format!("{path} {name}"), wrong);
            }
        }
        let mut cli = Cli::command();
        cli.build();
        let mut wrong = Vec::new();
        check(&mut cli, "dynamo-etl", &mut wrong);
        assert!(wrong.is_empty(), "{wrong:#?}");
        let run = cli.find_subcommand_mut("run").unwrap().render_long_help();
        let run = run
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let default = commands::run::DEFAULT_TOTAL_SEGMENTS;
        assert!(
            run.contains(&format!("Default for a new run: {default};")),
            "{run}"
        );
    }

    /// The sources of the command line, without their comments' markers removed.
    fn cli_sources() -> Vec<(String, String)> {
        fn walk_dir(dir: &std::path::Path, out: &mut Vec<(String, String)>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk_dir(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    out.push((path.display().to_string(), text));
                }
            }
        }
        let mut out = Vec::new();
        walk_dir(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cli"),
            &mut out,
        );
        assert!(out.len() > 10, "{out:?}");
        out
    }

    /// clap drops a doc comment on a `#[command(flatten)]` field without a word; what a command
    /// says of a shared flag goes through `flags::note`, which reaches `--help`.
    #[test]
    fn no_doc_comment_is_written_where_clap_drops_it() {
        let mut dropped = Vec::new();
        for (file, text) in cli_sources() {
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                let flatten = line.trim().starts_with("#[command(flatten");
                if flatten && i > 0 && lines[i - 1].trim().starts_with("///") {
                    dropped.push(format!("{file}:{}: {}", i, lines[i - 1].trim()));
                }
            }
        }
        assert!(dropped.is_empty(), "{dropped:#?}");
    }

    /// `--dialect` is declared once (`flags::DialectFlag`) and, like every setting, read through
    /// clap: no command reads an `ETL_` variable itself (`ETL_BLESS`, the tests' switch, aside).
    #[test]
    fn the_dialect_is_declared_once_and_read_only_through_clap() {
        let mut declared = Vec::new();
        let mut read_by_hand = Vec::new();
        for (file, text) in cli_sources() {
            let code: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            declared.extend(code.matches("env = \"ETL_DIALECT\"").map(|_| file.clone()));
            // ETL_BLESS is the tests' switch to rewrite golden files, not a setting.
            let code = code.replace("env::var(\"ETL_BLESS\")", "");
            for call in ["env::var(\"ETL_", "env::var_os(\"ETL_"] {
                if code.contains(call) {
                    read_by_hand.push(file.clone());
                }
            }
        }
        assert_eq!(declared.len(), 1, "{declared:?}");
        assert!(read_by_hand.is_empty(), "{read_by_hand:?}");
        let mut dialects = Vec::new();
        walk(&Cli::command(), "dynamo-etl", &mut |path, arg| {
            if arg.get_long() == Some("dialect") {
                dialects.push((path.to_string(), arg.get_help().map(|h| h.to_string())));
            }
        });
        assert!(dialects.len() >= 6, "{dialects:?}");
        assert!(
            dialects.iter().all(|(_, h)| *h == dialects[0].1),
            "{dialects:#?}"
        );
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
