//! `infer-schema`: the weekly schema job.

use std::path::PathBuf;

use super::super::flags::{
    ExportFlags, NoEffectCheckpointFlags, ProgressFlag, ReadFlags, SchemaFlags, TableFlag,
};
use super::super::output::{self, out};
use super::super::Cli;
use dynamo_etl::error::Error;
use dynamo_etl::phases::infer_schema::{infer_schema, InferRequest};
use dynamo_etl::schema::entities::DEFAULT_MAX_TABLES;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub table: TableFlag,
    /// How many segments the table is scanned in, as one parallel Scan (1 to 1,000,000).
    #[arg(long, env = "ETL_TOTAL_SEGMENTS", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub total_segments: u32,
    /// Deprecated spelling of --total-segments (and ETL_SEGMENTS of ETL_TOTAL_SEGMENTS), read
    /// until the next release.
    #[arg(long = "segments", env = "ETL_SEGMENTS", hide = true,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub deprecated_segments: Option<u32>,
    /// Segments scanned at the same time (default: all of them); the read budget is shared
    /// evenly by the segments running at once.
    #[arg(long, env = "ETL_CONCURRENCY", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: Option<u32>,
    /// Infer from a sample: stop after this many items in total.
    #[arg(long, env = "ETL_MAX_ITEMS", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_items: Option<u64>,
    /// Tell entities apart by this string attribute's prefix only. Without it, infer-schema
    /// chooses from the data: a type attribute, the partition and sort key prefixes, or one
    /// table (see --explain).
    #[arg(long, env = "ETL_CLASSIFY_ATTRIBUTE")]
    pub classify_attribute: Option<String>,
    /// An entity prefix is a key up to and including the first occurrence of this character
    /// after a leading one (`ORG#42` → table `org`, `#ORDER#7` → `order`); a key without it is
    /// a whole value (`META`). `none` puts every item in one table named after the source table.
    #[arg(long, env = "ETL_PREFIX_DELIMITER", default_value = "#")]
    pub prefix_delimiter: String,
    /// Print every way of telling entities apart that was weighed (distinct values, coverage,
    /// separation, fill) and the one chosen.
    #[arg(long, env = "ETL_EXPLAIN")]
    pub explain: bool,
    /// Most tables one split may make: a candidate with more distinct values grows with the
    /// data (like ids) and is not used to name tables (1 to 1000).
    #[arg(long, env = "ETL_MAX_TABLES", default_value_t = DEFAULT_MAX_TABLES as u32,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_tables: u32,
    /// Infer from scratch instead of evolving the previous data-schemas, so types may narrow and
    /// columns may disappear; every such change is printed with what it would break.
    #[arg(long, env = "ETL_ALLOW_NARROWING")]
    pub allow_narrowing: bool,
    /// Also write the data-schemas to DIR/<table>/ (e.g. the repository's schemas/ for review).
    /// Other .json files in that folder are removed, so the folder equals the new set.
    #[arg(long, env = "ETL_WRITE_STATIC", value_name = "DIR")]
    pub write_static: Option<PathBuf>,
    #[command(flatten)]
    pub schemas: SchemaFlags,
    #[command(flatten)]
    pub read: ReadFlags,
    #[command(flatten)]
    pub progress: ProgressFlag,
    #[command(flatten)]
    pub export: ExportFlags,
    #[command(flatten)]
    pub no_effect: NoEffectCheckpointFlags,
}

impl Args {
    /// Checks what can be checked before any I/O.
    fn request(&self) -> Result<InferRequest, Error> {
        let table = self
            .table
            .table
            .clone()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::fatal("--table must name a DynamoDB table"))?;
        if self.schemas.no_schema_cache && self.write_static.is_none() {
            return Err(Error::fatal("--no-schema-cache leaves nowhere to write the data-schemas: add --write-static DIR, or drop --no-schema-cache to write a cache snapshot"));
        }
        if matches!(&self.classify_attribute, Some(a) if a.is_empty()) {
            return Err(Error::fatal("--classify-attribute must not be empty"));
        }
        let text = self.prefix_delimiter.as_str();
        let delimiter = if text.is_empty() || text == "none" {
            None
        } else {
            let mut chars = text.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Some(c),
                _ => {
                    return Err(Error::fatal(format!(
                        "--prefix-delimiter must be one character or `none`, got {text:?}"
                    )))
                }
            }
        };
        Ok(InferRequest {
            table,
            segments: self.total_segments,
            concurrency: self.concurrency.unwrap_or(self.total_segments),
            max_read_units: self.read.checked_read_units()?,
            max_items: self.max_items,
            classify_attribute: self.classify_attribute.clone(),
            delimiter,
            explain: self.explain,
            max_tables: self.max_tables as usize,
            allow_narrowing: self.allow_narrowing,
            write_static: self.write_static.clone(),
            schemas: self.schemas.options(),
            consistent_read: self.read.consistent_read,
            progress_every: self.progress.every(),
            export: None,
        })
    }
}

pub async fn run(cli: &Cli, args: &Args) -> Result<(), Error> {
    let mut request = args.request()?;
    let ctx = cli.context().await?;
    request.export = dynamo_etl::phases::export::resolve(
        &ctx,
        args.export.export_prefix.as_deref(),
        args.export.export_arn.as_deref(),
    )
    .await?;
    let report = infer_schema(&ctx, &request).await?;
    out(&output::infer_schema::render(&report));
    Ok(())
}
