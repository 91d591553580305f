//! The run plan (`run.json`): pins what one run copies and with which data-schemas, so every phase
//! of the run — on whichever machine — agrees, and a schema snapshot activated mid-run changes
//! nothing for it. Written once; a second writer with different content is refused.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Staging;
use crate::error::{Class, Classify};
use crate::schema::{DataSchema, DialectName, SchemaSet, SchemaSource};
use crate::storage::StoreError;

/// 2: the plan names the dialect its parts are shaped for, and binary is hex (it was base64).
pub const PLAN_FORMAT: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunPlan {
    pub format: u32,
    pub run_id: String,
    pub source_table: String,
    pub total_segments: u32,
    /// The warehouse the run is for: phase 1 shapes values by its limits, and the run loads into
    /// that dialect only.
    pub dialect: DialectName,
    /// The source table's key attributes (partition key first), from DescribeTable.
    pub key_attributes: Vec<String>,
    /// Where the schemas came from: `snapshot:<id>` or `static:<dir>`.
    pub schema_source: SchemaSource,
    /// The data-schemas of this run, copied in so later cache changes cannot affect it, with
    /// their types fitted to the dialect (`Limits::fit_schema`).
    pub schemas: Vec<DataSchema>,
    #[serde(with = "super::rfc3339")]
    pub created_at: DateTime<Utc>,
    /// Phase 1 reads this DynamoDB export in place of scanning the table; absent in plans of
    /// scanning runs (and in every plan written before exports could be loaded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<super::export::ExportSource>,
    /// Set in the plan of an increment run: the window of changes it applies and the served run
    /// it builds on; `export` is then the incremental export holding them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub increment: Option<super::increment::IncrementSpec>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("run plan {key} is not valid: {problem}")]
    Invalid { key: String, problem: String },
    #[error("run {run_id} was planned differently: {difference}. Use a new --run-id, or repeat the run's original settings")]
    Conflict { run_id: String, difference: String },
    #[error("run {run_id} has no plan at {url}; plan it first (dynamo-etl plan, run or segment with --table), or check --run-id, --bucket and --prefix")]
    Missing { run_id: String, url: String },
}

impl Classify for PlanError {
    fn class(&self) -> Class {
        match self {
            PlanError::Store(e) => e.class(),
            PlanError::Invalid { .. } | PlanError::Conflict { .. } | PlanError::Missing { .. } => {
                Class::Fatal
            }
        }
    }
}

impl RunPlan {
    pub fn schema_set(&self) -> Result<SchemaSet, PlanError> {
        SchemaSet::new(
            &self.source_table,
            self.schemas.clone(),
            &format!("run {}", self.run_id),
        )
        .map_err(|e| PlanError::Invalid {
            key: format!("run {}", self.run_id),
            problem: e.to_string(),
        })
    }

    /// A digest of what shapes the run's parts: source table, key, dialect and data-schemas.
    /// Checkpoints carry it, so parts written for one plan are never resumed under another.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let mut shape = serde_json::json!({
            "source_table": self.source_table,
            "key_attributes": self.key_attributes,
            "dialect": self.dialect,
            "schemas": self.schemas,
        });
        // Only a run from an export has it, so the fingerprints of scanning runs stay as they were.
        if let Some(export) = &self.export {
            shape["export"] = serde_json::json!(export);
        }
        if let Some(increment) = &self.increment {
            shape["increment"] = serde_json::json!(increment);
        }
        let digest = sha2::Sha256::digest(shape.to_string().as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// What differs between two plans, ignoring when they were made.
    fn difference(&self, other: &RunPlan) -> Option<String> {
        if self.source_table != other.source_table {
            return Some(format!(
                "source table {} vs {}",
                self.source_table, other.source_table
            ));
        }
        if self.total_segments != other.total_segments {
            return Some(format!(
                "{} total segments vs {}",
                self.total_segments, other.total_segments
            ));
        }
        if self.dialect != other.dialect {
            return Some(format!("for {} vs {}", self.dialect, other.dialect));
        }
        if self.key_attributes != other.key_attributes {
            return Some("different key attributes".into());
        }
        if self.export != other.export {
            let what = |e: &Option<super::export::ExportSource>| match e {
                Some(e) => format!("export {}", e.url()),
                None => "a scan".to_string(),
            };
            return Some(format!(
                "read from {} vs {}",
                what(&self.export),
                what(&other.export)
            ));
        }
        if self.increment != other.increment {
            let what = |i: &Option<super::increment::IncrementSpec>| match i {
                Some(i) => format!("the increment {} to {} on run {}", i.from, i.to, i.base_run),
                None => "a full copy".to_string(),
            };
            return Some(format!(
                "{} vs {}",
                what(&self.increment),
                what(&other.increment)
            ));
        }
        if self.schema_source != other.schema_source || self.schemas != other.schemas {
            return Some(format!(
                "data-schemas from {} vs {}",
                self.schema_source, other.schema_source
            ));
        }
        None
    }

    pub async fn load(staging: &Staging, run_id: &str) -> Result<Option<RunPlan>, PlanError> {
        let key = staging.layout.run_plan(run_id);
        let Some(bytes) = staging.store.get(&key).await? else {
            return Ok(None);
        };
        let invalid = |problem: String| PlanError::Invalid {
            key: staging.url(&key),
            problem,
        };
        let plan: RunPlan = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        if plan.format != PLAN_FORMAT {
            return Err(invalid(format!(
                "it has format {} (this version reads {PLAN_FORMAT})",
                plan.format
            )));
        }
        if plan.run_id != run_id {
            return Err(invalid(format!("it belongs to run {}", plan.run_id)));
        }
        plan.schema_set()?;
        Ok(Some(plan))
    }

    pub async fn require(staging: &Staging, run_id: &str) -> Result<RunPlan, PlanError> {
        RunPlan::load(staging, run_id)
            .await?
            .ok_or_else(|| PlanError::Missing {
                run_id: run_id.to_string(),
                url: staging.url(&staging.layout.run_plan(run_id)),
            })
    }

    /// Every warehouse table of the run: its data-schemas, `_unclassified`, then `_overflow` —
    /// or, for an increment run, their increment layout (`staging::increment`), which is what
    /// the run stages and loads.
    pub fn warehouse_tables(&self) -> Vec<DataSchema> {
        let tables = self.served_tables();
        match &self.increment {
            // The layout was checked when the increment was planned.
            Some(_) => super::increment::tables(&tables, &self.key_attributes).unwrap_or(tables),
            None => tables,
        }
    }

    /// The tables a target serves after this run (or the one an increment builds on): the
    /// data-schemas, `_unclassified`, then `_overflow`.
    pub fn served_tables(&self) -> Vec<DataSchema> {
        let mut tables = self.schemas.clone();
        tables.push(crate::schema::unclassified_schema(
            &self.source_table,
            &self.key_attributes,
        ));
        tables.push(crate::schema::overflow_schema(&self.source_table));
        tables
    }

    /// Stores this plan unless the run already has one; an existing plan must agree with this one
    /// (apart from its creation time) and is returned instead. The write is conditional, so of two
    /// jobs planning the same run at once exactly one plan wins and the other is compared with it.
    pub async fn store_once(self, staging: &Staging) -> Result<RunPlan, PlanError> {
        let text = serde_json::to_string_pretty(&self).expect("plan serialises");
        if staging
            .store
            .put_if_absent(
                &staging.layout.run_plan(&self.run_id),
                text.into(),
                "application/json",
            )
            .await?
        {
            return Ok(self);
        }
        let existing = RunPlan::require(staging, &self.run_id).await?;
        match existing.difference(&self) {
            None => Ok(existing),
            Some(difference) => Err(PlanError::Conflict {
                run_id: self.run_id.clone(),
                difference,
            }),
        }
    }
}
