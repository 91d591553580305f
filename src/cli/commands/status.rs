//! `status`: where a run stands and what closes each gap.

use super::super::flags::{note, RunFlag, WarehouseFlags};
use super::super::output::{self, out};
use super::super::Cli;
use dynamo_etl::error::Error;

#[derive(Debug, Clone, clap::Args)]
#[command(
    mut_arg("run_id", note("Default: the most recently planned run.")),
    mut_arg(
        "warehouse_url",
        note("Optional: with a warehouse the report includes loaded segments and the swap state.")
    )
)]
pub struct Args {
    #[command(flatten)]
    pub run: RunFlag,
    #[command(flatten)]
    pub warehouse: WarehouseFlags,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<(), Error> {
    let ctx = cli.context().await?;
    let run_id = args.run.run_id.as_deref().filter(|r| !r.is_empty());
    let status = dynamo_etl::phases::status::status(&ctx, run_id, |plan, recorded_target| {
        if !args.warehouse.is_given() {
            return Ok(None);
        }
        // Without --target, the target the run was swapped into (if recorded) is the one to ask.
        let mut flags = args.warehouse.clone();
        flags.target = flags.target.or(recorded_target);
        let config = flags.config(Some(&plan.source_table), &cli.aws, &cli.retry)?;
        Ok(Some(dynamo_etl::warehouse::open(config)))
    })
    .await?;
    out(&output::status::render(&status));
    if args.warehouse.is_given() && args.warehouse.target.is_some() {
        let config = args
            .warehouse
            .config(Some(&status.source_table), &cli.aws, &cli.retry)?;
        let warehouse = dynamo_etl::warehouse::open(config);
        // Only a target that serves a copy has a watermark; status of a run never fails on it.
        if let Ok(mark) = dynamo_etl::phases::increment::watermark(&ctx, warehouse.as_ref()).await {
            out(&watermark_line(
                &status.source_table,
                &warehouse.config().target,
                &mark,
            ));
        }
        // A target `follow` keeps fresh: its freshness, per-shard positions and rate.
        let target = warehouse.config().target.clone();
        let held = warehouse.stream_positions().await.unwrap_or_default();
        let file = dynamo_etl::phases::follow::read_status(&ctx, &target)
            .await
            .ok()
            .flatten();
        out(&output::follow::status_section(
            &target,
            file.as_ref(),
            &held,
            chrono::Utc::now(),
        ));
    }
    match status.is_complete() {
        true => Ok(()),
        false => Err(Error::retry(format!(
            "run {} is not complete: {} step(s) to do (listed above)",
            status.run_id,
            status.gaps.len()
        ))),
    }
}

/// Where the target's served tables are current to, and how far behind now that is.
fn watermark_line(
    table: &str,
    target: &str,
    mark: &dynamo_etl::phases::increment::Watermark,
) -> String {
    let lag = chrono::Utc::now() - mark.at;
    let since = match &mark.last_increment {
        Some(last) => format!("the end of increment {}", last.run_id),
        None => format!("the point in time of full copy {}", mark.serving),
    };
    format!(
        "watermark of {target}: {} ({since}); lag {} min; `dynamo-etl increment --table {table} --target {target}` applies the changes since\n",
        dynamo_etl::phases::increment::instant(mark.at),
        lag.num_minutes()
    )
}
