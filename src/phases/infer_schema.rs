//! `infer-schema`, the weekly schema job: scan the table (or a sample), infer its data-schemas by
//! evolving the previous ones, and store them as a new schema cache snapshot (and, for review,
//! as files).
//!
//! The scan reads the whole table (or a sample) as a parallel Scan, summarises every item into a
//! [`Survey`] (per previous table, and per way of telling entities apart), and merges the
//! per-segment summaries; [`plan`] then chooses how to tell entities apart and writes the
//! data-schemas. Each segment streams pages through a bounded channel into its own summary, so
//! memory holds a couple of pages per running segment plus the summaries (which grow with the
//! number of distinct attributes and entities, never with the items or distinct key values: see
//! `schema::entities`). At most `concurrency` segments run at once, and the read budget is
//! shared between them. [`Survey::merge`] is commutative and associative, so the result does not
//! depend on which segment finishes first.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use anyhow::Context as _;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::plan::{resolver, SchemaOptions};
use super::Context;
use crate::error::{Class, Classify, Error};
use crate::retry::RetryPolicy;
use crate::schema::entities::{
    established, plan, Candidate, Plan, PlanSettings, Strategy, Survey, SurveySettings,
};
use crate::schema::evolve::{narrowings, Narrowing};
use crate::schema::{DataSchema, SchemaError, SchemaSet, Test};
use crate::source::export::{read_segment, Export, ExportSource};
use crate::source::{
    key_attributes, scan_segment, DynamoDb, Message, ScanCounters, ScanError, ScanSpec,
};
use crate::staging::resolve::Resolution;
use crate::staging::schema_cache::SnapshotCache;
use crate::storage::{Store, StoreError};

/// Pages waiting to be summarised, per segment.
const PAGES_IN_FLIGHT: usize = 2;

/// What to scan and how.
#[derive(Debug, Clone)]
pub struct InferSettings {
    pub table: String,
    /// Parallel Scan segments (DynamoDB's TotalSegments).
    pub segments: u32,
    /// Segments scanned at the same time.
    pub concurrency: u32,
    /// Read units per second for the whole scan, shared evenly by the running segments.
    pub max_read_units: Option<f64>,
    /// Stop after this many items in total (a sample).
    pub max_items: Option<u64>,
    pub consistent_read: bool,
    /// What each item is summarised under.
    pub survey: Arc<SurveySettings>,
    pub key_attributes: Vec<String>,
    pub retry: RetryPolicy,
    pub progress_every: Duration,
    /// Read the items from this export of the table instead of scanning it.
    pub export: Option<ExportInput>,
}

/// An export to infer from, opened: its manifests and the store of its bucket.
#[derive(Clone)]
pub struct ExportInput {
    pub store: Store,
    pub export: Arc<Export>,
}

impl std::fmt::Debug for ExportInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExportInput({})", self.export.source.url())
    }
}

impl InferSettings {
    /// The read-unit rate of one segment: the budget divided by the segments that can run at once,
    /// so the sum over running segments never exceeds it.
    pub fn segment_read_units(&self) -> Option<f64> {
        let running = self.concurrency.min(self.segments).max(1);
        self.max_read_units.map(|r| r / f64::from(running))
    }
}

/// The merged result of a scan.
#[derive(Debug, Clone)]
pub struct InferScan {
    pub survey: Survey,
    /// Items summarised.
    pub items: u64,
    /// False when `max_items` stopped the scan before the table's end.
    pub complete: bool,
    pub read_units: f64,
    pub pages: u64,
    pub retries: u64,
    pub duration: Duration,
}

/// Scans `settings.table` and summarises every item.
pub async fn scan_and_infer(
    client: &DynamoDb,
    settings: &InferSettings,
) -> Result<InferScan, ScanError> {
    let started = Instant::now();
    let counters = Arc::new(ScanCounters::default());
    let claimed = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicU32::new(0));
    let permits = Arc::new(Semaphore::new(
        settings.concurrency.min(settings.segments).max(1) as usize,
    ));
    let mut tasks = JoinSet::new();
    for segment in 0..settings.segments {
        let client = client.clone();
        let counters = counters.clone();
        let claimed = claimed.clone();
        let finished = finished.clone();
        let permits = permits.clone();
        let settings = settings.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("never closed");
            let limit_reached = settings
                .max_items
                .is_some_and(|max| claimed.load(Ordering::Relaxed) >= max);
            let outcome = if limit_reached {
                Ok(SegmentOutcome::new(&settings))
            } else {
                infer_segment(&client, &settings, segment, &counters, &claimed).await
            };
            if let Ok(o) = &outcome {
                finished.fetch_add(1, Ordering::Relaxed);
                tracing::info!(table = %settings.table, segment, segments = settings.segments,
                    items = o.items, stopped_early = o.stopped, "segment summarised");
            }
            (segment, outcome)
        });
    }

    let mut parts: Vec<Option<SegmentOutcome>> = vec![None; settings.segments as usize];
    {
        let reporter = report_progress(&counters, &finished, settings, started);
        tokio::pin!(reporter);
        loop {
            let next = tokio::select! {
                next = tasks.join_next() => next,
                _ = &mut reporter => unreachable!("the reporter never finishes"),
            };
            let Some(joined) = next else { break };
            let (segment, outcome) = joined.expect("segment tasks do not panic");
            match outcome {
                Ok(o) => parts[segment as usize] = Some(o),
                Err(e) => {
                    // The other segments would only spend read capacity on a failed job.
                    tasks.abort_all();
                    return Err(e);
                }
            }
        }
    }

    // Merge in segment order: the result is the same in any order, this just makes it obvious.
    let mut survey = Survey::new(settings.survey.clone());
    let mut stopped = false;
    for part in parts.into_iter().flatten() {
        survey.merge(&part.survey);
        stopped |= part.stopped;
    }
    let items = match settings.max_items {
        Some(max) => claimed.load(Ordering::Relaxed).min(max),
        None => claimed.load(Ordering::Relaxed),
    };
    // Reaching the limit exactly at the table's end still counts as a sample: whether more items
    // exist is unknown.
    let complete = !stopped && settings.max_items.is_none_or(|max| items < max);
    Ok(InferScan {
        survey,
        items,
        complete,
        read_units: counters.read_units(),
        pages: counters.pages.load(Ordering::Relaxed),
        retries: counters.retries.load(Ordering::Relaxed),
        duration: started.elapsed(),
    })
}

#[derive(Debug, Clone)]
struct SegmentOutcome {
    survey: Survey,
    items: u64,
    /// The item limit was reached while this segment still had pages.
    stopped: bool,
    /// Why a page's items could not be read, if one could not.
    bad_page: Option<String>,
}

impl SegmentOutcome {
    fn new(settings: &InferSettings) -> Self {
        SegmentOutcome {
            survey: Survey::new(settings.survey.clone()),
            items: 0,
            stopped: false,
            bad_page: None,
        }
    }
}

async fn infer_segment(
    client: &DynamoDb,
    settings: &InferSettings,
    segment: u32,
    counters: &Arc<ScanCounters>,
    claimed: &AtomicU64,
) -> Result<SegmentOutcome, ScanError> {
    let spec = ScanSpec {
        table: settings.table.clone(),
        segment,
        total_segments: settings.segments,
        consistent_read: settings.consistent_read,
        max_read_units: settings.segment_read_units(),
        key_attributes: settings.key_attributes.clone(),
        retry: settings.retry,
        start_key: None,
        page_items: None,
        // A sample has nothing worth saving: a stop ends it like any other failure.
        stop: crate::stop::Stop::default(),
    };
    let (tx, mut rx) = mpsc::channel::<Message>(PAGES_IN_FLIGHT);
    let scan = async move {
        let result = match &settings.export {
            // An export is read in the same segments, each its share of the data files.
            Some(input) => {
                read_segment(
                    input.store.as_ref(),
                    &input.export,
                    (segment, settings.segments),
                    &spec.stop,
                    counters,
                    &tx,
                    &settings.table,
                )
                .await
            }
            None => scan_segment(client, &spec, counters, &tx).await,
        };
        drop(tx);
        result
    };
    let summarise = async {
        let mut out = SegmentOutcome::new(settings);
        // Nothing sends an end here: the channel closes when the scan returns.
        'pages: while let Some(Message::Page(page)) = rx.recv().await {
            let items = match page.items() {
                Ok(items) => items,
                Err(e) => {
                    out.bad_page = Some(e.to_string());
                    break 'pages;
                }
            };
            for item in &items {
                let n = claimed.fetch_add(1, Ordering::Relaxed);
                if settings.max_items.is_some_and(|max| n >= max) {
                    out.stopped = true;
                    break 'pages;
                }
                out.survey.observe(item);
                out.items += 1;
            }
        }
        // Closing the channel tells the scan to stop at its next page.
        drop(rx);
        out
    };
    let (scanned, mut out) = tokio::join!(scan, summarise);
    if let Some(problem) = out.bad_page.take() {
        return Err(ScanError::Request {
            table: settings.table.clone(),
            segment,
            total_segments: settings.segments,
            last_key: None,
            detail: format!("a page's items cannot be read: {problem}"),
            retriable: false,
        });
    }
    match scanned {
        Ok(_) => Ok(out),
        Err(ScanError::Downstream { .. }) if out.stopped => Ok(out),
        Err(e) => Err(e),
    }
}

async fn report_progress(
    counters: &ScanCounters,
    finished: &AtomicU32,
    settings: &InferSettings,
    started: Instant,
) {
    let mut ticker = tokio::time::interval(settings.progress_every);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let items = counters.items.load(Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64().max(0.001);
        tracing::info!(
            table = %settings.table,
            items,
            pages = counters.pages.load(Ordering::Relaxed),
            read_units = counters.read_units(),
            items_per_sec = (items as f64 / secs).round(),
            segments_done = finished.load(Ordering::Relaxed),
            segments = settings.segments,
            throttled = counters.throttled.load(Ordering::Relaxed),
            "scanning for data-schema inference"
        );
    }
}

/// What the schema job is asked to do.
#[derive(Debug, Clone)]
pub struct InferRequest {
    pub table: String,
    /// Parallel Scan segments.
    pub segments: u32,
    /// Segments scanned at the same time.
    pub concurrency: u32,
    /// Read units per second for the whole scan.
    pub max_read_units: Option<f64>,
    /// Stop after this many items in total (a sample).
    pub max_items: Option<u64>,
    /// Tell entities apart by this string attribute's prefix; `None` chooses from the data.
    pub classify_attribute: Option<String>,
    /// Entity prefixes end at this character; `None` puts every item in one table.
    pub delimiter: Option<char>,
    /// Print every way of telling entities apart that was weighed, with its figures.
    pub explain: bool,
    /// Most tables a split may make; more values than this grow with the data (like ids).
    pub max_tables: usize,
    /// Infer from scratch instead of evolving the previous data-schemas.
    pub allow_narrowing: bool,
    /// Also write the data-schemas to `<dir>/<table>/`.
    pub write_static: Option<PathBuf>,
    /// Where the previous data-schemas come from; with `use_cache` the new snapshot goes there.
    pub schemas: SchemaOptions,
    pub consistent_read: bool,
    pub progress_every: Duration,
    /// Infer from this export of the table (no read capacity) instead of scanning it.
    pub export: Option<ExportSource>,
}

/// Runs the schema job; returns what it did.
pub async fn infer_schema(ctx: &Context, args: &InferRequest) -> Result<InferReport, Error> {
    let table = args.table.as_str();
    // The cache is this command's output: an unreachable bucket fails now, before the scan.
    let cache = open_cache(ctx, args).await?;
    let keys = key_attributes(&ctx.dynamodb, table, &ctx.retry)
        .await
        .map_err(|e| Error::from(e).context(format!("infer-schema for table {table}")))?;
    if keys.is_empty() {
        return Err(Error::fatal(format!(
            "table {table} has no key schema in DescribeTable; check --table"
        )));
    }
    let strategy = match (&args.classify_attribute, args.delimiter) {
        (_, None) => Strategy::OneTable,
        (Some(attribute), Some(_)) => Strategy::Prefix(attribute.clone()),
        (None, Some(_)) => Strategy::Auto,
    };
    let previous = previous_schemas(ctx, args).await?;
    let previous_schemas: &[DataSchema] = previous
        .as_ref()
        .map(|r| &r.schemas.schemas[..])
        .unwrap_or(&[]);
    // Rules are kept whoever wrote them; only a split the operator names that differs from
    // theirs is refused (or, with --allow-narrowing, replaces them).
    let forced = strategy != Strategy::Auto;
    if forced && !args.allow_narrowing {
        check_classification(
            previous_schemas,
            &strategy,
            args.delimiter,
            previous.as_ref(),
        )?;
    }
    let evolve_from: &[DataSchema] = if forced && args.allow_narrowing {
        &[]
    } else {
        previous_schemas
    };
    let mut survey =
        SurveySettings::new(&keys, args.delimiter, args.max_tables, evolve_from.to_vec());
    if let Strategy::Prefix(attribute) = &strategy {
        survey = survey.with_token_attribute(attribute);
    }
    if let Some(Candidate::Token(attribute)) = established(evolve_from, &survey) {
        survey = survey.with_token_attribute(&attribute);
    }
    let export = match &args.export {
        Some(source) => Some(ExportInput {
            store: ctx.store_of(&source.bucket)?,
            export: Arc::new(super::export::check_for(ctx, source, table).await?),
        }),
        None => None,
    };
    let settings = InferSettings {
        export,
        table: table.to_string(),
        segments: args.segments,
        concurrency: args.concurrency,
        max_read_units: args.max_read_units,
        max_items: args.max_items,
        consistent_read: args.consistent_read,
        survey: Arc::new(survey),
        key_attributes: keys.clone(),
        retry: ctx.retry,
        progress_every: args.progress_every,
    };
    tracing::info!(table, segments = settings.segments, concurrency = settings.concurrency,
        max_items = ?settings.max_items, strategy = ?strategy, "scanning to infer data-schemas");
    let scan = scan_and_infer(&ctx.dynamodb, &settings)
        .await
        .map_err(|e| {
            Error::from(e).context(format!(
                "infer-schema for table {table} stopped; nothing was written. Run the same command again"
            ))
        })?;
    let planned = plan(
        &scan.survey,
        &PlanSettings {
            source_table: table,
            strategy,
            narrow: args.allow_narrowing,
        },
    )
    .map_err(|e| {
        Error::fatal(format!(
            "infer-schema for table {table}: {e}; nothing was written"
        ))
    })?;
    for finding in &planned.findings {
        tracing::warn!(table, finding = %finding.describe(table), "data-schemas: a reviewer should look");
    }
    let schemas = planned.schemas.clone();
    let lost = narrowings(previous_schemas, &schemas);
    let set = checked_set(args, schemas, &lost)?;
    let written_static = match &args.write_static {
        Some(dir) => Some(write_static(dir, &set).map_err(|e| Error::fatal(format!("{e:#}")))?),
        None => None,
    };
    let snapshot = match &cache {
        Some(cache) => Some(
            cache
                .write(&set, chrono::Utc::now())
                .await
                .map_err(|e| store_failure(e, table, "writing the new snapshot"))?,
        ),
        None => None,
    };
    if let Some(s) = &snapshot {
        tracing::info!(table, snapshot = %s.snapshot_id, files = s.files.len(),
            "schema cache snapshot written; it is active for runs planned from now on");
    }
    if args.allow_narrowing && !lost.is_empty() {
        tracing::warn!(
            table,
            narrowed = lost.len(),
            "--allow-narrowing: the new data-schemas hold less than the previous ones (listed on stdout)"
        );
    }
    Ok(InferReport {
        table: table.to_string(),
        scan,
        total_segments: args.segments,
        previous,
        plan: planned,
        explain: args.explain,
        allow_narrowing: args.allow_narrowing,
        next: set,
        lost,
        snapshot: snapshot.map(|s| WrittenSnapshot {
            id: s.snapshot_id,
            location: cache.as_ref().map(|c| c.location()).unwrap_or_default(),
        }),
        written_static,
    })
}

/// The schema cache the new snapshot goes to, checked reachable; `None` with the cache off.
async fn open_cache(ctx: &Context, args: &InferRequest) -> Result<Option<SnapshotCache>, Error> {
    if !args.schemas.use_cache {
        return Ok(None);
    }
    let staging = ctx.staging().map_err(|e| {
        e.context(
            "the schema cache needs a staging bucket (or use --no-schema-cache with --write-static)",
        )
    })?;
    let cache = SnapshotCache::new(staging.clone());
    cache
        .check_access()
        .await
        .map_err(|e| store_failure(e, &args.table, "reading the schema cache"))?;
    Ok(Some(cache))
}

/// The data-schemas inference evolves from, if the table has any yet.
async fn previous_schemas(ctx: &Context, args: &InferRequest) -> Result<Option<Resolution>, Error> {
    let table = args.table.as_str();
    match resolver(ctx, &args.schemas)?.resolve(table, None).await {
        Ok(r) => Ok(Some(r)),
        Err(e) if e.is_not_found() => {
            tracing::info!(
                table,
                "no previous data-schemas in the cache or the static folder; inferring from scratch"
            );
            Ok(None)
        }
        Err(e) => Err(Error::from(e).context(format!(
            "cannot read the previous data-schemas of table {table}"
        ))),
    }
}

/// The inferred data-schemas as a valid set; evolution must not have narrowed anything.
fn checked_set(
    args: &InferRequest,
    schemas: Vec<DataSchema>,
    lost: &[Narrowing],
) -> Result<SchemaSet, Error> {
    let table = args.table.as_str();
    if !args.allow_narrowing && !lost.is_empty() {
        // Evolution only widens; reaching this is a bug, and writing the result could break loads.
        return Err(Error::fatal(format!(
            "internal error: evolving the data-schemas of table {table} narrowed {}; nothing was written",
            lost.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    SchemaSet::new(table, schemas, &format!("inference of table {table}")).map_err(|e| match e {
        SchemaError::NoneForTable { .. } => Error::fatal(format!(
            "table {table} has no items to infer data-schemas from, and there are no previous ones; load data first or write them by hand under {}/{table}/",
            args.schemas.dir.display()
        )),
        other => Error::fatal(other).context(format!(
            "the data-schemas inferred for table {table} are not valid; nothing was written"
        )),
    })
}

/// Refuses a split named on the command line (`--classify-attribute`, `--prefix-delimiter none`)
/// that differs from the one the previous data-schemas were made with: evolving across it would
/// mix two ways of splitting the table.
fn check_classification(
    previous: &[DataSchema],
    strategy: &Strategy,
    delimiter: Option<char>,
    from: Option<&Resolution>,
) -> Result<(), Error> {
    let Some(condition) = previous
        .iter()
        .filter_map(|s| s.rule.as_ref())
        .flat_map(|r| r.conditions())
        .find(|c| match (strategy, &c.test, delimiter) {
            (Strategy::Prefix(a), Test::Prefix(p), Some(d)) => &c.attribute != a || !p.ends_with(d),
            (Strategy::Prefix(a), Test::Equals(_), Some(_)) => &c.attribute != a,
            _ => true,
        })
    else {
        return Ok(());
    };
    let origin = from.map(|r| r.source.to_string()).unwrap_or_default();
    let this_run = match strategy {
        Strategy::Prefix(a) => format!(
            "this run classifies by {a} prefixes with delimiter {}",
            delimiter
                .map(|d| format!("{d:?}"))
                .unwrap_or_else(|| "none".into())
        ),
        _ => "this run puts every item in one table (--prefix-delimiter none)".to_string(),
    };
    Err(Error::fatal(format!(
        "the previous data-schemas ({origin}) classify items by rules like {}, but {this_run}. Leave out --classify-attribute and --prefix-delimiter to keep the previous rules, or pass --allow-narrowing to infer from scratch (and review what it drops)",
        condition.describe(),
    )))
}

fn store_failure(e: StoreError, table: &str, doing: &str) -> Error {
    let advice = match e.class() {
        Class::Retry => "the staging bucket is unreachable, run the same command again later",
        Class::Fatal => "check --bucket, --prefix, --s3-endpoint and the credentials",
    };
    Error::from(e).context(format!(
        "infer-schema for table {table}: {doing} failed; {advice}"
    ))
}

/// Writes the set to `dir/<source-table>/` and removes other `.json` files there, so the folder
/// holds exactly the new set. Returns the folder.
fn write_static(dir: &Path, set: &SchemaSet) -> anyhow::Result<PathBuf> {
    let folder = dir.join(&set.source_table);
    std::fs::create_dir_all(&folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    let files = set.to_files();
    let mut keep = BTreeSet::new();
    for (path, text) in &files {
        let target = dir.join(path);
        std::fs::write(&target, text)
            .with_context(|| format!("cannot write {}", target.display()))?;
        keep.insert(target);
    }
    let entries =
        std::fs::read_dir(&folder).with_context(|| format!("cannot list {}", folder.display()))?;
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot list {}", folder.display()))?
            .path();
        if path.extension().is_some_and(|x| x == "json") && !keep.contains(&path) {
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove the stale {}", path.display()))?;
            tracing::info!(file = %path.display(), "removed a data-schema that is no longer in the set");
        }
    }
    Ok(folder)
}

/// What `infer-schema` did; the command line prints it.
#[derive(Debug, Clone)]
pub struct InferReport {
    pub table: String,
    pub scan: InferScan,
    /// Parallel Scan segments (DynamoDB's TotalSegments).
    pub total_segments: u32,
    /// The data-schemas evolved from (or, with `allow_narrowing`, compared with), if any.
    pub previous: Option<Resolution>,
    /// How entities were told apart, every candidate weighed, and what a reviewer should know.
    pub plan: Plan,
    /// Whether the command line asked for every candidate weighed (`--explain`).
    pub explain: bool,
    pub allow_narrowing: bool,
    /// The new data-schemas.
    pub next: SchemaSet,
    /// What the new data-schemas hold less of than the previous ones (only with
    /// `allow_narrowing`).
    pub lost: Vec<Narrowing>,
    /// The schema cache snapshot written, if any.
    pub snapshot: Option<WrittenSnapshot>,
    /// The folder the static copy went to, if any.
    pub written_static: Option<PathBuf>,
}

/// A schema cache snapshot `infer-schema` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenSnapshot {
    pub id: String,
    /// The cache's location (`s3://bucket/prefix/…/`); the snapshot is `<location><id>/`.
    pub location: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(segments: u32, concurrency: u32, budget: Option<f64>) -> InferSettings {
        InferSettings {
            table: "t".into(),
            segments,
            concurrency,
            max_read_units: budget,
            max_items: None,
            consistent_read: false,
            survey: Arc::new(SurveySettings::new(
                &["pk".into()],
                Some('#'),
                200,
                Vec::new(),
            )),
            key_attributes: vec!["pk".into()],
            retry: RetryPolicy::default(),
            progress_every: Duration::from_secs(10),
            export: None,
        }
    }

    #[test]
    fn the_budget_is_split_over_the_segments_running_at_once() {
        assert_eq!(settings(8, 8, Some(80.0)).segment_read_units(), Some(10.0));
        assert_eq!(settings(8, 2, Some(80.0)).segment_read_units(), Some(40.0));
        assert_eq!(settings(2, 8, Some(80.0)).segment_read_units(), Some(40.0));
        assert_eq!(settings(4, 4, None).segment_read_units(), None);
    }
}
