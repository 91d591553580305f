//! Garbage collection of the staging area: the parts, manifests and plans of runs older than the
//! last N successful (swapped-in) runs. Never a run planned after the oldest kept successful run
//! (it may still be in progress), never a run without a readable plan, and never anything under
//! `schemas/` (the schema cache, whose snapshots runs pin).

use crate::stage::runs::list_runs;
use crate::stage::store::{ObjectStore, StoreError};
use crate::stage::Layout;

/// One run and what `gc` decided about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcEntry {
    pub run_id: String,
    pub objects: usize,
    pub bytes: u64,
    /// `None` when the run goes; otherwise why it stays.
    pub kept_because: Option<String>,
}

/// Decides what goes. Lists each doomed run's objects to report sizes.
pub async fn plan_gc(
    store: &ObjectStore,
    layout: &Layout,
    keep: usize,
) -> Result<Vec<GcEntry>, StoreError> {
    let runs = list_runs(store, layout).await?;
    let successful: Vec<&str> = runs
        .iter()
        .filter(|r| r.swap.is_some() && r.plan.is_some())
        .map(|r| r.created_at())
        .collect();
    // Runs planned before the oldest of the last `keep` successful runs may go.
    let keep = keep.max(1);
    let cutoff = if successful.len() > keep {
        Some(successful[successful.len() - keep])
    } else {
        None
    };
    let mut out = Vec::new();
    for run in &runs {
        let kept_because = if run.plan.is_none() {
            Some("it has no readable plan (in progress, or delete it by hand)".to_string())
        } else {
            match cutoff {
                None => Some(format!("there are at most {keep} successful runs")),
                Some(c) if run.created_at() >= c => Some(if run.swap.is_some() {
                    "it is one of the runs to keep".to_string()
                } else {
                    "it is newer than the runs to keep (may be in progress)".to_string()
                }),
                Some(_) => None,
            }
        };
        let (objects, bytes) = if kept_because.is_none() {
            let listed = store.list(&layout.run(&run.run_id)).await?;
            (listed.len(), listed.iter().map(|o| o.size).sum())
        } else {
            (0, 0)
        };
        out.push(GcEntry {
            run_id: run.run_id.clone(),
            objects,
            bytes,
            kept_because,
        });
    }
    Ok(out)
}

/// Deletes the runs `plan_gc` marked; each run's plan goes last, so an interrupted gc is finished
/// by the next one.
pub async fn apply(
    store: &ObjectStore,
    layout: &Layout,
    entries: &[GcEntry],
) -> Result<usize, StoreError> {
    let mut deleted = 0;
    for entry in entries.iter().filter(|e| e.kept_because.is_none()) {
        let plan_key = layout.run_plan(&entry.run_id);
        let keys: Vec<String> = store
            .list(&layout.run(&entry.run_id))
            .await?
            .into_iter()
            .map(|o| o.key)
            .filter(|k| *k != plan_key)
            .collect();
        store.delete_keys(&keys).await?;
        store.delete_keys(std::slice::from_ref(&plan_key)).await?;
        deleted += keys.len() + 1;
        tracing::info!(run_id = %entry.run_id, objects = keys.len() + 1, "run deleted from the staging area");
    }
    Ok(deleted)
}
