//! Phases 2–4 on the real PostgreSQL: values survive, uploads are exactly once (also across a
//! killed process), the gate refuses incomplete runs, the swap waits for locks and then gives up
//! cleanly, rollback restores the previous generation, and what happens to views is pinned down.

use crate::support::{infer, key_of, show, TestEnv};
use dynamo_etl::schema::unclassified_schema;
use dynamo_etl::schema::DataSchema;
use dynamo_etl::staging::parts::codec::{PartCompression, PartEncoder};
use dynamo_etl::testkit::decode::decompress;
use dynamo_etl::testkit::decode::{as_instants, decode_row, items_equal};
use dynamo_etl::testkit::fixtures;
use dynamo_etl::value::Item;
use sqlx::{Executor, Row};
use std::time::{Duration, Instant};

/// Every row of `schema.table` as the CSV-shaped fields `decode_row` reads, timestamps as UTC
/// RFC 3339 with microseconds.
async fn rows_of(env: &TestEnv, schema: &str, table: &DataSchema) -> Vec<Item> {
    env.text_rows(schema, table)
        .await
        .iter()
        .map(|fields| decode_row(table, fields).unwrap_or_else(|e| panic!("{}: {e}", table.table)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_value_survives_phase_1_to_replace() {
    let env = TestEnv::new("wvalues").await;
    let mut items = fixtures::adversarial_items();
    let rejected = items.pop().unwrap();
    items.extend(fixtures::demo_items(2));
    let mut all = items.clone();
    all.push(rejected);
    env.load(all).await;
    let schemas = infer(&env.table, &items);
    env.write_schemas(&schemas);
    // Segment 1 writes gzip parts, the others zstd (the default): both must load exactly.
    for k in 0..3 {
        let codec = if k == 1 { "gzip" } else { "zstd" };
        env.phase1_with("v1", 3, k, &[("ETL_PART_COMPRESSION", codec.to_string())]);
        let manifest = env.manifest("v1", k).await.unwrap();
        let keys: Vec<&str> = manifest
            .tables
            .values()
            .flat_map(|t| t.files.iter().map(|f| f.key.as_str()))
            .collect();
        assert!(!keys.is_empty(), "segment {k} wrote parts");
        assert!(
            keys.iter().all(|k| k.ends_with(if codec == "gzip" {
                ".csv.gz"
            } else {
                ".csv.zst"
            })),
            "segment {k}: {keys:?}"
        );
    }
    env.run_ok(&["prepare", "--run-id", "v1"]);
    for k in 0..3 {
        env.run_ok(&["upload", "--run-id", "v1", "--segment", &k.to_string()]);
    }
    env.run_ok(&["replace", "--run-id", "v1"]);

    let mut tables = schemas.clone();
    tables.push(unclassified_schema(&env.table, &["pk".into(), "sk".into()]));
    let mut loaded = Vec::new();
    for table in &tables {
        for item in rows_of(&env, &env.target, table).await {
            loaded.push((table.clone(), item));
        }
    }
    assert_eq!(loaded.len(), items.len(), "one row per loadable item");
    for source in &items {
        let (table, back) = loaded
            .iter()
            .find(|(_, r)| key_of(r) == key_of(source))
            .unwrap_or_else(|| panic!("{} missing from the warehouse", key_of(source)));
        assert!(
            items_equal(&as_instants(source, table), &as_instants(back, table)),
            "{} changed in the warehouse:\n source {source:?}\n loaded {back:?}",
            key_of(source)
        );
    }
    // Spot checks of the representation itself, straight from SQL.
    let mut conn = env.pg().await;
    let edge = schemas.iter().find(|s| s.table == "edge").unwrap();
    let col = |a: &str| {
        edge.columns
            .iter()
            .find(|c| c.attribute == a)
            .unwrap()
            .column
            .clone()
    };
    let row = sqlx::query(&format!(
        "SELECT \"{}\"::text, \"{}\" IS NULL, \"{}\" = '', \"_extra\" ? 'nothing' FROM \"{}\".edge WHERE pk = 'EDGE#0'",
        col("big"), col("nothing"), col("empty"), env.target
    ))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        row.get::<String, _>(0),
        "12345678901234567890123456789012345678"
    );
    assert!(
        row.get::<bool, _>(1),
        "a DynamoDB NULL is SQL NULL in its column"
    );
    assert!(
        row.get::<bool, _>(2),
        "an empty string stays an empty string"
    );
    assert!(
        row.get::<bool, _>(3),
        "and the explicit NULL is remembered in _extra"
    );
    // Binary is bytea, byte for byte.
    let raw: (String, Vec<u8>) = sqlx::query_as(&format!(
        "SELECT pg_typeof(\"{0}\")::text, \"{0}\" FROM \"{1}\".edge WHERE pk = 'EDGE#0'",
        col("raw"),
        env.target
    ))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(raw.0, "bytea");
    assert_eq!(raw.1, [0x00, 0xff, 0xfe, 0x80, 0x0a, 0x0d, 0x22, 0x2c]);
}

#[tokio::test(flavor = "multi_thread")]
async fn uploading_a_segment_twice_never_duplicates() {
    let env = TestEnv::with_demo("wtwice", 3).await;
    let items = fixtures::demo_items(3);
    for k in ["0", "1"] {
        env.run_ok(&[
            "segment",
            "--run-id",
            "r",
            "--table",
            &env.table,
            "--total-segments",
            "2",
            "--segment",
            k,
        ]);
    }
    env.run_ok(&["prepare", "--run-id", "r"]);
    env.run_ok(&["upload", "--run-id", "r", "--segment", "0"]);
    let again = env.run_ok(&["upload", "--run-id", "r", "--segment", "0"]);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("already loaded"),
        "{}",
        show(&again)
    );
    env.run_ok(&["retry", "phase-3", "1", "--run-id", "r"]);
    env.run_ok(&["retry", "phase-3", "1", "--run-id", "r"]);
    let staging = format!("{}_staging", env.target);
    let total: i64 = {
        let mut n = 0;
        for t in ["org", "group", "fin", "vuln", "_unclassified"] {
            n += env.count(&staging, t).await;
        }
        n
    };
    assert_eq!(total, items.len() as i64);
    env.run_ok(&["replace", "--run-id", "r"]);
    assert_eq!(env.served_run(&env.target).await.as_deref(), Some("r"));
}

#[tokio::test(flavor = "multi_thread")]
async fn uploading_all_segments_loads_what_is_committed_and_names_what_is_not() {
    let env = TestEnv::with_demo("wall", 3).await;
    let items = fixtures::demo_items(3);
    env.phase1("a", 3, 0);
    env.phase1("a", 3, 2);
    env.run_ok(&["prepare", "--run-id", "a"]);
    let partial = env.run(&["upload", "--run-id", "a", "--all-segments"], &[]);
    assert_eq!(partial.status.code(), Some(1), "{}", show(&partial));
    let err = String::from_utf8_lossy(&partial.stderr);
    assert!(
        err.contains("segment(s) 1 have no committed manifest"),
        "{err}"
    );
    assert!(
        err.contains("run: dynamo-etl retry phase-1 3 1 --run-id a"),
        "{err}"
    );
    assert!(
        err.contains("run: dynamo-etl upload --all-segments --run-id a"),
        "{err}"
    );
    let refused = env.run(&["replace", "--run-id", "a"], &[]);
    assert_ne!(refused.status.code(), Some(0), "{}", show(&refused));

    env.phase1("a", 3, 1);
    let rest = env.run_ok(&["upload", "--run-id", "a", "--all-segments"]);
    let out = String::from_utf8_lossy(&rest.stdout);
    assert!(
        out.contains("1 segment(s) loaded") && out.contains("2 loaded before"),
        "{out}"
    );
    let staging = format!("{}_staging", env.target);
    let mut total = 0;
    for t in ["org", "group", "fin", "vuln", "_unclassified"] {
        total += env.count(&staging, t).await;
    }
    assert_eq!(total, items.len() as i64);
    env.run_ok(&["replace", "--run-id", "a"]);
    assert_eq!(env.served_run(&env.target).await.as_deref(), Some("a"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_load_killed_before_commit_leaves_nothing_and_the_retry_is_exact() {
    let env = TestEnv::with_demo("wkill", 4).await;
    let items = fixtures::demo_items(4);
    env.phase1("k", 1, 0);
    env.run_ok(&["prepare", "--run-id", "k"]);
    // Tables load in name order (fin, group, org, vuln): stall the vuln part so the process is
    // killed while fin, group and org are copied but not committed.
    env.kill_when_stalled(
        &["upload", "--run-id", "k", "--segment", "0"],
        "ETL_S3_ENDPOINT",
        &env.stack.s3,
        |head| head.method == "GET" && head.path.contains("/vuln/part-"),
    )
    .await;

    let staging = format!("{}_staging", env.target);
    // The server notices the dropped session and rolls its transaction back.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut conn = env.pg().await;
        let busy: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dynamo-etl' AND state <> 'idle'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        if busy == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for t in ["fin", "group", "org", "vuln"] {
        assert_eq!(
            env.count(&staging, t).await,
            0,
            "{t}: nothing of a killed load may be committed"
        );
    }
    let out = env.run(&["replace", "--run-id", "k"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));

    env.run_ok(&["retry", "phase-3", "0", "--run-id", "k"]);
    let mut total = 0;
    for t in ["fin", "group", "org", "vuln", "_unclassified"] {
        total += env.count(&staging, t).await;
    }
    assert_eq!(total, items.len() as i64, "exact counts after the retry");
    env.run_ok(&["replace", "--run-id", "k"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gate_refuses_an_incomplete_run_and_keeps_serving_the_old_one() {
    let env = TestEnv::with_demo("wgate", 3).await;
    env.pipeline("good", 2);
    let served = env.count(&env.target, "vuln").await;

    // Run 2: segment 1 never scanned, segment 2 scanned but not loaded.
    for k in ["0", "2"] {
        env.run_ok(&[
            "segment",
            "--run-id",
            "bad",
            "--table",
            &env.table,
            "--total-segments",
            "3",
            "--segment",
            k,
        ]);
    }
    env.run_ok(&["prepare", "--run-id", "bad"]);
    env.run_ok(&["upload", "--run-id", "bad", "--segment", "0"]);
    let out = env.run(&["replace", "--run-id", "bad"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "segments 1 of 3 have no phase-1 manifest",
        "segments 2 of 3 are not loaded",
        "dynamo-etl retry phase-1 3 1 --run-id bad",
        "dynamo-etl retry phase-3 1 --run-id bad",
        "dynamo-etl retry phase-3 2 --run-id bad",
        "is unchanged",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in\n{stderr}"
        );
    }
    assert_eq!(env.served_run(&env.target).await.as_deref(), Some("good"));
    assert_eq!(env.count(&env.target, "vuln").await, served);

    // Upload with no manifest: exit 1 naming the phase-1 retry.
    let out = env.run(&["upload", "--run-id", "bad", "--segment", "1"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "segment 1 of run bad has no manifest (phase 1 did not commit it)",
        "\n  run: dynamo-etl retry phase-1 3 1 --run-id bad",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?}: {}",
            show(&out)
        );
    }

    // A tampered staging table (rows added behind the ledger's back) is refused too.
    env.run_ok(&["retry", "phase-1", "3", "1", "--run-id", "bad"]);
    env.run_ok(&["retry", "phase-3", "1", "--run-id", "bad"]);
    env.run_ok(&["retry", "phase-3", "2", "--run-id", "bad"]);
    let mut conn = env.pg().await;
    conn.execute(
        format!(
            "INSERT INTO \"{}_staging\".org (pk) VALUES ('ORG#intruder')",
            env.target
        )
        .as_str(),
    )
    .await
    .unwrap();
    let out = env.run(&["replace", "--run-id", "bad"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("but the manifests add up to"),
        "{}",
        show(&out)
    );
    assert_eq!(env.served_run(&env.target).await.as_deref(), Some("good"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_swap_waits_for_locks_then_gives_up_cleanly_or_succeeds_when_they_go() {
    let env = TestEnv::with_demo("wlock", 2).await;
    env.pipeline("one", 1);
    env.pipeline("two", 1);
    // Now run "one" is the previous generation; a long report holds it open.
    env.phase1("three", 1, 0);
    env.run_ok(&["prepare", "--run-id", "three"]);
    env.run_ok(&["upload", "--run-id", "three", "--segment", "0"]);
    let mut reader = env.pg().await;
    reader.execute("BEGIN").await.unwrap();
    reader
        .execute(format!("SELECT count(*) FROM \"{}_previous\".org", env.target).as_str())
        .await
        .unwrap();
    let started = Instant::now();
    let out = env.run(
        &[
            "replace",
            "--run-id",
            "three",
            "--lock-timeout-seconds",
            "2",
        ],
        &[],
    );
    let waited = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("lock timeout"), "{stderr}");
    assert!(
        stderr.contains("dynamo-etl replace --run-id three"),
        "{stderr}"
    );
    assert!(
        waited >= Duration::from_secs(2),
        "gave up after {waited:?}, before the timeout"
    );
    assert_eq!(
        env.served_run(&env.target).await.as_deref(),
        Some("two"),
        "target untouched"
    );
    assert_eq!(
        env.served_run(&format!("{}_staging", env.target))
            .await
            .as_deref(),
        Some("three")
    );

    // The reader finishes while replace waits: replace then succeeds.
    let releaser = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        reader.execute("COMMIT").await.unwrap();
    });
    let out = env.run(
        &[
            "replace",
            "--run-id",
            "three",
            "--lock-timeout-seconds",
            "20",
        ],
        &[],
    );
    releaser.await.unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(env.served_run(&env.target).await.as_deref(), Some("three"));
    assert_eq!(
        env.served_run(&format!("{}_previous", env.target))
            .await
            .as_deref(),
        Some("two")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_restores_the_previous_generation() {
    let env = TestEnv::with_demo("wroll", 2).await;
    let out = env.run(&["rollback"], &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "nothing to roll back to yet, and retrying will not change that: {}",
        show(&out)
    );
    env.pipeline("first", 2);
    let first = env.count(&env.target, "org").await;
    // The second run sees one more organization.
    let extra: Vec<Item> = fixtures::demo_items(3)
        .into_iter()
        .filter(|i| key_of(i).starts_with("ORG#org-002"))
        .collect();
    fixtures::write_items(&env.dynamodb, &env.table, extra, 1)
        .await
        .unwrap();
    env.pipeline("second", 2);
    assert_eq!(env.count(&env.target, "org").await, first + 1);

    let dry = env.run_ok(&["rollback", "--dry-run"]);
    assert!(
        String::from_utf8_lossy(&dry.stdout).contains("RENAME TO"),
        "{}",
        show(&dry)
    );
    assert_eq!(
        env.served_run(&env.target).await.as_deref(),
        Some("second"),
        "dry run changes nothing"
    );

    env.run_ok(&["rollback"]);
    assert_eq!(env.served_run(&env.target).await.as_deref(), Some("first"));
    assert_eq!(env.count(&env.target, "org").await, first);
    assert_eq!(
        env.served_run(&format!("{}_previous", env.target))
            .await
            .as_deref(),
        Some("second")
    );
    // And a rollback can itself be undone.
    env.run_ok(&["rollback"]);
    assert_eq!(env.served_run(&env.target).await.as_deref(), Some("second"));
}

#[tokio::test(flavor = "multi_thread")]
async fn views_follow_their_tables_unless_recreated_after_the_swap() {
    let env = TestEnv::with_demo("wviews", 2).await;
    env.pipeline("v1", 1);
    let consumers = format!("{}_bi", env.target);
    let view_sql = format!(
        "CREATE OR REPLACE VIEW \"{consumers}\".orgs AS SELECT pk FROM \"{}\".org",
        env.target
    );
    let mut conn = env.pg().await;
    conn.execute(format!("CREATE SCHEMA \"{consumers}\"").as_str())
        .await
        .unwrap();
    conn.execute(view_sql.as_str()).await.unwrap();
    let marker = |run: &str| format!("COMMENT ON VIEW \"{consumers}\".orgs IS '{run}'");
    let view_count = || async {
        let mut c = env.pg().await;
        sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM \"{consumers}\".orgs"))
            .fetch_one(&mut c)
            .await
    };
    assert_eq!(view_count().await.unwrap(), 2);

    // Without help, a PostgreSQL view stays bound to the tables it was created on, which the
    // swap moves to <target>_previous: it keeps showing the old generation.
    let extra: Vec<Item> = fixtures::demo_items(3)
        .into_iter()
        .filter(|i| key_of(i).starts_with("ORG#org-002"))
        .collect();
    fixtures::write_items(&env.dynamodb, &env.table, extra, 1)
        .await
        .unwrap();
    env.pipeline("v2", 1);
    assert_eq!(env.count(&env.target, "org").await, 3);
    assert_eq!(
        view_count().await.unwrap(),
        2,
        "the view still reads the previous generation"
    );

    // The next swap drops <target>_previous, and the view with it (CASCADE).
    env.pipeline("v3", 1);
    assert!(
        view_count().await.is_err(),
        "the view went with the dropped generation"
    );

    // The recommended practice: re-create consumer views inside the swap transaction.
    let file = env.schemas_dir.path().join("post-swap.sql");
    std::fs::write(&file, format!("{view_sql};\n{};", marker("recreated"))).unwrap();
    let post = [("ETL_POST_SWAP_SQL", file.display().to_string())];
    for run in ["v4", "v5"] {
        for args in [
            vec![
                "segment",
                "--run-id",
                run,
                "--table",
                env.table.as_str(),
                "--total-segments",
                "1",
                "--segment",
                "0",
            ],
            vec!["prepare", "--run-id", run],
            vec!["upload", "--run-id", run, "--segment", "0"],
            vec!["replace", "--run-id", run],
        ] {
            let out = env.run(&args, &post);
            assert!(out.status.success(), "{}", show(&out));
        }
        assert_eq!(
            view_count().await.unwrap(),
            3,
            "after {run} the view reads the new target"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn warehouse_commands_explain_bad_configuration() {
    let env = TestEnv::with_demo("wconf", 1).await;
    env.phase1("c", 1, 0);
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, String)>, i32, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["prepare", "--run-id", "nope"],
            vec![],
            2,
            "run nope has no plan",
        ),
        (
            vec!["prepare", "--run-id", "c"],
            vec![("ETL_WAREHOUSE_URL", "mysql://x".into())],
            2,
            "--dialect",
        ),
        (
            vec!["prepare", "--run-id", "c"],
            vec![("ETL_TARGET", "Bad Name".into())],
            2,
            "target",
        ),
        (
            vec!["prepare", "--run-id", "c", "--dialect", "redshift"],
            vec![],
            2,
            "--redshift-iam-role",
        ),
        (
            vec!["prepare", "--run-id", "c"],
            vec![(
                "ETL_WAREHOUSE_URL",
                "postgres://etl:hunter2@127.0.0.1:1/db".into(),
            )],
            1,
            "postgres://***@127.0.0.1:1/db",
        ),
        (
            vec!["upload", "--run-id", "c", "--segment", "0"],
            vec![],
            1,
            "dynamo-etl prepare --run-id c",
        ),
        (
            vec!["upload", "--run-id", "c", "--segment", "5"],
            vec![],
            2,
            "segment 5 does not exist",
        ),
    ];
    for (args, extra, code, expected) in cases {
        let out = env.run(&args, &extra);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", show(&out));
        assert!(
            stderr.contains(expected),
            "{args:?}: expected {expected:?} in\n{stderr}"
        );
        assert!(
            !stderr.contains("hunter2"),
            "a password reached the output: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_part_fails_the_load_naming_table_part_and_line_and_commits_nothing() {
    let env = TestEnv::with_demo("wbad", 2).await;
    env.phase1("b", 1, 0);
    env.run_ok(&["prepare", "--run-id", "b"]);
    let manifest = env.manifest("b", 0).await.unwrap();
    let org_part = manifest.tables["org"].files[0].key.clone();
    let original = env.get(&org_part).await.unwrap();
    // A replacement part that its manifest vouches for (size and SHA-256), as a phase 1 that
    // wrote a row the warehouse rejects would leave: the warehouse's own checks must catch it.
    let manifest_key = "dynamo-etl/runs/b/segments/0/manifest.json".to_string();
    let put = |body: Vec<u8>| {
        let (s3, bucket, key) = (env.s3.clone(), env.bucket.clone(), org_part.clone());
        let manifest_key = manifest_key.clone();
        async move {
            let get = s3.get_object().bucket(&bucket).key(&manifest_key).send();
            let bytes = get
                .await
                .unwrap()
                .body
                .collect()
                .await
                .unwrap()
                .into_bytes();
            let mut manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            let file = &mut manifest["tables"]["org"]["files"][0];
            file["bytes"] = body.len().into();
            file["sha256"] = dynamo_etl::testkit::decode::sha256_hex(&body).into();
            let put = |key: &str, body: Vec<u8>| {
                s3.put_object()
                    .bucket(&bucket)
                    .key(key)
                    .body(body.into())
                    .send()
            };
            put(&key, body).await.unwrap();
            put(&manifest_key, manifest.to_string().into_bytes())
                .await
                .unwrap();
        }
    };
    // Replacement parts in the codec the part's key names.
    let codec = PartCompression::of_part(&org_part).unwrap();
    let compress = |text: &str| {
        let mut e = PartEncoder::new(codec, 1, 0);
        e.write_all(text.as_bytes());
        e.finish()
    };
    let org = infer(&env.table, &fixtures::demo_items(2))
        .into_iter()
        .find(|s| s.table == "org")
        .unwrap();
    let employees = org
        .columns
        .iter()
        .position(|c| c.attribute == "employees")
        .unwrap();
    // A row whose bigint column holds text: the warehouse refuses it.
    let mut fields: Vec<String> = (0..org.columns.len() + 1)
        .map(|_| "\\N".to_string())
        .collect();
    fields[0] = "\"ORG#bad\"".into();
    fields[employees] = "\"many\"".into();
    put(compress(&format!("{}\n", fields.join(",")))).await;
    let out = env.run(&["upload", "--run-id", "b", "--segment", "0"], &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a data error is not fixed by retrying: {}",
        show(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "loading s3://",
        &org_part,
        "into org failed",
        "invalid input syntax for type bigint",
        "line 1",
        "dynamo-etl retry phase-3 0 --run-id b",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in\n{stderr}"
        );
    }
    let staging = format!("{}_staging", env.target);
    for t in ["fin", "group", "org"] {
        assert_eq!(
            env.count(&staging, t).await,
            0,
            "{t}: a failed load commits nothing"
        );
    }

    // A part with fewer rows than its manifest says: refused, nothing committed.
    let text = String::from_utf8(decompress(&org_part, &original).unwrap()).unwrap();
    let fewer: String = text.lines().skip(1).map(|l| format!("{l}\n")).collect();
    put(compress(&fewer)).await;
    let out = env.run(&["upload", "--run-id", "b", "--segment", "0"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rows by its manifest but COPY loaded"),
        "{}",
        show(&out)
    );
    assert_eq!(env.count(&staging, "fin").await, 0);

    // The intact part loads.
    put(original).await;
    env.run_ok(&["upload", "--run-id", "b", "--segment", "0"]);
    assert_eq!(env.count(&staging, "org").await, 2);
}
