//! The planner's statistics of a swapped-in run on the real PostgreSQL: `replace` analyzes every
//! staged table before the swap, so the served tables have them; with `--no-analyze` (or
//! `ETL_NO_ANALYZE`) it does not. Autovacuum is switched off on the staged tables, so whatever
//! statistics they have come from `replace`.

use crate::support::{show, TestEnv};
use sqlx::Executor;

const TABLES: [&str; 5] = ["org", "group", "fin", "vuln", "_unclassified"];

/// Phase 1, prepare and phase 3 of a one-segment run, with autovacuum off on the staged tables.
async fn staged(env: &TestEnv, run: &str) {
    env.phase1(run, 1, 0);
    env.run_ok(&["prepare", "--run-id", run]);
    let mut conn = env.pg().await;
    for t in TABLES {
        conn.execute(
            format!(
                "ALTER TABLE \"{}_staging\".\"{t}\" SET (autovacuum_enabled = false)",
                env.target
            )
            .as_str(),
        )
        .await
        .unwrap();
    }
    env.run_ok(&["upload", "--run-id", run, "--all-segments"]);
}

/// For `schema.table`: the planner's row estimate (-1: never analyzed) and how many columns
/// have statistics.
async fn statistics(env: &TestEnv, schema: &str, table: &str) -> (f64, i64) {
    let mut conn = env.pg().await;
    let reltuples: f32 = sqlx::query_scalar(&format!(
        "SELECT reltuples FROM pg_class WHERE oid = '\"{schema}\".\"{table}\"'::regclass"
    ))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let columns: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stats WHERE schemaname = $1 AND tablename = $2",
    )
    .bind(schema)
    .bind(table)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    (reltuples as f64, columns)
}

#[tokio::test(flavor = "multi_thread")]
async fn replace_leaves_the_served_tables_analyzed_unless_told_not_to() {
    let env = TestEnv::with_demo("tstats", 3).await;
    staged(&env, "s1").await;
    let dry = env.run_ok(&["replace", "--run-id", "s1", "--dry-run"]);
    let printed = String::from_utf8_lossy(&dry.stdout);
    assert!(
        printed.contains(&format!("ANALYZE \"{}_staging\".\"vuln\";", env.target)),
        "{printed}"
    );
    env.run_ok(&["replace", "--run-id", "s1"]);
    for t in ["org", "vuln"] {
        let rows = env.count(&env.target, t).await;
        let (estimate, columns) = statistics(&env, &env.target, t).await;
        assert_eq!(estimate, rows as f64, "{t}: the planner knows its rows");
        assert!(columns > 0, "{t}: its columns have statistics");
    }

    staged(&env, "s2").await;
    let no = [("ETL_NO_ANALYZE", "true".to_string())];
    let dry = env.run(&["replace", "--run-id", "s2", "--dry-run"], &no);
    assert!(dry.status.success(), "{}", show(&dry));
    assert!(
        !String::from_utf8_lossy(&dry.stdout).contains("ANALYZE"),
        "{}",
        show(&dry)
    );
    let out = env.run(&["replace", "--run-id", "s2"], &no);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(env.served_run(&env.target).await.as_deref(), Some("s2"));
    for t in ["org", "vuln"] {
        // No column statistics. (The table's row estimate is set all the same: building the key
        // index before the swap sets it, as CREATE INDEX does, see pg_class.reltuples in
        // https://www.postgresql.org/docs/current/catalog-pg-class.html.)
        assert_eq!(
            statistics(&env, &env.target, t).await.1,
            0,
            "{t}: never analyzed"
        );
    }
    // The flag works as a flag too.
    staged(&env, "s3").await;
    env.run_ok(&["replace", "--run-id", "s3", "--no-analyze"]);
    assert_eq!(statistics(&env, &env.target, "vuln").await.1, 0);
}
