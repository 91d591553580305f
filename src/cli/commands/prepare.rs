//! `prepare` (phase 2).

use super::super::flags::{DryRunFlag, RunFlag, WarehouseFlags};
use super::super::output::line;
use super::super::Cli;
use dynamo_etl::error::Error;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub run: RunFlag,
    #[command(flatten)]
    pub warehouse: WarehouseFlags,
    #[command(flatten)]
    pub dry_run: DryRunFlag,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<(), Error> {
    let (ctx, plan) = super::planned(cli, args.run.required()?).await?;
    let warehouse = dynamo_etl::warehouse::open(args.warehouse.config(
        Some(&plan.source_table),
        &cli.aws,
        &cli.retry,
    )?);
    if args.dry_run.dry_run {
        for s in warehouse.prepare_sql(&plan) {
            line(format!("{s};"));
        }
        return Ok(());
    }
    dynamo_etl::phases::prepare::prepare(&ctx, warehouse.as_ref(), &plan).await?;
    line(format!(
        "prepared {} for run {}: {} tables, ledger empty",
        warehouse.config().staging(),
        plan.run_id,
        plan.warehouse_tables().len()
    ));
    Ok(())
}
