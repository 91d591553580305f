//! The segment manifest: what phase 1 wrote for one segment, written last as its commit point and
//! read by phase 3 (what to load, how many rows to expect) and by `replace` (the completeness gate).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::transform::{Rejection, TableDrift};

pub const MANIFEST_FORMAT: u32 = 1;

/// One CSV part object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartFile {
    pub key: String,
    pub rows: u64,
    /// Compressed size (the object's size).
    pub bytes: u64,
    /// Size of the CSV before compression.
    pub csv_bytes: u64,
}

/// Everything one segment wrote for one table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableOutput {
    pub rows: u64,
    pub bytes: u64,
    pub files: Vec<PartFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentManifest {
    pub format: u32,
    pub run_id: String,
    pub source_table: String,
    pub segment: u32,
    pub total_segments: u32,
    /// Where the run's data-schemas came from (see `RunPlan::schema_source`).
    pub schema_source: String,
    /// Per warehouse table, including `_unclassified` when it received items.
    pub tables: BTreeMap<String, TableOutput>,
    pub items_scanned: u64,
    /// Items with no representation, by key, with the reason. Never silently dropped.
    pub items_rejected: Vec<Rejection>,
    /// Attributes that went to `_extra`, per table.
    pub drift: BTreeMap<String, TableDrift>,
    /// Read capacity units consumed by the scan.
    pub read_units: f64,
    pub pages: u64,
    /// Calls retried after throttling or transient errors (DynamoDB and S3).
    pub retries: u64,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
}

impl SegmentManifest {
    /// Rows over all tables.
    pub fn rows(&self) -> u64 {
        self.tables.values().map(|t| t.rows).sum()
    }

    /// Every scanned item is a row or a rejection: checked before the manifest is committed.
    pub fn check_accounting(&self) -> Result<(), String> {
        let accounted = self.rows() + self.items_rejected.len() as u64;
        if accounted != self.items_scanned {
            return Err(format!(
                "segment {}: {} items scanned but {} rows + {} rejected were written",
                self.segment,
                self.items_scanned,
                self.rows(),
                self.items_rejected.len()
            ));
        }
        for (table, out) in &self.tables {
            let in_files: u64 = out.files.iter().map(|f| f.rows).sum();
            if in_files != out.rows {
                return Err(format!(
                    "segment {}: table {table} counts {} rows but its files hold {in_files}",
                    self.segment, out.rows
                ));
            }
        }
        Ok(())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("manifest serialises")
    }

    pub fn from_json(text: &[u8], key: &str) -> Result<Self, String> {
        serde_json::from_slice(text).map_err(|e| format!("manifest {key} is not valid: {e}"))
    }
}
