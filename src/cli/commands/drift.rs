//! `drift`: what a run's data did not fit.

use super::super::flags::RunFlag;
use super::super::output::{self, out};
use super::super::Cli;
use dynamo_etl::error::Error;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub run: RunFlag,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<(), Error> {
    let (ctx, plan) = super::planned(cli, args.run.required()?).await?;
    let report = dynamo_etl::phases::drift::drift(&ctx, &plan).await?;
    out(&output::drift::render(&report));
    Ok(())
}
