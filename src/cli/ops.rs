//! `status` and `gc`: what a run needs next, and cleaning up the staging area.

use anyhow::anyhow;

use super::warehouse::WarehouseArgs;
use super::{Cli, CommandResult, Failure, Services};
use crate::phases::{gc, status};
use crate::stage::plan::RunPlan;
use crate::stage::runs::latest_run;
use crate::warehouse::dialect_for;

#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// The run to report on (default: the most recently planned run).
    #[arg(long, env = "ETL_RUN_ID")]
    pub run_id: Option<String>,
    /// Optional: with a warehouse the report includes loaded segments and the swap state.
    #[command(flatten)]
    pub warehouse: WarehouseArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct GcArgs {
    /// How many of the most recent successful (swapped-in) runs to keep.
    #[arg(long, env = "ETL_GC_KEEP", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep: u32,
    /// How many of the newest schema cache snapshots of each table to keep (besides the active
    /// one and any a kept run pins).
    #[arg(long, env = "ETL_GC_KEEP_SNAPSHOTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_snapshots: u32,
    /// Delete for real; without it gc only reports what it would delete.
    #[arg(long, env = "ETL_GC_APPLY")]
    pub apply: bool,
}

pub async fn status(cli: &Cli, args: &StatusArgs) -> CommandResult {
    let services = Services::connect(cli).await?;
    let run_id = match &args.run_id {
        Some(r) => r.clone(),
        None => latest_run(&services.store, &services.layout)
            .await
            .map_err(|e| Failure::Retry(e.into()))?
            .ok_or_else(|| {
                Failure::Fatal(anyhow!(
                    "no runs under s3://{}/{}; start one with dynamo-etl run (or plan)",
                    services.store.bucket(),
                    services.layout.runs()
                ))
            })?,
    };
    let plan = RunPlan::require(&services.store, &services.layout, &run_id)
        .await
        .map_err(|e| Failure::Fatal(e.into()))?;
    // Without --target, the target the run was swapped into (if recorded) is the one to ask.
    let mut warehouse_args = args.warehouse.clone();
    if warehouse_args.target.is_none() {
        if let Ok(Some(bytes)) = services
            .store
            .get(&services.layout.run_swap_record(&run_id))
            .await
        {
            if let Ok(record) = serde_json::from_slice::<crate::stage::runs::SwapRecord>(&bytes) {
                warehouse_args.target = Some(record.target);
            }
        }
    }
    let warehouse = match warehouse_args
        .warehouse_url
        .as_deref()
        .filter(|u| !u.is_empty())
    {
        Some(_) => Some(warehouse_args.config(Some(&plan.source_table))?),
        None => None,
    };
    let dialect = warehouse.as_ref().map(|w| dialect_for(w.dialect));
    let pair = match (&dialect, &warehouse) {
        (Some(d), Some(w)) => Some((d.as_ref(), w)),
        _ => None,
    };
    let report = status::run_status(&services.store, &services.layout, &plan, pair)
        .await
        .map_err(|e| {
            if e.is_retriable() {
                Failure::Retry(e.into())
            } else {
                Failure::Fatal(e.into())
            }
        })?;
    print!("{}", report.render());
    if report.is_complete() {
        Ok(())
    } else {
        Err(Failure::Retry(anyhow!(
            "run {run_id} is not complete: {} step(s) to do (listed above)",
            report.gaps.len()
        )))
    }
}

pub async fn gc(cli: &Cli, args: &GcArgs) -> CommandResult {
    let services = Services::connect(cli).await?;
    let entries = gc::plan_gc(&services.store, &services.layout, args.keep as usize)
        .await
        .map_err(|e| Failure::Retry(e.into()))?;
    let doomed: Vec<_> = entries
        .iter()
        .filter(|e| e.kept_because.is_none())
        .collect();
    for e in &entries {
        match &e.kept_because {
            None => println!(
                "delete  {}  ({} objects, {} bytes)",
                e.run_id, e.objects, e.bytes
            ),
            Some(why) => println!("keep    {}  ({why})", e.run_id),
        }
    }
    let bytes: u64 = doomed.iter().map(|e| e.bytes).sum();
    let snapshots = gc::plan_snapshot_gc(
        &services.store,
        &services.layout,
        &entries,
        args.keep_snapshots as usize,
    )
    .await
    .map_err(|e| Failure::Retry(e.into()))?;
    for s in &snapshots {
        match &s.kept_because {
            None => println!(
                "delete  schema snapshot {} ({})",
                s.snapshot_id,
                s.tables.join(", ")
            ),
            Some(why) => println!("keep    schema snapshot {} ({why})", s.snapshot_id),
        }
    }
    let doomed_snapshots = snapshots
        .iter()
        .filter(|s| s.kept_because.is_none())
        .count();
    if !args.apply {
        println!(
            "dry run: {} runs ({bytes} bytes) and {doomed_snapshots} schema snapshots would be deleted; run again with --apply to delete them",
            doomed.len()
        );
        return Ok(());
    }
    let deleted = gc::apply(&services.store, &services.layout, &entries)
        .await
        .map_err(|e| {
            Failure::Retry(
                anyhow::Error::new(e).context("gc stopped part way; run it again to finish"),
            )
        })?;
    let deleted_snapshots = gc::apply_snapshots(&services.store, &services.layout, &snapshots)
        .await
        .map_err(|e| {
            Failure::Retry(
                anyhow::Error::new(e).context("gc stopped part way; run it again to finish"),
            )
        })?;
    println!(
        "deleted {} runs ({deleted} objects, {bytes} bytes) and {doomed_snapshots} schema snapshots ({deleted_snapshots} objects)",
        doomed.len()
    );
    Ok(())
}
