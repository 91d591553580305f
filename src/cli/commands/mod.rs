//! One file per subcommand: its arguments, and `run`: check them, call one phase, print.

pub mod drift;
pub mod export;
pub mod follow;
pub mod gc;
pub mod increment;
pub mod infer_schema;
pub mod plan;
pub mod prepare;
pub mod replace;
pub mod rollback;
pub mod run;
pub mod segment;
pub mod status;
pub mod upload;
pub mod verify;

use dynamo_etl::error::Error;
use dynamo_etl::phases::Context;
use dynamo_etl::staging::plan::RunPlan;
use dynamo_etl::warehouse::Warehouse;

use super::flags::WarehouseFlags;
use super::Cli;

/// The context and the plan of the run named by `run_id`.
pub async fn planned(cli: &Cli, run_id: &str) -> Result<(Context, RunPlan), Error> {
    dynamo_etl::staging::check_run_id(run_id).map_err(Error::fatal)?;
    let ctx = cli.context().await?;
    let plan = RunPlan::require(ctx.staging()?, run_id).await?;
    Ok((ctx, plan))
}

/// The context and the plan of the run named by `run_id`, and the warehouse `flags` name (its
/// target defaulting to the one derived from the run's source table).
pub async fn planned_with_warehouse(
    cli: &Cli,
    run_id: &str,
    flags: &WarehouseFlags,
) -> Result<(Context, RunPlan, Box<dyn Warehouse>), Error> {
    let (ctx, plan) = planned(cli, run_id).await?;
    let config = flags.config(Some(&plan.source_table), &cli.aws, &cli.retry)?;
    Ok((ctx, plan, dynamo_etl::warehouse::open(config)))
}
