//! The staging object store: S3 or any S3-compatible server, reached through `aws-sdk-s3` with
//! every call wrapped in the shared retry policy. Errors name the bucket and key.

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::retry::{describe, is_retriable, RetryPolicy};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("S3 {op} of s3://{bucket}/{key} failed: {detail}")]
    Request {
        op: &'static str,
        bucket: String,
        key: String,
        detail: String,
        retriable: bool,
    },
    #[error("reading s3://{bucket}/{key} failed: {detail}")]
    Body {
        bucket: String,
        key: String,
        detail: String,
    },
}

impl StoreError {
    /// True when trying again later may succeed (throttling, network, 5xx).
    pub fn is_retriable(&self) -> bool {
        match self {
            StoreError::Request { retriable, .. } => *retriable,
            StoreError::Body { .. } => true,
        }
    }
}

/// An object found by [`ObjectStore::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
}

/// One bucket of the staging area.
#[derive(Clone)]
pub struct ObjectStore {
    client: aws_sdk_s3::Client,
    bucket: String,
    retry: RetryPolicy,
    retries: Arc<AtomicU64>,
}

impl ObjectStore {
    pub fn new(client: aws_sdk_s3::Client, bucket: &str, retry: RetryPolicy) -> Self {
        ObjectStore {
            client,
            bucket: bucket.to_string(),
            retry,
            retries: Arc::default(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// How many calls were retried so far (all clones share the counter).
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    fn fail<E>(
        &self,
        op: &'static str,
        key: &str,
        err: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        StoreError::Request {
            op,
            bucket: self.bucket.clone(),
            key: key.to_string(),
            detail: describe(err),
            retriable: is_retriable(err),
        }
    }

    fn note_retry(&self, op: &str, key: &str, delay: std::time::Duration) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(op, bucket = %self.bucket, key, delay_ms = delay.as_millis() as u64, "S3 call failed transiently; retrying");
    }

    /// Fails with a clear message when the bucket is missing or unreachable. Lists at most one key
    /// under `prefix` rather than calling HeadBucket, so a role limited to the prefix passes.
    pub async fn check_access(&self, prefix: &str) -> Result<(), StoreError> {
        self.retry
            .run(
                || {
                    self.client
                        .list_objects_v2()
                        .bucket(&self.bucket)
                        .prefix(prefix)
                        .max_keys(1)
                        .send()
                },
                is_retriable,
                |_, d| self.note_retry("ListObjectsV2", prefix, d),
            )
            .await
            .map(|_| ())
            .map_err(|e| {
                let mut err = self.fail("ListObjectsV2", prefix, &e);
                if let StoreError::Request { detail, .. } = &mut err {
                    if e.as_service_error()
                        .is_some_and(|s| s.meta().code() == Some("NoSuchBucket"))
                    {
                        *detail = format!(
                            "bucket {} does not exist; create it or pass --bucket/ETL_BUCKET",
                            self.bucket
                        );
                    }
                }
                err
            })
    }

    /// The whole object, or `None` when it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let result = self
            .retry
            .run(
                || {
                    self.client
                        .get_object()
                        .bucket(&self.bucket)
                        .key(key)
                        .send()
                },
                is_retriable,
                |_, d| self.note_retry("GetObject", key, d),
            )
            .await;
        let output = match result {
            Ok(o) => o,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(self.fail("GetObject", key, &e)),
        };
        let body = output.body.collect().await.map_err(|e| StoreError::Body {
            bucket: self.bucket.clone(),
            key: key.to_string(),
            detail: e.to_string(),
        })?;
        Ok(Some(body.into_bytes()))
    }

    /// A streaming body for large objects (retries cover opening the stream, not reading it).
    pub async fn get_stream(&self, key: &str) -> Result<ByteStream, StoreError> {
        self.retry
            .run(
                || {
                    self.client
                        .get_object()
                        .bucket(&self.bucket)
                        .key(key)
                        .send()
                },
                is_retriable,
                |_, d| self.note_retry("GetObject", key, d),
            )
            .await
            .map(|o| o.body)
            .map_err(|e| self.fail("GetObject", key, &e))
    }

    pub async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), StoreError> {
        self.retry
            .run(
                || {
                    self.client
                        .put_object()
                        .bucket(&self.bucket)
                        .key(key)
                        .content_type(content_type)
                        .body(ByteStream::from(body.clone()))
                        .send()
                },
                is_retriable,
                |_, d| self.note_retry("PutObject", key, d),
            )
            .await
            .map(|_| ())
            .map_err(|e| self.fail("PutObject", key, &e))
    }

    /// Creates the object only if no object has the key (a conditional PUT with
    /// `If-None-Match: *`); returns false when one already exists. Two writers racing for the same
    /// key cannot both win.
    pub async fn put_if_absent(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<bool, StoreError> {
        let result = self
            .retry
            .run(
                || {
                    self.client
                        .put_object()
                        .bucket(&self.bucket)
                        .key(key)
                        .content_type(content_type)
                        .if_none_match("*")
                        .body(ByteStream::from(body.clone()))
                        .send()
                },
                is_retriable,
                |_, d| self.note_retry("PutObject", key, d),
            )
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.raw_response().is_some_and(|r| r.status().as_u16() == 412)
                    || e.as_service_error().and_then(|s| s.meta().code())
                        == Some("PreconditionFailed") =>
            {
                Ok(false)
            }
            Err(e) => Err(self.fail("PutObject", key, &e)),
        }
    }

    /// Calls `each` with every page of a ListObjectsV2 over `prefix`.
    async fn for_each_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        mut each: impl FnMut(&aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output),
    ) -> Result<(), StoreError> {
        let mut token: Option<String> = None;
        loop {
            let page = self
                .retry
                .run(
                    || {
                        self.client
                            .list_objects_v2()
                            .bucket(&self.bucket)
                            .prefix(prefix)
                            .set_delimiter(delimiter.map(str::to_string))
                            .set_continuation_token(token.clone())
                            .send()
                    },
                    is_retriable,
                    |_, d| self.note_retry("ListObjectsV2", prefix, d),
                )
                .await
                .map_err(|e| self.fail("ListObjectsV2", prefix, &e))?;
            each(&page);
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => return Ok(()),
            }
        }
    }

    /// Every object under `prefix`, in key order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let mut out = Vec::new();
        self.for_each_page(prefix, None, |page| {
            out.extend(page.contents().iter().filter_map(|o| {
                o.key().map(|key| ObjectInfo {
                    key: key.to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                })
            }))
        })
        .await?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// The "folders" directly under `prefix` (common prefixes at the next `/`), e.g. the run ids
    /// under `…/runs/`, without listing their contents.
    pub async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        self.for_each_page(prefix, Some("/"), |page| {
            for p in page.common_prefixes() {
                if let Some(dir) = p.prefix() {
                    let name = dir[prefix.len().min(dir.len())..].trim_end_matches('/');
                    if !name.is_empty() {
                        out.push(name.to_string());
                    }
                }
            }
        })
        .await?;
        out.sort();
        Ok(out)
    }

    /// Deletes the given keys (in batches of 1000).
    pub async fn delete_keys(&self, keys: &[String]) -> Result<(), StoreError> {
        for batch in keys.chunks(1000) {
            let objects: Vec<ObjectIdentifier> = batch
                .iter()
                .map(|k| {
                    ObjectIdentifier::builder()
                        .key(k)
                        .build()
                        .expect("key is set")
                })
                .collect();
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .expect("objects are set");
            let first = batch.first().map(String::as_str).unwrap_or("");
            let output = self
                .retry
                .run(
                    || {
                        self.client
                            .delete_objects()
                            .bucket(&self.bucket)
                            .delete(delete.clone())
                            .send()
                    },
                    is_retriable,
                    |_, d| self.note_retry("DeleteObjects", first, d),
                )
                .await
                .map_err(|e| self.fail("DeleteObjects", first, &e))?;
            if let Some(e) = output.errors().first() {
                return Err(StoreError::Request {
                    op: "DeleteObjects",
                    bucket: self.bucket.clone(),
                    key: e.key().unwrap_or(first).to_string(),
                    detail: format!(
                        "{}: {}",
                        e.code().unwrap_or("error"),
                        e.message().unwrap_or("")
                    ),
                    retriable: true,
                });
            }
        }
        Ok(())
    }

    /// Deletes every object under `prefix`; returns how many there were.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize, StoreError> {
        let keys: Vec<String> = self
            .list(prefix)
            .await?
            .into_iter()
            .map(|o| o.key)
            .collect();
        self.delete_keys(&keys).await?;
        Ok(keys.len())
    }

    pub async fn create_multipart(&self, key: &str) -> Result<String, StoreError> {
        let out = self
            .retry
            .run(
                || {
                    self.client
                        .create_multipart_upload()
                        .bucket(&self.bucket)
                        .key(key)
                        .content_type(crate::stage::parts::content_type_of(key))
                        .send()
                },
                is_retriable,
                |_, d| self.note_retry("CreateMultipartUpload", key, d),
            )
            .await
            .map_err(|e| self.fail("CreateMultipartUpload", key, &e))?;
        out.upload_id()
            .map(str::to_string)
            .ok_or_else(|| StoreError::Request {
                op: "CreateMultipartUpload",
                bucket: self.bucket.clone(),
                key: key.to_string(),
                detail: "response has no upload id".into(),
                retriable: false,
            })
    }

    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        body: Bytes,
    ) -> Result<CompletedPart, StoreError> {
        let out = self
            .retry
            .run(
                || {
                    self.client
                        .upload_part()
                        .bucket(&self.bucket)
                        .key(key)
                        .upload_id(upload_id)
                        .part_number(part_number)
                        .body(ByteStream::from(body.clone()))
                        .send()
                },
                is_retriable,
                |_, d| self.note_retry("UploadPart", key, d),
            )
            .await
            .map_err(|e| self.fail("UploadPart", key, &e))?;
        Ok(CompletedPart::builder()
            .part_number(part_number)
            .set_e_tag(out.e_tag().map(str::to_string))
            .build())
    }

    pub async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        mut parts: Vec<CompletedPart>,
    ) -> Result<(), StoreError> {
        parts.sort_by_key(|p| p.part_number());
        let upload = CompletedMultipartUpload::builder()
            .set_parts(Some(parts))
            .build();
        self.retry
            .run(
                || {
                    self.client
                        .complete_multipart_upload()
                        .bucket(&self.bucket)
                        .key(key)
                        .upload_id(upload_id)
                        .multipart_upload(upload.clone())
                        .send()
                },
                is_retriable,
                |_, d| self.note_retry("CompleteMultipartUpload", key, d),
            )
            .await
            .map(|_| ())
            .map_err(|e| self.fail("CompleteMultipartUpload", key, &e))
    }

    /// Best effort: S3 keeps the parts of an unfinished upload (and bills them) until aborted.
    pub async fn abort_multipart(&self, key: &str, upload_id: &str) {
        let result = self
            .retry
            .run(
                || {
                    self.client
                        .abort_multipart_upload()
                        .bucket(&self.bucket)
                        .key(key)
                        .upload_id(upload_id)
                        .send()
                },
                is_retriable,
                |_, d| self.note_retry("AbortMultipartUpload", key, d),
            )
            .await;
        if let Err(e) = result {
            tracing::warn!(bucket = %self.bucket, key, upload_id, error = %describe(&e),
                "could not abort a multipart upload; a bucket lifecycle rule for incomplete uploads will remove it");
        }
    }
}
/// Opens a known sequence of parts for reading one after another, with the GET of the next part
/// already under way while the current one is read (and the first one's from the start, while
/// the caller sets up its warehouse connection): a store's time to first byte (a few
/// milliseconds on S3, more on a busy S3-compatible server) then overlaps with other work
/// instead of adding to it. At most one request runs ahead, and it holds only the response head
/// and what the connection buffers, so memory does not grow with part size.
pub struct PartReader {
    store: ObjectStore,
    state: std::sync::Mutex<ReaderState>,
}

struct ReaderState {
    upcoming: std::collections::VecDeque<String>,
    ahead: Option<(
        String,
        tokio::task::JoinHandle<Result<ByteStream, StoreError>>,
    )>,
}

impl PartReader {
    /// `keys` in the order they will be opened; the first one's GET starts now (so this must be
    /// called within a Tokio runtime).
    pub fn new(store: ObjectStore, keys: Vec<String>) -> Self {
        let mut upcoming: std::collections::VecDeque<String> = keys.into();
        let ahead = upcoming.pop_front().map(|first| {
            let store = store.clone();
            let key = first.clone();
            (
                first,
                tokio::spawn(async move { store.get_stream(&key).await }),
            )
        });
        PartReader {
            store,
            state: std::sync::Mutex::new(ReaderState { upcoming, ahead }),
        }
    }

    /// The body of `key`. Keys opened out of the announced order still work (fetched on the
    /// spot); the request running ahead for another key is then dropped.
    pub async fn open(&self, key: &str) -> Result<ByteStream, StoreError> {
        let ahead = {
            let mut state = self.state.lock().expect("part reader lock");
            let ahead = state.ahead.take();
            // Everything up to and including `key` is now behind us.
            if let Some(at) = state.upcoming.iter().position(|k| k == key) {
                state.upcoming.drain(..=at);
            }
            state.ahead = state.upcoming.pop_front().map(|next| {
                let store = self.store.clone();
                let k = next.clone();
                (
                    next,
                    tokio::spawn(async move { store.get_stream(&k).await }),
                )
            });
            ahead
        };
        match ahead {
            Some((k, handle)) if k == key => match handle.await {
                Ok(result) => result,
                // The task only fails if it panicked or the runtime is shutting down.
                Err(_) => self.store.get_stream(key).await,
            },
            Some((_, handle)) => {
                handle.abort();
                self.store.get_stream(key).await
            }
            None => self.store.get_stream(key).await,
        }
    }
}

impl Drop for PartReader {
    fn drop(&mut self) {
        if let Ok(mut state) = self.state.lock() {
            if let Some((_, handle)) = state.ahead.take() {
                handle.abort();
            }
        }
    }
}
