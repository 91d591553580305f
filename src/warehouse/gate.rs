//! Phase 4's gate, as decisions over what the staging area and the warehouse hold, read by each
//! dialect inside its swap transaction:
//!
//! - the served generation only moves forward: a run already served or kept as previous is
//!   never swapped in again, nor a run planned before the one the target serves (unless asked
//!   for on purpose; `rollback` is the normal way back);
//! - stale, never incomplete: staging is prepared for the run, every segment has a usable
//!   manifest and a completed ledger row, and every staged table holds exactly the rows its
//!   manifests add up to.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::{PlannedAt, RunMarker};
use crate::error::{Class, Classify};
use crate::staging::commands::Step;
use crate::staging::manifest::Committed;
use crate::staging::plan::RunPlan;
use crate::staging::rfc3339;

/// Why `replace` refused, with the steps that fix it. Incomplete work ([`Class::Retry`]): once
/// the steps ran, the same `replace` succeeds. A refusal of the forward rule is
/// [`Class::Fatal`]: nothing but a decision of the operator changes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateRefusal {
    pub problems: Vec<String>,
    pub steps: Vec<Step>,
    pub class: Class,
}

impl fmt::Display for GateRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problems.join("; "))
    }
}

impl std::error::Error for GateRefusal {}

impl Classify for GateRefusal {
    fn class(&self) -> Class {
        self.class
    }
}

/// Whether `plan`'s run may replace what the target serves. A run the target serves already is
/// not a refusal but nothing to do; the caller decides what that means for it.
pub fn check_forward(
    plan: &RunPlan,
    target: &str,
    serving: Option<&RunMarker>,
    previous: Option<&RunMarker>,
    allow_older: bool,
) -> Option<GateRefusal> {
    let refuse = |problem: String| GateRefusal {
        problems: vec![problem],
        steps: vec![],
        class: Class::Fatal,
    };
    if previous.is_some_and(|p| p.run_id == plan.run_id) {
        return Some(refuse(format!(
            "run {} is the generation {target}_previous keeps for rollback; swapping it in again would replace the newer run {} and lose the rollback generation. To serve it again, run `dynamo-etl rollback --target {target}`",
            plan.run_id,
            serving.map_or("(none)", |s| s.run_id.as_str())
        )));
    }
    let served = serving?;
    if allow_older {
        return None;
    }
    let ours = rfc3339::text(&plan.created_at);
    match &served.planned_at {
        // A generation from before markers recorded the time: nothing to compare with.
        PlannedAt::Unrecorded => None,
        PlannedAt::At(theirs) if plan.created_at < *theirs => Some(refuse(format!(
            "run {} was planned at {ours}, before run {} that {target} serves (planned at {}); an older generation never replaces a newer one unless asked: pass --allow-older to serve it on purpose, or use rollback to go back one generation",
            plan.run_id, served.run_id, rfc3339::text(theirs)
        ))),
        PlannedAt::At(_) => None,
        // Recorded but unreadable: the served run may be the newer one, so the gate does not
        // guess in favour of replacing it.
        PlannedAt::Unreadable(text) => Some(refuse(format!(
            "the run marker of {target} (run {}) records its planning time as {text:?}, which cannot be read as a time, so whether run {} (planned at {ours}) is newer cannot be told; an older generation never replaces a newer one unless asked: pass --allow-older to serve it on purpose, or use rollback to go back one generation",
            served.run_id, plan.run_id
        ))),
    }
}

fn list(segments: &[u32]) -> String {
    segments
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first half of the gate: staging prepared for the run, every segment committed and
/// loaded. `prepared` is the run staging's marker names; `loaded` the completed ledger rows.
pub fn check_segments(
    plan: &RunPlan,
    manifests: &[Committed],
    prepared: Option<&str>,
    loaded: &BTreeSet<u32>,
) -> Option<GateRefusal> {
    let n = plan.total_segments;
    if prepared != Some(plan.run_id.as_str()) {
        let staging = match prepared {
            Some(other) => format!("prepared for run {other}"),
            None => "missing".into(),
        };
        return Some(GateRefusal {
            problems: vec![format!("the staging schema is {staging}")],
            steps: vec![Step::Prepare, Step::UploadEach { total_segments: n }],
            class: Class::Retry,
        });
    }
    let mut refusal = GateRefusal {
        problems: vec![],
        steps: vec![],
        class: Class::Retry,
    };
    let state = |k: u32| manifests.get(k as usize).unwrap_or(&Committed::Missing);
    let missing: Vec<u32> = (0..n)
        .filter(|k| matches!(state(*k), Committed::Missing))
        .collect();
    let unloaded: Vec<u32> = (0..n)
        .filter(|k| !loaded.contains(k) && matches!(state(*k), Committed::Manifest(_)))
        .collect();
    if !missing.is_empty() {
        refusal.problems.push(format!(
            "segments {} of {n} have no phase-1 manifest",
            list(&missing)
        ));
    }
    for k in 0..n {
        if let Committed::Damaged(problem) = state(k) {
            // Reading it again gives the same bytes: only phase 1 again fixes it.
            refusal.problems.push(problem.clone());
            refusal.class = Class::Fatal;
        }
        if !matches!(state(k), Committed::Manifest(_)) {
            refusal.steps.push(Step::RetryPhase1 {
                total_segments: n,
                segment: k,
            });
            refusal.steps.push(Step::RetryPhase3 { segment: k });
        }
    }
    if !unloaded.is_empty() {
        refusal.problems.push(format!(
            "segments {} of {n} are not loaded",
            list(&unloaded)
        ));
        for k in &unloaded {
            refusal.steps.push(Step::RetryPhase3 { segment: *k });
        }
    }
    (!refusal.problems.is_empty()).then_some(refusal)
}

/// The second half: every staged table's rows equal the sum of its manifests.
pub fn check_counts(
    plan: &RunPlan,
    staging: &str,
    manifests: &[Committed],
    counted: &BTreeMap<String, u64>,
) -> Option<GateRefusal> {
    let mut problems = Vec::new();
    for table in plan.warehouse_tables() {
        let expected: u64 = manifests
            .iter()
            .filter_map(Committed::manifest)
            .map(|m| m.tables.get(&table.table).map_or(0, |t| t.rows))
            .sum();
        let actual = counted.get(&table.table).copied().unwrap_or(u64::MAX);
        if actual != expected {
            problems.push(format!(
                "table {staging}.{} has {actual} rows but the manifests add up to {expected}",
                table.table
            ));
        }
    }
    (!problems.is_empty()).then(|| GateRefusal {
        problems,
        steps: vec![
            Step::Prepare,
            Step::UploadEach {
                total_segments: plan.total_segments,
            },
        ],
        class: Class::Retry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::staging::manifest::SegmentManifest;
    use crate::testkit::runs;

    fn plan(n: u32) -> RunPlan {
        RunPlan {
            total_segments: n,
            ..runs::plan("r1")
        }
    }

    fn manifest(segment: u32, rows: u64) -> Committed {
        Committed::Manifest(Box::new(SegmentManifest {
            tables: runs::rows_of("_unclassified", rows),
            items_scanned: rows,
            ..runs::manifest(&plan(3), segment)
        }))
    }

    #[test]
    fn a_complete_run_passes() {
        let p = plan(3);
        let m = vec![manifest(0, 2), manifest(1, 3), manifest(2, 0)];
        let loaded: BTreeSet<u32> = [0, 1, 2].into();
        assert_eq!(check_segments(&p, &m, Some("r1"), &loaded), None);
        let counted = BTreeMap::from([
            ("_unclassified".to_string(), 5),
            ("_overflow".to_string(), 0),
        ]);
        assert_eq!(check_counts(&p, "s", &m, &counted), None);
    }

    #[test]
    fn staging_of_another_run_is_refused_with_prepare() {
        let p = plan(2);
        let r = check_segments(&p, &[], Some("r0"), &BTreeSet::new()).unwrap();
        assert!(r.problems[0].contains("prepared for run r0"), "{r}");
        assert_eq!(r.steps[0], Step::Prepare);
        let r = check_segments(&p, &[], None, &BTreeSet::new()).unwrap();
        assert!(r.problems[0].contains("missing"), "{r}");
    }

    #[test]
    fn missing_damaged_and_unloaded_segments_are_each_named_with_their_retry() {
        let p = plan(4);
        let m = vec![
            manifest(0, 1),
            Committed::Missing,
            Committed::Damaged("the manifest of segment 2 is not valid".into()),
            manifest(3, 1),
        ];
        let loaded: BTreeSet<u32> = [0].into();
        let r = check_segments(&p, &m, Some("r1"), &loaded).unwrap();
        assert!(
            r.problems
                .iter()
                .any(|x| x.contains("segments 1 of 4 have no phase-1 manifest")),
            "{r}"
        );
        assert!(
            r.problems
                .iter()
                .any(|x| x.contains("segment 2 is not valid")),
            "{r}"
        );
        assert!(
            r.problems
                .iter()
                .any(|x| x.contains("segments 3 of 4 are not loaded")),
            "{r}"
        );
        assert_eq!(
            r.steps,
            [
                Step::RetryPhase1 {
                    total_segments: 4,
                    segment: 1
                },
                Step::RetryPhase3 { segment: 1 },
                Step::RetryPhase1 {
                    total_segments: 4,
                    segment: 2
                },
                Step::RetryPhase3 { segment: 2 },
                Step::RetryPhase3 { segment: 3 },
            ]
        );
    }

    fn marker(run_id: &str, planned_at: Option<&str>) -> RunMarker {
        RunMarker {
            run_id: run_id.into(),
            planned_at: PlannedAt::from_column(planned_at),
        }
    }

    #[test]
    fn the_served_generation_only_moves_forward() {
        let mut p = plan(1);
        p.created_at = "2026-12-01T10:00:00+00:00".parse().unwrap();
        let newer = marker("r2", Some("2026-12-01T11:00:00+00:00"));
        let older = marker("r0", Some("2026-12-01T09:00:00+00:00"));
        // Newer than what is served: may go.
        assert_eq!(check_forward(&p, "t", Some(&older), None, false), None);
        // Older: refused unless asked for, and the refusal is not a retry.
        let r = check_forward(&p, "t", Some(&newer), Some(&older), false).unwrap();
        assert_eq!(r.class, Class::Fatal);
        assert!(r.problems[0].contains("before run r2 that t serves"), "{r}");
        assert!(r.problems[0].contains("--allow-older"), "{r}");
        assert_eq!(check_forward(&p, "t", Some(&newer), None, true), None);
        // Kept as previous: never, not even when asked for.
        let kept = marker("r1", Some("2026-12-01T10:00:00+00:00"));
        let r = check_forward(&p, "t", Some(&newer), Some(&kept), true).unwrap();
        assert!(r.problems[0].contains("rollback --target t"), "{r}");
        // A generation from before markers recorded the plan's time cannot be compared.
        assert_eq!(
            check_forward(&p, "t", Some(&marker("r9", None)), None, false),
            None
        );
    }

    /// A served generation whose planning time cannot be read may be newer than the run: the
    /// gate refuses (as it does for an older run) rather than let it through unchecked.
    #[test]
    fn a_served_time_that_cannot_be_read_is_refused() {
        let mut p = plan(1);
        p.created_at = "2026-12-01T10:00:00+00:00".parse().unwrap();
        for unreadable in ["", "yesterday", "2026-13-01T10:00:00+00:00"] {
            let served = marker("r2", Some(unreadable));
            let r = check_forward(&p, "t", Some(&served), None, false)
                .unwrap_or_else(|| panic!("{unreadable:?} let run r1 through"));
            assert_eq!(r.class, Class::Fatal);
            assert!(r.problems[0].contains("cannot be read"), "{r}");
            assert!(r.problems[0].contains("--allow-older"), "{r}");
            // Asked for on purpose, it goes.
            assert_eq!(check_forward(&p, "t", Some(&served), None, true), None);
        }
    }

    #[test]
    fn counts_that_differ_from_the_manifests_are_refused() {
        let p = plan(2);
        let m = vec![manifest(0, 2), manifest(1, 3)];
        let counted = BTreeMap::from([("_unclassified".to_string(), 4)]);
        let r = check_counts(&p, "t_staging", &m, &counted).unwrap();
        assert!(
            r.problems[0]
                .contains("t_staging._unclassified has 4 rows but the manifests add up to 5"),
            "{r}"
        );
    }
}
