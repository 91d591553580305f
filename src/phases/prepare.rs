//! Phase 2: a pristine staging schema for the run, with one table per data-schema.

use super::Context;
use crate::error::Error;
use crate::staging::commands::Step;
use crate::staging::plan::RunPlan;
use crate::warehouse::Warehouse;

/// Runs phase 2 for `plan`'s run.
pub async fn prepare(
    ctx: &Context,
    warehouse: &dyn Warehouse,
    plan: &RunPlan,
) -> Result<(), Error> {
    super::plan::check_full_copy(plan)?;
    super::plan::check_dialect(plan, warehouse.config().dialect())?;
    warehouse.prepare(plan).await.map_err(|e| {
        Error::from(e)
            .context(format!("prepare for run {} did not complete", plan.run_id))
            .next(
                ctx.runbook(&plan.run_id, Some(&warehouse.config().target))
                    .command(Step::Prepare),
            )
    })
}
