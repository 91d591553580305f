//! Phase 3: load one segment into staging, exactly once, counts checked (the dialect does the
//! work in one transaction; see `warehouse::Warehouse::load_segment`).

use super::Context;
use crate::error::Error;
use crate::staging::commands::Step;
use crate::staging::plan::RunPlan;
use crate::warehouse::{UploadOutcome, Warehouse, WarehouseError};

/// Runs phase 3 for `segment` of `plan`'s run. A failure names the commands that fix it: the
/// same retry for a transient fault, phase 1 again for a damaged segment, prepare for staging
/// that belongs to another run.
pub async fn upload(
    ctx: &Context,
    warehouse: &dyn Warehouse,
    plan: &RunPlan,
    segment: u32,
) -> Result<UploadOutcome, Error> {
    super::plan::check_full_copy(plan)?;
    super::plan::check_dialect(plan, warehouse.config().dialect())?;
    if segment >= plan.total_segments {
        return Err(Error::fatal(format!(
            "segment {segment} does not exist: run {} has segments 0 to {}",
            plan.run_id,
            plan.total_segments - 1
        )));
    }
    let load = warehouse.load_segment(ctx.staging()?, plan, segment, &ctx.retry);
    let loaded = tokio::select! {
        r = load => r,
        _ = ctx.stop.requested() => return Err(interrupted(ctx, warehouse, plan, segment)),
    };
    loaded.map_err(|e| {
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

/// Phase 3 stopped by SIGTERM / SIGINT: dropping the load closed its session, so the server
/// rolled its transaction back and the segment is not loaded.
fn interrupted(ctx: &Context, warehouse: &dyn Warehouse, plan: &RunPlan, segment: u32) -> Error {
    let why = ctx.stop.why().unwrap_or_else(|| "stop requested".into());
    Error::retry(format!(
        "phase 3 for segment {segment} of run {} stopped ({why}); its transaction was rolled back, so nothing of the segment is loaded",
        plan.run_id
    ))
    .next(
        ctx.runbook(&plan.run_id, Some(&warehouse.config().target))
            .command(Step::RetryPhase3 { segment }),
    )
}

/// What `upload --all-segments` did, by segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllSegments {
    /// Segments this command loaded, with their rows.
    pub loaded: std::collections::BTreeMap<u32, u64>,
    /// Segments found loaded already.
    pub already: Vec<u32>,
}

/// Phase 3 for every segment of `plan`'s run that phase 1 committed and staging does not hold
/// yet, in one transaction with one COPY per table (`warehouse::Warehouse::load_segments`).
/// Segments phase 1 has not committed are left alone and named at the end (a retry class error
/// whose commands are their `retry phase-1` and then this command again), so one missing
/// segment does not hold back the others. A failure commits nothing of the load.
pub async fn upload_all(
    ctx: &Context,
    warehouse: &dyn Warehouse,
    plan: &RunPlan,
) -> Result<AllSegments, Error> {
    super::plan::check_full_copy(plan)?;
    super::plan::check_dialect(plan, warehouse.config().dialect())?;
    let staging = ctx.staging()?;
    let runbook = ctx.runbook(&plan.run_id, Some(&warehouse.config().target));
    let load = warehouse.load_segments(staging, plan, &ctx.retry);
    let loaded = tokio::select! {
        r = load => r,
        _ = ctx.stop.requested() => {
            let why = ctx.stop.why().unwrap_or_else(|| "stop requested".into());
            return Err(Error::retry(format!(
                "phase 3 for the segments of run {} stopped ({why}); its transaction was rolled back, so none of them was loaded by this command",
                plan.run_id
            ))
            .next(runbook.command(Step::UploadAll)));
        }
    };
    let outcome = loaded
        .map_err(|e| {
            // A segment's own retry is this command again once phase 1 rewrote it.
            let remedy = match e {
                WarehouseError::NotPrepared { .. } => vec![Step::Prepare, Step::UploadAll],
                _ => e.remedy(plan),
            };
            let mut steps: Vec<Step> = Vec::new();
            for step in remedy {
                let step = match step {
                    Step::RetryPhase3 { .. } => Step::UploadAll,
                    other => other,
                };
                if !steps.contains(&step) {
                    steps.push(step);
                }
            }
            if steps.is_empty() {
                steps.push(Step::UploadAll);
            }
            steps.into_iter().fold(
                Error::from(e).context(format!(
                    "phase 3 for the segments of run {} did not commit; none of them was loaded by this command",
                    plan.run_id
                )),
                |err, step| err.next(runbook.command(step)),
            )
        })?;
    let done = AllSegments {
        loaded: outcome
            .loaded
            .iter()
            .map(|(k, tables)| (*k, tables.values().sum()))
            .collect(),
        already: outcome.already,
    };
    if outcome.missing.is_empty() {
        return Ok(done);
    }
    let listed: Vec<String> = outcome.missing.iter().map(u32::to_string).collect();
    let err = Error::retry(format!(
        "run {}: segment(s) {} have no committed manifest (phase 1 did not finish them); {} other segment(s) are loaded",
        plan.run_id,
        listed.join(", "),
        done.loaded.len() + done.already.len()
    ));
    let err = outcome.missing.iter().fold(err, |err, &segment| {
        err.next(runbook.command(Step::RetryPhase1 {
            total_segments: plan.total_segments,
            segment,
        }))
    });
    Err(err.next(runbook.command(Step::UploadAll)))
}
