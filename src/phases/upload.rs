//! Phase 3: load one segment into staging, exactly once, counts checked (the dialect does the
//! work in one transaction; see `warehouse::Warehouse::load_segment`).

use super::Context;
use crate::error::Error;
use crate::staging::commands::Step;
use crate::staging::plan::RunPlan;
use crate::warehouse::{UploadOutcome, Warehouse};

/// Runs phase 3 for `segment` of `plan`'s run. A failure names the commands that fix it: the
/// same retry for a transient fault, phase 1 again for a damaged segment, prepare for staging
/// that belongs to another run.
pub async fn upload(
    ctx: &Context,
    warehouse: &dyn Warehouse,
    plan: &RunPlan,
    segment: u32,
) -> Result<UploadOutcome, Error> {
    if segment >= plan.total_segments {
        return Err(Error::fatal(format!(
            "segment {segment} does not exist: run {} has segments 0 to {}",
            plan.run_id,
            plan.total_segments - 1
        )));
    }
    warehouse
        .load_segment(ctx.staging()?, plan, segment, &ctx.retry)
        .await
        .map_err(|e| {
            let runbook = ctx.runbook(&plan.run_id, Some(&warehouse.config().target));
            let mut steps = e.remedy(plan);
            if steps.is_empty() {
                steps.push(Step::RetryPhase3 { segment });
            }
            steps.into_iter().fold(
                Error::from(e).context(format!(
                    "phase 3 for segment {segment} of run {} did not commit",
                    plan.run_id
                )),
                |err, step| err.next(runbook.command(step)),
            )
        })
}
