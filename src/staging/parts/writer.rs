//! Streaming rows into compressed CSV part objects with bounded memory.
//!
//! The synchronous side ([`PartWriter`], on the transform thread) encodes rows, compresses them
//! (zstd or gzip, see [`super::codec`]) and cuts the compressed stream into upload chunks; the
//! async side ([`upload_chunks`]) turns chunks into single PUTs (small parts) or multipart
//! uploads with at most `max_in_flight` parts on the wire. The channel between them holds one chunk, so a slow store slows the scan instead of
//! filling memory. On failure every open multipart upload is aborted.

use crate::staging::fingerprint::Fingerprinter;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use super::codec::{PartCompression, PartEncoder};
use super::csv::CsvEncoder;
use crate::staging::manifest::{PartFile, TableOutput};
use crate::storage::{Store, StoreError, UploadedPart};

/// Sizes that bound memory and shape the parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartSettings {
    /// A part is closed once this many compressed bytes were written to it.
    pub part_bytes: usize,
    /// Compressed bytes per upload chunk (multipart part); at least 5 MiB for S3.
    pub chunk_bytes: usize,
    /// Chunks uploading at once, per segment.
    pub max_in_flight: usize,
    /// The parts' codec.
    pub compression: PartCompression,
    /// Its level (checked with [`PartCompression::check_level`]); 1 is fast for both codecs.
    pub level: i32,
}

impl Default for PartSettings {
    fn default() -> Self {
        PartSettings {
            part_bytes: 64 << 20,
            // S3's smallest part: each table holds up to one chunk, so memory is
            // about tables × chunk plus the chunks on the wire.
            chunk_bytes: MIN_CHUNK_BYTES,
            max_in_flight: 2,
            compression: PartCompression::default(),
            level: 1,
        }
    }
}

/// The content type of a part object, from its key.
pub fn content_type_of(key: &str) -> &'static str {
    PartCompression::of_key(key)
        .map(PartCompression::content_type)
        .unwrap_or("application/octet-stream")
}

/// S3's smallest multipart part (except the last).
pub const MIN_CHUNK_BYTES: usize = 5 << 20;

/// A piece of one part object, in order. `index` counts from 0 within the part.
#[derive(Debug)]
pub struct Chunk {
    pub key: String,
    pub index: u32,
    pub data: Bytes,
    pub last: bool,
}

/// Makes a record's content from the entity tags of the objects completed so far.
pub type RecordContent = Box<dyn FnOnce(&Uploaded) -> Vec<u8> + Send>;

/// What the writers hand the uploader, in order.
pub enum Upload {
    Chunk(Chunk),
    /// An object to write once every part whose last chunk came before it is complete; its
    /// content is made then, from the entity tags of the objects completed so far (phase 1's
    /// checkpoints).
    Record {
        key: String,
        content: RecordContent,
    },
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Upload::Chunk(c) => c.fmt(f),
            Upload::Record { key, .. } => write!(f, "Record({key})"),
        }
    }
}

/// CSV rows accumulate here before they are handed to the compressor in larger writes.
const CSV_BATCH: usize = 256 << 10;

/// Writes the parts of one table of one segment.
pub struct PartWriter {
    key_of: Box<dyn Fn(u32) -> String + Send>,
    settings: PartSettings,
    tx: mpsc::Sender<Upload>,
    csv: CsvEncoder,
    batch: Vec<u8>,
    encoder: Option<PartEncoder>,
    part_index: u32,
    chunk_index: u32,
    part_rows: u64,
    part_csv_bytes: u64,
    part_sent_bytes: u64,
    /// SHA-256 of the bytes of the current part sent so far.
    part_hash: Sha256,
    /// The fingerprint of the open part's rows, when asked for ([`PartWriter::with_fingerprints`]).
    fingerprints: Option<Fingerprinter>,
    output: TableOutput,
}

/// The uploader has gone away (it failed; its error is the one to report).
#[derive(Debug, thiserror::Error)]
#[error("the uploader stopped")]
pub struct UploaderGone;

impl PartWriter {
    /// `key_of(n)` names part `n`.
    pub fn new(
        key_of: Box<dyn Fn(u32) -> String + Send>,
        settings: PartSettings,
        tx: mpsc::Sender<Upload>,
    ) -> Self {
        PartWriter::resume(key_of, settings, tx, TableOutput::default())
    }

    /// A writer that goes on after the finished parts of `done` (a resumed segment): its next
    /// part is numbered after them, and [`PartWriter::finish`] returns them with the new ones.
    pub fn resume(
        key_of: Box<dyn Fn(u32) -> String + Send>,
        settings: PartSettings,
        tx: mpsc::Sender<Upload>,
        done: TableOutput,
    ) -> Self {
        PartWriter {
            key_of,
            settings,
            tx,
            csv: CsvEncoder::new(),
            batch: Vec::with_capacity(CSV_BATCH + 4096),
            encoder: None,
            part_index: done.files.len() as u32,
            chunk_index: 0,
            part_rows: 0,
            part_csv_bytes: 0,
            part_sent_bytes: 0,
            part_hash: Sha256::new(),
            fingerprints: None,
            output: done,
        }
    }

    /// Fingerprints every part's rows with `f`; the finished parts carry theirs, and the table's
    /// output their sum (none when a part finished before, e.g. by an older version, has none).
    pub fn with_fingerprints(mut self, f: Fingerprinter) -> Self {
        self.fingerprints = Some(f);
        self
    }

    /// The parts finished so far.
    pub fn finished(&self) -> &TableOutput {
        &self.output
    }

    /// Closes the open part, if it holds any row, so that everything written so far is in
    /// finished parts; the next row starts a new part.
    pub fn roll(&mut self) -> Result<(), UploaderGone> {
        self.flush_batch()?;
        if self.part_rows > 0 {
            self.close_part()?;
        }
        Ok(())
    }

    pub fn write_row<S: AsRef<str>>(&mut self, fields: &[Option<S>]) -> Result<(), UploaderGone> {
        self.csv.write_row(&mut self.batch, fields);
        if let Some(f) = &mut self.fingerprints {
            f.row(fields);
        }
        self.part_rows += 1;
        if self.batch.len() >= CSV_BATCH {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn flush_batch(&mut self) -> Result<(), UploaderGone> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let PartSettings {
            compression,
            level,
            chunk_bytes,
            ..
        } = self.settings;
        let encoder = self
            .encoder
            .get_or_insert_with(|| PartEncoder::new(compression, level, chunk_bytes + (1 << 20)));
        encoder.write_all(&self.batch);
        self.part_csv_bytes += self.batch.len() as u64;
        self.batch.clear();
        if encoder.output().len() >= chunk_bytes {
            let data = std::mem::take(encoder.output());
            self.send(data, false)?;
        }
        if self.part_sent_bytes >= self.settings.part_bytes as u64 {
            self.close_part()?;
        }
        Ok(())
    }

    fn send(&mut self, data: Vec<u8>, last: bool) -> Result<(), UploaderGone> {
        self.part_sent_bytes += data.len() as u64;
        self.part_hash.update(&data);
        let chunk = Chunk {
            key: (self.key_of)(self.part_index),
            index: self.chunk_index,
            data: Bytes::from(data),
            last,
        };
        self.chunk_index += 1;
        self.tx
            .blocking_send(Upload::Chunk(chunk))
            .map_err(|_| UploaderGone)
    }

    fn close_part(&mut self) -> Result<(), UploaderGone> {
        let Some(encoder) = self.encoder.take() else {
            return Ok(());
        };
        let rest = encoder.finish();
        self.send(rest, true)?;
        let file = PartFile {
            key: (self.key_of)(self.part_index),
            rows: self.part_rows,
            bytes: self.part_sent_bytes,
            csv_bytes: self.part_csv_bytes,
            sha256: hex(&std::mem::take(&mut self.part_hash).finalize()),
            etag: None,
            fingerprint: self.fingerprints.as_mut().map(Fingerprinter::take),
        };
        self.output.fingerprint = match (self.output.fingerprint.take(), &file.fingerprint) {
            (Some(mut sum), Some(f)) => {
                sum.add(f);
                Some(sum)
            }
            (None, Some(f)) if self.output.rows == 0 => Some(f.clone()),
            _ => None,
        };
        self.output.rows += file.rows;
        self.output.bytes += file.bytes;
        self.output.files.push(file);
        self.part_index += 1;
        self.chunk_index = 0;
        self.part_rows = 0;
        self.part_csv_bytes = 0;
        self.part_sent_bytes = 0;
        Ok(())
    }

    /// Closes the last part and returns what was written.
    pub fn finish(mut self) -> Result<TableOutput, UploaderGone> {
        self.flush_batch()?;
        self.close_part()?;
        Ok(self.output)
    }
}

/// Lowercase hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The objects an upload completed: key → the entity tag the store gave it.
pub type Uploaded = BTreeMap<String, Option<String>>;

/// One object being written as a multipart upload.
struct OpenUpload {
    upload_id: String,
    parts: JoinSet<Result<UploadedPart, StoreError>>,
    completed: Vec<UploadedPart>,
}

/// Receives chunks until the channel closes and writes them to the store. Returns the objects
/// completed. On error, aborts every open multipart upload before returning.
pub async fn upload_chunks(
    store: Store,
    mut rx: mpsc::Receiver<Upload>,
    max_in_flight: usize,
) -> Result<Uploaded, StoreError> {
    let mut uploader = Uploader {
        permits: Arc::new(Semaphore::new(max_in_flight.max(1))),
        open: HashMap::new(),
        done: Uploaded::new(),
        store,
    };
    let result = async {
        while let Some(upload) = rx.recv().await {
            match upload {
                Upload::Chunk(chunk) => uploader.take(chunk).await?,
                Upload::Record { key, content } => uploader.record(key, content).await?,
            }
        }
        uploader.check_all_finished()
    }
    .await;
    match result {
        Ok(()) => Ok(uploader.done),
        Err(e) => {
            rx.close();
            uploader.abort_all().await;
            Err(e)
        }
    }
}

/// The objects being uploaded, with at most `permits` chunks on the wire.
struct Uploader {
    store: Store,
    permits: Arc<Semaphore>,
    open: HashMap<String, OpenUpload>,
    done: Uploaded,
}

impl Uploader {
    async fn permit(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore open")
    }

    async fn take(&mut self, chunk: Chunk) -> Result<(), StoreError> {
        if chunk.index == 0 && chunk.last {
            // The whole part fits one chunk: a single PUT is cheaper than a multipart upload.
            let _permit = self.permit().await;
            let etag = self
                .store
                .put_object(&chunk.key, chunk.data, content_type_of(&chunk.key))
                .await?;
            self.done.insert(chunk.key, etag);
            return Ok(());
        }
        if chunk.index == 0 {
            let upload_id = self
                .store
                .create_multipart(&chunk.key, content_type_of(&chunk.key))
                .await?;
            let upload = OpenUpload {
                upload_id,
                parts: JoinSet::new(),
                completed: Vec::new(),
            };
            self.open.insert(chunk.key.clone(), upload);
        }
        let permit = self.permit().await;
        let upload = self
            .open
            .get_mut(&chunk.key)
            .expect("chunks of a part arrive in order, first chunk opens the upload");
        let (store, key, id) = (
            self.store.clone(),
            chunk.key.clone(),
            upload.upload_id.clone(),
        );
        let (number, data) = (chunk.index as i32 + 1, chunk.data);
        upload.parts.spawn(async move {
            let result = store.upload_part(&key, &id, number, data).await;
            drop(permit);
            result
        });
        // Surface failures of finished parts early.
        while let Some(joined) = upload.parts.try_join_next() {
            upload
                .completed
                .push(joined.expect("upload task does not panic")?);
        }
        if chunk.last {
            self.complete(chunk.key).await?;
        }
        Ok(())
    }

    /// Writes a record object. Every part whose last chunk came before it was completed when
    /// that chunk was taken, so the record sees their entity tags.
    async fn record(&mut self, key: String, content: RecordContent) -> Result<(), StoreError> {
        let body = content(&self.done);
        let _permit = self.permit().await;
        self.store
            .put_object(&key, Bytes::from(body), "application/json")
            .await?;
        Ok(())
    }

    /// Waits for every part of `key` and completes the upload. On failure the upload stays open
    /// (for [`Uploader::abort_all`]).
    async fn complete(&mut self, key: String) -> Result<(), StoreError> {
        let upload = self.open.get_mut(&key).expect("present");
        while let Some(joined) = upload.parts.join_next().await {
            upload
                .completed
                .push(joined.expect("upload task does not panic")?);
        }
        let completed = std::mem::take(&mut upload.completed);
        let etag = self
            .store
            .complete_multipart(&key, &upload.upload_id, completed)
            .await?;
        self.open.remove(&key);
        self.done.insert(key, etag);
        Ok(())
    }

    /// The writer went away with parts unfinished (it failed or was told to stop): they must not
    /// be completed.
    fn check_all_finished(&self) -> Result<(), StoreError> {
        match self.open.keys().next() {
            None => Ok(()),
            Some(key) => Err(StoreError::Request {
                op: "CompleteMultipartUpload",
                url: self.store.url(key),
                detail: "the writer stopped before the part was complete; the upload is aborted"
                    .into(),
                class: crate::error::Class::Retry,
            }),
        }
    }

    async fn abort_all(&mut self) {
        for (key, mut upload) in self.open.drain() {
            upload.parts.abort_all();
            self.store.abort_multipart(&key, &upload.upload_id).await;
        }
    }
}
