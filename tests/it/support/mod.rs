//! Shared test support: the local stack's endpoints, unique names, running the real binary, and
//! reading back what phase 1 wrote. Tests use real services; when the stack is not running they
//! fail and say how to start it.

#![allow(dead_code)]

pub mod fault_proxy;
pub mod redshift_api;

use aws_sdk_dynamodb::Client as DynamoClient;
use aws_sdk_s3::Client as S3Client;
use dynamo_etl::aws::AwsConfig;
use dynamo_etl::retry::RetryPolicy;
use dynamo_etl::schema::DataSchema;
use dynamo_etl::staging::manifest::{DriftEntry, DriftReason, SegmentManifest};
use dynamo_etl::staging::{Layout, Staging};
use dynamo_etl::storage::s3::S3Store;
use dynamo_etl::storage::Store;
use dynamo_etl::testkit::decode::decode_row;
use dynamo_etl::value::Item;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

pub const STACK_HINT: &str =
    "the local stack is not running or not configured: start it with `jobs/stack-up` \
(it writes .stack/env, which the tests read), or run the whole suite with `jobs/test`";

/// Endpoints of the local services.
#[derive(Debug, Clone)]
pub struct Stack {
    pub dynamodb: String,
    pub s3: String,
    pub warehouse: String,
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Reads the endpoints from the environment, falling back to `.stack/env`.
pub fn stack() -> Stack {
    let mut vars: HashMap<String, String> = HashMap::new();
    let env_file = std::env::var("ETL_STACK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join(".stack"))
        .join("env");
    if let Ok(text) = std::fs::read_to_string(&env_file) {
        for line in text.lines() {
            if let Some((k, v)) = line.trim().trim_start_matches("export ").split_once('=') {
                vars.insert(k.to_string(), v.trim_matches('"').to_string());
            }
        }
    }
    let get = |name: &str| -> String {
        std::env::var(name)
            .ok()
            .or_else(|| vars.get(name).cloned())
            .unwrap_or_else(|| panic!("{name} is not set; {STACK_HINT}"))
    };
    let stack = Stack {
        dynamodb: get("ETL_DYNAMODB_ENDPOINT"),
        s3: get("ETL_S3_ENDPOINT"),
        warehouse: get("ETL_WAREHOUSE_URL"),
    };
    for (name, url) in [
        ("DynamoDB Local", &stack.dynamodb),
        ("S3 server", &stack.s3),
        ("PostgreSQL", &stack.warehouse),
    ] {
        let addr = url
            .rsplit('@')
            .next()
            .unwrap()
            .trim_start_matches("http://")
            .trim_start_matches("postgres://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        if std::net::TcpStream::connect_timeout(
            &addr
                .parse()
                .unwrap_or_else(|_| panic!("bad address {addr} for {name}")),
            std::time::Duration::from_secs(2),
        )
        .is_err()
        {
            panic!("{name} does not answer at {addr}; {STACK_HINT}");
        }
    }
    stack
}

/// Credentials and region for the local services (they accept any).
pub fn local_aws_env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
}

pub fn set_local_aws_env() {
    for (k, v) in local_aws_env() {
        // Tests run in threads; these values are the same for all of them.
        unsafe { std::env::set_var(k, v) };
    }
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000,
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// Clients and a fresh bucket and table name for one test.
pub struct TestEnv {
    pub stack: Stack,
    pub dynamodb: DynamoClient,
    pub s3: S3Client,
    pub bucket: String,
    pub table: String,
    /// The warehouse schema this test's runs are swapped into.
    pub target: String,
    pub schemas_dir: tempfile::TempDir,
}

/// The first of `items` whose partition key starts with `prefix`.
pub fn find<'a>(items: &'a [dynamo_etl::value::Item], prefix: &str) -> &'a dynamo_etl::value::Item {
    items
        .iter()
        .find(|i| i["pk"].as_s().unwrap().starts_with(prefix))
        .unwrap_or_else(|| panic!("an item whose pk starts with {prefix}"))
}

impl TestEnv {
    pub async fn new(name: &str) -> TestEnv {
        set_local_aws_env();
        let stack = stack();
        let args = AwsConfig {
            dynamodb_endpoint: Some(stack.dynamodb.clone()),
            s3_endpoint: Some(stack.s3.clone()),
            ..AwsConfig::default()
        };
        let sdk = dynamo_etl::aws::load(&args).await.unwrap();
        let dynamodb = dynamo_etl::aws::dynamodb(&sdk, &args);
        let s3 = dynamo_etl::aws::s3(&sdk, &args);
        let bucket = unique(&format!("b-{name}"))
            .to_lowercase()
            .replace('_', "-");
        let bucket: String = bucket.chars().take(63).collect();
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .unwrap_or_else(|e| panic!("creating bucket {bucket}: {e:?}; {STACK_HINT}"));
        TestEnv {
            stack,
            dynamodb,
            s3,
            bucket,
            table: unique(&format!("t-{name}")),
            target: unique("w").replace('-', "_"),
            schemas_dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Environment for the binary: endpoints, bucket, schemas dir, credentials.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = local_aws_env();
        env.extend([
            ("ETL_DYNAMODB_ENDPOINT", self.stack.dynamodb.clone()),
            ("ETL_S3_ENDPOINT", self.stack.s3.clone()),
            ("ETL_WAREHOUSE_URL", self.stack.warehouse.clone()),
            ("ETL_BUCKET", self.bucket.clone()),
            (
                "ETL_SCHEMAS_DIR",
                self.schemas_dir.path().display().to_string(),
            ),
            ("ETL_LOG_FORMAT", "json".into()),
            ("ETL_TARGET", self.target.clone()),
        ]);
        env
    }

    /// The real binary with this environment, ready to run.
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_dynamo-etl"));
        cmd.args(args).env_remove("RUST_BACKTRACE");
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs the real binary with this environment plus `extra`.
    pub fn run(&self, args: &[&str], extra: &[(&str, String)]) -> Output {
        let mut cmd = self.command(args);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.output().expect("the dynamo-etl binary runs")
    }

    /// A fresh environment whose table holds `fixtures::demo_items(organizations)` and whose
    /// schemas folder holds the data-schemas inferred from them.
    pub async fn with_demo(name: &str, organizations: usize) -> TestEnv {
        let env = TestEnv::new(name).await;
        let items = dynamo_etl::testkit::fixtures::demo_items(organizations);
        env.load(items.clone()).await;
        env.write_schemas(&infer(&env.table, &items));
        env
    }

    /// Phase 1 for one segment of `run` (planning it from this env's table if needed).
    pub fn phase1(&self, run: &str, total: u32, segment: u32) -> Output {
        self.phase1_with(run, total, segment, &[])
    }

    /// [`TestEnv::phase1`] with extra environment variables (settings such as
    /// `ETL_PART_COMPRESSION`).
    pub fn phase1_with(
        &self,
        run: &str,
        total: u32,
        segment: u32,
        vars: &[(&str, String)],
    ) -> Output {
        let out = self.segment(run, total, segment, vars);
        assert!(
            out.status.success(),
            "segment {segment} of {total}, run {run}, {vars:?}: {}",
            show(&out)
        );
        out
    }

    /// Phase 1 for one segment of `run` with `vars`, whatever it exits with.
    pub fn segment(&self, run: &str, total: u32, segment: u32, vars: &[(&str, String)]) -> Output {
        let (total, segment) = (total.to_string(), segment.to_string());
        let args = [
            "segment",
            "--run-id",
            run,
            "--table",
            &self.table,
            "--total-segments",
            &total,
            "--segment",
            &segment,
        ];
        self.run(&args, vars)
    }

    /// Runs the binary and fails the test unless it exits 0.
    pub fn run_ok(&self, args: &[&str]) -> Output {
        let out = self.run(args, &[]);
        assert!(out.status.success(), "{args:?}: {}", show(&out));
        out
    }

    /// Phase 1 for every segment, prepare, phase 3 for every segment, replace.
    pub fn pipeline(&self, run: &str, total: u32) {
        for k in 0..total {
            self.phase1(run, total, k);
        }
        self.run_ok(&["prepare", "--run-id", run]);
        for k in 0..total {
            self.run_ok(&["upload", "--run-id", run, "--segment", &k.to_string()]);
        }
        self.run_ok(&["replace", "--run-id", run]);
    }

    /// A session on the test warehouse, in UTC.
    pub async fn pg(&self) -> sqlx::PgConnection {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.stack.warehouse)
            .await
            .unwrap_or_else(|e| {
                panic!("connecting to {}: {e}; {STACK_HINT}", self.stack.warehouse)
            });
        sqlx::Executor::execute(&mut conn, "SET TIME ZONE 'UTC'")
            .await
            .unwrap();
        conn
    }

    /// `SELECT count(*)` of a table.
    pub async fn count(&self, schema: &str, table: &str) -> i64 {
        let mut conn = self.pg().await;
        sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM \"{schema}\".\"{table}\""))
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("count {schema}.{table}: {e}"))
    }

    /// Rows of table `t` in schema `a` that schema `b` lacks (counted with duplicates).
    pub async fn missing_rows(&self, a: &str, b: &str, t: &str) -> i64 {
        let mut conn = self.pg().await;
        let sql = format!(
            "SELECT count(*) FROM (SELECT * FROM \"{a}\".\"{t}\" EXCEPT ALL SELECT * FROM \"{b}\".\"{t}\") d"
        );
        sqlx::query_scalar(&sql)
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Every row of `schema.table` as text fields in column order (then `_extra`), timestamps as
    /// UTC RFC 3339 with microseconds: the shape `decode_row` reads.
    pub async fn text_rows(&self, schema: &str, table: &DataSchema) -> Vec<Vec<Option<String>>> {
        use sqlx::Row;
        let mut exprs: Vec<String> = table
            .columns
            .iter()
            .map(|c| {
                let col = format!("\"{}\"", c.column);
                match c.logical_type {
                    dynamo_etl::schema::LogicalType::Timestamp => format!(
                        "to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
                    ),
                    _ => format!("{col}::text"),
                }
            })
            .collect();
        if table.has_extra_column() {
            exprs.push("\"_extra\"::text".into());
        }
        let sql = format!(
            "SELECT {} FROM \"{schema}\".\"{}\"",
            exprs.join(", "),
            table.table
        );
        let mut conn = self.pg().await;
        sqlx::query(&sql)
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| r.get::<Option<String>, _>(i))
                    .collect()
            })
            .collect()
    }

    /// The run a warehouse schema holds (its run marker), if any.
    pub async fn served_run(&self, schema: &str) -> Option<String> {
        let mut conn = self.pg().await;
        sqlx::query_scalar::<_, String>(&format!(
            "SELECT run_id FROM \"{schema}\".\"_dynamo_etl_run\""
        ))
        .fetch_optional(&mut conn)
        .await
        .ok()
        .flatten()
    }

    /// Runs the binary with `endpoint_var` pointing at a proxy in front of `upstream` that stalls
    /// every request `stall` picks, and kills the process as soon as one stalled: a job dying in
    /// the middle of its work.
    pub async fn kill_when_stalled(
        &self,
        args: &[&str],
        endpoint_var: &str,
        upstream: &str,
        stall: impl Fn(&fault_proxy::RequestHead) -> bool + Send + Sync + 'static,
    ) {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stalled = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stalled.clone();
        let proxy = fault_proxy::FaultProxy::start(
            upstream,
            std::sync::Arc::new(move |head| {
                let hit = stall(head);
                if hit {
                    flag.store(true, Ordering::SeqCst);
                }
                hit.then(fault_proxy::Injected::hang)
            }),
        )
        .await;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_dynamo-etl"));
        cmd.args(args).stderr(std::process::Stdio::null());
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
        cmd.env(endpoint_var, &proxy.url);
        let mut child = cmd.spawn().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !stalled.load(Ordering::SeqCst) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{args:?} ended ({status}) before reaching the stalled request");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{args:?} never reached the stalled request"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // Let it get properly stuck, then kill it.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// This test's table created in the S3-compatible server's own DynamoDB, which has the
    /// export and point-in-time recovery calls DynamoDB Local lacks; with the variable that
    /// points the binary at it.
    pub async fn table_on_moto(&self) -> (DynamoClient, [(&'static str, String); 1]) {
        let config = AwsConfig {
            dynamodb_endpoint: Some(self.stack.s3.clone()),
            ..AwsConfig::default()
        };
        let sdk = dynamo_etl::aws::load(&config).await.unwrap();
        let moto = dynamo_etl::aws::dynamodb(&sdk, &config);
        dynamo_etl::testkit::fixtures::create_table(&moto, &self.table)
            .await
            .unwrap();
        (moto, [("ETL_DYNAMODB_ENDPOINT", self.stack.s3.clone())])
    }

    /// Writes data-schemas where the binary will look for them.
    pub fn write_schemas(&self, schemas: &[DataSchema]) {
        let dir = self.schemas_dir.path().join(&self.table);
        std::fs::create_dir_all(&dir).unwrap();
        for s in schemas {
            std::fs::write(dir.join(format!("{}.json", s.table)), s.to_pretty_json()).unwrap();
        }
    }

    /// Creates the table and loads `items`.
    pub async fn load(&self, items: Vec<Item>) {
        self.load_keyed(&["pk".to_string(), "sk".to_string()], items)
            .await
    }

    /// Creates the table with these key attributes (strings) and loads `items`.
    pub async fn load_keyed(&self, keys: &[String], items: Vec<Item>) {
        dynamo_etl::testkit::fixtures::create_table_with_keys(&self.dynamodb, &self.table, keys)
            .await
            .unwrap_or_else(|e| panic!("{e:#}; {STACK_HINT}"));
        self.add(items).await;
    }

    /// Writes more items into the existing table.
    pub async fn add(&self, items: Vec<Item>) {
        dynamo_etl::testkit::fixtures::write_items(&self.dynamodb, &self.table, items, 8)
            .await
            .unwrap();
    }

    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .s3
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .unwrap();
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
            token = out.next_continuation_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        keys.sort();
        keys
    }

    /// When run `run_id`'s plan was made (`created_at` of its `run.json`): where the increments
    /// and stream tests start their windows and changes.
    pub async fn plan_time(&self, run_id: &str) -> chrono::DateTime<chrono::Utc> {
        let key = format!("dynamo-etl/runs/{run_id}/run.json");
        let bytes = self
            .get(&key)
            .await
            .unwrap_or_else(|| panic!("{key} exists"));
        let plan: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let text = plan["created_at"]
            .as_str()
            .expect("the plan has created_at");
        chrono::DateTime::parse_from_rfc3339(text)
            .expect("created_at is RFC 3339")
            .with_timezone(&chrono::Utc)
    }

    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(o) => Some(o.body.collect().await.unwrap().into_bytes().to_vec()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => None,
            Err(e) => panic!("get {key}: {e:?}"),
        }
    }

    pub async fn manifest(&self, run: &str, segment: u32) -> Option<SegmentManifest> {
        let key = format!("dynamo-etl/runs/{run}/segments/{segment}/manifest.json");
        self.get(&key)
            .await
            .map(|b| SegmentManifest::from_json(&b).unwrap_or_else(|e| panic!("{key}: {e}")))
    }

    /// The store of this test's bucket, as the binary reaches it (or through `endpoint`).
    pub async fn store_at(&self, endpoint: &str, retry: RetryPolicy) -> Store {
        s3_store(endpoint, &self.bucket, retry).await
    }

    /// This test's bucket with `prefix`, as the binary reaches it.
    pub async fn staging(&self, prefix: &str, retry: RetryPolicy) -> Staging {
        Staging::new(
            self.store_at(&self.stack.s3, retry).await,
            Layout::new(prefix),
        )
    }

    /// Every row phase 1 wrote for `run`, decoded back into items, by table; values kept in
    /// `_overflow` are put back into their items.
    pub async fn decoded_rows(
        &self,
        run: &str,
        schemas: &[DataSchema],
        total: u32,
    ) -> HashMap<String, Vec<Item>> {
        let mut out: HashMap<String, Vec<Item>> = HashMap::new();
        let mut overflow_rows = Vec::new();
        for segment in 0..total {
            let manifest = self
                .manifest(run, segment)
                .await
                .unwrap_or_else(|| panic!("segment {segment} has no manifest"));
            for (table, output) in &manifest.tables {
                let unclassified = dynamo_etl::schema::unclassified_schema(
                    &manifest.source_table,
                    &["pk".into(), "sk".into()],
                );
                let overflow = dynamo_etl::schema::overflow_schema(&manifest.source_table);
                let schema = schemas
                    .iter()
                    .chain([&unclassified, &overflow])
                    .find(|s| &s.table == table)
                    .unwrap_or_else(|| panic!("no schema for table {table}"));
                for file in &output.files {
                    let compressed = self
                        .get(&file.key)
                        .await
                        .expect("part listed in manifest exists");
                    assert_eq!(compressed.len() as u64, file.bytes, "{}", file.key);
                    let csv = dynamo_etl::testkit::decode::decompress(&file.key, &compressed)
                        .unwrap_or_else(|e| panic!("{}: {e}", file.key));
                    assert_eq!(csv.len() as u64, file.csv_bytes, "{}", file.key);
                    let rows = dynamo_etl::testkit::decode::decode_rows(&csv).unwrap();
                    assert_eq!(rows.len() as u64, file.rows, "{}", file.key);
                    if table == dynamo_etl::schema::OVERFLOW_TABLE {
                        overflow_rows.extend(rows);
                        continue;
                    }
                    for row in rows {
                        let item = decode_row(schema, &row)
                            .unwrap_or_else(|e| panic!("{}: {e}", file.key));
                        out.entry(table.clone()).or_default().push(item);
                    }
                }
            }
        }
        let keys = ["pk".to_string(), "sk".to_string()];
        let overflowed = dynamo_etl::testkit::decode::decode_overflow(&overflow_rows).unwrap();
        for ((table, key), attributes) in overflowed {
            let item = out
                .get_mut(&table)
                .and_then(|items| items.iter_mut().find(|i| key_json(i, &keys) == key))
                .unwrap_or_else(|| panic!("_overflow names {table} {key}, which has no row"));
            for (name, value) in attributes {
                assert!(
                    item.insert(name.clone(), value).is_none(),
                    "{table} {key}: {name} is both in _overflow and in the row"
                );
            }
        }
        out
    }
}

/// Whether `back`, read back from table `table`, is `source`: equal as DynamoDB values, the
/// timestamps of the table's timestamp columns as instants (which is what the warehouse keeps).
pub fn same_item(source: &Item, back: &Item, schemas: &[DataSchema], table: &str) -> bool {
    use dynamo_etl::testkit::decode::{as_instants, items_equal};
    match schemas.iter().find(|s| s.table == table) {
        Some(schema) => items_equal(&as_instants(source, schema), &as_instants(back, schema)),
        None => items_equal(source, back),
    }
}

/// An item's key as phase 1 writes it into `_overflow` and reports.
pub fn key_json(item: &Item, keys: &[String]) -> String {
    dynamo_etl::value::json::item_key(&dynamo_etl::value::ItemView::from_sdk(item), keys)
}

/// A store on `bucket` at the S3 endpoint `endpoint` (the stack's, or a fault proxy's).
pub async fn s3_store(endpoint: &str, bucket: &str, retry: RetryPolicy) -> Store {
    set_local_aws_env();
    let config = AwsConfig {
        s3_endpoint: Some(endpoint.to_string()),
        ..AwsConfig::default()
    };
    let sdk = dynamo_etl::aws::load(&config).await.unwrap();
    Arc::new(S3Store::new(
        dynamo_etl::aws::s3(&sdk, &config),
        bucket,
        dynamo_etl::aws::s3_endpoint(&sdk, &config),
        retry,
    ))
}

/// The drift entry of `attribute` for `reason` in one table's drift.
pub fn drift_entry<'d>(
    drift: &'d [DriftEntry],
    attribute: &str,
    reason: DriftReason,
) -> Option<&'d DriftEntry> {
    drift
        .iter()
        .find(|e| e.attribute == attribute && e.reason == reason)
}

/// Stderr and stdout of a run, for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Infers data-schemas for `items` the way `infer-schema --classify-attribute pk` does: one table
/// per `pk` prefix up to `#`.
pub fn infer(table: &str, items: &[Item]) -> Vec<DataSchema> {
    use dynamo_etl::schema::entities::{infer_items, Strategy};
    let keys = ["pk".to_string(), "sk".to_string()];
    infer_items(table, &keys, &[], Strategy::Prefix("pk".into()), items).schemas
}

/// The item's key as `pk|sk`.
pub fn key_of(item: &Item) -> String {
    let part = |k: &str| match item.get(k) {
        Some(aws_sdk_dynamodb::types::AttributeValue::S(s)) => s.clone(),
        other => format!("{other:?}"),
    };
    format!("{}|{}", part("pk"), part("sk"))
}

/// Switches point-in-time recovery on for `table`.
pub async fn enable_pitr(client: &DynamoClient, table: &str) {
    client
        .update_continuous_backups()
        .table_name(table)
        .point_in_time_recovery_specification(
            aws_sdk_dynamodb::types::PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(true)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}
