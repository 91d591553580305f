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
    let (ctx, plan, warehouse) =
        super::planned_with_warehouse(cli, args.run.required()?, &args.warehouse).await?;
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
