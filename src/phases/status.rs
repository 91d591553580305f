//! Where a run stands, segment by segment and for the swap, and for every gap the exact command
//! that closes it. Reads the staging area and, when a warehouse is configured, its ledgers.

use std::collections::BTreeSet;

use crate::phases::load::prepared_run;
use crate::stage::manifest::SegmentManifest;
use crate::stage::plan::RunPlan;
use crate::stage::store::ObjectStore;
use crate::stage::Layout;
use crate::warehouse::{
    connect, qualified, query_strings, schema_exists, Dialect, WarehouseConfig, WarehouseError,
    LEDGER_TABLE,
};

/// One segment's state across phases 1 and 3.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentState {
    pub segment: u32,
    /// Phase 1 committed: items scanned, rows written, items rejected, duration.
    pub committed: Option<(u64, u64, usize, u64)>,
    /// Phase 3 committed; `None` when the warehouse was not consulted.
    pub loaded: Option<bool>,
}

/// Where the run's data is in the warehouse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwapState {
    /// The target serves this run.
    Serving,
    /// A newer run replaced it; it is kept in `<target>_previous` or already gone.
    Replaced,
    /// Staging holds this run; not swapped in yet.
    Staged,
    /// Staging is missing or holds another run.
    NotPrepared,
    /// No warehouse given; the swap record in the staging area says whether it was swapped.
    Unknown { swapped: bool },
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunStatus {
    pub run_id: String,
    pub source_table: String,
    pub total_segments: u32,
    pub segments: Vec<SegmentState>,
    pub swap: SwapState,
    /// (what is wrong, the command that fixes it)
    pub gaps: Vec<(String, String)>,
    pub rejected_items: usize,
}

impl RunStatus {
    pub fn is_complete(&self) -> bool {
        self.gaps.is_empty()
    }

    pub fn render(&self) -> String {
        let mut out = format!(
            "run {} (table {}, {} segments)\n",
            self.run_id, self.source_table, self.total_segments
        );
        out.push_str(&format!(
            "  {:>7}  {:<52}  {}\n",
            "segment", "phase 1 (scan → commit)", "phase 3 (load)"
        ));
        for s in &self.segments {
            let p1 = match s.committed {
                Some((items, rows, rejected, ms)) => {
                    format!("committed: {items} items, {rows} rows, {rejected} rejected, {ms} ms")
                }
                None => "missing".to_string(),
            };
            let p3 = match s.loaded {
                Some(true) => "loaded",
                Some(false) => "not loaded",
                None => "unknown (no --warehouse-url)",
            };
            out.push_str(&format!("  {:>7}  {p1:<52}  {p3}\n", s.segment));
        }
        let swap = match &self.swap {
            SwapState::Serving => "swapped in: the target serves this run".to_string(),
            SwapState::Replaced => "swapped in earlier, since replaced by a newer run".to_string(),
            SwapState::Staged => "staged, not swapped in yet".to_string(),
            SwapState::NotPrepared => "staging not prepared for this run".to_string(),
            SwapState::Unknown { swapped } => format!(
                "{} (warehouse not consulted)",
                if *swapped {
                    "swap recorded"
                } else {
                    "no swap recorded"
                }
            ),
        };
        out.push_str(&format!("  swap: {swap}\n"));
        if self.rejected_items > 0 {
            out.push_str(&format!(
                "  note: {} items were rejected and are listed by key in the manifests (see `dynamo-etl drift --run-id {}`)\n",
                self.rejected_items, self.run_id
            ));
        }
        if self.gaps.is_empty() {
            out.push_str("  nothing to do\n");
        } else {
            out.push_str("  to do:\n");
            for (what, command) in &self.gaps {
                out.push_str(&format!("    {what}:\n      {command}\n"));
            }
        }
        out
    }
}

/// Gathers the status of `plan`'s run.
pub async fn run_status(
    store: &ObjectStore,
    layout: &Layout,
    plan: &RunPlan,
    warehouse: Option<(&dyn Dialect, &WarehouseConfig)>,
) -> Result<RunStatus, WarehouseError> {
    let run_id = &plan.run_id;
    let n = plan.total_segments;
    let mut manifests: Vec<Option<SegmentManifest>> = Vec::new();
    for k in 0..n {
        let key = layout.segment_manifest(run_id, k);
        manifests.push(match store.get(&key).await? {
            Some(b) => Some(SegmentManifest::from_json(&b, &key).map_err(WarehouseError::Refused)?),
            None => None,
        });
    }
    let swapped_record = store.get(&layout.run_swap_record(run_id)).await?.is_some();
    let (swap, loaded): (SwapState, Option<BTreeSet<u32>>) = match warehouse {
        None => (
            SwapState::Unknown {
                swapped: swapped_record,
            },
            None,
        ),
        Some((dialect, config)) => {
            let mut conn = connect(config, dialect).await?;
            let staging = config.staging();
            if prepared_run(&mut conn, &config.target).await?.as_deref() == Some(run_id.as_str()) {
                (SwapState::Serving, Some((0..n).collect()))
            } else if prepared_run(&mut conn, &staging).await?.as_deref() == Some(run_id.as_str()) {
                let rows = query_strings(
                    &mut conn,
                    &format!(
                        "SELECT segment::varchar FROM {} WHERE row_count >= 0",
                        qualified(&staging, LEDGER_TABLE)
                    ),
                    "reading the ledger",
                )
                .await?;
                let set = rows
                    .iter()
                    .filter_map(|r| r.first().cloned().flatten())
                    .filter_map(|s| s.trim().parse().ok())
                    .collect();
                (SwapState::Staged, Some(set))
            } else if swapped_record
                || (schema_exists(&mut conn, &config.previous()).await?
                    && prepared_run(&mut conn, &config.previous())
                        .await?
                        .as_deref()
                        == Some(run_id.as_str()))
            {
                (SwapState::Replaced, Some((0..n).collect()))
            } else {
                (SwapState::NotPrepared, Some(BTreeSet::new()))
            }
        }
    };
    let mut gaps = Vec::new();
    let mut segments = Vec::new();
    let mut rejected_items = 0;
    for (k, m) in manifests.iter().enumerate() {
        let k = k as u32;
        rejected_items += m.as_ref().map_or(0, |m| m.items_rejected.len());
        let is_loaded = loaded.as_ref().map(|set| set.contains(&k));
        if m.is_none() {
            gaps.push((
                format!("segment {k}: phase 1 has not committed"),
                format!("dynamo-etl retry phase-1 {n} {k} --run-id {run_id}"),
            ));
        }
        if swap == SwapState::Staged && is_loaded == Some(false) {
            gaps.push((
                format!("segment {k}: not loaded into staging"),
                format!("dynamo-etl retry phase-3 {k} --run-id {run_id}"),
            ));
        }
        segments.push(SegmentState {
            segment: k,
            committed: m.as_ref().map(|m| {
                (
                    m.items_scanned,
                    m.rows(),
                    m.items_rejected.len(),
                    m.duration_ms,
                )
            }),
            loaded: is_loaded,
        });
    }
    match swap {
        SwapState::NotPrepared => {
            gaps.push((
                "staging is not prepared for this run".into(),
                format!("dynamo-etl prepare --run-id {run_id}"),
            ));
            gaps.push((
                "then every segment must be loaded".into(),
                format!(
                    "dynamo-etl upload --run-id {run_id} --segment <k>   (k = 0..{})",
                    n - 1
                ),
            ));
            gaps.push((
                "then swap it in".into(),
                format!("dynamo-etl replace --run-id {run_id}"),
            ));
        }
        SwapState::Staged => gaps.push((
            "the run is not swapped in".into(),
            format!("dynamo-etl replace --run-id {run_id}"),
        )),
        SwapState::Unknown { swapped: false } => gaps.push((
            "no swap recorded (pass --warehouse-url for the warehouse's view)".into(),
            format!("dynamo-etl replace --run-id {run_id}"),
        )),
        _ => {}
    }
    Ok(RunStatus {
        run_id: run_id.clone(),
        source_table: plan.source_table.clone(),
        total_segments: n,
        segments,
        swap,
        gaps,
        rejected_items,
    })
}
