//! Object storage: what the staging area needs of a bucket, as a trait with two implementations —
//! [`s3::S3Store`] (S3 or any S3-compatible server, every call through the one retry policy) and
//! [`memory::MemoryStore`] (for unit tests of the decisions built on top).
//!
//! Keys are plain strings; errors name the bucket and key as an `s3://` URL.

pub mod memory;
pub mod s3;

use async_trait::async_trait;
use bytes::Bytes;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::{Class, Classify};

/// A store shared by the tasks of a process.
pub type Store = Arc<dyn ObjectStore>;

/// An object's body, read as it arrives.
pub type Body = Pin<Box<dyn tokio::io::AsyncRead + Send>>;

/// An object found by a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
}

/// What a HEAD of an object says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    pub size: u64,
    /// The store's entity tag: it changes whenever the object is written again.
    pub etag: Option<String>,
}

/// A multipart upload that was started and neither completed nor aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenUpload {
    pub key: String,
    pub upload_id: String,
}

/// One finished part of a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedPart {
    /// From 1.
    pub number: i32,
    pub etag: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("S3 {op} of {url} failed: {detail}")]
    Request {
        op: &'static str,
        url: String,
        detail: String,
        class: Class,
    },
    #[error("reading {url} failed: {detail}")]
    Body { url: String, detail: String },
    #[error("bucket {bucket} does not exist ({endpoint}); create it, or pass the right --bucket / ETL_BUCKET")]
    NoBucket { bucket: String, endpoint: String },
}

impl Classify for StoreError {
    fn class(&self) -> Class {
        match self {
            StoreError::Request { class, .. } => *class,
            StoreError::Body { .. } => Class::Retry,
            StoreError::NoBucket { .. } => Class::Fatal,
        }
    }
}

/// What the staging area needs of a bucket.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    fn bucket(&self) -> &str;

    /// `s3://<bucket>/<key>`, for messages.
    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket())
    }

    /// How many calls were retried so far.
    fn retries(&self) -> u64;

    /// Fails with a clear message when the bucket is missing or unreachable (lists at most one
    /// key under `prefix`, so a role limited to the prefix passes).
    async fn check_access(&self, prefix: &str) -> Result<(), StoreError>;

    /// The whole object, or `None` when it does not exist.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError>;

    /// The object's body as a stream, for large objects.
    async fn get_stream(&self, key: &str) -> Result<Body, StoreError>;

    /// Writes the object; returns its entity tag.
    async fn put_object(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<Option<String>, StoreError>;

    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), StoreError> {
        self.put_object(key, body, content_type).await.map(drop)
    }

    /// The object's size and entity tag, or `None` when it does not exist.
    async fn head(&self, key: &str) -> Result<Option<ObjectHead>, StoreError>;

    /// Creates the object only if no object has the key; false when one exists. Of two writers
    /// racing for one key exactly one wins.
    async fn put_if_absent(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<bool, StoreError>;

    /// Every object under `prefix`, in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError>;

    /// The "folders" directly under `prefix` (the names up to the next `/`), sorted.
    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, StoreError>;

    /// Deletes the given keys; keys that do not exist are not an error.
    async fn delete_keys(&self, keys: &[String]) -> Result<(), StoreError>;

    async fn create_multipart(&self, key: &str, content_type: &str) -> Result<String, StoreError>;

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<UploadedPart, StoreError>;

    /// Completes the upload; returns the object's entity tag.
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<UploadedPart>,
    ) -> Result<Option<String>, StoreError>;

    /// Best effort: S3 keeps the parts of an unfinished upload (and bills them) until aborted.
    async fn abort_multipart(&self, key: &str, upload_id: &str);

    /// Multipart uploads under `prefix` that were neither completed nor aborted (a process killed
    /// while uploading leaves them behind).
    async fn open_uploads(&self, prefix: &str) -> Result<Vec<OpenUpload>, StoreError>;
}

/// Aborts every unfinished multipart upload under `prefix`; returns how many there were.
pub async fn abort_uploads(store: &dyn ObjectStore, prefix: &str) -> Result<usize, StoreError> {
    let open = store.open_uploads(prefix).await?;
    for upload in &open {
        store.abort_multipart(&upload.key, &upload.upload_id).await;
    }
    Ok(open.len())
}

/// Deletes every object under `prefix`; returns how many there were.
pub async fn delete_prefix(store: &dyn ObjectStore, prefix: &str) -> Result<usize, StoreError> {
    let keys: Vec<String> = store
        .list(prefix)
        .await?
        .into_iter()
        .map(|o| o.key)
        .collect();
    store.delete_keys(&keys).await?;
    Ok(keys.len())
}
