//! The history of runs in the staging area: which runs exist, when they were planned, which were
//! swapped in. Used by `status` (latest run), `gc` (what may go) and `replace` (the swap record).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::plan::{PlanError, RunPlan};
use super::Staging;
use crate::storage::StoreError;

/// Written by `replace` after its transaction committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwapRecord {
    pub run_id: String,
    pub target: String,
    #[serde(with = "super::rfc3339")]
    pub swapped_at: DateTime<Utc>,
}

/// One run found under `<prefix>/runs/`.
#[derive(Debug, Clone)]
pub struct RunEntry {
    pub run_id: String,
    /// `None` when the run's folder has no readable plan (an interrupted first phase).
    pub plan: Option<RunPlan>,
    pub swap: Option<SwapRecord>,
}

impl RunEntry {
    /// When the run was planned; `None` when unknown, which sorts first.
    pub fn created_at(&self) -> Option<DateTime<Utc>> {
        self.plan.as_ref().map(|p| p.created_at)
    }
}

/// Every run, oldest first (by plan time, then id).
pub async fn list_runs(staging: &Staging) -> Result<Vec<RunEntry>, StoreError> {
    let mut out = Vec::new();
    for run_id in staging.store.list_dirs(&staging.layout.runs()).await? {
        let plan = match RunPlan::load(staging, &run_id).await {
            Ok(p) => p,
            Err(PlanError::Store(e)) => return Err(e),
            Err(e) => {
                tracing::warn!(run_id, error = %e, "run plan unreadable");
                None
            }
        };
        let swap = swap_record(staging, &run_id).await?;
        out.push(RunEntry { run_id, plan, swap });
    }
    out.sort_by(|a, b| (a.created_at(), &a.run_id).cmp(&(b.created_at(), &b.run_id)));
    Ok(out)
}

/// The most recently planned full copy (increments are named by their own run id).
pub async fn latest_run(staging: &Staging) -> Result<Option<String>, StoreError> {
    Ok(list_runs(staging)
        .await?
        .into_iter()
        .rev()
        .find(|r| r.plan.as_ref().is_some_and(|p| p.increment.is_none()))
        .map(|r| r.run_id))
}

/// The swap record of a run, if `replace` wrote one (an unreadable one counts as none).
pub async fn swap_record(
    staging: &Staging,
    run_id: &str,
) -> Result<Option<SwapRecord>, StoreError> {
    Ok(
        match staging
            .store
            .get(&staging.layout.run_swap_record(run_id))
            .await?
        {
            Some(bytes) => serde_json::from_slice(&bytes).ok(),
            None => None,
        },
    )
}

/// Records that `run_id` was swapped into `target` (written after the swap committed).
pub async fn record_swap(staging: &Staging, run_id: &str, target: &str) -> Result<(), StoreError> {
    let record = SwapRecord {
        run_id: run_id.to_string(),
        target: target.to_string(),
        swapped_at: Utc::now(),
    };
    staging
        .store
        .put(
            &staging.layout.run_swap_record(run_id),
            serde_json::to_string_pretty(&record)
                .expect("record serialises")
                .into(),
            "application/json",
        )
        .await
}
