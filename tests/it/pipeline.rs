//! The whole pipeline through the binary: `run` end to end, interrupted jobs recovered with the
//! runbook's retry commands giving the same tables as an uninterrupted run, `status` for each kind
//! of gap, `plan` pinning, `gc`, and the exit codes.

use crate::support::{show, TestEnv};
use sqlx::Executor;
use std::time::{Duration, Instant};

const TABLES: [&str; 5] = ["org", "group", "fin", "vuln", "_unclassified"];

/// True when two schemas hold exactly the same rows in every table (as text, both directions).
async fn same_tables(env: &TestEnv, a: &str, b: &str) -> Result<(), String> {
    let mut conn = env.pg().await;
    for t in TABLES {
        for (x, y) in [(a, b), (b, a)] {
            let sql = format!("SELECT count(*) FROM (SELECT * FROM \"{x}\".\"{t}\" EXCEPT ALL SELECT * FROM \"{y}\".\"{t}\") d");
            let n: i64 = sqlx::query_scalar(&sql)
                .fetch_one(&mut conn)
                .await
                .map_err(|e| format!("{sql}: {e}"))?;
            if n != 0 {
                return Err(format!("{t}: {n} rows of {x} are not in {y}"));
            }
        }
    }
    Ok(())
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn run_copies_a_table_end_to_end_and_saves_a_report() {
    let env = TestEnv::with_demo("prun", 3).await;
    let out = env.run(
        &[
            "run",
            "--table",
            &env.table,
            "--run-id",
            "full",
            "--total-segments",
            "3",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    assert!(text.contains("swapped"), "{text}");
    let expected = [
        ("org", 3),
        ("group", 9),
        ("fin", 36),
        ("vuln", 72),
        ("_unclassified", 0),
    ];
    for (t, n) in expected {
        assert_eq!(env.count(&env.target, t).await, n, "{t}");
        assert!(
            text.contains(&format!("{t:<24} {n:>12}")),
            "report lacks {t}={n}:\n{text}"
        );
    }
    let report: serde_json::Value = serde_json::from_slice(
        &env.get("dynamo-etl/runs/full/report.json")
            .await
            .expect("report saved"),
    )
    .unwrap();
    assert_eq!(report["items_scanned"], 120);
    assert_eq!(report["outcome"], "swapped");
    assert_eq!(report["segments"].as_array().unwrap().len(), 3);
    assert_eq!(report["rows"]["vuln"], 72);

    // Running it again resumes: nothing is scanned or loaded twice, the swap is refused (staging
    // already swapped in) and says how to start a fresh run.
    let status = env.run(&["status", "--run-id", "full"], &[]);
    assert!(status.status.success(), "{}", show(&status));
    assert!(
        stdout(&status).contains("the target serves this run"),
        "{}",
        show(&status)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_scan_recovered_with_retry_phase_1_gives_the_same_tables() {
    let env = TestEnv::with_demo("pkill1", 4).await;
    env.pipeline("clean", 3);

    // The second run: segment 1's scan hangs after it started, and the job is killed.
    env.run_ok(&[
        "plan",
        "--table",
        &env.table,
        "--total-segments",
        "3",
        "--run-id",
        "broken",
    ]);
    env.run_ok(&[
        "segment",
        "--run-id",
        "broken",
        "--total-segments",
        "3",
        "--segment",
        "0",
    ]);
    env.kill_when_stalled(
        &[
            "segment",
            "--run-id",
            "broken",
            "--total-segments",
            "3",
            "--segment",
            "1",
        ],
        "ETL_DYNAMODB_ENDPOINT",
        &env.stack.dynamodb,
        |head| head.is_scan(),
    )
    .await;
    assert!(
        env.manifest("broken", 1).await.is_none(),
        "a killed scan commits nothing"
    );

    let status = env.run(&["status", "--run-id", "broken"], &[]);
    assert_eq!(status.status.code(), Some(1), "{}", show(&status));
    assert!(
        stdout(&status).contains("dynamo-etl retry phase-1 3 1 --run-id broken"),
        "{}",
        show(&status)
    );

    env.run_ok(&["retry", "phase-1", "3", "1", "--run-id", "broken"]);
    env.run_ok(&[
        "segment",
        "--run-id",
        "broken",
        "--total-segments",
        "3",
        "--segment",
        "2",
    ]);
    env.run_ok(&["prepare", "--run-id", "broken"]);
    for k in ["0", "1", "2"] {
        env.run_ok(&["upload", "--run-id", "broken", "--segment", k]);
    }
    env.run_ok(&["replace", "--run-id", "broken"]);
    same_tables(&env, &env.target, &format!("{}_previous", env.target))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_upload_recovered_with_retry_phase_3_gives_the_same_tables() {
    let env = TestEnv::with_demo("pkill3", 4).await;
    env.pipeline("clean", 2);
    for k in ["0", "1"] {
        env.run_ok(&[
            "segment",
            "--run-id",
            "again",
            "--table",
            &env.table,
            "--total-segments",
            "2",
            "--segment",
            k,
        ]);
    }
    env.run_ok(&["prepare", "--run-id", "again"]);
    env.run_ok(&["upload", "--run-id", "again", "--segment", "0"]);
    env.kill_when_stalled(
        &["upload", "--run-id", "again", "--segment", "1"],
        "ETL_S3_ENDPOINT",
        &env.stack.s3,
        |head| head.method == "GET" && head.path.contains("/segments/1/vuln/"),
    )
    .await;

    // The server needs a moment to notice the dead session; status then shows the gap.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = env.run(&["status", "--run-id", "again"], &[]);
        if stdout(&status).contains("retry phase-3 1") || Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status.status.code(), Some(1), "{}", show(&status));
    assert!(
        stdout(&status).contains("dynamo-etl retry phase-3 1 --run-id again"),
        "{}",
        show(&status)
    );

    env.run_ok(&["retry", "phase-3", "1", "--run-id", "again"]);
    env.run_ok(&["replace", "--run-id", "again"]);
    same_tables(&env, &env.target, &format!("{}_previous", env.target))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn status_names_the_command_for_each_kind_of_gap() {
    let env = TestEnv::with_demo("pstatus", 2).await;
    let status = |env: &TestEnv| env.run(&["status", "--run-id", "s"], &[]);
    env.run_ok(&[
        "plan",
        "--table",
        &env.table,
        "--total-segments",
        "2",
        "--run-id",
        "s",
    ]);
    env.run_ok(&[
        "segment",
        "--run-id",
        "s",
        "--total-segments",
        "2",
        "--segment",
        "0",
    ]);

    let steps: Vec<(Option<Vec<&str>>, Vec<&str>)> = vec![
        // Segment 1 never scanned; nothing prepared.
        (
            None,
            vec![
                "segment 1: phase 1 has not committed",
                "dynamo-etl retry phase-1 2 1 --run-id s",
                "dynamo-etl prepare --run-id s",
            ],
        ),
        // All scanned, not prepared.
        (
            Some(vec![
                "segment",
                "--run-id",
                "s",
                "--total-segments",
                "2",
                "--segment",
                "1",
            ]),
            vec!["staging is not prepared", "dynamo-etl prepare --run-id s"],
        ),
        // Prepared, nothing loaded.
        (
            Some(vec!["prepare", "--run-id", "s"]),
            vec![
                "segment 0: not loaded",
                "dynamo-etl retry phase-3 0 --run-id s",
                "dynamo-etl retry phase-3 1 --run-id s",
            ],
        ),
        // One loaded.
        (
            Some(vec!["upload", "--run-id", "s", "--segment", "1"]),
            vec!["dynamo-etl retry phase-3 0 --run-id s"],
        ),
        // All loaded, not swapped.
        (
            Some(vec!["upload", "--run-id", "s", "--segment", "0"]),
            vec!["the run is not swapped in", "dynamo-etl replace --run-id s"],
        ),
    ];
    for (action, expected) in steps {
        if let Some(args) = action {
            env.run_ok(&args);
        }
        let out = status(&env);
        assert_eq!(out.status.code(), Some(1), "{}", show(&out));
        for e in expected {
            assert!(
                stdout(&out).contains(e),
                "expected {e:?} in\n{}",
                show(&out)
            );
        }
    }
    env.run_ok(&["replace", "--run-id", "s"]);
    let out = status(&env);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(stdout(&out).contains("nothing to do"), "{}", show(&out));
    // Without a warehouse it still reports from the staging area (latest run by default).
    let out = env.run(&["status"], &[("ETL_WAREHOUSE_URL", String::new())]);
    assert!(
        stdout(&out).contains("run s ") && stdout(&out).contains("swap recorded"),
        "{}",
        show(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_pins_a_run_once_and_retries_check_it() {
    let env = TestEnv::with_demo("pplan", 1).await;
    let out = env.run_ok(&[
        "plan",
        "--table",
        &env.table,
        "--total-segments",
        "2",
        "--run-id",
        "p",
    ]);
    assert_eq!(stdout(&out).trim(), "p", "plan prints the run id");
    env.run_ok(&[
        "plan",
        "--table",
        &env.table,
        "--total-segments",
        "2",
        "--run-id",
        "p",
    ]);
    let out = env.run(
        &[
            "plan",
            "--table",
            &env.table,
            "--total-segments",
            "3",
            "--run-id",
            "p",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("planned differently"),
        "{}",
        show(&out)
    );
    let out = env.run(&["retry", "phase-1", "3", "0", "--run-id", "p"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("planned with 2 total segments, not 3"),
        "{}",
        show(&out)
    );
    // A schema change after planning changes nothing for the run (invariant 4).
    std::fs::remove_dir_all(env.schemas_dir.path().join(&env.table)).unwrap();
    env.run_ok(&["retry", "phase-1", "2", "0", "--run-id", "p"]);
    let out = env.run(
        &["plan", "--table", &env.table, "--total-segments", "2"],
        &[("AWS_BATCH_JOB_ID", "abc-123:7".into())],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "a new run needs schemas: {}",
        show(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("infer-schema"),
        "{}",
        show(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gc_keeps_the_last_successful_runs_and_deletes_older_ones() {
    let env = TestEnv::with_demo("pgc", 1).await;
    env.pipeline("r1", 1);
    // A failed run between the successful ones.
    env.phase1("r2", 2, 0);
    env.pipeline("r3", 1);
    env.pipeline("r4", 1);
    // A run in progress after the last success.
    env.phase1("r5", 1, 0);
    let before = env.keys("dynamo-etl/runs/").await;

    let dry = env.run_ok(&["gc", "--keep", "2"]);
    let text = stdout(&dry);
    for line in [
        "delete  r1",
        "delete  r2",
        "keep    r3",
        "keep    r4",
        "keep    r5",
        "dry run: 2 runs",
    ] {
        assert!(text.contains(line), "expected {line:?} in\n{text}");
    }
    assert_eq!(
        env.keys("dynamo-etl/runs/").await,
        before,
        "a dry run deletes nothing"
    );

    env.run_ok(&["gc", "--keep", "2", "--apply"]);
    let after = env.keys("dynamo-etl/runs/").await;
    assert!(
        !after
            .iter()
            .any(|k| k.contains("/runs/r1/") || k.contains("/runs/r2/")),
        "{after:?}"
    );
    for run in ["r3", "r4", "r5"] {
        let kept: Vec<_> = before
            .iter()
            .filter(|k| k.contains(&format!("/runs/{run}/")))
            .collect();
        assert!(kept.iter().all(|k| after.contains(k)), "{run} lost objects");
    }
    assert_eq!(
        env.served_run(&env.target).await.as_deref(),
        Some("r4"),
        "the warehouse is untouched"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_follow_the_contract() {
    let env = TestEnv::with_demo("pexit", 1).await;
    // 2: usage.
    let out = env.run(&["segment", "--bogus"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    // 0: help.
    let out = env.run(&["--help"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    // 1: a run that cannot finish yet (the warehouse is down) names what to run next.
    let out = env.run(
        &[
            "run",
            "--table",
            &env.table,
            "--run-id",
            "x",
            "--total-segments",
            "1",
        ],
        &[(
            "ETL_WAREHOUSE_URL",
            "postgres://postgres@127.0.0.1:1/postgres".into(),
        )],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stdout(&out).contains("dynamo-etl run --run-id x"),
        "{}",
        show(&out)
    );
    // Then it resumes with the segment already committed.
    let out = env.run(&["run", "--run-id", "x"], &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains("(committed earlier)"),
        "{}",
        show(&out)
    );
    let mut conn = env.pg().await;
    conn.execute("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn gc_prunes_schema_snapshots_but_never_active_newest_or_pinned_ones() {
    let env = TestEnv::with_demo("pgcsnap", 1).await;
    let snapshot_ids = |keys: Vec<String>| -> Vec<String> {
        let mut ids: Vec<String> = keys
            .iter()
            .filter_map(|k| {
                k.strip_prefix("dynamo-etl/schemas/")?
                    .split('/')
                    .next()
                    .map(str::to_string)
            })
            .collect();
        ids.dedup();
        ids
    };
    env.run_ok(&[
        "infer-schema",
        "--table",
        &env.table,
        "--total-segments",
        "1",
    ]);
    env.pipeline("r1", 1); // pins the first snapshot
    for _ in 0..3 {
        env.run_ok(&[
            "infer-schema",
            "--table",
            &env.table,
            "--total-segments",
            "1",
        ]);
    }
    env.pipeline("r2", 1); // pins the newest
    let ids = snapshot_ids(env.keys("dynamo-etl/schemas/").await);
    assert_eq!(ids.len(), 4, "{ids:?}");
    let plan: serde_json::Value =
        serde_json::from_slice(&env.get("dynamo-etl/runs/r1/run.json").await.unwrap()).unwrap();
    assert_eq!(
        plan["schema_source"],
        format!("snapshot:{}", ids[0]),
        "r1 pinned the first snapshot"
    );

    let dry = env.run_ok(&["gc", "--keep", "2", "--keep-snapshots", "1"]);
    let text = stdout(&dry);
    assert!(
        text.contains(&format!(
            "keep    schema snapshot {} (a run that stays pins it)",
            ids[0]
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "keep    schema snapshot {} (it is the active snapshot",
            ids[3]
        )),
        "{text}"
    );
    for id in &ids[1..3] {
        assert!(
            text.contains(&format!("delete  schema snapshot {id}")),
            "{text}"
        );
    }
    env.run_ok(&["gc", "--keep", "2", "--keep-snapshots", "1", "--apply"]);
    assert_eq!(
        snapshot_ids(env.keys("dynamo-etl/schemas/").await),
        vec![ids[0].clone(), ids[3].clone()]
    );
    // The cache still resolves to the newest snapshot.
    env.run_ok(&[
        "plan",
        "--table",
        &env.table,
        "--total-segments",
        "1",
        "--run-id",
        "r3",
    ]);
    let plan: serde_json::Value =
        serde_json::from_slice(&env.get("dynamo-etl/runs/r3/run.json").await.unwrap()).unwrap();
    assert_eq!(plan["schema_source"], format!("snapshot:{}", ids[3]));
}
