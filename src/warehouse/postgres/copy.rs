//! Streaming parts into `COPY … FROM STDIN`: each part's body is read from the staging area,
//! decompressed by the codec its key names, and sent in one-megabyte CopyData messages, so
//! nothing touches disk and memory stays flat.
//!
//! Each part is checked while it streams: its size and SHA-256 must be what the manifest
//! records, and its codec's own checksums must hold. A failure says whose it is: reading the body
//! (the network: worth a retry), a part that differs from its manifest, does not decompress or
//! whose rows the server rejects (it is damaged or does not fit: phase 1 must write it again),
//! or the server connection.

use async_compression::tokio::bufread::{GzipDecoder, ZstdDecoder};
use sha2::{Digest, Sha256};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, BufReader, ReadBuf};

use sqlx::postgres::PgCopyIn;
use sqlx::PgConnection;

use super::super::load::SegmentPart;
use super::super::sql::{describe, qualified, quote_ident, Session, Transient};
use super::super::WarehouseError;
use crate::schema::DataSchema;
use crate::staging::manifest::PartFile;
use crate::staging::parts::codec::PartCompression;
use crate::staging::parts::reader::PartReader;
use crate::staging::plan::RunPlan;
use crate::staging::Staging;
use crate::storage::Body;

/// Bytes handed to the server per CopyData message.
const COPY_CHUNK: usize = 1 << 20;

/// Where one table's parts go: the parts of one segment, or of many in a load of many segments.
pub struct Target<'a> {
    pub staging: &'a Staging,
    pub schema: &'a str,
    pub table: &'a DataSchema,
    pub parts: &'a [SegmentPart<'a>],
    pub reader: &'a PartReader,
    pub plan: &'a RunPlan,
}

impl Target<'_> {
    fn statement(&self) -> String {
        let columns: Vec<String> = self
            .table
            .column_names()
            .into_iter()
            .map(quote_ident)
            .collect();
        format!(
            "COPY {} ({}) FROM STDIN WITH (FORMAT csv, NULL '\\N', ENCODING 'UTF8')",
            qualified(self.schema, &self.table.table),
            columns.join(", ")
        )
    }

    /// The part cannot be loaded as it is: phase 1 must write its segment again.
    fn damaged(&self, part: &SegmentPart<'_>, problem: String) -> WarehouseError {
        WarehouseError::BadSegment {
            run_id: self.plan.run_id.clone(),
            segment: part.segment,
            problem: format!(
                "loading {} into {} failed: {problem}",
                self.staging.url(&part.file.key),
                self.table.table
            ),
        }
    }

    /// A fault of the moment while `part` was loading, or one of the server that is not about the
    /// part's rows.
    fn failed(&self, part: &SegmentPart<'_>, detail: String, retriable: bool) -> WarehouseError {
        WarehouseError::Load {
            table: self.table.table.clone(),
            part: self.staging.url(&part.file.key),
            detail,
            retriable,
        }
    }
}

/// An error of the part's transport, told apart from the decompressor's own errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Transport(std::io::Error);

/// The part's bytes differ from what its manifest records.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Mismatch(String);

/// A part's body as it arrives: read errors are marked as the transport's, and at its end its
/// size and SHA-256 are checked against the manifest.
struct Checked {
    body: Body,
    file: PartFile,
    hash: Sha256,
    bytes: u64,
    /// Set once the whole body was read and matched.
    verified: Arc<AtomicBool>,
}

impl AsyncRead for Checked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match self.body.as_mut().poll_read(cx, buf) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(std::io::Error::other(Transport(e)))),
            Poll::Ready(Ok(())) => {
                let this = &mut *self;
                let new = &buf.filled()[before..];
                if !new.is_empty() {
                    this.hash.update(new);
                    this.bytes += new.len() as u64;
                    return Poll::Ready(Ok(()));
                }
                // The end of the body (a decoder may ask again after it).
                if this.verified.load(Ordering::SeqCst) {
                    return Poll::Ready(Ok(()));
                }
                let sha = hex(&std::mem::take(&mut this.hash).finalize());
                match this.file.check_content(this.bytes, &sha) {
                    Ok(()) => {
                        this.verified.store(true, Ordering::SeqCst);
                        Poll::Ready(Ok(()))
                    }
                    Err(problem) => Poll::Ready(Err(std::io::Error::other(Mismatch(problem)))),
                }
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_transport(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Transport>())
}

fn mismatch(e: &std::io::Error) -> Option<String> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<Mismatch>())
        .map(|m| m.0.clone())
}

/// SQLSTATE class 22 (data exception): the rows of the part do not fit the table.
fn is_data_error(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("22")))
}

fn decoder(codec: PartCompression, body: Checked) -> Pin<Box<dyn AsyncRead + Send>> {
    let body = BufReader::with_capacity(64 << 10, body);
    match codec {
        PartCompression::Zstd => {
            let mut d = ZstdDecoder::new(body);
            d.multiple_members(true);
            Box::pin(d)
        }
        PartCompression::Gzip => {
            let mut d = GzipDecoder::new(body);
            d.multiple_members(true);
            Box::pin(d)
        }
    }
}

/// Copies `target`'s parts on `session` (inside the caller's transaction), one COPY per part,
/// and returns the rows the server reports as loaded. A part whose count differs from its
/// manifest entry fails.
pub async fn copy_parts(session: &mut Session, target: Target<'_>) -> Result<u64, WarehouseError> {
    let statement = target.statement();
    let is_transient = session.transient();
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut rows = 0;
    for part in target.parts {
        let mut copy = match session.connection().copy_in_raw(&statement).await {
            Ok(c) => c,
            Err(e) => return Err(server_error(&target, part, &e, is_transient)),
        };
        if let Err(e) = send_part(&mut copy, &target, part, &mut buf, is_transient).await {
            let _ = copy.abort("the part could not be sent").await;
            return Err(e);
        }
        let copied = match copy.finish().await {
            Ok(n) => n,
            Err(e) => return Err(server_error(&target, part, &e, is_transient)),
        };
        if copied != part.file.rows {
            return Err(target.damaged(
                part,
                format!(
                    "it holds {} rows by its manifest but COPY loaded {copied}",
                    part.file.rows
                ),
            ));
        }
        rows += copied;
    }
    Ok(rows)
}

/// Copies every part of `target` (one table's parts of many segments) through ONE COPY on
/// `session`, inside the caller's transaction, and returns the rows the server reports. Each
/// part is still checked as it streams; the count is the caller's to check against the
/// manifests, and a row the server rejects is traced back to its part by the line the server
/// names.
pub async fn copy_batch(session: &mut Session, target: Target<'_>) -> Result<u64, WarehouseError> {
    let Some(first) = target.parts.first() else {
        return Ok(0);
    };
    let statement = target.statement();
    let is_transient = session.transient();
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut copy = match session.connection().copy_in_raw(&statement).await {
        Ok(c) => c,
        Err(e) => return Err(server_error(&target, first, &e, is_transient)),
    };
    for part in target.parts {
        if let Err(e) = send_part(&mut copy, &target, part, &mut buf, is_transient).await {
            let _ = copy.abort("a part could not be sent").await;
            return Err(e);
        }
    }
    match copy.finish().await {
        Ok(n) => Ok(n),
        Err(e) => Err(
            match line_of(&e).and_then(|line| locate(target.parts, line)) {
                Some((part, line)) if is_data_error(&e) => target.damaged(
                    part,
                    format!("{}; that is line {line} of this part", describe(&e)),
                ),
                _ if is_data_error(&e) => WarehouseError::BadTable {
                    run_id: target.plan.run_id.clone(),
                    table: target.table.table.clone(),
                    segments: segments_of(target.parts),
                    problem: describe(&e),
                },
                _ => WarehouseError::Load {
                    table: target.table.table.clone(),
                    part: format!("the parts of segments {}", segments_list(target.parts)),
                    detail: describe(&e),
                    retriable: is_transient(&e),
                },
            },
        ),
    }
}

fn segments_of(parts: &[SegmentPart<'_>]) -> Vec<u32> {
    let mut segments: Vec<u32> = parts.iter().map(|p| p.segment).collect();
    segments.dedup();
    segments
}

fn segments_list(parts: &[SegmentPart<'_>]) -> String {
    super::super::load::listed(segments_of(parts))
}

/// The line of the COPY input a server error names (`COPY t, line 57, column c: …`).
fn line_of(e: &sqlx::Error) -> Option<u64> {
    let sqlx::Error::Database(db) = e else {
        return None;
    };
    let context = db
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()?
        .r#where()?;
    let rest = &context[context.find(", line ")? + ", line ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The part holding line `line` (from 1) of a COPY that streamed `parts` one after another, and
/// the line within that part. Rows and lines agree: the server counts CSV records, and each
/// part holds the rows its manifest records (its SHA-256 was checked before the next one began).
fn locate<'p, 'm>(parts: &'p [SegmentPart<'m>], line: u64) -> Option<(&'p SegmentPart<'m>, u64)> {
    let mut before = 0;
    for part in parts {
        if line <= before + part.file.rows {
            return Some((part, line - before));
        }
        before += part.file.rows;
    }
    None
}

/// A server error during the COPY of `part`: rows it rejects mean the part does not fit (a
/// damaged segment), anything else is the session's to classify.
fn server_error(
    target: &Target<'_>,
    part: &SegmentPart<'_>,
    e: &sqlx::Error,
    is_transient: Transient,
) -> WarehouseError {
    if is_data_error(e) {
        target.damaged(part, describe(e))
    } else {
        target.failed(part, describe(e), is_transient(e))
    }
}

/// Streams `part` into the open COPY, checking it on the way. On an error the caller aborts the
/// COPY.
async fn send_part(
    copy: &mut PgCopyIn<&mut PgConnection>,
    target: &Target<'_>,
    part: &SegmentPart<'_>,
    buf: &mut [u8],
    is_transient: Transient,
) -> Result<(), WarehouseError> {
    let file = part.file;
    let codec = PartCompression::of_part(&file.key).map_err(|p| target.damaged(part, p))?;
    let verified = Arc::new(AtomicBool::new(false));
    let body = Checked {
        body: target.reader.open(&file.key).await?,
        file: file.clone(),
        hash: Sha256::new(),
        bytes: 0,
        verified: verified.clone(),
    };
    let mut decoded = decoder(codec, body);
    loop {
        let mut filled = 0;
        // Fill the buffer as far as the stream allows, so messages stay large.
        while filled < buf.len() {
            match decoded.read(&mut buf[filled..]).await {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => {
                    return Err(if is_transport(&e) {
                        target.failed(part, format!("reading the part: {e}"), true)
                    } else if let Some(problem) = mismatch(&e) {
                        target.damaged(part, problem)
                    } else {
                        target.damaged(
                            part,
                            format!("it cannot be decompressed as {}: {e}", codec.name()),
                        )
                    });
                }
            }
        }
        if filled == 0 {
            if !verified.load(Ordering::SeqCst) {
                return Err(target.damaged(
                    part,
                    "its compressed stream ended before the object did".into(),
                ));
            }
            return Ok(());
        }
        if let Err(e) = copy.send(&buf[..filled]).await {
            return Err(server_error(target, part, &e, is_transient));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(rows: u64) -> PartFile {
        PartFile {
            key: format!("p/runs/r/segments/0/t/part-{rows}.csv.zst"),
            rows,
            bytes: 1,
            csv_bytes: 1,
            sha256: String::new(),
            etag: None,
            fingerprint: None,
        }
    }

    #[test]
    fn a_line_of_one_copy_over_many_parts_is_traced_to_its_part() {
        let files = [file(3), file(0), file(2)];
        let parts = vec![
            SegmentPart {
                segment: 4,
                file: &files[0],
            },
            SegmentPart {
                segment: 5,
                file: &files[1],
            },
            SegmentPart {
                segment: 6,
                file: &files[2],
            },
        ];
        let at = |line| locate(&parts, line).map(|(p, l)| (p.segment, l));
        assert_eq!(at(1), Some((4, 1)));
        assert_eq!(at(3), Some((4, 3)));
        assert_eq!(at(4), Some((6, 1)), "an empty part holds no line");
        assert_eq!(at(5), Some((6, 2)));
        assert_eq!(at(6), None);
    }
}
