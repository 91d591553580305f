//! `follow`: keeps the tables a target serves minutes fresh by tailing the table's DynamoDB
//! stream. Every batch is an increment run of its own: the stream records it read become change
//! lines, phase 1 of an increment turns them into the increment layout's parts and manifest
//! (`segment::changes`, the same classification and conversion as a full copy), phases 2 and 3
//! load them into `<target>_follow_staging`, and the increment apply (`warehouse::increment`)
//! applies them in one transaction that also records the stream positions the batch read to —
//! so a batch is applied once or not at all, and a restart goes on from the positions the target
//! holds.
//!
//! A full copy swapped in brings a served schema without positions: follow re-bases onto it,
//! reading the stream from its oldest record and skipping what is older than the copy's point in
//! time. A position older than the stream keeps (24 hours) is caught up with an incremental
//! export from the target's watermark (`phases::increment`), after which the stream is read
//! again from its oldest record, the records the export holds skipped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::segment::source::ChangeLines;
use super::segment::SegmentSettings;
use super::Context;
use crate::error::Error;
use crate::source::stream::{self, StreamChange, StreamError, StreamReader, TableStream};
use crate::source::ScanCounters;
use crate::staging::increment::{self, IncrementSpec, ShardPosition, StreamSpan};
use crate::staging::lease::RunLease;
use crate::staging::plan::RunPlan;
use crate::warehouse::increment::{ApplyOutcome, FOLLOW_SUFFIX};
use crate::warehouse::Warehouse;

/// A batch is cut at this many records even before its time is up (memory stays bounded).
pub const MAX_BATCH_RECORDS: usize = 100_000;

/// What `follow` was asked to do.
pub struct FollowRequest<'a> {
    pub table: &'a str,
    /// How long records are gathered before a batch is applied.
    pub batch_seconds: Duration,
    /// Stop after this many batches applied.
    pub max_batches: Option<u64>,
    /// Stop once a batch has applied everything the stream held.
    pub until_caught_up: bool,
    /// How long to wait when every shard answered with no record.
    pub idle_poll: Duration,
    pub settings: SegmentSettings,
    /// When the position is lost: catch up with an incremental export (else exit 2 saying how).
    pub catch_up: Option<super::increment::IncrementRequest<'a>>,
}

/// One batch, as `follow` logs it and writes it to the status file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchReport {
    pub run_id: String,
    pub records: u64,
    pub ttl_deletes: u64,
    /// Records skipped because the served tables hold them already.
    pub skipped: u64,
    /// Items no table can hold (listed in the batch's manifest, by key).
    pub rejected: u64,
    /// Values that did not fit their column (went to `_extra`), per table.
    pub drift: u64,
    pub cut_at: String,
    pub applied_at: String,
    pub apply_ms: u64,
    /// When the oldest and newest record of the batch were written (approximately).
    pub oldest_record_at: Option<String>,
    pub newest_record_at: Option<String>,
    /// Seconds from the oldest record's write to the batch's commit.
    pub lag_seconds: Option<f64>,
    /// Records per second over the batch's reading time.
    pub records_per_second: f64,
}

/// The machine-readable state `follow` writes after every batch
/// (`<prefix>/follow/<target>/status.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FollowStatus {
    pub target: String,
    pub table: String,
    pub stream_arn: String,
    /// The full copy the served tables build on.
    pub serving: String,
    pub updated_at: String,
    /// Every change written before this time is in the served tables: the start of the last
    /// polling round, in a batch applied since, that read every shard up to its newest record.
    /// `None`: not caught up yet.
    pub complete_through: Option<String>,
    /// Batches and records applied by this process.
    pub batches: u64,
    pub records: u64,
    pub last_batch: Option<BatchReport>,
    pub shards: Vec<ShardPosition>,
}

impl FollowStatus {
    /// The age of the oldest change possibly not applied: now minus `complete_through`.
    pub fn freshness(&self, now: chrono::DateTime<chrono::Utc>) -> Option<chrono::TimeDelta> {
        let through =
            chrono::DateTime::parse_from_rfc3339(self.complete_through.as_deref()?).ok()?;
        Some(now - through.with_timezone(&chrono::Utc))
    }
}

/// How `follow` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowEnd {
    pub batches: u64,
    pub records: u64,
    pub why: String,
}

fn instant(t: chrono::DateTime<chrono::Utc>) -> String {
    super::increment::instant(t)
}

/// The lease that keeps two `follow`s of one target from interleaving.
pub fn lease_id(target: &str) -> String {
    format!("follow-{}", super::increment::run_id_name(target))
}

/// The run id of the batch cut at `cut` for `target`.
pub fn batch_run_id(target: &str, cut: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "fol-{}-{}",
        super::increment::run_id_name(target),
        cut.format("%Y%m%dT%H%M%S%.6fZ")
    )
}

/// Reads the status file `follow` keeps for `target`, if any.
pub async fn read_status(ctx: &Context, target: &str) -> Result<Option<FollowStatus>, Error> {
    let staging = ctx.staging()?;
    let key = staging.layout.follow_status(target);
    match staging.store.get(&key).await? {
        Some(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        None => Ok(None),
    }
}

/// `follow`: applies the table's stream to `warehouse`'s target batch by batch until a stop is
/// asked for or the request's end is reached; `on_batch` sees each batch applied.
pub async fn follow(
    ctx: &Context,
    warehouse: &dyn Warehouse,
    request: &FollowRequest<'_>,
    mut on_batch: impl FnMut(&BatchReport),
) -> Result<FollowEnd, Error> {
    let client = ctx
        .streams
        .clone()
        .ok_or_else(|| Error::fatal("follow needs a DynamoDB Streams client"))?;
    let table = request.table;
    let target = warehouse.config().target.clone();
    let stream = stream::table_stream(&ctx.dynamodb, table, &ctx.retry).await?;
    // One follower per target: a second one is told who holds it and exits 1.
    let lease = RunLease::acquire(ctx.staging()?, &lease_id(&target))
        .await
        .map_err(|e| {
            Error::from(e).context(format!(
                "another follow of {target} is running; only one applies batches at a time"
            ))
        })?;
    let result = run(ctx, warehouse, request, &client, &stream, &mut on_batch).await;
    lease.release().await;
    result
}

/// The full copy the target serves and its plan, checked against the table.
async fn served_base(
    ctx: &Context,
    warehouse: &dyn Warehouse,
    table: &str,
) -> Result<RunPlan, Error> {
    let target = warehouse.config().target.clone();
    let serving = warehouse.state().await?.serving.ok_or_else(|| {
        Error::fatal(format!(
            "{target} serves no full copy yet: follow applies changes on top of one; run it first (dynamo-etl run --table {table} --target {target})"
        ))
    })?;
    let base = RunPlan::require(ctx.staging()?, &serving.run_id).await?;
    if base.source_table != table {
        return Err(Error::fatal(format!(
            "{target} serves a copy of table {}, not {table}: pass --table {} or another --target",
            base.source_table, base.source_table
        )));
    }
    increment::tables(&base.served_tables(), &base.key_attributes).map_err(|why| {
        Error::fatal(format!(
            "the tables of run {} cannot take changes: {why}",
            base.run_id
        ))
    })?;
    Ok(base)
}

async fn run(
    ctx: &Context,
    warehouse: &dyn Warehouse,
    request: &FollowRequest<'_>,
    client: &aws_sdk_dynamodbstreams::Client,
    stream: &TableStream,
    on_batch: &mut impl FnMut(&BatchReport),
) -> Result<FollowEnd, Error> {
    let table = request.table;
    let target = warehouse.config().target.clone();
    let mut end = FollowEnd {
        batches: 0,
        records: 0,
        why: String::new(),
    };
    let mut complete_through: Option<String> = None;
    let mut last_report: Option<BatchReport> = None;
    // The watermark a catch-up brought the target to (so that one that cannot help is not
    // repeated forever).
    let mut caught_up_from: Option<chrono::DateTime<chrono::Utc>> = None;
    'base: loop {
        let base = served_base(ctx, warehouse, table).await?;
        let held = warehouse.stream_positions().await?;
        if !held.shards.is_empty() && held.stream_arn.as_deref() != Some(&stream.arn) {
            // The stream was turned off and on again: the records between the two are in
            // neither, so they are caught up as for a lost position.
            let lost = StreamError::Lost {
                shard: held
                    .shards
                    .first()
                    .map(|p| p.shard_id.clone())
                    .unwrap_or_default(),
                why: format!(
                    "{target} holds positions in stream {}, but the table's stream is now {}",
                    held.stream_arn.as_deref().unwrap_or("?"),
                    stream.arn
                ),
            };
            catch_up(ctx, warehouse, request, &lost).await?;
            continue 'base;
        }
        let fresh = held.shards.is_empty();
        let described = stream::shards(client, table, &stream.arn, &ctx.retry).await?;
        // A first start, or a new generation: what the served tables hold already is skipped.
        let skip_before = match fresh {
            true => {
                let mark = super::increment::watermark(ctx, warehouse).await?.at;
                // The stream must reach back to the watermark, or the changes in between are
                // in neither the served tables nor the stream.
                if let Some(why) = stream::reaches_back(&stream.arn, mark, chrono::Utc::now()) {
                    let lost = StreamError::Lost {
                        shard: "(every shard)".into(),
                        why,
                    };
                    if caught_up_from == Some(mark) {
                        return Err(Error::fatal(format!(
                            "{lost}; the catch-up brought {target} to {} and the stream still does not reach back to it: run a full copy (dynamo-etl run --table {table} --target {target}), then follow again",
                            instant(mark)
                        )));
                    }
                    catch_up(ctx, warehouse, request, &lost).await?;
                    caught_up_from = Some(super::increment::watermark(ctx, warehouse).await?.at);
                    continue 'base;
                }
                Some(instant(mark))
            }
            false => None,
        };
        let held_shards = held.shards.clone();
        let tracked = match stream::track(&described, &held_shards, fresh, skip_before.as_deref()) {
            Ok(t) => t,
            Err(lost @ StreamError::Lost { .. }) => {
                catch_up(ctx, warehouse, request, &lost).await?;
                continue 'base;
            }
            Err(e) => return Err(e.into()),
        };
        if fresh {
            tracing::info!(target, table, serving = %base.run_id, skip_before = ?skip_before,
                shards = tracked.len(), "following the stream from its oldest record; records older than the served copy are skipped");
        }
        let mut reader = StreamReader::new(client.clone(), table, &stream.arn, ctx.retry, tracked);
        // The positions the target holds: a batch applies only on top of exactly these.
        let mut from = held_shards;
        loop {
            let started = Instant::now();
            let mut changes: Vec<StreamChange> = Vec::new();
            let mut skipped = 0u64;
            let mut drained;
            if let Err(e) = reader.refresh().await {
                match e {
                    lost @ StreamError::Lost { .. } => {
                        catch_up(ctx, warehouse, request, &lost).await?;
                        continue 'base;
                    }
                    other => return Err(other.into()),
                }
            }
            // The start of the last round that read every shard up to its newest record.
            let mut tip_at: Option<chrono::DateTime<chrono::Utc>> = None;
            let mut empty_rounds = 0u32;
            loop {
                let round_started = chrono::Utc::now();
                let round = match reader.round().await {
                    Ok(r) => r,
                    Err(lost @ StreamError::Lost { .. }) => {
                        catch_up(ctx, warehouse, request, &lost).await?;
                        continue 'base;
                    }
                    Err(e) => return Err(e.into()),
                };
                changes.extend(round.changes);
                skipped += round.skipped;
                // An empty answer is taken as the end of a shard's records only when the next
                // round over every shard is empty too: one empty GetRecords may be a stretch of
                // the shard without records rather than its end.
                empty_rounds = match round.drained {
                    true => empty_rounds + 1,
                    false => 0,
                };
                drained = empty_rounds >= 2;
                if round.at_tip {
                    tip_at = Some(round_started);
                }
                let full = changes.len() >= MAX_BATCH_RECORDS;
                let due = started.elapsed() >= request.batch_seconds;
                if full || due || ctx.stop.is_requested() || (drained && request.until_caught_up) {
                    break;
                }
                if empty_rounds > 0 {
                    tokio::select! {
                        _ = tokio::time::sleep(request.idle_poll) => {}
                        _ = ctx.stop.requested() => {}
                    }
                }
            }
            let read_for = started.elapsed();
            let to = reader.positions.clone();
            let mut sorted_from = from.clone();
            sorted_from.sort();
            let mut sorted_to = to.clone();
            sorted_to.sort();
            // Whether this round changed what status.json says: a batch applied, or every shard
            // read to its newest record with nothing to apply (alarms should see that too).
            let mut status_changed = false;
            if !changes.is_empty() || sorted_from != sorted_to {
                let batch = Batch {
                    base: &base,
                    stream,
                    from: &from,
                    to: &to,
                    changes: &changes,
                    skipped,
                    read_for,
                };
                match apply_batch(ctx, warehouse, request, &batch).await? {
                    Some(mut report) => {
                        end.batches += 1;
                        end.records += report.records;
                        if let Some(at) = tip_at {
                            complete_through = Some(instant(at));
                        }
                        report.records_per_second =
                            report.records as f64 / read_for.as_secs_f64().max(0.001);
                        on_batch(&report);
                        last_report = Some(report);
                        status_changed = true;
                    }
                    None => {
                        // The target moved under the batch (a full copy swapped in): re-base.
                        continue 'base;
                    }
                }
            } else if let Some(at) = tip_at {
                complete_through = Some(instant(at));
                status_changed = true;
            }
            if status_changed {
                let status = FollowStatus {
                    target: target.clone(),
                    table: table.to_string(),
                    stream_arn: stream.arn.clone(),
                    serving: base.run_id.clone(),
                    updated_at: instant(chrono::Utc::now()),
                    complete_through: complete_through.clone(),
                    batches: end.batches,
                    records: end.records,
                    last_batch: last_report.clone(),
                    shards: to.clone(),
                };
                write_status(ctx, &target, status).await;
                from = to;
            }
            if ctx.stop.is_requested() {
                end.why = format!(
                    "stopped ({}) after a whole batch",
                    ctx.stop.why().unwrap_or_default()
                );
                return Ok(end);
            }
            if request.max_batches.is_some_and(|n| end.batches >= n) {
                end.why = format!("{} batches applied (--max-batches)", end.batches);
                return Ok(end);
            }
            if request.until_caught_up && drained {
                end.why = "caught up: every shard read to its newest record (--until-caught-up)"
                    .to_string();
                return Ok(end);
            }
        }
    }
}

/// What one batch holds.
struct Batch<'a> {
    base: &'a RunPlan,
    stream: &'a TableStream,
    from: &'a [ShardPosition],
    to: &'a [ShardPosition],
    changes: &'a [StreamChange],
    skipped: u64,
    read_for: Duration,
}

/// Plans, writes, loads and applies one batch. `None`: the target serves another copy now.
async fn apply_batch(
    ctx: &Context,
    warehouse: &dyn Warehouse,
    request: &FollowRequest<'_>,
    batch: &Batch<'_>,
) -> Result<Option<BatchReport>, Error> {
    let target = warehouse.config().target.clone();
    let cut = chrono::Utc::now();
    let run_id = batch_run_id(&target, cut);
    let times: Vec<chrono::DateTime<chrono::Utc>> =
        batch.changes.iter().filter_map(|c| c.created_at).collect();
    let (oldest, newest) = (times.iter().min().copied(), times.iter().max().copied());
    let ttl_deletes = batch.changes.iter().filter(|c| c.ttl).count() as u64;
    let spec = IncrementSpec {
        base_run: batch.base.run_id.clone(),
        from: instant(oldest.unwrap_or(cut)),
        to: instant(newest.unwrap_or(cut)),
        view: batch.stream.view.clone(),
        stream: Some(StreamSpan {
            stream_arn: batch.stream.arn.clone(),
            from: batch.from.to_vec(),
            to: batch.to.to_vec(),
            records: batch.changes.len() as u64,
            ttl_deletes,
        }),
    };
    let staging = ctx.staging()?;
    let plan = RunPlan {
        format: crate::staging::plan::PLAN_FORMAT,
        run_id: run_id.clone(),
        source_table: batch.base.source_table.clone(),
        total_segments: 1,
        dialect: batch.base.dialect,
        key_attributes: batch.base.key_attributes.clone(),
        schema_source: batch.base.schema_source.clone(),
        schemas: batch.base.schemas.clone(),
        created_at: cut,
        export: None,
        increment: Some(spec),
    }
    .store_once(staging)
    .await?;
    // Every line of the batch has the same write time: their order, the stream's, decides.
    let micros = cut.timestamp_micros().max(0) as u64;
    let lines: Vec<Vec<u8>> = batch.changes.iter().map(|c| c.line(micros)).collect();
    let source = ChangeLines::new(&lines, ctx.stop.clone(), &plan.source_table);
    let manifest = super::segment::run_segment_from(
        ctx,
        &request.settings,
        &plan,
        0,
        Arc::new(ScanCounters::default()),
        Some(Box::new(source)),
    )
    .await?;
    let mut config = warehouse.config().clone();
    config.target = format!("{target}{FOLLOW_SUFFIX}");
    let staged = crate::warehouse::open(config);
    let inc = staged.config().staging();
    staged.prepare(&plan).await?;
    staged.load_segments(staging, &plan, &ctx.retry).await?;
    let manifests = crate::staging::manifest::read_all(staging, &plan).await?;
    let applying = Instant::now();
    let outcome = warehouse.apply_increment(&plan, &inc, &manifests).await?;
    let applied_at = chrono::Utc::now();
    let report = BatchReport {
        run_id: run_id.clone(),
        records: batch.changes.len() as u64,
        ttl_deletes,
        skipped: batch.skipped,
        rejected: manifest.items_rejected.len() as u64,
        drift: manifest
            .drift
            .values()
            .flat_map(|d| d.iter())
            .map(|e| e.count)
            .sum(),
        cut_at: instant(cut),
        applied_at: instant(applied_at),
        apply_ms: applying.elapsed().as_millis() as u64,
        oldest_record_at: oldest.map(instant),
        newest_record_at: newest.map(instant),
        lag_seconds: oldest.map(|o| (applied_at - o).as_seconds_f64()),
        records_per_second: batch.changes.len() as f64 / batch.read_for.as_secs_f64().max(0.001),
    };
    // Drift is reported as a full copy reports it: per table and attribute, with examples.
    for (table, entries) in &manifest.drift {
        for e in entries {
            tracing::warn!(run_id, table, attribute = %e.attribute, reason = ?e.reason, count = e.count,
                examples = ?e.examples, "values that do not fit their column went to _extra");
        }
    }
    // The batch's objects have served (its parts are in the target now, or the batch is void);
    // a batch with drift or rejections keeps its plan and manifest, so that
    // `dynamo-etl drift --run-id <batch>` reports them as it does a full copy's.
    let keep = !manifest.drift.is_empty() || !manifest.items_rejected.is_empty();
    remove_run(ctx, &run_id, keep).await;
    match outcome {
        ApplyOutcome::Applied { .. } | ApplyOutcome::AlreadyApplied => Ok(Some(report)),
        ApplyOutcome::Refused(refusal) => {
            let serving = warehouse.state().await?.serving.map(|m| m.run_id);
            if serving.as_deref() != Some(batch.base.run_id.as_str()) {
                tracing::info!(target, run_id, serving = ?serving,
                    "a full copy was swapped in while the batch was read: re-basing onto it");
                return Ok(None);
            }
            let class = refusal.class;
            Err(Error::fatal(format!(
                "stream batch {run_id} was not applied: {refusal}; {target} is unchanged"
            ))
            .reclassify(class)
            .next(format!(
                "dynamo-etl follow --table {} --target {target}",
                plan.source_table
            )))
        }
    }
}

/// Deletes what a batch wrote to the staging area, but for its plan and manifest when
/// `keep_manifest` (best effort: what is left is only garbage).
async fn remove_run(ctx: &Context, run_id: &str, keep_manifest: bool) {
    let Ok(staging) = ctx.staging() else { return };
    let prefix = staging.layout.run(run_id);
    let kept = [
        staging.layout.run_plan(run_id),
        staging.layout.segment_manifest(run_id, 0),
    ];
    let keys = match staging.store.list(&prefix).await {
        Ok(objects) => objects
            .into_iter()
            .map(|o| o.key)
            .filter(|k| !(keep_manifest && kept.contains(k)))
            .collect::<Vec<_>>(),
        Err(e) => {
            tracing::warn!(run_id, error = %e, "could not list the batch's objects to remove them");
            return;
        }
    };
    if let Err(e) = staging.store.delete_keys(&keys).await {
        tracing::warn!(run_id, error = %e, "could not remove the batch's objects");
    }
}

async fn write_status(ctx: &Context, target: &str, status: FollowStatus) {
    let Ok(staging) = ctx.staging() else { return };
    let key = staging.layout.follow_status(target);
    let text = serde_json::to_string_pretty(&status).expect("the status serialises");
    if let Err(e) = staging
        .store
        .put(&key, text.into(), "application/json")
        .await
    {
        tracing::warn!(target, error = %e, "could not write follow's status file");
    }
}

/// The stream no longer has the records after the target's position: catch up with an
/// incremental export from the target's watermark, then read the stream again from its oldest
/// record (the positions are dropped, so the next round re-bases, skipping what the export
/// brought).
async fn catch_up(
    ctx: &Context,
    warehouse: &dyn Warehouse,
    request: &FollowRequest<'_>,
    lost: &StreamError,
) -> Result<(), Error> {
    let target = warehouse.config().target.clone();
    let table = request.table;
    let Some(increment) = &request.catch_up else {
        return Err(Error::fatal(format!(
            "{lost}. The changes since {target}'s watermark are no longer all in the stream: catch up with an incremental export, then follow again (dynamo-etl increment --table {table} --target {target}; then dynamo-etl follow --table {table} --target {target})"
        )));
    };
    tracing::warn!(target, table, error = %lost,
        "the stream position is lost: catching up with an incremental export from the target's watermark");
    let (done, after) = super::increment::increment(ctx, warehouse, increment).await?;
    tracing::info!(target, increments = done.len(), watermark = %instant(after.at),
        "caught up with incremental exports; reading the stream again from its oldest record");
    forget_positions(warehouse).await?;
    Ok(())
}

/// Drops the target's stream positions (after a catch-up: the next batches re-base).
async fn forget_positions(warehouse: &dyn Warehouse) -> Result<(), Error> {
    let target = warehouse.config().target.clone();
    let mut session = warehouse.session().await?;
    session.begin().await?;
    let statements = warehouse.lock_bounded(vec![
        crate::warehouse::increment::positions_table_sql(&target),
        crate::warehouse::increment::lock_sql(&target),
    ]);
    let mut all = statements;
    all.push(format!(
        "DELETE FROM {}",
        crate::warehouse::sql::qualified(&target, crate::warehouse::increment::POSITIONS_TABLE)
    ));
    for s in &all {
        if let Err(e) = session.execute(s, "dropping the stream positions").await {
            session.rollback().await;
            return Err(e.into());
        }
    }
    session.commit("dropping the stream positions").await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_ids_are_run_ids_and_differ_by_cut() {
        let t = chrono::DateTime::from_timestamp(1_764_547_200, 123_456_000).unwrap();
        let id = batch_run_id("platform", t);
        assert_eq!(id, "fol-platform-20251201T000000.123456Z");
        crate::staging::check_run_id(&id).unwrap();
        assert_ne!(
            id,
            batch_run_id("platform", t + chrono::TimeDelta::microseconds(1))
        );
        crate::staging::check_run_id(&lease_id("a \"strange\" target")).unwrap();
    }

    #[test]
    fn freshness_is_the_age_of_what_is_complete() {
        let now = chrono::DateTime::from_timestamp(1_764_547_260, 0).unwrap();
        let status = FollowStatus {
            target: "w".into(),
            table: "t".into(),
            stream_arn: "arn".into(),
            serving: "r".into(),
            updated_at: instant(now),
            complete_through: Some("2025-12-01T00:00:00.000Z".into()),
            batches: 1,
            records: 1,
            last_batch: None,
            shards: vec![],
        };
        assert_eq!(status.freshness(now), Some(chrono::TimeDelta::seconds(60)));
        let never = FollowStatus {
            complete_through: None,
            ..status
        };
        assert_eq!(never.freshness(now), None);
    }
}
