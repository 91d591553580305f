//! `gc`: delete the staging data of old runs (a dry run unless `--apply`).

use super::super::output::{self, line, out};
use super::super::Cli;
use dynamo_etl::error::Error;
use dynamo_etl::phases::gc;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// How many of the most recent successful (swapped-in) runs to keep.
    #[arg(long, env = "ETL_KEEP", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep: u32,
    /// How many of the newest schema cache snapshots of each table to keep (besides the active
    /// one and any a kept run pins).
    #[arg(long, env = "ETL_KEEP_SNAPSHOTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_snapshots: u32,
    /// Delete for real; without it gc only reports what it would delete.
    #[arg(long, env = "ETL_APPLY")]
    pub apply: bool,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<(), Error> {
    let ctx = cli.context().await?;
    let staging = ctx.staging()?;
    let plan = gc::plan(staging, args.keep as usize, args.keep_snapshots as usize).await?;
    out(&output::gc::render(&plan, args.apply));
    if args.apply {
        let done = gc::apply_plan(staging, &plan)
            .await
            .map_err(|e| Error::from(e).context("gc stopped part way; run it again to finish"))?;
        line(output::gc::done(&done));
    }
    Ok(())
}
