//! Run plans and segment manifests for tests. Each is one filled-in value that a test changes
//! with struct update syntax (`RunPlan { total_segments: 3, ..runs::plan("r") }`), so a test
//! states only the fields it is about and a new field is added here once.

use std::collections::BTreeMap;

use crate::schema::{DialectName, SchemaSource};
use crate::staging::manifest::{SegmentManifest, TableOutput, MANIFEST_FORMAT};
use crate::staging::plan::{RunPlan, PLAN_FORMAT};

/// A scanning run `run_id` of table `t` keyed by `pk`, one segment, for PostgreSQL, with the
/// static schemas and none pinned, planned at the Unix epoch.
pub fn plan(run_id: &str) -> RunPlan {
    RunPlan {
        format: PLAN_FORMAT,
        run_id: run_id.into(),
        source_table: "t".into(),
        total_segments: 1,
        dialect: DialectName::Postgres,
        key_attributes: vec!["pk".into()],
        schema_source: SchemaSource::Static("schemas".into()),
        schemas: vec![],
        created_at: chrono::DateTime::UNIX_EPOCH,
        export: None,
        increment: None,
    }
}

/// The manifest of segment `segment` of `plan`'s run that scanned nothing, in one page.
pub fn manifest(plan: &RunPlan, segment: u32) -> SegmentManifest {
    SegmentManifest {
        format: MANIFEST_FORMAT,
        run_id: plan.run_id.clone(),
        source_table: plan.source_table.clone(),
        segment,
        total_segments: plan.total_segments,
        schema_source: plan.schema_source.clone(),
        tables: BTreeMap::new(),
        items_scanned: 0,
        items_rejected: vec![],
        drift: BTreeMap::new(),
        read_units: 0.0,
        pages: 1,
        retries: 0,
        started_at: chrono::DateTime::UNIX_EPOCH,
        finished_at: chrono::DateTime::UNIX_EPOCH,
        duration_ms: 0,
        resumed: None,
        fingerprint_method: None,
    }
}

/// `rows` rows of `table` without their files: what the gates and reports count.
pub fn rows_of(table: &str, rows: u64) -> BTreeMap<String, TableOutput> {
    BTreeMap::from([(
        table.to_string(),
        TableOutput {
            rows,
            ..TableOutput::default()
        },
    )])
}
