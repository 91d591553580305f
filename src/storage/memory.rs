//! A store held in memory, for unit tests of what is decided on top of the store (plans,
//! manifests, status, gc, the gate). It keeps S3's observable rules — keys in byte order, a
//! conditional PUT that one writer wins, multipart uploads that are invisible until completed
//! with parts of at least 5 MiB but the last — which `testkit::storage::conformance` asserts
//! against both stores.

use async_trait::async_trait;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::{Body, ObjectHead, ObjectInfo, ObjectStore, OpenUpload, StoreError, UploadedPart};

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Bytes>,
    /// upload id → (key, parts by number)
    uploads: HashMap<String, (String, BTreeMap<i32, Bytes>)>,
    next_upload: u64,
}

/// One bucket in memory.
pub struct MemoryStore {
    bucket: String,
    state: Mutex<State>,
    /// The smallest part, but the last, a multipart upload may complete with.
    min_part_bytes: usize,
}

impl MemoryStore {
    pub fn new(bucket: &str) -> Self {
        MemoryStore {
            bucket: bucket.to_string(),
            state: Mutex::default(),
            min_part_bytes: MIN_PART_BYTES,
        }
    }

    /// A store that completes multipart uploads of parts of any size, unlike S3: for unit tests
    /// that roll parts after a few bytes to see many parts cheaply. Everything else keeps S3's
    /// rules.
    pub fn with_any_part_size(bucket: &str) -> Self {
        MemoryStore {
            min_part_bytes: 0,
            ..MemoryStore::new(bucket)
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("memory store lock")
    }
}

/// The smallest part S3 accepts in a multipart upload, but for the last one
/// (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html>).
const MIN_PART_BYTES: usize = 5 << 20;

/// An entity tag derived from the content, as S3's is for a single PUT.
fn etag(body: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(body);
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

#[async_trait]
impl ObjectStore for MemoryStore {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    fn retries(&self) -> u64 {
        0
    }

    async fn check_access(&self, _prefix: &str) -> Result<(), StoreError> {
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        Ok(self.state().objects.get(key).cloned())
    }

    async fn get_stream(&self, key: &str) -> Result<Body, StoreError> {
        match self.state().objects.get(key) {
            Some(bytes) => Ok(Box::pin(std::io::Cursor::new(bytes.clone()))),
            None => Err(StoreError::Request {
                op: "GetObject",
                url: self.url(key),
                detail: "NoSuchKey".into(),
                class: crate::error::Class::Fatal,
            }),
        }
    }

    async fn put_object(
        &self,
        key: &str,
        body: Bytes,
        _content_type: &str,
    ) -> Result<Option<String>, StoreError> {
        let tag = etag(&body);
        self.state().objects.insert(key.to_string(), body);
        Ok(Some(tag))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectHead>, StoreError> {
        Ok(self.state().objects.get(key).map(|b| ObjectHead {
            size: b.len() as u64,
            etag: Some(etag(b)),
        }))
    }

    async fn put_if_absent(
        &self,
        key: &str,
        body: Bytes,
        _content_type: &str,
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        if state.objects.contains_key(key) {
            return Ok(false);
        }
        state.objects.insert(key.to_string(), body);
        Ok(true)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        Ok(self
            .state()
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| ObjectInfo {
                key: k.clone(),
                size: v.len() as u64,
            })
            .collect())
    }

    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut dirs: Vec<String> = self
            .list(prefix)
            .await?
            .into_iter()
            .filter_map(|o| {
                let rest = &o.key[prefix.len()..];
                rest.split_once('/').map(|(dir, _)| dir.to_string())
            })
            .filter(|d| !d.is_empty())
            .collect();
        dirs.dedup();
        Ok(dirs)
    }

    async fn delete_keys(&self, keys: &[String]) -> Result<(), StoreError> {
        let mut state = self.state();
        for k in keys {
            state.objects.remove(k);
        }
        Ok(())
    }

    async fn create_multipart(&self, key: &str, _content_type: &str) -> Result<String, StoreError> {
        let mut state = self.state();
        state.next_upload += 1;
        let id = format!("upload-{}", state.next_upload);
        state
            .uploads
            .insert(id.clone(), (key.to_string(), BTreeMap::new()));
        Ok(id)
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<UploadedPart, StoreError> {
        let mut state = self.state();
        let Some((_, parts)) = state.uploads.get_mut(upload_id) else {
            return Err(no_upload(self, key, upload_id));
        };
        parts.insert(number, body);
        Ok(UploadedPart {
            number,
            etag: Some(format!("\"{upload_id}-{number}\"")),
        })
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<UploadedPart>,
    ) -> Result<Option<String>, StoreError> {
        let mut state = self.state();
        let Some((upload_key, stored)) = state.uploads.get(upload_id) else {
            return Err(no_upload(self, key, upload_id));
        };
        let mut body = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let Some(bytes) = stored.get(&part.number) else {
                return Err(no_upload(self, key, upload_id));
            };
            // As S3: every part but the last is at least 5 MiB, else the completion fails
            // (EntityTooSmall) and the upload stays open.
            if i + 1 < parts.len() && bytes.len() < self.min_part_bytes {
                return Err(StoreError::Request {
                    op: "CompleteMultipartUpload",
                    url: self.url(key),
                    detail: format!(
                        "EntityTooSmall: part {} has {} bytes, under the 5 MiB minimum",
                        part.number,
                        bytes.len()
                    ),
                    class: crate::error::Class::Fatal,
                });
            }
            body.extend_from_slice(bytes);
        }
        let upload_key = upload_key.clone();
        state.uploads.remove(upload_id);
        let tag = etag(&body);
        state.objects.insert(upload_key, body.into());
        Ok(Some(tag))
    }

    async fn abort_multipart(&self, _key: &str, upload_id: &str) {
        self.state().uploads.remove(upload_id);
    }

    async fn open_uploads(&self, prefix: &str) -> Result<Vec<OpenUpload>, StoreError> {
        let mut open: Vec<OpenUpload> = self
            .state()
            .uploads
            .iter()
            .filter(|(_, (key, _))| key.starts_with(prefix))
            .map(|(id, (key, _))| OpenUpload {
                key: key.clone(),
                upload_id: id.clone(),
            })
            .collect();
        open.sort_by(|a, b| (&a.key, &a.upload_id).cmp(&(&b.key, &b.upload_id)));
        Ok(open)
    }
}

fn no_upload(store: &MemoryStore, key: &str, upload_id: &str) -> StoreError {
    StoreError::Request {
        op: "UploadPart",
        url: store.url(key),
        detail: format!("NoSuchUpload {upload_id}"),
        class: crate::error::Class::Fatal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same assertions the S3 store passes on the local S3-compatible server
    /// (`tests/it/storage.rs`).
    #[tokio::test]
    async fn keeps_the_rules_of_s3() {
        crate::testkit::storage::conformance(&MemoryStore::new("b"), "conformance/").await;
        crate::testkit::storage::conformance(&MemoryStore::new("b"), "").await;
    }
}
