//! Building the AWS SDK clients from a plain configuration: region, endpoint overrides for local
//! stacks, timeouts, and the SDK's own retries switched off because `retry` is the one retry
//! layer. Credentials are resolved once, up front, so missing credentials fail in a second with
//! what to set instead of surfacing as a retried failure of the first call.

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::ProvideCredentials;
use std::fmt;
use std::time::Duration;

use crate::error::{Class, Classify};

/// Whether S3 requests carry CRC checksums. Some S3-compatible stores reject the newer checksum
/// headers; `WhenRequired` sends them only where the API demands one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum S3Checksums {
    #[default]
    WhenSupported,
    WhenRequired,
}

/// Where and how to reach AWS (or local stand-ins).
#[derive(Debug, Clone, Default)]
pub struct AwsConfig {
    /// Else the SDK's usual sources: AWS_REGION, the profile.
    pub region: Option<String>,
    /// e.g. http://127.0.0.1:8000 for DynamoDB Local.
    pub dynamodb_endpoint: Option<String>,
    /// For S3-compatible stores, e.g. http://127.0.0.1:5000.
    pub s3_endpoint: Option<String>,
    /// Path-style S3 addressing; default: on when `s3_endpoint` is set.
    pub s3_path_style: Option<bool>,
    pub s3_checksums: S3Checksums,
    /// For both Redshift APIs that issue temporary credentials (provisioned and Serverless),
    /// e.g. a local stand-in.
    pub redshift_api_endpoint: Option<String>,
}

/// Where a service is reached, for messages: the endpoint and the flag that sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub service: &'static str,
    /// The endpoint override, if any.
    pub url: Option<String>,
    /// The region the SDK uses.
    pub region: String,
    /// The flag that sets the endpoint.
    pub flag: &'static str,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.url {
            Some(url) => write!(f, "{} at {url} (set by {})", self.service, self.flag),
            None => write!(
                f,
                "{} of AWS region {} (pass {} for another endpoint)",
                self.service, self.region, self.flag
            ),
        }
    }
}

/// Why the SDK cannot be configured.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error("no AWS region configured; pass --region, or set ETL_REGION or AWS_REGION")]
    NoRegion,
    #[error("no AWS credentials found ({detail}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE naming a profile in ~/.aws/config, or run where an instance, task or web-identity role provides them")]
    NoCredentials { detail: String },
    #[error("the AWS credential providers did not answer within {seconds} s; run the same command again, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)")]
    CredentialsTimedOut { seconds: u64 },
}

impl Classify for AwsError {
    fn class(&self) -> Class {
        match self {
            AwsError::NoRegion | AwsError::NoCredentials { .. } => Class::Fatal,
            AwsError::CredentialsTimedOut { .. } => Class::Retry,
        }
    }
}

/// How long the credential providers may take (an instance role's metadata service included).
const CREDENTIALS_TIMEOUT: Duration = Duration::from_secs(20);

/// The SDK configuration shared by all clients, with credentials checked.
pub async fn load(config: &AwsConfig) -> Result<SdkConfig, AwsError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .read_timeout(Duration::from_secs(120))
                .operation_attempt_timeout(Duration::from_secs(300))
                .build(),
        );
    if let Some(region) = &config.region {
        loader = loader.region(Region::new(region.clone()));
    }
    let sdk = loader.load().await;
    if sdk.region().is_none() {
        return Err(AwsError::NoRegion);
    }
    check_credentials(&sdk).await?;
    Ok(sdk)
}

/// Asks the credential chain once; the SDK caches what it finds for the clients.
async fn check_credentials(sdk: &SdkConfig) -> Result<(), AwsError> {
    let Some(provider) = sdk.credentials_provider() else {
        return Err(AwsError::NoCredentials {
            detail: "no credential provider is configured".into(),
        });
    };
    match tokio::time::timeout(CREDENTIALS_TIMEOUT, provider.provide_credentials()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(CredentialsError::ProviderTimedOut(_))) | Err(_) => {
            Err(AwsError::CredentialsTimedOut {
                seconds: CREDENTIALS_TIMEOUT.as_secs(),
            })
        }
        // Every provider of the chain was asked and none had credentials; the last one's
        // complaint (often the instance metadata service's) is the detail.
        Ok(Err(e)) => Err(AwsError::NoCredentials {
            detail: match e {
                CredentialsError::CredentialsNotLoaded(_) => {
                    "no provider in the chain had any".to_string()
                }
                other => crate::retry::error_chain(&other),
            },
        }),
    }
}

fn region_of(sdk: &SdkConfig) -> String {
    sdk.region().map(|r| r.to_string()).unwrap_or_default()
}

/// The DynamoDB endpoint in use, for messages.
pub fn dynamodb_endpoint(sdk: &SdkConfig, config: &AwsConfig) -> Endpoint {
    Endpoint {
        service: "DynamoDB",
        url: config.dynamodb_endpoint.clone(),
        region: region_of(sdk),
        flag: "--dynamodb-endpoint / ETL_DYNAMODB_ENDPOINT",
    }
}

/// The S3 endpoint in use, for messages.
pub fn s3_endpoint(sdk: &SdkConfig, config: &AwsConfig) -> Endpoint {
    Endpoint {
        service: "S3",
        url: config.s3_endpoint.clone(),
        region: region_of(sdk),
        flag: "--s3-endpoint / ETL_S3_ENDPOINT",
    }
}

/// The endpoint of the Redshift APIs in use, for messages.
pub fn redshift_api_endpoint(sdk: &SdkConfig, config: &AwsConfig) -> Endpoint {
    Endpoint {
        service: "the Redshift API",
        url: config.redshift_api_endpoint.clone(),
        region: region_of(sdk),
        flag: "--redshift-api-endpoint / ETL_REDSHIFT_API_ENDPOINT",
    }
}

/// The Redshift API (provisioned clusters), for temporary credentials.
pub fn redshift(sdk: &SdkConfig, config: &AwsConfig) -> aws_sdk_redshift::Client {
    let mut builder = aws_sdk_redshift::config::Builder::from(sdk);
    if let Some(url) = &config.redshift_api_endpoint {
        builder = builder.endpoint_url(url);
    }
    aws_sdk_redshift::Client::from_conf(builder.build())
}

/// The Redshift Serverless API, for temporary credentials.
pub fn redshift_serverless(
    sdk: &SdkConfig,
    config: &AwsConfig,
) -> aws_sdk_redshiftserverless::Client {
    let mut builder = aws_sdk_redshiftserverless::config::Builder::from(sdk);
    if let Some(url) = &config.redshift_api_endpoint {
        builder = builder.endpoint_url(url);
    }
    aws_sdk_redshiftserverless::Client::from_conf(builder.build())
}

pub fn dynamodb(sdk: &SdkConfig, config: &AwsConfig) -> aws_sdk_dynamodb::Client {
    let mut builder = aws_sdk_dynamodb::config::Builder::from(sdk);
    if let Some(url) = &config.dynamodb_endpoint {
        builder = builder.endpoint_url(url);
    }
    aws_sdk_dynamodb::Client::from_conf(builder.build())
}

/// DynamoDB Streams, at the DynamoDB endpoint override when one is set (DynamoDB Local serves
/// both APIs on one endpoint).
pub fn dynamodb_streams(sdk: &SdkConfig, config: &AwsConfig) -> aws_sdk_dynamodbstreams::Client {
    let mut builder = aws_sdk_dynamodbstreams::config::Builder::from(sdk);
    if let Some(url) = &config.dynamodb_endpoint {
        builder = builder.endpoint_url(url);
    }
    aws_sdk_dynamodbstreams::Client::from_conf(builder.build())
}

pub fn s3(sdk: &SdkConfig, config: &AwsConfig) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
    let mut builder = aws_sdk_s3::config::Builder::from(sdk);
    if let Some(url) = &config.s3_endpoint {
        builder = builder.endpoint_url(url);
    }
    builder =
        builder.force_path_style(config.s3_path_style.unwrap_or(config.s3_endpoint.is_some()));
    builder = match config.s3_checksums {
        S3Checksums::WhenSupported => builder
            .request_checksum_calculation(RequestChecksumCalculation::WhenSupported)
            .response_checksum_validation(ResponseChecksumValidation::WhenSupported),
        S3Checksums::WhenRequired => builder
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired),
    };
    aws_sdk_s3::Client::from_conf(builder.build())
}
