//! The one retry policy of the program. SDK clients are built with their own retries switched off
//! (see `aws`), so every call path has exactly one retry layer: this one.
//!
//! What is retried: throttling (`ProvisionedThroughputExceededException`, `ThrottlingException`,
//! `RequestLimitExceeded`, S3 `SlowDown`), HTTP 5xx and 429, timeouts and dropped connections.
//! An endpoint that refuses connections or whose name does not resolve is tried
//! [`UNREACHABLE_ATTEMPTS`] times only: a wrong endpoint should be reported in a second, not
//! after minutes of backoff. What is not retried: anything else (bad requests, missing tables or
//! buckets, access denied, missing credentials), which fails at once. Delays grow exponentially
//! from `min_delay` to `max_delay` with full jitter; at most `max_attempts` attempts and
//! `max_total` of summed delay.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use backon::{ExponentialBuilder, Retryable};
use std::future::Future;
use std::time::Duration;

/// Error codes that mean "slow down and try again".
const THROTTLING_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "SlowDown",
    "TooManyRequestsException",
    "RequestThrottled",
    "RequestThrottledException",
];

/// Error codes of transient server-side trouble.
const TRANSIENT_CODES: &[&str] = &[
    "InternalServerError",
    "InternalError",
    "ServiceUnavailable",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// Attempts and delays for one call path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
    pub max_total: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 10,
            min_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(20),
            max_total: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_max_times(self.max_attempts.saturating_sub(1))
            .with_total_delay(Some(self.max_total))
            .with_jitter()
    }

    /// Runs `op` until it succeeds, fails with an error `retriable` rejects, or the attempts or
    /// total delay run out. `on_retry` sees each error that will be retried (for logs and counters).
    pub async fn run<T, E, Fut, Op>(
        &self,
        op: Op,
        retriable: impl FnMut(&E) -> bool,
        on_retry: impl FnMut(&E, Duration),
    ) -> Result<T, E>
    where
        Op: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        op.retry(self.backoff())
            .sleep(tokio::time::sleep)
            .when(retriable)
            .notify(on_retry)
            .await
    }

    /// [`RetryPolicy::run`] for an AWS SDK call, with [`sdk_retry_filter`]'s decision.
    pub async fn run_sdk<T, E, Fut, Op>(
        &self,
        op: Op,
        on_retry: impl FnMut(&SdkError<E, HttpResponse>, Duration),
    ) -> Result<T, SdkError<E, HttpResponse>>
    where
        E: ProvideErrorMetadata,
        Op: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    {
        self.run(op, sdk_retry_filter(), on_retry).await
    }
}

/// How many times a call is tried against an endpoint that refuses connections (or whose name
/// does not resolve).
pub const UNREACHABLE_ATTEMPTS: usize = 3;

/// What kind of failure an AWS SDK error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdkFailure {
    /// The service asked to slow down.
    Throttled,
    /// A 5xx, a timeout, a dropped connection: worth another attempt.
    Transient,
    /// Nothing answers at the endpoint (connection refused, unknown host).
    Unreachable,
    /// A bad request, a missing resource, denied access, missing credentials.
    Permanent,
}

impl SdkFailure {
    pub fn is_retriable(self) -> bool {
        self != SdkFailure::Permanent
    }
}

/// The retry decision of one call: throttled and transient errors until the policy runs out, an
/// unreachable endpoint [`UNREACHABLE_ATTEMPTS`] times, anything else never.
pub fn sdk_retry_filter<E: ProvideErrorMetadata>() -> impl FnMut(&SdkError<E, HttpResponse>) -> bool
{
    let mut unreachable = 0;
    move |e| match sdk_failure(e) {
        SdkFailure::Throttled | SdkFailure::Transient => true,
        SdkFailure::Unreachable => {
            unreachable += 1;
            unreachable < UNREACHABLE_ATTEMPTS
        }
        SdkFailure::Permanent => false,
    }
}

/// True for throttling error codes.
pub fn is_throttling_code(code: Option<&str>) -> bool {
    code.is_some_and(|c| THROTTLING_CODES.contains(&c))
}

/// What kind of failure an AWS SDK error is (all SDKs share the smithy response type).
pub fn sdk_failure<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> SdkFailure {
    match err {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => SdkFailure::Transient,
        SdkError::DispatchFailure(f)
            if f.is_io()
                && f.as_connector_error()
                    .is_some_and(|c| refused_or_unresolved(c)) =>
        {
            SdkFailure::Unreachable
        }
        SdkError::DispatchFailure(f)
            if f.is_io()
                || f.is_timeout()
                || f.as_other() == Some(aws_smithy_types::retry::ErrorKind::TransientError) =>
        {
            SdkFailure::Transient
        }
        SdkError::ServiceError(e) => {
            let status = e.raw().status().as_u16();
            let code = e.err().code();
            if status == 429 || is_throttling_code(code) {
                SdkFailure::Throttled
            } else if status >= 500 || code.is_some_and(|c| TRANSIENT_CODES.contains(&c)) {
                SdkFailure::Transient
            } else {
                SdkFailure::Permanent
            }
        }
        // Construction failures, missing credentials and other dispatch failures: trying again
        // changes nothing.
        _ => SdkFailure::Permanent,
    }
}

/// True when an error may go away by itself.
pub fn is_retriable<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    sdk_failure(err).is_retriable()
}

/// A connection that was refused, or a host name that did not resolve, somewhere in the chain.
fn refused_or_unresolved(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        let text = e.to_string().to_ascii_lowercase();
        if text.contains("connection refused") || text.contains("dns error") {
            return true;
        }
        source = e.source();
    }
    false
}

/// A short, credential-free description of an SDK error: code, message and HTTP status.
pub fn describe<E>(err: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::ServiceError(e) => {
            let status = e.raw().status().as_u16();
            match e.err().code() {
                Some(code) => format!(
                    "{code} (HTTP {status}): {}",
                    e.err().message().unwrap_or("")
                ),
                None => {
                    // No error code parsed: show the start of the body, which says what happened.
                    let body = e.raw().body().bytes().unwrap_or_default();
                    let text = String::from_utf8_lossy(&body[..body.len().min(400)]).to_string();
                    format!(
                        "unrecognised error response (HTTP {status}; {}): {text}",
                        error_chain(err)
                    )
                }
            }
        }
        SdkError::TimeoutError(_) => "request timed out".to_string(),
        SdkError::DispatchFailure(f) => {
            let kind = if f.is_io() {
                "connection failed"
            } else if f.is_timeout() {
                "connection timed out"
            } else {
                "request could not be sent"
            };
            let detail = std::error::Error::source(err)
                .map(|s| format!(": {}", error_chain(s)))
                .unwrap_or_default();
            format!("{kind}{detail}")
        }
        other => error_chain(other),
    }
}

/// `error: cause: cause` on one line.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            max_total: Duration::from_secs(1),
        }
    }

    #[tokio::test]
    async fn retries_only_what_it_is_told_and_stops_at_the_attempt_cap() {
        let calls = AtomicUsize::new(0);
        let retried = AtomicUsize::new(0);
        let result: Result<(), &str> = fast()
            .run(
                || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err("throttled")
                },
                |e| *e == "throttled",
                |_, _| {
                    retried.fetch_add(1, Ordering::SeqCst);
                },
            )
            .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert_eq!(retried.load(Ordering::SeqCst), 3);

        calls.store(0, Ordering::SeqCst);
        let result: Result<(), &str> = fast()
            .run(
                || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err("bad request")
                },
                |e| *e == "throttled",
                |_, _| {},
            )
            .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "fatal errors fail fast");
    }

    #[tokio::test]
    async fn succeeds_after_transient_failures() {
        let calls = AtomicUsize::new(0);
        let result = fast()
            .run(
                || async {
                    if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                        Err("throttled")
                    } else {
                        Ok(7)
                    }
                },
                |_| true,
                |_, _| {},
            )
            .await;
        assert_eq!(result, Ok(7));
    }

    #[test]
    fn throttling_codes() {
        assert!(is_throttling_code(Some(
            "ProvisionedThroughputExceededException"
        )));
        assert!(is_throttling_code(Some("SlowDown")));
        assert!(!is_throttling_code(Some("ValidationException")));
        assert!(!is_throttling_code(None));
    }
}
