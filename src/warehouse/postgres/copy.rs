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

use super::super::sql::{describe, qualified, quote_ident, Session};
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

/// Where one table's parts go.
pub struct Target<'a> {
    pub staging: &'a Staging,
    pub schema: &'a str,
    pub table: &'a DataSchema,
    pub files: &'a [PartFile],
    pub reader: &'a PartReader,
    pub plan: &'a RunPlan,
    pub segment: u32,
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

/// Copies `target`'s parts on `session` (inside the caller's transaction) and returns the rows
/// the server reports as loaded. A part whose count differs from its manifest entry fails.
pub async fn copy_parts(session: &mut Session, target: Target<'_>) -> Result<u64, WarehouseError> {
    let columns: Vec<String> = target
        .table
        .column_names()
        .into_iter()
        .map(quote_ident)
        .collect();
    let statement = format!(
        "COPY {} ({}) FROM STDIN WITH (FORMAT csv, NULL '\\N', ENCODING 'UTF8')",
        qualified(target.schema, &target.table.table),
        columns.join(", ")
    );
    let mut rows = 0;
    for file in target.files {
        rows += copy_part(session, &target, &statement, file).await?;
    }
    Ok(rows)
}

async fn copy_part(
    session: &mut Session,
    target: &Target<'_>,
    statement: &str,
    file: &PartFile,
) -> Result<u64, WarehouseError> {
    let part = target.staging.url(&file.key);
    let transient = |detail: String| WarehouseError::Load {
        table: target.table.table.clone(),
        part: part.clone(),
        detail,
        retriable: true,
    };
    let damaged = |problem: String| WarehouseError::BadSegment {
        run_id: target.plan.run_id.clone(),
        segment: target.segment,
        problem: format!(
            "loading {part} into {} failed: {problem}",
            target.table.table
        ),
    };
    let is_transient = session.transient();
    let server = |e: &sqlx::Error| {
        if is_data_error(e) {
            damaged(describe(e))
        } else {
            WarehouseError::Load {
                table: target.table.table.clone(),
                part: part.clone(),
                detail: describe(e),
                retriable: is_transient(e),
            }
        }
    };
    let codec = PartCompression::of_part(&file.key).map_err(damaged)?;
    let verified = Arc::new(AtomicBool::new(false));
    let body = Checked {
        body: target.reader.open(&file.key).await?,
        file: file.clone(),
        hash: Sha256::new(),
        bytes: 0,
        verified: verified.clone(),
    };
    let mut decoded = decoder(codec, body);
    let mut copy = match session.connection().copy_in_raw(statement).await {
        Ok(c) => c,
        Err(e) => return Err(server(&e)),
    };
    let mut buf = vec![0u8; COPY_CHUNK];
    loop {
        let mut filled = 0;
        // Fill the buffer as far as the stream allows, so messages stay large.
        while filled < buf.len() {
            match decoded.read(&mut buf[filled..]).await {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => {
                    let _ = copy.abort("reading the part failed").await;
                    return Err(if is_transport(&e) {
                        transient(format!("reading the part: {e}"))
                    } else if let Some(problem) = mismatch(&e) {
                        damaged(problem)
                    } else {
                        damaged(format!(
                            "it cannot be decompressed as {}: {e}",
                            codec.name()
                        ))
                    });
                }
            }
        }
        if filled == 0 {
            if !verified.load(Ordering::SeqCst) {
                let _ = copy.abort("the part was not read to its end").await;
                return Err(damaged(
                    "its compressed stream ended before the object did".into(),
                ));
            }
            break;
        }
        if let Err(e) = copy.send(&buf[..filled]).await {
            return Err(server(&e));
        }
    }
    let copied = match copy.finish().await {
        Ok(n) => n,
        Err(e) => return Err(server(&e)),
    };
    if copied != file.rows {
        return Err(damaged(format!(
            "it holds {} rows by its manifest but COPY loaded {copied}",
            file.rows
        )));
    }
    Ok(copied)
}
