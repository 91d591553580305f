//! Writing a table's items as a DynamoDB export to S3 would lay them out (full export, DynamoDB
//! JSON), for the tests of the export path. Written from the output format page,
//! <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/S3DataExport.Output.html>:
//! under `<export-prefix>/AWSDynamoDB/<export-id>/` an empty `_started` object,
//! `manifest-summary.json` and `manifest-files.json` (one JSON object per line) each with a
//! `.checksum` file beside it, and `data/<name>.json.gz` files of one `{"Item": …}` per line.
//! As with a real export there is an empty data file among them (an empty partition), and the
//! files differ in size. An incremental export ([`write_incremental_export`]) is laid out the same
//! way, its lines holding `Metadata.WriteTimestampMicros`, `Keys`, `NewImage` (absent for a
//! delete) and, in the `NEW_AND_OLD_IMAGES` view, `OldImage`, and its summary naming the type
//! `INCREMENTAL_EXPORT` and the window; its data files go to the `AWSDynamoDB/data/` folder that
//! the prefix's incremental exports share.
//!
//! Where the page shows a value in more than one form, [`Form`] picks the one written: manifest
//! keys of the bucket or relative to the request's S3 prefix (the page's full export example),
//! `WriteTimestampMicros` as `{"N": …}`, a string (the page's incremental example) or a bare
//! number, and whether the summary gives the incremental window (the page does not list it).

use base64::Engine;
use bytes::Bytes;
use md5::Digest;
use std::io::Write;

use crate::source::export::{DataFile, ExportSource, ManifestSummary};
use crate::storage::ObjectStore;
use crate::value::{Item, ItemView};

/// The export written by [`write_export`].
#[derive(Debug, Clone)]
pub struct WrittenExport {
    pub source: ExportSource,
    pub table: String,
    pub files: Vec<DataFile>,
}

/// gzip of `text`, as a data file holds it.
pub fn gzip(text: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text).expect("gzip into memory");
    gz.finish().expect("gzip into memory")
}

/// The lines of a data file holding `items`.
pub fn data_lines(items: &[Item]) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        serde_json::to_writer(
            &mut out,
            &serde_json::json!({ "Item": ItemView::from_sdk(item) }),
        )
        .expect("DynamoDB JSON always serialises");
        out.push(b'\n');
    }
    out
}

/// Base64 of the MD5 of `bytes`: a manifest line's `md5Checksum`.
pub fn md5_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(bytes))
}

fn md5_hex(bytes: &[u8]) -> String {
    md5::Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// How a written export spells what exports are seen to write in more than one form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Form {
    pub keys: KeyForm,
    pub micros: MicrosForm,
    /// Whether an incremental export's summary gives `exportFromTime` and `exportToTime`.
    pub window_in_summary: bool,
    /// Added to the summary's `itemCount` (which the page does not tie to the files' counts).
    pub summary_count_offset: i64,
}

impl Default for Form {
    fn default() -> Self {
        Form {
            keys: KeyForm::Bucket,
            micros: MicrosForm::Number,
            window_in_summary: true,
            summary_count_offset: 0,
        }
    }
}

/// How `manifestFilesS3Key` and `dataFileS3Key` are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyForm {
    /// Keys of the bucket (the page's incremental example).
    Bucket,
    /// Keys relative to the request's S3 prefix, `AWSDynamoDB/…` (the page's full export
    /// example, whose summary names an `s3Prefix`).
    Prefix,
}

/// How `Metadata.WriteTimestampMicros` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MicrosForm {
    /// `{"N": "1680109764000000"}`, a DynamoDB number.
    Number,
    /// `"1680109764000000"`, a JSON string (the page's incremental example).
    String,
    /// `1680109764000000`, a JSON number.
    Bare,
}

/// One change of an incremental export: the item's key, its image after the change (`None`:
/// deleted), its image before (written in the `NEW_AND_OLD_IMAGES` view when given), and when.
#[derive(Debug, Clone)]
pub struct Change {
    pub keys: Item,
    pub new_image: Option<Item>,
    pub old_image: Option<Item>,
    pub micros: u64,
}

/// The lines of an incremental data file holding `changes`, the write times in `micros` form.
pub fn change_lines(changes: &[Change], micros: MicrosForm) -> Vec<u8> {
    let mut out = Vec::new();
    for c in changes {
        let at = match micros {
            MicrosForm::Number => serde_json::json!({ "N": c.micros.to_string() }),
            MicrosForm::String => serde_json::json!(c.micros.to_string()),
            MicrosForm::Bare => serde_json::json!(c.micros),
        };
        let mut line = serde_json::json!({
            "Metadata": { "WriteTimestampMicros": at },
            "Keys": ItemView::from_sdk(&c.keys),
        });
        if let Some(new) = &c.new_image {
            line["NewImage"] = serde_json::json!(ItemView::from_sdk(new));
        }
        if let Some(old) = &c.old_image {
            line["OldImage"] = serde_json::json!(ItemView::from_sdk(old));
        }
        serde_json::to_writer(&mut out, &line).expect("DynamoDB JSON always serialises");
        out.push(b'\n');
    }
    out
}

/// What an export holds, for its summary.
#[derive(Debug, Clone, Copy)]
pub enum Written<'a> {
    Full,
    /// An incremental export of the window `[from, to)` (RFC 3339).
    Incremental {
        from: &'a str,
        to: &'a str,
    },
}

/// Writes `items` of `table` as export `export_id` under `export_prefix` (may be empty) of the
/// store's bucket, spread over `files` data files of different sizes plus one empty file.
pub async fn write_export(
    store: &dyn ObjectStore,
    export_prefix: &str,
    export_id: &str,
    table: &str,
    items: &[Item],
    files: usize,
) -> anyhow::Result<WrittenExport> {
    write_export_in(
        store,
        (export_prefix, export_id, table),
        items,
        files,
        Form::default(),
    )
    .await
}

/// [`write_export`], spelling the manifests' keys as `form` says.
pub async fn write_export_in(
    store: &dyn ObjectStore,
    (export_prefix, export_id, table): (&str, &str, &str),
    items: &[Item],
    files: usize,
    form: Form,
) -> anyhow::Result<WrittenExport> {
    write_lines(
        store,
        (export_prefix, export_id, table),
        items.len(),
        |range| data_lines(&items[range]),
        files,
        (Written::Full, form),
    )
    .await
}

/// Writes `changes` of `table` as incremental export `export_id` of the window `[from, to)`,
/// laid out as [`write_export`] lays out a full one.
pub async fn write_incremental_export(
    store: &dyn ObjectStore,
    (export_prefix, export_id, table): (&str, &str, &str),
    changes: &[Change],
    files: usize,
    window: (&str, &str),
) -> anyhow::Result<WrittenExport> {
    write_incremental_export_in(
        store,
        (export_prefix, export_id, table),
        changes,
        files,
        window,
        Form::default(),
    )
    .await
}

/// [`write_incremental_export`] in the given `form`.
pub async fn write_incremental_export_in(
    store: &dyn ObjectStore,
    (export_prefix, export_id, table): (&str, &str, &str),
    changes: &[Change],
    files: usize,
    (from, to): (&str, &str),
    form: Form,
) -> anyhow::Result<WrittenExport> {
    write_lines(
        store,
        (export_prefix, export_id, table),
        changes.len(),
        |range| change_lines(&changes[range], form.micros),
        files,
        (Written::Incremental { from, to }, form),
    )
    .await
}

async fn write_lines(
    store: &dyn ObjectStore,
    (export_prefix, export_id, table): (&str, &str, &str),
    count: usize,
    lines_of: impl Fn(std::ops::Range<usize>) -> Vec<u8>,
    files: usize,
    (kind, form): (Written<'_>, Form),
) -> anyhow::Result<WrittenExport> {
    let files = files.max(1);
    let under_prefix = |rest: &str| match export_prefix.trim_matches('/') {
        "" => rest.to_string(),
        p => format!("{p}/{rest}"),
    };
    let folder = under_prefix(&format!("AWSDynamoDB/{export_id}"));
    // Incremental exports write their data files to a folder the prefix's exports share.
    let data_folder = match kind {
        Written::Full => format!("{folder}/data"),
        Written::Incremental { .. } => under_prefix("AWSDynamoDB/data"),
    };
    store
        .put(
            &format!("{folder}/_started"),
            Bytes::new(),
            "application/octet-stream",
        )
        .await?;
    // File i gets a share of the items proportional to i + 1, so sizes differ.
    let weights: usize = (1..=files).sum();
    let mut written = Vec::new();
    let mut start = 0;
    for i in 0..=files {
        let share = if i == files {
            0
        } else if i + 1 == files {
            count - start
        } else {
            count * (i + 1) / weights
        };
        let range = start..start + share;
        start += share;
        let body = gzip(&lines_of(range));
        // Data files are named by an opaque token.
        let key = format!(
            "{data_folder}/{}.json.gz",
            &md5_hex(format!("{export_id}/{i}").as_bytes())[..26]
        );
        store
            .put(&key, Bytes::from(body.clone()), "application/octet-stream")
            .await?;
        written.push(DataFile {
            item_count: share as u64,
            md5_checksum: Some(md5_base64(&body)),
            etag: Some(md5_hex(&body)),
            data_file_s3_key: manifest_key(&key, export_prefix, form.keys),
            line: i + 1,
        });
    }
    let source = ExportSource {
        bucket: store.bucket().to_string(),
        prefix: folder,
        export_arn: Some(export_arn(table, export_id)),
    };
    write_summary(store, &source, table, &written, (kind, form)).await?;
    Ok(WrittenExport {
        source,
        table: table.to_string(),
        files: written,
    })
}

/// The ARN a table's export would have in the tests' account and region.
pub fn export_arn(table: &str, export_id: &str) -> String {
    format!("arn:aws:dynamodb:us-east-1:000000000000:table/{table}/export/{export_id}")
}

/// `key` (of the bucket) as a manifest spelling keys in `form` writes it.
fn manifest_key(key: &str, export_prefix: &str, form: KeyForm) -> String {
    match (form, export_prefix.trim_matches('/')) {
        (KeyForm::Bucket, _) | (KeyForm::Prefix, "") => key.to_string(),
        (KeyForm::Prefix, p) => key
            .strip_prefix(&format!("{p}/"))
            .unwrap_or(key)
            .to_string(),
    }
}

/// Writes (or rewrites) a full export's two manifests and their checksum files for `files`.
pub async fn write_manifests(
    store: &dyn ObjectStore,
    source: &ExportSource,
    table: &str,
    files: &[DataFile],
) -> anyhow::Result<()> {
    write_summary(
        store,
        source,
        table,
        files,
        (Written::Full, Form::default()),
    )
    .await
}

async fn write_summary(
    store: &dyn ObjectStore,
    source: &ExportSource,
    table: &str,
    files: &[DataFile],
    (kind, form): (Written<'_>, Form),
) -> anyhow::Result<()> {
    let mut lines = Vec::new();
    for f in files {
        serde_json::to_writer(&mut lines, f)?;
        lines.push(b'\n');
    }
    let files_key = source.files_key();
    let export_id = source.prefix.rsplit('/').next().unwrap_or_default();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let prefix = source
        .prefix
        .strip_suffix(&format!("AWSDynamoDB/{export_id}"))
        .map(|p| p.trim_end_matches('/'))
        .filter(|p| !p.is_empty());
    let summary = ManifestSummary {
        version: Some("2020-06-30".into()),
        export_arn: Some(export_arn(table, export_id)),
        table_arn: Some(format!(
            "arn:aws:dynamodb:us-east-1:000000000000:table/{table}"
        )),
        export_time: Some(now),
        s3_bucket: Some(source.bucket.clone()),
        s3_prefix: prefix.map(str::to_string),
        manifest_files_s3_key: Some(manifest_key(
            &files_key,
            prefix.unwrap_or_default(),
            form.keys,
        )),
        item_count: Some(
            (files.iter().map(|f| f.item_count).sum::<u64>() as i64 + form.summary_count_offset)
                .max(0) as u64,
        ),
        output_format: Some("DYNAMODB_JSON".into()),
        export_type: Some(
            match kind {
                Written::Full => "FULL_EXPORT",
                Written::Incremental { .. } => "INCREMENTAL_EXPORT",
            }
            .into(),
        ),
        export_from_time: match kind {
            Written::Incremental { from, .. } if form.window_in_summary => Some(from.to_string()),
            _ => None,
        },
        export_to_time: match kind {
            Written::Incremental { to, .. } if form.window_in_summary => Some(to.to_string()),
            _ => None,
        },
    };
    let summary = serde_json::to_vec_pretty(&summary)?;
    let checksum = |key: &str| key.replace(".json", ".checksum");
    store
        .put(&checksum(&files_key), md5_hex(&lines).into(), "text/plain")
        .await?;
    store
        .put(&files_key, lines.into(), "application/json")
        .await?;
    let summary_key = source.summary_key();
    store
        .put(
            &checksum(&summary_key),
            md5_hex(&summary).into(),
            "text/plain",
        )
        .await?;
    store
        .put(&summary_key, summary.into(), "application/json")
        .await?;
    Ok(())
}
