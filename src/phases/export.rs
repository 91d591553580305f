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

/// The window of incremental export `arn`, from DescribeExport's
/// `IncrementalExportSpecification` (`None` for a full export).
pub async fn incremental_window(
    ctx: &Context,
    arn: &str,
) -> Result<Option<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)>, Error> {
    let d = describe_export(ctx, arn).await?;
    let time = |t: Option<&aws_sdk_dynamodb::primitives::DateTime>| {
        t.and_then(|t| t.to_millis().ok())
            .and_then(chrono::DateTime::from_timestamp_millis)
    };
    Ok(d.incremental_export_specification()
        .and_then(|spec| Some((time(spec.export_from_time())?, time(spec.export_to_time())?))))
}

/// Where the finished export `arn` is, from DescribeExport.
async fn describe(ctx: &Context, arn: &str) -> Result<ExportSource, Error> {
    let d = describe_export(ctx, arn).await?;
    match decide(
        arn,
        d.export_status(),
        d.s3_bucket(),
        d.s3_prefix(),
        (d.failure_code(), d.failure_message()),
    )? {
        ExportState::Done(source) => source.map_err(Error::fatal),
        ExportState::Running => Err(Error::retry(format!(
            "export {arn} is still in progress; wait for it (dynamo-etl export wait --export-arn {arn}), then run this command again"
        ))),
    }
}

/// One DescribeExport, under the retry policy.
async fn describe_export(
    ctx: &Context,
    arn: &str,
) -> Result<aws_sdk_dynamodb::types::ExportDescription, Error> {
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
        .map_err(|e| sdk_error(&format!("DescribeExport of {arn}"), dynamodb, &e))?;
    let d = out
        .export_description()
        .ok_or_else(|| Error::fatal(format!("DescribeExport of {arn} returned no description")))?;
    Ok(d.clone())
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

/// What `export start` asks for.
#[derive(Debug, Clone)]
pub struct StartRequest<'a> {
    pub table: &'a str,
    /// The export goes under this run's folder of the staging area.
    pub run_id: &'a str,
    /// The instant to export (within the table's point-in-time recovery window); `None`: now.
    pub export_time: Option<chrono::DateTime<chrono::Utc>>,
    /// An incremental export of the changes in this window instead of a full one.
    pub incremental: Option<IncrementalWindow>,
}

/// The window of an incremental export: changes from `from` (inclusive) to `to` (exclusive),
/// with new and old images or new images only
/// (<https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_IncrementalExportSpecification.html>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncrementalWindow {
    pub from: chrono::DateTime<chrono::Utc>,
    pub to: chrono::DateTime<chrono::Utc>,
    pub new_and_old_images: bool,
}

impl IncrementalWindow {
    fn specification(&self) -> aws_sdk_dynamodb::types::IncrementalExportSpecification {
        use aws_sdk_dynamodb::primitives::DateTime;
        use aws_sdk_dynamodb::types::{ExportViewType, IncrementalExportSpecification};
        IncrementalExportSpecification::builder()
            .export_from_time(DateTime::from_millis(self.from.timestamp_millis()))
            .export_to_time(DateTime::from_millis(self.to.timestamp_millis()))
            .export_view_type(match self.new_and_old_images {
                true => ExportViewType::NewAndOldImages,
                false => ExportViewType::NewImage,
            })
            .build()
    }
}

/// A started export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub export_arn: String,
    pub bucket: String,
    /// The export prefix it was asked to write under (the export adds `AWSDynamoDB/<id>`).
    pub s3_prefix: String,
}

/// The S3 prefix a run's export is written under: `<staging prefix>/runs/<run-id>/export`.
pub fn export_prefix_of(staging: &crate::staging::Staging, run_id: &str) -> String {
    format!("{}export", staging.layout.run(run_id))
}

/// Starts a full export of the table in DynamoDB JSON to the staging bucket, under the run's
/// folder (ExportTableToPointInTime,
/// <https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_ExportTableToPointInTime.html>).
/// The table needs point-in-time recovery. The run id is the client token, so starting the same
/// run's export again within DynamoDB's 8-hour idempotency window returns the same export.
pub async fn start(ctx: &Context, request: StartRequest<'_>) -> Result<Started, Error> {
    crate::staging::check_run_id(request.run_id).map_err(Error::fatal)?;
    let staging = ctx.staging()?;
    let dynamodb = &ctx.dynamodb;
    let table = request.table;
    let described = ctx
        .retry
        .run_sdk(
            || dynamodb.client.describe_table().table_name(table).send(),
            |e, delay| {
                tracing::warn!(table, delay_ms = delay.as_millis() as u64, error = %dynamodb.describe(e),
                    "DescribeTable failed; retrying")
            },
        )
        .await
        .map_err(|e| sdk_error(&format!("DescribeTable of {table}"), dynamodb, &e))?;
    let table_arn = described
        .table()
        .and_then(|t| t.table_arn())
        .ok_or_else(|| Error::fatal(format!("DescribeTable of {table} gave no table ARN")))?
        .to_string();
    let bucket = staging.store.bucket().to_string();
    let s3_prefix = export_prefix_of(staging, request.run_id);
    let export_time = request
        .export_time
        .map(|t| aws_sdk_dynamodb::primitives::DateTime::from_millis(t.timestamp_millis()));
    let out = ctx
        .retry
        .run_sdk(
            || {
                dynamodb
                    .client
                    .export_table_to_point_in_time()
                    .table_arn(&table_arn)
                    .s3_bucket(&bucket)
                    .s3_prefix(&s3_prefix)
                    .export_format(aws_sdk_dynamodb::types::ExportFormat::DynamodbJson)
                    .export_type(match request.incremental {
                        Some(_) => aws_sdk_dynamodb::types::ExportType::IncrementalExport,
                        None => aws_sdk_dynamodb::types::ExportType::FullExport,
                    })
                    .set_export_time(match request.incremental {
                        Some(_) => None,
                        None => export_time,
                    })
                    .set_incremental_export_specification(
                        request.incremental.map(|w| w.specification()),
                    )
                    .client_token(request.run_id)
                    .send()
            },
            |e, delay| {
                tracing::warn!(table, delay_ms = delay.as_millis() as u64, error = %dynamodb.describe(e),
                    "ExportTableToPointInTime failed; retrying")
            },
        )
        .await
        .map_err(|e| {
            let pitr = e
                .as_service_error()
                .is_some_and(|s| s.is_point_in_time_recovery_unavailable_exception());
            let err = sdk_error(&format!("ExportTableToPointInTime of {table}"), dynamodb, &e);
            match pitr {
                true => err.context(format!(
                    "table {table} has no point-in-time recovery, which an export needs: enable it (aws dynamodb update-continuous-backups --table-name {table} --point-in-time-recovery-specification PointInTimeRecoveryEnabled=true), or scan the table instead (plan without --export-arn)"
                )),
                false => err,
            }
        })?;
    let export_arn = out
        .export_description()
        .and_then(|d| d.export_arn())
        .ok_or_else(|| {
            Error::fatal(format!(
                "ExportTableToPointInTime of {table} gave no export ARN"
            ))
        })?
        .to_string();
    tracing::info!(table, export_arn, bucket, s3_prefix, "export started");
    let started = Started {
        export_arn,
        bucket,
        s3_prefix,
    };
    record_started(staging, request.run_id, table, &started).await?;
    Ok(started)
}

/// The note `export start` leaves in the run's folder (`export-started.json`). On AWS Batch one
/// job's output never reaches the next job; the state machine hands each job only the run id, so
/// `export wait --run-id` and `plan --export-of-run` read the export's ARN from here.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StartedRecord {
    pub run_id: String,
    pub table: String,
    pub export_arn: String,
    pub bucket: String,
    pub s3_prefix: String,
    pub started_at: String,
}

/// Writes the run's note of its export. Overwrites: starting again within DynamoDB's
/// idempotency window returns the same export, and after it a new one, which is then the run's.
pub async fn record_started(
    staging: &crate::staging::Staging,
    run_id: &str,
    table: &str,
    started: &Started,
) -> Result<(), Error> {
    let record = StartedRecord {
        run_id: run_id.to_string(),
        table: table.to_string(),
        export_arn: started.export_arn.clone(),
        bucket: started.bucket.clone(),
        s3_prefix: started.s3_prefix.clone(),
        started_at: chrono::Utc::now().to_rfc3339(),
    };
    let text = serde_json::to_string_pretty(&record).expect("the record serialises");
    let key = staging.layout.run_export_started(run_id);
    staging
        .store
        .put(&key, text.into(), "application/json")
        .await
        .map_err(|e| Error::from(e).context(format!("recording the export of run {run_id}")))
}

/// The export `export start` started for `run_id`, from the run's note.
pub async fn started_for(
    staging: &crate::staging::Staging,
    run_id: &str,
) -> Result<StartedRecord, Error> {
    crate::staging::check_run_id(run_id).map_err(Error::fatal)?;
    let key = staging.layout.run_export_started(run_id);
    let Some(bytes) = staging.store.get(&key).await? else {
        return Err(Error::fatal(format!(
            "no export was started for run {run_id} (there is no {key}): start one with `dynamo-etl export start --run-id {run_id}`, or name the export with --export-arn"
        )));
    };
    let record: StartedRecord = serde_json::from_slice(&bytes)
        .map_err(|e| Error::fatal(format!("{key} is not an export record: {e}")))?;
    if record.run_id != run_id {
        return Err(Error::fatal(format!(
            "{key} is the export record of run {}, not of run {run_id}; start the export again (dynamo-etl export start --run-id {run_id})",
            record.run_id
        )));
    }
    Ok(record)
}

/// An SDK failure of `what`, classed by whether a retry may help.
fn sdk_error<E>(
    what: &str,
    dynamodb: &crate::source::DynamoDb,
    e: &aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> Error
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    let class = match sdk_failure(e).is_retriable() {
        true => Class::Retry,
        false => Class::Fatal,
    };
    Error::fatal(format!("{what} failed: {}", dynamodb.describe(e))).reclassify(class)
}

/// Where an export stands, from one DescribeExport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportState {
    /// Finished: the export and its manifests are in place, in the folder its ARN names (or,
    /// when the ARN does not name one, why not: the export is still usable through its
    /// bucket and prefix).
    Done(Result<ExportSource, String>),
    /// Still being written.
    Running,
}

/// What one DescribeExport answer means: done (where), running, or failed with AWS's reason
/// (a fatal error: no retry makes a failed export succeed).
pub fn decide(
    arn: &str,
    status: Option<&ExportStatus>,
    bucket: Option<&str>,
    s3_prefix: Option<&str>,
    failure: (Option<&str>, Option<&str>),
) -> Result<ExportState, Error> {
    match status {
        Some(ExportStatus::Completed) => {
            let bucket =
                bucket.ok_or_else(|| Error::fatal(format!("export {arn} names no S3 bucket")))?;
            Ok(ExportState::Done(ExportSource::of_arn(bucket, s3_prefix, arn)))
        }
        Some(ExportStatus::InProgress) => Ok(ExportState::Running),
        Some(ExportStatus::Failed) => Err(Error::fatal(format!(
            "export {arn} failed ({}): {}; fix the cause and start another export (dynamo-etl export start), or scan the table instead",
            failure.0.unwrap_or("no failure code"),
            failure.1.unwrap_or("no reason given")
        ))),
        other => Err(Error::fatal(format!(
            "export {arn} has status {}, which this version does not know",
            other.map_or("(none)", |s| s.as_str())
        ))),
    }
}

/// Polls DescribeExport every `every` until the export is done, for at most `timeout`, and
/// returns where it is (an `s3://` URL for `plan --export-prefix`); logs progress at each poll. Still running at the timeout: a retry-class error (wait again).
pub async fn wait(
    ctx: &Context,
    arn: &str,
    every: std::time::Duration,
    timeout: std::time::Duration,
) -> Result<String, Error> {
    let started = std::time::Instant::now();
    loop {
        let d = describe_export(ctx, arn).await?;
        let state = decide(
            arn,
            d.export_status(),
            d.s3_bucket(),
            d.s3_prefix(),
            (d.failure_code(), d.failure_message()),
        )?;
        let waited = started.elapsed();
        match state {
            ExportState::Done(source) => {
                let location = match source {
                    Ok(source) => source.url(),
                    Err(why) => {
                        let (bucket, prefix) = (
                            d.s3_bucket().unwrap_or_default(),
                            d.s3_prefix().unwrap_or_default(),
                        );
                        tracing::warn!(export_arn = arn, "the export's folder cannot be told from its ARN ({why}); it is under s3://{bucket}/{prefix}/AWSDynamoDB/");
                        format!("s3://{bucket}/{prefix}")
                    }
                };
                tracing::info!(export_arn = arn, export = %location, items = d.item_count(),
                    bytes = d.billed_size_bytes(), waited_s = waited.as_secs(), "export completed");
                return Ok(location);
            }
            ExportState::Running => {
                tracing::info!(export_arn = arn, waited_s = waited.as_secs(),
                    start_time = ?d.start_time().map(|t| t.to_string()), "export in progress");
            }
        }
        if waited + every > timeout {
            return Err(Error::retry(format!(
                "export {arn} is still in progress after {} s; wait again (dynamo-etl export wait --export-arn {arn})",
                waited.as_secs()
            )));
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = ctx.stop.requested() => return Err(Error::retry(format!(
                "stopped while waiting for export {arn}; wait again (dynamo-etl export wait --export-arn {arn})"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_started_export_is_found_by_the_run_id() {
        let staging = crate::staging::Staging::new(
            std::sync::Arc::new(crate::storage::memory::MemoryStore::new("b")),
            crate::staging::Layout::new("p"),
        );
        let missing = started_for(&staging, "r1").await.unwrap_err();
        assert_eq!(missing.class(), Class::Fatal);
        assert!(
            missing.to_string().contains("export start --run-id r1"),
            "{missing}"
        );
        let started = Started {
            export_arn: ARN.to_string(),
            bucket: "b".to_string(),
            s3_prefix: "p/runs/r1/export".to_string(),
        };
        record_started(&staging, "r1", "T", &started).await.unwrap();
        let found = started_for(&staging, "r1").await.unwrap();
        assert_eq!(
            (found.export_arn.as_str(), found.table.as_str()),
            (ARN, "T")
        );
        assert!(started_for(&staging, "r2").await.is_err());
        // A record copied from another run's folder is refused.
        let copied = staging.store.get("p/runs/r1/export-started.json").await;
        let copied = copied.unwrap().unwrap();
        staging
            .store
            .put("p/runs/r3/export-started.json", copied, "application/json")
            .await
            .unwrap();
        let refused = started_for(&staging, "r3").await.unwrap_err();
        assert!(refused.to_string().contains("of run r1"), "{refused}");
    }

    const ARN: &str = "arn:aws:dynamodb:us-east-1:1:table/T/export/0176-ab";

    #[test]
    fn describe_export_answers_mean_done_running_or_failed() {
        let done = decide(
            ARN,
            Some(&ExportStatus::Completed),
            Some("b"),
            Some("p/runs/r/export"),
            (None, None),
        )
        .unwrap();
        match done {
            ExportState::Done(Ok(s)) => {
                assert_eq!(s.url(), "s3://b/p/runs/r/export/AWSDynamoDB/0176-ab");
                assert_eq!(s.export_arn.as_deref(), Some(ARN));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decide(
                ARN,
                Some(&ExportStatus::InProgress),
                None,
                None,
                (None, None)
            )
            .unwrap(),
            ExportState::Running
        );
        let failed = decide(
            ARN,
            Some(&ExportStatus::Failed),
            Some("b"),
            None,
            (Some("S3AccessDenied"), Some("Access denied to bucket b")),
        )
        .unwrap_err();
        assert_eq!(failed.class(), Class::Fatal);
        let text = failed.to_string();
        assert!(
            text.contains("S3AccessDenied") && text.contains("Access denied to bucket b"),
            "{text}"
        );
        assert_eq!(
            decide(ARN, None, None, None, (None, None))
                .unwrap_err()
                .class(),
            Class::Fatal
        );
        let nowhere = decide(
            ARN,
            Some(&ExportStatus::Completed),
            None,
            None,
            (None, None),
        );
        assert!(nowhere.is_err());
        let odd = decide(
            "arn:aws:dynamodb:us-east-1:1:table/T",
            Some(&ExportStatus::Completed),
            Some("b"),
            None,
            (None, None),
        );
        assert!(matches!(odd, Ok(ExportState::Done(Err(_)))), "{odd:?}");
    }
}
