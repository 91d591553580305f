//! The segment manifest: what phase 1 wrote for one segment, written last as its commit point and
//! read by phase 3 (what to load, how many rows to expect), by `replace` (the completeness gate),
//! `status`, `drift` and `run`'s report — all through [`read`] and [`read_all`], so a missing,
//! unreadable or damaged manifest is treated the same way everywhere.

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::fingerprint::{Fingerprint, FINGERPRINT_METHOD};
use super::plan::RunPlan;
use super::Staging;
use crate::error::{Class, Classify};
use crate::schema::{SchemaSource, OVERFLOW_TABLE};
use crate::storage::StoreError;

/// Format 3: parts carry their SHA-256 and entity tag (format 2 had neither; format 1 also keyed
/// drift by "attribute: reason" text).
pub const MANIFEST_FORMAT: u32 = 3;

// Drift and rejections are what the transform reports about items; they live with the
// data-schemas (below both the transform and the staging area) and are re-exported here, where
// the manifest records them.
pub use crate::schema::drift::{
    DriftCount, DriftEntry, DriftKey, DriftReason, DriftSum, Rejection, TableDrift, EXAMPLE_KEYS,
};

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
    /// Lowercase hex SHA-256 of the object's bytes, as phase 1 sent them.
    pub sha256: String,
    /// The entity tag the store gave the object when phase 1 wrote it; it changes whenever the
    /// object is written again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The fingerprint of the part's rows (absent in manifests written before fingerprints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Fingerprint>,
}

impl PartFile {
    /// Fails unless `size` and `sha256` are what phase 1 wrote.
    pub fn check_content(&self, size: u64, sha256: &str) -> Result<(), String> {
        if size == self.bytes && sha256 == self.sha256 {
            return Ok(());
        }
        Err(format!(
            "it is {size} bytes with SHA-256 {sha256}, but its manifest records {} bytes with SHA-256 {}",
            self.bytes, self.sha256
        ))
    }
}

/// Everything one segment wrote for one table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableOutput {
    pub rows: u64,
    pub bytes: u64,
    pub files: Vec<PartFile>,
    /// The sum of its parts' fingerprints (absent in manifests written before fingerprints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Fingerprint>,
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
    pub schema_source: SchemaSource,
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
    #[serde(with = "super::rfc3339")]
    pub started_at: DateTime<Utc>,
    #[serde(with = "super::rfc3339")]
    pub finished_at: DateTime<Utc>,
    pub duration_ms: u64,
    /// Set when the segment was resumed from a checkpoint: how far that had got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed: Option<Resumed>,
    /// The fingerprint method its tables' fingerprints follow (`fingerprint::FINGERPRINT_METHOD`);
    /// absent when phase 1 wrote none (an older version, or an increment's segment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint_method: Option<u32>,
}

/// Where a resumed segment took over from its checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resumed {
    /// Items the checkpoint held.
    pub items: u64,
    /// Read units spent up to the checkpoint (the final figure includes them).
    pub read_units: f64,
    #[serde(with = "super::rfc3339")]
    pub saved_at: DateTime<Utc>,
}

impl SegmentManifest {
    /// Rows holding items: over all tables but `_overflow` (whose rows hold pieces of values of
    /// those items).
    pub fn rows(&self) -> u64 {
        self.tables
            .iter()
            .filter(|(name, _)| name.as_str() != OVERFLOW_TABLE)
            .map(|(_, t)| t.rows)
            .sum()
    }

    /// Read units per second over the segment's time (all attempts), when it took any time.
    pub fn read_rate(&self) -> Option<f64> {
        (self.duration_ms > 0).then(|| self.read_units / (self.duration_ms as f64 / 1000.0))
    }

    /// Rows of `_overflow`: pieces of values no column of their table could hold.
    pub fn overflow_rows(&self) -> u64 {
        self.tables.get(OVERFLOW_TABLE).map_or(0, |t| t.rows)
    }

    /// Every scanned item is a row or a rejection: checked before the manifest is committed.
    pub fn check_accounting(&self) -> Result<(), String> {
        // An increment's segment writes one change row per change line, rejected or not.
        let accounted = match self.tables.get(crate::staging::increment::CHANGES_TABLE) {
            Some(changes) => changes.rows,
            None => self.rows() + self.items_rejected.len() as u64,
        };
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
            if let Some(f) = out.fingerprint.as_ref().filter(|f| f.rows != out.rows) {
                return Err(format!(
                    "segment {}: table {table} counts {} rows but its fingerprint {}",
                    self.segment, out.rows, f.rows
                ));
            }
        }
        Ok(())
    }

    /// Checks that the manifest belongs at segment `segment` of `plan`'s run, whose parts live
    /// under `prefix`, and that its counts add up.
    pub fn check_place(&self, plan: &RunPlan, segment: u32, prefix: &str) -> Result<(), String> {
        let differs = |what: &str, found: String, expected: String| {
            Err(format!("it names {what} {found}, not {expected}"))
        };
        if self.run_id != plan.run_id {
            return differs("run", self.run_id.clone(), plan.run_id.clone());
        }
        if self.segment != segment {
            return differs("segment", self.segment.to_string(), segment.to_string());
        }
        if self.total_segments != plan.total_segments {
            return differs(
                "total segments",
                self.total_segments.to_string(),
                plan.total_segments.to_string(),
            );
        }
        if self.source_table != plan.source_table {
            return differs(
                "source table",
                self.source_table.clone(),
                plan.source_table.clone(),
            );
        }
        let files = self.tables.values().flat_map(|t| &t.files);
        if let Some(stray) = files.clone().find(|f| !f.key.starts_with(prefix)) {
            return Err(format!(
                "it lists part {}, which is not under its segment's prefix {prefix}",
                stray.key
            ));
        }
        self.check_accounting()
    }

    /// Table `table`'s fingerprint in this segment: `None` when the segment was not
    /// fingerprinted (by a method this version knows); no rows give the empty fingerprint.
    pub fn fingerprint(&self, table: &crate::schema::DataSchema) -> Option<Fingerprint> {
        if self.fingerprint_method != Some(FINGERPRINT_METHOD) {
            return None;
        }
        match self.tables.get(&table.table) {
            Some(out) if out.rows > 0 => out.fingerprint.clone(),
            _ => Some(Fingerprint::empty(&super::fingerprint::covered_columns(
                table,
            ))),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("manifest serialises")
    }

    pub fn from_json(text: &[u8]) -> Result<Self, String> {
        let manifest: SegmentManifest =
            serde_json::from_slice(text).map_err(|e| format!("it is not valid: {e}"))?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(format!(
                "it has format {} (this version reads {MANIFEST_FORMAT})",
                manifest.format
            ));
        }
        Ok(manifest)
    }
}

/// A segment manifest that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the manifest of segment {segment} of run {run_id} ({url}) cannot be used: {problem}")]
    Damaged {
        run_id: String,
        segment: u32,
        url: String,
        problem: String,
    },
}

impl ManifestError {
    /// The segment whose phase 1 must run again, when the manifest itself is the problem.
    pub fn damaged_segment(&self) -> Option<u32> {
        match self {
            ManifestError::Damaged { segment, .. } => Some(*segment),
            ManifestError::Store(_) => None,
        }
    }
}

impl Classify for ManifestError {
    fn class(&self) -> Class {
        match self {
            ManifestError::Store(e) => e.class(),
            // Reading it again gives the same bytes: phase 1 must write it again.
            ManifestError::Damaged { .. } => Class::Fatal,
        }
    }
}

/// Segment `segment`'s manifest, or `None` when phase 1 has not committed it. A manifest is only
/// used where it belongs: it must name this run, segment, source table and total segments, list
/// only parts under this segment's prefix, and account for every item it says was scanned.
pub async fn read(
    staging: &Staging,
    plan: &RunPlan,
    segment: u32,
) -> Result<Option<SegmentManifest>, ManifestError> {
    let key = staging.layout.segment_manifest(&plan.run_id, segment);
    let Some(bytes) = staging.store.get(&key).await? else {
        return Ok(None);
    };
    let prefix = staging.layout.segment(&plan.run_id, segment);
    SegmentManifest::from_json(&bytes)
        .and_then(|m| m.check_place(plan, segment, &prefix).map(|()| m))
        .map(Some)
        .map_err(|problem| ManifestError::Damaged {
            run_id: plan.run_id.clone(),
            segment,
            url: staging.url(&key),
            problem,
        })
}

/// What the staging area holds for one segment.
#[derive(Debug, Clone, PartialEq)]
pub enum Committed {
    /// Phase 1 has not committed it.
    Missing,
    Manifest(Box<SegmentManifest>),
    /// A manifest is there but cannot be used (the message says why).
    Damaged(String),
}

impl Committed {
    pub fn manifest(&self) -> Option<&SegmentManifest> {
        match self {
            Committed::Manifest(m) => Some(m),
            _ => None,
        }
    }
}

/// Manifests fetched at once by [`read_all`].
const READS_IN_FLIGHT: usize = 16;

/// Every segment's manifest, in segment order. Only a store failure is an error; a damaged
/// manifest is reported as [`Committed::Damaged`] for the caller to decide.
pub async fn read_all(staging: &Staging, plan: &RunPlan) -> Result<Vec<Committed>, StoreError> {
    stream::iter(0..plan.total_segments)
        .map(|k| async move {
            match read(staging, plan, k).await {
                Ok(Some(m)) => Ok(Committed::Manifest(Box::new(m))),
                Ok(None) => Ok(Committed::Missing),
                Err(ManifestError::Store(e)) => Err(e),
                Err(damaged) => Ok(Committed::Damaged(damaged.to_string())),
            }
        })
        .buffered(READS_IN_FLIGHT)
        .try_collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::staging::Layout;
    use crate::storage::memory::MemoryStore;
    use std::sync::Arc;

    fn plan() -> RunPlan {
        RunPlan {
            total_segments: 3,
            ..crate::testkit::runs::plan("r")
        }
    }

    fn manifest(segment: u32) -> SegmentManifest {
        let file = |name: &str, rows| PartFile {
            key: format!("p/runs/r/segments/{segment}/org/{name}"),
            rows,
            bytes: 10,
            csv_bytes: 20,
            sha256: "00".repeat(32),
            etag: None,
            fingerprint: None,
        };
        let tables = BTreeMap::from([(
            "org".to_string(),
            TableOutput {
                rows: 5,
                bytes: 20,
                files: vec![file("a", 2), file("b", 3)],
                fingerprint: None,
            },
        )]);
        SegmentManifest {
            tables,
            items_scanned: 6,
            items_rejected: vec![Rejection {
                key: r#"{"pk":"x"}"#.into(),
                reason: "U+0000 in a map key".into(),
            }],
            read_units: 1.0,
            duration_ms: 1,
            ..crate::testkit::runs::manifest(&plan(), segment)
        }
    }

    #[test]
    fn every_scanned_item_is_a_row_or_a_rejection() {
        let good = manifest(0);
        assert_eq!(good.rows(), 5);
        assert!(good.check_accounting().is_ok());
        let mut lost = manifest(0);
        lost.items_scanned = 7;
        let err = lost.check_accounting().unwrap_err();
        assert!(
            err.contains("7 items scanned but 5 rows + 1 rejected"),
            "{err}"
        );
        let mut uneven = manifest(0);
        uneven.tables.get_mut("org").unwrap().files[1].rows = 4;
        let err = uneven.check_accounting().unwrap_err();
        assert!(
            err.contains("table org counts 5 rows but its files hold 6"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn manifests_are_read_as_committed_missing_or_damaged() {
        let staging = Staging::new(Arc::new(MemoryStore::new("b")), Layout::new("p"));
        let put = |segment: u32, text: String| {
            let staging = staging.clone();
            async move {
                let key = staging.layout.segment_manifest("r", segment);
                staging
                    .store
                    .put(&key, text.into(), "application/json")
                    .await
                    .unwrap();
            }
        };
        put(0, manifest(0).to_json()).await;
        put(2, "{ not json".into()).await;
        let found = read_all(&staging, &plan()).await.unwrap();
        assert_eq!(found[0], Committed::Manifest(Box::new(manifest(0))));
        assert_eq!(found[1], Committed::Missing);
        let Committed::Damaged(problem) = &found[2] else {
            panic!("{:?}", found[2]);
        };
        assert!(
            problem.contains("segment 2 of run r")
                && problem.contains("s3://b/p/runs/r/segments/2/manifest.json"),
            "{problem}"
        );
        // One reader, one policy: a damaged manifest is an error that names its segment.
        let err = read(&staging, &plan(), 2).await.unwrap_err();
        assert_eq!(err.damaged_segment(), Some(2));
        assert_eq!(err.class(), Class::Fatal);
        // A manifest in the wrong place, for another run, with counts off, or naming parts of
        // another segment is not used either.
        for (k, m, expected) in [
            (0, manifest(1), "it names segment 1, not 0"),
            (
                0,
                SegmentManifest {
                    run_id: "other".into(),
                    ..manifest(0)
                },
                "it names run other, not r",
            ),
            (
                0,
                SegmentManifest {
                    total_segments: 4,
                    ..manifest(0)
                },
                "total segments 4, not 3",
            ),
            (
                0,
                SegmentManifest {
                    items_scanned: 13,
                    ..manifest(0)
                },
                "13 items scanned",
            ),
            (
                1,
                SegmentManifest {
                    segment: 1,
                    ..manifest(0)
                },
                "not under its segment's prefix",
            ),
        ] {
            put(k, m.to_json()).await;
            let err = read(&staging, &plan(), k).await.unwrap_err().to_string();
            assert!(err.contains(expected), "{expected}: {err}");
        }
        // A manifest of another format version is not used.
        let mut old = serde_json::to_value(manifest(1)).unwrap();
        old["format"] = 2.into();
        put(1, old.to_string()).await;
        let err = read(&staging, &plan(), 1).await.unwrap_err();
        assert!(err.to_string().contains("format 2"), "{err}");
    }

    #[test]
    fn drift_sums_keep_counts_and_a_few_examples() {
        let entry = |count, examples: &[&str]| DriftEntry {
            attribute: "budget".into(),
            reason: DriftReason::NotInSchema,
            count,
            examples: examples.iter().map(|e| e.to_string()).collect(),
        };
        let mut sum = DriftSum::default();
        sum.add(&BTreeMap::from([(
            "org".to_string(),
            vec![entry(2, &["a", "b"])],
        )]));
        sum.add(&BTreeMap::from([(
            "org".to_string(),
            vec![entry(3, &["b", "c", "d"])],
        )]));
        assert_eq!(sum.entries()["org"], vec![entry(5, &["a", "b", "c"])]);
        assert!(!sum.is_empty());
    }
}
