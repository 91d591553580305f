//! Garbage collection of the staging area: the parts, manifests and plans of runs older than the
//! last N successful (swapped-in) runs. Never a run planned after the oldest kept successful run
//! (it may still be in progress), never a run without a readable plan. Schema cache snapshots are
//! pruned separately and conservatively: a snapshot stays while it is its table's active one, one
//! of its table's newest K, or pinned by a run that stays.

use std::collections::{BTreeMap, BTreeSet};

use crate::staging::plan::RunPlan;
use crate::staging::runs::list_runs;
use crate::staging::schema_cache::{SnapshotCache, SNAPSHOT_MANIFEST};
use crate::staging::Staging;
use crate::storage::{abort_uploads, delete_prefix, StoreError};

/// One run and what `gc` decided about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcEntry {
    pub run_id: String,
    pub objects: usize,
    pub bytes: u64,
    /// Multipart uploads under the run that were never completed (a killed phase 1).
    pub open_uploads: usize,
    /// `None` when the run goes; otherwise why it stays.
    pub kept_because: Option<String>,
}

/// Decides what goes. Lists each doomed run's objects to report sizes.
pub async fn plan_gc(staging: &Staging, keep: usize) -> Result<Vec<GcEntry>, StoreError> {
    let runs = list_runs(staging).await?;
    let successful: Vec<_> = runs
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
        let (objects, bytes, open_uploads) = if kept_because.is_none() {
            let prefix = staging.layout.run(&run.run_id);
            let listed = staging.store.list(&prefix).await?;
            let uploads = staging.store.open_uploads(&prefix).await?;
            (
                listed.len(),
                listed.iter().map(|o| o.size).sum(),
                uploads.len(),
            )
        } else {
            (0, 0, 0)
        };
        out.push(GcEntry {
            run_id: run.run_id.clone(),
            objects,
            bytes,
            open_uploads,
            kept_because,
        });
    }
    Ok(out)
}

/// Deletes the runs `plan_gc` marked; each run's plan goes last, so an interrupted gc is finished
/// by the next one.
pub async fn apply(staging: &Staging, entries: &[GcEntry]) -> Result<usize, StoreError> {
    let store = &staging.store;
    let mut deleted = 0;
    for entry in entries.iter().filter(|e| e.kept_because.is_none()) {
        let aborted = abort_uploads(store.as_ref(), &staging.layout.run(&entry.run_id)).await?;
        let plan_key = staging.layout.run_plan(&entry.run_id);
        let keys: Vec<String> = store
            .list(&staging.layout.run(&entry.run_id))
            .await?
            .into_iter()
            .map(|o| o.key)
            .filter(|k| *k != plan_key)
            .collect();
        store.delete_keys(&keys).await?;
        store.delete_keys(std::slice::from_ref(&plan_key)).await?;
        deleted += keys.len() + 1;
        tracing::info!(run_id = %entry.run_id, objects = keys.len() + 1, aborted_uploads = aborted,
            "run deleted from the staging area");
    }
    Ok(deleted)
}

/// One schema cache snapshot and what `gc` decided about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotEntry {
    pub snapshot_id: String,
    pub tables: Vec<String>,
    pub objects: usize,
    pub kept_because: Option<String>,
}

/// Decides which snapshots go, given the runs `plan_gc` keeps.
pub async fn plan_snapshot_gc(
    staging: &Staging,
    runs: &[GcEntry],
    keep_newest: usize,
) -> Result<Vec<SnapshotEntry>, StoreError> {
    let store = &staging.store;
    let root = staging.layout.schemas();
    // snapshot id → (source tables in it, object count)
    let mut folders: BTreeMap<String, (BTreeSet<String>, usize)> = BTreeMap::new();
    for object in store.list(&root).await? {
        let Some((id, inside)) = object.key[root.len()..].split_once('/') else {
            continue;
        };
        let entry = folders.entry(id.to_string()).or_default();
        entry.1 += 1;
        if let Some((table, _)) = inside.split_once('/') {
            entry.0.insert(table.to_string());
        }
    }
    // Pinned by a run that stays.
    let mut pinned = BTreeSet::new();
    for run in runs.iter().filter(|r| r.kept_because.is_some()) {
        if let Ok(Some(plan)) = RunPlan::load(staging, &run.run_id).await {
            if let Some(id) = plan.schema_source.snapshot_id() {
                pinned.insert(id.to_string());
            }
        }
    }
    let cache = SnapshotCache::new(staging.clone());
    let tables: BTreeSet<String> = folders
        .values()
        .flat_map(|(t, _)| t.iter().cloned())
        .collect();
    let mut keep: BTreeMap<String, String> = BTreeMap::new();
    for table in &tables {
        if let Some(active) = cache.active(table).await?.active {
            keep.entry(active.id)
                .or_insert(format!("it is the active snapshot of {table}"));
        }
        let mut ids: Vec<&String> = folders
            .iter()
            .filter(|(_, (t, _))| t.contains(table))
            .map(|(id, _)| id)
            .collect();
        ids.sort();
        for id in ids.iter().rev().take(keep_newest.max(1)) {
            keep.entry((*id).clone()).or_insert(format!(
                "it is one of the newest {} of {table}",
                keep_newest.max(1)
            ));
        }
    }
    Ok(folders
        .into_iter()
        .map(|(id, (tables, objects))| {
            let kept_because = keep.get(&id).cloned().or_else(|| {
                if pinned.contains(&id) {
                    Some("a run that stays pins it".to_string())
                } else if tables.is_empty() {
                    Some("it holds no data-schemas (left for an operator to inspect)".to_string())
                } else {
                    None
                }
            });
            SnapshotEntry {
                snapshot_id: id,
                tables: tables.into_iter().collect(),
                objects,
                kept_because,
            }
        })
        .collect())
}

/// Deletes the snapshots marked to go; each loses its manifest first, so a half-deleted snapshot
/// is never taken for a valid one.
pub async fn apply_snapshots(
    staging: &Staging,
    entries: &[SnapshotEntry],
) -> Result<usize, StoreError> {
    let mut deleted = 0;
    for entry in entries.iter().filter(|e| e.kept_because.is_none()) {
        let folder = staging.layout.schema_snapshot(&entry.snapshot_id);
        staging
            .store
            .delete_keys(&[format!("{folder}{SNAPSHOT_MANIFEST}")])
            .await?;
        deleted += delete_prefix(staging.store.as_ref(), &folder).await? + 1;
        tracing::info!(snapshot = %entry.snapshot_id, "schema snapshot deleted");
    }
    Ok(deleted)
}

/// What `gc` would delete, and why the rest stays; the command line prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcPlan {
    pub runs: Vec<GcEntry>,
    pub snapshots: Vec<SnapshotEntry>,
}

impl GcPlan {
    /// The runs that go.
    pub fn doomed_runs(&self) -> impl Iterator<Item = &GcEntry> {
        self.runs.iter().filter(|e| e.kept_because.is_none())
    }

    /// How many schema snapshots go.
    pub fn doomed_snapshots(&self) -> usize {
        self.snapshots
            .iter()
            .filter(|s| s.kept_because.is_none())
            .count()
    }
}

/// Decides what goes: runs older than the last `keep` successful ones, and schema snapshots no
/// kept run pins beyond each table's active and newest `keep_snapshots`.
pub async fn plan(
    staging: &Staging,
    keep: usize,
    keep_snapshots: usize,
) -> Result<GcPlan, StoreError> {
    let runs = plan_gc(staging, keep).await?;
    let snapshots = plan_snapshot_gc(staging, &runs, keep_snapshots).await?;
    Ok(GcPlan { runs, snapshots })
}

/// What `gc --apply` deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcDone {
    pub runs: usize,
    /// Objects deleted under those runs.
    pub run_objects: usize,
    /// Bytes of those runs, as listed before deleting.
    pub run_bytes: u64,
    pub snapshots: usize,
    /// Objects deleted under those snapshots.
    pub snapshot_objects: usize,
}

/// Deletes what `plan` marked.
pub async fn apply_plan(staging: &Staging, plan: &GcPlan) -> Result<GcDone, StoreError> {
    let run_objects = apply(staging, &plan.runs).await?;
    let snapshot_objects = apply_snapshots(staging, &plan.snapshots).await?;
    Ok(GcDone {
        runs: plan.doomed_runs().count(),
        run_objects,
        run_bytes: plan.doomed_runs().map(|e| e.bytes).sum(),
        snapshots: plan.doomed_snapshots(),
        snapshot_objects,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{DataSchema, FORMAT_VERSION};

    use crate::staging::runs::record_swap;
    use crate::staging::Layout;
    use crate::storage::memory::MemoryStore;
    use std::sync::Arc;

    /// A run planned at `hour` with one part, swapped in when `swapped`.
    async fn run(staging: &Staging, id: &str, hour: u32, swapped: bool) {
        let plan = RunPlan {
            schemas: vec![DataSchema {
                format: FORMAT_VERSION,
                source_table: "t".into(),
                table: "t".into(),
                rule: None,
                columns: vec![],
            }],
            created_at: format!("2026-12-01T{hour:02}:00:00Z").parse().unwrap(),
            ..crate::testkit::runs::plan(id)
        };
        plan.store_once(staging).await.unwrap();
        let part = staging.layout.segment(id, 0) + "t/part-00000.csv.zst";
        staging
            .store
            .put(&part, vec![0u8; 100].into(), "application/zstd")
            .await
            .unwrap();
        if swapped {
            record_swap(staging, id, "t").await.unwrap();
        }
    }

    fn staging() -> Staging {
        Staging::new(Arc::new(MemoryStore::new("b")), Layout::new("p"))
    }

    #[tokio::test]
    async fn old_runs_go_and_the_last_successful_and_newer_ones_stay() {
        let staging = staging();
        run(&staging, "r1", 1, true).await;
        run(&staging, "r2", 2, false).await;
        run(&staging, "r3", 3, true).await;
        run(&staging, "r4", 4, true).await;
        run(&staging, "r5", 5, false).await;
        // r1 was killed while uploading: its unfinished upload goes with it.
        let orphan = staging
            .store
            .create_multipart(
                "p/runs/r1/segments/0/t/part-00001.csv.zst",
                "application/zstd",
            )
            .await
            .unwrap();
        // A folder without a plan (an interrupted first phase) is never touched.
        staging
            .store
            .put("p/runs/orphan/segments/0/x", "x".into(), "t")
            .await
            .unwrap();
        let plan = plan(&staging, 2, 5).await.unwrap();
        let decided: Vec<(&str, bool)> = plan
            .runs
            .iter()
            .map(|e| (e.run_id.as_str(), e.kept_because.is_none()))
            .collect();
        assert_eq!(
            decided,
            [
                ("orphan", false),
                ("r1", true),
                ("r2", true),
                ("r3", false),
                ("r4", false),
                ("r5", false)
            ]
        );
        let r1 = &plan.runs[1];
        assert_eq!(
            (r1.objects, r1.bytes > 100, r1.open_uploads),
            (3, true, 1),
            "{r1:?}"
        );
        assert_eq!(plan.doomed_runs().map(|e| e.open_uploads).sum::<usize>(), 1);
        assert_eq!(plan.doomed_runs().count(), 2);
        // The dry run deleted nothing; applying deletes exactly the two runs.
        assert!(RunPlan::load(&staging, "r1").await.unwrap().is_some());
        let done = apply_plan(&staging, &plan).await.unwrap();
        assert_eq!(done.runs, 2, "{done:?}");
        for (id, gone) in [("r1", true), ("r2", true), ("r3", false), ("r5", false)] {
            let left = staging.store.list(&staging.layout.run(id)).await.unwrap();
            assert_eq!(left.is_empty(), gone, "{id}: {left:?}");
        }
        assert!(!staging
            .store
            .list("p/runs/orphan/")
            .await
            .unwrap()
            .is_empty());
        let left = staging.store.open_uploads("p/runs/").await.unwrap();
        assert!(left.iter().all(|u| u.upload_id != orphan), "{left:?}");
    }

    #[tokio::test]
    async fn with_no_more_successful_runs_than_kept_nothing_goes() {
        let staging = staging();
        run(&staging, "r1", 1, true).await;
        run(&staging, "r2", 2, false).await;
        let plan = plan(&staging, 3, 5).await.unwrap();
        assert!(
            plan.runs.iter().all(|e| e.kept_because.is_some()),
            "{plan:?}"
        );
    }
}
