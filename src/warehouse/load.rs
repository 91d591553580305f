//! Steps of phase 3 that every dialect takes the same way: finding a manifest table among the
//! run's tables, checking what COPY loaded against what the manifest promised, checking a part
//! object before the warehouse reads it, and starting a load again after a transient fault.
//!
//! A load of many segments at once ([`load_segments`], `upload --all-segments`) is shared too: in
//! one transaction it takes the ledger's lock, sees which committed segments staging lacks,
//! loads each table once over all of their parts (a dialect's [`Warehouse::copy_batch`] says how), checks
//! each table's count against the sum of those segments' manifests, and records every segment in
//! the ledger before the commit. Holding the ledger's lock for the whole transaction is the claim:
//! no other load of the run records a segment meanwhile, so the rows it inserts are final at once.
//! One COPY per table over many files is how Redshift wants a table loaded: concurrent COPYs into
//! one table are serialised anyway, and one COPY reads all of its files in parallel
//! (<https://docs.aws.amazon.com/redshift/latest/dg/c_best-practices-single-copy-command.html>).

use futures::stream::{self, StreamExt, TryStreamExt};
use std::collections::BTreeMap;
use std::future::Future;

use super::ledger;
use super::{SegmentsLoaded, UploadOutcome, Warehouse, WarehouseError};
use crate::retry::RetryPolicy;
use crate::schema::DataSchema;
use crate::staging::manifest::{self, PartFile, SegmentManifest, TableOutput};
use crate::staging::plan::RunPlan;
use crate::staging::Staging;

/// Manifests read at once while a load of many segments starts.
const MANIFEST_READS: usize = 16;

/// The run's warehouse table a manifest names; a name the plan does not know means the
/// segment was written for another plan.
pub fn table_of<'t>(
    tables: &'t [DataSchema],
    plan: &RunPlan,
    segment: u32,
    name: &str,
) -> Result<&'t DataSchema, WarehouseError> {
    tables
        .iter()
        .find(|t| t.table == name)
        .ok_or_else(|| WarehouseError::BadSegment {
            run_id: plan.run_id.clone(),
            segment,
            problem: format!(
                "its manifest has parts for table {name}, which the run's plan does not have"
            ),
        })
}

/// Fails unless COPY loaded exactly the rows the manifest promised.
pub fn check_copied(
    plan: &RunPlan,
    segment: u32,
    table: &str,
    output: &TableOutput,
    copied: u64,
) -> Result<(), WarehouseError> {
    if copied == output.rows {
        return Ok(());
    }
    Err(WarehouseError::BadSegment {
        run_id: plan.run_id.clone(),
        segment,
        problem: format!(
            "table {table} loaded {copied} rows but the manifest has {}",
            output.rows
        ),
    })
}

/// Runs `attempt` (one whole load of a segment, in its own transaction) until it succeeds, fails
/// with an error that is not transient, or `retry`'s budget runs out. Each attempt starts from a
/// clean transaction, so a body cut short halfway through a part costs a retry, not a rerun.
pub async fn with_retries<Fut>(
    retry: &RetryPolicy,
    plan: &RunPlan,
    segment: u32,
    attempt: impl FnMut() -> Fut,
) -> Result<UploadOutcome, WarehouseError>
where
    Fut: Future<Output = Result<UploadOutcome, WarehouseError>>,
{
    retry
        .run(
            attempt,
            |e: &WarehouseError| e.is_transient(),
            |e, delay| {
                tracing::warn!(run_id = %plan.run_id, segment, error = %e,
                    delay_ms = delay.as_millis() as u64,
                    "loading the segment failed transiently; its transaction was rolled back and the load starts again")
            },
        )
        .await
}

/// One part of a table in a load of many segments, with the segment whose manifest lists it.
#[derive(Debug, Clone, Copy)]
pub struct SegmentPart<'m> {
    pub segment: u32,
    pub file: &'m PartFile,
}

/// The parts of one segment's table, as a load of many segments sees them.
pub fn parts_of(segment: u32, files: &[PartFile]) -> Vec<SegmentPart<'_>> {
    files
        .iter()
        .map(|file| SegmentPart { segment, file })
        .collect()
}

/// What one table receives in a load of many segments: every part of every segment in the load,
/// in segment order, and the rows their manifests add up to.
#[derive(Debug, Clone)]
pub struct TableBatch<'m> {
    pub table: DataSchema,
    pub parts: Vec<SegmentPart<'m>>,
    pub rows: u64,
    /// The segments whose manifests list rows for the table.
    pub segments: Vec<u32>,
}

/// The tables a load of `segments` fills, by table name, each with its parts; a manifest naming a
/// table the plan does not have refuses the load, naming its segment.
pub fn batches<'m>(
    plan: &RunPlan,
    segments: &[(u32, &'m SegmentManifest)],
) -> Result<Vec<TableBatch<'m>>, WarehouseError> {
    let tables = plan.warehouse_tables();
    let mut out: BTreeMap<&str, TableBatch<'m>> = BTreeMap::new();
    for &(segment, manifest) in segments {
        for (name, output) in &manifest.tables {
            let table = table_of(&tables, plan, segment, name)?;
            let batch = out.entry(name.as_str()).or_insert_with(|| TableBatch {
                table: table.clone(),
                parts: Vec::new(),
                rows: 0,
                segments: Vec::new(),
            });
            batch.parts.extend(parts_of(segment, &output.files));
            batch.rows += output.rows;
            if output.rows > 0 {
                batch.segments.push(segment);
            }
        }
    }
    Ok(out.into_values().filter(|b| !b.parts.is_empty()).collect())
}

/// Fails unless one table's COPY over many segments loaded exactly the rows their manifests add
/// up to. Which segment differs is not known here: loading them one at a time tells.
pub fn check_batch_copied(
    plan: &RunPlan,
    batch: &TableBatch<'_>,
    copied: u64,
) -> Result<(), WarehouseError> {
    if copied == batch.rows {
        return Ok(());
    }
    Err(WarehouseError::BadTable {
        run_id: plan.run_id.clone(),
        table: batch.table.table.clone(),
        segments: batch.segments.clone(),
        problem: format!(
            "COPY loaded {copied} rows but the manifests of those segments add up to {}",
            batch.rows
        ),
    })
}

/// The manifests phase 1 has committed for the run, by segment.
pub async fn committed_manifests(
    staging: &Staging,
    plan: &RunPlan,
) -> Result<BTreeMap<u32, SegmentManifest>, WarehouseError> {
    let read: Vec<(u32, Option<SegmentManifest>)> =
        stream::iter(0..plan.total_segments)
            .map(|k| async move {
                Ok::<_, WarehouseError>((k, manifest::read(staging, plan, k).await?))
            })
            .buffered(MANIFEST_READS)
            .try_collect()
            .await?;
    Ok(read
        .into_iter()
        .filter_map(|(k, m)| m.map(|m| (k, m)))
        .collect())
}

/// Phase 3 for every segment of `plan`'s run that phase 1 committed and staging does not hold
/// yet, in one transaction of `dialect`; a transient fault rolls it all back and the load starts
/// again on a fresh session, within `retry`'s budget.
pub async fn load_segments<W: Warehouse + ?Sized>(
    dialect: &W,
    staging: &Staging,
    plan: &RunPlan,
    retry: &RetryPolicy,
) -> Result<SegmentsLoaded, WarehouseError> {
    let committed = committed_manifests(staging, plan).await?;
    retry
        .run(
            || load_segments_once(dialect, staging, plan, &committed),
            |e: &WarehouseError| e.is_transient(),
            |e, delay| {
                tracing::warn!(run_id = %plan.run_id, error = %e,
                    delay_ms = delay.as_millis() as u64,
                    "loading the segments failed transiently; their transaction was rolled back and the load starts again")
            },
        )
        .await
}

/// One attempt of [`load_segments`].
async fn load_segments_once<W: Warehouse + ?Sized>(
    dialect: &W,
    staging: &Staging,
    plan: &RunPlan,
    committed: &BTreeMap<u32, SegmentManifest>,
) -> Result<SegmentsLoaded, WarehouseError> {
    let schema = dialect.config().staging();
    let mut session = dialect.session().await?;
    ledger::require_prepared(&mut session, &schema, &plan.run_id).await?;
    session.begin().await?;
    let result = async {
        // The lock a swap takes first too: it waits for this load, and this load for it.
        session
            .execute(
                &super::swap::lock_sql(dialect),
                "locking the staging ledger",
            )
            .await?;
        let loaded = ledger::loaded_segments(&mut session, &schema).await?;
        let todo: Vec<(u32, &SegmentManifest)> = committed
            .iter()
            .filter(|(k, _)| !loaded.contains(k))
            .map(|(k, m)| (*k, m))
            .collect();
        let mut outcome = SegmentsLoaded {
            loaded: BTreeMap::new(),
            already: loaded
                .iter()
                .copied()
                .filter(|k| *k < plan.total_segments)
                .collect(),
            missing: (0..plan.total_segments)
                .filter(|k| !loaded.contains(k) && !committed.contains_key(k))
                .collect(),
        };
        if todo.is_empty() {
            session.rollback().await;
            return Ok(outcome);
        }
        for batch in batches(plan, &todo)? {
            let started = std::time::Instant::now();
            let copied = dialect
                .copy_batch(&mut session, staging, plan, &batch)
                .await?;
            check_batch_copied(plan, &batch, copied)?;
            tracing::info!(run_id = %plan.run_id, table = %batch.table.table, rows = copied,
                files = batch.parts.len(), segments = batch.segments.len(),
                ms = started.elapsed().as_millis() as u64, "table loaded");
        }
        // Once staging holds every segment, what COPY stored is proven before it is committed:
        // a COPY that changed a value (Redshift's rounds extra decimal scale without an error:
        // <https://docs.aws.amazon.com/redshift/latest/dg/r_Numeric_types201.html>) is then
        // never committed. `run` loads Redshift this way; the swap proves the same again.
        if dialect.config().verify && outcome.missing.is_empty() {
            let manifests: Vec<&SegmentManifest> = committed.values().collect();
            if let Some(expected) = super::fingerprint::expected_of(plan, &manifests) {
                let proof = super::fingerprint::prove_against(
                    dialect,
                    &mut session,
                    &schema,
                    plan,
                    &expected,
                )
                .await?;
                let mismatches = proof.mismatches();
                let differing = match &proof {
                    super::fingerprint::Proof::Tables(tables) => {
                        tables.iter().find(|t| !t.mismatches().is_empty())
                    }
                    super::fingerprint::Proof::NotFingerprinted => None,
                };
                if let Some(differing) = differing {
                    return Err(WarehouseError::BadTable {
                        run_id: plan.run_id.clone(),
                        table: differing.table.clone(),
                        segments: todo.iter().map(|(k, _)| *k).collect(),
                        problem: format!(
                            "the values COPY stored in {schema} are not what phase 1 wrote: {}",
                            mismatches.join("; ")
                        ),
                    });
                }
                tracing::info!(run_id = %plan.run_id, proof = %proof,
                    "the loaded values are what phase 1 wrote");
            }
        }
        let counts: Vec<(u32, BTreeMap<String, u64>)> = todo
            .iter()
            .map(|(k, m)| {
                let tables = m.tables.iter().map(|(t, o)| (t.clone(), o.rows)).collect();
                (*k, tables)
            })
            .collect();
        for statement in ledger::record_segments_sql(dialect, &schema, &plan.run_id, &counts) {
            session
                .execute(&statement, "recording the segments in the ledger")
                .await?;
        }
        session.commit("committing the segments").await?;
        outcome.loaded = counts.into_iter().collect();
        Ok(outcome)
    }
    .await;
    if result.is_err() {
        session.rollback().await;
    }
    result
}

/// Segments in a set, for messages: `0, 2, 5`.
pub fn listed(segments: impl IntoIterator<Item = u32>) -> String {
    segments
        .into_iter()
        .map(|k| k.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Fails unless the object of `file` is the one phase 1 wrote: same size and, where the store
/// gave one, the same entity tag (which changes whenever the object is written again). For
/// dialects that let the warehouse read the parts itself, so the bytes cannot be hashed here.
pub async fn check_object(
    staging: &Staging,
    plan: &RunPlan,
    segment: u32,
    file: &PartFile,
) -> Result<(), WarehouseError> {
    let damaged = |problem: String| WarehouseError::BadSegment {
        run_id: plan.run_id.clone(),
        segment,
        problem: format!("part {}: {problem}", staging.url(&file.key)),
    };
    let Some(head) = staging.store.head(&file.key).await? else {
        return Err(damaged("it does not exist".into()));
    };
    if head.size != file.bytes {
        return Err(damaged(format!(
            "it is {} bytes, but its manifest records {}",
            head.size, file.bytes
        )));
    }
    match (&file.etag, &head.etag) {
        (Some(recorded), Some(found)) if recorded != found => Err(damaged(format!(
            "it was written again after phase 1 (entity tag {found}, the manifest records {recorded})"
        ))),
        _ => Ok(()),
    }
}
