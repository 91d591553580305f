//! The contract between phases 2, 3 and 4 inside the warehouse, the same for every dialect:
//!
//! - `<target>_staging` holds one table per data-schema plus `_unclassified`, a **ledger**
//!   (`_dynamo_etl_ledger`: one row per loaded segment, with its row counts) and a **run marker**
//!   (`_dynamo_etl_run`: the run the schema was prepared for);
//! - phase 3 claims a segment by inserting its ledger row with `row_count = -1` inside the load
//!   transaction and completes the row with the counts before committing, so a committed row
//!   with `row_count >= 0` means "loaded, exactly once" (a load of many segments holds the
//!   ledger's lock instead and inserts the completed rows);
//! - the swap renames the whole schema, so the ledger and the marker travel with the data: the
//!   target always says which run it serves (and when that run was planned), `_previous` which
//!   run it keeps.
//!
//! Catalog lookups use `information_schema`, which both servers provide.

use std::collections::{BTreeMap, BTreeSet};

use super::sql::{qualified, quote_ident, Session};
use super::{PlannedAt, RunMarker, Staged, Warehouse, WarehouseError, WarehouseState};
use crate::schema::{DataSchema, LogicalType, EXTRA_COLUMN};
use crate::staging::plan::RunPlan;

/// Ledger of loaded segments.
pub const LEDGER_TABLE: &str = "_dynamo_etl_ledger";
/// One row naming the run a staging schema was prepared for.
pub const RUN_TABLE: &str = "_dynamo_etl_run";

/// `CREATE TABLE` for one data-schema in `schema`; every identifier quoted. A table with a column
/// for every key attribute (`key_attributes`, partition key first) gets the dialect's layout for
/// its key (`Warehouse::key_layout`).
pub fn create_table_sql(
    dialect: &(impl Warehouse + ?Sized),
    schema: &str,
    table: &DataSchema,
    key_attributes: &[String],
) -> String {
    let columns: Vec<String> = table
        .columns
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                quote_ident(&c.column),
                dialect.column_type(c.logical_type)
            )
        })
        .chain(table.has_extra_column().then(|| {
            format!(
                "{} {}",
                quote_ident(EXTRA_COLUMN),
                dialect.column_type(LogicalType::Json)
            )
        }))
        .collect();
    let layout = crate::staging::increment::key_columns(table, key_attributes)
        .ok()
        .filter(|keys| !keys.is_empty())
        .map(|keys| {
            let names: Vec<String> = keys.iter().map(|c| c.column.clone()).collect();
            dialect.key_layout(&names)
        })
        .unwrap_or_default();
    format!(
        "CREATE TABLE {} (\n  {}\n){layout}",
        qualified(schema, &table.table),
        columns.join(",\n  ")
    )
}

/// Phase 2: a pristine staging schema for `plan`'s run.
pub fn prepare_sql(dialect: &(impl Warehouse + ?Sized), plan: &RunPlan) -> Vec<String> {
    let staging = dialect.config().staging();
    let mut out = vec![
        format!("DROP SCHEMA IF EXISTS {} CASCADE", quote_ident(&staging)),
        format!("CREATE SCHEMA {}", quote_ident(&staging)),
    ];
    for table in plan.warehouse_tables() {
        out.push(create_table_sql(
            dialect,
            &staging,
            &table,
            &plan.key_attributes,
        ));
    }
    out.push(format!(
        "CREATE TABLE {} (segment INTEGER NOT NULL PRIMARY KEY, run_id VARCHAR(100) NOT NULL, loaded_at TIMESTAMPTZ NOT NULL, row_count BIGINT NOT NULL, table_counts VARCHAR(65535) NOT NULL)",
        qualified(&staging, LEDGER_TABLE)
    ));
    out.push(format!(
        "CREATE TABLE {} (run_id VARCHAR(100) NOT NULL, source_table VARCHAR(255) NOT NULL, total_segments INTEGER NOT NULL, schema_source VARCHAR(1024) NOT NULL, prepared_at TIMESTAMPTZ NOT NULL, planned_at VARCHAR(64) NOT NULL)",
        qualified(&staging, RUN_TABLE)
    ));
    out.push(format!(
        "INSERT INTO {} (run_id, source_table, total_segments, schema_source, prepared_at, planned_at) VALUES ({}, {}, {}, {}, {}, {})",
        qualified(&staging, RUN_TABLE),
        dialect.literal(&plan.run_id),
        dialect.literal(&plan.source_table),
        plan.total_segments,
        dialect.literal(&plan.schema_source.to_string()),
        dialect.now(),
        dialect.literal(&PlannedAt::column_text(&plan.created_at))
    ));
    out
}

/// Completes a segment's ledger row with what was loaded.
pub fn record_segment_sql(
    dialect: &(impl Warehouse + ?Sized),
    staging: &str,
    segment: u32,
    tables: &BTreeMap<String, u64>,
) -> String {
    let rows: u64 = tables.values().sum();
    let counts = serde_json::to_string(tables).expect("counts serialise");
    format!(
        "UPDATE {} SET row_count = {rows}, table_counts = {}, loaded_at = {} WHERE segment = {segment}",
        qualified(staging, LEDGER_TABLE),
        dialect.literal(&counts),
        dialect.now()
    )
}

/// Ledger rows one insert statement carries in a load of many segments.
const LEDGER_ROWS_PER_INSERT: usize = 500;

/// The completed ledger rows of a load of many segments, which holds the ledger's lock for its
/// whole transaction and so inserts each segment's row once, with its counts (no claim row first).
pub fn record_segments_sql(
    dialect: &(impl Warehouse + ?Sized),
    staging: &str,
    run_id: &str,
    segments: &[(u32, BTreeMap<String, u64>)],
) -> Vec<String> {
    segments
        .chunks(LEDGER_ROWS_PER_INSERT)
        .map(|chunk| {
            let rows: Vec<String> = chunk
                .iter()
                .map(|(segment, tables)| {
                    let counts = serde_json::to_string(tables).expect("counts serialise");
                    format!(
                        "({segment}, {}, {}, {}, {})",
                        dialect.literal(run_id),
                        dialect.now(),
                        tables.values().sum::<u64>(),
                        dialect.literal(&counts)
                    )
                })
                .collect();
            format!(
                "INSERT INTO {} (segment, run_id, loaded_at, row_count, table_counts) VALUES {}",
                qualified(staging, LEDGER_TABLE),
                rows.join(", ")
            )
        })
        .collect()
}

/// Whether `schema` has a table named `table` (one of this tool's own tables).
pub async fn table_exists(
    session: &mut Session,
    schema: &str,
    table: &str,
) -> Result<bool, WarehouseError> {
    Ok(session
        .query_one(
            &format!(
                "SELECT table_name::varchar FROM information_schema.tables WHERE table_schema = {} AND table_name = {}",
                text_literal(schema),
                text_literal(table)
            ),
            &format!("looking up {schema}.{table}"),
        )
        .await?
        .is_some())
}

fn text_literal(text: &str) -> String {
    // Catalog names here are our own identifiers ([a-z0-9_]), so a standard literal is exact in
    // every dialect.
    super::sql::standard_literal(text)
}

/// The run a schema (staging, target or previous) was prepared for, if it has a run marker.
/// Markers written before `planned_at` existed have none.
pub async fn run_marker(
    session: &mut Session,
    schema: &str,
) -> Result<Option<RunMarker>, WarehouseError> {
    let columns = session
        .query(
            &format!(
                "SELECT column_name::varchar FROM information_schema.columns WHERE table_schema = {} AND table_name = {}",
                text_literal(schema),
                text_literal(RUN_TABLE)
            ),
            "looking up the run marker",
        )
        .await?;
    if columns.is_empty() {
        return Ok(None);
    }
    let has_planned_at = columns
        .iter()
        .any(|c| c.first().cloned().flatten().as_deref() == Some("planned_at"));
    let planned_at = if has_planned_at { "planned_at" } else { "NULL" };
    let rows = session
        .query(
            &format!(
                "SELECT run_id::varchar, {planned_at}::varchar FROM {}",
                qualified(schema, RUN_TABLE)
            ),
            "reading the run marker",
        )
        .await?;
    Ok(rows.into_iter().next().and_then(|mut r| {
        let planned_at = PlannedAt::from_column(r.get(1).and_then(Option::as_deref));
        Some(RunMarker {
            run_id: r.first_mut()?.take()?,
            planned_at,
        })
    }))
}

/// The query of [`loaded_segments`].
pub fn loaded_segments_sql(schema: &str) -> String {
    format!(
        "SELECT segment::varchar FROM {} WHERE row_count >= 0",
        qualified(schema, LEDGER_TABLE)
    )
}

/// Segments with a completed ledger row in `schema`.
pub async fn loaded_segments(
    session: &mut Session,
    schema: &str,
) -> Result<BTreeSet<u32>, WarehouseError> {
    let rows = session
        .query(&loaded_segments_sql(schema), "reading the ledger")
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| r.first().cloned().flatten())
        .filter_map(|s| s.trim().parse().ok())
        .collect())
}

/// Whether a schema exists.
pub async fn schema_exists(session: &mut Session, schema: &str) -> Result<bool, WarehouseError> {
    Ok(session
        .query_one(
            &format!(
                "SELECT schema_name::varchar FROM information_schema.schemata WHERE schema_name = {}",
                text_literal(schema)
            ),
            "looking up a schema",
        )
        .await?
        .is_some())
}

/// Rows of every staged table, by table name.
pub async fn staged_counts(
    session: &mut Session,
    staging: &str,
    tables: &[DataSchema],
) -> Result<BTreeMap<String, u64>, WarehouseError> {
    let mut out = BTreeMap::new();
    for table in tables {
        let counted = session
            .query_one(
                &format!(
                    "SELECT COUNT(*)::varchar FROM {}",
                    qualified(staging, &table.table)
                ),
                "counting staged rows",
            )
            .await?;
        let rows = counted
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(u64::MAX);
        out.insert(table.table.clone(), rows);
    }
    Ok(out)
}

/// What the warehouse holds for `dialect`'s target, read outside any transaction.
///
/// A swap by another process may commit while this reads: a read of the staging ledger waits
/// for the swap's lock on it (`swap::lock_sql`) and then finds it renamed away, as a read of any
/// generation can find its schema gone. Such a read (the relation or schema no longer exists)
/// is tried again, up to [`STATE_READS`] times in all, and reads the settled state; any other
/// failure, or one that persists, is the caller's.
pub async fn state(
    dialect: &(impl Warehouse + ?Sized),
    session: &mut Session,
) -> Result<WarehouseState, WarehouseError> {
    let mut reads = 1;
    loop {
        match read_state(dialect, session).await {
            Err(e) if reads < STATE_READS && is_gone(&e) => {
                tracing::info!(error = %e, "the warehouse changed while its state was read; reading it again");
                reads += 1;
            }
            read => return read,
        }
    }
}

/// How many times [`state`] reads a state that a concurrent swap renamed under it.
pub const STATE_READS: u32 = 3;

/// Whether a statement failed because its table or schema does not exist (SQLSTATE 42P01
/// undefined_table, 3F000 invalid_schema_name:
/// https://www.postgresql.org/docs/15/errcodes-appendix.html).
fn is_gone(e: &WarehouseError) -> bool {
    matches!(e, WarehouseError::Sql { detail, .. } if detail.contains("42P01") || detail.contains("3F000"))
}

async fn read_state(
    dialect: &(impl Warehouse + ?Sized),
    session: &mut Session,
) -> Result<WarehouseState, WarehouseError> {
    let config = dialect.config();
    let staging = config.staging();
    let staged = match run_marker(session, &staging).await? {
        Some(marker) => Some(Staged {
            run_id: marker.run_id,
            loaded: loaded_segments(session, &staging).await?,
        }),
        None => None,
    };
    let serving = run_marker(session, &config.target).await?;
    let serving_proof = match serving {
        Some(_) => super::fingerprint::kept(session, &config.target).await?,
        None => None,
    };
    Ok(WarehouseState {
        serving,
        previous: run_marker(session, &config.previous()).await?,
        staged,
        serving_proof,
    })
}

/// Fails unless staging is prepared for `run_id`.
pub async fn require_prepared(
    session: &mut Session,
    staging: &str,
    run_id: &str,
) -> Result<(), WarehouseError> {
    match run_marker(session, staging).await? {
        Some(r) if r.run_id == run_id => Ok(()),
        found => Err(WarehouseError::NotPrepared {
            run_id: run_id.to_string(),
            staging: staging.to_string(),
            found: match found {
                Some(other) => format!("prepared for run {}", other.run_id),
                None => "not prepared".to_string(),
            },
        }),
    }
}
