//! Nothing wrong ever goes live, tried as an operator would, through the binary: a swapped run is
//! never swapped in again (rerun, older run, a job submitted twice), parts and manifests are
//! verified before anything of them loads, S3 bodies cut short are read again, a killed segment
//! leaves no unfinished upload behind, and no shape of warehouse URL prints its password.

use aws_sdk_s3::primitives::ByteStream;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::support::fault_proxy::{FaultProxy, Injected, RequestHead};
use crate::support::{show, TestEnv};
use dynamo_etl::schema::entities::{
    plan, PlanSettings, Strategy, Survey, SurveySettings, DEFAULT_MAX_TABLES,
};
use dynamo_etl::staging::parts::codec::{PartCompression, PartEncoder};
use dynamo_etl::testkit::decode::decompress;
use dynamo_etl::testkit::fixtures;
use dynamo_etl::value::ItemView;
use dynamo_etl::warehouse::config::STAGING_SUFFIX;
use dynamo_etl::warehouse::ledger::LEDGER_TABLE;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn run(env: &TestEnv, run_id: Option<&str>) -> Output {
    let mut args = vec![
        "run",
        "--table",
        env.table.as_str(),
        "--total-segments",
        "2",
    ];
    if let Some(id) = run_id {
        args.extend(["--run-id", id]);
    }
    env.run(&args, &[])
}

fn previous(env: &TestEnv) -> String {
    format!("{}_previous", env.target)
}

/// The run id a `run` reported ("run <id> of table …").
fn reported_run(out: &Output) -> String {
    let text = stdout(out);
    let line = text
        .lines()
        .find(|l| l.starts_with("run "))
        .unwrap_or_else(|| panic!("no report: {}", show(out)));
    line.split(' ').nth(1).unwrap().to_string()
}

async fn put(env: &TestEnv, key: &str, body: Vec<u8>) {
    env.s3
        .put_object()
        .bucket(&env.bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_served_run_is_never_swapped_in_again() {
    let env = TestEnv::with_demo("sserved", 2).await;
    for id in ["n1", "n2"] {
        let out = run(&env, Some(id));
        assert!(out.status.success(), "{}", show(&out));
    }
    assert_eq!(env.served_run(&env.target).await.as_deref(), Some("n2"));
    assert_eq!(env.served_run(&previous(&env)).await.as_deref(), Some("n1"));

    // Running the served run again, or replacing with it: refused, nothing touched.
    let out = run(&env, Some("n2"));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("already served"), "{}", show(&out));
    let out = env.run(&["replace", "--run-id", "n2"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    // The generation kept for rollback is not swapped back in by replace either.
    let out = env.run(&["replace", "--run-id", "n1"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("rollback"), "{}", show(&out));
    assert_eq!(env.served_run(&env.target).await.as_deref(), Some("n2"));
    assert_eq!(env.served_run(&previous(&env)).await.as_deref(), Some("n1"));

    // Without --run-id every `run` is a new run once the last one is swapped in.
    let out = run(&env, None);
    assert!(out.status.success(), "{}", show(&out));
    let third = reported_run(&out);
    assert!(!["n1", "n2"].contains(&third.as_str()), "{third}");
    assert_eq!(env.served_run(&env.target).await, Some(third.clone()));
    assert_eq!(env.served_run(&previous(&env)).await.as_deref(), Some("n2"));
    let out = run(&env, None);
    assert!(out.status.success(), "{}", show(&out));
    let fourth = reported_run(&out);
    assert_ne!(fourth, third);
    assert_eq!(env.served_run(&previous(&env)).await, Some(third));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_that_did_not_finish_is_resumed_by_the_next_run_without_an_id() {
    let env = TestEnv::with_demo("sresume", 2).await;
    let out = run(&env, Some("served"));
    assert!(out.status.success(), "{}", show(&out));
    // A run that scanned but could not load (the warehouse was down).
    let out = env.run(
        &["run", "--table", &env.table, "--total-segments", "2"],
        &[(
            "ETL_WAREHOUSE_URL",
            "postgres://postgres@127.0.0.1:1/postgres".into(),
        )],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let unfinished = reported_run(&out);
    let out = run(&env, None);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(reported_run(&out), unfinished, "{}", show(&out));
    assert!(
        stderr(&out).contains(&format!("resuming run {unfinished}")),
        "{}",
        show(&out)
    );
    assert!(
        stdout(&out).contains("(committed earlier)"),
        "{}",
        show(&out)
    );
    assert_eq!(env.served_run(&env.target).await, Some(unfinished));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_older_run_replaces_a_newer_one_only_when_asked() {
    let env = TestEnv::with_demo("solder", 2).await;
    for id in ["old", "new"] {
        let plan = [
            "plan",
            "--table",
            env.table.as_str(),
            "--total-segments",
            "1",
            "--run-id",
            id,
        ];
        env.run_ok(&plan);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    env.pipeline("new", 1);
    env.phase1("old", 1, 0);
    env.run_ok(&["prepare", "--run-id", "old"]);
    env.run_ok(&["upload", "--run-id", "old", "--segment", "0"]);
    let out = env.run(&["replace", "--run-id", "old"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    for expected in ["before run new", "--allow-older"] {
        assert!(
            stderr(&out).contains(expected),
            "{expected}: {}",
            show(&out)
        );
    }
    assert_eq!(env.served_run(&env.target).await.as_deref(), Some("new"));
    env.run_ok(&["replace", "--run-id", "old", "--allow-older"]);
    assert_eq!(env.served_run(&env.target).await.as_deref(), Some("old"));
    assert_eq!(
        env.served_run(&previous(&env)).await.as_deref(),
        Some("new")
    );
}

/// Starts `args` twice, the second `delay` after the first, and waits for both.
async fn twice(
    env: &TestEnv,
    args: &[&str],
    vars: &[(&str, String)],
    delay_ms: u64,
) -> [Output; 2] {
    let spawn = || {
        let mut cmd = env.command(args);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = spawn();
    tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
    let second = spawn();
    [first, second].map(|c| c.wait_with_output().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_submitted_twice_is_swapped_in_once() {
    let env = TestEnv::with_demo("stwice", 3).await;
    let out = run(&env, Some("before"));
    assert!(out.status.success(), "{}", show(&out));
    let mut last = "before".to_string();
    // Together, and a second after the first (which a read budget keeps busy for seconds).
    for (run_id, delay_ms, budget) in [("together", 0, None), ("apart", 1000, Some("3"))] {
        let args = [
            "run",
            "--table",
            env.table.as_str(),
            "--total-segments",
            "2",
            "--run-id",
            run_id,
        ];
        let vars: Vec<(&str, String)> = budget
            .map(|b| ("ETL_MAX_READ_UNITS", b.to_string()))
            .into_iter()
            .collect();
        let outs = twice(&env, &args, &vars, delay_ms).await;
        for out in &outs {
            assert!(
                matches!(out.status.code(), Some(0 | 1)),
                "{run_id}: neither copy may fail fatally: {}",
                show(out)
            );
        }
        let swapped = outs.iter().filter(|o| o.status.success()).count();
        assert!(swapped >= 1, "{run_id}: one copy swaps the run in");
        if let Some(loser) = outs.iter().find(|o| !o.status.success()) {
            assert!(
                stderr(loser).contains("another process")
                    && stderr(loser).contains("status --run-id"),
                "{run_id}: the other copy says why and what to look at: {}",
                show(loser)
            );
        }
        assert_eq!(env.served_run(&env.target).await.as_deref(), Some(run_id));
        assert_eq!(
            env.served_run(&previous(&env)).await.as_deref(),
            Some(last.as_str()),
            "{run_id}: the generation it replaced is kept, not overwritten by itself"
        );
        last = run_id.to_string();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replaces_of_one_run_at_once_swap_it_in_once() {
    let env = TestEnv::with_demo("sreplaces", 2).await;
    env.pipeline("first", 1);
    for k in 0..1 {
        env.phase1("second", 1, k);
    }
    env.run_ok(&["prepare", "--run-id", "second"]);
    env.run_ok(&["upload", "--run-id", "second", "--segment", "0"]);
    let outs = twice(&env, &["replace", "--run-id", "second"], &[], 0).await;
    let swapped: Vec<&Output> = outs
        .iter()
        .filter(|o| stdout(o).contains("is now served from"))
        .collect();
    assert_eq!(swapped.len(), 1, "exactly one swaps: {}", show(&outs[1]));
    let loser = outs
        .iter()
        .find(|o| !stdout(o).contains("is now served from"))
        .unwrap();
    // Racing, it finds the run served and has nothing to do; started after the other one
    // committed, it is a replace of a served run, which is refused.
    assert!(
        matches!(loser.status.code(), Some(0 | 2))
            && format!("{}{}", stdout(loser), stderr(loser)).contains("already served"),
        "{}",
        show(loser)
    );
    assert_eq!(env.served_run(&env.target).await.as_deref(), Some("second"));
    assert_eq!(
        env.served_run(&previous(&env)).await.as_deref(),
        Some("first")
    );
}

/// A replace that reads the target's state while another process swaps the same run in: the
/// read of the staging ledger waits for that swap's lock, and then finds the ledger renamed
/// away with the rest of staging. It must read the state again and find the run served, not
/// fail on the vanished ledger. The other process is this test's own session, doing what a
/// swap does (lock the ledger, keep the served generation as previous, rename staging in), so
/// that the moment the replace's read waits is known rather than raced.
#[tokio::test(flavor = "multi_thread")]
async fn a_replace_whose_state_read_meets_a_concurrent_swap_finds_the_run_served() {
    use sqlx::Executor;
    use sqlx::Row;
    let env = TestEnv::with_demo("sstate", 2).await;
    env.pipeline("first", 1);
    env.phase1("second", 1, 0);
    env.run_ok(&["prepare", "--run-id", "second"]);
    env.run_ok(&["upload", "--run-id", "second", "--segment", "0"]);
    let staging = format!("{}{STAGING_SUFFIX}", env.target);
    let mut swap = env.pg().await;
    for statement in [
        "BEGIN".to_string(),
        format!("LOCK TABLE \"{staging}\".\"{LEDGER_TABLE}\""),
    ] {
        swap.execute(statement.as_str()).await.unwrap();
    }
    let mut replace = env.command(&["replace", "--run-id", "second"]);
    let replace = replace
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until a session of the replace waits for the ledger's lock.
    let mut watch = env.pg().await;
    let mut waited = false;
    for _ in 0..600 {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
             WHERE NOT l.granted AND c.relname = $1",
        )
        .bind(LEDGER_TABLE)
        .fetch_one(&mut watch)
        .await
        .unwrap();
        if row.get::<i64, _>(0) > 0 {
            waited = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let previous = previous(&env);
    for statement in [
        format!("DROP SCHEMA IF EXISTS \"{previous}\" CASCADE"),
        format!("ALTER SCHEMA \"{}\" RENAME TO \"{previous}\"", env.target),
        format!("ALTER SCHEMA \"{staging}\" RENAME TO \"{}\"", env.target),
        "COMMIT".to_string(),
    ] {
        swap.execute(statement.as_str()).await.unwrap();
    }
    let out = replace.wait_with_output().unwrap();
    assert!(
        waited,
        "the replace never waited for the ledger's lock: {}",
        show(&out)
    );
    // Started before the swap committed, it is a replace of a served run once it reads.
    let errors: Vec<String> = stderr(&out)
        .lines()
        .filter(|l| l.starts_with("error:"))
        .map(str::to_string)
        .collect();
    assert!(
        out.status.code() == Some(2)
            && errors.len() == 1
            && errors[0].contains("run second is already served"),
        "{}",
        show(&out)
    );
    assert_eq!(env.served_run(&env.target).await.as_deref(), Some("second"));
    assert_eq!(env.served_run(&previous).await.as_deref(), Some("first"));
}

/// One committed segment of run `r`, staging prepared, and the key of its `org` part.
async fn staged(env: &TestEnv, vars: &[(&str, String)]) -> String {
    env.phase1_with("r", 1, 0, vars);
    env.run_ok(&["prepare", "--run-id", "r"]);
    env.manifest("r", 0).await.unwrap().tables["org"].files[0]
        .key
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_part_with_one_byte_changed_is_refused_before_anything_loads() {
    for codec in ["zstd", "gzip"] {
        let env = TestEnv::with_demo(&format!("sflip{codec}"), 3).await;
        let part = staged(&env, &[("ETL_PART_COMPRESSION", codec.into())]).await;
        let original = env.get(&part).await.unwrap();
        let mut flipped = original.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x10;
        put(&env, &part, flipped).await;
        let out = env.run(&["upload", "--run-id", "r", "--segment", "0"], &[]);
        assert_eq!(out.status.code(), Some(2), "{codec}: {}", show(&out));
        for expected in [part.as_str(), "retry phase-1 1 0 --run-id r"] {
            assert!(
                stderr(&out).contains(expected),
                "{codec} {expected}: {}",
                show(&out)
            );
        }
        let staging = format!("{}_staging", env.target);
        for t in ["fin", "group", "org", "vuln"] {
            assert_eq!(env.count(&staging, t).await, 0, "{codec}: {t}");
        }
        // A part that decompresses cleanly, with as many rows, but one value changed: only its
        // hash tells.
        let csv = decompress(&part, &original).unwrap();
        let text = String::from_utf8(csv).unwrap().replacen("ORG#", "ORG@", 1);
        let mut encoder = PartEncoder::new(PartCompression::of_part(&part).unwrap(), 1, 0);
        encoder.write_all(text.as_bytes());
        put(&env, &part, encoder.finish()).await;
        let out = env.run(&["upload", "--run-id", "r", "--segment", "0"], &[]);
        assert_eq!(out.status.code(), Some(2), "{codec}: {}", show(&out));
        for expected in ["SHA-256", "retry phase-1 1 0 --run-id r"] {
            assert!(
                stderr(&out).contains(expected),
                "{codec} {expected}: {}",
                show(&out)
            );
        }
        put(&env, &part, original).await;
        env.run_ok(&["upload", "--run-id", "r", "--segment", "0"]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_that_belongs_elsewhere_is_refused_everywhere() {
    let env = TestEnv::with_demo("smisplaced", 4).await;
    for k in 0..3 {
        env.phase1("r", 3, k);
    }
    env.phase1("other", 3, 0);
    env.run_ok(&["prepare", "--run-id", "r"]);
    let key = |run: &str, k: u32| format!("dynamo-etl/runs/{run}/segments/{k}/manifest.json");
    let good = env.get(&key("r", 1)).await.unwrap();
    let mut counts_off: serde_json::Value = serde_json::from_slice(&good).unwrap();
    counts_off["items_scanned"] = (counts_off["items_scanned"].as_u64().unwrap() + 7).into();
    let cases = [
        (
            env.get(&key("r", 2)).await.unwrap(),
            "it names segment 2, not 1",
        ),
        (
            env.get(&key("other", 0)).await.unwrap(),
            "it names run other, not r",
        ),
        (counts_off.to_string().into_bytes(), "items scanned"),
    ];
    for (manifest, expected) in cases {
        put(&env, &key("r", 1), manifest).await;
        let out = env.run(&["upload", "--run-id", "r", "--segment", "1"], &[]);
        assert_eq!(out.status.code(), Some(2), "{expected}: {}", show(&out));
        for e in [expected, "retry phase-1 3 1 --run-id r"] {
            assert!(stderr(&out).contains(e), "{e}: {}", show(&out));
        }
        let status = env.run(&["status", "--run-id", "r"], &[]);
        assert!(
            stdout(&status).contains("damaged manifest"),
            "{}",
            show(&status)
        );
    }
    // The gate refuses it too, fatally: nothing but phase 1 again fixes it.
    for k in ["0", "2"] {
        env.run_ok(&["upload", "--run-id", "r", "--segment", k]);
    }
    let out = env.run(&["replace", "--run-id", "r"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        stderr(&out).contains("retry phase-1 3 1 --run-id r"),
        "{}",
        show(&out)
    );
    assert_eq!(env.served_run(&env.target).await, None);
    put(&env, &key("r", 1), good.to_vec()).await;
    env.run_ok(&["upload", "--run-id", "r", "--segment", "1"]);
    env.run_ok(&["replace", "--run-id", "r"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_cut_short_are_read_again() {
    let env = TestEnv::with_demo("struncated", 3).await;
    staged(&env, &[]).await;
    // The first read of each object loses its connection 20 bytes into the body.
    let seen: Arc<[AtomicUsize; 3]> = Arc::default();
    let counts = seen.clone();
    let proxy = FaultProxy::start(
        &env.stack.s3,
        Arc::new(move |head: &RequestHead| {
            if head.method != "GET" {
                return None;
            }
            let object = ["run.json", "manifest.json", "/part-"]
                .iter()
                .position(|o| head.path.contains(o))?;
            (counts[object].fetch_add(1, Ordering::SeqCst) == 0)
                .then(|| Injected::truncate_body(20))
        }),
    )
    .await;
    let out = env.run(
        &["upload", "--run-id", "r", "--segment", "0"],
        &[("ETL_S3_ENDPOINT", proxy.url.clone())],
    );
    assert!(out.status.success(), "{}", show(&out));
    for (i, object) in ["run.json", "manifest.json", "a part"].iter().enumerate() {
        assert!(
            seen[i].load(Ordering::SeqCst) >= 2,
            "{object} was not read again"
        );
    }
    let staging = format!("{}_staging", env.target);
    assert_eq!(env.count(&staging, "org").await, 3, "loaded exactly once");
    assert_eq!(env.count(&staging, "vuln").await, 72);
}

/// The scan locates a page's items without parsing them, so a body damaged on the way in a way
/// that keeps it valid JSON (one letter of a value in the other case) would be read as other
/// values: the CRC32 DynamoDB sends with each response catches it, and the segment exits 1
/// (retry) naming it. Run again undamaged, the same segment writes the table's values.
#[tokio::test(flavor = "multi_thread")]
async fn a_scan_page_damaged_on_the_way_is_refused_and_retried() {
    let env = TestEnv::with_demo("sdamaged", 2).await;
    let scans = Arc::new(AtomicUsize::new(0));
    let seen = scans.clone();
    let proxy = FaultProxy::start(
        &env.stack.dynamodb,
        Arc::new(move |head: &RequestHead| {
            let scan = head.is_scan();
            (scan && seen.fetch_add(1, Ordering::SeqCst) == 0).then(Injected::damage_body)
        }),
    )
    .await;
    let through_proxy = [("ETL_DYNAMODB_ENDPOINT", proxy.url.clone())];
    let out = env.segment("d", 1, 0, &through_proxy);
    let text = show(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("damaged on the way"), "{text}");
    assert!(
        scans.load(Ordering::SeqCst) >= 1,
        "no Scan went through the proxy"
    );
    assert!(env.manifest("d", 0).await.is_none(), "nothing is committed");
    env.phase1_with("d", 1, 0, &through_proxy);
    env.run_ok(&["prepare", "--run-id", "d"]);
    env.run_ok(&["upload", "--run-id", "d", "--segment", "0"]);
    env.run_ok(&["replace", "--run-id", "d"]);
    assert_eq!(env.served_run(&env.target).await.as_deref(), Some("d"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_segment_killed_during_a_multipart_upload_leaves_no_upload_open() {
    let env = TestEnv::new("skilled").await;
    // Enough rows, in one table, that its part needs more than one 5 MiB chunk when stored
    // uncompressed.
    let items = fixtures::bench_items(20_000, 5);
    env.load(items.clone()).await;
    let keys = ["pk".to_string(), "sk".to_string()];
    // One table: no delimiter, nothing to tell apart.
    let settings = SurveySettings::new(&keys, None, DEFAULT_MAX_TABLES, Vec::new());
    let mut survey = Survey::new(std::sync::Arc::new(settings));
    for item in &items {
        survey.observe(&ItemView::from_sdk(item));
    }
    let one_table = PlanSettings {
        source_table: &env.table,
        strategy: Strategy::OneTable,
        narrow: false,
    };
    env.write_schemas(&plan(&survey, &one_table).unwrap().schemas);
    let args = [
        "segment",
        "--run-id",
        "k",
        "--table",
        env.table.as_str(),
        "--total-segments",
        "1",
        "--segment",
        "0",
        "--part-compression",
        "gzip",
        "--compression-level",
        "0",
    ];
    env.kill_when_stalled(&args, "ETL_S3_ENDPOINT", &env.stack.s3, |head| {
        head.method == "PUT" && head.path.contains("partNumber=")
    })
    .await;
    let prefix = "dynamo-etl/runs/k/segments/0/";
    let open = |env: &TestEnv| {
        let (s3, bucket) = (env.s3.clone(), env.bucket.clone());
        async move {
            s3.list_multipart_uploads()
                .bucket(bucket)
                .prefix(prefix)
                .send()
                .await
                .unwrap()
                .uploads()
                .len()
        }
    };
    assert!(open(&env).await > 0, "the kill left an upload open");
    let out = env.run(&["retry", "phase-1", "1", "0", "--run-id", "k"], &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        open(&env).await,
        0,
        "phase 1 aborts what a killed attempt left"
    );
    assert_eq!(
        env.manifest("k", 0).await.unwrap().items_scanned,
        items.len() as u64
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gc_aborts_the_unfinished_uploads_of_the_runs_it_deletes() {
    let env = TestEnv::with_demo("sgcuploads", 1).await;
    let out = run(&env, Some("a"));
    assert!(out.status.success(), "{}", show(&out));
    // What a phase 1 killed while uploading leaves behind.
    let orphan = env
        .s3
        .create_multipart_upload()
        .bucket(&env.bucket)
        .key("dynamo-etl/runs/a/segments/0/org/part-00009.csv.zst")
        .send()
        .await
        .unwrap();
    for id in ["b", "c"] {
        let out = run(&env, Some(id));
        assert!(out.status.success(), "{}", show(&out));
    }
    let out = env.run_ok(&["gc", "--keep", "1"]);
    assert!(
        stdout(&out).contains("delete  a  (") && stdout(&out).contains("1 unfinished uploads"),
        "{}",
        show(&out)
    );
    env.run_ok(&["gc", "--keep", "1", "--apply"]);
    let left = env
        .s3
        .list_multipart_uploads()
        .bucket(&env.bucket)
        .send()
        .await
        .unwrap();
    assert!(
        left.uploads()
            .iter()
            .all(|u| u.upload_id() != orphan.upload_id()),
        "{:?}",
        left.uploads()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_shape_of_warehouse_url_prints_its_password() {
    let env = TestEnv::with_demo("ssecret", 1).await;
    env.phase1("r", 1, 0);
    let password = "Qz8pW0rdX";
    let urls = [
        format!("postgres:etl:{password}@127.0.0.1:1/db"),
        format!("postgres://etl:{password}?@127.0.0.1:1/db"),
        format!("postgres://etl:{password}#x@127.0.0.1:1/db"),
        format!("postgres://etl:{password}@x@127.0.0.1:1/db"),
        format!("postgres://etl:{password}/x@127.0.0.1:1/db"),
        format!("postgres://etl:{password}%zz@127.0.0.1:1/db"),
        format!("etl:{password}@127.0.0.1:1/db"),
        format!("postgres://etl:{password}"),
        format!("redshift://etl:{password}@127.0.0.1:1/db?sslmode=require"),
    ];
    let commands: [&[&str]; 5] = [
        &["prepare", "--run-id", "r"],
        &["upload", "--run-id", "r", "--segment", "0"],
        &["status", "--run-id", "r"],
        &["replace", "--run-id", "r"],
        &["run", "--run-id", "r"],
    ];
    for url in &urls {
        for args in commands {
            let out = env.run(
                args,
                &[
                    ("ETL_WAREHOUSE_URL", url.clone()),
                    ("ETL_REDSHIFT_IAM_ROLE", "default".into()),
                    ("ETL_RETRY_ATTEMPTS", "1".into()),
                ],
            );
            let all = format!("{}{}", stdout(&out), stderr(&out));
            assert!(
                !all.contains(&password[..6]),
                "{url} {args:?}: {}",
                show(&out)
            );
            assert!(
                !out.status.success(),
                "{url} {args:?} cannot reach a warehouse"
            );
        }
    }
}

/// A password holding `?`, `#`, `@`, `%` and `/`, percent-encoded in the URL as a user must
/// write it, logs in as the role it belongs to, and no output or log line (at debug, where the
/// driver's own warnings show) holds any piece of it. The stack's PostgreSQL is initialised with
/// `-A trust`, so the server may not check the password: the test reads `pg_hba` and, where a
/// password is checked, also shows that a wrong one is refused. (That the driver's options carry
/// the exact password is `warehouse::url`'s unit test.)
#[tokio::test(flavor = "multi_thread")]
async fn a_password_with_url_characters_logs_in_and_never_shows() {
    use sqlx::Row;
    let env = TestEnv::with_demo("spw", 1).await;
    env.phase1("r", 1, 0);
    let pieces = ["Xq7Kp", "Lm3Np", "Rt5Vw", "Yz9Bc", "Df2Gh", "Jk4Mn"];
    let password = format!(
        "{}?{}#{}@{}%{}/{}",
        pieces[0], pieces[1], pieces[2], pieces[3], pieces[4], pieces[5]
    );
    let role = crate::support::unique("pw").replace('-', "_");
    let mut pg = env.pg().await;
    let checked = sqlx::query(
        "SELECT count(*) FILTER (WHERE auth_method NOT IN ('trust', 'peer', 'ident')) AS checked FROM pg_hba_file_rules WHERE type IN ('host', 'hostssl', 'hostnossl')",
    )
    .fetch_one(&mut pg)
    .await
    .unwrap()
    .get::<i64, _>("checked")
        > 0;
    let setup = format!(
        "CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'; GRANT CREATE ON DATABASE \"{db}\" TO \"{role}\"",
        db = &url::Url::parse(&env.stack.warehouse).unwrap().path()[1..]
    );
    sqlx::raw_sql(&setup).execute(&mut pg).await.unwrap();
    let with_password = |password: &str| {
        let mut u = url::Url::parse(&env.stack.warehouse).unwrap();
        u.set_username(&role).unwrap();
        let encoded =
            percent_encoding::utf8_percent_encode(password, percent_encoding::NON_ALPHANUMERIC);
        u.set_password(Some(&encoded.to_string())).unwrap();
        u.to_string()
    };
    let url = with_password(&password);
    assert!(!url.contains(['?', '#']), "{url}");
    let vars = [
        ("ETL_WAREHOUSE_URL", url.clone()),
        ("ETL_LOG", "debug".to_string()),
    ];
    let out = env.run(&["prepare", "--run-id", "r"], &vars);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{}", show(&out));
    for piece in pieces {
        assert!(!all.contains(piece), "{piece} shown: {all}");
    }
    // The session was the role's: it owns the staging schema prepare created.
    let owner: String =
        sqlx::query_scalar("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = $1")
            .bind(format!("{}_staging", env.target))
            .fetch_one(&mut pg)
            .await
            .unwrap();
    assert_eq!(owner.trim_matches('"'), role);
    if checked {
        let wrong = with_password(&password.replace('#', "!"));
        let out = env.run(
            &["prepare", "--run-id", "r"],
            &[
                ("ETL_WAREHOUSE_URL", wrong),
                ("ETL_RETRY_ATTEMPTS", "1".into()),
            ],
        );
        assert!(!out.status.success(), "a wrong password logged in");
    } else {
        eprintln!("note: the stack's PostgreSQL trusts local connections; the password is not checked by the server");
    }
}
