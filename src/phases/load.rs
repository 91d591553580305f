//! Phases 2–4 and rollback: prepare a pristine staging schema, load each segment exactly once,
//! and swap staging in — only when every segment is loaded and every count matches — keeping the
//! previous generation for rollback.
//!
//! The SQL of each step is built by pure functions (`*_statements`) so `--dry-run` and the golden
//! tests see exactly what is executed.

use sqlx::{Connection, PgConnection};
use std::collections::{BTreeMap, BTreeSet};

use crate::retry::RetryPolicy;
use crate::schema::DataSchema;
use crate::stage::manifest::SegmentManifest;
use crate::stage::plan::RunPlan;
use crate::stage::store::{ObjectStore, PartReader};
use crate::stage::Layout;
use crate::transform::unclassified_schema;
use crate::warehouse::{
    connect, create_table_sql, execute, qualified, query_strings, quote_ident, quote_literal,
    schema_exists, CopyTarget, Dialect, DialectName, WarehouseConfig, WarehouseError, LEDGER_TABLE,
    RUN_TABLE,
};

/// All warehouse tables of a run: its data-schemas plus `_unclassified`.
pub fn run_tables(plan: &RunPlan) -> Vec<DataSchema> {
    let mut tables = plan.schemas.clone();
    tables.push(unclassified_schema(
        &plan.source_table,
        &plan.key_attributes,
    ));
    tables
}

/// Phase 2: drop and re-create the staging schema with one table per data-schema, the ledger and
/// the run marker. Never touches the target or previous schemas.
pub fn prepare_statements(
    dialect: &dyn Dialect,
    config: &WarehouseConfig,
    plan: &RunPlan,
) -> Vec<String> {
    let staging = config.staging();
    let mut out = vec![
        format!("DROP SCHEMA IF EXISTS {} CASCADE", quote_ident(&staging)),
        format!("CREATE SCHEMA {}", quote_ident(&staging)),
    ];
    for table in run_tables(plan) {
        out.push(create_table_sql(dialect, &staging, &table));
    }
    out.push(format!(
        "CREATE TABLE {} (segment INTEGER NOT NULL PRIMARY KEY, run_id VARCHAR(100) NOT NULL, loaded_at TIMESTAMPTZ NOT NULL, row_count BIGINT NOT NULL, table_counts VARCHAR(65535) NOT NULL)",
        qualified(&staging, LEDGER_TABLE)
    ));
    out.push(format!(
        "CREATE TABLE {} (run_id VARCHAR(100) NOT NULL, source_table VARCHAR(255) NOT NULL, total_segments INTEGER NOT NULL, schema_source VARCHAR(1024) NOT NULL, prepared_at TIMESTAMPTZ NOT NULL)",
        qualified(&staging, RUN_TABLE)
    ));
    out.push(format!(
        "INSERT INTO {} (run_id, source_table, total_segments, schema_source, prepared_at) VALUES ({}, {}, {}, {}, {})",
        qualified(&staging, RUN_TABLE),
        quote_literal(&plan.run_id),
        quote_literal(&plan.source_table),
        plan.total_segments,
        quote_literal(&plan.schema_source),
        dialect.now()
    ));
    out
}

/// Runs phase 2 in one transaction.
pub async fn prepare(
    dialect: &dyn Dialect,
    config: &WarehouseConfig,
    plan: &RunPlan,
) -> Result<(), WarehouseError> {
    let mut conn = connect(config, dialect).await?;
    let mut tx = conn
        .begin()
        .await
        .map_err(|e| WarehouseError::sql("BEGIN", &e))?;
    for statement in prepare_statements(dialect, config, plan) {
        execute(&mut tx, &statement, "preparing the staging schema").await?;
    }
    tx.commit()
        .await
        .map_err(|e| WarehouseError::sql("committing the staging schema", &e))?;
    Ok(())
}

/// The run a staging (or target) schema was prepared for, if it has a run marker.
pub async fn prepared_run(
    conn: &mut PgConnection,
    schema: &str,
) -> Result<Option<String>, WarehouseError> {
    // No row when the schema is missing too: one lookup answers both.
    let exists = query_strings(
        conn,
        &format!(
            "SELECT tablename::varchar FROM pg_tables WHERE schemaname = {} AND tablename = {}",
            quote_literal(schema),
            quote_literal(RUN_TABLE)
        ),
        "looking up the run marker",
    )
    .await?;
    if exists.is_empty() {
        return Ok(None);
    }
    let rows = query_strings(
        conn,
        &format!("SELECT run_id FROM {}", qualified(schema, RUN_TABLE)),
        "reading the run marker",
    )
    .await?;
    Ok(rows.first().and_then(|r| r.first().cloned().flatten()))
}

/// What phase 3 did for one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadOutcome {
    Loaded {
        rows: u64,
        tables: BTreeMap<String, u64>,
    },
    AlreadyLoaded,
}

/// Phase 3 for one segment: in one transaction, claim the segment in the ledger (or find it
/// loaded already), copy every part, check the counts against the manifest, record them, commit.
pub async fn upload(
    dialect: &dyn Dialect,
    config: &WarehouseConfig,
    store: &ObjectStore,
    layout: &Layout,
    plan: &RunPlan,
    segment: u32,
) -> Result<UploadOutcome, WarehouseError> {
    let run_id = &plan.run_id;
    let staging = config.staging();
    // The manifest comes from S3 while the warehouse connection is set up.
    let connected = async {
        let mut conn = connect(config, dialect).await?;
        let prepared = prepared_run(&mut conn, &staging).await?;
        Ok::<_, WarehouseError>((conn, prepared))
    };
    // The reader starts on the first part as soon as the manifest names it, for dialects that
    // read the parts through it.
    let with_reader = async {
        let manifest = read_manifest(store, layout, run_id, segment).await?;
        let keys = match &manifest {
            Some(m) if dialect.streams_parts() => m
                .tables
                .values()
                .flat_map(|t| t.files.iter().map(|f| f.key.clone()))
                .collect(),
            _ => Vec::new(),
        };
        Ok::<_, WarehouseError>((manifest, PartReader::new(store.clone(), keys)))
    };
    let ((manifest, reader), (mut conn, prepared)) = tokio::try_join!(with_reader, connected)?;
    let manifest = manifest.ok_or_else(|| {
        WarehouseError::Refused(format!(
            "segment {segment} of run {run_id} has no manifest (phase 1 did not commit it); run: dynamo-etl retry phase-1 {} {segment} --run-id {run_id}",
            plan.total_segments
        ))
    })?;
    let tables = run_tables(plan);
    match prepared {
        Some(r) if &r == run_id => {}
        found => {
            return Err(WarehouseError::Refused(format!(
                "staging schema {staging} is {}; run: dynamo-etl prepare --run-id {run_id}",
                match found {
                    Some(other) => format!("prepared for run {other}, not {run_id}"),
                    None => "not prepared".to_string(),
                }
            )))
        }
    }
    let mut tx = conn
        .begin()
        .await
        .map_err(|e| WarehouseError::sql("BEGIN", &e))?;
    let claim = dialect.claim_segment(&staging, run_id, segment);
    let mut claimed = 0;
    for statement in &claim {
        claimed = execute(&mut tx, statement, "claiming the segment in the ledger").await?;
    }
    if claimed == 0 {
        tx.rollback()
            .await
            .map_err(|e| WarehouseError::sql("ROLLBACK", &e))?;
        return Ok(UploadOutcome::AlreadyLoaded);
    }
    let scratch = format!("{}load/{segment}/", layout.run(run_id));
    let mut loaded = BTreeMap::new();
    let mut total = 0;
    for (name, output) in &manifest.tables {
        if output.files.is_empty() {
            loaded.insert(name.clone(), 0);
            continue;
        }
        let table = tables.iter().find(|t| &t.table == name).ok_or_else(|| {
            WarehouseError::Refused(format!(
                "segment {segment} of run {run_id} has parts for table {name}, which the run's plan does not have; re-run phase 1: dynamo-etl retry phase-1 {} {segment} --run-id {run_id}",
                plan.total_segments
            ))
        })?;
        let started = std::time::Instant::now();
        let target = CopyTarget {
            schema: &staging,
            table,
            files: &output.files,
            scratch_prefix: &scratch,
            reader: &reader,
        };
        let copied = match dialect.copy_parts(&mut tx, store, config, target).await {
            Ok(n) => n,
            Err(e) => {
                let _ = tx.rollback().await;
                return Err(explain(dialect, &mut conn, e).await);
            }
        };
        if copied != output.rows {
            let _ = tx.rollback().await;
            return Err(WarehouseError::Refused(format!(
                "segment {segment} of run {run_id}: table {name} loaded {copied} rows but the manifest has {}; nothing was committed. Re-run phase 1 then phase 3: dynamo-etl retry phase-1 {} {segment} --run-id {run_id} && dynamo-etl retry phase-3 {segment} --run-id {run_id}",
                output.rows, plan.total_segments
            )));
        }
        tracing::info!(run_id, segment, table = %name, rows = copied, files = output.files.len(),
            ms = started.elapsed().as_millis() as u64, "table loaded");
        loaded.insert(name.clone(), copied);
        total += copied;
    }
    let summary = serde_json::to_string(&loaded).expect("counts serialise");
    execute(
        &mut tx,
        &record_segment_statement(dialect, &staging, segment, total, &summary),
        "recording the segment in the ledger",
    )
    .await?;
    tx.commit()
        .await
        .map_err(|e| WarehouseError::sql("committing the segment", &e))?;
    Ok(UploadOutcome::Loaded {
        rows: total,
        tables: loaded,
    })
}

/// Completes a segment's ledger row with what was loaded (`tables` is a JSON object of counts).
pub fn record_segment_statement(
    dialect: &dyn Dialect,
    staging: &str,
    segment: u32,
    rows: u64,
    tables: &str,
) -> String {
    format!(
        "UPDATE {} SET row_count = {rows}, table_counts = {}, loaded_at = {} WHERE segment = {segment}",
        qualified(staging, LEDGER_TABLE),
        quote_literal(tables),
        dialect.now()
    )
}

/// Adds the warehouse's own account of a failed load (Redshift's load error tables).
async fn explain(
    dialect: &dyn Dialect,
    conn: &mut PgConnection,
    err: WarehouseError,
) -> WarehouseError {
    if dialect.name() != DialectName::Redshift {
        return err;
    }
    match (
        err,
        crate::warehouse::redshift::load_error_report(conn).await,
    ) {
        (
            WarehouseError::Load {
                table,
                part,
                detail,
                retriable,
            },
            Some(report),
        ) => WarehouseError::Load {
            table,
            part,
            detail: format!("{detail}\nRedshift load errors:\n{report}"),
            retriable,
        },
        (other, _) => other,
    }
}

async fn read_manifest(
    store: &ObjectStore,
    layout: &Layout,
    run_id: &str,
    segment: u32,
) -> Result<Option<SegmentManifest>, WarehouseError> {
    let key = layout.segment_manifest(run_id, segment);
    match store.get(&key).await? {
        None => Ok(None),
        Some(bytes) => SegmentManifest::from_json(&bytes, &key)
            .map(Some)
            .map_err(WarehouseError::Refused),
    }
}

/// Why `replace` refused, with what fixes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateRefusal {
    pub problems: Vec<String>,
    pub commands: Vec<String>,
}

impl std::fmt::Display for GateRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.problems.join("; "))?;
        if !self.commands.is_empty() {
            write!(f, "\nrun:\n  {}", self.commands.join("\n  "))?;
        }
        Ok(())
    }
}

/// The swap, after the gate passed: previous dropped, target → previous, staging → target,
/// grants re-applied, then the configured post-swap SQL.
pub fn swap_statements(config: &WarehouseConfig, target_exists: bool) -> Vec<String> {
    let (target, staging, previous) = (config.target.as_str(), config.staging(), config.previous());
    let mut out = vec![format!(
        "DROP SCHEMA IF EXISTS {} CASCADE",
        quote_ident(&previous)
    )];
    if target_exists {
        out.push(format!(
            "ALTER SCHEMA {} RENAME TO {}",
            quote_ident(target),
            quote_ident(&previous)
        ));
    }
    out.push(format!(
        "ALTER SCHEMA {} RENAME TO {}",
        quote_ident(&staging),
        quote_ident(target)
    ));
    out.extend(grant_statements(config));
    out.extend(config.post_swap_sql.clone());
    out
}

/// Rollback: the previous generation becomes the target again; the replaced one is kept as
/// previous, so a rollback can itself be undone.
pub fn rollback_statements(config: &WarehouseConfig, target_exists: bool) -> Vec<String> {
    let target = config.target.as_str();
    let parked = format!("{target}_rollback");
    let mut out = Vec::new();
    if target_exists {
        out.push(format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            quote_ident(&parked)
        ));
        out.push(format!(
            "ALTER SCHEMA {} RENAME TO {}",
            quote_ident(target),
            quote_ident(&parked)
        ));
    }
    out.push(format!(
        "ALTER SCHEMA {} RENAME TO {}",
        quote_ident(&config.previous()),
        quote_ident(target)
    ));
    if target_exists {
        out.push(format!(
            "ALTER SCHEMA {} RENAME TO {}",
            quote_ident(&parked),
            quote_ident(&config.previous())
        ));
    }
    out.extend(grant_statements(config));
    out.extend(config.post_swap_sql.clone());
    out
}

fn grant_statements(config: &WarehouseConfig) -> Vec<String> {
    let target = quote_ident(&config.target);
    config
        .grantees
        .iter()
        .flat_map(|g| {
            let who = g.sql_name();
            [
                format!("GRANT USAGE ON SCHEMA {target} TO {who}"),
                format!("GRANT SELECT ON ALL TABLES IN SCHEMA {target} TO {who}"),
            ]
        })
        .collect()
}

/// Phase 4's completeness gate, run inside the swap transaction so nothing can change between
/// the check and the swap.
async fn gate(
    conn: &mut PgConnection,
    config: &WarehouseConfig,
    plan: &RunPlan,
    manifests: &BTreeMap<u32, SegmentManifest>,
) -> Result<Option<GateRefusal>, WarehouseError> {
    let staging = config.staging();
    let run_id = &plan.run_id;
    let n = plan.total_segments;
    let mut refusal = GateRefusal {
        problems: vec![],
        commands: vec![],
    };
    match prepared_run(conn, &staging).await? {
        Some(r) if &r == run_id => {}
        found => {
            refusal.problems.push(format!(
                "staging schema {staging} is {}",
                match found {
                    Some(other) => format!("prepared for run {other}"),
                    None => "missing".into(),
                }
            ));
            refusal
                .commands
                .push(format!("dynamo-etl prepare --run-id {run_id}"));
            refusal.commands.push(format!(
                "dynamo-etl upload --run-id {run_id} --segment <k>   (for k in 0..{})",
                n - 1
            ));
            return Ok(Some(refusal));
        }
    }
    let rows = query_strings(
        conn,
        &format!(
            "SELECT segment::varchar FROM {} WHERE row_count >= 0",
            qualified(&staging, LEDGER_TABLE)
        ),
        "reading the ledger",
    )
    .await?;
    let loaded: BTreeSet<u32> = rows
        .iter()
        .filter_map(|r| r.first().cloned().flatten())
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let unscanned: Vec<u32> = (0..n).filter(|k| !manifests.contains_key(k)).collect();
    let unloaded: Vec<u32> = (0..n)
        .filter(|k| !loaded.contains(k) && manifests.contains_key(k))
        .collect();
    if !unscanned.is_empty() {
        refusal.problems.push(format!(
            "segments {} of {n} have no phase-1 manifest",
            list(&unscanned)
        ));
        for k in &unscanned {
            refusal.commands.push(format!(
                "dynamo-etl retry phase-1 {n} {k} --run-id {run_id}"
            ));
            refusal
                .commands
                .push(format!("dynamo-etl retry phase-3 {k} --run-id {run_id}"));
        }
    }
    if !unloaded.is_empty() {
        refusal.problems.push(format!(
            "segments {} of {n} are not loaded",
            list(&unloaded)
        ));
        for k in &unloaded {
            refusal
                .commands
                .push(format!("dynamo-etl retry phase-3 {k} --run-id {run_id}"));
        }
    }
    if !refusal.problems.is_empty() {
        return Ok(Some(refusal));
    }
    for table in run_tables(plan) {
        let expected: u64 = manifests
            .values()
            .map(|m| m.tables.get(&table.table).map_or(0, |t| t.rows))
            .sum();
        let counted = query_strings(
            conn,
            &format!(
                "SELECT COUNT(*)::varchar FROM {}",
                qualified(&staging, &table.table)
            ),
            "counting staged rows",
        )
        .await?;
        let actual: u64 = counted
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(u64::MAX);
        if actual != expected {
            refusal.problems.push(format!(
                "table {}.{} has {actual} rows but the manifests add up to {expected}",
                staging, table.table
            ));
        }
    }
    if !refusal.problems.is_empty() {
        refusal
            .commands
            .push(format!("dynamo-etl prepare --run-id {run_id}"));
        refusal.commands.push(format!(
            "dynamo-etl upload --run-id {run_id} --segment <k>   (for k in 0..{})",
            n - 1
        ));
        return Ok(Some(refusal));
    }
    Ok(None)
}

fn list(segments: &[u32]) -> String {
    segments
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What `replace` or `rollback` did.
#[derive(Debug)]
pub enum SwapOutcome {
    Swapped { statements: Vec<String> },
    Refused(GateRefusal),
}

/// Phase 4: gate, then swap in one transaction; serialization conflicts are retried with
/// backoff, lock waits are bounded by the configured timeout.
pub async fn replace(
    dialect: &dyn Dialect,
    config: &WarehouseConfig,
    store: &ObjectStore,
    layout: &Layout,
    plan: &RunPlan,
    retry: &RetryPolicy,
) -> Result<SwapOutcome, WarehouseError> {
    let mut manifests = BTreeMap::new();
    for k in 0..plan.total_segments {
        if let Some(m) = read_manifest(store, layout, &plan.run_id, k).await? {
            manifests.insert(k, m);
        }
    }
    swap_with_retry(
        dialect,
        config,
        retry,
        Swap::Replace {
            plan,
            manifests: &manifests,
        },
    )
    .await
}

/// Swaps the previous generation back in.
pub async fn rollback(
    dialect: &dyn Dialect,
    config: &WarehouseConfig,
    retry: &RetryPolicy,
) -> Result<SwapOutcome, WarehouseError> {
    swap_with_retry(dialect, config, retry, Swap::Rollback).await
}

/// Which swap to make.
#[derive(Clone, Copy)]
enum Swap<'a> {
    Replace {
        plan: &'a RunPlan,
        manifests: &'a BTreeMap<u32, SegmentManifest>,
    },
    Rollback,
}

fn is_lock_timeout(e: &WarehouseError) -> bool {
    matches!(e, WarehouseError::Sql { detail, .. } if detail.contains("55P03") || detail.contains("57014") || detail.to_ascii_lowercase().contains("timeout"))
}

/// Runs a swap, retrying conflicts with a fresh session per attempt (a conflict may leave the
/// old one unusable); a lock timeout is final: the caller reports it and the target is untouched.
async fn swap_with_retry(
    dialect: &dyn Dialect,
    config: &WarehouseConfig,
    retry: &RetryPolicy,
    swap: Swap<'_>,
) -> Result<SwapOutcome, WarehouseError> {
    retry
        .run(
            || async {
                let mut conn = connect(config, dialect).await?;
                swap_once(dialect, &mut conn, config, swap).await
            },
            |e: &WarehouseError| e.is_retriable() && !is_lock_timeout(e),
            |e, delay| tracing::warn!(error = %e, delay_ms = delay.as_millis() as u64, "swap conflicted; retrying"),
        )
        .await
}

/// One attempt: check, then the renames, in one transaction with bounded lock waits.
async fn swap_once(
    dialect: &dyn Dialect,
    conn: &mut PgConnection,
    config: &WarehouseConfig,
    swap: Swap<'_>,
) -> Result<SwapOutcome, WarehouseError> {
    let mut tx = conn
        .begin()
        .await
        .map_err(|e| WarehouseError::sql("BEGIN", &e))?;
    execute(
        &mut tx,
        &dialect.lock_timeout(config.lock_timeout),
        "setting the lock timeout",
    )
    .await?;
    let refusal = match swap {
        Swap::Replace { plan, manifests } => gate(&mut tx, config, plan, manifests).await?,
        Swap::Rollback => {
            (!schema_exists(&mut tx, &config.previous()).await?).then(|| GateRefusal {
                problems: vec![format!(
                    "there is no previous generation ({}) to roll back to",
                    config.previous()
                )],
                commands: vec![],
            })
        }
    };
    if let Some(refusal) = refusal {
        tx.rollback()
            .await
            .map_err(|e| WarehouseError::sql("ROLLBACK", &e))?;
        return Ok(SwapOutcome::Refused(refusal));
    }
    let target_exists = schema_exists(&mut tx, &config.target).await?;
    let (statements, what) = match swap {
        Swap::Replace { .. } => (
            swap_statements(config, target_exists),
            format!("swapping {} in", config.staging()),
        ),
        Swap::Rollback => (
            rollback_statements(config, target_exists),
            format!("rolling {} back", config.target),
        ),
    };
    for statement in &statements {
        execute(&mut tx, statement, &what).await?;
    }
    tx.commit()
        .await
        .map_err(|e| WarehouseError::sql(format!("committing ({what})"), &e))?;
    Ok(SwapOutcome::Swapped { statements })
}
