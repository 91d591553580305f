//! Phase 4 and its undo: `replace` swaps the staged run in when the completeness gate passes,
//! keeping the generation it replaces for rollback, and records the swap in the staging area;
//! `rollback` swaps the previous generation back.

use super::Context;
use crate::error::{Class, Error};
use crate::retry::RetryPolicy;
use crate::staging::commands::{Runbook, Step};
use crate::staging::manifest;
use crate::staging::plan::RunPlan;
use crate::staging::runs::record_swap;
use crate::warehouse::{GateRefusal, SwapOutcome, Warehouse};

/// The gate refused: incomplete work, each gap with the command that closes it.
fn refused(refusal: GateRefusal, runbook: &Runbook, what: String) -> Error {
    let steps = refusal.steps.clone();
    steps
        .iter()
        .fold(Error::from(refusal).context(what), |err, step| {
            err.next(runbook.command(*step))
        })
}

/// Phase 4 for `plan`'s run; returns the statements of the swap.
pub async fn replace(
    ctx: &Context,
    warehouse: &dyn Warehouse,
    plan: &RunPlan,
) -> Result<Vec<String>, Error> {
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
        .replace(plan, &manifests, &ctx.retry)
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
        SwapOutcome::Swapped { statements } => {
            // The warehouse is the source of truth; this record only helps `gc` and `status`.
            if let Err(e) = record_swap(staging, &plan.run_id, &config.target).await {
                tracing::warn!(run_id = %plan.run_id, error = %e,
                    "the swap committed but its record could not be written");
            }
            Ok(statements)
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
        Ok(SwapOutcome::Swapped { .. }) => Ok(()),
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
