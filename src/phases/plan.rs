//! Planning a run: its id, the source table's key, its data-schemas (resolved once and pinned),
//! stored as `run.json` exactly once. Every later phase of the run reads that plan; phase 1 and
//! `run` plan a run that has none yet, or resume the one that exists.

use std::path::PathBuf;

use crate::error::Error;
use crate::schema::{DataSchema, DialectName};
use crate::source::export::ExportSource;
use crate::source::key_attributes;
use crate::staging::check_run_id;
use crate::staging::plan::{RunPlan, PLAN_FORMAT};
use crate::staging::resolve::SchemaResolver;
use crate::staging::runs::list_runs;
use crate::staging::schema_cache::SnapshotCache;
use crate::warehouse::WarehouseState;

use super::Context;

/// Where a new run's data-schemas come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaOptions {
    /// The reviewed static folder (`<dir>/<table>/*.json`), the fallback.
    pub dir: PathBuf,
    /// Whether the schema cache is consulted first.
    pub use_cache: bool,
}

/// The run id a command was given: `--run-id`, else one derived from `AWS_BATCH_JOB_ID` (so all
/// jobs of a Batch execution agree).
pub fn given_run_id(flag: Option<&str>) -> Option<String> {
    if let Some(id) = flag.filter(|id| !id.is_empty()) {
        return Some(id.to_string());
    }
    let job = std::env::var("AWS_BATCH_JOB_ID").ok()?;
    // Array children carry `<uuid>:<index>`; the run is the parent's.
    let parent = job.split(':').next().unwrap_or_default();
    (!parent.is_empty()).then(|| format!("batch-{parent}"))
}

/// A fresh run id: the UTC time to the millisecond and a few random hex digits, so ids sort by
/// time and two runs started in the same millisecond still differ.
pub fn new_run_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let now = chrono::Utc::now();
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(now.timestamp_nanos_opt().unwrap_or_default());
    h.write_u32(std::process::id());
    format!(
        "{}-{:04x}",
        now.format("%Y%m%dT%H%M%S%.3fZ"),
        h.finish() & 0xffff
    )
}

/// What `run` continues when no run id is given: the newest run of `table` that is not swapped
/// in and was planned after the run the target serves (`state`, when the warehouse could be
/// read). `None`: there is none, start a new run.
pub async fn resumable_run(
    ctx: &Context,
    table: &str,
    state: Option<&WarehouseState>,
) -> Result<Option<String>, Error> {
    let served = |r: &str| {
        state.is_some_and(|s| {
            [&s.serving, &s.previous]
                .into_iter()
                .flatten()
                .any(|m| m.run_id == r)
        })
    };
    let served_at = state
        .and_then(|s| s.serving.as_ref())
        .and_then(|m| m.planned_at.time());
    let newer = |created: &chrono::DateTime<chrono::Utc>| served_at.is_none_or(|s| *created > s);
    Ok(list_runs(ctx.staging()?)
        .await?
        .into_iter()
        .rev()
        .filter(|r| r.swap.is_none() && !served(&r.run_id))
        .find(|r| {
            r.plan.as_ref().is_some_and(|p| {
                p.source_table == table && p.increment.is_none() && newer(&p.created_at)
            })
        })
        .map(|r| r.run_id))
}

/// The resolver of the schema cache (unless switched off) and the static folder.
pub fn resolver(ctx: &Context, schemas: &SchemaOptions) -> Result<SchemaResolver, Error> {
    let cache = match schemas.use_cache {
        true => Some(SnapshotCache::new(ctx.staging()?.clone())),
        false => None,
    };
    Ok(SchemaResolver::new(cache, &schemas.dir))
}

/// Pins a new run (or returns its plan when it was already planned the same way).
pub async fn plan_new(
    ctx: &Context,
    run_id: &str,
    table: &str,
    total_segments: u32,
    schemas: &SchemaOptions,
    dialect: DialectName,
    export: Option<ExportSource>,
) -> Result<RunPlan, Error> {
    check_run_id(run_id).map_err(Error::fatal)?;
    if let Some(source) = &export {
        super::export::check_for(ctx, source, table).await?;
    }
    let chosen = resolver(ctx, schemas)?.resolve(table, None).await?;
    let keys = key_attributes(&ctx.dynamodb, table, &ctx.retry).await?;
    let plan = RunPlan {
        format: PLAN_FORMAT,
        run_id: run_id.to_string(),
        source_table: table.to_string(),
        total_segments,
        dialect,
        key_attributes: keys,
        schema_source: chosen.source,
        schemas: fitted(run_id, &chosen.schemas.schemas, dialect),
        created_at: chrono::Utc::now(),
        export,
        increment: None,
    };
    Ok(plan.store_once(ctx.staging()?).await?)
}

/// The data-schemas as a run for `dialect` uses them (see `Limits::fit_schema`); a table that
/// loses columns to the dialect's column cap is logged, since its rarest attributes then land in
/// `_extra`.
pub(crate) fn fitted(
    run_id: &str,
    schemas: &[DataSchema],
    dialect: DialectName,
) -> Vec<DataSchema> {
    let limits = crate::warehouse::limits(dialect);
    schemas
        .iter()
        .map(|s| {
            let (fitted, dropped) = limits.fit_schema(s);
            if dropped > 0 {
                tracing::warn!(run_id, table = %s.table, dropped, cap = limits.column_cap, %dialect,
                    "table {} has {} columns, more than {dialect} runs give a table: the last {dropped} are kept in _extra", s.table, s.columns.len());
            }
            fitted
        })
        .collect()
}

/// What a phase that may start a run asks for.
#[derive(Debug, Clone)]
pub struct RunRequest<'a> {
    pub run_id: &'a str,
    /// Needed to plan a new run; checked against an existing plan.
    pub table: Option<&'a str>,
    /// Needed to plan a new run; checked against an existing plan.
    pub total_segments: Option<u32>,
    /// Used for a new run when `total_segments` is not given.
    pub default_total_segments: Option<u32>,
    pub schemas: &'a SchemaOptions,
    /// The warehouse a new run is for; checked against an existing plan. Required to plan.
    pub dialect: Option<DialectName>,
}

/// A plan and whether it existed before.
#[derive(Debug, Clone)]
pub struct Planned {
    pub plan: RunPlan,
    pub resumed: bool,
}

/// The run's plan when it has one (checked against what the caller expects), else a new plan.
pub async fn plan_or_resume(ctx: &Context, request: RunRequest<'_>) -> Result<Planned, Error> {
    let run_id = request.run_id;
    check_run_id(run_id).map_err(Error::fatal)?;
    if let Some(plan) = RunPlan::load(ctx.staging()?, run_id).await? {
        if let Some(total) = request.total_segments.filter(|t| *t != plan.total_segments) {
            return Err(Error::fatal(format!(
                "run {run_id} was planned with {} total segments, not {total}; use {}",
                plan.total_segments, plan.total_segments
            )));
        }
        if let Some(dialect) = request.dialect.filter(|d| *d != plan.dialect) {
            return Err(dialect_mismatch(&plan, dialect));
        }
        if let Some(table) = request.table.filter(|t| *t != plan.source_table) {
            return Err(Error::fatal(format!(
                "run {run_id} copies table {}, not {table}; use a new --run-id for another table",
                plan.source_table
            )));
        }
        // Logs that the run's pinned data-schemas are used.
        resolver(ctx, request.schemas)?
            .resolve(&plan.source_table, Some(&plan))
            .await?;
        return Ok(Planned {
            plan,
            resumed: true,
        });
    }
    let table = request.table.ok_or_else(|| {
        Error::fatal(format!(
            "run {run_id} has no plan yet; pass --table (or set ETL_TABLE) to plan it"
        ))
    })?;
    let total = request
        .total_segments
        .or(request.default_total_segments)
        .ok_or_else(|| {
            Error::fatal(format!(
                "run {run_id} has no plan yet; pass --total-segments to plan it"
            ))
        })?;
    let dialect = request.dialect.ok_or_else(|| {
        Error::fatal(format!(
            "run {run_id} has no plan yet; pass --dialect postgres|redshift (the warehouse it is for: phase 1 shapes values by its limits), or set ETL_WAREHOUSE_URL"
        ))
    })?;
    let plan = plan_new(ctx, run_id, table, total, request.schemas, dialect, None).await?;
    Ok(Planned {
        plan,
        resumed: false,
    })
}

/// The refusal to use `plan`'s run with another dialect than the one it was planned for.
pub fn dialect_mismatch(plan: &RunPlan, dialect: DialectName) -> Error {
    Error::fatal(format!(
        "run {} was planned for {} (phase 1 shaped its values for that warehouse), not {dialect}; plan a new run for {dialect} (a new --run-id, with --dialect {dialect})",
        plan.run_id, plan.dialect
    ))
}

/// Refuses to load `plan`'s run into a warehouse of another dialect.
/// Fails for the plan of an increment run: its parts are the increment layout, which only
/// `increment` stages (in a schema of its own) and applies; preparing, loading or swapping it
/// as a full copy would replace the served tables with it.
pub fn check_full_copy(plan: &RunPlan) -> Result<(), Error> {
    match &plan.increment {
        None => Ok(()),
        Some(spec) => Err(Error::fatal(format!(
            "run {} is an increment ({} to {} on run {}), not a full copy: prepare, upload, replace and run do not take it; `dynamo-etl increment --table {}` stages and applies it",
            plan.run_id, spec.from, spec.to, spec.base_run, plan.source_table
        ))),
    }
}

pub fn check_dialect(plan: &RunPlan, dialect: DialectName) -> Result<(), Error> {
    match plan.dialect == dialect {
        true => Ok(()),
        false => Err(dialect_mismatch(plan, dialect)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Column, DataSchema, LogicalType, FORMAT_VERSION};
    use crate::staging::{Layout, Staging};
    use crate::storage::memory::MemoryStore;
    use std::sync::Arc;

    #[test]
    fn run_ids_come_from_the_flag_then_batch_else_a_new_one() {
        assert_eq!(given_run_id(Some("given")).as_deref(), Some("given"));
        // SAFETY of the env change: this is the only test touching AWS_BATCH_JOB_ID.
        unsafe { std::env::set_var("AWS_BATCH_JOB_ID", "4c7e-11aa:3") };
        assert_eq!(given_run_id(None).as_deref(), Some("batch-4c7e-11aa"));
        unsafe { std::env::remove_var("AWS_BATCH_JOB_ID") };
        assert_eq!(given_run_id(None), None);
        let (a, b) = (new_run_id(), new_run_id());
        assert!(check_run_id(&a).is_ok(), "{a}");
        assert_ne!(a, b, "two new runs never share an id");
        assert_eq!(a.len(), "20261201T155538.123Z-1a2b".len(), "{a}");
    }

    fn plan(run_id: &str, total: u32) -> RunPlan {
        RunPlan {
            total_segments: total,
            schemas: vec![DataSchema {
                format: FORMAT_VERSION,
                source_table: "t".into(),
                table: "t".into(),
                rule: None,
                columns: vec![Column {
                    attribute: "pk".into(),
                    column: "pk".into(),
                    logical_type: LogicalType::Text { max_bytes: 8 },
                    nullable: false,
                }],
            }],
            created_at: "2026-12-01T00:00:00Z".parse().unwrap(),
            ..crate::testkit::runs::plan(run_id)
        }
    }

    fn staging() -> Staging {
        Staging::new(Arc::new(MemoryStore::new("b")), Layout::new("p"))
    }

    #[tokio::test]
    async fn a_plan_is_stored_once_and_a_different_one_is_refused() {
        let staging = staging();
        let first = plan("r1", 4).store_once(&staging).await.unwrap();
        // The same settings later: the stored plan is returned, with its original time.
        let mut again = plan("r1", 4);
        again.created_at = "2026-12-02T00:00:00Z".parse().unwrap();
        assert_eq!(again.store_once(&staging).await.unwrap(), first);
        let err = plan("r1", 8).store_once(&staging).await.unwrap_err();
        assert!(err.to_string().contains("4 total segments vs 8"), "{err}");
        let loaded = RunPlan::require(&staging, "r1").await.unwrap();
        assert_eq!(loaded, first);
        let missing = RunPlan::require(&staging, "r2").await.unwrap_err();
        assert!(
            missing.to_string().contains("s3://b/p/runs/r2/run.json"),
            "{missing}"
        );
    }

    #[tokio::test]
    async fn a_plan_from_an_export_names_it_and_old_plans_still_read() {
        let staging = staging();
        let scan = plan("r1", 2);
        let text = serde_json::to_value(&scan).unwrap();
        assert!(
            text.get("export").is_none(),
            "a scanning run's plan is written as before"
        );
        let mut from_export = plan("r1", 2);
        from_export.export = Some(
            crate::source::export::ExportSource::parse_url("s3://e/x/AWSDynamoDB/01-ab").unwrap(),
        );
        assert_ne!(scan.fingerprint(), from_export.fingerprint());
        let stored = from_export.clone().store_once(&staging).await.unwrap();
        assert_eq!(RunPlan::require(&staging, "r1").await.unwrap(), stored);
        let err = scan.clone().store_once(&staging).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("export s3://e/x/AWSDynamoDB/01-ab vs a scan"),
            "{err}"
        );
        // A plan written before exports existed has no such field.
        staging
            .store
            .put(
                &staging.layout.run_plan("old"),
                serde_json::to_string(&plan("old", 2)).unwrap().into(),
                "application/json",
            )
            .await
            .unwrap();
        assert_eq!(
            RunPlan::require(&staging, "old").await.unwrap().export,
            None
        );
    }

    #[tokio::test]
    async fn a_plan_under_another_run_id_or_format_is_not_used() {
        let staging = staging();
        let text = serde_json::to_string(&plan("other", 2)).unwrap();
        staging
            .store
            .put(
                &staging.layout.run_plan("r1"),
                text.into(),
                "application/json",
            )
            .await
            .unwrap();
        let err = RunPlan::load(&staging, "r1").await.unwrap_err();
        assert!(err.to_string().contains("belongs to run other"), "{err}");
        let mut future = serde_json::to_value(plan("r3", 2)).unwrap();
        future["format"] = 99.into();
        staging
            .store
            .put(
                &staging.layout.run_plan("r3"),
                future.to_string().into(),
                "application/json",
            )
            .await
            .unwrap();
        let err = RunPlan::load(&staging, "r3").await.unwrap_err();
        assert!(err.to_string().contains("format 99"), "{err}");
    }
}
