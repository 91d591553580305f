//! Increments: keeping the tables a target serves current between full copies with DynamoDB
//! incremental exports (the changes of a window of 15 minutes to 24 hours, read from
//! point-in-time recovery without consuming read capacity:
//! <https://aws.amazon.com/blogs/database/introducing-incremental-export-from-amazon-dynamodb-to-amazon-s3/>).
//!
//! `dynamo-etl increment` finds the target's watermark (where the last increment ended, or the
//! point in time of the full copy it serves), exports the changes since then (or takes a given
//! incremental export), plans an increment run pinned to the served run's data-schemas, and
//! runs it like a full copy — phase 1 per segment over the export's files, phase 2 and 3 into a
//! staging schema of its own — then applies it in one transaction (`warehouse::increment`).
//! Missed windows are caught up in order, each an increment of its own; phase 1 of an increment
//! is `segment::changes`.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::segment::SegmentSettings;
use super::Context;
use crate::error::Error;
use crate::source::export::{Export, ExportKind, ExportSource};
use crate::source::ScanCounters;
use crate::staging::increment::{self, IncrementSpec};
use crate::staging::lease::RunLease;
use crate::staging::plan::RunPlan;
use crate::warehouse::increment::{Applied, ApplyOutcome, INCREMENT_SUFFIX};
use crate::warehouse::Warehouse;

/// Incremental exports cover at least this much time (<https://aws.amazon.com/blogs/database/introducing-incremental-export-from-amazon-dynamodb-to-amazon-s3/>).
pub const MIN_WINDOW: chrono::TimeDelta = chrono::TimeDelta::minutes(15);
/// And at most this much: a longer lag is caught up in windows of this length, in order.
pub const MAX_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// A window of changes: from (inclusive) to (exclusive).
pub type Window = (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>);

/// Where a target's served tables are current to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watermark {
    /// The full copy the target serves.
    pub serving: String,
    /// Every change written before this instant is in the served tables.
    pub at: chrono::DateTime<chrono::Utc>,
    /// The last increment applied on top of it, if any.
    pub last_increment: Option<Applied>,
}

/// An RFC 3339 time in UTC with milliseconds: how increment windows are written down.
pub fn instant(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Reads an RFC 3339 time, down to whole milliseconds (export windows are given in
/// milliseconds; rounding a watermark down only repeats changes, which is harmless).
pub fn parse_instant(text: &str, what: &str) -> Result<chrono::DateTime<chrono::Utc>, Error> {
    let t = chrono::DateTime::parse_from_rfc3339(text)
        .map_err(|e| Error::fatal(format!("{what} {text:?} is not an RFC 3339 time: {e}")))?;
    chrono::DateTime::from_timestamp_millis(t.timestamp_millis())
        .ok_or_else(|| Error::fatal(format!("{what} {text:?} is out of range")))
}

/// The instant a full copy holds the table at: its export's time, or — for a scan, which reads
/// over a while — when the run was planned, before its scan began (an increment from there may
/// repeat changes the scan saw; applying a change twice leaves the same row).
pub async fn copied_at(
    ctx: &Context,
    plan: &RunPlan,
) -> Result<chrono::DateTime<chrono::Utc>, Error> {
    if let Some(source) = &plan.export {
        let store = ctx.store_of(&source.bucket)?;
        let export = Export::open(store.as_ref(), source).await?;
        if let Some(at) = export.summary.export_time.as_deref() {
            return parse_instant(at, &format!("the export time of {}", source.url()));
        }
    }
    parse_instant(
        &crate::staging::rfc3339::text(&plan.created_at),
        &format!("the plan time of run {}", plan.run_id),
    )
}

/// The target's watermark: the end of the last increment applied to the full copy it serves,
/// else that copy's point in time.
pub async fn watermark(ctx: &Context, warehouse: &dyn Warehouse) -> Result<Watermark, Error> {
    let target = warehouse.config().target.clone();
    let serving = warehouse.state().await?.serving.ok_or_else(|| {
        Error::fatal(format!(
            "{target} serves no full copy yet: increments apply on top of one; run it first (dynamo-etl run --target {target})"
        ))
    })?;
    let applied = warehouse.increments().await?;
    if let Some(last) = applied.last() {
        return Ok(Watermark {
            serving: serving.run_id,
            at: parse_instant(&last.to, &format!("the end of increment {}", last.run_id))?,
            last_increment: Some(last.clone()),
        });
    }
    let base = RunPlan::require(ctx.staging()?, &serving.run_id).await?;
    Ok(Watermark {
        at: copied_at(ctx, &base).await?,
        serving: serving.run_id,
        last_increment: None,
    })
}

/// The windows from `watermark` to `end`, in order, each between [`MIN_WINDOW`] and
/// [`MAX_WINDOW`] long (the last one shorter than the minimum is left for later).
pub fn windows(
    watermark: chrono::DateTime<chrono::Utc>,
    end: chrono::DateTime<chrono::Utc>,
) -> Vec<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> {
    let mut out = Vec::new();
    let mut from = watermark;
    while end - from >= MIN_WINDOW {
        let mut to = (from + MAX_WINDOW).min(end);
        // Never leave a remainder shorter than an export can cover.
        if end - to > chrono::TimeDelta::zero() && end - to < MIN_WINDOW {
            to = end - MIN_WINDOW;
        }
        out.push((from, to));
        from = to;
    }
    out
}

/// The windows from `watermark` to `end` when an earlier attempt already decided that the first
/// one ends at `decided`: that window is taken again as it was (its export may exist already),
/// unless `--to` now asks for less; the rest are cut as [`windows`] cuts them.
pub fn windows_after(
    watermark: chrono::DateTime<chrono::Utc>,
    end: chrono::DateTime<chrono::Utc>,
    asked_to: Option<chrono::DateTime<chrono::Utc>>,
    decided: Option<chrono::DateTime<chrono::Utc>>,
) -> Vec<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> {
    match decided.filter(|to| *to > watermark && asked_to.is_none_or(|asked| *to <= asked)) {
        Some(to) => {
            let mut all = vec![(watermark, to)];
            all.extend(windows(to, end.max(to)));
            all
        }
        None => windows(watermark, end),
    }
}

/// What `increment` was asked to do.
pub struct IncrementRequest<'a> {
    pub table: &'a str,
    /// An incremental export that exists already (its window must start at the watermark).
    pub export: Option<ExportSource>,
    /// Its window, when DescribeExport gave it (`--incremental-export-arn`); else the summary's is used.
    pub export_window: Option<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)>,
    /// Export and apply changes up to here; `None`: the newest restorable time of the table.
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    pub new_and_old_images: bool,
    /// Where the current data-schemas are (compared with the ones the served copy pinned).
    pub schemas: super::plan::SchemaOptions,
    /// Apply with the served copy's data-schemas even though the current ones differ.
    pub served_schemas: bool,
    pub total_segments: u32,
    pub settings: SegmentSettings,
    /// How often and how long to wait for an export.
    pub poll: std::time::Duration,
    pub wait: std::time::Duration,
}

/// One increment applied (or found applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub run_id: String,
    pub from: String,
    pub to: String,
    /// Change lines applied; `None`: applied before, nothing changed now.
    pub changes: Option<u64>,
    /// How long the apply's transaction took (lock, checks, deletes, inserts, commit).
    pub apply_ms: Option<u64>,
}

/// `increment`: applies the changes since the watermark, window by window, and returns what it
/// applied and the watermark after.
pub async fn increment(
    ctx: &Context,
    warehouse: &dyn Warehouse,
    request: &IncrementRequest<'_>,
) -> Result<(Vec<Done>, Watermark), Error> {
    let mut done = Vec::new();
    let mark = watermark(ctx, warehouse).await?;
    let base = RunPlan::require(ctx.staging()?, &mark.serving).await?;
    if base.source_table != request.table {
        return Err(Error::fatal(format!(
            "{} serves a copy of table {}, not {}: pass --table {} or another --target",
            warehouse.config().target,
            base.source_table,
            request.table,
            base.source_table
        )));
    }
    increment::tables(&base.served_tables(), &base.key_attributes).map_err(|why| {
        Error::fatal(format!(
            "the tables of run {} cannot take increments: {why}",
            base.run_id
        ))
    })?;
    check_schemas(ctx, request, &base).await?;
    if let Some(source) = &request.export {
        let store = ctx.store_of(&source.bucket)?;
        let export = Export::open_kind(store.as_ref(), source, ExportKind::Incremental).await?;
        if let Some(exported) = export.summary.table_name().filter(|t| *t != request.table) {
            return Err(Error::fatal(format!(
                "incremental export {} is of table {exported}, not {}: pass the export of {}",
                source.url(),
                request.table,
                request.table
            )));
        }
        let (from, to) = match request.export_window {
            Some(window) => window,
            None => match summary_window(&export.summary)? {
                Some(window) => window,
                None => described_window(ctx, &export).await?,
            },
        };
        let one = apply_window(
            ctx,
            warehouse,
            request,
            &base,
            &mark,
            (from, to),
            Some(source.clone()),
        )
        .await?;
        done.push(one);
    } else {
        let restorable = restorable(ctx, request.table).await?;
        if mark.at < restorable.0 {
            return Err(Error::fatal(format!(
                "{} holds changes up to {}, but the point-in-time recovery of table {} goes back to {} only: the changes in between can no longer be exported; run a full copy (dynamo-etl run --table {}), which resets the watermark",
                warehouse.config().target,
                instant(mark.at),
                request.table,
                instant(restorable.0),
                request.table
            )));
        }
        let end = request.to.unwrap_or(restorable.1).min(restorable.1);
        let target = warehouse.config().target.clone();
        let view = view_of(request);
        // A window an earlier attempt decided on (and perhaps exported) is taken again as it
        // was, though the newest restorable time has moved on since.
        let decided = decided_window(ctx, &target)
            .await?
            .filter(|w| {
                w.resumes(
                    &target,
                    request.table,
                    &base.run_id,
                    &instant(mark.at),
                    view,
                )
            })
            .map(|w| {
                parse_instant(
                    &w.to,
                    &format!("the end of the window decided for {target}"),
                )
            })
            .transpose()?;
        let planned = windows_after(mark.at, end, request.to, decided);
        if let (Some(to), Some(first)) = (decided, planned.first()) {
            if first.1 == to {
                tracing::info!(target, from = %instant(mark.at), to = %instant(to),
                    "taking up the window an earlier attempt decided on (and its export)");
            }
        }
        let mut mark = mark.clone();
        for (from, to) in planned {
            record_window(ctx, &target, request, &base.run_id, (from, to)).await?;
            let one = apply_window(ctx, warehouse, request, &base, &mark, (from, to), None).await?;
            mark.at = to;
            done.push(one);
        }
    }
    let after = watermark(ctx, warehouse).await?;
    Ok((done, after))
}

fn view_of(request: &IncrementRequest<'_>) -> &'static str {
    match request.new_and_old_images {
        true => "NEW_AND_OLD_IMAGES",
        false => "NEW_IMAGE",
    }
}

/// The window recorded for `target`'s next increment, if any.
async fn decided_window(
    ctx: &Context,
    target: &str,
) -> Result<Option<increment::DecidedWindow>, Error> {
    let staging = ctx.staging()?;
    let key = staging.layout.increment_window(target);
    let Some(bytes) = staging.store.get(&key).await? else {
        return Ok(None);
    };
    match serde_json::from_slice(&bytes) {
        Ok(window) => Ok(Some(window)),
        Err(e) => {
            // Only an optimisation is lost: the window is decided anew.
            tracing::warn!(key, error = %e, "the recorded increment window is not readable; deciding the window anew");
            Ok(None)
        }
    }
}

/// Records the window `target`'s increment is about to export, before the export starts.
async fn record_window(
    ctx: &Context,
    target: &str,
    request: &IncrementRequest<'_>,
    base_run: &str,
    (from, to): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>),
) -> Result<(), Error> {
    let staging = ctx.staging()?;
    let window = increment::DecidedWindow {
        target: target.to_string(),
        table: request.table.to_string(),
        run_id: run_id_of(target, from, to),
        base_run: base_run.to_string(),
        from: instant(from),
        to: instant(to),
        view: view_of(request).to_string(),
        decided_at: instant(chrono::Utc::now()),
    };
    let key = staging.layout.increment_window(target);
    let text = serde_json::to_string_pretty(&window).expect("the window serialises");
    staging
        .store
        .put(&key, text.into(), "application/json")
        .await
        .map_err(|e| Error::from(e).context(format!("recording the increment window of {target}")))
}

/// Forgets the window recorded for `target` (best effort: a window left behind only makes the
/// next attempt export it again).
async fn forget_window(ctx: &Context, target: &str) {
    if let Ok(staging) = ctx.staging() {
        let key = staging.layout.increment_window(target);
        if let Err(e) = staging.store.delete_keys(std::slice::from_ref(&key)).await {
            tracing::warn!(key, error = %e, "could not remove the recorded increment window");
        }
    }
}

/// The window an incremental export's `manifest-summary.json` gives (`exportFromTime`,
/// `exportToTime`), if it gives both. The output format page
/// (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/S3DataExport.Output.html>)
/// does not list these fields, so their absence is no fault: the window is then asked of
/// DescribeExport ([`described_window`]).
pub fn summary_window(
    summary: &crate::source::export::ManifestSummary,
) -> Result<Option<Window>, Error> {
    match (
        summary.export_from_time.as_deref(),
        summary.export_to_time.as_deref(),
    ) {
        (Some(from), Some(to)) => Ok(Some((
            parse_instant(from, "exportFromTime")?,
            parse_instant(to, "exportToTime")?,
        ))),
        _ => Ok(None),
    }
}

/// The window of `export` from DescribeExport's `IncrementalExportSpecification`, the export
/// named by its summary's `exportArn` (or the ARN it was found by).
async fn described_window(ctx: &Context, export: &Export) -> Result<Window, Error> {
    let url = export.source.url();
    let arn = export
        .summary
        .export_arn
        .as_deref()
        .or(export.source.export_arn.as_deref())
        .ok_or_else(|| {
            Error::fatal(format!(
                "incremental export {url}: its manifest-summary.json gives neither its window (exportFromTime, exportToTime) nor its exportArn; name the export by --incremental-export-arn, whose description gives its window"
            ))
        })?;
    tracing::info!(export = %url, export_arn = arn,
        "the export's manifest-summary.json gives no window; asking DescribeExport for it");
    super::export::incremental_window(ctx, arn)
        .await
        .map_err(|e| {
            e.context(format!(
                "incremental export {url}: its manifest-summary.json gives no window, and DescribeExport of {arn} (asked for it) failed"
            ))
        })?
        .ok_or_else(|| {
            Error::fatal(format!(
                "incremental export {url}: neither its manifest-summary.json nor DescribeExport of {arn} gives its window (IncrementalExportSpecification): is it an incremental export?"
            ))
        })
}

/// Refuses (unless asked to go on) when the data-schemas a new full copy would use differ from
/// those the served copy pinned: increments apply to the tables as they are, so new schemas only
/// reach the warehouse with a full copy.
async fn check_schemas(
    ctx: &Context,
    request: &IncrementRequest<'_>,
    base: &RunPlan,
) -> Result<(), Error> {
    let chosen = super::plan::resolver(ctx, &request.schemas)?
        .resolve(request.table, None)
        .await?;
    let current = super::plan::fitted(&base.run_id, &chosen.schemas.schemas, base.dialect);
    let by_name = |schemas: &[crate::schema::DataSchema]| {
        schemas
            .iter()
            .map(|s| (s.table.clone(), s.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    let (now, pinned) = (by_name(&current), by_name(&base.schemas));
    let changed: Vec<String> = now
        .keys()
        .chain(pinned.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|t| now.get(*t) != pinned.get(*t))
        .map(|t| match (now.contains_key(t), pinned.contains_key(t)) {
            (true, false) => format!("{t} (new)"),
            (false, true) => format!("{t} (gone)"),
            _ => format!("{t} (changed)"),
        })
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    let what = format!(
        "the data-schemas of table {} changed since run {} was copied ({} now, {} then): {}",
        request.table,
        base.run_id,
        chosen.source,
        base.schema_source,
        changed.join(", ")
    );
    if request.served_schemas {
        tracing::warn!(run_id = %base.run_id, "{what}; applying with the served copy's data-schemas (--served-schemas)");
        return Ok(());
    }
    Err(Error::fatal(format!(
        "{what}. Increments change rows, not tables: the new data-schemas take effect with a full copy (dynamo-etl run --table {}); until then pass --served-schemas to keep applying increments with the schemas the served copy has",
        request.table
    )))
}

/// The oldest and newest times the table can be exported at: its point-in-time recovery window
/// (DescribeContinuousBackups,
/// <https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_PointInTimeRecoveryDescription.html>;
/// the newest is typically five minutes ago).
async fn restorable(
    ctx: &Context,
    table: &str,
) -> Result<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>), Error> {
    let dynamodb = &ctx.dynamodb;
    let out = ctx
        .retry
        .run_sdk(
            || dynamodb.client.describe_continuous_backups().table_name(table).send(),
            |e, delay| tracing::warn!(table, delay_ms = delay.as_millis() as u64, error = %dynamodb.describe(e), "DescribeContinuousBackups failed; retrying"),
        )
        .await
        .map_err(|e| Error::fatal(format!("DescribeContinuousBackups of {table} failed: {}", dynamodb.describe(&e))))?;
    let pitr = out
        .continuous_backups_description()
        .and_then(|d| d.point_in_time_recovery_description())
        .filter(|p| {
            p.point_in_time_recovery_status()
                == Some(&aws_sdk_dynamodb::types::PointInTimeRecoveryStatus::Enabled)
        })
        .ok_or_else(|| {
            Error::fatal(format!(
                "table {table} has no point-in-time recovery, which incremental exports read: enable it (aws dynamodb update-continuous-backups --table-name {table} --point-in-time-recovery-specification PointInTimeRecoveryEnabled=true), then run a full copy"
            ))
        })?;
    let time = |t: Option<&aws_sdk_dynamodb::primitives::DateTime>, what: &str| {
        t.and_then(|t| t.to_millis().ok())
            .and_then(chrono::DateTime::from_timestamp_millis)
            .ok_or_else(|| {
                Error::fatal(format!(
                    "DescribeContinuousBackups of {table} gave no {what} restorable time"
                ))
            })
    };
    Ok((
        time(pitr.earliest_restorable_date_time(), "earliest")?,
        time(pitr.latest_restorable_date_time(), "latest")?,
    ))
}

/// The run id of the increment of `[from, to)` for `target`: the same window of the same target
/// always gets the same id, so applying it again is recognised as done, while two targets
/// sharing a staging prefix each get a run of their own. A target name that is not all run-id
/// characters, or too long to fit, is shortened and followed by a hash of the whole name.
pub fn run_id_of(
    target: &str,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> String {
    let compact = |t: chrono::DateTime<chrono::Utc>| t.format("%Y%m%dT%H%M%S%.3fZ").to_string();
    format!(
        "inc-{}-{}-{}",
        run_id_name(target),
        compact(from),
        compact(to)
    )
}

/// `target` as the part of a run id that names it: itself when it is short and all run-id
/// characters, else shortened and followed by a hash of the whole name.
pub fn run_id_name(target: &str) -> String {
    use sha2::Digest;
    let safe: String = target
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .collect();
    match safe == target && !safe.is_empty() && safe.len() <= 40 {
        true => safe,
        false => {
            let digest = sha2::Sha256::digest(target.as_bytes());
            let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
            let stem: String = safe.chars().take(31).collect();
            match stem.is_empty() {
                true => hash,
                false => format!("{stem}.{hash}"),
            }
        }
    }
}

/// Plans, exports (unless `given`), runs and applies the increment of one window.
async fn apply_window(
    ctx: &Context,
    warehouse: &dyn Warehouse,
    request: &IncrementRequest<'_>,
    base: &RunPlan,
    mark: &Watermark,
    (from, to): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>),
    given: Option<ExportSource>,
) -> Result<Done, Error> {
    let target = warehouse.config().target.clone();
    let run_id = run_id_of(&target, from, to);
    let spec = IncrementSpec {
        base_run: base.run_id.clone(),
        from: instant(from),
        to: instant(to),
        view: view_of(request).to_string(),
        stream: None,
    };
    let applied = warehouse.increments().await?;
    if applied.iter().any(|a| a.run_id == run_id) {
        tracing::info!(
            run_id,
            target,
            "the increment is applied already; nothing to do"
        );
        return Ok(Done {
            run_id,
            from: spec.from,
            to: spec.to,
            changes: None,
            apply_ms: None,
        });
    }
    if from != mark.at {
        let missing = from > mark.at;
        return Err(Error::fatal(match missing {
            true => format!(
                "the increment covers {} to {}, but {target} holds changes up to {} only: the window from {} to {} is missing; apply it first: dynamo-etl increment --table {} --target {target} (without --incremental-export-prefix/--incremental-export-arn it exports and applies every missing window in order)",
                spec.from, spec.to, instant(mark.at), instant(mark.at), spec.from, request.table
            ),
            false => format!(
                "the increment covers {} to {}, but {target} already holds changes up to {}: it overlaps what is applied; export the changes from {} instead (dynamo-etl increment --table {} --target {target})",
                spec.from, spec.to, instant(mark.at), instant(mark.at), request.table
            ),
        }));
    }
    // One process works on an increment at a time (its staging schema is the target's one):
    // a job submitted twice is told who holds it, and the retry finds the increment applied.
    let lease = RunLease::acquire(ctx.staging()?, &run_id)
        .await
        .map_err(|e| Error::from(e).context(format!("increment {run_id} of {target}")))?;
    let result = async {
        let source = match given {
            Some(source) => source,
            None => {
                let started = super::export::start(
                    ctx,
                    super::export::StartRequest {
                        table: request.table,
                        run_id: &run_id,
                        export_time: None,
                        incremental: Some(super::export::IncrementalWindow {
                            from,
                            to,
                            new_and_old_images: request.new_and_old_images,
                        }),
                    },
                )
                .await?;
                let location =
                    match super::export::wait(ctx, &started.export_arn, request.poll, request.wait)
                        .await
                    {
                        Ok(location) => location,
                        Err(e) => {
                            if e.class() == crate::error::Class::Fatal {
                                // A failed export is final: the next attempt decides a new
                                // window (and so starts a new export) instead of this one.
                                forget_window(ctx, &target).await;
                            }
                            return Err(e);
                        }
                    };
                ExportSource::parse_url(&location).map_err(Error::fatal)?
            }
        };
        let plan = RunPlan {
            format: crate::staging::plan::PLAN_FORMAT,
            run_id: run_id.clone(),
            source_table: base.source_table.clone(),
            total_segments: request.total_segments,
            dialect: base.dialect,
            key_attributes: base.key_attributes.clone(),
            schema_source: base.schema_source.clone(),
            schemas: base.schemas.clone(),
            created_at: chrono::Utc::now(),
            export: Some(source),
            increment: Some(spec.clone()),
        }
        .store_once(ctx.staging()?)
        .await
        .map_err(|e| match e {
            // Increments have no --run-id: their run id is the target and the window.
            crate::staging::plan::PlanError::Conflict { difference, .. } => Error::fatal(format!(
                "increment {run_id} of {target} was started with other settings ({difference}): repeat it with the settings it was started with (dynamo-etl status --run-id {run_id} shows them)"
            )),
            other => other.into(),
        })?;
        let staging = ctx.staging()?;
        for k in 0..plan.total_segments {
            if crate::staging::manifest::read(staging, &plan, k)
                .await?
                .is_some()
            {
                continue;
            }
            super::segment::run_segment(
                ctx,
                &request.settings,
                &plan,
                k,
                Arc::new(ScanCounters::default()),
            )
            .await?;
        }
        let mut config = warehouse.config().clone();
        config.target = format!("{target}{INCREMENT_SUFFIX}");
        let staged = crate::warehouse::open(config);
        let inc = staged.config().staging();
        let prepared = staged
            .state()
            .await?
            .staged
            .is_some_and(|s| s.run_id == plan.run_id);
        if !prepared {
            staged.prepare(&plan).await?;
        }
        staged.load_segments(staging, &plan, &ctx.retry).await?;
        let manifests = crate::staging::manifest::read_all(staging, &plan).await?;
        let retry_with = format!(
            "dynamo-etl increment --table {} --target {target}",
            request.table
        );
        let applying = std::time::Instant::now();
        let outcome = warehouse.apply_increment(&plan, &inc, &manifests).await?;
        let apply_ms = applying.elapsed().as_millis() as u64;
        match outcome {
            ApplyOutcome::Applied { changes } => {
                tracing::info!(run_id, target, from = %spec.from, to = %spec.to, changes, apply_ms, "increment applied");
                Ok(Done {
                    run_id,
                    from: spec.from,
                    to: spec.to,
                    changes: Some(changes),
                    apply_ms: Some(apply_ms),
                })
            }
            ApplyOutcome::AlreadyApplied => Ok(Done {
                run_id,
                from: spec.from,
                to: spec.to,
                changes: None,
                apply_ms: None,
            }),
            ApplyOutcome::Refused(refusal) => {
                let class = refusal.class;
                Err(Error::fatal(format!(
                    "increment {run_id} was not applied: {refusal}; {target} is unchanged"
                ))
                .reclassify(class)
                .next(retry_with))
            }
        }
    }
    .await;
    lease.release().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minutes: i64) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(1_764_547_200, 0).unwrap()
            + chrono::TimeDelta::minutes(minutes)
    }

    #[test]
    fn a_lag_is_caught_up_in_windows_an_export_can_cover() {
        assert!(windows(at(0), at(14)).is_empty(), "under 15 minutes: later");
        assert_eq!(windows(at(0), at(15)), vec![(at(0), at(15))]);
        let day = 24 * 60;
        assert_eq!(
            windows(at(0), at(2 * day + 120)),
            vec![
                (at(0), at(day)),
                (at(day), at(2 * day)),
                (at(2 * day), at(2 * day + 120))
            ]
        );
        // A remainder too short to export is avoided by ending the window before it earlier.
        assert_eq!(
            windows(at(0), at(day + 10)),
            vec![(at(0), at(day - 5)), (at(day - 5), at(day + 10))]
        );
    }

    #[test]
    fn a_retry_takes_the_window_decided_before_though_the_restorable_time_moved() {
        // The first attempt decided on [0, 30) when the newest restorable time was 30.
        let first = windows_after(at(0), at(30), None, None);
        assert_eq!(first, vec![(at(0), at(30))]);
        // Its retry, with the restorable time at 37: the same window, so the same export.
        assert_eq!(
            windows_after(at(0), at(37), None, Some(at(30))),
            vec![(at(0), at(30))]
        );
        // Far later: the same window first, then the rest in windows of their own.
        assert_eq!(
            windows_after(at(0), at(50), None, Some(at(30))),
            vec![(at(0), at(30)), (at(30), at(50))]
        );
        // --to asks for less than was decided: a new window.
        assert_eq!(
            windows_after(at(0), at(20), Some(at(20)), Some(at(30))),
            vec![(at(0), at(20))]
        );
        // A decision that does not start after the watermark is not one for it.
        assert_eq!(
            windows_after(at(30), at(60), None, Some(at(30))),
            vec![(at(30), at(60))]
        );
    }

    #[test]
    fn the_same_window_of_the_same_target_gets_the_same_run_id() {
        let id = run_id_of("platform", at(0), at(60));
        assert_eq!(id, "inc-platform-20251201T000000.000Z-20251201T010000.000Z");
        assert_eq!(id, run_id_of("platform", at(0), at(60)));
        assert_ne!(id, run_id_of("platform_b", at(0), at(60)), "another target");
        let long = "a_target_name_far_longer_than_a_run_id_leaves_room_for_at_all";
        let other = "a_target_name_far_longer_than_a_run_id_leaves_room_for_at_all_2";
        for target in [long, other, "Größe", "\"quoted\" name", "x"] {
            crate::staging::check_run_id(&run_id_of(target, at(0), at(60))).unwrap();
        }
        assert_ne!(
            run_id_of(long, at(0), at(60)),
            run_id_of(other, at(0), at(60))
        );
        assert_ne!(
            run_id_of("Größe", at(0), at(60)),
            run_id_of("Gre", at(0), at(60))
        );
    }

    #[test]
    fn a_summary_without_its_window_is_no_fault() {
        use crate::source::export::ManifestSummary;
        let with = |from: Option<&str>, to: Option<&str>| ManifestSummary {
            export_from_time: from.map(str::to_string),
            export_to_time: to.map(str::to_string),
            ..ManifestSummary::default()
        };
        let (from, to) = ("2023-09-18T17:00:00.000Z", "2023-09-19T04:00:00.000Z");
        assert_eq!(
            summary_window(&with(Some(from), Some(to))).unwrap(),
            Some((
                parse_instant(from, "from").unwrap(),
                parse_instant(to, "to").unwrap()
            ))
        );
        // Absent (the output format page does not list them): DescribeExport is asked instead.
        assert_eq!(summary_window(&with(None, None)).unwrap(), None);
        assert_eq!(summary_window(&with(Some(from), None)).unwrap(), None);
        // Present but not a time: refused, naming the field.
        let err = summary_window(&with(Some("yesterday"), Some(to))).unwrap_err();
        assert!(err.to_string().contains("exportFromTime"), "{err}");
    }
}
