//! Steps of phase 3 that every dialect takes the same way: finding a manifest table among the
//! run's tables, checking what COPY loaded against what the manifest promised, checking a part
//! object before the warehouse reads it, and starting a load again after a transient fault.

use std::future::Future;

use super::{UploadOutcome, WarehouseError};
use crate::retry::RetryPolicy;
use crate::schema::DataSchema;
use crate::staging::manifest::{PartFile, TableOutput};
use crate::staging::plan::RunPlan;
use crate::staging::Staging;

/// The run's warehouse table a manifest names; a name the plan does not know means the
/// segment was written for another plan.
pub fn table_of<'t>(
    tables: &'t [DataSchema],
    plan: &RunPlan,
    segment: u32,
    name: &str,
) -> Result<&'t DataSchema, WarehouseError> {
    tables
        .iter()
        .find(|t| t.table == name)
        .ok_or_else(|| WarehouseError::BadSegment {
            run_id: plan.run_id.clone(),
            segment,
            problem: format!(
                "its manifest has parts for table {name}, which the run's plan does not have"
            ),
        })
}

/// Fails unless COPY loaded exactly the rows the manifest promised.
pub fn check_copied(
    plan: &RunPlan,
    segment: u32,
    table: &str,
    output: &TableOutput,
    copied: u64,
) -> Result<(), WarehouseError> {
    if copied == output.rows {
        return Ok(());
    }
    Err(WarehouseError::BadSegment {
        run_id: plan.run_id.clone(),
        segment,
        problem: format!(
            "table {table} loaded {copied} rows but the manifest has {}",
            output.rows
        ),
    })
}

/// Runs `attempt` (one whole load of a segment, in its own transaction) until it succeeds, fails
/// with an error that is not transient, or `retry`'s budget runs out. Each attempt starts from a
/// clean transaction, so a body cut short halfway through a part costs a retry, not a rerun.
pub async fn with_retries<Fut>(
    retry: &RetryPolicy,
    plan: &RunPlan,
    segment: u32,
    attempt: impl FnMut() -> Fut,
) -> Result<UploadOutcome, WarehouseError>
where
    Fut: Future<Output = Result<UploadOutcome, WarehouseError>>,
{
    retry
        .run(
            attempt,
            |e: &WarehouseError| e.is_transient(),
            |e, delay| {
                tracing::warn!(run_id = %plan.run_id, segment, error = %e,
                    delay_ms = delay.as_millis() as u64,
                    "loading the segment failed transiently; its transaction was rolled back and the load starts again")
            },
        )
        .await
}

/// Fails unless the object of `file` is the one phase 1 wrote: same size and, where the store
/// gave one, the same entity tag (which changes whenever the object is written again). For
/// dialects that let the warehouse read the parts itself, so the bytes cannot be hashed here.
pub async fn check_object(
    staging: &Staging,
    plan: &RunPlan,
    segment: u32,
    file: &PartFile,
) -> Result<(), WarehouseError> {
    let damaged = |problem: String| WarehouseError::BadSegment {
        run_id: plan.run_id.clone(),
        segment,
        problem: format!("part {}: {problem}", staging.url(&file.key)),
    };
    let Some(head) = staging.store.head(&file.key).await? else {
        return Err(damaged("it does not exist".into()));
    };
    if head.size != file.bytes {
        return Err(damaged(format!(
            "it is {} bytes, but its manifest records {}",
            head.size, file.bytes
        )));
    }
    match (&file.etag, &head.etag) {
        (Some(recorded), Some(found)) if recorded != found => Err(damaged(format!(
            "it was written again after phase 1 (entity tag {found}, the manifest records {recorded})"
        ))),
        _ => Ok(()),
    }
}
