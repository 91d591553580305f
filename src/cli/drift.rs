//! `drift`: what a run's data did not fit — attributes that went to `_extra` and items that went
//! to `_unclassified` — summed over the run's segment manifests, with a hint to evolve the
//! data-schemas. A report: segments without a manifest are listed, not treated as errors.

use anyhow::anyhow;
use futures::stream::{self, StreamExt};
use std::collections::BTreeMap;

use super::{Cli, CommandResult, Failure, Services};
use crate::schema::UNCLASSIFIED_TABLE;
use crate::stage::check_run_id;
use crate::stage::manifest::SegmentManifest;
use crate::stage::plan::{PlanError, RunPlan};
use crate::transform::EXAMPLE_KEYS;

/// Manifests fetched at once.
const READS_IN_FLIGHT: usize = 16;

#[derive(Debug, Clone, clap::Args)]
pub struct DriftArgs {
    /// The run to report on.
    #[arg(long, env = "ETL_RUN_ID")]
    pub run_id: String,
}

pub async fn run(cli: &Cli, args: &DriftArgs) -> CommandResult {
    let run_id = args.run_id.as_str();
    check_run_id(run_id).map_err(|e| Failure::Fatal(anyhow!(e)))?;
    let services = Services::connect(cli).await?;
    let (store, layout) = (&services.store, &services.layout);
    let plan = RunPlan::require(store, layout, run_id)
        .await
        .map_err(|e| match e {
            PlanError::Store(s) if s.is_retriable() => Failure::Retry(
                anyhow::Error::new(s)
                    .context(format!("cannot read the plan of run {run_id}; retry later")),
            ),
            other => Failure::Fatal(anyhow::Error::new(other)),
        })?;
    let mut report = DriftReport::new(&plan);
    let mut reads = stream::iter(0..plan.total_segments)
        .map(|segment| {
            let key = layout.segment_manifest(run_id, segment);
            async move { (segment, store.get(&key).await, key) }
        })
        .buffered(READS_IN_FLIGHT);
    // `buffered` keeps segment order, so the example keys do not depend on timing.
    while let Some((segment, fetched, key)) = reads.next().await {
        match fetched {
            Ok(None) => report.missing.push(segment),
            Ok(Some(bytes)) => match SegmentManifest::from_json(&bytes, &key) {
                Ok(manifest) => report.add(&manifest),
                Err(problem) => report.unreadable.push((segment, problem)),
            },
            Err(e) => {
                let retriable = e.is_retriable();
                let err = anyhow::Error::new(e).context(format!(
                    "cannot read the manifest of segment {segment} of run {run_id}"
                ));
                return Err(if retriable {
                    Failure::Retry(err)
                } else {
                    Failure::Fatal(err)
                });
            }
        }
    }
    print!("{}", report.render());
    Ok(())
}

/// One attribute's drift in one table, summed over segments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct AttributeDrift {
    count: u64,
    examples: Vec<String>,
}

/// Drift of a run, summed over the manifests read so far.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DriftReport {
    run_id: String,
    source_table: String,
    total_segments: u32,
    read: u32,
    items_scanned: u64,
    /// table → (attribute, reason) → counts.
    tables: BTreeMap<String, BTreeMap<(String, String), AttributeDrift>>,
    unclassified: u64,
    missing: Vec<u32>,
    unreadable: Vec<(u32, String)>,
}

impl DriftReport {
    fn new(plan: &RunPlan) -> Self {
        DriftReport {
            run_id: plan.run_id.clone(),
            source_table: plan.source_table.clone(),
            total_segments: plan.total_segments,
            read: 0,
            items_scanned: 0,
            tables: BTreeMap::new(),
            unclassified: 0,
            missing: Vec::new(),
            unreadable: Vec::new(),
        }
    }

    fn add(&mut self, manifest: &SegmentManifest) {
        self.read += 1;
        self.items_scanned += manifest.items_scanned;
        self.unclassified += manifest
            .tables
            .get(UNCLASSIFIED_TABLE)
            .map_or(0, |t| t.rows);
        for (table, drift) in &manifest.drift {
            let counts = self.tables.entry(table.clone()).or_default();
            for (entry, seen) in drift {
                // Entries read "<attribute>: <reason>"; reasons never contain ": ", attribute
                // names may.
                let (attribute, reason) = entry
                    .rsplit_once(": ")
                    .map(|(a, r)| (a.to_string(), r.to_string()))
                    .unwrap_or_else(|| (entry.clone(), "unknown reason".into()));
                let sum = counts.entry((attribute, reason)).or_default();
                sum.count += seen.count;
                for example in &seen.examples {
                    if sum.examples.len() < EXAMPLE_KEYS && !sum.examples.contains(example) {
                        sum.examples.push(example.clone());
                    }
                }
            }
        }
    }

    fn has_findings(&self) -> bool {
        self.unclassified > 0 || self.tables.values().any(|t| !t.is_empty())
    }

    fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "drift of run {} (table {}): {} of {} segment manifests read, {} items scanned",
            self.run_id, self.source_table, self.read, self.total_segments, self.items_scanned
        );
        for (table, counts) in &self.tables {
            if counts.is_empty() {
                continue;
            }
            let _ = writeln!(out, "{table}: {} attribute(s) went to _extra", counts.len());
            let mut rows: Vec<_> = counts.iter().collect();
            rows.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(b.0)));
            for ((attribute, reason), drift) in rows {
                let _ = writeln!(
                    out,
                    "  {attribute:?} ({reason}): {} item(s), e.g. {}",
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
                "segments without a manifest (not run yet, still running, or failed): {}; their items are not counted above. To run one: dynamo-etl retry phase-1 {} <segment> --run-id {}",
                list.join(", "),
                self.total_segments,
                self.run_id
            );
        }
        for (segment, problem) in &self.unreadable {
            let _ = writeln!(
                out,
                "segment {segment}: {problem}; its items are not counted above. To write it again: dynamo-etl retry phase-1 {} {segment} --run-id {}",
                self.total_segments, self.run_id
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
    use crate::stage::manifest::{TableOutput, MANIFEST_FORMAT};
    use crate::transform::DriftCount;

    fn manifest(
        segment: u32,
        drift: &[(&str, &str, u64, &[&str])],
        unclassified: u64,
    ) -> SegmentManifest {
        let mut tables = BTreeMap::new();
        tables.insert(
            UNCLASSIFIED_TABLE.to_string(),
            TableOutput {
                rows: unclassified,
                ..TableOutput::default()
            },
        );
        let mut by_table: BTreeMap<String, crate::transform::TableDrift> = BTreeMap::new();
        for (table, entry, count, examples) in drift {
            by_table.entry(table.to_string()).or_default().insert(
                entry.to_string(),
                DriftCount {
                    count: *count,
                    examples: examples.iter().map(|e| e.to_string()).collect(),
                },
            );
        }
        SegmentManifest {
            format: MANIFEST_FORMAT,
            run_id: "r".into(),
            source_table: "platform".into(),
            segment,
            total_segments: 3,
            schema_source: "static:schemas".into(),
            tables,
            items_scanned: 10,
            items_rejected: vec![],
            drift: by_table,
            read_units: 0.0,
            pages: 1,
            retries: 0,
            started_at: String::new(),
            finished_at: String::new(),
            duration_ms: 0,
        }
    }

    fn plan() -> RunPlan {
        RunPlan {
            format: 1,
            run_id: "r".into(),
            source_table: "platform".into(),
            total_segments: 3,
            key_attributes: vec!["pk".into()],
            schema_source: "static:schemas".into(),
            schemas: vec![],
            created_at: String::new(),
        }
    }

    #[test]
    fn counts_are_summed_and_examples_capped() {
        let mut report = DriftReport::new(&plan());
        report.add(&manifest(
            0,
            &[
                ("org", "budget: not in the data-schema", 2, &["k1", "k2"]),
                ("org", "a: b: type differs from the data-schema", 1, &["k9"]),
            ],
            4,
        ));
        report.add(&manifest(
            1,
            &[(
                "org",
                "budget: not in the data-schema",
                5,
                &["k3", "k4", "k5"],
            )],
            1,
        ));
        report.missing.push(2);
        let budget = &report.tables["org"][&("budget".into(), "not in the data-schema".into())];
        assert_eq!(budget.count, 7);
        assert_eq!(budget.examples, ["k1", "k2", "k3"]);
        assert!(report.tables["org"]
            .contains_key(&("a: b".into(), "type differs from the data-schema".into())));
        assert_eq!(report.unclassified, 5);
        let text = report.render();
        assert!(text.contains("2 of 3 segment manifests read"), "{text}");
        assert!(
            text.contains("\"budget\" (not in the data-schema): 7 item(s), e.g. k1 k2 k3"),
            "{text}"
        );
        assert!(text.contains("_unclassified: 5 item(s)"), "{text}");
        assert!(text.contains("without a manifest"), "{text}");
        assert!(
            text.contains("retry phase-1 3 <segment> --run-id r"),
            "{text}"
        );
        assert!(text.contains("infer-schema --table platform"), "{text}");
    }

    #[test]
    fn a_clean_run_says_so_and_gives_no_hint() {
        let mut report = DriftReport::new(&plan());
        for k in 0..3 {
            report.add(&manifest(k, &[], 0));
        }
        let text = report.render();
        assert!(text.contains("no drift"), "{text}");
        assert!(!text.contains("hint"), "{text}");
        assert!(!text.contains("without a manifest"), "{text}");
    }
}
