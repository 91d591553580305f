//! `rollback`: the previous generation back in.

use super::super::flags::{note, DryRunFlag, RunFlag, WarehouseFlags};
use super::super::output::line;
use super::super::Cli;
use dynamo_etl::error::Error;
use dynamo_etl::warehouse::swap::SwapKind;

#[derive(Debug, Clone, clap::Args)]
#[command(mut_arg(
    "run_id",
    note("Here only used to derive --target from the run's source table.")
))]
pub struct Args {
    #[command(flatten)]
    pub run: RunFlag,
    #[command(flatten)]
    pub warehouse: WarehouseFlags,
    #[command(flatten)]
    pub dry_run: DryRunFlag,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<(), Error> {
    let source_table = match &args.run.run_id {
        Some(run_id) if args.warehouse.target.is_none() => {
            Some(super::planned(cli, run_id).await?.1.source_table)
        }
        _ => None,
    };
    let warehouse = dynamo_etl::warehouse::open(args.warehouse.config(
        source_table.as_deref(),
        &cli.aws,
        &cli.retry,
    )?);
    let config = warehouse.config();
    if args.dry_run.dry_run {
        for s in warehouse.swap_sql(SwapKind::Rollback) {
            line(format!("{s};"));
        }
        return Ok(());
    }
    dynamo_etl::phases::replace::rollback(warehouse.as_ref(), &cli.retry.policy()).await?;
    line(format!(
        "{} serves the previous generation again; the replaced one is kept in {}",
        config.target,
        config.previous()
    ));
    Ok(())
}
