//! `follow` through the real binary against DynamoDB Local's stream: after a full copy, inserts,
//! updates that change and remove attributes, deletes and entity moves are applied batch by
//! batch, and the served tables then equal a fresh full copy of the table, value by value; a
//! restart goes on from the positions the target holds; a follow killed (SIGKILL) inside its
//! apply leaves the target as it was and the next one applies the batch; a second follow of the
//! same target exits 1; a full copy swapped in is re-based onto; a lost position is reported
//! with the command that catches up; a table whose stream carries no new images is refused
//! naming the `update-table` command.

use std::collections::HashMap;

use crate::support::{find, show, TestEnv};
use aws_sdk_dynamodb::types::{AttributeValue, StreamSpecification, StreamViewType};
use dynamo_etl::value::Item;

const TABLES: [&str; 6] = ["org", "group", "fin", "vuln", "_unclassified", "_overflow"];

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn key(pk: &str, sk: &str) -> Item {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

async fn enable_stream(env: &TestEnv, view: StreamViewType) {
    env.dynamodb
        .update_table()
        .table_name(&env.table)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(view)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

/// A demo table with a stream, groups classified by a non-key attribute (so changing it moves a
/// group between `group` and `_unclassified`), copied once into the target as run `base`.
async fn followed(name: &str) -> (TestEnv, Vec<Item>) {
    let env = TestEnv::with_demo(name, 3).await;
    let items = dynamo_etl::testkit::fixtures::demo_items(3);
    let path = env.schemas_dir.path().join(&env.table).join("group.json");
    let mut group: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    group["rule"] = serde_json::json!({"attribute": "service", "prefix": "white"});
    std::fs::write(&path, serde_json::to_string_pretty(&group).unwrap()).unwrap();
    enable_stream(&env, StreamViewType::NewAndOldImages).await;
    env.run_ok(&["run", "--table", &env.table, "--run-id", "base"]);
    (env, items)
}

/// Fails unless the target serves exactly what a fresh full copy of the table holds now.
async fn assert_served_equals_table(env: &TestEnv, when: &str) {
    let fresh = format!("{}_fresh", env.target);
    let copied = env.run(
        &["run", "--table", &env.table],
        &[("ETL_TARGET", fresh.clone())],
    );
    assert!(copied.status.success(), "{when}: {}", show(&copied));
    for t in TABLES {
        for (x, y) in [(env.target.as_str(), fresh.as_str()), (&fresh, &env.target)] {
            assert_eq!(
                env.missing_rows(x, y, t).await,
                0,
                "{when}: {t}: rows of {x} not in {y}"
            );
        }
    }
}

fn follow_args<'a>(env: &'a TestEnv, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "follow",
        "--table",
        &env.table,
        "--batch-seconds",
        "2",
        "--idle-poll-ms",
        "200",
    ];
    args.extend_from_slice(extra);
    args
}

fn follow_until_caught_up(env: &TestEnv) -> std::process::Output {
    let out = env.run(&follow_args(env, &["--until-caught-up"]), &[]);
    assert!(out.status.success(), "{}", show(&out));
    out
}

async fn put(env: &TestEnv, item: Item) {
    env.dynamodb
        .put_item()
        .table_name(&env.table)
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
}

async fn delete(env: &TestEnv, pk: &str, sk: &str) {
    env.dynamodb
        .delete_item()
        .table_name(&env.table)
        .set_key(Some(key(pk, sk)))
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn follow_keeps_the_served_tables_equal_to_the_table() {
    let (env, items) = followed("follow").await;

    // Inserts, an update changing one attribute and removing another, the same item updated
    // twice (the later write wins), a delete, and a group moving to _unclassified.
    let org = find(&items, "ORG#").clone();
    let mut renamed = org.clone();
    renamed.insert("name".into(), s("renamed once"));
    put(&env, renamed.clone()).await;
    renamed.insert("name".into(), s("renamed twice: this one wins"));
    renamed.insert("mascot".into(), s("heron"));
    let dropped = renamed
        .keys()
        .find(|k| !["pk", "sk", "name", "mascot"].contains(&k.as_str()))
        .cloned();
    if let Some(attr) = &dropped {
        renamed.remove(attr);
    }
    put(&env, renamed.clone()).await;
    let mut new_fin = find(&items, "FIN#").clone();
    new_fin.insert("pk".into(), s("FIN#followed-9"));
    new_fin.insert("title".into(), s("inserted while following"));
    put(&env, new_fin.clone()).await;
    let gone = find(&items, "VULN#").clone();
    delete(&env, gone["pk"].as_s().unwrap(), gone["sk"].as_s().unwrap()).await;
    let grp = items
        .iter()
        .find(|i| i["pk"].as_s().unwrap().starts_with("GROUP#") && i["service"] == s("white"))
        .unwrap()
        .clone();
    let mut moved = grp.clone();
    moved.insert("service".into(), s("black"));
    put(&env, moved.clone()).await;

    let out = follow_until_caught_up(&env);
    let text = show(&out);
    assert!(text.contains("applied to"), "{text}");
    assert!(text.contains("caught up"), "{text}");
    assert_served_equals_table(&env, "after the first follow").await;
    // `mascot` has no column: it drifted to `_extra`, which the batch line counts and `drift`
    // reports for the batch as for a full copy (the batch keeps its manifest for that).
    let batch = text
        .lines()
        .find_map(|l| l.strip_prefix("batch ").and_then(|r| r.split(' ').next()))
        .expect("a batch line")
        .to_string();
    let drift = env.run(&["drift", "--run-id", &batch], &[]);
    assert!(show(&drift).contains("mascot"), "{}", show(&drift));
    assert_eq!(
        env.count(&env.target, "vuln").await,
        env.count(&format!("{}_fresh", env.target), "vuln").await
    );

    // A restart goes on from the positions the target holds: the inserted item deleted, the
    // moved group moved back, the renamed organization deleted.
    delete(&env, "FIN#followed-9", new_fin["sk"].as_s().unwrap()).await;
    put(&env, grp.clone()).await;
    delete(&env, org["pk"].as_s().unwrap(), org["sk"].as_s().unwrap()).await;
    let out = follow_until_caught_up(&env);
    assert!(show(&out).contains("caught up"), "{}", show(&out));
    assert_served_equals_table(&env, "after a restart").await;

    // Nothing new: nothing applied, the tables unchanged.
    let out = follow_until_caught_up(&env);
    assert!(show(&out).contains("0 batches"), "{}", show(&out));
    assert_served_equals_table(&env, "after a follow with nothing to do").await;
    // Each batch's apply was proven and moved the target's kept fingerprints on: verify proves
    // the served rows against them.
    let out = env.run_ok(&["verify", "--run-id", "base", "--target", &env.target]);
    assert!(!show(&out).contains("MISMATCH"), "{}", show(&out));

    // The served tables are indexed by key (built before the swap): one row per key, a
    // guarantee consumers can rely on, and what keeps an apply's delete-join small.
    let mut conn = env.pg().await;
    let unique: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_indexes WHERE schemaname = $1 AND indexdef LIKE 'CREATE UNIQUE INDEX%(pk, sk)' ORDER BY 1",
    )
    .bind(&env.target)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(unique, ["_unclassified", "fin", "group", "org", "vuln"]);
    let duplicate = sqlx::query(&format!(
        "INSERT INTO \"{0}\".\"vuln\" SELECT * FROM \"{0}\".\"vuln\" LIMIT 1",
        env.target
    ))
    .execute(&mut conn)
    .await
    .unwrap_err();
    assert!(
        duplicate.to_string().contains("duplicate key"),
        "{duplicate}"
    );

    // status shows the freshness, the positions and the rate.
    let status = env.run(
        &["status", "--run-id", "base", "--target", &env.target],
        &[],
    );
    let text = show(&status);
    assert!(
        text.contains(&format!("follow of {}", env.target)),
        "{text}"
    );
    assert!(
        text.contains("freshness: every change written before"),
        "{text}"
    );
    assert!(text.contains("shard "), "{text}");
    // The machine-readable file for alarms.
    let file = env
        .get(&format!("dynamo-etl/follow/{}/status.json", env.target))
        .await
        .expect("the status file");
    let status: serde_json::Value = serde_json::from_slice(&file).unwrap();
    assert!(status["complete_through"].is_string(), "{status}");
    assert!(!status["shards"].as_array().unwrap().is_empty(), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follow_killed_in_its_apply_applies_nothing_and_the_next_one_everything() {
    let (env, items) = followed("follow-kill").await;
    for prefix in ["ORG#", "GROUP#", "FIN#", "VULN#"] {
        let it = find(&items, prefix);
        delete(&env, it["pk"].as_s().unwrap(), it["sk"].as_s().unwrap()).await;
    }
    let before: Vec<i64> = {
        let mut out = Vec::new();
        for t in TABLES {
            out.push(env.count(&env.target, t).await);
        }
        out
    };
    // A lock on `org` stops the apply at its delete from that table; the follower is killed
    // there (the apply's proof reads the table first: EXCLUSIVE mode lets reads through).
    let mut blocker = env.pg().await;
    sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
    sqlx::query(&format!(
        "LOCK TABLE \"{}\".\"org\" IN EXCLUSIVE MODE",
        env.target
    ))
    .execute(&mut blocker)
    .await
    .unwrap();
    let mut child = env
        .command(&follow_args(&env, &["--until-caught-up"]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the apply waits for the lock.
    let mut probe = env.pg().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE 'DELETE FROM%'",
        )
        .fetch_one(&mut probe)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "follow ended before its apply waited for the lock"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the apply never waited for the lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    for (t, n) in TABLES.iter().zip(&before) {
        assert_eq!(env.count(&env.target, t).await, *n, "{t} after the kill");
    }
    // The lease of the killed follower is taken over at once (its process is gone), and the
    // batch is read and applied again from the positions the target holds.
    follow_until_caught_up(&env);
    assert_served_equals_table(&env, "after a kill during the apply").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_follow_of_a_target_exits_1_and_a_full_copy_is_rebased_onto() {
    let (env, items) = followed("follow-two").await;
    let org = find(&items, "ORG#").clone();
    let mut changed = org.clone();
    changed.insert("name".into(), s("changed before the first batch"));
    put(&env, changed.clone()).await;
    let mut first = env
        .command(&follow_args(&env, &["--max-batches", "1000"]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Once the first has applied a batch, it holds the lease.
    let status_key = format!("dynamo-etl/follow/{}/status.json", env.target);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while env.get(&status_key).await.is_none() {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first follow ended"
        );
        assert!(std::time::Instant::now() < deadline, "no batch applied");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let second = env.run(&follow_args(&env, &["--until-caught-up"]), &[]);
    assert_eq!(second.status.code(), Some(1), "{}", show(&second));
    assert!(show(&second).contains("another"), "{}", show(&second));
    // SIGTERM: the first stops after a whole batch, exit 0.
    let pid = first.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = first.wait().unwrap();
    assert!(status.success(), "{status}");

    // A full copy swapped in (with changes before and after it): follow re-bases onto it.
    let mut again = changed.clone();
    again.insert("name".into(), s("changed before the second copy"));
    put(&env, again).await;
    env.run_ok(&["run", "--table", &env.table, "--run-id", "second"]);
    assert_eq!(env.served_run(&env.target).await.as_deref(), Some("second"));
    let mut last = changed.clone();
    last.insert("name".into(), s("changed after the second copy"));
    put(&env, last).await;
    let gone = find(&items, "FIN#").clone();
    delete(&env, gone["pk"].as_s().unwrap(), gone["sk"].as_s().unwrap()).await;
    let out = follow_until_caught_up(&env);
    assert!(show(&out).contains("skipped"), "{}", show(&out));
    assert_served_equals_table(&env, "after re-basing onto a new full copy").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_position_names_the_catch_up_and_a_stream_without_new_images_is_refused() {
    let (env, items) = followed("follow-lost").await;
    let org = find(&items, "ORG#").clone();
    let mut changed = org.clone();
    changed.insert("name".into(), s("changed"));
    put(&env, changed).await;
    follow_until_caught_up(&env);
    // Force the position to be lost: the target holds a shard the stream does not list, not
    // finished.
    let mut conn = env.pg().await;
    sqlx::query(&format!(
        "UPDATE \"{}\".\"_dynamo_etl_stream_positions\" SET shard_id = 'shardId-00000000000000000000-gone0000', finished = FALSE",
        env.target
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let out = env.run(
        &follow_args(&env, &["--until-caught-up", "--no-catch-up"]),
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let text = show(&out);
    assert!(
        text.contains("shardId-00000000000000000000-gone0000"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "dynamo-etl increment --table {} --target {}",
            env.table, env.target
        )),
        "{text}"
    );

    // The stream turned off and on again is a new stream: the records in between are in
    // neither, so the positions the target holds are as good as lost.
    env.dynamodb
        .update_table()
        .table_name(&env.table)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(false)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    enable_stream(&env, StreamViewType::NewAndOldImages).await;
    let out = env.run(
        &follow_args(&env, &["--until-caught-up", "--no-catch-up"]),
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        show(&out).contains("the table's stream is now"),
        "{}",
        show(&out)
    );

    // KEYS_ONLY carries no new images: refused, naming the command that fixes it.
    let keys_only = TestEnv::with_demo("follow-keys", 1).await;
    enable_stream(&keys_only, StreamViewType::KeysOnly).await;
    keys_only.run_ok(&["run", "--table", &keys_only.table]);
    let out = keys_only.run(&follow_args(&keys_only, &["--until-caught-up"]), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        show(&out).contains("KEYS_ONLY") && show(&out).contains("aws dynamodb update-table"),
        "{}",
        show(&out)
    );
    // No stream at all: the same.
    let none = TestEnv::with_demo("follow-none", 1).await;
    none.run_ok(&["run", "--table", &none.table]);
    let out = none.run(&follow_args(&none, &["--until-caught-up"]), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        show(&out).contains("has no stream")
            && show(&out).contains("StreamViewType=NEW_AND_OLD_IMAGES"),
        "{}",
        show(&out)
    );
    // A stream turned on after the copy: the changes in between are in no stream, so follow
    // does not start as if they were (here: exit 2 naming the catch-up).
    enable_stream(&none, StreamViewType::NewImage).await;
    let out = none.run(
        &follow_args(&none, &["--until-caught-up", "--no-catch-up"]),
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        show(&out).contains("the table's stream began at"),
        "{}",
        show(&out)
    );
}

/// The position forced lost (the target holds a shard the stream no longer lists): follow
/// catches up with an incremental export from the target's watermark — here one written by the
/// test kit in the documented layout, as DynamoDB Local has no exports — then reads the stream
/// again from its oldest record, skipping what the export holds; the served tables equal the
/// table.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_position_is_caught_up_with_an_incremental_export() {
    use dynamo_etl::phases::increment::instant;
    use dynamo_etl::retry::RetryPolicy;
    use dynamo_etl::testkit::export::{write_incremental_export_in, Change, Form};
    let (env, items) = followed("follow-catch").await;
    follow_until_caught_up(&env);
    let w0 = env.plan_time("base").await;
    // Changes the follower never saw: its position is lost meanwhile.
    let org = find(&items, "ORG#").clone();
    let mut changed = org.clone();
    changed.insert("name".into(), s("changed while the follower was away"));
    put(&env, changed.clone()).await;
    let gone = find(&items, "VULN#").clone();
    delete(&env, gone["pk"].as_s().unwrap(), gone["sk"].as_s().unwrap()).await;
    let mut conn = env.pg().await;
    sqlx::query(&format!(
        "UPDATE \"{}\".\"_dynamo_etl_stream_positions\" SET shard_id = 'shardId-00000000000000000000-gone0001', finished = FALSE",
        env.target
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    // The incremental export of those changes, from the watermark (the copy's point in time).
    let to = chrono::Utc::now();
    let micros = (w0.timestamp_micros() + 1) as u64;
    let changes = vec![
        Change {
            keys: key(org["pk"].as_s().unwrap(), org["sk"].as_s().unwrap()),
            old_image: Some(org.clone()),
            new_image: Some(changed),
            micros,
        },
        Change {
            keys: key(gone["pk"].as_s().unwrap(), gone["sk"].as_s().unwrap()),
            old_image: Some(gone.clone()),
            new_image: None,
            micros: micros + 1,
        },
    ];
    let store = env.store_at(&env.stack.s3, RetryPolicy::default()).await;
    let export = write_incremental_export_in(
        store.as_ref(),
        ("exports/incremental", "01765000000000-cccc0001", &env.table),
        &changes,
        1,
        (&instant(w0), &instant(to)),
        Form::default(),
    )
    .await
    .unwrap();
    let url = format!("s3://{}/{}", export.source.bucket, export.source.prefix);
    let out = env.run(
        &follow_args(
            &env,
            &["--until-caught-up", "--catch-up-export-prefix", &url],
        ),
        &[],
    );
    assert!(out.status.success(), "{}", show(&out));
    let text = show(&out);
    assert!(
        text.contains("catching up with an incremental export"),
        "{text}"
    );
    assert_served_equals_table(&env, "after catching up a lost position").await;
    // The export was applied as an increment: the watermark moved to its end.
    let windows: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT window_to::text FROM \"{}\".\"_dynamo_etl_increments\"",
        env.target
    ))
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(windows, [instant(to)]);
    // The positions are the stream's again.
    let shards: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT shard_id::text FROM \"{}\".\"_dynamo_etl_stream_positions\"",
        env.target
    ))
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(
        !shards.is_empty() && !shards.iter().any(|s| s.ends_with("gone0001")),
        "{shards:?}"
    );
}

/// A follow killed (SIGKILL) while it writes a batch's parts, and one killed while it writes the
/// batch's manifest: nothing reaches the target, and the next follow applies every change once.
#[tokio::test(flavor = "multi_thread")]
async fn a_follow_killed_while_it_writes_a_batch_loses_nothing() {
    let (env, items) = followed("follow-parts").await;
    let org = find(&items, "ORG#").clone();
    for (round, stalled) in [("parts", "/part-"), ("manifest", "/manifest.json")] {
        let mut changed = org.clone();
        changed.insert(
            "name".into(),
            s(&format!("changed before the kill in its {round}")),
        );
        put(&env, changed).await;
        let gone = items
            .iter()
            .filter(|i| i["pk"].as_s().unwrap().starts_with("FIN#"))
            .nth(if round == "parts" { 0 } else { 1 })
            .unwrap()
            .clone();
        delete(&env, gone["pk"].as_s().unwrap(), gone["sk"].as_s().unwrap()).await;
        let before = env.count(&env.target, "fin").await;
        let args = follow_args(&env, &["--until-caught-up"]);
        let needle = stalled.to_string();
        env.kill_when_stalled(&args, "ETL_S3_ENDPOINT", &env.stack.s3, move |head| {
            head.method == "PUT" && head.path.contains("/runs/fol-") && head.path.contains(&needle)
        })
        .await;
        assert_eq!(
            env.count(&env.target, "fin").await,
            before,
            "killed in its {round}: nothing applied"
        );
        follow_until_caught_up(&env);
        assert_served_equals_table(&env, &format!("after a kill in the batch's {round}")).await;
    }
}
