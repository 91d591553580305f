//! The pipeline's phases, one module per command: each usable on its own (AWS Batch runs one per
//! job) or chained by [`run`]. A phase takes plain settings, does its work through the layers
//! below, and returns what happened — or an [`Error`] that says whether to retry and which
//! runbook command fixes it. Nothing here writes SQL or prints.

pub mod drift;
pub mod estimate;
pub mod export;
pub mod follow;
pub mod gc;
pub mod increment;
pub mod infer_schema;
pub mod plan;
pub mod prepare;
pub mod replace;
pub mod run;
pub mod segment;
pub mod status;
pub mod upload;
pub mod verify;

use std::sync::Arc;

use crate::aws::AwsConfig;
use crate::error::Error;
use crate::retry::RetryPolicy;
use crate::source::DynamoDb;
use crate::staging::commands::Runbook;
use crate::staging::{Layout, Staging};
use crate::stop::Stop;
use crate::storage::s3::S3Store;
use crate::storage::Store;

/// Where the staging area is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagingConfig {
    /// `None` when not given; phases that need it say so.
    pub bucket: Option<String>,
    pub prefix: String,
}

/// The connections a phase may use, built once the settings are checked.
#[derive(Clone)]
pub struct Context {
    pub dynamodb: DynamoDb,
    staging: Option<Staging>,
    pub retry: RetryPolicy,
    /// Asked for by SIGTERM / SIGINT: phases that can stop cleanly watch it.
    pub stop: Stop,
    /// The S3 client, for an export in another bucket than the staging area's.
    s3: Option<(aws_sdk_s3::Client, crate::aws::Endpoint)>,
    /// The DynamoDB Streams client, for `follow`.
    pub streams: Option<aws_sdk_dynamodbstreams::Client>,
}

impl Context {
    /// Loads the SDK configuration (credentials checked) and builds the clients; no request is
    /// sent to DynamoDB or S3 yet.
    pub async fn connect(
        aws: &AwsConfig,
        staging: &StagingConfig,
        retry: RetryPolicy,
    ) -> Result<Context, Error> {
        let sdk = crate::aws::load(aws).await?;
        let dynamodb = DynamoDb {
            client: crate::aws::dynamodb(&sdk, aws),
            endpoint: crate::aws::dynamodb_endpoint(&sdk, aws),
        };
        let s3 = (
            crate::aws::s3(&sdk, aws),
            crate::aws::s3_endpoint(&sdk, aws),
        );
        let staging = staging.bucket.as_deref().map(|bucket| {
            let store = S3Store::new(s3.0.clone(), bucket, s3.1.clone(), retry);
            Staging::new(Arc::new(store), Layout::new(&staging.prefix))
        });
        Ok(Context {
            dynamodb,
            staging,
            retry,
            stop: Stop::default(),
            s3: Some(s3),
            streams: Some(crate::aws::dynamodb_streams(&sdk, aws)),
        })
    }

    /// A context over a given staging area (tests use an in-memory store).
    pub fn with_staging(dynamodb: DynamoDb, staging: Staging, retry: RetryPolicy) -> Context {
        Context {
            dynamodb,
            staging: Some(staging),
            retry,
            stop: Stop::default(),
            s3: None,
            streams: None,
        }
    }

    /// The store of `bucket`, where an export is: the staging area's own store for its bucket.
    pub fn store_of(&self, bucket: &str) -> Result<Store, Error> {
        if let Some(s) = self.staging.as_ref().filter(|s| s.store.bucket() == bucket) {
            return Ok(s.store.clone());
        }
        let (client, endpoint) = self.s3.clone().ok_or_else(|| {
            Error::fatal(format!(
                "bucket {bucket} cannot be reached from here: only the staging bucket can"
            ))
        })?;
        Ok(Arc::new(S3Store::new(client, bucket, endpoint, self.retry)))
    }

    /// The staging area, or the error that says how to name it.
    pub fn staging(&self) -> Result<&Staging, Error> {
        self.staging
            .as_ref()
            .ok_or_else(|| Error::fatal("no staging bucket: pass --bucket or set ETL_BUCKET"))
    }

    /// The runbook for commands about `run_id` (and the warehouse target, when known).
    pub fn runbook(&self, run_id: &str, target: Option<&str>) -> Runbook {
        let (bucket, prefix) = match &self.staging {
            Some(s) => (s.store.bucket().to_string(), s.layout.prefix().to_string()),
            None => (
                String::new(),
                crate::staging::layout::DEFAULT_PREFIX.to_string(),
            ),
        };
        Runbook {
            run_id: run_id.to_string(),
            target: target.map(str::to_string),
            bucket,
            prefix,
        }
    }
}
