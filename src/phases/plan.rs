//! Planning a run: pick its id, read the source table's key, pin its data-schemas, and store
//! `run.json` once (DESIGN.md invariant 4). Every later phase of the run reads that plan.

use crate::retry::RetryPolicy;
use crate::schema::SchemaSet;
use crate::source::{key_attributes, ScanError};
use crate::stage::plan::{PlanError, RunPlan, PLAN_FORMAT};
use crate::stage::store::ObjectStore;
use crate::stage::{check_run_id, Layout};

/// The run id: the given one, else one derived from `AWS_BATCH_JOB_ID` (so all jobs of a Batch
/// execution agree), else today's UTC date (so a nightly run that is restarted the same day
/// resumes the same run).
pub fn derive_run_id(given: Option<&str>) -> String {
    if let Some(id) = given {
        return id.to_string();
    }
    if let Ok(job) = std::env::var("AWS_BATCH_JOB_ID") {
        // Array children carry `<uuid>:<index>`; the run is the parent's.
        let parent = job.split(':').next().unwrap_or_default();
        if !parent.is_empty() {
            return format!("batch-{parent}");
        }
    }
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum PlanningError {
    #[error("{0}")]
    BadRunId(String),
    #[error(transparent)]
    Table(#[from] ScanError),
    #[error(transparent)]
    Plan(#[from] PlanError),
}

impl PlanningError {
    pub fn is_retriable(&self) -> bool {
        match self {
            PlanningError::Table(e) => e.is_retriable(),
            PlanningError::Plan(PlanError::Store(e)) => e.is_retriable(),
            _ => false,
        }
    }
}

/// Pins a run, or returns the existing plan when the run was already planned the same way.
#[allow(clippy::too_many_arguments)]
pub async fn plan_run(
    dynamodb: &aws_sdk_dynamodb::Client,
    store: &ObjectStore,
    layout: &Layout,
    retry: &RetryPolicy,
    run_id: &str,
    table: &str,
    total_segments: u32,
    schemas: SchemaSet,
    schema_source: String,
) -> Result<RunPlan, PlanningError> {
    check_run_id(run_id).map_err(PlanningError::BadRunId)?;
    let keys = key_attributes(dynamodb, table, retry).await?;
    let plan = RunPlan {
        format: PLAN_FORMAT,
        run_id: run_id.to_string(),
        source_table: table.to_string(),
        total_segments,
        key_attributes: keys,
        schema_source,
        schemas: schemas.schemas,
        created_at: chrono::Utc::now().to_rfc3339(),
    };
    Ok(plan.store_once(store, layout).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_come_from_the_flag_then_batch_then_the_date() {
        assert_eq!(derive_run_id(Some("given")), "given");
        // SAFETY of the env change: this is the only test touching AWS_BATCH_JOB_ID.
        unsafe { std::env::set_var("AWS_BATCH_JOB_ID", "4c7e-11aa:3") };
        assert_eq!(derive_run_id(None), "batch-4c7e-11aa");
        unsafe { std::env::remove_var("AWS_BATCH_JOB_ID") };
        let today = derive_run_id(None);
        assert_eq!(today.len(), 10);
        assert!(check_run_id(&today).is_ok());
    }
}
