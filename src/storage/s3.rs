//! The store on S3 or any S3-compatible server, through `aws-sdk-s3`. Every call goes through
//! [`S3Store::call`], the one place that applies the retry policy, counts retries and logs them;
//! for whole-object reads the attempt includes reading the body, so a truncated or reset body is
//! retried like a failed request.

use async_trait::async_trait;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use bytes::Bytes;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Body, ObjectHead, ObjectInfo, ObjectStore, OpenUpload, StoreError, UploadedPart};
use crate::aws::Endpoint;
use crate::error::Class;
use crate::retry::{describe, sdk_failure, RetryPolicy, SdkFailure, UNREACHABLE_ATTEMPTS};

/// One bucket on S3.
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    endpoint: Endpoint,
    retry: RetryPolicy,
    retries: AtomicU64,
    /// Keys a listing asks for per page (S3's maximum, 1,000, unless a test lowers it to see
    /// many pages cheaply).
    page_keys: i32,
    /// Keys per DeleteObjects request (at most 1,000 by the API).
    delete_keys: usize,
}

/// A failed attempt: the request, or reading its body. Short-lived, so its size does not
/// matter.
#[allow(clippy::large_enum_variant)]
enum Attempt<E> {
    Request(SdkError<E, HttpResponse>),
    Body(String),
}

impl<E: ProvideErrorMetadata> Attempt<E> {
    fn failure(&self) -> SdkFailure {
        match self {
            Attempt::Request(e) => sdk_failure(e),
            Attempt::Body(_) => SdkFailure::Transient,
        }
    }
}

impl<E> From<SdkError<E, HttpResponse>> for Attempt<E> {
    fn from(e: SdkError<E, HttpResponse>) -> Self {
        Attempt::Request(e)
    }
}

impl S3Store {
    /// Whether uploads may go without SigV4's payload hash. The payload hash is one of two
    /// integrity checks of an upload's bytes in transit, the other being the CRC32 that the SDK
    /// sends, and S3 checks, when request checksums are on (`S3Checksums::WhenSupported`,
    /// <https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html>);
    /// with that on, S3 takes `UNSIGNED-PAYLOAD` instead of the hash
    /// (<https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html>), which
    /// spares hashing every part twice with SHA-256 (phase 1 keeps its own hash of each part in
    /// the manifest). Without request checksums the payload stays signed.
    fn unsigned_uploads(&self) -> bool {
        matches!(
            self.client.config().request_checksum_calculation(),
            Some(aws_sdk_s3::config::RequestChecksumCalculation::WhenSupported)
        )
    }

    pub fn new(
        client: aws_sdk_s3::Client,
        bucket: &str,
        endpoint: Endpoint,
        retry: RetryPolicy,
    ) -> Self {
        S3Store {
            client,
            bucket: bucket.to_string(),
            endpoint,
            retry,
            retries: AtomicU64::new(0),
            page_keys: 1000,
            delete_keys: 1000,
        }
    }

    /// The same store with smaller listing pages and delete batches (for tests: the paging
    /// code runs over many pages without writing thousands of objects). Clamped to S3's 1,000.
    pub fn with_batch_sizes(mut self, page_keys: i32, delete_keys: usize) -> Self {
        self.page_keys = page_keys.clamp(1, 1000);
        self.delete_keys = delete_keys.clamp(1, 1000);
        self
    }

    /// Runs one S3 operation under the retry policy. `op` names it for errors and logs.
    async fn call<T, E, Fut>(
        &self,
        op: &'static str,
        key: &str,
        attempt: impl FnMut() -> Fut,
    ) -> Result<T, Attempt<E>>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        Fut: Future<Output = Result<T, Attempt<E>>>,
    {
        let mut unreachable = 0;
        self.retry
            .run(
                attempt,
                |e: &Attempt<E>| match e.failure() {
                    SdkFailure::Throttled | SdkFailure::Transient => true,
                    SdkFailure::Unreachable => {
                        unreachable += 1;
                        unreachable < UNREACHABLE_ATTEMPTS
                    }
                    SdkFailure::Permanent => false,
                },
                |e, delay| self.note_retry(op, key, &self.detail(e), delay),
            )
            .await
    }

    fn detail<E>(&self, e: &Attempt<E>) -> String
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match e {
            Attempt::Request(e) if sdk_failure(e) == SdkFailure::Unreachable => {
                format!("{}: {}", self.endpoint, describe(e))
            }
            Attempt::Request(e) => describe(e),
            Attempt::Body(detail) => detail.clone(),
        }
    }

    fn fail<E>(&self, op: &'static str, key: &str, e: Attempt<E>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let url = self.url(key);
        match &e {
            Attempt::Request(SdkError::ServiceError(s))
                if s.err().code() == Some("NoSuchBucket") =>
            {
                StoreError::NoBucket {
                    bucket: self.bucket.clone(),
                    endpoint: self.endpoint.to_string(),
                }
            }
            Attempt::Body(_) => StoreError::Body {
                url,
                detail: self.detail(&e),
            },
            Attempt::Request(_) => StoreError::Request {
                op,
                url,
                detail: self.detail(&e),
                class: if e.failure().is_retriable() {
                    Class::Retry
                } else {
                    Class::Fatal
                },
            },
        }
    }

    fn note_retry(&self, op: &str, key: &str, detail: &str, delay: Duration) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(op, bucket = %self.bucket, key, delay_ms = delay.as_millis() as u64,
            error = %detail, "S3 call failed transiently; retrying");
    }

    /// One page of ListObjectsV2.
    async fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
    ) -> Result<aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output, StoreError> {
        self.call("ListObjectsV2", prefix, || async {
            Ok(self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_delimiter(delimiter.map(str::to_string))
                .set_continuation_token(token.clone())
                .max_keys(self.page_keys)
                .send()
                .await?)
        })
        .await
        .map_err(|e| self.fail("ListObjectsV2", prefix, e))
    }

    /// Calls `each` with every page of a listing.
    async fn for_each_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        mut each: impl FnMut(&aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output),
    ) -> Result<(), StoreError> {
        let mut token: Option<String> = None;
        loop {
            let page = self.list_page(prefix, delimiter, token.take()).await?;
            each(&page);
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => return Ok(()),
            }
        }
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    async fn check_access(&self, prefix: &str) -> Result<(), StoreError> {
        self.call("ListObjectsV2", prefix, || async {
            Ok(self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .max_keys(1)
                .send()
                .await?)
        })
        .await
        .map(|_| ())
        .map_err(|e| self.fail("ListObjectsV2", prefix, e))
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let result = self
            .call("GetObject", key, || async {
                let output = self
                    .client
                    .get_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .send()
                    .await?;
                let body = output
                    .body
                    .collect()
                    .await
                    .map_err(|e| Attempt::Body(crate::retry::error_chain(&e)))?;
                Ok(body.into_bytes())
            })
            .await;
        match result {
            Ok(bytes) => Ok(Some(bytes)),
            Err(Attempt::Request(e))
                if e.as_service_error().is_some_and(|s| s.is_no_such_key()) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.fail("GetObject", key, e)),
        }
    }

    async fn get_stream(&self, key: &str) -> Result<Body, StoreError> {
        let output = self
            .call("GetObject", key, || async {
                Ok(self
                    .client
                    .get_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .send()
                    .await?)
            })
            .await
            .map_err(|e| self.fail("GetObject", key, e))?;
        Ok(Box::pin(output.body.into_async_read()))
    }

    async fn put_object(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<Option<String>, StoreError> {
        self.call("PutObject", key, || async {
            let put = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_type(content_type)
                .body(ByteStream::from(body.clone()))
                .customize();
            let put = if self.unsigned_uploads() {
                put.disable_payload_signing()
            } else {
                put
            };
            Ok(put.send().await?)
        })
        .await
        .map(|out| out.e_tag().map(str::to_string))
        .map_err(|e| self.fail("PutObject", key, e))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectHead>, StoreError> {
        let result = self
            .call("HeadObject", key, || async {
                Ok(self
                    .client
                    .head_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .send()
                    .await?)
            })
            .await;
        match result {
            Ok(out) => Ok(Some(ObjectHead {
                size: out.content_length().unwrap_or(0).max(0) as u64,
                etag: out.e_tag().map(str::to_string),
            })),
            Err(Attempt::Request(e)) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {
                Ok(None)
            }
            Err(e) => Err(self.fail("HeadObject", key, e)),
        }
    }

    async fn put_if_absent(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<bool, StoreError> {
        let result = self
            .call("PutObject", key, || async {
                Ok(self
                    .client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .content_type(content_type)
                    .if_none_match("*")
                    .body(ByteStream::from(body.clone()))
                    .send()
                    .await?)
            })
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(Attempt::Request(e))
                if e.raw_response().is_some_and(|r| r.status().as_u16() == 412)
                    || e.as_service_error().and_then(|s| s.meta().code())
                        == Some("PreconditionFailed") =>
            {
                Ok(false)
            }
            Err(e) => Err(self.fail("PutObject", key, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
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

    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
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

    async fn delete_keys(&self, keys: &[String]) -> Result<(), StoreError> {
        for batch in keys.chunks(self.delete_keys) {
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
                .call("DeleteObjects", first, || async {
                    Ok(self
                        .client
                        .delete_objects()
                        .bucket(&self.bucket)
                        .delete(delete.clone())
                        .send()
                        .await?)
                })
                .await
                .map_err(|e| self.fail("DeleteObjects", first, e))?;
            if let Some(e) = output.errors().first() {
                return Err(StoreError::Request {
                    op: "DeleteObjects",
                    url: self.url(e.key().unwrap_or(first)),
                    detail: format!(
                        "{}: {}",
                        e.code().unwrap_or("error"),
                        e.message().unwrap_or("")
                    ),
                    class: Class::Retry,
                });
            }
        }
        Ok(())
    }

    async fn create_multipart(&self, key: &str, content_type: &str) -> Result<String, StoreError> {
        let out = self
            .call("CreateMultipartUpload", key, || async {
                Ok(self
                    .client
                    .create_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .content_type(content_type)
                    .send()
                    .await?)
            })
            .await
            .map_err(|e| self.fail("CreateMultipartUpload", key, e))?;
        out.upload_id()
            .map(str::to_string)
            .ok_or_else(|| StoreError::Request {
                op: "CreateMultipartUpload",
                url: self.url(key),
                detail: "response has no upload id".into(),
                class: Class::Fatal,
            })
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<UploadedPart, StoreError> {
        let out = self
            .call("UploadPart", key, || async {
                let part = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(number)
                    .body(ByteStream::from(body.clone()))
                    .customize();
                let part = if self.unsigned_uploads() {
                    part.disable_payload_signing()
                } else {
                    part
                };
                Ok(part.send().await?)
            })
            .await
            .map_err(|e| self.fail("UploadPart", key, e))?;
        Ok(UploadedPart {
            number,
            etag: out.e_tag().map(str::to_string),
        })
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        mut parts: Vec<UploadedPart>,
    ) -> Result<Option<String>, StoreError> {
        parts.sort_by_key(|p| p.number);
        let upload = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .into_iter()
                    .map(|p| {
                        CompletedPart::builder()
                            .part_number(p.number)
                            .set_e_tag(p.etag)
                            .build()
                    })
                    .collect(),
            ))
            .build();
        self.call("CompleteMultipartUpload", key, || async {
            Ok(self
                .client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .multipart_upload(upload.clone())
                .send()
                .await?)
        })
        .await
        .map(|out| out.e_tag().map(str::to_string))
        .map_err(|e| self.fail("CompleteMultipartUpload", key, e))
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) {
        let result = self
            .call("AbortMultipartUpload", key, || async {
                Ok(self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .send()
                    .await?)
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(bucket = %self.bucket, key, upload_id, error = %self.detail(&e),
                "could not abort a multipart upload; a bucket lifecycle rule for incomplete uploads will remove it");
        }
    }

    async fn open_uploads(&self, prefix: &str) -> Result<Vec<OpenUpload>, StoreError> {
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let page = self
                .call("ListMultipartUploads", prefix, || async {
                    Ok(self
                        .client
                        .list_multipart_uploads()
                        .bucket(&self.bucket)
                        .prefix(prefix)
                        .set_key_marker(key_marker.clone())
                        .set_upload_id_marker(id_marker.clone())
                        .send()
                        .await?)
                })
                .await
                .map_err(|e| self.fail("ListMultipartUploads", prefix, e))?;
            out.extend(page.uploads().iter().filter_map(|u| {
                Some(OpenUpload {
                    key: u.key()?.to_string(),
                    upload_id: u.upload_id()?.to_string(),
                })
            }));
            if page.is_truncated() != Some(true) {
                return Ok(out);
            }
            key_marker = page.next_key_marker().map(str::to_string);
            id_marker = page.next_upload_id_marker().map(str::to_string);
            if key_marker.is_none() && id_marker.is_none() {
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::{AwsConfig, S3Checksums};
    use aws_config::{BehaviorVersion, Region, SdkConfig};

    fn store(checksums: S3Checksums) -> S3Store {
        let sdk = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .build();
        let config = AwsConfig {
            s3_checksums: checksums,
            s3_endpoint: Some("http://127.0.0.1:9".into()),
            ..AwsConfig::default()
        };
        S3Store::new(
            crate::aws::s3(&sdk, &config),
            "b",
            crate::aws::s3_endpoint(&sdk, &config),
            RetryPolicy::default(),
        )
    }

    /// The payload goes unsigned only where S3 checks the CRC32 the SDK sends instead: with
    /// request checksums off, SigV4's payload hash is the upload's only check in transit.
    #[test]
    fn uploads_go_unsigned_only_when_their_checksum_is_sent() {
        assert!(store(S3Checksums::WhenSupported).unsigned_uploads());
        assert!(!store(S3Checksums::WhenRequired).unsigned_uploads());
    }
}
