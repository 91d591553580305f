//! Fingerprints on the real PostgreSQL: the gate of `replace` proves that the staged values are
//! what phase 1 wrote. Each tamper with staging between phase 3 and the swap — one byte, one
//! digit, one microsecond, one bit, an empty string made NULL, values swapped between rows, a
//! row deleted and another duplicated — is refused with exit 2 naming the table and column, and
//! the served run stays served. Phase 1's rendering of JSON is checked against jsonb's own.

use crate::support::{infer, show, TestEnv};
use aws_sdk_dynamodb::types::AttributeValue;
use sqlx::Executor;

/// The demo's items plus one organization whose name is the empty string.
async fn env_with_blank_name() -> TestEnv {
    let env = TestEnv::new("tfinger").await;
    let mut items = dynamo_etl::testkit::fixtures::demo_items(4);
    let mut blank = items
        .iter()
        .find(|i| matches!(i.get("pk"), Some(AttributeValue::S(p)) if p.starts_with("ORG#")))
        .expect("the demo has organizations")
        .clone();
    blank.insert("pk".into(), AttributeValue::S("ORG#blank".into()));
    blank.insert("name".into(), AttributeValue::S(String::new()));
    items.push(blank);
    env.load(items.clone()).await;
    env.write_schemas(&infer(&env.table, &items));
    env
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_staged_value_refuses_the_swap_naming_its_table_and_column() {
    let env = env_with_blank_name().await;
    env.pipeline("f0", 1);
    env.phase1("f1", 2, 0);
    env.phase1("f1", 2, 1);
    let staging = format!("\"{}_staging\"", env.target);
    // One row of `table` matching `condition`, by its physical place.
    let one = |table: &str, condition: &str| {
        format!("ctid = (SELECT ctid FROM {staging}.\"{table}\" WHERE {condition} LIMIT 1)")
    };
    let tampers: Vec<(&str, &str, String)> = vec![
        (
            "one byte of a text value",
            "org",
            format!("UPDATE {staging}.\"org\" SET \"name\" = 'X' || substr(\"name\", 2) WHERE {}", one("org", "left(\"name\", 1) <> 'X'")),
        ),
        (
            "a decimal's last digit",
            "org",
            format!("UPDATE {staging}.\"org\" SET \"budget\" = \"budget\" + 0.01 WHERE {}", one("org", "\"budget\" IS NOT NULL")),
        ),
        (
            "a timestamp moved by 1 µs",
            "org",
            format!("UPDATE {staging}.\"org\" SET \"created_at\" = \"created_at\" + interval '1 microsecond' WHERE {}", one("org", "\"created_at\" IS NOT NULL")),
        ),
        (
            "an empty string made NULL",
            "org",
            format!("UPDATE {staging}.\"org\" SET \"name\" = NULL WHERE \"name\" = ''"),
        ),
        (
            "one bit of a binary value",
            "org",
            format!("UPDATE {staging}.\"org\" SET \"logo\" = set_bit(\"logo\", 0, 1 - get_bit(\"logo\", 0)) WHERE {}", one("org", "length(\"logo\") > 0")),
        ),
        (
            "one digit inside a JSON number",
            "fin",
            format!("UPDATE {staging}.\"fin\" SET \"scores\" = CAST(replace(CAST(\"scores\" AS text), '9.5', '9.6') AS jsonb) WHERE {}", one("fin", "CAST(\"scores\" AS text) LIKE '%9.5%'")),
        ),
        (
            "two rows' values of one column swapped",
            "org",
            format!(
                "WITH two AS (SELECT ctid, \"employees\", row_number() OVER (ORDER BY ctid) AS n FROM {staging}.\"org\" WHERE \"employees\" IS NOT NULL ORDER BY ctid LIMIT 2) \
                 UPDATE {staging}.\"org\" o SET \"employees\" = other.\"employees\" FROM two mine, two other \
                 WHERE o.ctid = mine.ctid AND mine.n <> other.n"
            ),
        ),
        (
            "one row deleted and another duplicated",
            "org",
            format!(
                "WITH gone AS (DELETE FROM {staging}.\"org\" WHERE ctid = (SELECT max(ctid) FROM {staging}.\"org\") RETURNING 1) \
                 INSERT INTO {staging}.\"org\" SELECT * FROM {staging}.\"org\" WHERE ctid = (SELECT min(ctid) FROM {staging}.\"org\")"
            ),
        ),
    ];
    for (what, table, sql) in &tampers {
        env.run_ok(&["prepare", "--run-id", "f1"]);
        env.run_ok(&["upload", "--run-id", "f1", "--all-segments"]);
        let mut conn = env.pg().await;
        let changed = conn.execute(sql.as_str()).await.unwrap().rows_affected();
        assert!(changed > 0, "{what}: the tamper changed nothing");
        let out = env.run(&["replace", "--run-id", "f1"], &[]);
        let text = show(&out);
        assert_eq!(out.status.code(), Some(2), "{what}: {text}");
        assert!(
            text.contains(&format!("table {table}")) && text.contains("where the manifests record"),
            "{what}: {text}"
        );
        assert!(
            text.contains("dynamo-etl verify --generation staging --run-id f1"),
            "{what}: {text}"
        );
        assert_eq!(
            env.served_run(&env.target).await.as_deref(),
            Some("f0"),
            "{what}"
        );
        if *what == "one byte of a text value" {
            // `verify` shows which column, and names the reload.
            let out = env.run(
                &["verify", "--run-id", "f1", "--generation", "staging"],
                &[],
            );
            let text = show(&out);
            assert_eq!(out.status.code(), Some(2), "{text}");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let name_line = stdout
                .lines()
                .find(|l| l.contains(" org ") && l.contains(" name "))
                .unwrap_or_else(|| panic!("{text}"));
            assert!(name_line.contains("MISMATCH: digest"), "{text}");
            assert!(
                stdout.lines().any(|l| l.contains(" org ")
                    && l.contains(" budget ")
                    && l.ends_with("proven")),
                "{text}"
            );
            assert!(text.contains("upload --all-segments --run-id f1"), "{text}");
        }
    }
    // The swapped-values tamper keeps every column's digest: only the rows' tells.
    // Untouched, the same run is proven and swapped in.
    env.run_ok(&["prepare", "--run-id", "f1"]);
    env.run_ok(&["upload", "--run-id", "f1", "--all-segments"]);
    env.run_ok(&["replace", "--run-id", "f1"]);
    assert_eq!(env.served_run(&env.target).await.as_deref(), Some("f1"));
    let out = env.run_ok(&["verify", "--run-id", "f1"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("0 count-only"), "{stdout}");
    assert!(
        stdout.lines().skip(1).all(|l| l.ends_with("proven")),
        "{stdout}"
    );
    assert!(stdout.contains("(row digest)"), "{stdout}");
    // `status` shows what the swap proved, as the target keeps it.
    let out = env.run_ok(&["status", "--run-id", "f1"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("proof: the swap proved "), "{stdout}");
    assert!(stdout.contains(", counted 0 "), "{stdout}");
    assert!(stdout.contains("    org: "), "{stdout}");
    // The served schema holds f1, not f0: verifying f0 there is refused, naming the run it holds.
    let out = env.run(&["verify", "--run-id", "f0"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        show(&out).contains("holds run f1, not run f0"),
        "{}",
        show(&out)
    );
    // The target keeps the fingerprints it was proven with, for downstream jobs.
    let mut conn = env.pg().await;
    let kept: Vec<(String, String, String)> = sqlx::query_as(&format!(
        "SELECT \"column_name\", CAST(\"digest\" AS text), \"proof\" FROM \"{}\".\"_dynamo_etl_fingerprints\" WHERE \"table_name\" = 'org' AND \"digest\" IS NOT NULL",
        env.target
    ))
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let manifests: Vec<_> = [env.manifest("f1", 0).await, env.manifest("f1", 1).await]
        .into_iter()
        .map(|m| m.unwrap())
        .collect();
    let name: u128 = manifests
        .iter()
        .map(|m| {
            m.tables["org"]
                .fingerprint
                .as_ref()
                .unwrap()
                .column("name")
                .unwrap()
                .digest
                .expect("PostgreSQL digests every column")
                .0
        })
        .sum();
    assert!(
        kept.contains(&("name".into(), name.to_string(), "proven".into())),
        "{kept:?}"
    );
    assert!(kept.iter().any(|(c, _, _)| c == "(row digest)"), "{kept:?}");
    // The previous generation is f0's, proven too.
    env.run_ok(&["verify", "--run-id", "f0", "--generation", "previous"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn skip_verify_serves_a_tampered_run_and_says_so() {
    let env = TestEnv::with_demo("tfskip", 2).await;
    env.phase1("k1", 1, 0);
    env.run_ok(&["prepare", "--run-id", "k1"]);
    env.run_ok(&["upload", "--run-id", "k1", "--all-segments"]);
    let mut conn = env.pg().await;
    conn.execute(
        format!(
            "UPDATE \"{}_staging\".\"org\" SET \"country\" = 'ZZ'",
            env.target
        )
        .as_str(),
    )
    .await
    .unwrap();
    let out = env.run(
        &["replace", "--run-id", "k1"],
        &[("ETL_SKIP_VERIFY", "true".to_string())],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(show(&out).contains("--skip-verify"), "{}", show(&out));
    assert_eq!(env.served_run(&env.target).await.as_deref(), Some("k1"));
    let out = env.run_ok(&["status", "--run-id", "k1"]);
    assert!(show(&out).contains("proof: none kept"), "{}", show(&out));
}

/// `verify` tells which segment's rows differ: on PostgreSQL each segment's load writes its rows
/// and its ledger row in one transaction, so the rows of a table that fails its proof are
/// measured per writing transaction against that segment's manifest. A row edited later is
/// counted apart (its new version has the editor's transaction); a row deleted shows as its
/// segment's rows differing, and nothing else is blamed.
#[tokio::test(flavor = "multi_thread")]
async fn verify_names_the_segment_whose_rows_differ() {
    let env = TestEnv::with_demo("tfwhere", 6).await;
    let total = 3;
    for k in 0..total {
        env.phase1("w1", total, k);
    }
    let staging = format!("\"{}_staging\"", env.target);
    let ledger = format!("{staging}.\"_dynamo_etl_ledger\"");
    // The org row of the highest segment that has any, by its place, and that segment.
    let victim = format!(
        "SELECT CAST(l.segment AS bigint), CAST(o.ctid AS text) FROM {staging}.\"org\" o JOIN {ledger} l ON CAST(o.xmin AS text) = CAST(l.xmin AS text) ORDER BY l.segment DESC, o.ctid LIMIT 1"
    );
    let tampers = [
        (
            "edited",
            "UPDATE {t} SET \"name\" = 'X' || \"name\" WHERE ctid = '{c}'",
        ),
        ("deleted", "DELETE FROM {t} WHERE ctid = '{c}'"),
    ];
    for (what, tamper) in tampers {
        env.run_ok(&["prepare", "--run-id", "w1"]);
        for k in 0..total {
            env.run_ok(&["upload", "--run-id", "w1", "--segment", &k.to_string()]);
        }
        let mut conn = env.pg().await;
        let (segment, ctid): (i64, String) =
            sqlx::query_as(&victim).fetch_one(&mut conn).await.unwrap();
        let sql = tamper
            .replace("{t}", &format!("{staging}.\"org\""))
            .replace("{c}", &ctid);
        assert_eq!(
            conn.execute(sql.as_str()).await.unwrap().rows_affected(),
            1,
            "{what}"
        );
        let out = env.run(
            &["verify", "--run-id", "w1", "--generation", "staging"],
            &[],
        );
        let text = show(&out);
        assert_eq!(out.status.code(), Some(2), "{what}: {text}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let blamed: Vec<&str> = stdout
            .lines()
            .filter(|l| l.contains(" where: segment"))
            .collect();
        assert_eq!(blamed.len(), 1, "{what}: {text}");
        assert!(
            blamed[0].contains(&format!("segment {segment}'s rows differ: table org")),
            "{what}: {text}"
        );
        let later = stdout
            .lines()
            .any(|l| l.contains("1 row of table org written by a transaction other than"));
        assert_eq!(later, what == "edited", "{what}: {text}");
        // The error says it too, for the log.
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains(&format!("(where: segment {segment}'s rows differ")),
            "{what}: {text}"
        );
    }
    // Without the ledger nothing tells the loads apart: the mismatch is reported all the same.
    let mut conn = env.pg().await;
    conn.execute(format!("DROP TABLE {ledger}").as_str())
        .await
        .unwrap();
    let out = env.run(
        &["verify", "--run-id", "w1", "--generation", "staging"],
        &[],
    );
    let text = show(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("MISMATCH") && !text.contains("where:"),
        "{text}"
    );
}

/// The fingerprint of a JSON value hashes the text phase 1 writes as it is, so that text must be
/// the one PostgreSQL's `jsonb` prints back for it: every attribute of the adversarial, limit and
/// benchmark items, and of hand-made values that stress key order, escapes and numbers.
#[tokio::test(flavor = "multi_thread")]
async fn phase_1_writes_json_as_jsonb_prints_it() {
    use dynamo_etl::testkit::fixtures;
    use dynamo_etl::value::{json, ItemView};
    let env = TestEnv::new("tfjson").await;
    let mut conn = env.pg().await;
    let mut items = fixtures::adversarial_items();
    items.extend(fixtures::limit_items());
    items.extend(fixtures::bench_items(300, 11));
    let map = |entries: &[(&str, AttributeValue)]| {
        AttributeValue::M(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    };
    let n = |s: &str| AttributeValue::N(s.into());
    let s = |s: &str| AttributeValue::S(s.into());
    let made = [
        map(&[
            ("b", n("1")),
            ("aa", n("2")),
            ("a", n("3")),
            ("$a", n("4")),
            ("$", n("5")),
        ]),
        map(&[
            ("é", s("x")),
            ("zz", s("y")),
            ("$$x", map(&[("", map(&[]))])),
            ("ab", AttributeValue::L(vec![])),
        ]),
        AttributeValue::L(
            [
                "1.50",
                "-0",
                "1E2",
                "2.5E-3",
                "-1.0E1",
                "0.000",
                "123456789012345678901234567890.12345678",
                "1E-130",
                "9.99E+125",
            ]
            .iter()
            .map(|t| n(t))
            .collect(),
        ),
        s("q\"\\\n\r\t\u{8}\u{c}\u{1}\u{1f}/é✓ \u{7f}"),
        s("nul \0 inside"),
        AttributeValue::Ss(vec!["a".into(), "ü,\"".into()]),
        AttributeValue::Ns(vec!["1".into(), "-2.50".into()]),
        AttributeValue::B(vec![0, 255, 254, 128, 10].into()),
    ];
    let mut texts: Vec<String> = Vec::new();
    for item in &items {
        for (name, value) in ItemView::from_sdk(item).iter() {
            if let Ok(text) = json::to_json(value, name) {
                texts.push(text);
            }
        }
    }
    for value in &made {
        texts.push(json::to_json(&dynamo_etl::value::Value::from_sdk(value), "v").unwrap());
    }
    let printed: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(CAST(t AS jsonb) AS text) FROM unnest($1::text[]) WITH ORDINALITY AS u(t, i) ORDER BY i",
    )
    .bind(&texts)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(printed.len(), texts.len());
    assert!(texts.len() > 1000, "{} values", texts.len());
    for (ours, theirs) in texts.iter().zip(&printed) {
        assert_eq!(ours, theirs);
    }
}

/// `upload --all-segments` proves what COPY stored before committing, once staging holds every
/// segment (how `run` loads Redshift, whose COPY can change a value without an error): a COPY
/// that changes a value — played here by a trigger on the staged table — commits nothing and
/// exits 2 naming the table and column.
#[tokio::test(flavor = "multi_thread")]
async fn a_load_of_every_segment_commits_only_what_phase_1_wrote() {
    let env = TestEnv::with_demo("tfload", 2).await;
    env.phase1("u1", 2, 0);
    env.phase1("u1", 2, 1);
    env.run_ok(&["prepare", "--run-id", "u1"]);
    let staging = format!("{}_staging", env.target);
    let mut pg = env.pg().await;
    for statement in [
        "CREATE OR REPLACE FUNCTION public.etl_test_copy_rounds() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.\"name\" := upper(NEW.\"name\"); RETURN NEW; END $$".to_string(),
        format!("CREATE TRIGGER copy_rounds BEFORE INSERT ON \"{staging}\".\"org\" FOR EACH ROW EXECUTE FUNCTION public.etl_test_copy_rounds()"),
    ] {
        pg.execute(statement.as_str()).await.unwrap();
    }
    let out = env.run(&["upload", "--run-id", "u1", "--all-segments"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        show(&out).contains("not what phase 1 wrote")
            && show(&out).contains("table org, column name"),
        "{}",
        show(&out)
    );
    assert_eq!(env.count(&staging, "org").await, 0, "nothing committed");
    pg.execute(format!("DROP TRIGGER copy_rounds ON \"{staging}\".\"org\"").as_str())
        .await
        .unwrap();
    env.run_ok(&["upload", "--run-id", "u1", "--all-segments"]);
    assert!(env.count(&staging, "org").await > 0);
}
