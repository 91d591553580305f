//! Where a run stands, segment by segment and for the swap, and for every gap the exact command
//! that closes it. [`gather`] reads the staging area (and the warehouse, when one is given);
//! [`decide`] turns what was read into the status.

use std::collections::{BTreeMap, BTreeSet};

use super::Context;
use crate::error::Error;
use crate::staging::checkpoint::{self, Found};
use crate::staging::commands::{Runbook, Step};
use crate::staging::manifest::{self, Committed};
use crate::staging::plan::RunPlan;
use crate::staging::runs::{latest_run, swap_record};
use crate::warehouse::fingerprint::ProvenColumns;
use crate::warehouse::{Warehouse, WarehouseState};

/// What phase 1 committed for one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedSegment {
    pub items_scanned: u64,
    pub rows: u64,
    pub rejected: usize,
    pub duration_ms: u64,
}

/// One segment's state in phase 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase1 {
    Committed(CommittedSegment),
    Missing,
    /// A manifest is there but cannot be used.
    Damaged(String),
}

/// One segment's state across phases 1 and 3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentState {
    pub segment: u32,
    pub phase1: Phase1,
    /// Phase 3 committed; `None` when the warehouse was not consulted.
    pub loaded: Option<bool>,
    /// A segment phase 1 has not committed whose retry would resume from a checkpoint.
    pub checkpoint: Option<Resumable>,
}

/// What a usable checkpoint of an uncommitted segment holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumable {
    pub items: u64,
    pub saved_at: String,
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
    /// An increment run: whether the target has applied it (`None`: warehouse not consulted).
    Increment {
        window: String,
        applied: Option<bool>,
    },
}

/// Something left to do, and the command that does it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub what: String,
    pub command: String,
}

/// Where a run stands; the command line prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStatus {
    pub run_id: String,
    pub source_table: String,
    pub total_segments: u32,
    pub segments: Vec<SegmentState>,
    pub swap: SwapState,
    pub gaps: Vec<Gap>,
    pub rejected_items: usize,
    /// For a run the target serves: what its swap proved, as the target keeps it.
    pub proof: Option<ServedProof>,
}

/// What a served run's swap proved, as the target keeps it (`_dynamo_etl_fingerprints`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServedProof {
    /// Per table, the columns proven equal to what phase 1 wrote, and those only counted.
    Kept(BTreeMap<String, ProvenColumns>),
    /// Swapped with `--skip-verify`, or from parts without fingerprints: counts only.
    NotKept,
}

impl RunStatus {
    pub fn is_complete(&self) -> bool {
        self.gaps.is_empty()
    }
}

/// What the warehouse says of this run.
fn swap_state(
    run_id: &str,
    n: u32,
    swap_recorded: bool,
    warehouse: Option<&WarehouseState>,
) -> (SwapState, Option<BTreeSet<u32>>) {
    let Some(w) = warehouse else {
        return (
            SwapState::Unknown {
                swapped: swap_recorded,
            },
            None,
        );
    };
    if w.serving.as_ref().is_some_and(|m| m.run_id == run_id) {
        return (SwapState::Serving, Some((0..n).collect()));
    }
    if let Some(staged) = w.staged.as_ref().filter(|s| s.run_id == run_id) {
        return (SwapState::Staged, Some(staged.loaded.clone()));
    }
    if swap_recorded || w.previous.as_ref().is_some_and(|m| m.run_id == run_id) {
        return (SwapState::Replaced, Some((0..n).collect()));
    }
    (SwapState::NotPrepared, Some(BTreeSet::new()))
}

/// The status of `plan`'s run from what was read.
pub fn decide(
    plan: &RunPlan,
    manifests: &[Committed],
    swap_recorded: bool,
    warehouse: Option<&WarehouseState>,
    runbook: &Runbook,
) -> RunStatus {
    let n = plan.total_segments;
    let (swap, loaded) = swap_state(&plan.run_id, n, swap_recorded, warehouse);
    let mut gaps = Vec::new();
    let mut gap = |what: String, step: Step| {
        gaps.push(Gap {
            what,
            command: runbook.command(step).to_string(),
        })
    };
    let mut segments = Vec::new();
    let mut rejected_items = 0;
    for k in 0..n {
        let state = manifests.get(k as usize).unwrap_or(&Committed::Missing);
        let is_loaded = loaded.as_ref().map(|set| set.contains(&k));
        let rescan = Step::RetryPhase1 {
            total_segments: n,
            segment: k,
        };
        let phase1 = match state {
            Committed::Manifest(m) => {
                rejected_items += m.items_rejected.len();
                Phase1::Committed(CommittedSegment {
                    items_scanned: m.items_scanned,
                    rows: m.rows(),
                    rejected: m.items_rejected.len(),
                    duration_ms: m.duration_ms,
                })
            }
            Committed::Missing => {
                gap(format!("segment {k}: phase 1 has not committed"), rescan);
                Phase1::Missing
            }
            Committed::Damaged(problem) => {
                gap(format!("segment {k}: {problem}"), rescan);
                Phase1::Damaged(problem.clone())
            }
        };
        if swap == SwapState::Staged && is_loaded == Some(false) {
            gap(
                format!("segment {k}: not loaded into staging"),
                Step::RetryPhase3 { segment: k },
            );
        }
        segments.push(SegmentState {
            segment: k,
            phase1,
            loaded: is_loaded,
            checkpoint: None,
        });
    }
    match swap {
        SwapState::NotPrepared => {
            gap("staging is not prepared for this run".into(), Step::Prepare);
            gap(
                "then every segment must be loaded".into(),
                Step::UploadEach { total_segments: n },
            );
            gap("then swap it in".into(), Step::Replace);
        }
        SwapState::Staged => gap("the run is not swapped in".into(), Step::Replace),
        SwapState::Unknown { swapped: false } => gap(
            "no swap recorded (pass --warehouse-url for the warehouse's view)".into(),
            Step::Replace,
        ),
        _ => {}
    }
    let proof = match (&swap, warehouse) {
        (SwapState::Serving, Some(w)) => Some(match &w.serving_proof {
            Some(kept) => ServedProof::Kept(kept.clone()),
            None => ServedProof::NotKept,
        }),
        _ => None,
    };
    RunStatus {
        run_id: plan.run_id.clone(),
        source_table: plan.source_table.clone(),
        total_segments: n,
        segments,
        swap,
        gaps,
        rejected_items,
        proof,
    }
}

/// The status of `run_id` (default: the most recently planned run). `open` gets the run's plan and
/// the target its swap record names, and opens the warehouse to consult, if any.
pub async fn status(
    ctx: &Context,
    run_id: Option<&str>,
    open: impl FnOnce(&RunPlan, Option<String>) -> Result<Option<Box<dyn Warehouse>>, Error>,
) -> Result<RunStatus, Error> {
    let staging = ctx.staging()?;
    let run_id = match run_id {
        Some(r) => r.to_string(),
        None => latest_run(staging).await?.ok_or_else(|| {
            Error::fatal(format!(
                "no runs under {}; start one with dynamo-etl run (or plan)",
                staging.url(&staging.layout.runs())
            ))
        })?,
    };
    let plan = RunPlan::require(staging, &run_id).await?;
    let recorded = swap_record(staging, &run_id).await?.map(|r| r.target);
    let warehouse = open(&plan, recorded)?;
    gather(ctx, &plan, warehouse.as_deref()).await
}

/// Reads what the status is decided on: the manifests, the swap record and, when a warehouse
/// is given, its state for the target.
pub async fn gather(
    ctx: &Context,
    plan: &RunPlan,
    warehouse: Option<&dyn Warehouse>,
) -> Result<RunStatus, Error> {
    let staging = ctx.staging()?;
    let manifests = manifest::read_all(staging, plan).await?;
    let swapped = swap_record(staging, &plan.run_id).await?.is_some();
    let state = match warehouse {
        Some(w) => Some(w.state().await?),
        None => None,
    };
    let target = warehouse.map(|w| w.config().target.as_str());
    let runbook = ctx.runbook(&plan.run_id, target);
    if let Some(spec) = &plan.increment {
        // An increment is never swapped: it is applied, by `increment`, which also stages it.
        let applied = match warehouse {
            Some(w) => Some(
                w.increments()
                    .await?
                    .iter()
                    .any(|a| a.run_id == plan.run_id),
            ),
            None => None,
        };
        let mut status = decide(plan, &manifests, true, None, &runbook);
        status.swap = SwapState::Increment {
            window: format!("{} to {} on run {}", spec.from, spec.to, spec.base_run),
            applied,
        };
        if applied != Some(true) {
            let export = plan
                .export
                .as_ref()
                .map(|e| format!(" --incremental-export-prefix {}", e.url()))
                .unwrap_or_default();
            let target = target.map(|t| format!(" --target {t}")).unwrap_or_default();
            status.gaps.push(Gap {
                what: match applied {
                    Some(_) => "the increment is not applied".to_string(),
                    None => {
                        "the increment may not be applied (pass --target for the warehouse's view)"
                            .to_string()
                    }
                },
                command: format!(
                    "dynamo-etl increment --table {}{export}{target}",
                    plan.source_table
                ),
            });
        }
        note_checkpoints(staging, plan, &runbook, &mut status).await?;
        return Ok(status);
    }
    let mut status = decide(plan, &manifests, swapped, state.as_ref(), &runbook);
    note_checkpoints(staging, plan, &runbook, &mut status).await?;
    Ok(status)
}

/// Says, for each segment phase 1 has not committed, whether its retry would resume from a
/// checkpoint (the same decision phase 1 takes), and how far that checkpoint got.
async fn note_checkpoints(
    staging: &crate::staging::Staging,
    plan: &RunPlan,
    runbook: &Runbook,
    status: &mut RunStatus,
) -> Result<(), Error> {
    for state in &mut status.segments {
        if state.phase1 != Phase1::Missing {
            continue;
        }
        let k = state.segment;
        let found = staging
            .store
            .list(&staging.layout.segment(&plan.run_id, k))
            .await?;
        let Found::Resume(c) = checkpoint::find(staging, plan, k, &found).await? else {
            continue;
        };
        let retry = runbook
            .command(Step::RetryPhase1 {
                total_segments: plan.total_segments,
                segment: k,
            })
            .to_string();
        for gap in status.gaps.iter_mut().filter(|g| g.command == retry) {
            gap.what.push_str(&format!(
                "; its retry goes on from a checkpoint of {} items",
                c.items_scanned
            ));
        }
        state.checkpoint = Some(Resumable {
            items: c.items_scanned,
            saved_at: crate::staging::rfc3339::text(&c.saved_at),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::staging::manifest::SegmentManifest;
    use crate::testkit::runs;
    use crate::warehouse::{RunMarker, Staged};

    fn plan() -> RunPlan {
        RunPlan {
            total_segments: 2,
            ..runs::plan("s")
        }
    }

    fn committed(segment: u32) -> Committed {
        Committed::Manifest(Box::new(SegmentManifest {
            pages: 0,
            duration_ms: 5,
            ..runs::manifest(&plan(), segment)
        }))
    }

    fn runbook() -> Runbook {
        Runbook {
            run_id: "s".into(),
            target: Some("w".into()),
            bucket: "b".into(),
            prefix: "dynamo-etl".into(),
        }
    }

    fn marker(run_id: &str) -> RunMarker {
        RunMarker {
            run_id: run_id.into(),
            planned_at: Default::default(),
        }
    }

    fn commands(status: &RunStatus) -> Vec<&str> {
        status.gaps.iter().map(|g| g.command.as_str()).collect()
    }

    #[test]
    fn each_kind_of_gap_names_its_command() {
        let p = plan();
        // Segment 1 missing, segment 0 damaged, nothing prepared.
        let s = decide(
            &p,
            &[Committed::Damaged("not valid".into()), Committed::Missing],
            false,
            Some(&WarehouseState::default()),
            &runbook(),
        );
        assert_eq!(s.swap, SwapState::NotPrepared);
        assert_eq!(
            commands(&s)[..3],
            [
                "dynamo-etl retry phase-1 2 0 --run-id s --bucket b",
                "dynamo-etl retry phase-1 2 1 --run-id s --bucket b",
                "dynamo-etl prepare --run-id s --target w --bucket b",
            ]
        );
        assert!(
            matches!(&s.segments[0].phase1, Phase1::Damaged(why) if why == "not valid"),
            "{s:?}"
        );
        // Staged with segment 0 loaded.
        let staged = WarehouseState {
            staged: Some(Staged {
                run_id: "s".into(),
                loaded: [0].into(),
            }),
            ..WarehouseState::default()
        };
        let s = decide(
            &p,
            &[committed(0), committed(1)],
            false,
            Some(&staged),
            &runbook(),
        );
        assert_eq!(
            commands(&s),
            [
                "dynamo-etl retry phase-3 1 --run-id s --target w --bucket b",
                "dynamo-etl replace --run-id s --target w --bucket b",
            ]
        );
        assert!(!s.is_complete());
    }

    #[test]
    fn a_served_or_replaced_run_has_nothing_to_do() {
        let p = plan();
        let all = [committed(0), committed(1)];
        let serving = WarehouseState {
            serving: Some(marker("s")),
            ..WarehouseState::default()
        };
        let s = decide(&p, &all, true, Some(&serving), &runbook());
        assert_eq!(s.swap, SwapState::Serving);
        assert!(s.is_complete() && s.gaps.is_empty(), "{s:?}");
        assert_eq!(s.proof, Some(ServedProof::NotKept));
        let proven = ProvenColumns {
            proven: vec!["pk".into()],
            count_only: vec!["tags".into()],
        };
        let kept = WarehouseState {
            serving_proof: Some([("org".to_string(), proven)].into()),
            ..serving.clone()
        };
        let s = decide(&p, &all, true, Some(&kept), &runbook());
        assert!(
            matches!(&s.proof, Some(ServedProof::Kept(t)) if t["org"].count_only == ["tags"]),
            "{s:?}"
        );
        let replaced = WarehouseState {
            serving: Some(marker("newer")),
            previous: Some(marker("s")),
            ..WarehouseState::default()
        };
        assert_eq!(
            decide(&p, &all, false, Some(&replaced), &runbook()).swap,
            SwapState::Replaced
        );
        // Without a warehouse the swap record decides.
        let s = decide(&p, &all, true, None, &runbook());
        assert_eq!(s.swap, SwapState::Unknown { swapped: true });
        assert!(s.is_complete());
        let s = decide(&p, &all, false, None, &runbook());
        assert_eq!(
            commands(&s),
            ["dynamo-etl replace --run-id s --target w --bucket b"]
        );
    }
}
