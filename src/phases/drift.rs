//! `drift`: what a run's data did not fit — attributes that went to `_extra` and items that went
//! to `_unclassified` — summed over the run's segment manifests, with a hint to evolve the
//! data-schemas. A report: segments without a manifest are listed, not treated as errors.

use super::Context;
use crate::error::Error;
use crate::schema::UNCLASSIFIED_TABLE;
use crate::staging::commands::{Runbook, Step};
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

/// Drift of a run, summed over the manifests read so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftReport {
    run_id: String,
    source_table: String,
    total_segments: u32,
    read: u32,
    items_scanned: u64,
    drift: DriftSum,
    unclassified: u64,
    missing: Vec<u32>,
    unreadable: Vec<(u32, String)>,
    runbook: Runbook,
}

impl DriftReport {
    fn new(plan: &RunPlan, runbook: Runbook) -> Self {
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

    fn add(&mut self, manifest: &SegmentManifest) {
        self.read += 1;
        self.items_scanned += manifest.items_scanned;
        self.unclassified += manifest
            .tables
            .get(UNCLASSIFIED_TABLE)
            .map_or(0, |t| t.rows);
        self.drift.add(&manifest.drift);
    }

    fn has_findings(&self) -> bool {
        self.unclassified > 0 || !self.drift.is_empty()
    }

    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "drift of run {} (table {}): {} of {} segment manifests read, {} items scanned",
            self.run_id, self.source_table, self.read, self.total_segments, self.items_scanned
        );
        for (table, counts) in &self.drift.tables {
            if counts.is_empty() {
                continue;
            }
            let _ = writeln!(
                out,
                "{table}: {} attribute(s) kept out of their columns (in _extra, or _overflow where the reason says so)",
                counts.len()
            );
            let mut rows: Vec<_> = counts.iter().collect();
            rows.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(b.0)));
            for (key, drift) in rows {
                let _ = writeln!(
                    out,
                    "  {:?} ({}): {} item(s), e.g. {}",
                    key.attribute,
                    key.reason,
                    drift.count,
                    drift.examples.join(" ")
                );
            }
        }
        if self.unclassified > 0 {
            let _ = writeln!(
                out,
                "{UNCLASSIFIED_TABLE}: {} item(s) matched no data-schema",
                self.unclassified
            );
        }
        if !self.has_findings() && self.read > 0 {
            let _ = writeln!(
                out,
                "no drift: every attribute fit its data-schema and every item was classified"
            );
        }
        if !self.missing.is_empty() {
            let list: Vec<String> = self.missing.iter().map(u32::to_string).collect();
            let _ = writeln!(
                out,
                "segments without a manifest (not run yet, still running, or failed): {}; their items are not counted above. To run one: {}",
                list.join(", "),
                self.runbook
                    .command(Step::RetryPhase1 {
                        total_segments: self.total_segments,
                        segment: self.missing[0],
                    })
            );
        }
        for (segment, problem) in &self.unreadable {
            let _ = writeln!(
                out,
                "segment {segment}: {problem}; its items are not counted above. To write it again: {}",
                self.runbook.command(Step::RetryPhase1 {
                    total_segments: self.total_segments,
                    segment: *segment,
                })
            );
        }
        if self.has_findings() {
            let _ = writeln!(
                out,
                "hint: run `dynamo-etl infer-schema --table {}` to add these attributes and entities to the data-schemas; runs planned afterwards load them into columns",
                self.source_table
            );
        }
        out
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
        let text = report.render();
        assert!(text.contains("2 of 3 segment manifests read"), "{text}");
        assert!(
            text.contains("\"budget\" (not in the data-schema): 7 item(s), e.g. k1 k2 k3"),
            "{text}"
        );
        assert!(text.contains("_unclassified: 5 item(s)"), "{text}");
        assert!(text.contains("without a manifest"), "{text}");
        assert!(text.contains("retry phase-1 3 2 --run-id r"), "{text}");
        assert!(text.contains("infer-schema --table platform"), "{text}");
    }

    #[test]
    fn a_clean_run_says_so_and_gives_no_hint() {
        let mut report = DriftReport::new(&plan(), runbook());
        for k in 0..3 {
            report.add(&manifest(k, &[], 0));
        }
        let text = report.render();
        assert!(text.contains("no drift"), "{text}");
        assert!(!text.contains("hint"), "{text}");
        assert!(!text.contains("without a manifest"), "{text}");
    }
}
