//! `infer-schema`: scan a table, infer its data-schemas by evolving the previous ones, and store
//! them as a new schema cache snapshot (and, for review, as files).

use anyhow::{anyhow, Context};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Cli, CommandResult, Failure};
use crate::phases::infer::{scan_and_infer, InferScan, InferSettings};
use crate::schema::cache::SnapshotCache;
use crate::schema::infer::{narrowings, Classification, Narrowing};
use crate::schema::resolve::{Resolution, SchemaResolver};
use crate::schema::{DataSchema, SchemaSet};
use crate::source::key_attributes;
use crate::stage::store::{ObjectStore, StoreError};
use crate::stage::Layout;

#[derive(Debug, Clone, clap::Args)]
pub struct InferArgs {
    /// Source DynamoDB table.
    #[arg(long, env = "ETL_TABLE")]
    pub table: String,
    /// Parallel Scan segments (1 to 1,000,000).
    #[arg(long, env = "ETL_SEGMENTS", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub segments: u32,
    /// Segments scanned at the same time (default: all of them).
    #[arg(long, env = "ETL_CONCURRENCY",
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: Option<u32>,
    /// Read capacity units per second for the whole scan, shared evenly by the segments running
    /// at once. Needed on on-demand tables to cap cost.
    #[arg(long, env = "ETL_MAX_READ_UNITS")]
    pub max_read_units: Option<f64>,
    /// Infer from a sample: stop after this many items in total.
    #[arg(long, env = "ETL_MAX_ITEMS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_items: Option<u64>,
    /// The string attribute whose prefix names the entity type (default: the partition key).
    #[arg(long, env = "ETL_CLASSIFY_ATTRIBUTE")]
    pub classify_attribute: Option<String>,
    /// The entity prefix is the attribute up to and including the first occurrence of this
    /// character (`ORG#…` → table `org`). Items without it go to a table named after the source
    /// table. `none` puts every item in that one table.
    #[arg(long, env = "ETL_PREFIX_DELIMITER", default_value = "#")]
    pub prefix_delimiter: String,
    /// Infer from scratch instead of evolving the previous data-schemas, so types may narrow and
    /// columns may disappear; every such change is printed with what it would break.
    #[arg(long, env = "ETL_ALLOW_NARROWING")]
    pub allow_narrowing: bool,
    /// Also write the data-schemas to DIR/<table>/ (e.g. the repository's schemas/ for review).
    /// Other .json files in that folder are removed, so the folder equals the new set.
    #[arg(long, env = "ETL_WRITE_STATIC", value_name = "DIR")]
    pub write_static: Option<PathBuf>,
    /// Folder of the static data-schemas, the previous version when the cache has none.
    #[arg(long, env = "ETL_SCHEMAS_DIR", default_value = "schemas")]
    pub schemas_dir: PathBuf,
    /// Neither read nor write the schema cache: evolve from the static folder and write only
    /// --write-static (which is then required). No staging bucket is needed.
    #[arg(long, env = "ETL_NO_SCHEMA_CACHE")]
    pub no_schema_cache: bool,
    /// Strongly consistent reads (twice the read units).
    #[arg(long, env = "ETL_CONSISTENT_READ")]
    pub consistent_read: bool,
    /// Seconds between progress log lines.
    #[arg(long, env = "ETL_PROGRESS_SECONDS", default_value_t = 10)]
    pub progress_seconds: u64,
}

impl InferArgs {
    fn delimiter(&self) -> Result<Option<char>, Failure> {
        let text = self.prefix_delimiter.as_str();
        if text.is_empty() || text == "none" {
            return Ok(None);
        }
        let mut chars = text.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => Ok(Some(c)),
            _ => Err(Failure::Fatal(anyhow!(
                "--prefix-delimiter must be one character or `none`, got {text:?}"
            ))),
        }
    }

    /// Checks what can be checked before any I/O.
    fn check(&self) -> Result<(), Failure> {
        let usage = |m: String| Err(Failure::Fatal(anyhow!(m)));
        if self.table.is_empty() {
            return usage("--table must name a DynamoDB table".into());
        }
        if let Some(units) = self.max_read_units {
            if !(units.is_finite() && units > 0.0) {
                return usage(format!(
                    "--max-read-units must be a positive number, got {units}"
                ));
            }
        }
        if self.no_schema_cache && self.write_static.is_none() {
            return usage(
                "--no-schema-cache leaves nowhere to write the data-schemas: add --write-static DIR, or drop --no-schema-cache to write a cache snapshot".into(),
            );
        }
        if matches!(&self.classify_attribute, Some(a) if a.is_empty()) {
            return usage("--classify-attribute must not be empty".into());
        }
        self.delimiter()?;
        Ok(())
    }
}

pub async fn run(cli: &Cli, args: &InferArgs) -> CommandResult {
    args.check()?;
    let table = args.table.as_str();
    let policy = cli.retry.policy();
    let sdk = crate::aws::load(&cli.aws).await?;
    let dynamodb = crate::aws::dynamodb(&sdk, &cli.aws);

    // The cache is this command's output: an unreachable bucket fails now, before the scan.
    let cache = if args.no_schema_cache {
        None
    } else {
        let bucket = cli.staging.bucket.as_deref().ok_or_else(|| {
            Failure::Fatal(anyhow!(
                "no staging bucket for the schema cache: pass --bucket or set ETL_BUCKET (or use --no-schema-cache with --write-static)"
            ))
        })?;
        let store = ObjectStore::new(crate::aws::s3(&sdk, &cli.aws), bucket, policy);
        let cache = SnapshotCache::new(store, Layout::new(&cli.staging.prefix));
        cache
            .check_access()
            .await
            .map_err(|e| store_failure(e, table, "reading the schema cache"))?;
        Some(cache)
    };

    let keys = key_attributes(&dynamodb, table, &policy)
        .await
        .map_err(|e| {
            let retriable = e.is_retriable();
            let err = anyhow::Error::new(e).context(format!("infer-schema for table {table}"));
            if retriable {
                Failure::Retry(err)
            } else {
                Failure::Fatal(err)
            }
        })?;
    let partition_key = keys.first().cloned().ok_or_else(|| {
        Failure::Fatal(anyhow!(
            "table {table} has no key schema in DescribeTable; check --table"
        ))
    })?;
    let classification = Classification {
        attribute: args.classify_attribute.clone().unwrap_or(partition_key),
        delimiter: args.delimiter()?,
    };

    let resolver = SchemaResolver::new(cache.clone(), &args.schemas_dir);
    let previous: Option<Resolution> = match resolver.resolve(table, None).await {
        Ok(r) => Some(r),
        Err(e) if e.is_not_found() => {
            tracing::info!(
                table,
                "no previous data-schemas in the cache or the static folder; inferring from scratch"
            );
            None
        }
        Err(e) => {
            let retriable = e.is_retriable();
            let err = anyhow::Error::new(e).context(format!(
                "cannot read the previous data-schemas of table {table}"
            ));
            return Err(if retriable {
                Failure::Retry(err)
            } else {
                Failure::Fatal(err)
            });
        }
    };
    let previous_schemas: Vec<DataSchema> = previous
        .as_ref()
        .map(|r| r.schemas.schemas.clone())
        .unwrap_or_default();
    if !args.allow_narrowing {
        check_classification(&previous_schemas, &classification, previous.as_ref())?;
    }

    let settings = InferSettings {
        table: table.to_string(),
        segments: args.segments,
        concurrency: args.concurrency.unwrap_or(args.segments),
        max_read_units: args.max_read_units,
        max_items: args.max_items,
        consistent_read: args.consistent_read,
        classification: classification.clone(),
        key_attributes: keys.clone(),
        retry: policy,
        progress_every: Duration::from_secs(args.progress_seconds.max(1)),
    };
    tracing::info!(table, segments = settings.segments, concurrency = settings.concurrency,
        max_items = ?settings.max_items, classify_attribute = %classification.attribute,
        "scanning to infer data-schemas");
    let scan = scan_and_infer(&dynamodb, &settings).await.map_err(|e| {
        let retriable = e.is_retriable();
        let err = anyhow::Error::new(e).context(format!(
            "infer-schema for table {table} stopped; nothing was written. Run the same command again"
        ));
        if retriable {
            Failure::Retry(err)
        } else {
            Failure::Fatal(err)
        }
    })?;

    let evolve_from: &[DataSchema] = if args.allow_narrowing {
        &[]
    } else {
        &previous_schemas
    };
    let schemas = scan
        .inference
        .to_schemas(table, &keys, &classification, evolve_from);
    let lost = narrowings(&previous_schemas, &schemas);
    if !args.allow_narrowing && !lost.is_empty() {
        // Evolution only widens; reaching this is a bug, and writing the result could break loads.
        return Err(Failure::Fatal(anyhow!(
            "internal error: evolving the data-schemas of table {table} narrowed {}; nothing was written",
            lost.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let set = SchemaSet::new(table, schemas, &format!("inference of table {table}")).map_err(
        |e| match e {
            crate::schema::SchemaError::NoneForTable { .. } => Failure::Fatal(anyhow!(
                "table {table} has no items to infer data-schemas from, and there are no previous ones; load data first or write them by hand under {}/{table}/",
                args.schemas_dir.display()
            )),
            other => Failure::Fatal(anyhow::Error::new(other).context(format!(
                "the data-schemas inferred for table {table} are not valid; nothing was written"
            ))),
        },
    )?;

    let written_static = match &args.write_static {
        Some(dir) => Some(write_static(dir, &set).map_err(Failure::Fatal)?),
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

    print!(
        "{}",
        render_report(&Report {
            table,
            scan: &scan,
            segments: args.segments,
            previous: previous.as_ref(),
            allow_narrowing: args.allow_narrowing,
            next: &set,
            lost: &lost,
            snapshot: snapshot.as_ref().map(|s| {
                (
                    s.snapshot_id.as_str(),
                    cache.as_ref().map(|c| c.location()).unwrap_or_default(),
                )
            }),
            written_static: written_static.as_deref(),
        })
    );
    if args.allow_narrowing && !lost.is_empty() {
        tracing::warn!(
            table,
            narrowed = lost.len(),
            "--allow-narrowing: the new data-schemas hold less than the previous ones (listed on stdout)"
        );
    }
    Ok(())
}

/// Refuses a classification that differs from the one the previous data-schemas were made with:
/// evolving across it would mix two ways of splitting the table.
fn check_classification(
    previous: &[DataSchema],
    classification: &Classification,
    from: Option<&Resolution>,
) -> Result<(), Failure> {
    let Some(rule) = previous.iter().filter_map(|s| s.rule.as_ref()).find(|r| {
        r.attribute != classification.attribute
            || classification
                .delimiter
                .is_none_or(|d| !r.prefix.ends_with(d))
    }) else {
        return Ok(());
    };
    let origin = from.map(|r| r.source.to_string()).unwrap_or_default();
    Err(Failure::Fatal(anyhow!(
        "the previous data-schemas ({origin}) classify items by {} prefixes like {:?}, but this run classifies by {} with delimiter {}. Repeat the previous --classify-attribute/--prefix-delimiter, or pass --allow-narrowing to infer from scratch (and review what it drops)",
        rule.attribute,
        rule.prefix,
        classification.attribute,
        classification
            .delimiter
            .map(|d| format!("{d:?}"))
            .unwrap_or_else(|| "none".into())
    )))
}

fn store_failure(e: StoreError, table: &str, doing: &str) -> Failure {
    if e.is_retriable() {
        Failure::Retry(anyhow::Error::new(e).context(format!(
            "infer-schema for table {table}: {doing} failed; the staging bucket is unreachable, run the same command again later"
        )))
    } else {
        Failure::Fatal(anyhow::Error::new(e).context(format!(
            "infer-schema for table {table}: {doing} failed; check --bucket, --prefix, --s3-endpoint and the credentials"
        )))
    }
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

struct Report<'a> {
    table: &'a str,
    scan: &'a InferScan,
    segments: u32,
    previous: Option<&'a Resolution>,
    allow_narrowing: bool,
    next: &'a SchemaSet,
    lost: &'a [Narrowing],
    /// Snapshot id and cache location.
    snapshot: Option<(&'a str, String)>,
    written_static: Option<&'a Path>,
}

fn render_report(r: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let extent = if r.scan.complete {
        "the whole table".to_string()
    } else {
        format!("a sample: stopped after {} items", r.scan.items)
    };
    let _ = writeln!(
        out,
        "infer-schema {}: {} items in {} segments ({extent}), {:.1} read units, {} pages, {} retries, {} ms",
        r.table,
        r.scan.items,
        r.segments,
        r.scan.read_units,
        r.scan.pages,
        r.scan.retries,
        r.scan.duration.as_millis()
    );
    let previous: &[DataSchema] = r.previous.map(|p| &p.schemas.schemas[..]).unwrap_or(&[]);
    match (r.previous, r.allow_narrowing) {
        (None, _) => {
            let _ = writeln!(out, "no previous data-schemas: inferred from scratch");
        }
        (Some(p), false) => {
            let _ = writeln!(
                out,
                "evolved from {} ({}): names and order kept, types only widened",
                p.source, p.reason
            );
        }
        (Some(p), true) => {
            let _ = writeln!(
                out,
                "--allow-narrowing: inferred from scratch, compared with {}",
                p.source
            );
        }
    }
    let mut tables: Vec<&DataSchema> = r.next.schemas.iter().collect();
    tables.sort_by(|a, b| a.table.cmp(&b.table));
    for schema in tables {
        let before = previous.iter().find(|p| p.table == schema.table);
        let changes = changes(before, schema);
        let summary = if before.is_none() {
            "new table".to_string()
        } else if changes.is_empty() {
            "unchanged".to_string()
        } else {
            changes.join("; ")
        };
        let _ = writeln!(
            out,
            "  {} ({} columns): {summary}",
            schema.table,
            schema.columns.len()
        );
    }
    if r.allow_narrowing {
        if r.lost.is_empty() {
            let _ = writeln!(
                out,
                "nothing narrows compared with the previous data-schemas"
            );
        } else {
            let _ = writeln!(
                out,
                "{} change(s) narrow the previous data-schemas:",
                r.lost.len()
            );
            for n in r.lost {
                let _ = writeln!(out, "  {n}\n      would break: {}", n.consequence());
            }
        }
    }
    if let Some(dir) = r.written_static {
        let _ = writeln!(
            out,
            "static copy written to {}/ ({} files); review it like code",
            dir.display(),
            r.next.schemas.len()
        );
    }
    match &r.snapshot {
        Some((id, location)) => {
            let _ = writeln!(
                out,
                "snapshot {id} written to {location}{id}/ ({} files); runs planned from now on use it",
                r.next.schemas.len()
            );
        }
        None => {
            let _ = writeln!(out, "no snapshot written (--no-schema-cache)");
        }
    }
    out
}

/// What evolution changed in one table, for the report.
fn changes(before: Option<&DataSchema>, after: &DataSchema) -> Vec<String> {
    let Some(before) = before else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for c in &after.columns {
        match before.columns.iter().find(|p| p.attribute == c.attribute) {
            None => out.push(format!("new column {} {}", c.column, c.logical_type.name())),
            Some(p) => {
                if p.logical_type != c.logical_type {
                    out.push(format!(
                        "{} {} -> {}",
                        c.column,
                        p.logical_type.name(),
                        c.logical_type.name()
                    ));
                }
                if p.nullable != c.nullable {
                    let now = if c.nullable { "nullable" } else { "not null" };
                    out.push(format!("{} now {now}", c.column));
                }
            }
        }
    }
    out
}
