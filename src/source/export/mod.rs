//! Reading a DynamoDB export to S3 (a full export in DynamoDB JSON) in place of a Scan: no read
//! capacity of the table is consumed.
//!
//! The layout, as the export output format page describes it
//! (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/S3DataExport.Output.html>):
//! under `<export-prefix>/AWSDynamoDB/<export-id>/` the export writes `manifest-summary.json`
//! (one JSON object: export ARN, table ARN, export time, `manifestFilesS3Key`, item count,
//! output format), `manifest-files.json` (one JSON object per line and data file: `itemCount`,
//! `md5Checksum` — the base64 MD5 of the object's bytes —, `etag`, `dataFileS3Key`), a checksum
//! file beside each manifest, and the gzipped data files under `data/`, each line of which is
//! one item as `{"Item": {…DynamoDB JSON…}}`.
//!
//! The page's examples disagree on what the keys in the manifests (`manifestFilesS3Key`,
//! `dataFileS3Key`) are relative to: the full export example sets `s3Prefix` but writes keys that
//! start at `AWSDynamoDB/…`, the incremental one writes them with the prefix, and an incremental
//! export's data files sit in a `AWSDynamoDB/data/` folder shared by the prefix's exports. So a
//! key is taken as a key of the bucket when that object exists, else under the request's S3
//! prefix, else under the export's folder ([`Export::candidates`]); when none exists the error
//! names every location tried.
//!
//! Segment k of N reads the data files [`assign`] gives it, each streamed (gzip decoded line by
//! line, the object's MD5 computed as it arrives) into [`RawPage`]s of at most about 1 MB of
//! items, so memory stays bounded whatever the file sizes. A file whose item count or MD5 differs
//! from its manifest line, or whose gzip data is cut short or corrupt, is refused as damaged
//! (fatal), naming the file and its manifest line; only a failure of the transfer itself (a
//! connection dropped mid-read) is transient. What the page does not state is not refused: the
//! summary's `itemCount` differing from the sum of the files' counts is only warned about.

use base64::Engine;
#[cfg(test)]
use bytes::Bytes;
use bytes::BytesMut;
use md5::Digest;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader, ReadBuf};
use tokio::sync::mpsc;

use super::page::RawPage;
use super::{Message, ScanCounters, ScanEnd, ScanError};
use crate::error::{Class, Classify};
use crate::storage::{ObjectStore, StoreError};

/// The page that describes the export layout this module reads.
pub const FORMAT_DOC: &str =
    "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/S3DataExport.Output.html";

/// Items of an export data file are sent to the transform in pages of about this many bytes of
/// DynamoDB JSON (the size of a Scan page).
pub const PAGE_BYTES: usize = 1 << 20;

pub use crate::staging::export::ExportSource;

/// `manifest-summary.json`: the fields this reader uses; others are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ManifestSummary {
    pub version: Option<String>,
    pub export_arn: Option<String>,
    pub table_arn: Option<String>,
    pub export_time: Option<String>,
    pub s3_bucket: Option<String>,
    pub s3_prefix: Option<String>,
    pub manifest_files_s3_key: Option<String>,
    pub item_count: Option<u64>,
    pub output_format: Option<String>,
    pub export_type: Option<String>,
    /// An incremental export's window: from (inclusive) and to (exclusive), as the summary
    /// gives them (the same instants as the request's `IncrementalExportSpecification`).
    pub export_from_time: Option<String>,
    pub export_to_time: Option<String>,
}

impl ManifestSummary {
    /// The exported table's name, from its ARN (`arn:…:table/<name>`).
    pub fn table_name(&self) -> Option<&str> {
        let arn = self.table_arn.as_deref()?;
        let (_, name) = arn.rsplit_once(":table/")?;
        Some(name.split('/').next().unwrap_or(name))
    }
}

/// One line of `manifest-files.json`: a data file of the export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataFile {
    pub item_count: u64,
    /// Base64 of the MD5 digest of the object's bytes.
    #[serde(default)]
    pub md5_checksum: Option<String>,
    #[serde(default)]
    pub etag: Option<String>,
    /// The object's key, as the manifest gives it: in the export's bucket, or relative to the
    /// request's S3 prefix or the export's folder (see [`Export::candidates`]).
    pub data_file_s3_key: String,
    /// Its line in `manifest-files.json` (from 1; 0 when not read from a manifest).
    #[serde(skip)]
    pub line: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("export {url}: {problem} (the layout is described at {FORMAT_DOC})")]
    Invalid { url: String, problem: String },
    #[error(
        "export data file {url} (line {line} of {manifest}) does not match its manifest line: \
             {problem}; the export is damaged or incomplete, and reading it again cannot help: \
             export the table again (dynamo-etl export start) and plan a new run from it, or plan \
             a run without --export-prefix to scan the table"
    )]
    Damaged {
        url: String,
        /// The `manifest-files.json` that lists the file, and the file's line in it.
        manifest: String,
        line: usize,
        problem: String,
    },
}

impl Classify for ExportError {
    fn class(&self) -> Class {
        match self {
            ExportError::Store(e) => e.class(),
            ExportError::Invalid { .. } | ExportError::Damaged { .. } => Class::Fatal,
        }
    }
}

/// Reads the lines of `manifest-files.json` (blank lines skipped); every data file once.
pub fn parse_manifest_files(text: &str, url: &str) -> Result<Vec<DataFile>, ExportError> {
    let mut files = Vec::new();
    let mut seen = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut file: DataFile = serde_json::from_str(line).map_err(|e| ExportError::Invalid {
            url: url.to_string(),
            problem: format!("line {} is not a data file entry: {e}", n + 1),
        })?;
        file.line = n + 1;
        if !seen.insert(file.data_file_s3_key.clone()) {
            return Err(ExportError::Invalid {
                url: url.to_string(),
                problem: format!("data file {} is listed twice", file.data_file_s3_key),
            });
        }
        files.push(file);
    }
    Ok(files)
}

/// The data files segment `segment` of `total` reads: every file goes to exactly one segment,
/// the same one on every machine. Largest first (by item count, then key), each to the segment
/// with the fewest items so far, the lowest-numbered one on a tie.
pub fn assign(files: &[DataFile], segment: u32, total: u32) -> Vec<&DataFile> {
    let mut order: Vec<&DataFile> = files.iter().collect();
    order.sort_by(|a, b| {
        b.item_count
            .cmp(&a.item_count)
            .then_with(|| a.data_file_s3_key.cmp(&b.data_file_s3_key))
    });
    let mut load = vec![0u64; total.max(1) as usize];
    let mut mine = Vec::new();
    for file in order {
        let (least, _) = load
            .iter()
            .enumerate()
            .min_by_key(|(i, items)| (**items, *i))
            .expect("at least one segment");
        load[least] += file.item_count;
        if least == segment as usize {
            mine.push(file);
        }
    }
    mine
}

/// What an export holds: the whole table (`FULL_EXPORT`, one `{"Item": …}` per line) or the
/// changes of a time window (`INCREMENTAL_EXPORT`, one `{"Metadata": …, "Keys": …, "NewImage":
/// …, "OldImage": …}` per line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportKind {
    Full,
    Incremental,
}

impl ExportKind {
    /// The `exportType` the summary names.
    pub fn export_type(self) -> &'static str {
        match self {
            ExportKind::Full => "FULL_EXPORT",
            ExportKind::Incremental => "INCREMENTAL_EXPORT",
        }
    }
}

/// An export's manifests, read and checked.
#[derive(Debug, Clone)]
pub struct Export {
    pub source: ExportSource,
    pub summary: ManifestSummary,
    pub files: Vec<DataFile>,
    pub kind: ExportKind,
    /// Where `manifest-files.json` was found (`s3://…`), for messages naming a file's line.
    pub files_url: String,
}

/// The keys an object named `key` in an export's manifests may have, in the order they are
/// tried: `key` itself (a key of the bucket), then `key` under the request's S3 prefix (the
/// export folder's part before `AWSDynamoDB/<export-id>`, and the summary's `s3Prefix`), then
/// under the export's folder. The output format page
/// (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/S3DataExport.Output.html>)
/// shows both the first and the second: its full export example gives `s3Prefix` and keys
/// starting `AWSDynamoDB/…`, its incremental example keys that start with the prefix.
pub fn candidates(key: &str, source: &ExportSource, summary: &ManifestSummary) -> Vec<String> {
    let key = key.trim_start_matches('/');
    let export_id = source.prefix.rsplit('/').next().unwrap_or_default();
    let request_prefix = source
        .prefix
        .strip_suffix(&format!("AWSDynamoDB/{export_id}"))
        .unwrap_or_default();
    let bases = [
        request_prefix,
        summary.s3_prefix.as_deref().unwrap_or_default(),
        source.prefix.as_str(),
    ];
    let mut out = vec![key.to_string()];
    for base in bases {
        let base = base.trim_matches('/');
        if base.is_empty() || key.starts_with(&format!("{base}/")) {
            continue;
        }
        let joined = format!("{base}/{key}");
        if !out.contains(&joined) {
            out.push(joined);
        }
    }
    out
}

/// The first of `keys` that exists in `store`, or the error `missing` makes of their URLs.
async fn first_existing(
    store: &dyn ObjectStore,
    keys: &[String],
) -> Result<Result<String, String>, StoreError> {
    for key in keys {
        if store.head(key).await?.is_some() {
            return Ok(Ok(key.clone()));
        }
    }
    Ok(Err(keys
        .iter()
        .map(|k| store.url(k))
        .collect::<Vec<_>>()
        .join(", ")))
}

impl Export {
    /// Reads the export's two manifests from `store` (the export's bucket) and checks that it is
    /// a full export in DynamoDB JSON whose files add up to its item count.
    pub async fn open(
        store: &dyn ObjectStore,
        source: &ExportSource,
    ) -> Result<Export, ExportError> {
        Export::open_kind(store, source, ExportKind::Full).await
    }

    /// Reads the export's manifests and checks that it is of `kind` (a summary that names no
    /// type is taken for the one asked for).
    pub async fn open_kind(
        store: &dyn ObjectStore,
        source: &ExportSource,
        kind: ExportKind,
    ) -> Result<Export, ExportError> {
        let invalid = |problem: String| ExportError::Invalid {
            url: source.url(),
            problem,
        };
        let summary_key = source.summary_key();
        let text = store.get(&summary_key).await?.ok_or_else(|| {
            invalid(format!(
                "{} does not exist: the export is not finished, or the location is wrong",
                store.url(&summary_key)
            ))
        })?;
        let summary: ManifestSummary = serde_json::from_slice(&text)
            .map_err(|e| invalid(format!("manifest-summary.json is not valid: {e}")))?;
        if let Some(format) = summary
            .output_format
            .as_deref()
            .filter(|f| *f != "DYNAMODB_JSON")
        {
            return Err(invalid(format!(
                "its output format is {format}; only DYNAMODB_JSON exports can be loaded"
            )));
        }
        if let Some(found) = summary
            .export_type
            .as_deref()
            .filter(|t| *t != kind.export_type())
        {
            return Err(invalid(match kind {
                ExportKind::Full => {
                    format!("it is an {found}; only a FULL_EXPORT holds the whole table")
                }
                ExportKind::Incremental => format!(
                    "it is a {found}; an increment reads an INCREMENTAL_EXPORT (a full export is loaded by a full copy: plan --export-prefix)"
                ),
            }));
        }
        let (tried, text) = match summary.manifest_files_s3_key.as_deref() {
            Some(key) => {
                let mut tried = Vec::new();
                let mut found = None;
                for key in candidates(key, source, &summary) {
                    if let Some(text) = store.get(&key).await? {
                        found = Some((key, text));
                        break;
                    }
                    tried.push(store.url(&key));
                }
                (tried, found)
            }
            None => {
                let key = source.files_key();
                let found = store.get(&key).await?.map(|text| (key.clone(), text));
                (vec![store.url(&key)], found)
            }
        };
        let (files_key, text) = text.ok_or_else(|| {
            invalid(format!(
                "its manifest-files.json ({}) exists at none of: {}",
                summary
                    .manifest_files_s3_key
                    .as_deref()
                    .map(|k| format!("manifestFilesS3Key {k:?}"))
                    .unwrap_or_else(|| "no manifestFilesS3Key in the summary".into()),
                tried.join(", ")
            ))
        })?;
        let files_url = store.url(&files_key);
        let text = std::str::from_utf8(&text)
            .map_err(|e| invalid(format!("{files_url} is not UTF-8: {e}")))?;
        let files = parse_manifest_files(text, &files_url)?;
        let listed: u64 = files.iter().map(|f| f.item_count).sum();
        // The page does not say that the summary's count is the sum of the files' counts (each
        // file's count is checked against the file itself when it is read): a difference is
        // worth a look, not a refusal of a valid export.
        if let Some(total) = summary.item_count.filter(|t| *t != listed) {
            tracing::warn!(export = %source.url(), summary_items = total, listed_items = listed,
                "manifest-summary.json counts {total} items but the files of {files_url} add up to {listed}; reading the files as listed (each file's count is checked against its lines)");
        }
        Ok(Export {
            source: source.clone(),
            summary,
            files,
            kind,
            files_url,
        })
    }

    /// The keys the object `key` named in this export's manifests may have, in the order they
    /// are tried (see [`candidates`]).
    pub fn candidates(&self, key: &str) -> Vec<String> {
        candidates(key, &self.source, &self.summary)
    }

    pub fn item_count(&self) -> u64 {
        self.files.iter().map(|f| f.item_count).sum()
    }
}

/// Reads the data files of segment `segment` of `total` and sends their items as pages. Stops
/// between pages when `stop` is requested.
pub async fn read_segment(
    store: &dyn ObjectStore,
    export: &Export,
    (segment, total): (u32, u32),
    stop: &crate::stop::Stop,
    counters: &ScanCounters,
    pages: &mpsc::Sender<Message>,
    table: &str,
) -> Result<ScanEnd, ScanError> {
    let files = assign(&export.files, segment, total);
    tracing::info!(export = %export.source.url(), segment, files = files.len(),
        items = files.iter().map(|f| f.item_count).sum::<u64>(), "reading the segment's share of the export");
    for file in files {
        let sink = Sink {
            stop,
            counters,
            pages,
            table,
            segment,
            kind: export.kind,
        };
        match read_file(store, export, file, PAGE_BYTES, &sink).await? {
            ScanEnd::Finished => {}
            ScanEnd::Stopped => return Ok(ScanEnd::Stopped),
        }
    }
    Ok(ScanEnd::Finished)
}

/// Streams one data file into pages, then checks its item count and MD5 against `file`.
pub async fn read_file(
    store: &dyn ObjectStore,
    export: &Export,
    file: &DataFile,
    page_bytes: usize,
    sink: &Sink<'_>,
) -> Result<ScanEnd, ScanError> {
    let listed = Listed {
        manifest: &export.files_url,
        file,
    };
    let key = match first_existing(store, &export.candidates(&file.data_file_s3_key))
        .await
        .map_err(|e| ScanError::Export(e.into()))?
    {
        Ok(key) => key,
        Err(tried) => {
            return Err(listed.damaged(
                store.url(&file.data_file_s3_key),
                format!(
                    "no object exists at any of the places its key {:?} may name: {tried}",
                    file.data_file_s3_key
                ),
            ))
        }
    };
    let url = store.url(&key);
    let body = store
        .get_stream(&key)
        .await
        .map_err(|e| ScanError::Export(e.into()))?;
    read_body(body, &url, listed, page_bytes, sink).await
}

/// A data file as its manifest lists it, for the checks and the messages.
#[derive(Clone, Copy)]
struct Listed<'a> {
    /// The `manifest-files.json` that lists it.
    manifest: &'a str,
    file: &'a DataFile,
}

impl Listed<'_> {
    fn damaged(&self, url: String, problem: String) -> ScanError {
        ScanError::Export(ExportError::Damaged {
            url,
            manifest: self.manifest.to_string(),
            line: self.file.line,
            problem,
        })
    }
}

/// Streams the body of the data file at `url` into pages, then checks it against its manifest
/// line. A failure of the transfer is transient; gzip data that ends early or is corrupt while
/// the transfer went well is damage, which reading again cannot mend.
async fn read_body(
    body: crate::storage::Body,
    url: &str,
    listed: Listed<'_>,
    page_bytes: usize,
    sink: &Sink<'_>,
) -> Result<ScanEnd, ScanError> {
    let damaged = |problem: String| listed.damaged(url.to_string(), problem);
    let body_error = |e: std::io::Error| {
        ScanError::Export(ExportError::Store(StoreError::Body {
            url: url.to_string(),
            detail: e.to_string(),
        }))
    };
    let file = listed.file;
    let mut hashed = BufReader::with_capacity(64 << 10, Hashing::new(body));
    // An empty partition's data file may be an empty object: no items, nothing to decode.
    if hashed.fill_buf().await.map_err(body_error)?.is_empty() {
        return check(file, 0, hashed.into_inner().finish(), damaged).map(|_| ScanEnd::Finished);
    }
    let mut gunzip = async_compression::tokio::bufread::GzipDecoder::new(hashed);
    gunzip.multiple_members(true);
    let mut lines = BufReader::with_capacity(64 << 10, gunzip);
    let mut line = Vec::new();
    let mut batch = BytesMut::new();
    let mut in_batch = 0u64;
    let (mut items, mut number) = (0u64, 0u64);
    loop {
        line.clear();
        let read = match lines.read_until(b'\n', &mut line).await {
            Ok(n) => n,
            // The transfer failed (a dropped connection): reading again may succeed.
            Err(e) if lines.get_ref().get_ref().get_ref().failed => return Err(body_error(e)),
            // The bytes arrived whole but are not a whole gzip stream: a file cut short (in
            // the bucket, or by a transfer that ended early without an error), or not gzip.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(damaged(format!(
                    "its gzip data ends early, after line {number}: the object is cut short ({e})"
                )))
            }
            Err(e) => {
                return Err(damaged(format!(
                    "it is not valid gzip data (after line {number}): {e}"
                )))
            }
        };
        if read == 0 {
            break;
        }
        number += 1;
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let entry: &[u8] = match sink.kind {
            ExportKind::Full => {
                let entry: ExportLine = serde_json::from_slice(text).map_err(|e| {
                    damaged(format!(
                        "line {number} is not an item ({{\"Item\": {{…}}}} in DynamoDB JSON): {e}"
                    ))
                })?;
                entry.item.get().as_bytes()
            }
            ExportKind::Incremental => {
                // Checked here, so a damaged line is named by its file and number; the whole
                // line goes on to the increment's transform.
                serde_json::from_slice::<ChangeLine>(text).map_err(|e| {
                    damaged(format!(
                        "line {number} is not a change ({{\"Metadata\": …, \"Keys\": …, \"NewImage\": …}} in DynamoDB JSON): {e}"
                    ))
                })?;
                text
            }
        };
        batch.extend_from_slice(if in_batch == 0 { b"[" } else { b"," });
        batch.extend_from_slice(entry);
        in_batch += 1;
        items += 1;
        if batch.len() >= page_bytes {
            if let ScanEnd::Stopped = sink.send(&mut batch, &mut in_batch).await? {
                return Ok(ScanEnd::Stopped);
            }
        }
    }
    // The rest of the object (past the gzip data) is hashed too, so the digest covers it all.
    let mut hashed = lines.into_inner().into_inner();
    tokio::io::copy(&mut hashed, &mut tokio::io::sink())
        .await
        .map_err(body_error)?;
    check(file, items, hashed.into_inner().finish(), damaged)?;
    if in_batch > 0 {
        if let ScanEnd::Stopped = sink.send(&mut batch, &mut in_batch).await? {
            return Ok(ScanEnd::Stopped);
        }
    }
    Ok(ScanEnd::Finished)
}

/// Compares what a data file held with its manifest line.
fn check(
    file: &DataFile,
    items: u64,
    digest: [u8; 16],
    damaged: impl Fn(String) -> ScanError,
) -> Result<(), ScanError> {
    if items != file.item_count {
        return Err(damaged(format!(
            "it holds {items} items, its manifest line says {}",
            file.item_count
        )));
    }
    if let Some(expected) = &file.md5_checksum {
        let actual = base64::engine::general_purpose::STANDARD.encode(digest);
        if &actual != expected {
            return Err(damaged(format!(
                "the MD5 of its bytes is {actual}, its manifest line says {expected}"
            )));
        }
    }
    Ok(())
}

/// Where the pages of a data file go.
pub struct Sink<'a> {
    pub stop: &'a crate::stop::Stop,
    pub counters: &'a ScanCounters,
    pub pages: &'a mpsc::Sender<Message>,
    /// For messages: the source table and segment.
    pub table: &'a str,
    pub segment: u32,
    /// What each line of the data files holds.
    pub kind: ExportKind,
}

impl Sink<'_> {
    /// Sends the batch as a page (unless a stop was requested) and empties it.
    async fn send(&self, batch: &mut BytesMut, in_batch: &mut u64) -> Result<ScanEnd, ScanError> {
        if self.stop.is_requested() {
            return Ok(ScanEnd::Stopped);
        }
        batch.extend_from_slice(b"]");
        let page = RawPage::of_items(batch.split().freeze(), *in_batch);
        self.counters.pages.fetch_add(1, Ordering::Relaxed);
        self.counters.items.fetch_add(*in_batch, Ordering::Relaxed);
        *in_batch = 0;
        if self.pages.send(Message::Page(page)).await.is_err() {
            return Err(ScanError::Downstream {
                table: self.table.to_string(),
                segment: self.segment,
            });
        }
        Ok(ScanEnd::Finished)
    }
}

/// One line of a data file.
#[derive(Deserialize)]
struct ExportLine<'a> {
    #[serde(rename = "Item", borrow)]
    item: &'a serde_json::value::RawValue,
}

/// One line of an incremental export: the item's key, its image after the change (absent when
/// the change deleted it), optionally its image before, and when the change was written
/// (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/S3DataExport.Output.html>).
#[derive(Debug, Deserialize)]
pub struct ChangeLine<'a> {
    #[serde(rename = "Keys", borrow)]
    pub keys: crate::value::ItemView<'a>,
    #[serde(rename = "NewImage", borrow, default)]
    pub new_image: Option<crate::value::ItemView<'a>>,
    #[serde(rename = "OldImage", borrow, default)]
    pub old_image: Option<crate::value::ItemView<'a>>,
    #[serde(rename = "Metadata")]
    pub metadata: ChangeMetadata,
}

/// `Metadata` of a change line.
#[derive(Debug, Deserialize)]
pub struct ChangeMetadata {
    #[serde(rename = "WriteTimestampMicros")]
    pub write_timestamp_micros: NumberValue,
}

/// A whole number of microseconds, in any of the forms exports are seen to write it: a DynamoDB
/// number `{"N": "…"}` (what parsers of real exports read), a JSON string `"…"` (the output format
/// page's incremental example,
/// <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/S3DataExport.Output.html>)
/// or a bare JSON number; the same value either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumberValue(pub u64);

impl NumberValue {
    /// Reads the JSON text of the value.
    pub fn parse(json: &str) -> Result<NumberValue, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Tagged {
            #[serde(rename = "N")]
            n: String,
        }
        let json = json.trim();
        let digits = match json.as_bytes().first() {
            Some(b'{') => serde_json::from_str::<Tagged>(json).map(|t| t.n).ok(),
            Some(b'"') => serde_json::from_str::<String>(json).ok(),
            Some(b'0'..=b'9') => Some(json.to_string()),
            _ => None,
        }
        .ok_or_else(|| {
            format!(
                "{json} is not a number of microseconds: expected {{\"N\": \"<digits>\"}}, \"<digits>\" or a JSON number"
            )
        })?;
        let whole = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
        whole
            .then(|| digits.parse().ok())
            .flatten()
            .map(NumberValue)
            .ok_or_else(|| format!("{json} is not a whole number of microseconds"))
    }
}

impl<'de> Deserialize<'de> for NumberValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Taken as raw JSON text: numbers arrive as text whatever serde_json's number features.
        let raw = Box::<serde_json::value::RawValue>::deserialize(d)?;
        NumberValue::parse(raw.get()).map_err(serde::de::Error::custom)
    }
}

/// Passes an object's bytes through and computes their MD5; notes whether reading the object
/// itself failed (so a decoding error can be told from a failed transfer).
struct Hashing<R> {
    inner: R,
    md5: md5::Md5,
    failed: bool,
}

impl<R> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing {
            inner,
            md5: md5::Md5::new(),
            failed: false,
        }
    }

    fn finish(self) -> [u8; 16] {
        self.md5.finalize().into()
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Hashing<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        match &polled {
            Poll::Ready(Ok(())) => this.md5.update(&buf.filled()[before..]),
            Poll::Ready(Err(_)) => this.failed = true,
            Poll::Pending => {}
        }
        polled
    }
}

#[cfg(test)]
mod tests;
