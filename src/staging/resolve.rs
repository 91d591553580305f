//! Which data-schemas a run uses, decided in one place so every phase agrees.
//!
//! Order:
//! 1. the data-schemas pinned in the run's plan, when the run already has one (a snapshot
//!    activated mid-run changes nothing for that run);
//! 2. else the active snapshot of the schema cache (see [`super::schema_cache`]);
//! 3. else the reviewed static folder (`schemas/<source-table>/`).
//!
//! The choice and its reason are logged as one info line. A cache that cannot be reached is not
//! fatal: the static folder is used and a warning says so, the way a cache service outage should
//! only cost freshness, not the night's run.

use std::path::PathBuf;

use super::plan::RunPlan;
use super::schema_cache::SnapshotCache;
use crate::error::{Class, Classify};
use crate::schema::{SchemaError, SchemaSet, SchemaSource};

/// The outcome: the data-schemas, where they came from and why that source was chosen.
#[derive(Debug, Clone)]
pub struct Resolution {
    pub schemas: SchemaSet,
    pub source: SchemaSource,
    pub reason: String,
    /// Every warning logged on the way (skipped snapshots, an unreachable cache).
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The static folder exists but holds something invalid.
    #[error(transparent)]
    Static(#[from] SchemaError),
    #[error("no data-schemas for table {table}: {cache}, and {dir}/{table}/ does not exist. Run `dynamo-etl infer-schema --table {table}`, or add reviewed files under {dir}/{table}/")]
    NotFound {
        table: String,
        cache: String,
        dir: String,
    },
    #[error("no data-schemas for table {table}: the schema cache is unreachable ({detail}) and {dir}/{table}/ does not exist. Retry when S3 answers, or add reviewed files under {dir}/{table}/")]
    CacheDown {
        table: String,
        detail: String,
        dir: String,
        retriable: bool,
    },
    #[error("run {run_id}: its plan cannot be used: {problem}")]
    Pinned { run_id: String, problem: String },
}

impl Classify for ResolveError {
    fn class(&self) -> Class {
        match self {
            ResolveError::CacheDown {
                retriable: true, ..
            } => Class::Retry,
            _ => Class::Fatal,
        }
    }
}

impl ResolveError {
    /// True when nothing exists yet for the table (as opposed to something broken).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ResolveError::NotFound { .. })
    }
}

/// Resolves data-schemas for source tables from one staging area and one static folder.
#[derive(Clone)]
pub struct SchemaResolver {
    cache: Option<SnapshotCache>,
    static_dir: PathBuf,
}

impl SchemaResolver {
    /// `cache: None` means the cache is switched off (`--no-schema-cache`).
    pub fn new(cache: Option<SnapshotCache>, static_dir: impl Into<PathBuf>) -> Self {
        SchemaResolver {
            cache,
            static_dir: static_dir.into(),
        }
    }

    /// The data-schemas for `source_table`: `pinned`'s when given, else the cache's active
    /// snapshot, else the static folder.
    pub async fn resolve(
        &self,
        source_table: &str,
        pinned: Option<&RunPlan>,
    ) -> Result<Resolution, ResolveError> {
        if let Some(plan) = pinned {
            return pinned_resolution(plan);
        }
        let mut warnings = Vec::new();
        let mut unreachable = None;
        let why_static = match &self.cache {
            None => "the schema cache is switched off (--no-schema-cache)".to_string(),
            Some(cache) => match cache.active(source_table).await {
                Ok(lookup) => {
                    warnings.extend(lookup.skipped.iter().map(ToString::to_string));
                    if let Some(snapshot) = lookup.active {
                        let mut reason = format!(
                            "newest valid snapshot of table {source_table} in {}",
                            cache.location()
                        );
                        if !lookup.skipped.is_empty() {
                            reason.push_str(&format!(
                                "; {} newer snapshot(s) skipped as invalid (see the warnings)",
                                lookup.skipped.len()
                            ));
                        }
                        return Ok(chosen(
                            source_table,
                            snapshot.schemas,
                            SchemaSource::Snapshot(snapshot.id),
                            reason,
                            warnings,
                        ));
                    }
                    if lookup.skipped.is_empty() {
                        format!(
                            "the schema cache {} has no snapshot of table {source_table}",
                            cache.location()
                        )
                    } else {
                        format!(
                            "none of the {} snapshot(s) of table {source_table} in {} is valid",
                            lookup.skipped.len(),
                            cache.location()
                        )
                    }
                }
                Err(e) => {
                    let warning = format!(
                        "the schema cache {} is unreachable ({e}); continuing with the static data-schemas in {}",
                        cache.location(),
                        self.static_dir.display()
                    );
                    tracing::warn!(table = source_table, cache = %cache.location(), error = %e,
                        static_dir = %self.static_dir.display(),
                        "schema cache unreachable; falling back to the static data-schemas");
                    warnings.push(warning);
                    unreachable = Some(e);
                    format!("the schema cache {} is unreachable", cache.location())
                }
            },
        };
        match SchemaSet::read_dir(&self.static_dir, source_table) {
            Ok(schemas) => Ok(chosen(
                source_table,
                schemas,
                SchemaSource::Static(self.static_dir.clone()),
                why_static,
                warnings,
            )),
            Err(SchemaError::NoneForTable { .. }) => {
                let dir = self.static_dir.display().to_string();
                Err(match unreachable {
                    Some(e) => ResolveError::CacheDown {
                        table: source_table.to_string(),
                        retriable: e.class() == Class::Retry,
                        detail: e.to_string(),
                        dir,
                    },
                    None => ResolveError::NotFound {
                        table: source_table.to_string(),
                        cache: why_static,
                        dir,
                    },
                })
            }
            Err(e) => Err(e.into()),
        }
    }
}

fn pinned_resolution(plan: &RunPlan) -> Result<Resolution, ResolveError> {
    let schemas = plan.schema_set().map_err(|e| ResolveError::Pinned {
        run_id: plan.run_id.clone(),
        problem: e.to_string(),
    })?;
    Ok(chosen(
        &plan.source_table,
        schemas,
        plan.schema_source.clone(),
        format!("pinned by the plan of run {}", plan.run_id),
        Vec::new(),
    ))
}

/// Logs the one line saying what was chosen and why.
fn chosen(
    table: &str,
    schemas: SchemaSet,
    source: SchemaSource,
    reason: String,
    warnings: Vec<String>,
) -> Resolution {
    tracing::info!(table, source = %source, reason = %reason, tables = schemas.schemas.len(),
        "data-schemas chosen");
    Resolution {
        schemas,
        source,
        reason,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_a_cache_the_static_folder_is_used_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let resolver = SchemaResolver::new(None, dir.path());
        let err = resolver.resolve("t", None).await.unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert!(err.to_string().contains("--no-schema-cache"), "{err}");
        assert!(err.to_string().contains("infer-schema --table t"), "{err}");

        let folder = dir.path().join("t");
        std::fs::create_dir_all(&folder).unwrap();
        let schema = crate::schema::DataSchema {
            format: crate::schema::FORMAT_VERSION,
            source_table: "t".into(),
            table: "t".into(),
            rule: None,
            columns: vec![],
        };
        std::fs::write(folder.join("t.json"), schema.to_pretty_json()).unwrap();
        let found = resolver.resolve("t", None).await.unwrap();
        assert_eq!(found.source, SchemaSource::Static(dir.path().to_path_buf()));
        assert!(found.reason.contains("switched off"), "{}", found.reason);
        assert!(found.warnings.is_empty());
    }
}
