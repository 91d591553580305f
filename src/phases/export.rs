//! Runs from a DynamoDB export: finding the export a run is planned from (`--export-prefix`, or
//! `--export-arn` resolved with DescribeExport) and checking that it is a finished full export of
//! the run's table before the run is pinned to it.

use aws_sdk_dynamodb::types::ExportStatus;

use super::Context;
use crate::error::{Class, Error};
use crate::retry::sdk_failure;
use crate::source::export::{Export, ExportSource};

/// The export named by `--export-prefix` or `--export-arn` (at most one of them), if any.
pub async fn resolve(
    ctx: &Context,
    prefix: Option<&str>,
    arn: Option<&str>,
) -> Result<Option<ExportSource>, Error> {
    match (prefix, arn) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(Error::fatal(
            "pass either --export-prefix or --export-arn, not both",
        )),
        (Some(url), None) => Ok(Some(ExportSource::parse_url(url).map_err(Error::fatal)?)),
        (None, Some(arn)) => Ok(Some(describe(ctx, arn).await?)),
    }
}

/// Where the finished export `arn` is, from DescribeExport.
async fn describe(ctx: &Context, arn: &str) -> Result<ExportSource, Error> {
    let dynamodb = &ctx.dynamodb;
    let out = ctx
        .retry
        .run_sdk(
            || dynamodb.client.describe_export().export_arn(arn).send(),
            |e, delay| {
                tracing::warn!(export_arn = arn, delay_ms = delay.as_millis() as u64,
                    error = %dynamodb.describe(e), "DescribeExport failed; retrying")
            },
        )
        .await
        .map_err(|e| {
            let class = match sdk_failure(&e).is_retriable() {
                true => Class::Retry,
                false => Class::Fatal,
            };
            Error::fatal(format!(
                "DescribeExport of {arn} failed: {}",
                dynamodb.describe(&e)
            ))
            .reclassify(class)
        })?;
    let description = out
        .export_description()
        .ok_or_else(|| Error::fatal(format!("DescribeExport of {arn} returned no description")))?;
    match description.export_status() {
        Some(ExportStatus::Completed) => {}
        Some(ExportStatus::InProgress) => {
            return Err(Error::retry(format!(
                "export {arn} is still in progress; wait for it (dynamo-etl export wait --export-arn {arn}) and plan again"
            )))
        }
        status => {
            return Err(Error::fatal(format!(
                "export {arn} is {}: {}; start another export",
                status.map_or("of unknown status", |s| s.as_str()),
                description.failure_message().unwrap_or("no reason given")
            )))
        }
    }
    let bucket = description
        .s3_bucket()
        .ok_or_else(|| Error::fatal(format!("export {arn} names no S3 bucket")))?;
    ExportSource::of_arn(bucket, description.s3_prefix(), arn).map_err(Error::fatal)
}

/// Reads the export's manifests and checks that they are of `table`.
pub async fn check_for(ctx: &Context, source: &ExportSource, table: &str) -> Result<Export, Error> {
    let store = ctx.store_of(&source.bucket)?;
    let export = Export::open(store.as_ref(), source).await?;
    if let Some(exported) = export.summary.table_name().filter(|t| *t != table) {
        return Err(Error::fatal(format!(
            "export {} is of table {exported}, not {table}; pass the export of {table}, or --table {exported}",
            source.url()
        )));
    }
    tracing::info!(export = %source.url(), table, files = export.files.len(), items = export.item_count(),
        export_time = export.summary.export_time.as_deref().unwrap_or("unknown"), "export checked");
    Ok(export)
}
