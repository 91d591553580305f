//! Applying an increment run to the tables a target serves, the same for every dialect: one
//! transaction that checks the increment follows on from the target's watermark, deletes every
//! changed key from every served table, inserts the newest image of each changed item into the
//! table it belongs to now, and records the increment in the target's increment ledger — or
//! changes nothing. The increment's rows wait in a staging schema of their own
//! (`<target>_increment_staging`), loaded by phase 3 like any run's (see `staging::increment`
//! for its layout).
//!
//! The ledger (`<target>._dynamo_etl_increments`, one row per applied increment) lives in the
//! served schema, so it travels with the data: a full copy swapped in starts without one (its
//! watermark is its own point in time again), and a rollback brings back the ledger of the
//! generation it restores.

use std::collections::BTreeSet;

use super::fingerprint;
use super::gate::{self, GateRefusal};
use super::ledger;
use super::sql::{qualified, quote_ident, Session};
use super::{Warehouse, WarehouseError};
use crate::error::Class;
use crate::schema::{DataSchema, OVERFLOW_TABLE};
use crate::staging::increment::{
    self, IncrementSpec, ShardPosition, StreamSpan, CHANGES_TABLE, ITEM_KEY_COLUMN, TABLE_COLUMN,
    VERSION_COLUMN,
};
use crate::staging::manifest::Committed;
use crate::staging::plan::RunPlan;

/// One row per increment applied to the schema it is in.
pub const INCREMENTS_TABLE: &str = "_dynamo_etl_increments";
/// Appended to the target's name: the schema an increment is staged in.
pub const INCREMENT_SUFFIX: &str = "_increment";
/// One row per shard of the stream `follow` applies, in the served schema.
pub const POSITIONS_TABLE: &str = "_dynamo_etl_stream_positions";
/// Appended to the target's name: the schema a batch of `follow` is staged in.
pub const FOLLOW_SUFFIX: &str = "_follow";

/// An increment the target has applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub run_id: String,
    pub base_run: String,
    pub from: String,
    pub to: String,
}

/// What an apply did.
#[derive(Debug)]
pub enum ApplyOutcome {
    Applied {
        changes: u64,
    },
    /// The target has this increment already: nothing changed.
    AlreadyApplied,
    Refused(GateRefusal),
}

fn column(schema: &str, table: &str, column: &str) -> String {
    format!("{}.{}", qualified(schema, table), quote_ident(column))
}

/// `CREATE TABLE IF NOT EXISTS` of the increment ledger in `schema`.
pub fn ledger_sql(schema: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (run_id VARCHAR(100) NOT NULL, base_run VARCHAR(100) NOT NULL, window_from VARCHAR(64) NOT NULL, window_to VARCHAR(64) NOT NULL, applied_at TIMESTAMPTZ NOT NULL, changes BIGINT NOT NULL)",
        qualified(schema, INCREMENTS_TABLE)
    )
}

/// The lock every apply to `schema` takes first, on its increment ledger: of two applies of one
/// target the second waits for the first to commit.
pub fn lock_sql(schema: &str) -> String {
    format!("LOCK TABLE {}", qualified(schema, INCREMENTS_TABLE))
}

/// What an apply runs first, in its transaction: the increment ledger created if need be and
/// locked, under the lock-wait bound, which is lifted before the deletes and inserts (on Redshift
/// the bound is a statement timeout, which would cancel them on a large table). The stream
/// positions table is created there too, so a batch of `follow` and an increment of one target
/// take turns on the same lock.
pub fn lock_statements(dialect: &(impl Warehouse + ?Sized)) -> Vec<String> {
    let target = &dialect.config().target;
    dialect.lock_bounded(vec![
        ledger_sql(target),
        positions_table_sql(target),
        lock_sql(target),
    ])
}

/// `CREATE TABLE IF NOT EXISTS` of the stream positions in `schema`: one row per shard of the
/// stream `follow` reads, saying how far the served tables hold its records. It lives in the
/// served schema, so a full copy swapped in starts without positions (and `follow` re-bases onto
/// it), and a rollback brings back the positions of the generation it restores.
pub fn positions_table_sql(schema: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (stream_arn VARCHAR(1024) NOT NULL, shard_id VARCHAR(65) NOT NULL, parent_shard_id VARCHAR(65), sequence_number VARCHAR(64), finished BOOLEAN NOT NULL, newest_record_at VARCHAR(64), skip_before VARCHAR(64), batch_id VARCHAR(100) NOT NULL, applied_at TIMESTAMPTZ NOT NULL)",
        qualified(schema, POSITIONS_TABLE)
    )
}

/// The statements that replace the target's stream positions with `span`'s end, written by
/// batch `run_id`.
pub fn positions_sql(
    dialect: &(impl Warehouse + ?Sized),
    run_id: &str,
    span: &StreamSpan,
) -> Vec<String> {
    let target = &dialect.config().target;
    let table = qualified(target, POSITIONS_TABLE);
    let mut out = vec![format!("DELETE FROM {table}")];
    let text = |v: &Option<String>| match v {
        Some(v) => dialect.literal(v),
        None => "NULL".to_string(),
    };
    let rows: Vec<String> = span
        .to
        .iter()
        .map(|p| {
            format!(
                "({}, {}, {}, {}, {}, {}, {}, {}, {})",
                dialect.literal(&span.stream_arn),
                dialect.literal(&p.shard_id),
                text(&p.parent_shard_id),
                text(&p.sequence_number),
                if p.finished { "TRUE" } else { "FALSE" },
                text(&p.newest_record_at),
                text(&p.skip_before),
                dialect.literal(run_id),
                dialect.now()
            )
        })
        .collect();
    if !rows.is_empty() {
        out.push(format!(
            "INSERT INTO {table} (stream_arn, shard_id, parent_shard_id, sequence_number, finished, newest_record_at, skip_before, batch_id, applied_at) VALUES {}",
            rows.join(", ")
        ));
    }
    out
}

/// Where the stream of `schema`'s served tables stands: the positions and the batch that wrote
/// them (none when no batch was applied to this generation).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamPositions {
    pub stream_arn: Option<String>,
    pub batch_id: Option<String>,
    pub applied_at: Option<String>,
    pub shards: Vec<ShardPosition>,
}

/// The query that reads [`StreamPositions`].
pub fn read_positions_sql(schema: &str) -> String {
    format!(
        "SELECT stream_arn::varchar, shard_id::varchar, parent_shard_id::varchar, sequence_number::varchar, CASE WHEN finished THEN 'true' ELSE 'false' END, newest_record_at::varchar, skip_before::varchar, batch_id::varchar, applied_at::varchar FROM {} ORDER BY shard_id",
        qualified(schema, POSITIONS_TABLE)
    )
}

/// The stream positions `schema` holds; empty when it has none (or no positions table).
pub async fn positions(
    session: &mut Session,
    schema: &str,
) -> Result<StreamPositions, WarehouseError> {
    if !ledger::table_exists(session, schema, POSITIONS_TABLE).await? {
        return Ok(StreamPositions::default());
    }
    let rows = session
        .query(&read_positions_sql(schema), "reading the stream positions")
        .await?;
    let mut out = StreamPositions::default();
    for mut r in rows {
        let mut take = |i: usize| r.get_mut(i).and_then(Option::take);
        let (arn, shard, parent, seq, finished, newest, skip, batch, at) = (
            take(0),
            take(1),
            take(2),
            take(3),
            take(4),
            take(5),
            take(6),
            take(7),
            take(8),
        );
        let Some(shard_id) = shard else { continue };
        out.stream_arn = out.stream_arn.or(arn);
        out.batch_id = out.batch_id.or(batch);
        out.applied_at = out.applied_at.or(at);
        out.shards.push(ShardPosition {
            shard_id,
            parent_shard_id: parent,
            sequence_number: seq,
            finished: finished.as_deref() == Some("true"),
            newest_record_at: newest,
            skip_before: skip,
        });
    }
    out.shards.sort();
    Ok(out)
}

/// Whether a batch of `follow` that read `span` follows on from where `target` stands:
/// `Ok(true)` when it is applied already (the positions are the ones it wrote).
fn check_positions(
    target: &str,
    run_id: &str,
    span: &StreamSpan,
    held: &StreamPositions,
) -> Result<bool, GateRefusal> {
    if held.batch_id.as_deref() == Some(run_id) {
        return Ok(true);
    }
    let mut from = span.from.clone();
    from.sort();
    if from == held.shards {
        return Ok(false);
    }
    Err(GateRefusal {
        problems: vec![format!(
            "stream batch {run_id} starts from other positions than {target} holds (written by batch {}): another follow of {target} applied in between, or the target changed; nothing was applied, and a follow started again goes on from the positions the target holds",
            held.batch_id.as_deref().unwrap_or("none")
        )],
        steps: vec![],
        class: Class::Retry,
    })
}

/// The increments `schema` has applied, oldest first; none when it has no ledger.
pub async fn applied(session: &mut Session, schema: &str) -> Result<Vec<Applied>, WarehouseError> {
    if !ledger::table_exists(session, schema, INCREMENTS_TABLE).await? {
        return Ok(Vec::new());
    }
    let rows = session
        .query(
            &format!(
                "SELECT run_id::varchar, base_run::varchar, window_from::varchar, window_to::varchar FROM {} ORDER BY window_to, applied_at",
                qualified(schema, INCREMENTS_TABLE)
            ),
            "reading the increment ledger",
        )
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|mut r| {
            let mut take = |i: usize| r.get_mut(i).and_then(Option::take);
            Some(Applied {
                run_id: take(0)?,
                base_run: take(1)?,
                from: take(2)?,
                to: take(3)?,
            })
        })
        .collect())
}

/// The newest change per key: `_item_key`, `_version`, `_table` of the change with the highest
/// version (text order is write order, see `staging::increment::version`).
fn latest_sql(inc: &str) -> String {
    let (key, version, table) = (
        quote_ident(ITEM_KEY_COLUMN),
        quote_ident(VERSION_COLUMN),
        quote_ident(TABLE_COLUMN),
    );
    format!(
        "(SELECT {key}, {version}, {table} FROM (SELECT {key}, {version}, {table}, ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY {version} DESC) AS change_rank FROM {}) AS ranked WHERE change_rank = 1)",
        qualified(inc, CHANGES_TABLE)
    )
}

/// The statements that apply increment `plan` (staged in `inc`) to `target`, once its checks
/// passed: [`change_sql`], then the ledger row and the staged increment dropped (it has served;
/// committing the drop with the rest leaves it in place for a retry whenever the apply does not
/// commit).
pub fn apply_sql(
    dialect: &(impl Warehouse + ?Sized),
    plan: &RunPlan,
    inc: &str,
    changes: u64,
) -> Vec<String> {
    let mut out = change_sql(dialect, plan, inc);
    out.extend(finish_sql(dialect, plan, inc, changes));
    out
}

/// The condition that picks the `_overflow` rows of the items staged in `inc`'s changes: they
/// are found by the item's key text (`value::json::item_key`), not by key columns.
fn overflow_of_changed_items(inc: &str) -> String {
    format!(
        "{} IN (SELECT {} FROM {})",
        quote_ident("item_key"),
        quote_ident(ITEM_KEY_COLUMN),
        qualified(inc, CHANGES_TABLE)
    )
}

/// The rows of served table `table` (at position `index`) whose item changed in the increment
/// staged in `inc`: a derived table with `table`'s columns, the rows the delete removes and, once
/// the inserts ran, the rows they added.
pub fn changed_rows_sql(
    dialect: &(impl Warehouse + ?Sized),
    plan: &RunPlan,
    inc: &str,
    index: usize,
    table: &DataSchema,
) -> String {
    let target = dialect.config().target.clone();
    let served = qualified(&target, &table.table);
    if table.table == OVERFLOW_TABLE {
        return format!(
            "(SELECT * FROM {served} WHERE {}) AS changed",
            overflow_of_changed_items(inc)
        );
    }
    let keys_table = increment::keys_table(index);
    let keys = increment::key_columns(table, &plan.key_attributes)
        .expect("the layout was checked when the increment was planned");
    let on: Vec<String> = keys
        .iter()
        .map(|c| {
            dialect.key_equals(
                &format!("s.{}", quote_ident(&c.column)),
                &format!("k.{}", quote_ident(&c.column)),
                c.logical_type,
            )
        })
        .collect();
    format!(
        "(SELECT s.* FROM {served} AS s WHERE EXISTS (SELECT 1 FROM {} AS k WHERE {})) AS changed",
        qualified(inc, &keys_table),
        on.join(" AND ")
    )
}

/// The newest images the increment staged in `inc` inserts into `table`: a derived table with
/// `table`'s columns.
pub fn inserted_rows_sql(inc: &str, table: &DataSchema) -> String {
    let (select, from) = insert_source(inc, table);
    format!("(SELECT {select} FROM {from}) AS inserted")
}

/// The deletes of every changed key from every served table (one per table, in
/// `RunPlan::served_tables` order), then the inserts of the newest images (the same order).
pub fn change_sql(dialect: &(impl Warehouse + ?Sized), plan: &RunPlan, inc: &str) -> Vec<String> {
    let target = dialect.config().target.clone();
    let served = plan.served_tables();
    let mut out = Vec::new();
    for (index, table) in served.iter().enumerate() {
        if table.table == OVERFLOW_TABLE {
            out.push(format!(
                "DELETE FROM {} WHERE {}",
                qualified(&target, OVERFLOW_TABLE),
                overflow_of_changed_items(inc)
            ));
            continue;
        }
        let keys_table = increment::keys_table(index);
        let keys = increment::key_columns(table, &plan.key_attributes)
            .expect("the layout was checked when the increment was planned");
        let on: Vec<String> = keys
            .iter()
            .map(|c| {
                dialect.key_equals(
                    &column(&target, &table.table, &c.column),
                    &column(inc, &keys_table, &c.column),
                    c.logical_type,
                )
            })
            .collect();
        out.push(format!(
            "DELETE FROM {} USING {} WHERE {}",
            qualified(&target, &table.table),
            qualified(inc, &keys_table),
            on.join(" AND ")
        ));
    }
    for table in &served {
        out.push(insert_sql(&target, inc, table));
    }
    out
}

/// The ledger row of increment `plan` (for a batch of `follow`, the stream positions it read
/// to instead), and the staged increment dropped.
fn finish_sql(
    dialect: &(impl Warehouse + ?Sized),
    plan: &RunPlan,
    inc: &str,
    changes: u64,
) -> Vec<String> {
    let target = dialect.config().target.clone();
    let spec = plan.increment.as_ref().expect("an increment run's plan");
    let mut out = match &spec.stream {
        Some(span) => positions_sql(dialect, &plan.run_id, span),
        None => vec![format!(
            "INSERT INTO {} (run_id, base_run, window_from, window_to, applied_at, changes) VALUES ({}, {}, {}, {}, {}, {changes})",
            qualified(&target, INCREMENTS_TABLE),
            dialect.literal(&plan.run_id),
            dialect.literal(&spec.base_run),
            dialect.literal(&spec.from),
            dialect.literal(&spec.to),
            dialect.now()
        )],
    };
    out.push(format!(
        "DROP SCHEMA IF EXISTS {} CASCADE",
        quote_ident(inc)
    ));
    out
}

/// The insert of the newest images that landed in `table`.
fn insert_sql(target: &str, inc: &str, table: &DataSchema) -> String {
    let columns: Vec<String> = table.column_names().into_iter().map(quote_ident).collect();
    let (select, from) = insert_source(inc, table);
    format!(
        "INSERT INTO {} ({}) {}",
        qualified(target, &table.table),
        columns.join(", "),
        format_args!("SELECT {select} FROM {from}")
    )
}

/// The select list and FROM clause of the newest images that landed in `table`.
fn insert_source(inc: &str, table: &DataSchema) -> (String, String) {
    let columns: Vec<String> = table.column_names().into_iter().map(quote_ident).collect();
    let selected: Vec<String> = columns.iter().map(|c| format!("u.{c}")).collect();
    let (key, version, landed) = (
        quote_ident(ITEM_KEY_COLUMN),
        quote_ident(VERSION_COLUMN),
        quote_ident(TABLE_COLUMN),
    );
    // Overflow rows belong to whichever table their item landed in; every other table's rows
    // are its own (the table check is then a safeguard).
    let landed_here = match table.table == OVERFLOW_TABLE {
        true => String::new(),
        false => format!(
            " AND l.{landed} = {}",
            super::sql::standard_literal(&table.table)
        ),
    };
    (
        selected.join(", "),
        format!(
            "{} AS u JOIN {} AS l ON u.{key} = l.{key} AND u.{version} = l.{version}{landed_here}",
            qualified(inc, &table.table),
            latest_sql(inc)
        ),
    )
}

/// Whether increment `spec` follows on from what `target` holds: it builds on the served run, and
/// starts where the last applied increment ended (or, with none, where the served copy was
/// taken, which is where the plan started it). `Ok(true)`: applied already.
fn check_window(
    target: &str,
    plan: &RunPlan,
    spec: &IncrementSpec,
    serving: Option<&str>,
    applied: &[Applied],
) -> Result<bool, GateRefusal> {
    let refuse = |problem: String| GateRefusal {
        problems: vec![problem],
        steps: vec![],
        class: Class::Fatal,
    };
    if applied.iter().any(|a| a.run_id == plan.run_id) {
        return Ok(true);
    }
    if serving != Some(spec.base_run.as_str()) {
        return Err(refuse(format!(
            "increment {} builds on run {}, but {target} serves {}: a full copy was swapped in or rolled back since it was planned; apply the changes since the new watermark instead (dynamo-etl increment --table {} --target {target})",
            plan.run_id,
            spec.base_run,
            serving.unwrap_or("nothing"),
            plan.source_table
        )));
    }
    let Some(last) = applied.last() else {
        return Ok(false);
    };
    let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
    match (at(&last.to), at(&spec.from)) {
        (Some(watermark), Some(from)) if watermark == from => Ok(false),
        (Some(watermark), Some(from)) if watermark < from => Err(refuse(format!(
            "increment {} covers {} to {}, but {target} holds changes up to {} only: the changes from {} to {} are missing; apply them first (dynamo-etl increment --table {} --target {target}, without --incremental-export-arn, exports and applies every missing window in order)",
            plan.run_id, spec.from, spec.to, last.to, last.to, spec.from, plan.source_table
        ))),
        _ => Err(refuse(format!(
            "increment {} starts at {}, but {target} already holds changes up to {} (increment {}): it overlaps what is applied; apply the changes since the watermark instead (dynamo-etl increment --table {} --target {target})",
            plan.run_id, spec.from, last.to, last.run_id, plan.source_table
        ))),
    }
}

/// Applies increment `plan`, staged in `inc`, to the dialect's target in one transaction.
pub async fn apply(
    dialect: &(impl Warehouse + ?Sized),
    plan: &RunPlan,
    inc: &str,
    manifests: &[Committed],
) -> Result<ApplyOutcome, WarehouseError> {
    let config = dialect.config();
    let target = config.target.clone();
    let spec = plan.increment.as_ref().expect("an increment run's plan");
    let mut session = dialect.session().await?;
    session.begin().await?;
    let result = async {
        if !ledger::schema_exists(&mut session, &target).await? {
            return Ok(ApplyOutcome::Refused(GateRefusal {
                problems: vec![format!(
                    "{target} does not exist: an increment applies to a full copy; run one first (dynamo-etl run)"
                )],
                steps: vec![],
                class: Class::Fatal,
            }));
        }
        // Serialises applies to this target: the second waits, then finds the first's row.
        for statement in lock_statements(dialect) {
            session
                .execute(&statement, "locking the increment ledger")
                .await?;
        }
        let serving = ledger::run_marker(&mut session, &target).await?;
        let done = applied(&mut session, &target).await?;
        let checked = match &spec.stream {
            Some(span) => match serving.as_ref().map(|m| m.run_id.as_str()) {
                Some(run) if run == spec.base_run => {
                    let held = positions(&mut session, &target).await?;
                    check_positions(&target, &plan.run_id, span, &held)
                }
                other => Err(GateRefusal {
                    problems: vec![format!(
                        "stream batch {} builds on run {}, but {target} serves {}: a full copy was swapped in or rolled back; follow re-bases onto it",
                        plan.run_id,
                        spec.base_run,
                        other.unwrap_or("nothing")
                    )],
                    steps: vec![],
                    class: Class::Retry,
                }),
            },
            None => check_window(
                &target,
                plan,
                spec,
                serving.as_ref().map(|m| m.run_id.as_str()),
                &done,
            ),
        };
        match checked {
            Ok(true) => return Ok(ApplyOutcome::AlreadyApplied),
            Ok(false) => {}
            Err(refusal) => return Ok(ApplyOutcome::Refused(refusal)),
        }
        let prepared = ledger::run_marker(&mut session, inc).await?;
        let loaded: BTreeSet<u32> = match &prepared {
            Some(_) => ledger::loaded_segments(&mut session, inc).await?,
            None => BTreeSet::new(),
        };
        let prepared = prepared.map(|m| m.run_id);
        if let Some(r) = gate::check_segments(plan, manifests, prepared.as_deref(), &loaded) {
            return Ok(ApplyOutcome::Refused(r));
        }
        let counted = ledger::staged_counts(&mut session, inc, &plan.warehouse_tables()).await?;
        if let Some(r) = gate::check_counts(plan, inc, manifests, &counted) {
            return Ok(ApplyOutcome::Refused(r));
        }
        let changes = counted.get(CHANGES_TABLE).copied().unwrap_or(0);
        let what = format!("applying increment {} to {target}", plan.run_id);
        if !config.verify {
            tracing::error!(run_id = %plan.run_id, target = %target,
                "--skip-verify: applying the increment without proving its values; the target's kept fingerprints are dropped");
            for statement in change_sql(dialect, plan, inc) {
                session.execute(&statement, &what).await?;
            }
            // What the target kept no longer describes it.
            session
                .execute(
                    &format!(
                        "DROP TABLE IF EXISTS {}",
                        qualified(&target, fingerprint::FINGERPRINTS_TABLE)
                    ),
                    &what,
                )
                .await?;
        } else if let Some(refusal) = apply_proven(dialect, &mut session, plan, inc, manifests).await? {
            return Ok(ApplyOutcome::Refused(refusal));
        }
        for statement in finish_sql(dialect, plan, inc, changes) {
            session.execute(&statement, &what).await?;
        }
        session.commit(&what).await?;
        Ok(ApplyOutcome::Applied { changes })
    }
    .await;
    if !matches!(result, Ok(ApplyOutcome::Applied { .. })) {
        session.rollback().await;
    }
    result
}

/// Runs [`change_sql`] inside the apply's transaction, proving it: the staged changes are what
/// phase 1 wrote (their manifests' fingerprints); each served table's delete removed exactly the
/// rows of the changed items and its insert added exactly the newest images, so that, measured
/// in the warehouse, the changed items' rows after the apply are the staged images; and the
/// target's kept fingerprints move on by the rows deleted and inserted (before − deleted +
/// inserted), so `verify` proves the served rows against them later. `Some`: refused.
async fn apply_proven(
    dialect: &(impl Warehouse + ?Sized),
    session: &mut Session,
    plan: &RunPlan,
    inc: &str,
    manifests: &[Committed],
) -> Result<Option<GateRefusal>, WarehouseError> {
    let target = dialect.config().target.clone();
    let what = format!("applying increment {} to {target}", plan.run_id);
    let refuse = |problems: Vec<String>| GateRefusal {
        problems,
        steps: vec![],
        // Staging again gives the same values until someone finds out why they differ.
        class: Class::Fatal,
    };
    let proof = fingerprint::prove(dialect, session, inc, plan, manifests).await?;
    let mismatches = proof.mismatches();
    if !mismatches.is_empty() {
        return Ok(Some(refuse(vec![format!(
            "the changes staged in {inc} are not what phase 1 wrote, so nothing was applied: {}; stage the increment again (dynamo-etl increment --table {} --target {target})",
            mismatches.join("; "),
            plan.source_table
        )])));
    }
    let served = plan.served_tables();
    let mut kept = fingerprint::read_kept(session, &target).await?;
    let (mut deleted, mut inserted) = (Vec::new(), Vec::new());
    for (index, table) in served.iter().enumerate() {
        let changed = changed_rows_sql(dialect, plan, inc, index, table);
        deleted.push(fingerprint::measure(dialect, session, &changed, table).await?);
        let images = inserted_rows_sql(inc, table);
        inserted.push(fingerprint::measure(dialect, session, &images, table).await?);
    }
    let mut affected = Vec::new();
    for statement in change_sql(dialect, plan, inc) {
        affected.push(session.execute(&statement, &what).await?);
    }
    let mut problems = Vec::new();
    for (index, table) in served.iter().enumerate() {
        let changed = changed_rows_sql(dialect, plan, inc, index, table);
        let now = fingerprint::measure(dialect, session, &changed, table).await?;
        problems.extend(fingerprint::differences(
            &table.table,
            &inserted[index],
            &now,
        ));
        let (gone, added) = (affected[index], affected[served.len() + index]);
        if gone != deleted[index].rows || added != inserted[index].rows {
            problems.push(format!(
                "table {}: the apply deleted {gone} rows and inserted {added} where the changed items had {} rows and {} new images",
                table.table, deleted[index].rows, inserted[index].rows
            ));
        }
        if let Some(f) = kept.as_mut().and_then(|k| k.get_mut(&table.table)) {
            f.remove(&deleted[index]);
            f.add(&now);
        }
    }
    if !problems.is_empty() {
        return Ok(Some(refuse(vec![format!(
            "applying increment {} to {target} would not leave the served rows as staged, so nothing was applied: {}",
            plan.run_id,
            problems.join("; ")
        )])));
    }
    if let Some(kept) = &kept {
        for statement in fingerprint::rewrite_kept_sql(dialect, &target, kept) {
            session
                .execute(&statement, "moving the kept fingerprints on")
                .await?;
        }
    }
    tracing::info!(run_id = %plan.run_id, target = %target, proof = %proof,
        "the increment's values are what phase 1 wrote, and the served rows changed by exactly them");
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(from: &str, to: &str) -> RunPlan {
        RunPlan {
            created_at: "2026-12-01T00:00:00Z".parse().unwrap(),
            increment: Some(IncrementSpec {
                base_run: "base".into(),
                from: from.into(),
                to: to.into(),
                view: "NEW_IMAGE".into(),
                stream: None,
            }),
            ..crate::testkit::runs::plan(&format!("inc-{from}-{to}"))
        }
    }

    fn applied(from: &str, to: &str) -> Applied {
        Applied {
            run_id: format!("inc-{from}-{to}"),
            base_run: "base".into(),
            from: from.into(),
            to: to.into(),
        }
    }

    const T0: &str = "2026-12-01T00:00:00.000Z";
    const T1: &str = "2026-12-01T01:00:00.000Z";
    const T2: &str = "2026-12-01T02:00:00.000Z";
    const T3: &str = "2026-12-01T03:00:00.000Z";

    fn check(p: &RunPlan, serving: &str, done: &[Applied]) -> Result<bool, GateRefusal> {
        check_window("w", p, p.increment.as_ref().unwrap(), Some(serving), done)
    }

    fn position(shard: &str, seq: &str) -> ShardPosition {
        ShardPosition {
            shard_id: shard.into(),
            parent_shard_id: None,
            sequence_number: Some(seq.into()),
            finished: false,
            newest_record_at: None,
            skip_before: None,
        }
    }

    #[test]
    fn a_stream_batch_applies_only_on_the_positions_it_read_from() {
        let span = StreamSpan {
            stream_arn: "arn".into(),
            from: vec![position("s1", "10")],
            to: vec![position("s1", "20")],
            records: 3,
            ttl_deletes: 0,
        };
        let held = |batch: &str, seq: &str| StreamPositions {
            stream_arn: Some("arn".into()),
            batch_id: Some(batch.into()),
            applied_at: None,
            shards: vec![position("s1", seq)],
        };
        assert_eq!(
            check_positions("w", "b2", &span, &held("b1", "10")),
            Ok(false)
        );
        assert_eq!(
            check_positions("w", "b2", &span, &held("b2", "20")),
            Ok(true),
            "applied already: its own positions"
        );
        // Another follower applied a batch in between: refused, to be read again.
        let moved = check_positions("w", "b2", &span, &held("bx", "15")).unwrap_err();
        assert_eq!(moved.class, Class::Retry);
        assert!(moved.to_string().contains("bx"), "{moved}");
        // A first batch starts from no positions at all.
        let first = StreamSpan {
            from: vec![],
            ..span.clone()
        };
        assert_eq!(
            check_positions("w", "b1", &first, &StreamPositions::default()),
            Ok(false)
        );
        assert!(check_positions("w", "b1", &first, &held("b0", "10")).is_err());
    }

    #[test]
    fn an_increment_must_follow_on_from_the_watermark() {
        assert_eq!(
            check(&plan(T0, T1), "base", &[]),
            Ok(false),
            "the first one"
        );
        assert_eq!(check(&plan(T1, T2), "base", &[applied(T0, T1)]), Ok(false));
        assert_eq!(
            check(&plan(T0, T1), "base", &[applied(T0, T1)]),
            Ok(true),
            "applied"
        );
        let gap = check(&plan(T2, T3), "base", &[applied(T0, T1)]).unwrap_err();
        assert!(gap.to_string().contains("missing"), "{gap}");
        assert_eq!(gap.class, Class::Fatal);
        let overlap = check(&plan(T0, T2), "base", &[applied(T0, T1), applied(T1, T2)]);
        assert!(overlap.unwrap_err().to_string().contains("overlaps"));
        let rebased = check(&plan(T1, T2), "newer", &[]).unwrap_err();
        assert!(rebased.to_string().contains("serves newer"), "{rebased}");
    }
}
