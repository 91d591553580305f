//! What the helper binaries share: where DynamoDB is.

use dynamo_etl::aws::AwsConfig;

/// Where to reach DynamoDB (normally DynamoDB Local).
#[derive(Debug, Clone, clap::Args)]
pub struct Endpoints {
    /// AWS region (else AWS_REGION).
    #[arg(long, env = "ETL_REGION")]
    pub region: Option<String>,
    /// DynamoDB endpoint URL, e.g. http://127.0.0.1:8000 for DynamoDB Local.
    #[arg(long, env = "ETL_DYNAMODB_ENDPOINT")]
    pub dynamodb_endpoint: Option<String>,
    /// S3 endpoint URL, e.g. http://127.0.0.1:5000 for moto (only what writes to S3 uses it).
    #[arg(long, env = "ETL_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
}

impl Endpoints {
    /// A DynamoDB client with the product's client settings (timeouts, SDK retries off).
    pub async fn dynamodb(&self) -> anyhow::Result<aws_sdk_dynamodb::Client> {
        let config = AwsConfig {
            region: self.region.clone(),
            dynamodb_endpoint: self.dynamodb_endpoint.clone(),
            ..AwsConfig::default()
        };
        let sdk = dynamo_etl::aws::load(&config).await?;
        Ok(dynamo_etl::aws::dynamodb(&sdk, &config))
    }

    /// Bucket `bucket` through the product's S3 store (its retries and client settings).
    #[allow(dead_code)] // not every helper binary writes to S3
    pub async fn store(&self, bucket: &str) -> anyhow::Result<dynamo_etl::storage::Store> {
        let config = AwsConfig {
            region: self.region.clone(),
            s3_endpoint: self.s3_endpoint.clone(),
            ..AwsConfig::default()
        };
        let sdk = dynamo_etl::aws::load(&config).await?;
        Ok(std::sync::Arc::new(dynamo_etl::storage::s3::S3Store::new(
            dynamo_etl::aws::s3(&sdk, &config),
            bucket,
            dynamo_etl::aws::s3_endpoint(&sdk, &config),
            dynamo_etl::retry::RetryPolicy::default(),
        )))
    }
}
