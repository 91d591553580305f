//! The storage conformance suite (`testkit::storage::conformance`) against the S3 store on the
//! local S3-compatible server: the same assertions the in-memory store passes in its unit test,
//! so what the unit tests built on the in-memory store decide holds on S3 too.

use crate::support::TestEnv;
use dynamo_etl::retry::RetryPolicy;
use dynamo_etl::storage::s3::S3Store;

#[tokio::test(flavor = "multi_thread")]
async fn the_s3_store_keeps_the_rules_the_memory_store_is_tested_against() {
    let env = TestEnv::new("storage").await;
    crate::support::set_local_aws_env();
    let config = dynamo_etl::aws::AwsConfig {
        s3_endpoint: Some(env.stack.s3.clone()),
        ..Default::default()
    };
    let sdk = dynamo_etl::aws::load(&config).await.unwrap();
    // Pages of 7 keys and deletes of 10, so the 25 keys of the paging check take several of
    // each.
    let store = S3Store::new(
        dynamo_etl::aws::s3(&sdk, &config),
        &env.bucket,
        dynamo_etl::aws::s3_endpoint(&sdk, &config),
        // The server answers a completion of an aborted upload with a 5xx, not S3's 404
        // NoSuchUpload, and a 5xx is retried: keep those retries short.
        RetryPolicy {
            max_attempts: 2,
            min_delay: std::time::Duration::from_millis(10),
            ..RetryPolicy::default()
        },
    )
    .with_batch_sizes(7, 10);
    dynamo_etl::testkit::storage::conformance(&store, "conformance/").await;
}
