//! Building the AWS SDK clients: region, endpoint overrides for local stacks, timeouts, and the
//! SDK's own retries switched off because `retry` is the one retry layer.

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use std::time::Duration;

/// Whether S3 requests carry CRC checksums. Some S3-compatible stores reject the newer checksum
/// headers; `WhenRequired` sends them only where the API demands one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum S3Checksums {
    #[default]
    WhenSupported,
    WhenRequired,
}

/// Where and how to reach AWS (or local stand-ins).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AwsArgs {
    /// AWS region (else the SDK's usual sources: AWS_REGION, profile).
    #[arg(long, env = "ETL_REGION", global = true)]
    pub region: Option<String>,
    /// DynamoDB endpoint URL, e.g. http://127.0.0.1:8000 for DynamoDB Local.
    #[arg(long, env = "ETL_DYNAMODB_ENDPOINT", global = true)]
    pub dynamodb_endpoint: Option<String>,
    /// S3 endpoint URL for S3-compatible stores, e.g. http://127.0.0.1:5000.
    #[arg(long, env = "ETL_S3_ENDPOINT", global = true)]
    pub s3_endpoint: Option<String>,
    /// Path-style S3 addressing (bucket in the path). Default: on when --s3-endpoint is set.
    #[arg(long, env = "ETL_S3_PATH_STYLE", global = true)]
    pub s3_path_style: Option<bool>,
    /// When to send S3 request checksums.
    #[arg(
        long,
        env = "ETL_S3_CHECKSUMS",
        value_enum,
        default_value_t,
        global = true
    )]
    pub s3_checksums: S3Checksums,
}

/// The SDK configuration shared by all clients, or an error saying what to set.
pub async fn load(args: &AwsArgs) -> anyhow::Result<SdkConfig> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .read_timeout(Duration::from_secs(120))
                .operation_attempt_timeout(Duration::from_secs(300))
                .build(),
        );
    if let Some(region) = &args.region {
        loader = loader.region(Region::new(region.clone()));
    }
    let config = loader.load().await;
    if config.region().is_none() {
        anyhow::bail!("no AWS region configured; pass --region, or set ETL_REGION or AWS_REGION");
    }
    Ok(config)
}

pub fn dynamodb(config: &SdkConfig, args: &AwsArgs) -> aws_sdk_dynamodb::Client {
    let mut builder = aws_sdk_dynamodb::config::Builder::from(config);
    if let Some(url) = &args.dynamodb_endpoint {
        builder = builder.endpoint_url(url);
    }
    aws_sdk_dynamodb::Client::from_conf(builder.build())
}

pub fn s3(config: &SdkConfig, args: &AwsArgs) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
    let mut builder = aws_sdk_s3::config::Builder::from(config);
    if let Some(url) = &args.s3_endpoint {
        builder = builder.endpoint_url(url);
    }
    builder = builder.force_path_style(args.s3_path_style.unwrap_or(args.s3_endpoint.is_some()));
    builder = match args.s3_checksums {
        S3Checksums::WhenSupported => builder
            .request_checksum_calculation(RequestChecksumCalculation::WhenSupported)
            .response_checksum_validation(ResponseChecksumValidation::WhenSupported),
        S3Checksums::WhenRequired => builder
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired),
    };
    aws_sdk_s3::Client::from_conf(builder.build())
}
