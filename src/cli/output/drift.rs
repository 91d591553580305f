//! What `drift` prints: what a run's data did not fit, per table and attribute, the segments not
//! counted, and the hint to evolve the data-schemas.

use std::fmt::Write;

use dynamo_etl::phases::drift::DriftReport;
use dynamo_etl::schema::UNCLASSIFIED_TABLE;
use dynamo_etl::staging::commands::Step;

pub fn render(report: &DriftReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "drift of run {} (table {}): {} of {} segment manifests read, {} items scanned",
        report.run_id,
        report.source_table,
        report.read,
        report.total_segments,
        report.items_scanned
    );
    for (table, counts) in &report.drift.tables {
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
    if report.unclassified > 0 {
        let _ = writeln!(
            out,
            "{UNCLASSIFIED_TABLE}: {} item(s) matched no data-schema",
            report.unclassified
        );
    }
    if !report.has_findings() && report.read > 0 {
        let _ = writeln!(
            out,
            "no drift: every attribute fit its data-schema and every item was classified"
        );
    }
    if let Some(first) = report.missing.first() {
        let list: Vec<String> = report.missing.iter().map(u32::to_string).collect();
        let _ = writeln!(
            out,
            "segments without a manifest (not run yet, still running, or failed): {}; their items are not counted above. To run one: {}",
            list.join(", "),
            report.runbook.command(Step::RetryPhase1 {
                total_segments: report.total_segments,
                segment: *first,
            })
        );
    }
    for (segment, problem) in &report.unreadable {
        let _ = writeln!(
            out,
            "segment {segment}: {problem}; its items are not counted above. To write it again: {}",
            report.runbook.command(Step::RetryPhase1 {
                total_segments: report.total_segments,
                segment: *segment,
            })
        );
    }
    if report.has_findings() {
        let _ = writeln!(
            out,
            "hint: run `dynamo-etl infer-schema --table {}` to add these attributes and entities to the data-schemas; runs planned afterwards load them into columns",
            report.source_table
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynamo_etl::schema::drift::{DriftEntry, DriftReason, DriftSum, TableDrift};
    use dynamo_etl::staging::commands::Runbook;
    use std::collections::BTreeMap;

    /// A report of `read` of 3 segments whose manifests held `drift` (table, attribute, reason,
    /// count, examples) and `unclassified` items.
    fn report(
        read: u32,
        drift: &[(&str, &str, DriftReason, u64, &[&str])],
        unclassified: u64,
    ) -> DriftReport {
        let mut sum = DriftSum::default();
        for (table, attribute, reason, count, examples) in drift {
            let entry: TableDrift = vec![DriftEntry {
                attribute: attribute.to_string(),
                reason: *reason,
                count: *count,
                examples: examples.iter().map(|e| e.to_string()).collect(),
            }];
            sum.add(&BTreeMap::from([(table.to_string(), entry)]));
        }
        DriftReport {
            run_id: "r".into(),
            source_table: "platform".into(),
            total_segments: 3,
            read,
            items_scanned: 10 * u64::from(read),
            drift: sum,
            unclassified,
            missing: Vec::new(),
            unreadable: Vec::new(),
            runbook: Runbook {
                run_id: "r".into(),
                target: None,
                bucket: "b".into(),
                prefix: "dynamo-etl".into(),
            },
        }
    }

    #[test]
    fn findings_are_listed_with_their_examples_and_the_commands_that_help() {
        let mut r = report(
            2,
            &[
                ("org", "budget", DriftReason::NotInSchema, 2, &["k1", "k2"]),
                ("org", "a: b", DriftReason::OtherType, 1, &["k9"]),
                (
                    "org",
                    "budget",
                    DriftReason::NotInSchema,
                    5,
                    &["k3", "k4", "k5"],
                ),
            ],
            5,
        );
        r.missing.push(2);
        let text = render(&r);
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
        let text = render(&report(3, &[], 0));
        assert!(text.contains("no drift"), "{text}");
        assert!(!text.contains("hint"), "{text}");
        assert!(!text.contains("without a manifest"), "{text}");
    }
}
