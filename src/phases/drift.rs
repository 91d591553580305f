//! `drift`: what a run's data did not fit — attributes that went to `_extra` and items that went
//! to `_unclassified` — summed over the run's segment manifests, with a hint to evolve the
//! data-schemas. A report: segments without a manifest are listed, not treated as errors.

use super::Context;
use crate::error::Error;
use crate::schema::UNCLASSIFIED_TABLE;
use crate::staging::commands::Runbook;
use crate::staging::manifest::{self, Committed, DriftSum, SegmentManifest};
use crate::staging::plan::RunPlan;

/// Reads every manifest of `plan`'s run and sums what did not fit.
pub async fn drift(ctx: &Context, plan: &RunPlan) -> Result<DriftReport, Error> {
    let manifests = manifest::read_all(ctx.staging()?, plan)
        .await
        .map_err(|e| {
            Error::from(e).context(format!("cannot read the manifests of run {}", plan.run_id))
        })?;
    let mut report = DriftReport::new(plan, ctx.runbook(&plan.run_id, None));
    for (segment, state) in manifests.into_iter().enumerate() {
        match state {
            Committed::Manifest(m) => report.add(&m),
            Committed::Missing => report.missing.push(segment as u32),
            Committed::Damaged(problem) => report.unreadable.push((segment as u32, problem)),
        }
    }
    Ok(report)
}

/// Drift of a run, summed over the manifests read so far. The command line prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftReport {
    pub run_id: String,
    pub source_table: String,
    pub total_segments: u32,
    /// Segment manifests read.
    pub read: u32,
    pub items_scanned: u64,
    pub drift: DriftSum,
    /// Items that went to `_unclassified`.
    pub unclassified: u64,
    /// Segments without a manifest.
    pub missing: Vec<u32>,
    /// Segments whose manifest cannot be used, and why.
    pub unreadable: Vec<(u32, String)>,
    /// Names the commands that write a missing or damaged segment again.
    pub runbook: Runbook,
}

impl DriftReport {
    /// An empty report for `plan`'s run: no manifest read yet.
    pub fn new(plan: &RunPlan, runbook: Runbook) -> Self {
        DriftReport {
            run_id: plan.run_id.clone(),
            source_table: plan.source_table.clone(),
            total_segments: plan.total_segments,
            read: 0,
            items_scanned: 0,
            drift: DriftSum::default(),
            unclassified: 0,
            missing: Vec::new(),
            unreadable: Vec::new(),
            runbook,
        }
    }

    /// Adds one segment's manifest.
    pub fn add(&mut self, manifest: &SegmentManifest) {
        self.read += 1;
        self.items_scanned += manifest.items_scanned;
        self.unclassified += manifest
            .tables
            .get(UNCLASSIFIED_TABLE)
            .map_or(0, |t| t.rows);
        self.drift.add(&manifest.drift);
    }

    /// Whether anything did not fit: drift, or unclassified items.
    pub fn has_findings(&self) -> bool {
        self.unclassified > 0 || !self.drift.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::staging::manifest::{DriftEntry, DriftReason, TableDrift};
    use crate::testkit::runs;
    use std::collections::BTreeMap;

    fn manifest(
        segment: u32,
        drift: &[(&str, &str, DriftReason, u64, &[&str])],
        unclassified: u64,
    ) -> SegmentManifest {
        let mut by_table: BTreeMap<String, TableDrift> = BTreeMap::new();
        for (table, attribute, reason, count, examples) in drift {
            by_table
                .entry(table.to_string())
                .or_default()
                .push(DriftEntry {
                    attribute: attribute.to_string(),
                    reason: *reason,
                    count: *count,
                    examples: examples.iter().map(|e| e.to_string()).collect(),
                });
        }
        SegmentManifest {
            tables: runs::rows_of(UNCLASSIFIED_TABLE, unclassified),
            items_scanned: 10,
            drift: by_table,
            ..runs::manifest(&plan(), segment)
        }
    }

    fn runbook() -> Runbook {
        Runbook {
            run_id: "r".into(),
            target: None,
            bucket: "b".into(),
            prefix: "dynamo-etl".into(),
        }
    }

    fn plan() -> RunPlan {
        RunPlan {
            source_table: "platform".into(),
            total_segments: 3,
            ..runs::plan("r")
        }
    }

    #[test]
    fn counts_are_summed_and_examples_capped() {
        let mut report = DriftReport::new(&plan(), runbook());
        report.add(&manifest(
            0,
            &[
                ("org", "budget", DriftReason::NotInSchema, 2, &["k1", "k2"]),
                ("org", "a: b", DriftReason::OtherType, 1, &["k9"]),
            ],
            4,
        ));
        report.add(&manifest(
            1,
            &[(
                "org",
                "budget",
                DriftReason::NotInSchema,
                5,
                &["k3", "k4", "k5"],
            )],
            1,
        ));
        report.missing.push(2);
        let key = |attribute: &str, reason| crate::staging::manifest::DriftKey {
            attribute: attribute.into(),
            reason,
        };
        let org = &report.drift.tables["org"];
        let budget = &org[&key("budget", DriftReason::NotInSchema)];
        assert_eq!(budget.count, 7);
        assert_eq!(budget.examples, ["k1", "k2", "k3"]);
        assert!(org.contains_key(&key("a: b", DriftReason::OtherType)));
        assert_eq!(report.unclassified, 5);
        assert_eq!((report.read, report.items_scanned), (2, 20));
        assert!(report.has_findings());
    }

    #[test]
    fn a_clean_run_has_no_findings() {
        let mut report = DriftReport::new(&plan(), runbook());
        for k in 0..3 {
            report.add(&manifest(k, &[], 0));
        }
        assert!(!report.has_findings());
        assert_eq!(report.read, 3);
        assert!(report.missing.is_empty());
    }
}
