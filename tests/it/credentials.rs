//! Redshift sessions with temporary IAM credentials. The stack's moto (5.2.5) implements
//! neither GetClusterCredentialsWithIAM nor redshift-serverless GetCredentials (both answer
//! HTTP 500), so the APIs are played by a local stand-in (support::redshift_api) and the
//! database by the stack's PostgreSQL: a session really logs in as the user the API issued.
//! Through the binary: denied access and unknown clusters or workgroups exit 2 naming the IAM
//! action, throttling is retried by the one retry policy and then exits 1, a host that names
//! no cluster or workgroup is a configuration error, and the password never shows.

use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use dynamo_etl::aws::AwsConfig;
use dynamo_etl::retry::RetryPolicy;
use dynamo_etl::warehouse::redshift::credentials::{Choice, IamCredentials, IamSettings};
use dynamo_etl::warehouse::redshift::{Credentials, Options, Redshift};
use dynamo_etl::warehouse::{DialectOptions, Warehouse, WarehouseConfig, WarehouseUrl};

use crate::support::redshift_api::{FakeRedshiftApi, Reply, Script};
use crate::support::{self, show, Stack};

/// The stack's PostgreSQL as a `redshift://` URL without a login, with `params`.
fn redshift_url(stack: &Stack, params: &str) -> String {
    let pg = url::Url::parse(&stack.warehouse).unwrap();
    format!(
        "redshift://{}:{}{}?{params}",
        pg.host_str().unwrap(),
        pg.port().unwrap(),
        pg.path()
    )
}

fn database(stack: &Stack) -> String {
    url::Url::parse(&stack.warehouse).unwrap().path()[1..].to_string()
}

/// A login role named like the users the APIs issue (`IAM:…`). It is left behind: the name is
/// unique, and the stack's PostgreSQL is thrown away with the stack.
async fn iam_role(stack: &Stack) -> String {
    use sqlx::Connection;
    let name = format!("IAM:{}", support::unique("etl"));
    let mut conn = sqlx::PgConnection::connect(&stack.warehouse).await.unwrap();
    sqlx::raw_sql(&format!("CREATE ROLE \"{name}\" LOGIN"))
        .execute(&mut conn)
        .await
        .unwrap();
    name
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_total: Duration::from_secs(2),
    }
}

/// The Redshift dialect on the stack's PostgreSQL, logging in with IAM credentials from `api`.
fn redshift(stack: &Stack, params: &str, api: &FakeRedshiftApi) -> Redshift {
    let url = WarehouseUrl::parse(&redshift_url(stack, params)).unwrap();
    let choice = Choice {
        seconds: 900,
        ..Choice::default()
    };
    let settings = IamSettings::from_url(&url, &choice).unwrap().unwrap();
    let aws = AwsConfig {
        redshift_api_endpoint: Some(api.url.clone()),
        ..AwsConfig::default()
    };
    let options = Options {
        credentials: Credentials::Iam(Arc::new(IamCredentials::new(settings, aws, fast()))),
        ..Options::default()
    };
    let config = WarehouseConfig {
        url,
        target: "unused".into(),
        grantees: Vec::new(),
        lock_timeout: Duration::from_secs(5),
        post_swap_sql: None,
        analyze: true,
        verify: true,
        options: DialectOptions::Redshift(options.clone()),
    };
    Redshift::new(config, options)
}

async fn current_user(redshift: &Redshift) -> String {
    let mut session = redshift.session().await.unwrap();
    session
        .query_one("SELECT current_user::text", "asking who this is")
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_log_in_as_the_user_getclustercredentialswithiam_issues_and_share_it() {
    support::set_local_aws_env();
    let stack = support::stack();
    let user = iam_role(&stack).await;
    let (u, password) = (user.clone(), support::unique("Pw9"));
    let api = FakeRedshiftApi::start(Arc::new(move |_, _| {
        Reply::cluster_credentials(&u, &password, Duration::from_secs(900))
    }))
    .await;
    let redshift = redshift(&stack, "credentials=iam&cluster_id=etl-test", &api);
    assert_eq!(current_user(&redshift).await, user);
    assert_eq!(current_user(&redshift).await, user);
    let requests = api.requests();
    assert_eq!(
        requests.len(),
        1,
        "the second session reuses the credentials"
    );
    let form = requests[0].form();
    assert_eq!(form["Action"], "GetClusterCredentialsWithIAM");
    assert_eq!(form["ClusterIdentifier"], "etl-test");
    assert_eq!(form["DbName"], database(&stack));
    assert_eq!(form["DurationSeconds"], "900");
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_log_in_as_the_user_serverless_getcredentials_issues() {
    support::set_local_aws_env();
    let stack = support::stack();
    let user = iam_role(&stack).await;
    let (u, password) = (user.clone(), support::unique("Pw9"));
    let api = FakeRedshiftApi::start(Arc::new(move |_, _| {
        Reply::workgroup_credentials(&u, &password, Duration::from_secs(900))
    }))
    .await;
    let redshift = redshift(&stack, "credentials=iam&workgroup=etl-wg", &api);
    assert_eq!(current_user(&redshift).await, user);
    let requests = api.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].header("x-amz-target"),
        Some("RedshiftServerless.GetCredentials")
    );
    let body = requests[0].json();
    assert_eq!(body["workgroupName"], "etl-wg");
    assert_eq!(body["dbName"], database(&stack).as_str());
    assert_eq!(body["durationSeconds"], 900);
}

/// Throttling and a 5xx are retried with the retry policy; then the session opens.
#[tokio::test(flavor = "multi_thread")]
async fn throttling_and_5xx_are_retried_before_the_session_opens() {
    support::set_local_aws_env();
    let stack = support::stack();
    let user = iam_role(&stack).await;
    let u = user.clone();
    let api = FakeRedshiftApi::start(Arc::new(move |n, _| match n {
        0 => Reply::query_error(400, "Throttling"),
        1 => Reply::query_error(503, "ServiceUnavailable"),
        _ => Reply::cluster_credentials(&u, "Pw9-x", Duration::from_secs(900)),
    }))
    .await;
    let redshift = redshift(&stack, "credentials=iam&cluster_id=etl-test", &api);
    assert_eq!(current_user(&redshift).await, user);
    assert_eq!(api.requests().len(), 3);
}

/// Runs `dynamo-etl rollback` (it needs nothing but the warehouse) with IAM credentials from
/// `api`, quick retries and `vars`.
async fn rollback(api: &FakeRedshiftApi, url: String, vars: &[(&str, &str)]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_dynamo-etl"));
    cmd.args(["rollback", "--target", "iam_test"])
        .env_remove("RUST_BACKTRACE");
    for (k, v) in support::local_aws_env() {
        cmd.env(k, v);
    }
    for (k, v) in [
        ("ETL_WAREHOUSE_URL", url.as_str()),
        ("ETL_REDSHIFT_IAM_ROLE", "default"),
        ("ETL_REDSHIFT_API_ENDPOINT", api.url.as_str()),
        ("ETL_REDSHIFT_CREDENTIALS", "iam"),
        ("ETL_LOG_FORMAT", "json"),
        ("ETL_RETRY_ATTEMPTS", "3"),
        ("ETL_RETRY_MIN_DELAY_MS", "1"),
        ("ETL_RETRY_MAX_SECONDS", "2"),
    ]
    .iter()
    .chain(vars)
    {
        cmd.env(k, v);
    }
    tokio::task::spawn_blocking(move || cmd.output().expect("the binary runs"))
        .await
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn replying(reply: Reply) -> Script {
    Arc::new(move |_, _| reply.clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn denied_access_and_unknown_targets_exit_2_naming_the_iam_action() {
    let stack = support::stack();
    let url = redshift_url(&stack, "");

    let api = FakeRedshiftApi::start(replying(Reply::query_error(403, "AccessDenied"))).await;
    let out = rollback(
        &api,
        url.clone(),
        &[("ETL_REDSHIFT_CLUSTER_ID", "prod-etl")],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let text = stderr(&out);
    for part in [
        "Redshift cluster prod-etl",
        "redshift:GetClusterCredentialsWithIAM",
        &format!("dbname:prod-etl/{}", database(&stack)),
    ] {
        assert!(text.contains(part), "{part}: {}", show(&out));
    }
    assert_eq!(api.requests().len(), 1, "denied access is not retried");

    let api = FakeRedshiftApi::start(replying(Reply::query_error(404, "ClusterNotFound"))).await;
    let out = rollback(&api, url.clone(), &[("ETL_REDSHIFT_CLUSTER_ID", "gone")]).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        stderr(&out).contains("Redshift cluster gone was not found"),
        "{}",
        show(&out)
    );
    assert!(
        stderr(&out).contains("--redshift-cluster-id"),
        "{}",
        show(&out)
    );

    let api = FakeRedshiftApi::start(replying(Reply::json_error(
        400,
        "ResourceNotFoundException",
    )))
    .await;
    let out = rollback(&api, url, &[("ETL_REDSHIFT_WORKGROUP", "etl-wg")]).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let text = stderr(&out);
    for part in [
        "Redshift Serverless workgroup etl-wg",
        "redshift-serverless:GetCredentials",
        "--redshift-workgroup",
    ] {
        assert!(text.contains(part), "{part}: {}", show(&out));
    }
    assert_eq!(api.requests().len(), 1);
}

/// Throttling that does not stop is retried by the retry policy only (three attempts here,
/// not three per swap attempt), then the command asks to be run again.
#[tokio::test(flavor = "multi_thread")]
async fn throttling_that_does_not_stop_exits_1_after_the_policys_attempts() {
    let stack = support::stack();
    let api = FakeRedshiftApi::start(replying(Reply::query_error(400, "Throttling"))).await;
    let out = rollback(&api, redshift_url(&stack, "cluster_id=prod-etl"), &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains("Throttling"), "{}", show(&out));
    assert_eq!(api.requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_that_names_no_cluster_or_workgroup_is_a_configuration_error() {
    let api = FakeRedshiftApi::start(replying(Reply::query_error(500, "InternalError"))).await;
    let out = rollback(
        &api,
        "redshift://warehouse.example.com:5439/dev".into(),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let text = stderr(&out);
    assert!(text.contains("--redshift-cluster-id"), "{}", show(&out));
    assert!(text.contains("--redshift-workgroup"), "{}", show(&out));
    assert!(
        api.requests().is_empty(),
        "nothing is asked before the flags are right"
    );
}

/// Credentials were issued (and logged), the login failed: no message shows the password.
#[tokio::test(flavor = "multi_thread")]
async fn the_temporary_password_never_shows() {
    let stack = support::stack();
    let password = support::unique("Pw9secret");
    let p = password.clone();
    let api = FakeRedshiftApi::start(Arc::new(move |_, _| {
        Reply::cluster_credentials("IAM:no-such-user", &p, Duration::from_secs(900))
    }))
    .await;
    let out = rollback(
        &api,
        redshift_url(&stack, "cluster_id=prod-etl"),
        &[("ETL_LOG", "debug")],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let all = format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
    assert!(all.contains("IAM:no-such-user"), "{}", show(&out));
    assert!(!all.contains(&password), "{}", show(&out));
    assert_eq!(api.requests().len(), 1);
}
