//! Phase 1 against the real local stack: values survive exactly, segments partition the table,
//! reruns are idempotent, failures commit nothing, throttling is retried, the read budget holds.

use crate::support::fault_proxy::{FaultProxy, Injected};
use crate::support::{drift_entry, infer, key_of, same_item, show, TestEnv};
use dynamo_etl::staging::manifest::DriftReason;
use dynamo_etl::testkit::fixtures;
use dynamo_etl::value::Item;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn segment_args<'a>(
    run: &'a str,
    total: &'a str,
    segment: &'a str,
    table: &'a str,
) -> Vec<&'a str> {
    vec![
        "segment",
        "--run-id",
        run,
        "--table",
        table,
        "--total-segments",
        total,
        "--segment",
        segment,
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn adversarial_values_round_trip_exactly() {
    let env = TestEnv::new("values").await;
    let items = fixtures::adversarial_items();
    let (rejected_item, loadable) = items.split_last().unwrap();
    env.load(items.clone()).await;
    let schemas = infer(&env.table, loadable);
    env.write_schemas(&schemas);

    let out = env.run(&segment_args("r1", "1", "0", &env.table), &[]);
    assert!(out.status.success(), "{}", show(&out));

    let manifest = env.manifest("r1", 0).await.expect("manifest committed");
    assert_eq!(manifest.items_scanned, items.len() as u64);
    assert_eq!(
        manifest.items_rejected.len(),
        1,
        "{:?}",
        manifest.items_rejected
    );
    let rejection = &manifest.items_rejected[0];
    assert!(
        rejection.key.contains("EDGE#4"),
        "{rejection:?} is not {}",
        key_of(rejected_item)
    );
    assert!(rejection.reason.contains("U+0000"), "{rejection:?}");

    let decoded = env.decoded_rows("r1", &schemas, 1).await;
    let rows: Vec<(&String, &Item)> = decoded
        .iter()
        .flat_map(|(table, items)| items.iter().map(move |i| (table, i)))
        .collect();
    assert_eq!(rows.len(), loadable.len());
    for source in loadable {
        let (table, back) = rows
            .iter()
            .find(|(_, r)| key_of(r) == key_of(source))
            .unwrap_or_else(|| panic!("{} missing", key_of(source)));
        assert!(
            same_item(source, back, &schemas, table),
            "{} changed:\n source {source:?}\n loaded {back:?}",
            key_of(source)
        );
    }
    // Column naming of the awkward attribute names went through the documented mapping.
    let edge = schemas
        .iter()
        .find(|s| s.table == "edge")
        .expect("edge table");
    let column = |attr: &str| {
        edge.columns
            .iter()
            .find(|c| c.attribute == attr)
            .map(|c| c.column.clone())
    };
    assert_eq!(column("Name").as_deref(), Some("name"));
    assert_eq!(column("name").as_deref(), Some("name_2"));
    assert_eq!(column("oid").as_deref(), Some("oid_"));
    assert_eq!(column("_extra").as_deref(), Some("_extra_"));
    assert_eq!(column("with space").as_deref(), Some("with_space"));
    assert!(edge.columns.iter().all(|c| c.column.len() <= 63));
}

#[tokio::test(flavor = "multi_thread")]
async fn segments_cover_every_item_exactly_once() {
    let env = TestEnv::new("cover").await;
    let mut items = fixtures::demo_items(6);
    items.extend(fixtures::adversarial_items().into_iter().take(4));
    env.load(items.clone()).await;
    let schemas = infer(&env.table, &items);
    env.write_schemas(&schemas);
    let expected: Vec<String> = {
        let mut k: Vec<String> = items.iter().map(key_of).collect();
        k.sort();
        k
    };
    for total in [1u32, 4, 7] {
        let run = format!("cover-{total}");
        let total_s = total.to_string();
        // Segments run as separate processes, like Batch array children.
        let handles: Vec<_> = (0..total)
            .map(|k| {
                let args: Vec<String> = segment_args(&run, &total_s, "auto", &env.table)
                    .into_iter()
                    .map(str::to_string)
                    .collect();
                let extra = vec![("AWS_BATCH_JOB_ARRAY_INDEX", k.to_string())];
                let env_vars = env.env();
                std::thread::spawn(move || {
                    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_dynamo-etl"));
                    cmd.args(&args);
                    for (k, v) in env_vars.into_iter().chain(extra) {
                        cmd.env(k, v);
                    }
                    cmd.output().unwrap()
                })
            })
            .collect();
        for h in handles {
            let out = h.join().unwrap();
            assert!(out.status.success(), "{}", show(&out));
        }
        let decoded = env.decoded_rows(&run, &schemas, total).await;
        let mut got: Vec<String> = decoded.values().flatten().map(key_of).collect();
        got.sort();
        assert_eq!(got, expected, "N={total}: items missing or duplicated");
        let mut scanned = 0;
        for k in 0..total {
            scanned += env.manifest(&run, k).await.unwrap().items_scanned;
        }
        assert_eq!(scanned, items.len() as u64, "N={total}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rerun_replaces_the_segment_and_leaves_the_same_objects() {
    let env = TestEnv::with_demo("rerun", 3).await;
    let args = segment_args("r", "2", "1", &env.table);
    let out = env.run(&args, &[]);
    assert!(out.status.success(), "{}", show(&out));
    let prefix = "dynamo-etl/runs/r/segments/1/";
    let first = env.keys(prefix).await;
    assert!(first.iter().any(|k| k.ends_with("manifest.json")));
    let first_manifest = env.manifest("r", 1).await.unwrap();

    // A stale part from some earlier, different attempt must not survive the rerun.
    let stray = format!("{prefix}org/part-00099.csv.gz");
    env.s3
        .put_object()
        .bucket(&env.bucket)
        .key(&stray)
        .body(b"stale".to_vec().into())
        .send()
        .await
        .unwrap();

    let out = env.run(&args, &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(env.keys(prefix).await, first, "same objects after a rerun");
    let second = env.manifest("r", 1).await.unwrap();
    assert_eq!(
        second.tables, first_manifest.tables,
        "same parts, rows and sizes"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_attributes_and_misfits_go_to_extra_and_are_counted() {
    let env = TestEnv::new("drift").await;
    let items = fixtures::demo_items(2);
    // The schema only knows the first organization's shape minus two attributes.
    let mut known: Vec<Item> = items
        .iter()
        .filter(|i| key_of(i).starts_with("ORG#"))
        .cloned()
        .collect();
    for item in &mut known {
        item.remove("budget");
        item.remove("tags");
    }
    let schemas = infer(&env.table, &known);
    let mut with_new = items.clone();
    let mut odd = known[0].clone();
    odd.insert(
        "pk".into(),
        aws_sdk_dynamodb::types::AttributeValue::S("ORG#odd".into()),
    );
    odd.insert(
        "employees".into(),
        aws_sdk_dynamodb::types::AttributeValue::S("many".into()),
    );
    with_new.push(odd.clone());
    env.load(with_new.clone()).await;
    env.write_schemas(&schemas);
    let out = env.run(&segment_args("d", "1", "0", &env.table), &[]);
    assert!(out.status.success(), "{}", show(&out));
    let manifest = env.manifest("d", 0).await.unwrap();
    let org = &manifest.drift["org"];
    let entry = |attribute, reason| {
        drift_entry(org, attribute, reason)
            .unwrap_or_else(|| panic!("no drift of {attribute}: {org:?}"))
    };
    assert_eq!(entry("budget", DriftReason::NotInSchema).count, 2);
    assert_eq!(entry("tags", DriftReason::NotInSchema).count, 2);
    assert_eq!(entry("employees", DriftReason::OtherType).count, 1);
    assert!(entry("employees", DriftReason::OtherType).examples[0].contains("ORG#odd"));
    let unclassified = manifest.tables["_unclassified"].rows;
    assert_eq!(
        unclassified,
        (with_new.len() - known.len() - 1) as u64,
        "groups, findings, vulns"
    );
    // And nothing was lost on the way.
    let decoded = env.decoded_rows("d", &schemas, 1).await;
    let rows: HashMap<String, (&String, &Item)> = decoded
        .iter()
        .flat_map(|(table, items)| items.iter().map(move |i| (key_of(i), (table, i))))
        .collect();
    for source in &with_new {
        let (table, back) = rows[&key_of(source)];
        assert!(
            same_item(source, back, &schemas, table),
            "{}",
            key_of(source)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_failure_commits_nothing_and_aborts_multipart_uploads() {
    let env = TestEnv::new("upfail").await;
    let items = fixtures::bench_items(3000, 1);
    env.load(items.clone()).await;
    env.write_schemas(&infer(&env.table, &items));
    // Fail every request that writes a part; listing, deleting and creating uploads still work.
    let proxy = FaultProxy::start(
        &env.stack.s3,
        Arc::new(|head| {
            let writes_part = head.path.contains("/part-") && head.method == "PUT";
            writes_part.then(Injected::s3_internal_error)
        }),
    )
    .await;
    let mut args = segment_args("f", "1", "0", &env.table);
    // Parts this small go out as single PUTs; tests/staging.rs covers multipart uploads.
    args.extend(["--upload-chunk-mib", "5"]);
    args.extend(["--part-compression", "gzip", "--compression-level", "0"]);
    let out = env.run(
        &args,
        &[
            ("ETL_S3_ENDPOINT", proxy.url.clone()),
            ("ETL_RETRY_ATTEMPTS", "3".into()),
            ("ETL_RETRY_MIN_DELAY_MS", "1".into()),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("retry phase-1 1 0 --run-id f"), "{stderr}");
    assert!(stderr.contains("InternalError"), "{stderr}");
    assert!(
        env.manifest("f", 0).await.is_none(),
        "a failed segment must not commit"
    );
    let uploads = env
        .s3
        .list_multipart_uploads()
        .bucket(&env.bucket)
        .send()
        .await
        .unwrap();
    assert!(
        uploads.uploads().is_empty(),
        "multipart uploads left open: {:?}",
        uploads.uploads()
    );
    drop(proxy);

    // The retry then succeeds and commits.
    let out = env.run(&["retry", "phase-1", "1", "0", "--run-id", "f"], &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        env.manifest("f", 0).await.unwrap().items_scanned,
        items.len() as u64
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_is_retried_and_fatal_errors_are_not() {
    let env = TestEnv::with_demo("throttle", 4).await;
    let items = fixtures::demo_items(4);
    let scans = Arc::new(AtomicUsize::new(0));
    let seen = scans.clone();
    // Throttle two of every three Scan calls.
    let proxy = FaultProxy::start(
        &env.stack.dynamodb,
        Arc::new(move |head| {
            let is_scan = head.is_scan();
            (is_scan && seen.fetch_add(1, Ordering::SeqCst) % 3 != 2)
                .then(Injected::dynamodb_throttle)
        }),
    )
    .await;
    let mut args = segment_args("t", "1", "0", &env.table);
    // Small pages so the scan needs many calls.
    args.extend(["--max-read-units", "400"]);
    let fast = [
        ("ETL_DYNAMODB_ENDPOINT", proxy.url.clone()),
        ("ETL_RETRY_MIN_DELAY_MS", "5".into()),
    ];
    let out = env.run(&args, &fast);
    assert!(out.status.success(), "{}", show(&out));
    let manifest = env.manifest("t", 0).await.unwrap();
    assert_eq!(manifest.items_scanned, items.len() as u64);
    assert!(
        manifest.retries >= 2,
        "retries recorded: {}",
        manifest.retries
    );
    assert!(scans.load(Ordering::SeqCst) >= 3);

    // A validation error is not retried: exit 2 at once, naming table and segment.
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let proxy = FaultProxy::start(
        &env.stack.dynamodb,
        Arc::new(move |head| {
            let is_scan = head.is_scan();
            is_scan.then(|| {
                counted.fetch_add(1, Ordering::SeqCst);
                Injected::dynamodb_validation()
            })
        }),
    )
    .await;
    let out = env.run(
        &segment_args("t2", "1", "0", &env.table),
        &[("ETL_DYNAMODB_ENDPOINT", proxy.url.clone())],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("table {} segment 0 of 1", env.table)),
        "{stderr}"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "fatal errors are not retried"
    );
    assert!(env.manifest("t2", 0).await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_read_budget_holds_over_a_run() {
    let env = TestEnv::new("budget").await;
    let items = fixtures::bench_items(2500, 2);
    env.load(items.clone()).await;
    env.write_schemas(&infer(&env.table, &items));
    let budget = 40.0;
    let mut args = segment_args("b", "1", "0", &env.table);
    args.extend(["--max-read-units", "40"]);
    let out = env.run(&args, &[]);
    assert!(out.status.success(), "{}", show(&out));
    let m = env.manifest("b", 0).await.unwrap();
    assert_eq!(m.items_scanned, items.len() as u64);
    assert!(m.read_units > 0.0, "consumed capacity is recorded");
    let rate = m.read_units / (m.duration_ms as f64 / 1000.0);
    assert!(
        m.duration_ms >= 3000,
        "the run was long enough to measure: {} ms",
        m.duration_ms
    );
    assert!(
        rate <= budget * 1.10,
        "{rate:.1} units/s over a budget of {budget}"
    );
    assert!(
        rate >= budget * 0.5,
        "{rate:.1} units/s wastes a budget of {budget}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_usage_exits_2_with_a_clear_message() {
    let env = TestEnv::new("usage").await;
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, String)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            segment_args("u", "4", "4", "x"),
            vec![],
            "segment 4 does not exist",
        ),
        (
            segment_args("u", "4", "auto", "x"),
            vec![],
            "AWS_BATCH_JOB_ARRAY_INDEX",
        ),
        (segment_args("bad/run", "1", "0", "x"), vec![], "run id"),
        (
            segment_args("u", "1", "0", "x"),
            vec![("ETL_BUCKET", "no-such-bucket-here".into())],
            "no-such-bucket-here",
        ),
        (
            segment_args("u", "1", "0", "no-such-table"),
            vec![],
            "no-such-table",
        ),
        (
            vec![
                "segment",
                "--run-id",
                "u",
                "--total-segments",
                "1",
                "--segment",
                "0",
            ],
            vec![],
            "--table",
        ),
        (
            segment_args("u", "1", "0", "x"),
            vec![
                ("ETL_PART_COMPRESSION", "gzip".into()),
                ("ETL_COMPRESSION_LEVEL", "12".into()),
            ],
            "compression level 12 is not valid for gzip; use 0 to 9",
        ),
    ];
    for (args, extra, expected) in cases {
        let out = env.run(&args, &extra);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(expected),
            "{args:?}: expected {expected:?} in\n{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scan_failing_part_way_commits_nothing_and_its_retry_goes_on_from_the_checkpoint() {
    let env = TestEnv::with_demo("midfail", 6).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    // The third Scan page fails for good; the first two were already converted.
    let proxy = FaultProxy::start(
        &env.stack.dynamodb,
        Arc::new(move |head| {
            let is_scan = head.is_scan();
            (is_scan && counted.fetch_add(1, Ordering::SeqCst) == 2)
                .then(Injected::dynamodb_validation)
        }),
    )
    .await;
    let mut args = segment_args("m", "1", "0", &env.table);
    args.extend(["--page-items", "10"]); // small pages
    let out = env.run(&args, &[("ETL_DYNAMODB_ENDPOINT", proxy.url.clone())]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        calls.load(Ordering::SeqCst) >= 3,
        "the scan had pages before failing"
    );
    assert!(
        env.manifest("m", 0).await.is_none(),
        "a failed scan commits nothing"
    );
    // What is left is a checkpoint of the two pages and exactly the parts it names.
    let checkpoint: serde_json::Value = serde_json::from_slice(
        &env.get("dynamo-etl/runs/m/segments/0/checkpoint.json")
            .await
            .expect("the failed scan saved a checkpoint"),
    )
    .unwrap();
    assert_eq!(checkpoint["items_scanned"], 20);
    let mut named: Vec<String> = checkpoint["tables"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|t| t["files"].as_array().unwrap().iter())
        .map(|f| f["key"].as_str().unwrap().to_string())
        .collect();
    named.push("dynamo-etl/runs/m/segments/0/checkpoint.json".into());
    named.sort();
    let mut left = env.keys("dynamo-etl/runs/m/segments/0/").await;
    left.sort();
    assert_eq!(left, named);
    let uploads = env
        .s3
        .list_multipart_uploads()
        .bucket(&env.bucket)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty());

    // The retry scans on from the checkpoint: every item exactly once.
    env.run_ok(&[
        "retry",
        "phase-1",
        "1",
        "0",
        "--run-id",
        "m",
        "--page-items",
        "10",
    ]);
    let manifest = env.manifest("m", 0).await.unwrap();
    assert_eq!(manifest.resumed.as_ref().map(|r| r.items), Some(20));
    let items = fixtures::demo_items(6);
    assert_eq!(manifest.items_scanned, items.len() as u64);
    let schemas = infer(&env.table, &items);
    let decoded = env.decoded_rows("m", &schemas, 1).await;
    let mut keys: Vec<String> = decoded.values().flatten().map(key_of).collect();
    keys.sort();
    let mut expected: Vec<String> = items.iter().map(key_of).collect();
    expected.sort();
    assert_eq!(keys, expected, "every item once");
    assert!(
        env.get("dynamo-etl/runs/m/segments/0/checkpoint.json")
            .await
            .is_none(),
        "the committed segment's checkpoint is gone"
    );
}

/// A Scan answered with `body` (status 200) by a proxy in front of DynamoDB Local.
async fn scan_answered_with(env: &TestEnv, body: &'static str) -> FaultProxy {
    FaultProxy::start(
        &env.stack.dynamodb,
        Arc::new(move |head| {
            let is_scan = head.is_scan();
            is_scan.then(|| Injected {
                hang: false,
                drop: false,
                truncate: None,
                damage: false,
                status: 200,
                content_type: "application/x-amz-json-1.0",
                body: body.into(),
            })
        }),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_phase_1_cannot_read_fail_the_segment_and_unknown_types_reject_only_their_item() {
    let env = TestEnv::with_demo("pages", 1).await;
    let table_named = format!("table {}", env.table);

    // A well-formed page with an item of a DynamoDB type this version does not know: that item
    // is rejected by key with the type named, and the segment commits.
    let proxy = scan_answered_with(
        &env,
        r#"{"Items":[{"pk":{"S":"ORG#new"},"sk":{"S":"META"},"shape":{"VECTOR":[1,2]}}],"Count":1,"ScannedCount":1}"#,
    )
    .await;
    let out = env.run(
        &segment_args("p1", "1", "0", &env.table),
        &[("ETL_DYNAMODB_ENDPOINT", proxy.url.clone())],
    );
    assert!(out.status.success(), "{}", show(&out));
    let manifest = env.manifest("p1", 0).await.unwrap();
    assert_eq!(manifest.items_scanned, 1);
    assert_eq!(manifest.items_rejected.len(), 1, "{manifest:?}");
    let rejection = &manifest.items_rejected[0];
    assert_eq!(rejection.key, r#"{"pk":"ORG#new","sk":"META"}"#);
    assert!(rejection.reason.contains("VECTOR"), "{}", rejection.reason);

    // An item that is not DynamoDB JSON: exit 2 naming table, segment and page, nothing committed.
    let proxy = scan_answered_with(
        &env,
        r#"{"Items":[{"pk":{"S":"ORG#1"},"sk":{}}],"Count":1,"ScannedCount":1}"#,
    )
    .await;
    let out = env.run(
        &segment_args("p2", "1", "0", &env.table),
        &[("ETL_DYNAMODB_ENDPOINT", proxy.url.clone())],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        table_named.as_str(),
        "segment 0",
        "scan page 1",
        "no type key",
        "retry phase-1 1 0",
    ] {
        assert!(
            stderr.contains(expected),
            "{expected:?} missing in\n{stderr}"
        );
    }
    assert!(env.manifest("p2", 0).await.is_none());

    // A body that is not JSON at all came damaged: exit 1 (retry), naming table and segment.
    let proxy = scan_answered_with(&env, r#"{"Items":[{"pk":"#).await;
    let out = env.run(
        &segment_args("p3", "1", "0", &env.table),
        &[("ETL_DYNAMODB_ENDPOINT", proxy.url.clone())],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{table_named} segment 0 of 1")),
        "{stderr}"
    );
    assert!(stderr.contains("not valid JSON"), "{stderr}");
    assert!(env.manifest("p3", 0).await.is_none());
}
