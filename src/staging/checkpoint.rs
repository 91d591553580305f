//! A segment's checkpoint (`segments/<k>/checkpoint.json`): how far phase 1 got, so a killed or
//! interrupted segment goes on from there instead of from its first page.
//!
//! Phase 1 takes one at a page boundary: it closes every table's open part, and once the store
//! has completed those parts, writes one small object naming them (with their counts, bytes and
//! hashes), the drift and rejections so far, and the `LastEvaluatedKey` of the last page whose
//! items they hold. A PUT replaces an object whole, so a process killed while writing it leaves
//! the previous checkpoint, whose parts are still there. A resume keeps exactly the parts the
//! checkpoint names, deletes everything else under the segment (what the killed attempt wrote
//! after it), and scans on from its key; the final manifest is what an uninterrupted run would
//! commit, part boundaries aside.
//!
//! A checkpoint is used only by the run, segment, total segments and plan it was taken for; any
//! other is ignored, with the reason logged.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

use super::manifest::{Rejection, TableDrift, TableOutput};
use super::parts::codec::PartCompression;
use super::plan::RunPlan;
use super::Staging;
use crate::storage::{ObjectInfo, StoreError};

pub const CHECKPOINT_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub format: u32,
    pub run_id: String,
    pub source_table: String,
    pub segment: u32,
    pub total_segments: u32,
    /// [`RunPlan::fingerprint`] of the plan the parts were written for.
    pub plan_fingerprint: String,
    /// The parts' codec: a resume writes the rest of the segment with it, so every table's parts
    /// share one codec.
    pub compression: String,
    /// The `LastEvaluatedKey` (DynamoDB JSON) after the last item the parts hold.
    pub resume_key: String,
    /// The finished parts, per table.
    pub tables: BTreeMap<String, TableOutput>,
    pub items_scanned: u64,
    pub items_rejected: Vec<Rejection>,
    pub drift: BTreeMap<String, TableDrift>,
    pub read_units: f64,
    pub pages: u64,
    pub retries: u64,
    /// When the segment's first attempt started.
    #[serde(with = "super::rfc3339")]
    pub started_at: DateTime<Utc>,
    #[serde(with = "super::rfc3339")]
    pub saved_at: DateTime<Utc>,
    /// Time spent on the segment up to this checkpoint, over every attempt.
    pub duration_ms: u64,
}

impl Checkpoint {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("checkpoint serialises")
    }

    pub fn codec(&self) -> Result<PartCompression, String> {
        self.compression.parse()
    }

    /// Why this checkpoint may not be used to resume segment `segment` of `plan`'s run, whose
    /// objects the listing `found` shows; `None` when it may.
    pub fn unusable_for(
        &self,
        plan: &RunPlan,
        segment: u32,
        prefix: &str,
        found: &[ObjectInfo],
    ) -> Option<String> {
        if self.format != CHECKPOINT_FORMAT {
            return Some(format!(
                "it has format {} (this version reads {CHECKPOINT_FORMAT})",
                self.format
            ));
        }
        if self.run_id != plan.run_id {
            return Some(format!("it belongs to run {}", self.run_id));
        }
        if self.segment != segment || self.total_segments != plan.total_segments {
            return Some(format!(
                "it is for segment {} of {}, not {segment} of {}",
                self.segment, self.total_segments, plan.total_segments
            ));
        }
        if self.source_table != plan.source_table || self.plan_fingerprint != plan.fingerprint() {
            return Some("it was taken for other data-schemas or another table".into());
        }
        if let Err(e) = self.codec() {
            return Some(e);
        }
        let sizes: HashMap<&str, u64> = found.iter().map(|o| (o.key.as_str(), o.size)).collect();
        for file in self.tables.values().flat_map(|t| &t.files) {
            if !file.key.starts_with(prefix) {
                return Some(format!("it names part {}, outside the segment", file.key));
            }
            match sizes.get(file.key.as_str()) {
                Some(&size) if size == file.bytes => {}
                Some(&size) => {
                    return Some(format!(
                        "its part {} has {size} bytes, not the {} it recorded",
                        file.key, file.bytes
                    ))
                }
                None => return Some(format!("its part {} is gone", file.key)),
            }
        }
        let rows: u64 = self.tables.values().map(|t| t.rows).sum::<u64>()
            - self
                .tables
                .get(crate::schema::OVERFLOW_TABLE)
                .map_or(0, |t| t.rows);
        if rows + self.items_rejected.len() as u64 != self.items_scanned {
            return Some(format!(
                "it counts {} items scanned but {rows} rows and {} rejected",
                self.items_scanned,
                self.items_rejected.len()
            ));
        }
        None
    }

    /// The part keys a resume keeps.
    pub fn part_keys(&self) -> impl Iterator<Item = &str> {
        self.tables
            .values()
            .flat_map(|t| t.files.iter().map(|f| f.key.as_str()))
    }
}

/// What is under a segment's prefix when phase 1 starts on it.
#[derive(Debug)]
pub enum Found {
    /// No checkpoint, or one that may not be used (with the reason).
    Fresh { ignored: Option<String> },
    /// A checkpoint to resume from.
    Resume(Box<Checkpoint>),
}

/// Reads the segment's checkpoint and decides whether phase 1 may resume from it.
pub async fn find(
    staging: &Staging,
    plan: &RunPlan,
    segment: u32,
    found: &[ObjectInfo],
) -> Result<Found, StoreError> {
    let key = staging.layout.segment_checkpoint(&plan.run_id, segment);
    let Some(bytes) = staging.store.get(&key).await? else {
        return Ok(Found::Fresh { ignored: None });
    };
    let checkpoint: Checkpoint = match serde_json::from_slice(&bytes) {
        Ok(c) => c,
        Err(e) => {
            return Ok(Found::Fresh {
                ignored: Some(format!("{} is not valid: {e}", staging.url(&key))),
            })
        }
    };
    let prefix = staging.layout.segment(&plan.run_id, segment);
    Ok(
        match checkpoint.unusable_for(plan, segment, &prefix, found) {
            None => Found::Resume(Box::new(checkpoint)),
            Some(why) => Found::Fresh {
                ignored: Some(format!("{}: {why}", staging.url(&key))),
            },
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::DialectName;
    use crate::staging::manifest::PartFile;

    fn plan() -> RunPlan {
        RunPlan {
            total_segments: 4,
            ..crate::testkit::runs::plan("r")
        }
    }

    fn checkpoint() -> Checkpoint {
        let file = PartFile {
            key: "p/runs/r/segments/1/a/part-00000.csv.zst".into(),
            rows: 3,
            bytes: 100,
            csv_bytes: 300,
            sha256: "00".into(),
            etag: None,
            fingerprint: None,
        };
        Checkpoint {
            format: CHECKPOINT_FORMAT,
            run_id: "r".into(),
            source_table: "t".into(),
            segment: 1,
            total_segments: 4,
            plan_fingerprint: plan().fingerprint(),
            compression: "zstd".into(),
            resume_key: r#"{"pk":{"S":"x"}}"#.into(),
            tables: BTreeMap::from([(
                "a".to_string(),
                TableOutput {
                    rows: 3,
                    bytes: 100,
                    files: vec![file],
                    fingerprint: None,
                },
            )]),
            items_scanned: 4,
            items_rejected: vec![Rejection {
                key: "k".into(),
                reason: "r".into(),
            }],
            drift: BTreeMap::new(),
            read_units: 1.5,
            pages: 1,
            retries: 0,
            started_at: chrono::DateTime::UNIX_EPOCH,
            saved_at: chrono::DateTime::UNIX_EPOCH,
            duration_ms: 10,
        }
    }

    fn listing(size: u64) -> Vec<ObjectInfo> {
        vec![ObjectInfo {
            key: "p/runs/r/segments/1/a/part-00000.csv.zst".into(),
            size,
        }]
    }

    #[test]
    fn a_checkpoint_is_used_only_where_it_was_taken_and_while_its_parts_are_there() {
        let prefix = "p/runs/r/segments/1/";
        let c = checkpoint();
        assert_eq!(c.unusable_for(&plan(), 1, prefix, &listing(100)), None);
        let why = |c: &Checkpoint, segment, plan: &RunPlan, found: &[ObjectInfo]| {
            c.unusable_for(plan, segment, prefix, found).unwrap()
        };
        assert!(why(&c, 2, &plan(), &listing(100)).contains("segment 1 of 4, not 2 of 4"));
        let mut other_total = plan();
        other_total.total_segments = 8;
        assert!(why(&c, 1, &other_total, &listing(100)).contains("not 1 of 8"));
        let mut other_run = plan();
        other_run.run_id = "q".into();
        assert!(why(&c, 1, &other_run, &listing(100)).contains("belongs to run r"));
        let mut other_schemas = plan();
        other_schemas.dialect = DialectName::Redshift;
        assert!(why(&c, 1, &other_schemas, &listing(100)).contains("other data-schemas"));
        assert!(why(&c, 1, &plan(), &listing(99)).contains("has 99 bytes"));
        assert!(why(&c, 1, &plan(), &[]).contains("is gone"));
        let mut miscounted = checkpoint();
        miscounted.items_scanned = 5;
        assert!(why(&miscounted, 1, &plan(), &listing(100)).contains("5 items scanned"));
    }

    #[tokio::test]
    async fn an_unreadable_checkpoint_starts_the_segment_afresh_and_says_why() {
        use crate::storage::memory::MemoryStore;
        use std::sync::Arc;
        let staging = Staging::new(
            Arc::new(MemoryStore::new("b")),
            crate::staging::Layout::new("p"),
        );
        let key = staging.layout.segment_checkpoint("r", 1);
        assert!(matches!(
            find(&staging, &plan(), 1, &[]).await.unwrap(),
            Found::Fresh { ignored: None }
        ));
        staging
            .store
            .put(&key, "{".into(), "application/json")
            .await
            .unwrap();
        match find(&staging, &plan(), 1, &[]).await.unwrap() {
            Found::Fresh { ignored: Some(why) } => assert!(why.contains("not valid"), "{why}"),
            other => panic!("{other:?}"),
        }
        staging
            .store
            .put(&key, checkpoint().to_json().into(), "application/json")
            .await
            .unwrap();
        assert!(matches!(
            find(&staging, &plan(), 1, &listing(100)).await.unwrap(),
            Found::Resume(_)
        ));
    }
}
