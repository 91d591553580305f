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
}
