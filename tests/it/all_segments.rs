//! Phase 3 for every segment at once (`upload --all-segments`, and `run` for a dialect that
//! prefers it) on the real PostgreSQL: one transaction, one COPY per table over every segment's
//! parts; a transient fault halfway rolls it all back and the retry loads each row once; a damaged
//! part or a row the server rejects commits nothing and names the segment to scan again.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use dynamo_etl::aws::AwsConfig;
use dynamo_etl::phases::run::{run, Quiet, RunOptions};
use dynamo_etl::phases::segment::SegmentSettings;
use dynamo_etl::phases::{Context, StagingConfig};
use dynamo_etl::retry::RetryPolicy;
use dynamo_etl::schema::LogicalType;
use dynamo_etl::staging::manifest::SegmentManifest;
use dynamo_etl::staging::parts::codec::{PartCompression, PartEncoder};
use dynamo_etl::staging::parts::writer::PartSettings;
use dynamo_etl::staging::plan::RunPlan;
use dynamo_etl::staging::Staging;
use dynamo_etl::testkit::decode::decompress;
use dynamo_etl::warehouse::sql::Session;
use dynamo_etl::warehouse::{
    DialectOptions, Grantee, RunLoad, TableBatch, UploadOutcome, Warehouse, WarehouseConfig,
    WarehouseError, WarehouseUrl,
};

use crate::support::fault_proxy::{FaultProxy, Injected, RequestHead};
use crate::support::{show, TestEnv};

const TABLES: [&str; 5] = ["org", "group", "fin", "vuln", "_unclassified"];

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Rows of every staged table, by table.
async fn staged_rows(env: &TestEnv) -> BTreeMap<&'static str, i64> {
    let staging = format!("{}_staging", env.target);
    let mut out = BTreeMap::new();
    for t in TABLES {
        out.insert(t, env.count(&staging, t).await);
    }
    out
}

/// What the manifests of `segments` promise, by table.
async fn promised(env: &TestEnv, run: &str, segments: &[u32]) -> BTreeMap<&'static str, i64> {
    let mut out: BTreeMap<&'static str, i64> = TABLES.iter().map(|t| (*t, 0)).collect();
    for &k in segments {
        let manifest = env.manifest(run, k).await.unwrap();
        for t in TABLES {
            *out.get_mut(t).unwrap() += manifest.tables.get(t).map_or(0, |o| o.rows as i64);
        }
    }
    out
}

/// The ledger of `schema`: (segment, loaded_at as text), by segment.
async fn ledger(env: &TestEnv, schema: &str) -> Vec<(i32, String)> {
    let mut conn = env.pg().await;
    sqlx::query_as::<_, (i32, String)>(&format!(
        "SELECT segment, loaded_at::text FROM \"{schema}\".\"_dynamo_etl_ledger\" ORDER BY segment"
    ))
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

/// Replaces the first part of `table` in `segment` with `body`, and its manifest entry's size and
/// SHA-256 with the body's (as a phase 1 that wrote rows the warehouse rejects would leave it).
async fn vouched_part(env: &TestEnv, run: &str, segment: u32, table: &str, body: Vec<u8>) {
    let key = format!("dynamo-etl/runs/{run}/segments/{segment}/manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&env.get(&key).await.unwrap()).unwrap();
    let file = &mut manifest["tables"][table]["files"][0];
    let part = file["key"].as_str().unwrap().to_string();
    file["bytes"] = body.len().into();
    file["sha256"] = dynamo_etl::testkit::decode::sha256_hex(&body).into();
    put(env, &part, body).await;
    put(env, &key, manifest.to_string().into_bytes()).await;
}

async fn put(env: &TestEnv, key: &str, body: Vec<u8>) {
    env.s3
        .put_object()
        .bucket(&env.bucket)
        .key(key)
        .body(body.into())
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn all_segments_load_in_one_transaction_and_a_fault_halfway_is_retried_exactly() {
    let env = TestEnv::with_demo("aretry", 3).await;
    for k in 0..3 {
        env.phase1("a", 3, k);
    }
    env.run_ok(&["prepare", "--run-id", "a"]);
    // The first read of segment 1's first part loses its connection 20 bytes into the body,
    // after segment 0's parts of the same table went into the COPY.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    let proxy = FaultProxy::start(
        &env.stack.s3,
        Arc::new(move |head: &RequestHead| {
            if head.method != "GET" || !head.path.contains("/part-") {
                return None;
            }
            let mut log = log.lock().unwrap();
            log.push(head.path.clone());
            let first_of_segment_1 = head.path.contains("/segments/1/")
                && !log[..log.len() - 1]
                    .iter()
                    .any(|p| p.contains("/segments/1/"));
            first_of_segment_1.then(|| Injected::truncate_body(20))
        }),
    )
    .await;
    let out = env.run(
        &["upload", "--run-id", "a", "--all-segments"],
        &[("ETL_S3_ENDPOINT", proxy.url.clone())],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("3 segment(s) loaded"),
        "{}",
        show(&out)
    );
    assert!(
        stderr(&out).contains("failed transiently"),
        "the fault was met and retried: {}",
        show(&out)
    );
    let seen = seen.lock().unwrap().clone();
    let cut = seen.iter().find(|p| p.contains("/segments/1/")).unwrap();
    assert!(
        seen.iter().filter(|p| *p == cut).count() >= 2,
        "{cut} was read again: {seen:?}"
    );
    assert_eq!(
        staged_rows(&env).await,
        promised(&env, "a", &[0, 1, 2]).await,
        "every row once"
    );
    // One transaction: PostgreSQL's now() is the transaction's start, the same in every row.
    let rows = ledger(&env, &format!("{}_staging", env.target)).await;
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), [0, 1, 2]);
    assert!(rows.iter().all(|r| r.1 == rows[0].1), "{rows:?}");

    let again = env.run_ok(&["upload", "--run-id", "a", "--all-segments"]);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("0 segment(s) loaded"),
        "{}",
        show(&again)
    );
    env.run_ok(&["replace", "--run-id", "a"]);
    assert_eq!(env.served_run(&env.target).await.as_deref(), Some("a"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_part_or_a_rejected_row_commits_none_of_the_segments() {
    let env = TestEnv::with_demo("adamaged", 3).await;
    for k in 0..3 {
        env.phase1("d", 3, k);
    }
    env.run_ok(&["prepare", "--run-id", "d"]);
    let staging = format!("{}_staging", env.target);
    let nothing: BTreeMap<&str, i64> = TABLES.iter().map(|t| (*t, 0)).collect();

    // A part whose bytes are not the ones its manifest records.
    let manifest = env.manifest("d", 1).await.unwrap();
    let vuln = manifest.tables["vuln"].files[0].key.clone();
    let original = env.get(&vuln).await.unwrap();
    let mut changed = original.clone();
    let middle = changed.len() / 2;
    changed[middle] ^= 0x40;
    put(&env, &vuln, changed).await;
    let out = env.run(&["upload", "--run-id", "d", "--all-segments"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = stderr(&out);
    for expected in [
        "segment 1 of run d cannot be loaded",
        &vuln,
        "nothing was committed",
        "run: dynamo-etl retry phase-1 3 1 --run-id d",
        "run: dynamo-etl upload --all-segments --run-id d",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in\n{err}");
    }
    assert_eq!(staged_rows(&env).await, nothing, "segments 0 and 2 neither");
    assert!(ledger(&env, &staging).await.is_empty());
    put(&env, &vuln, original).await;

    // A row the server rejects, in the last line of segment 2's vuln part: the one COPY of the
    // table names its line among all segments' rows; the message names the part and its line.
    for k in [0, 1] {
        let m = env.manifest("d", k).await.unwrap();
        assert!(
            m.tables["vuln"].rows > 0,
            "segment {k} has vuln rows before segment 2's"
        );
    }
    let manifest: SegmentManifest = env.manifest("d", 2).await.unwrap();
    let part = &manifest.tables["vuln"].files[0];
    let text =
        String::from_utf8(decompress(&part.key, &env.get(&part.key).await.unwrap()).unwrap())
            .unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    assert_eq!(lines.len() as u64, part.rows, "one line per row");
    let last = lines.len();
    let schemas = crate::support::infer(&env.table, &dynamo_etl::testkit::fixtures::demo_items(3));
    let vuln_schema = schemas.iter().find(|s| s.table == "vuln").unwrap();
    let typed = vuln_schema
        .columns
        .iter()
        .position(|c| {
            matches!(
                c.logical_type,
                LogicalType::Bigint
                    | LogicalType::Decimal { .. }
                    | LogicalType::Timestamp
                    | LogicalType::Boolean
            )
        })
        .expect("vuln has a typed column");
    let mut fields: Vec<String> = (0..vuln_schema.columns.len() + 1)
        .map(|_| "\\N".to_string())
        .collect();
    fields[0] = "\"VULN#bad\"".into();
    fields[typed] = "\"many\"".into();
    lines[last - 1] = fields.join(",");
    let mut encoder = PartEncoder::new(PartCompression::of_part(&part.key).unwrap(), 1, 0);
    encoder.write_all(format!("{}\n", lines.join("\n")).as_bytes());
    vouched_part(&env, "d", 2, "vuln", encoder.finish()).await;
    let out = env.run(&["upload", "--run-id", "d", "--all-segments"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = stderr(&out);
    for expected in [
        "segment 2 of run d cannot be loaded",
        &format!("loading s3://{}/{} into vuln failed", env.bucket, part.key),
        "invalid input syntax",
        &format!("that is line {last} of this part"),
        "run: dynamo-etl retry phase-1 3 2 --run-id d",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in\n{err}");
    }
    assert_eq!(staged_rows(&env).await, nothing);
    assert!(ledger(&env, &staging).await.is_empty());

    // Phase 1 again for that segment, and the same command loads everything.
    env.run_ok(&["retry", "phase-1", "3", "2", "--run-id", "d"]);
    env.run_ok(&["upload", "--run-id", "d", "--all-segments"]);
    assert_eq!(
        staged_rows(&env).await,
        promised(&env, "d", &[0, 1, 2]).await
    );
}

/// A warehouse that loads a whole run the way Redshift does — one transaction, one COPY per
/// table — over the real PostgreSQL, to see `run` take that path: PostgreSQL's dialect in all
/// but `run_load`.
struct AtOnce(Box<dyn Warehouse>);

#[async_trait(?Send)]
impl Warehouse for AtOnce {
    fn config(&self) -> &WarehouseConfig {
        self.0.config()
    }
    async fn session(&self) -> Result<Session, WarehouseError> {
        self.0.session().await
    }
    fn column_type(&self, t: LogicalType) -> String {
        self.0.column_type(t)
    }
    fn literal(&self, text: &str) -> String {
        self.0.literal(text)
    }
    fn now(&self) -> &'static str {
        self.0.now()
    }
    fn lock_timeout(&self, timeout: Duration) -> String {
        self.0.lock_timeout(timeout)
    }
    fn lock_timeout_lifted(&self) -> Option<String> {
        self.0.lock_timeout_lifted()
    }
    fn grantee(&self, grantee: &Grantee) -> String {
        self.0.grantee(grantee)
    }
    fn key_equals(&self, a: &str, b: &str, t: LogicalType) -> String {
        self.0.key_equals(a, b, t)
    }
    fn analyze_tables(&self, tables: &[String]) -> Vec<String> {
        self.0.analyze_tables(tables)
    }
    async fn load_segment_once(
        &self,
        staging: &Staging,
        plan: &RunPlan,
        segment: u32,
    ) -> Result<UploadOutcome, WarehouseError> {
        self.0.load_segment_once(staging, plan, segment).await
    }
    async fn copy_batch(
        &self,
        session: &mut Session,
        staging: &Staging,
        plan: &RunPlan,
        batch: &TableBatch<'_>,
    ) -> Result<u64, WarehouseError> {
        self.0.copy_batch(session, staging, plan, batch).await
    }
    fn run_load(&self) -> RunLoad {
        RunLoad::OneTransaction
    }
    fn value_hash_sql(&self, t: LogicalType, column: &str) -> Option<String> {
        self.0.value_hash_sql(t, column)
    }
    fn hash_number_sql(&self, hex: &str) -> String {
        self.0.hash_number_sql(hex)
    }
    fn text_hash_sql(&self, text: &str) -> String {
        self.0.text_hash_sql(text)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn run_loads_a_whole_run_in_one_transaction_when_the_dialect_prefers_it() {
    let env = TestEnv::with_demo("arun", 3).await;
    for k in 0..3 {
        env.phase1("r", 3, k);
    }
    let aws = AwsConfig {
        dynamodb_endpoint: Some(env.stack.dynamodb.clone()),
        s3_endpoint: Some(env.stack.s3.clone()),
        ..AwsConfig::default()
    };
    let staging = StagingConfig {
        bucket: Some(env.bucket.clone()),
        prefix: "dynamo-etl".into(),
    };
    let ctx = Context::connect(&aws, &staging, RetryPolicy::default())
        .await
        .unwrap();
    let plan = RunPlan::load(ctx.staging().unwrap(), "r")
        .await
        .unwrap()
        .unwrap();
    let warehouse = AtOnce(dynamo_etl::warehouse::open(WarehouseConfig {
        url: WarehouseUrl::parse(&env.stack.warehouse).unwrap(),
        target: env.target.clone(),
        grantees: vec![],
        lock_timeout: Duration::from_secs(60),
        post_swap_sql: None,
        analyze: true,
        verify: true,
        options: DialectOptions::Postgres(Default::default()),
    }));
    let options = RunOptions {
        concurrency: 3,
        rescan: false,
        allow_older: false,
        segment: SegmentSettings {
            parts: PartSettings::default(),
            consistent_read: false,
            max_read_units: None,
            progress_every: Duration::from_secs(10),
            checkpoint_every: Duration::from_secs(60),
            restart: false,
            page_items: None,
        },
    };
    let outcome = run(&ctx, &warehouse, &plan, options, &Quiet).await;
    assert!(outcome.failure.is_none(), "{:?}", outcome.failure);
    assert_eq!(outcome.report.outcome, "swapped");
    assert!(
        outcome
            .report
            .segments
            .iter()
            .all(|s| s.phase3_ms.is_some()),
        "{:?}",
        outcome.report.segments
    );
    // Every segment's ledger row from the one transaction (per-segment loads would differ).
    let rows = ledger(&env, &env.target).await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows.iter().all(|r| r.1 == rows[0].1), "{rows:?}");
    let mut served = BTreeMap::new();
    for t in TABLES {
        served.insert(t, env.count(&env.target, t).await);
    }
    assert_eq!(served, promised(&env, "r", &[0, 1, 2]).await);
}
