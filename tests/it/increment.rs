//! Increments through the real binary: a full copy, then incremental exports written in the
//! documented layout (test kit, `testkit::export::write_incremental_export`) applied with
//! `increment` — inserts, updates, deletes, an item moving to another table, the same key twice
//! in one window, both export views — give the same tables as a fresh full copy of the final
//! state; a repeated increment changes nothing; a window that does not start at the watermark is
//! refused; an apply that fails at its last statement leaves the target as it was. The
//! exports are written in each form the output format page shows (write times as DynamoDB
//! numbers, strings and bare numbers; keys of the bucket or relative to the request's prefix).

use std::collections::HashMap;

use crate::support::{find, show, TestEnv};
use aws_sdk_dynamodb::types::AttributeValue;
use dynamo_etl::phases::increment::instant;
use dynamo_etl::retry::RetryPolicy;
use dynamo_etl::testkit::export::{
    write_incremental_export_in, Change, Form, KeyForm, MicrosForm, WrittenExport,
};
use dynamo_etl::value::Item;

const TABLES: [&str; 6] = ["org", "group", "fin", "vuln", "_unclassified", "_overflow"];

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn key(pk: &str, sk: &str) -> Item {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

/// Fails unless every table of the two schemas holds the same rows.
async fn assert_same_tables(env: &TestEnv, a: &str, b: &str, when: &str) {
    for t in TABLES {
        for (x, y) in [(a, b), (b, a)] {
            assert_eq!(
                env.missing_rows(x, y, t).await,
                0,
                "{when}: {t}: rows of {x} not in {y}"
            );
        }
    }
}

/// The demo table's item with this key.
fn demo_item(items: &[Item], pk: &str, sk: &str) -> Item {
    items
        .iter()
        .find(|i| i["pk"] == s(pk) && i["sk"] == s(sk))
        .unwrap_or_else(|| panic!("no demo item {pk}/{sk}"))
        .clone()
}

struct Window<'a> {
    id: &'a str,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
}

impl<'a> Window<'a> {
    /// The hour from `from` on.
    fn hour(id: &'a str, from: chrono::DateTime<chrono::Utc>) -> Window<'a> {
        Window {
            id,
            from,
            to: from + chrono::TimeDelta::hours(1),
        }
    }
}

async fn export(env: &TestEnv, w: &Window<'_>, changes: &[Change]) -> WrittenExport {
    export_in(env, w, changes, Form::default()).await
}

/// [`export`] spelling what the output format page shows in more than one way as `form` says.
async fn export_in(env: &TestEnv, w: &Window<'_>, changes: &[Change], form: Form) -> WrittenExport {
    let store = env.store_at(&env.stack.s3, RetryPolicy::default()).await;
    write_incremental_export_in(
        store.as_ref(),
        ("exports/incremental", w.id, &env.table),
        changes,
        3,
        (&instant(w.from), &instant(w.to)),
        form,
    )
    .await
    .unwrap()
}

fn url(export: &WrittenExport) -> String {
    format!("s3://{}/{}", export.source.bucket, export.source.prefix)
}

/// What the table holds after `changes`, applied to DynamoDB Local in write order.
/// `increment` of `export` into this env's target, with `extra` arguments and `vars`.
fn increment(
    env: &TestEnv,
    export: &WrittenExport,
    extra: &[&str],
    vars: &[(&str, String)],
) -> std::process::Output {
    let url = url(export);
    let mut args = vec![
        "increment",
        "--table",
        &env.table,
        "--incremental-export-prefix",
        &url,
    ];
    args.extend_from_slice(extra);
    env.run(&args, vars)
}

async fn apply_to_table(env: &TestEnv, changes: &[Change]) {
    let mut ordered = changes.to_vec();
    ordered.sort_by_key(|c| c.micros);
    for c in ordered {
        match c.new_image {
            Some(item) => env
                .dynamodb
                .put_item()
                .table_name(&env.table)
                .set_item(Some(item))
                .send()
                .await
                .map(|_| ())
                .unwrap(),
            None => env
                .dynamodb
                .delete_item()
                .table_name(&env.table)
                .set_key(Some(c.keys))
                .send()
                .await
                .map(|_| ())
                .unwrap(),
        }
    }
}

fn upsert(old: Option<&Item>, new: Item, micros: u64) -> Change {
    Change {
        keys: key(
            new["pk"].as_s().unwrap().as_str(),
            new["sk"].as_s().unwrap().as_str(),
        ),
        old_image: old.cloned(),
        new_image: Some(new),
        micros,
    }
}

fn delete(old: &Item, micros: u64) -> Change {
    Change {
        keys: key(old["pk"].as_s().unwrap(), old["sk"].as_s().unwrap()),
        old_image: Some(old.clone()),
        new_image: None,
        micros,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn increments_keep_the_served_tables_equal_to_a_fresh_copy() {
    let env = TestEnv::with_demo("incr", 3).await;
    let items = dynamo_etl::testkit::fixtures::demo_items(3);
    // Groups are classified by a non-key attribute here, so changing it moves an item between
    // `group` and `_unclassified`: an entity change under the same key.
    let path = env.schemas_dir.path().join(&env.table).join("group.json");
    let mut group: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    group["rule"] = serde_json::json!({"attribute": "service", "prefix": "white"});
    std::fs::write(&path, serde_json::to_string_pretty(&group).unwrap()).unwrap();

    env.run_ok(&[
        "run",
        "--table",
        &env.table,
        "--run-id",
        "base",
        "--total-segments",
        "2",
    ]);
    let w0 = env.plan_time("base").await;
    let hour = chrono::TimeDelta::hours(1);
    let micros = |t: chrono::DateTime<chrono::Utc>, plus: i64| (t.timestamp_micros() + plus) as u64;

    // Window 1: an insert, an update adding an attribute no column has, a delete, a group
    // moving to _unclassified, and one organization updated twice (the later write listed
    // first, so file order cannot be what decides).
    let w1 = Window::hour("01765000000000-aaaa0001", w0);
    let org = demo_item(&items, "ORG#org-001", "META");
    let mut org_late = org.clone();
    org_late.insert("name".into(), s("renamed twice: this one wins"));
    org_late.insert("mascot".into(), s("heron"));
    let mut org_early = org.clone();
    org_early.insert("name".into(), s("renamed once"));
    let mut new_fin = demo_item(&items, "FIN#org-000-g0-f0", "GROUP#org-000-g0");
    new_fin.insert("pk".into(), s("FIN#org-000-g0-f9"));
    new_fin.insert("title".into(), s("inserted by an increment"));
    let gone = items
        .iter()
        .find(|i| i["pk"].as_s().unwrap().starts_with("VULN#"))
        .unwrap()
        .clone();
    let grp = items
        .iter()
        .find(|i| i["pk"].as_s().unwrap().starts_with("GROUP#") && i["service"] == s("white"))
        .unwrap()
        .clone();
    let mut moved = grp.clone();
    moved.insert("service".into(), s("black"));
    let first = vec![
        upsert(Some(&org), org_late.clone(), micros(w0, 2_000)),
        upsert(None, new_fin.clone(), micros(w0, 1_000)),
        delete(&gone, micros(w0, 1_500)),
        upsert(Some(&grp), moved.clone(), micros(w0, 1_700)),
        upsert(Some(&org), org_early, micros(w0, 1_100)),
    ];
    // Written as the output format page's incremental example shows it: the write times as
    // JSON strings; the keys relative to the request's prefix as in its full export example;
    // a summary count the files do not add up to (the page does not tie them).
    let page_form = Form {
        micros: MicrosForm::String,
        keys: KeyForm::Prefix,
        summary_count_offset: 1,
        ..Form::default()
    };
    let e1 = export_in(&env, &w1, &first, page_form).await;
    apply_to_table(&env, &first).await;
    let out = increment(&env, &e1, &[], &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(show(&out).contains("5 changes"), "{}", show(&out));

    // A window that starts after the watermark leaves a gap: refused, naming it.
    let gap = Window {
        id: "01765000000000-aaaa0009",
        from: w0 + hour * 3,
        to: w0 + hour * 4,
    };
    let e_gap = export(
        &env,
        &gap,
        &[upsert(None, new_fin.clone(), micros(gap.from, 1))],
    )
    .await;
    let out = increment(&env, &e_gap, &[], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        show(&out).contains("missing") && show(&out).contains(&instant(w1.to)),
        "{}",
        show(&out)
    );

    // Window 2, new images only: the inserted item deleted again, the moved group moved back.
    let w2 = Window::hour("01765000000000-aaaa0002", w1.to);
    let second = vec![
        delete(&new_fin, micros(w2.from, 10)),
        Change {
            old_image: None,
            ..upsert(None, grp.clone(), micros(w2.from, 20))
        },
    ];
    // The write times as bare JSON numbers.
    let bare = Form {
        micros: MicrosForm::Bare,
        ..Form::default()
    };
    let e2 = export_in(&env, &w2, &second, bare).await;
    apply_to_table(&env, &second).await;
    let out = increment(&env, &e2, &[], &[]);
    assert!(out.status.success(), "{}", show(&out));

    // The same increment again: nothing changes.
    let out = increment(&env, &e2, &[], &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(show(&out).contains("nothing changed"), "{}", show(&out));

    let fresh = format!("{}_fresh", env.target);
    let copied = env.run(
        &[
            "run",
            "--table",
            &env.table,
            "--run-id",
            "fresh",
            "--total-segments",
            "2",
        ],
        &[("ETL_TARGET", fresh.clone())],
    );
    assert!(copied.status.success(), "{}", show(&copied));
    assert_same_tables(&env, &env.target, &fresh, "after two increments").await;
    assert_eq!(
        env.count(&env.target, "org").await,
        3,
        "the organization updated twice is one row"
    );

    // Window 3 fails at its last statement (the ledger row cannot be written): the target
    // keeps what it had; once the cause is gone the same increment applies.
    let w3 = Window::hour("01765000000000-aaaa0003", w2.to);
    let third = vec![
        delete(&grp, micros(w3.from, 5)),
        delete(&org, micros(w3.from, 6)),
    ];
    let e3 = export(&env, &w3, &third).await;
    let mut conn = env.pg().await;
    let ledger = format!("\"{}\".\"_dynamo_etl_increments\"", env.target);
    sqlx::query(&format!(
        "ALTER TABLE {ledger} ADD COLUMN blocker INTEGER NOT NULL DEFAULT 0"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query(&format!(
        "ALTER TABLE {ledger} ALTER COLUMN blocker DROP DEFAULT"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let out = increment(&env, &e3, &[], &[]);
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    assert_same_tables(&env, &env.target, &fresh, "after a failed apply").await;
    sqlx::query(&format!("ALTER TABLE {ledger} DROP COLUMN blocker"))
        .execute(&mut conn)
        .await
        .unwrap();
    let out = increment(&env, &e3, &[], &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(env.count(&env.target, "org").await, 2);

    // An increment run is never taken for a full copy: not by the phases, and not by `run`
    // looking for a run to go on with.
    let inc_run = dynamo_etl::phases::increment::run_id_of(&env.target, w3.from, w3.to);
    for phase in ["prepare", "replace"] {
        let out = env.run(&[phase, "--run-id", &inc_run], &[]);
        assert_eq!(out.status.code(), Some(2), "{phase}: {}", show(&out));
        assert!(
            show(&out).contains("not a full copy"),
            "{phase}: {}",
            show(&out)
        );
    }
    let status = env.run(
        &["status", "--run-id", &inc_run, "--target", &env.target],
        &[],
    );
    assert!(status.status.success(), "{}", show(&status));
    assert!(
        show(&status).contains("applied to the target"),
        "{}",
        show(&status)
    );
    // status shows the watermark: the end of the last increment applied.
    let status = env.run(
        &["status", "--run-id", "base", "--target", &env.target],
        &[],
    );
    let text = show(&status);
    assert!(
        text.contains(&format!("watermark of {}: {}", env.target, instant(w3.to))),
        "{text}"
    );
}

/// `increment` killed (SIGKILL) while its apply transaction waits halfway through its deletes:
/// the server rolls the transaction back, the target keeps every row, and the same command run
/// again applies the increment. Then: changed data-schemas are refused unless --served-schemas,
/// and a full copy (`run` without a run id, which must not take an increment run for one to go
/// on with) makes its own point in time the watermark again.
#[tokio::test(flavor = "multi_thread")]
async fn an_apply_killed_halfway_leaves_the_target_as_it_was() {
    let env = TestEnv::with_demo("incr-kill", 2).await;
    let items = dynamo_etl::testkit::fixtures::demo_items(2);
    env.run_ok(&["run", "--table", &env.table, "--run-id", "base"]);
    // `run` swapped the copy in through the gate's proof, which its report records; verify
    // proves it again.
    let report: serde_json::Value =
        serde_json::from_slice(&env.get("dynamo-etl/runs/base/report.json").await.unwrap())
            .unwrap();
    let org = &report["proof"]["org"];
    assert!(
        org["proven"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "name")
            && org["count_only"].as_array().unwrap().is_empty(),
        "{report}"
    );
    env.run_ok(&["verify", "--run-id", "base"]);
    let w0 = env.plan_time("base").await;
    let w = Window::hour("01765000000000-bbbb0001", w0);
    // A change in every table, so the apply has deletes before and after the locked one.
    let changes: Vec<Change> = ["ORG#", "GROUP#", "FIN#", "VULN#"]
        .iter()
        .enumerate()
        .map(|(i, prefix)| {
            let item = items
                .iter()
                .find(|it| it["pk"].as_s().unwrap().starts_with(prefix))
                .unwrap();
            delete(item, (w0.timestamp_micros() + i as i64) as u64)
        })
        .collect();
    let e = export(&env, &w, &changes).await;
    let before: Vec<(String, i64)> = {
        let mut out = Vec::new();
        for t in TABLES {
            out.push((t.to_string(), env.count(&env.target, t).await));
        }
        out
    };

    // Hold a lock on `org` so the apply stops at its delete from that table (its proof's reads
    // of the table pass: EXCLUSIVE mode lets reads through, not writes).
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
        .command(&[
            "increment",
            "--table",
            &env.table,
            "--incremental-export-prefix",
            &url(&e),
        ])
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut watcher = env.pg().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let waiting: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'DELETE FROM \"{}\".\"org\"%'",
            env.target
        ))
        .fetch_one(&mut watcher)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("increment ended ({status}) before its apply reached the locked table");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the apply never reached the locked table"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    // The server notices the dead client and rolls its transaction back.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let left: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'DELETE FROM \"{}\".%'",
            env.target
        ))
        .fetch_one(&mut watcher)
        .await
        .unwrap();
        if left == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the killed apply's session lingers"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for (t, rows) in &before {
        assert_eq!(
            env.count(&env.target, t).await,
            *rows,
            "{t} after the killed apply"
        );
    }

    let out = increment(&env, &e, &[], &[]);
    assert!(out.status.success(), "{}", show(&out));
    for (t, rows) in &before {
        let expected = match t.as_str() {
            "org" | "group" | "fin" | "vuln" => rows - 1,
            _ => *rows,
        };
        assert_eq!(
            env.count(&env.target, t).await,
            expected,
            "{t} after the retry"
        );
    }
    let staged = format!("{}_increment_staging", env.target);
    let left: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM information_schema.schemata WHERE schema_name = '{staged}'"
    ))
    .fetch_one(&mut watcher)
    .await
    .unwrap();
    assert_eq!(
        left, 0,
        "the applied increment's staging schema is dropped with the commit"
    );

    // The reviewed data-schemas change after the copy: increments refuse, saying a full copy
    // brings them, unless asked to go on with the served ones.
    let path = env.schemas_dir.path().join(&env.table).join("org.json");
    let mut org: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    org["columns"].as_array_mut().unwrap().pop();
    std::fs::write(&path, serde_json::to_string_pretty(&org).unwrap()).unwrap();
    let next = Window::hour("01765000000000-bbbb0002", w.to);
    let e = export(&env, &next, &[]).await;
    let refused = increment(&env, &e, &[], &[]);
    assert_eq!(refused.status.code(), Some(2), "{}", show(&refused));
    let text = show(&refused);
    assert!(
        text.contains("org (changed)") && text.contains("full copy"),
        "{text}"
    );
    let kept = increment(&env, &e, &["--served-schemas"], &[]);
    assert!(kept.status.success(), "{}", show(&kept));
    let again = env.run_ok(&["run", "--table", &env.table]);
    let served = env.served_run(&env.target).await.unwrap();
    assert!(
        !served.starts_with("inc-") && served != "base",
        "{served}: {}",
        show(&again)
    );
    assert_eq!(
        env.count(&env.target, "org").await,
        2,
        "a full copy of the table, which the increments' deletes never touched"
    );
    // The new copy's own point in time is the watermark again.
    let status = env.run(
        &["status", "--run-id", &served, "--target", &env.target],
        &[],
    );
    assert!(
        show(&status).contains(&format!("(the point in time of full copy {served})")),
        "{}",
        show(&status)
    );
}

/// Without a given export, `increment` asks DescribeContinuousBackups for the table's
/// point-in-time recovery window (against the S3-compatible server's own DynamoDB, which has
/// the call; DynamoDB Local does not): no recovery means no increments, a watermark older than
/// the recovery window cannot be caught up (a full copy resets it), and a watermark less than 15
/// minutes old leaves nothing to export yet.
#[tokio::test(flavor = "multi_thread")]
async fn increment_reads_the_recovery_window_and_waits_for_a_whole_window() {
    let env = TestEnv::with_demo("incr-pitr", 1).await;
    env.run_ok(&["run", "--table", &env.table, "--run-id", "base"]);
    let (moto, on_moto) = env.table_on_moto().await;
    let args = ["increment", "--table", &env.table];

    let refused = env.run(&args, &on_moto);
    assert_eq!(refused.status.code(), Some(2), "{}", show(&refused));
    assert!(
        show(&refused).contains("point-in-time recovery"),
        "{}",
        show(&refused)
    );

    crate::support::enable_pitr(&moto, &env.table).await;
    // The copy was taken before recovery was switched on.
    let too_old = env.run(&args, &on_moto);
    assert_eq!(too_old.status.code(), Some(2), "{}", show(&too_old));
    assert!(
        show(&too_old).contains("can no longer be exported"),
        "{}",
        show(&too_old)
    );

    env.run_ok(&["run", "--table", &env.table, "--run-id", "after-pitr"]);
    let out = env.run(&args, &on_moto);
    assert!(out.status.success(), "{}", show(&out));
    assert!(show(&out).contains("nothing to apply"), "{}", show(&out));

    // An earlier attempt decided on a window and recorded it (then died): the retry takes that
    // window again, though the newest restorable time has moved past it, and so its run id —
    // the export's client token — instead of exporting a window of its own.
    let from = env.plan_time("after-pitr").await;
    let to = from + chrono::TimeDelta::seconds(1);
    let run_id = dynamo_etl::phases::increment::run_id_of(&env.target, from, to);
    let decided = dynamo_etl::staging::increment::DecidedWindow {
        target: env.target.clone(),
        table: env.table.clone(),
        run_id: run_id.clone(),
        base_run: "after-pitr".into(),
        from: instant(from),
        to: instant(to),
        view: "NEW_AND_OLD_IMAGES".into(),
        decided_at: instant(from),
    };
    let staging = env.staging("dynamo-etl", RetryPolicy::default()).await;
    staging
        .store
        .put(
            &staging.layout.increment_window(&env.target),
            serde_json::to_vec(&decided).unwrap().into(),
            "application/json",
        )
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let retried = env.run(
        &[&args[..], &["--wait-seconds", "1", "--poll-seconds", "1"]].concat(),
        &on_moto,
    );
    let text = show(&retried);
    assert!(
        text.contains("taking up the window an earlier attempt decided on"),
        "{text}"
    );
    assert!(
        env.get(&format!("dynamo-etl/runs/{run_id}/export-started.json"))
            .await
            .is_some(),
        "the export of the recorded window ({run_id}) was started: {text}"
    );
}

/// The same increment submitted twice at once: one process works on it, the other is told who
/// holds it (exit 1) or, starting after the first committed, finds it applied (exit 0); the
/// changes are applied exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn an_increment_submitted_twice_is_applied_once() {
    let env = TestEnv::with_demo("incr-twice", 1).await;
    let items = dynamo_etl::testkit::fixtures::demo_items(1);
    env.run_ok(&["run", "--table", &env.table, "--run-id", "base"]);
    let w0 = env.plan_time("base").await;
    let w = Window::hour("01765000000000-cccc0001", w0);
    let gone: Vec<Change> = items
        .iter()
        .filter(|i| i["pk"].as_s().unwrap().starts_with("FIN#"))
        .enumerate()
        .map(|(n, i)| delete(i, (w0.timestamp_micros() + n as i64) as u64))
        .collect();
    let before = env.count(&env.target, "fin").await;
    let e = export(&env, &w, &gone).await;
    let args = [
        "increment",
        "--table",
        &env.table,
        "--incremental-export-prefix",
        &url(&e),
    ];
    let spawn = || {
        env.command(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let mut applied = 0;
    for out in &outs {
        let text = show(out);
        match out.status.code() {
            Some(0) if text.contains(&format!("{} changes", gone.len())) => applied += 1,
            Some(0) => assert!(text.contains("nothing changed"), "{text}"),
            Some(1) => assert!(text.contains("another process"), "{text}"),
            _ => panic!("{text}"),
        }
    }
    assert_eq!(applied, 1, "exactly one process applied the increment");
    assert_eq!(
        env.count(&env.target, "fin").await,
        before - gone.len() as i64
    );
    let mut conn = env.pg().await;
    let recorded: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{}\".\"_dynamo_etl_increments\"",
        env.target
    ))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(recorded, 1);
    let again = env.run(&args, &[]);
    assert!(show(&again).contains("nothing changed"), "{}", show(&again));
    // The increment moved the target's kept fingerprints on: verify proves the served rows.
    let out = env.run_ok(&["verify", "--run-id", "base"]);
    assert!(!show(&out).contains("MISMATCH"), "{}", show(&out));
}

/// The lock timeout bounds waiting for locks only: an apply whose deletes take longer than it
/// (slowed here by a trigger on a served table) still applies. On Redshift the bound is a
/// statement timeout, lifted before the deletes (see the golden files and
/// `only_lock_waits_run_under_the_statement_timeout`); here a bound that limited statements
/// would cancel the slow delete.
#[tokio::test(flavor = "multi_thread")]
async fn an_apply_longer_than_the_lock_timeout_applies() {
    let env = TestEnv::with_demo("incr-slow", 1).await;
    let items = dynamo_etl::testkit::fixtures::demo_items(1);
    env.run_ok(&["run", "--table", &env.table, "--run-id", "base"]);
    let w0 = env.plan_time("base").await;
    let w = Window::hour("01765000000000-dddd0001", w0);
    let org = find(&items, "ORG#");
    let e = export(&env, &w, &[delete(org, w0.timestamp_micros() as u64)]).await;
    let orgs = env.count(&env.target, "org").await;
    let mut pg = env.pg().await;
    for statement in [
        "CREATE OR REPLACE FUNCTION public.etl_test_slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(2.5); RETURN NULL; END $$".to_string(),
        format!(
            "CREATE TRIGGER slow_delete AFTER DELETE ON \"{}\".\"org\" FOR EACH STATEMENT EXECUTE FUNCTION public.etl_test_slow()",
            env.target
        ),
    ] {
        sqlx::query(&statement).execute(&mut pg).await.unwrap();
    }
    let started = std::time::Instant::now();
    let out = increment(&env, &e, &["--lock-timeout-seconds", "1"], &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        started.elapsed() > std::time::Duration::from_secs(2),
        "the trigger made the apply slower than the lock timeout"
    );
    assert_eq!(env.count(&env.target, "org").await, orgs - 1);
}

/// Keys no text column can hold — exactly `\N` (the CSV NULL marker) and one containing U+0000,
/// both valid in DynamoDB — are copied to `_unclassified`, whose key columns are JSON, and
/// their changes (an update, a delete, an insert) are applied like any other: the served tables
/// equal a fresh copy of the final state, and the increment is not refused.
#[tokio::test(flavor = "multi_thread")]
async fn keys_no_text_column_holds_are_applied_by_increments() {
    let env = TestEnv::with_demo("incr-oddkey", 1).await;
    let odd = |pk: &str, note: &str| -> Item {
        HashMap::from([
            ("pk".to_string(), s(pk)),
            ("sk".to_string(), s("META")),
            ("name".to_string(), s(note)),
        ])
    };
    // `ORG#…` would be classified as an organization, whose pk column is text.
    let (marker, nul, fresh_nul) = (
        odd("\\N", "marker"),
        odd("ORG#a\0b", "nul"),
        odd("ORG#\0new", "new"),
    );
    for item in [&marker, &nul] {
        env.dynamodb
            .put_item()
            .table_name(&env.table)
            .set_item(Some(item.clone()))
            .send()
            .await
            .unwrap();
    }
    env.run_ok(&["run", "--table", &env.table, "--run-id", "base"]);
    let unclassified = env.count(&env.target, "_unclassified").await;
    assert!(unclassified >= 2, "the odd keys are in _unclassified");
    let w0 = env.plan_time("base").await;
    let w = Window::hour("01765000000000-eeee0001", w0);
    let micros = |plus: i64| (w0.timestamp_micros() + plus) as u64;
    let mut renamed = marker.clone();
    renamed.insert("name".into(), s("marker, renamed"));
    let changes = vec![
        upsert(Some(&marker), renamed, micros(1)),
        delete(&nul, micros(2)),
        upsert(None, fresh_nul, micros(3)),
    ];
    let e = export(&env, &w, &changes).await;
    apply_to_table(&env, &changes).await;
    let out = increment(&env, &e, &[], &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(show(&out).contains("3 changes"), "{}", show(&out));
    let fresh = format!("{}_fresh", env.target);
    let copied = env.run(
        &["run", "--table", &env.table, "--run-id", "fresh"],
        &[("ETL_TARGET", fresh.clone())],
    );
    assert!(copied.status.success(), "{}", show(&copied));
    assert_same_tables(&env, &env.target, &fresh, "after the increment").await;
    assert_eq!(env.count(&env.target, "_unclassified").await, unclassified);
}

/// Increments keep the proof (`warehouse::increment::apply_proven`): changes edited in their
/// staging schema after phase 3 are refused, naming the table and column, and nothing is
/// applied; an apply that would not leave the served rows as staged (a trigger edits what is
/// inserted) is refused too; a proven apply moves the target's kept fingerprints on, so
/// `verify` proves the served rows after increments, and finds a served value edited later.
#[tokio::test(flavor = "multi_thread")]
async fn increments_keep_the_proof() {
    let env = TestEnv::with_demo("incr-proof", 1).await;
    let items = dynamo_etl::testkit::fixtures::demo_items(1);
    env.run_ok(&["run", "--table", &env.table, "--run-id", "base"]);
    let w0 = env.plan_time("base").await;
    let w = Window::hour("01765000000000-eeee0001", w0);
    let org = find(&items, "ORG#");
    let group = find(&items, "GROUP#");
    let mut renamed = org.clone();
    renamed.insert("name".into(), s("Renamed"));
    let micros = w0.timestamp_micros() as u64;
    let e = export(
        &env,
        &w,
        &[
            upsert(Some(org), renamed, micros),
            delete(group, micros + 1),
        ],
    )
    .await;
    let increment = |extra: &[&str]| {
        let mut args = vec![
            "increment",
            "--table",
            &env.table,
            "--incremental-export-prefix",
        ];
        let u = url(&e);
        let mut owned: Vec<String> = args.drain(..).map(str::to_string).collect();
        owned.push(u);
        owned.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
        env.run(&refs, &[])
    };
    let target = env.target.clone();
    let served_names = |names: Vec<String>| names.iter().filter(|n| *n == "Renamed").count();
    let names = || async {
        let mut pg = env.pg().await;
        sqlx::query_scalar::<_, String>(&format!(
            "SELECT \"name\" FROM \"{target}\".\"org\" WHERE \"name\" IS NOT NULL"
        ))
        .fetch_all(&mut pg)
        .await
        .unwrap()
    };
    let (orgs, groups) = (
        env.count(&target, "org").await,
        env.count(&target, "group").await,
    );

    // The apply waits on a held ledger lock and gives up, leaving the staged increment (reads of
    // the ledger, which come first, pass the lock).
    let mut blocker = env.pg().await;
    sqlx::query(&dynamo_etl::warehouse::increment::ledger_sql(&target))
        .execute(&mut blocker)
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
    sqlx::query(&format!(
        "LOCK TABLE \"{target}\".\"_dynamo_etl_increments\" IN EXCLUSIVE MODE"
    ))
    .execute(&mut blocker)
    .await
    .unwrap();
    let out = increment(&["--lock-timeout-seconds", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    let staged = format!("{target}_increment_staging");
    let edit = |to: &str| {
        format!("UPDATE \"{staged}\".\"org\" SET \"name\" = '{to}' WHERE \"name\" IS NOT NULL")
    };
    sqlx::query(&edit("Tampered"))
        .execute(&mut blocker)
        .await
        .unwrap();
    let out = increment(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        show(&out).contains("not what phase 1 wrote")
            && show(&out).contains("table org, column name"),
        "{}",
        show(&out)
    );
    assert_eq!(served_names(names().await), 0, "nothing applied");
    assert_eq!(env.count(&target, "group").await, groups);

    // The staged values back as phase 1 wrote them; a trigger changes what the insert adds.
    sqlx::query(&edit("Renamed"))
        .execute(&mut blocker)
        .await
        .unwrap();
    for statement in [
        "CREATE OR REPLACE FUNCTION public.etl_test_shout() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.\"name\" := NEW.\"name\" || '!'; RETURN NEW; END $$".to_string(),
        format!("CREATE TRIGGER shout BEFORE INSERT ON \"{target}\".\"org\" FOR EACH ROW EXECUTE FUNCTION public.etl_test_shout()"),
    ] {
        sqlx::query(&statement).execute(&mut blocker).await.unwrap();
    }
    let out = increment(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        show(&out).contains("would not leave the served rows as staged")
            && show(&out).contains("table org, column name"),
        "{}",
        show(&out)
    );
    assert_eq!(env.count(&target, "group").await, groups, "nothing applied");
    sqlx::query(&format!("DROP TRIGGER shout ON \"{target}\".\"org\""))
        .execute(&mut blocker)
        .await
        .unwrap();

    // Proven and applied: the kept fingerprints moved on, and verify proves the served rows.
    let out = increment(&[]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(served_names(names().await), 1);
    assert_eq!(env.count(&target, "org").await, orgs);
    assert_eq!(env.count(&target, "group").await, groups - 1);
    let out = env.run_ok(&["verify", "--run-id", "base"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.lines().skip(1).all(|l| l.ends_with("proven")),
        "{stdout}"
    );
    sqlx::query(&format!(
        "UPDATE \"{target}\".\"org\" SET \"name\" = 'Edited' WHERE \"name\" = 'Renamed'"
    ))
    .execute(&mut blocker)
    .await
    .unwrap();
    let out = env.run(&["verify", "--run-id", "base"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(show(&out).contains("MISMATCH"), "{}", show(&out));
}

/// An increment applied with `--skip-verify` changes the served rows without a proof, so what
/// the target kept no longer describes them: the kept fingerprints are dropped, `status` says so,
/// and `verify` does not prove the served rows against stale figures.
#[tokio::test(flavor = "multi_thread")]
async fn an_increment_applied_unproven_drops_the_kept_proof() {
    let env = TestEnv::with_demo("incr-unproven", 1).await;
    let items = dynamo_etl::testkit::fixtures::demo_items(1);
    env.run_ok(&["run", "--table", &env.table, "--run-id", "base"]);
    let kept = || async {
        let mut pg = env.pg().await;
        sqlx::query_scalar::<_, bool>(&format!(
            "SELECT to_regclass('\"{}\".\"_dynamo_etl_fingerprints\"') IS NOT NULL",
            env.target
        ))
        .fetch_one(&mut pg)
        .await
        .unwrap()
    };
    assert!(kept().await, "a full copy keeps its fingerprints");
    let w0 = env.plan_time("base").await;
    let w = Window::hour("01765000000000-eeee0002", w0);
    let org = find(&items, "ORG#");
    let mut renamed = org.clone();
    renamed.insert("name".into(), s("Renamed"));
    let e = export(
        &env,
        &w,
        &[upsert(Some(org), renamed, w0.timestamp_micros() as u64)],
    )
    .await;
    let out = increment(&env, &e, &[], &[("ETL_SKIP_VERIFY", "true".to_string())]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(show(&out).contains("--skip-verify"), "{}", show(&out));
    assert!(
        !kept().await,
        "the kept fingerprints no longer describe the target"
    );
    let out = env.run_ok(&["status", "--run-id", "base"]);
    assert!(show(&out).contains("proof: none kept"), "{}", show(&out));
    let out = env.run(&["verify", "--run-id", "base"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        show(&out).contains("keeps no fingerprints") && show(&out).contains("--skip-verify"),
        "{}",
        show(&out)
    );
}
