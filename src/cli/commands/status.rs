//! `status`: where a run stands and what closes each gap.

use super::super::flags::{RunFlag, WarehouseFlags};
use super::super::output::out;
use super::super::Cli;
use dynamo_etl::error::Error;
use dynamo_etl::phases::status::gather;
use dynamo_etl::staging::plan::RunPlan;
use dynamo_etl::staging::runs::{latest_run, swap_record};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Default: the most recently planned run.
    #[command(flatten)]
    pub run: RunFlag,
    /// Optional: with a warehouse the report includes loaded segments and the swap state.
    #[command(flatten)]
    pub warehouse: WarehouseFlags,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<(), Error> {
    let ctx = cli.context().await?;
    let staging = ctx.staging()?;
    let run_id = match args.run.run_id.clone().filter(|r| !r.is_empty()) {
        Some(r) => r,
        None => latest_run(staging).await?.ok_or_else(|| {
            Error::fatal(format!(
                "no runs under {}; start one with dynamo-etl run (or plan)",
                staging.url(&staging.layout.runs())
            ))
        })?,
    };
    let plan = RunPlan::require(staging, &run_id).await?;
    // Without --target, the target the run was swapped into (if recorded) is the one to ask.
    let mut flags = args.warehouse.clone();
    if flags.target.is_none() {
        flags.target = swap_record(staging, &run_id).await?.map(|r| r.target);
    }
    let warehouse = match flags.is_given() {
        true => Some(dynamo_etl::warehouse::open(
            flags.config(Some(&plan.source_table))?,
        )),
        false => None,
    };
    let status = gather(&ctx, &plan, warehouse.as_deref()).await?;
    out(&status.render());
    match status.is_complete() {
        true => Ok(()),
        false => Err(Error::retry(format!(
            "run {run_id} is not complete: {} step(s) to do (listed above)",
            status.gaps.len()
        ))),
    }
}
