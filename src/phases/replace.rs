//! Phase 4 and its undo: `replace` swaps the staged run in when the gate passes — forward only,
//! complete — keeping the generation it replaces for rollback, and records the swap in the
//! staging area; `rollback` swaps the previous generation back.

use super::Context;
use crate::error::{Class, Error};
use crate::retry::RetryPolicy;
use crate::staging::commands::{Runbook, Step};
use crate::staging::manifest;
use crate::staging::plan::RunPlan;
use crate::staging::runs::record_swap;
use crate::warehouse::fingerprint::ProvenColumns;
use crate::warehouse::gate::check_forward;
use crate::warehouse::{GateRefusal, SwapOutcome, Warehouse, WarehouseState};
use std::collections::BTreeMap;

/// The gate refused: incomplete work, each gap with the command that closes it.
fn refused(refusal: GateRefusal, runbook: &Runbook, what: String) -> Error {
    let steps = refusal.steps.clone();
    steps
        .iter()
        .fold(Error::from(refusal).context(what), |err, step| {
            err.next(runbook.command(*step))
        })
}

/// What `replace` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replaced {
    /// The run is swapped in: the statements of the swap, and per table the columns the gate
    /// proved and those it counted only (empty when not fingerprinted or `--skip-verify`).
    Swapped {
        statements: Vec<String>,
        proof: BTreeMap<String, ProvenColumns>,
    },
    /// Another process swapped the run in while this one was on its way: nothing left to do.
    AlreadyServed,
}

/// Refuses, before any work, a run that must never replace what the target serves: the run
/// served already, the one kept as previous, or (without `allow_older`) one planned before the
/// served run. Each is a decision for an operator, not a retry.
pub async fn check_may_replace(
    warehouse: &dyn Warehouse,
    plan: &RunPlan,
    allow_older: bool,
) -> Result<(), Error> {
    let state = warehouse.state().await?;
    may_replace(&state, &warehouse.config().target, plan, allow_older)
}

/// [`check_may_replace`] on a state already read.
pub fn may_replace(
    state: &WarehouseState,
    target: &str,
    plan: &RunPlan,
    allow_older: bool,
) -> Result<(), Error> {
    if state
        .serving
        .as_ref()
        .is_some_and(|s| s.run_id == plan.run_id)
    {
        return Err(Error::fatal(format!(
            "run {} is already served by {target}, and {target}_previous keeps {}; swapping it in again would destroy that rollback generation. Nothing to do: a new copy needs a new run (dynamo-etl run --table {} without --run-id)",
            plan.run_id,
            state.previous.as_ref().map_or("nothing", |p| p.run_id.as_str()),
            plan.source_table
        )));
    }
    let refusal = check_forward(
        plan,
        target,
        state.serving.as_ref(),
        state.previous.as_ref(),
        allow_older,
    );
    match refusal {
        Some(r) => Err(Error::from(r).context(format!(
            "run {} may not replace what {target} serves",
            plan.run_id
        ))),
        None => Ok(()),
    }
}

/// Phase 4 for `plan`'s run.
pub async fn replace(
    ctx: &Context,
    warehouse: &dyn Warehouse,
    plan: &RunPlan,
    allow_older: bool,
) -> Result<Replaced, Error> {
    super::plan::check_full_copy(plan)?;
    super::plan::check_dialect(plan, warehouse.config().dialect())?;
    check_may_replace(warehouse, plan, allow_older).await?;
    let config = warehouse.config();
    let runbook = ctx.runbook(&plan.run_id, Some(&config.target));
    let staging = ctx.staging()?;
    let manifests = manifest::read_all(staging, plan).await.map_err(|e| {
        Error::from(e)
            .context(format!(
                "replace for run {} cannot read the manifests; {} is unchanged",
                plan.run_id, config.target
            ))
            .next(runbook.command(Step::Replace))
    })?;
    let outcome = warehouse
        .replace(plan, &manifests, allow_older, &ctx.retry)
        .await
        .map_err(|e| {
            Error::from(e)
                .context(format!(
                    "replace for run {} did not happen; {} is unchanged",
                    plan.run_id, config.target
                ))
                .next(runbook.command(Step::Replace))
        })?;
    match outcome {
        SwapOutcome::Swapped { statements, proof } => {
            // The warehouse is the source of truth; this record only helps `gc` and `status`.
            if let Err(e) = record_swap(staging, &plan.run_id, &config.target).await {
                tracing::warn!(run_id = %plan.run_id, error = %e,
                    "the swap committed but its record could not be written");
            }
            Ok(Replaced::Swapped {
                statements,
                proof: proof.map(|p| p.columns()).unwrap_or_default(),
            })
        }
        SwapOutcome::AlreadyServed => {
            tracing::info!(run_id = %plan.run_id, target = %config.target,
                "another process swapped this run in meanwhile; nothing left to do");
            Ok(Replaced::AlreadyServed)
        }
        SwapOutcome::Refused(r) => Err(refused(
            r,
            &runbook,
            format!(
                "replace refused for run {}; {} is unchanged",
                plan.run_id, config.target
            ),
        )),
    }
}

/// Swaps the previous generation of the target back in.
pub async fn rollback(warehouse: &dyn Warehouse, retry: &RetryPolicy) -> Result<(), Error> {
    let target = warehouse.config().target.clone();
    let runbook = Runbook {
        run_id: String::new(),
        target: Some(target.clone()),
        bucket: String::new(),
        prefix: String::new(),
    };
    match warehouse.rollback(retry).await {
        Ok(SwapOutcome::Swapped { .. } | SwapOutcome::AlreadyServed) => Ok(()),
        // Nothing to roll back to: running it again changes nothing.
        Ok(SwapOutcome::Refused(r)) => {
            Err(
                refused(r, &runbook, format!("rollback of {target} refused"))
                    .reclassify(Class::Fatal),
            )
        }
        Err(e) => Err(Error::from(e)
            .context(format!(
                "rollback of {target} did not happen; nothing changed"
            ))
            .next(runbook.command(Step::Rollback))),
    }
}
