//! `replace` (phase 4).

use super::super::flags::{note, DryRunFlag, RunFlag, WarehouseFlags};
use super::super::output::line;
use super::super::Cli;
use dynamo_etl::error::Error;
use dynamo_etl::phases::replace::Replaced;
use dynamo_etl::warehouse::swap::SwapKind;

#[derive(Debug, Clone, clap::Args)]
#[command(mut_arg(
    "dry_run",
    note("Here: the ANALYZE and swap SQL; the gate is not checked.")
))]
pub struct Args {
    #[command(flatten)]
    pub run: RunFlag,
    #[command(flatten)]
    pub warehouse: WarehouseFlags,
    #[command(flatten)]
    pub dry_run: DryRunFlag,
    /// Serve this run even though it was planned before the run the target serves (to re-serve
    /// an old generation on purpose; `rollback` is the normal way back one generation).
    #[arg(long, env = "ETL_ALLOW_OLDER")]
    pub allow_older: bool,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<(), Error> {
    let (ctx, plan, warehouse) =
        super::planned_with_warehouse(cli, args.run.required()?, &args.warehouse).await?;
    let config = warehouse.config();
    if args.dry_run.dry_run {
        line(format!(
            "-- gate: every segment 0..{} in the ledger, staged counts and fingerprints equal the manifests",
            plan.total_segments - 1
        ));
        let analyze = warehouse.analyze_sql(&plan);
        if !analyze.is_empty() {
            line("-- statistics of the staged tables, before the swap (--no-analyze skips them)");
        }
        for s in analyze {
            line(format!("{s};"));
        }
        for s in warehouse.swap_sql(SwapKind::Replace) {
            line(format!("{s};"));
        }
        return Ok(());
    }
    let done =
        dynamo_etl::phases::replace::replace(&ctx, warehouse.as_ref(), &plan, args.allow_older)
            .await?;
    line(match done {
        Replaced::Swapped { .. } => format!(
            "run {} is now served from {}; the previous generation is kept in {}",
            plan.run_id,
            config.target,
            config.previous()
        ),
        Replaced::AlreadyServed => format!(
            "run {} is already served from {}: another process swapped it in; nothing to do",
            plan.run_id, config.target
        ),
    });
    Ok(())
}
