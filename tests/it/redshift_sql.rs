//! Redshift cannot run here, so the SQL each phase sends it is pinned by golden files generated
//! from the same code path as PostgreSQL's, and every statement must parse with a Redshift-dialect
//! SQL parser. Regenerate after an intended change with `ETL_BLESS=1 cargo test --test it redshift_sql`
//! and review the diff.

use crate::support;
use dynamo_etl::schema::SchemaSet;
use dynamo_etl::staging::fingerprint::{covered_columns, Fingerprint};
use dynamo_etl::staging::manifest::PartFile;
use dynamo_etl::staging::parts::codec::PartCompression;
use dynamo_etl::staging::plan::RunPlan;
use dynamo_etl::warehouse::fingerprint::{ColumnCheck, TableProof};
use dynamo_etl::warehouse::redshift::copy::{copy_manifest, copy_statement};
use dynamo_etl::warehouse::redshift::load_errors::{self, CopyMark};
use dynamo_etl::warehouse::redshift::{Options, Redshift};
use dynamo_etl::warehouse::swap::{self, SwapKind};
use dynamo_etl::warehouse::{fingerprint, increment, ledger};
use dynamo_etl::warehouse::{DialectName, DialectOptions, WarehouseConfig, WarehouseUrl};
use sqlparser::dialect::RedshiftSqlDialect;
use sqlparser::parser::Parser;
use std::collections::BTreeMap;
use std::time::Duration;

fn plan() -> RunPlan {
    let schemas = SchemaSet::read_dir(&support::repo_root().join("schemas"), "platform").unwrap();
    RunPlan {
        source_table: "platform".into(),
        total_segments: 4,
        dialect: DialectName::Redshift,
        key_attributes: vec!["pk".into(), "sk".into()],
        // As `plan` fits them for Redshift.
        schemas: schemas
            .schemas
            .iter()
            .map(|s| {
                dynamo_etl::warehouse::redshift::limits::LIMITS
                    .fit_schema(s)
                    .0
            })
            .collect(),
        created_at: "2026-11-21T00:00:00Z".parse().unwrap(),
        ..dynamo_etl::testkit::runs::plan("2026-11-21-nightly")
    }
}

/// A user's `--post-swap-sql`, which may run for long.
const POST_SWAP_SQL: &str =
    "INSERT INTO \"analytics\".\"swaps\" SELECT COUNT(*) FROM \"platform\".\"org\"";

fn config() -> WarehouseConfig {
    WarehouseConfig {
        url: WarehouseUrl::parse("redshift://etl:secret@cluster.example:5439/dev").unwrap(),
        target: "platform".into(),
        grantees: vec![
            "group:analysts".parse().unwrap(),
            "role:bi_reader".parse().unwrap(),
            "etl_reader".parse().unwrap(),
        ],
        lock_timeout: Duration::from_secs(60),
        post_swap_sql: Some(POST_SWAP_SQL.into()),
        analyze: true,
        verify: true,
        options: DialectOptions::Redshift(options()),
    }
}

fn options() -> Options {
    Options {
        iam_role: Some("arn:aws:iam::123456789012:role/dynamo-etl-copy".into()),
        s3_region: Some("eu-west-1".into()),
        query_group: Some("dynamo-etl".into()),
        credentials: Default::default(),
    }
}

/// Every table's COPY as the loads run it, in table-name order (the order of a manifest's
/// tables): the session noted (for the load errors), the COPY from the manifest under
/// `scratch`, its count. Both codecs: zstd is the default, gzip parts load the same way.
fn copies(plan: &RunPlan, config: &WarehouseConfig, scratch: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut tables = plan.warehouse_tables();
    tables.sort_by(|a, b| a.table.cmp(&b.table));
    for (i, table) in tables.into_iter().enumerate() {
        let url = format!(
            "s3://etl-bucket/dynamo-etl/runs/{}/{scratch}{}.manifest",
            plan.run_id, table.table
        );
        let codec = [PartCompression::Zstd, PartCompression::Gzip][i % 2];
        out.push(load_errors::MARK_SQL.to_string());
        out.push(copy_statement(
            &config.staging(),
            &table,
            &url,
            codec,
            &options(),
        ));
        out.push("SELECT pg_last_copy_count()".into());
    }
    out
}

/// Every statement of every phase, by golden file name, from the functions the dialect runs.
fn statements() -> Vec<(&'static str, Vec<String>)> {
    let (plan, config) = (plan(), config());
    let redshift = Redshift::new(config.clone(), options());
    let staging = config.staging();
    let mut upload = redshift.session_setup();
    upload.extend(redshift.claim_sql(&staging, &plan.run_id, 2));
    upload.extend(copies(&plan, &config, "load/2/"));
    let counts = BTreeMap::from([("org".to_string(), 20), ("vuln".to_string(), 480)]);
    upload.push(ledger::record_segment_sql(&redshift, &staging, 2, &counts));
    // All segments not loaded yet (0, 1 and 3 here) in one transaction, one COPY per table.
    let mut upload_all = redshift.session_setup();
    upload_all.push(swap::lock_sql(&redshift));
    upload_all.push(ledger::loaded_segments_sql(&staging));
    upload_all.extend(copies(&plan, &config, "load/all/"));
    let segments: Vec<(u32, BTreeMap<String, u64>)> = [0, 1, 3]
        .into_iter()
        .map(|k| {
            (
                k,
                BTreeMap::from([
                    ("org".to_string(), 20 + k as u64),
                    ("vuln".to_string(), 480),
                ]),
            )
        })
        .collect();
    upload_all.extend(ledger::record_segments_sql(
        &redshift,
        &staging,
        &plan.run_id,
        &segments,
    ));
    let mark = CopyMark {
        process: 1073815812,
        since: "2026-11-21 02:10:07".into(),
    };
    let load_errors = load_errors::queries(
        &mark,
        "s3://etl-bucket/dynamo-etl/runs/2026-11-21-nightly/segments/",
    )
    .to_vec();
    // A swap's transaction as `replace`/`rollback` run it (the gate's reads between the two).
    let with_lock = |kind, exists| {
        let mut out = swap::lock_statements(&redshift, kind, true);
        out.extend(swap::statements(&redshift, kind, exists));
        out
    };
    let mut inc_plan = plan.clone();
    inc_plan.run_id = "inc-20261121T000000.000Z-20261121T010000.000Z".into();
    inc_plan.export = Some(dynamo_etl::source::export::ExportSource {
        bucket: "etl-bucket".into(),
        prefix: "exports/AWSDynamoDB/01763683200000-1a2b3c4d".into(),
        export_arn: None,
    });
    inc_plan.increment = Some(dynamo_etl::staging::increment::IncrementSpec {
        base_run: plan.run_id.clone(),
        from: "2026-11-21T00:00:00.000Z".into(),
        to: "2026-11-21T01:00:00.000Z".into(),
        view: "NEW_AND_OLD_IMAGES".into(),
        stream: None,
    });
    let mut inc_config = config.clone();
    inc_config.target = format!("{}{}", config.target, increment::INCREMENT_SUFFIX);
    let mut apply = increment::lock_statements(&redshift);
    apply.extend(increment::apply_sql(
        &redshift,
        &inc_plan,
        &inc_config.staging(),
        42,
    ));
    // The increment's proof, inside its apply: the staged changes against their manifests,
    // then per served table the changed items' rows (before and after the statements) and the
    // newest images, then the target's kept figures moved on.
    let inc_schema = inc_config.staging();
    let mut increment_proof: Vec<String> = inc_plan
        .warehouse_tables()
        .iter()
        .map(|t| fingerprint::table_sql(&redshift, &inc_schema, t).0)
        .collect();
    for (index, table) in inc_plan.served_tables().iter().enumerate() {
        let changed = increment::changed_rows_sql(&redshift, &inc_plan, &inc_schema, index, table);
        increment_proof.push(fingerprint::rows_sql(&redshift, &changed, table).0);
        let inserted = increment::inserted_rows_sql(&inc_schema, table);
        increment_proof.push(fingerprint::rows_sql(&redshift, &inserted, table).0);
    }
    let kept = inc_plan
        .served_tables()
        .iter()
        .map(|t| (t.table.clone(), Fingerprint::empty(&covered_columns(t))))
        .collect();
    increment_proof.extend(fingerprint::rewrite_kept_sql(
        &redshift,
        &config.target,
        &kept,
    ));
    // A batch of `follow`: the same apply, the stream positions recorded instead of a window.
    let mut follow_plan = inc_plan.clone();
    follow_plan.run_id = "fol-w-20261121T000010.000000Z".into();
    follow_plan.export = None;
    let shard = |id: &str, parent: Option<&str>, seq: Option<&str>, finished: bool| {
        dynamo_etl::staging::increment::ShardPosition {
            shard_id: id.into(),
            parent_shard_id: parent.map(str::to_string),
            sequence_number: seq.map(str::to_string),
            finished,
            newest_record_at: seq.map(|_| "2026-11-21T00:00:09.000Z".to_string()),
            skip_before: None,
        }
    };
    follow_plan.increment = Some(dynamo_etl::staging::increment::IncrementSpec {
        base_run: plan.run_id.clone(),
        from: "2026-11-21T00:00:00.000Z".into(),
        to: "2026-11-21T00:00:09.000Z".into(),
        view: "NEW_AND_OLD_IMAGES".into(),
        stream: Some(dynamo_etl::staging::increment::StreamSpan {
            stream_arn: "arn:aws:dynamodb:us-east-1:123456789012:table/platform/stream/2026-11-20T00:00:00.000".into(),
            from: vec![shard("shardId-00000001763600000000-aaaaaaaa", None, Some("100"), false)],
            to: vec![
                shard("shardId-00000001763600000000-aaaaaaaa", None, Some("4200"), true),
                shard("shardId-00000001763680000000-bbbbbbbb", Some("shardId-00000001763600000000-aaaaaaaa"), Some("4300"), false),
            ],
            records: 42,
            ttl_deletes: 1,
        }),
    });
    let mut follow_config = config.clone();
    follow_config.target = format!("{}{}", config.target, increment::FOLLOW_SUFFIX);
    let mut follow_apply = increment::lock_statements(&redshift);
    follow_apply.push(increment::read_positions_sql(&config.target));
    follow_apply.extend(increment::apply_sql(
        &redshift,
        &follow_plan,
        &follow_config.staging(),
        42,
    ));
    // The gate's proof of the staged values: one query per table (count-only where Redshift's
    // documentation pins no rendering).
    let tables = plan.warehouse_tables();
    let mut fingerprints: Vec<String> = tables
        .iter()
        .map(|t| fingerprint::table_sql(&redshift, &staging, t).0)
        .collect();
    // Then, proven, the record the target keeps (no rows here: every figure zero).
    let expected = tables
        .iter()
        .map(|t| (t.table.clone(), Fingerprint::empty(&covered_columns(t))))
        .collect();
    let check = |proven: bool| match proven {
        true => ColumnCheck::Proven,
        false => ColumnCheck::CountOnly,
    };
    let proof: Vec<TableProof> = tables
        .iter()
        .map(|t| {
            let proven = fingerprint::table_sql(&redshift, &staging, t).1;
            TableProof {
                table: t.table.clone(),
                rows: None,
                row_digest: check(proven.iter().all(|p| *p)),
                columns: covered_columns(t)
                    .into_iter()
                    .zip(proven)
                    .map(|(c, p)| (c, check(p)))
                    .collect(),
            }
        })
        .collect();
    fingerprints.extend(fingerprint::record_sql(
        &redshift, &staging, &expected, &proof,
    ));
    vec![
        ("prepare", ledger::prepare_sql(&redshift, &plan)),
        ("fingerprints", fingerprints),
        (
            "increment_prepare",
            ledger::prepare_sql(&Redshift::new(inc_config, options()), &inc_plan),
        ),
        ("increment_apply", apply),
        ("increment_proof", increment_proof),
        ("follow_apply", follow_apply),
        ("upload", upload.clone()),
        ("upload_all", upload_all),
        ("load_errors", load_errors),
        ("analyze", swap::analyze_sql(&redshift, &plan)),
        ("replace", with_lock(SwapKind::Replace, true)),
        ("replace_first_run", with_lock(SwapKind::Replace, false)),
        ("rollback", with_lock(SwapKind::Rollback, true)),
    ]
}

fn render(statements: &[String]) -> String {
    statements
        .iter()
        .map(|s| format!("{s};\n"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn generated_redshift_sql_matches_the_golden_files() {
    let dir = support::repo_root().join("tests/golden/redshift");
    for (name, sql) in statements() {
        let path = dir.join(format!("{name}.sql"));
        let text = render(&sql);
        if std::env::var("ETL_BLESS").is_ok() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
        }
        let golden = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; bless with ETL_BLESS=1", path.display()));
        assert_eq!(
            golden,
            text,
            "{} differs from the generated SQL; review, then bless with ETL_BLESS=1",
            path.display()
        );
    }
}

/// Redshift's statement_timeout cancels any statement over the limit, lock wait or not
/// (r_statement_timeout): it may be set while locks are taken, never while rows are deleted,
/// inserted or the user's SQL runs.
#[test]
fn only_lock_waits_run_under_the_statement_timeout() {
    let mut checked = 0;
    for (name, sql) in statements() {
        let mut limit: Option<u64> = None;
        for statement in &sql {
            if let Some(ms) = statement.strip_prefix("SET statement_timeout TO ") {
                limit = Some(ms.parse().unwrap()).filter(|ms| *ms > 0);
                continue;
            }
            let long = statement.starts_with("DELETE")
                || statement.starts_with("INSERT")
                || statement.starts_with("COPY")
                || statement == POST_SWAP_SQL;
            if long {
                checked += 1;
                assert_eq!(
                    limit, None,
                    "{name}: this statement would be cancelled after the lock timeout: {statement}"
                );
            }
            if statement.starts_with("LOCK")
                && ["replace", "rollback", "increment_apply"]
                    .iter()
                    .any(|n| name.starts_with(n))
            {
                assert!(
                    limit.is_some(),
                    "{name}: the lock wait is not bounded: {statement}"
                );
            }
        }
    }
    assert!(checked > 10, "the long statements were found ({checked})");
}

#[test]
fn every_generated_statement_parses_as_redshift_sql() {
    for (name, sql) in statements() {
        for statement in sql {
            if let Err(e) = Parser::parse_sql(&RedshiftSqlDialect {}, &statement) {
                panic!("{name}: the Redshift parser rejects\n{statement}\n{e}");
            }
        }
    }
}

#[test]
fn identifiers_from_data_are_always_quoted() {
    for (name, sql) in statements() {
        for statement in sql {
            for table in [
                "org",
                "group",
                "fin",
                "vuln",
                "_unclassified",
                "_dynamo_etl_ledger",
            ] {
                let bare = format!(".{table} ");
                assert!(
                    !statement.contains(&bare),
                    "{name}: unquoted table {table} in {statement}"
                );
            }
        }
    }
    // A hostile target or column name stays inside its quotes.
    let mut plan = plan();
    plan.schemas[0].columns[0].column = "x\"; DROP TABLE y; --".into();
    let statements = ledger::prepare_sql(&Redshift::new(config(), options()), &plan);
    let create = statements
        .iter()
        .find(|s| s.contains("DROP TABLE y"))
        .unwrap();
    assert!(create.contains("\"x\"\"; DROP TABLE y; --\""), "{create}");
    Parser::parse_sql(&RedshiftSqlDialect {}, create).expect("still one CREATE TABLE statement");
}

#[test]
fn copy_manifests_list_every_part_as_mandatory() {
    let files = vec![
        PartFile {
            key: "p/runs/r/segments/0/org/part-00000.csv.gz".into(),
            rows: 10,
            bytes: 123,
            csv_bytes: 456,
            sha256: "ab".repeat(32),
            etag: Some("\"e1\"".into()),
            fingerprint: None,
        },
        PartFile {
            key: "p/runs/r/segments/0/org/part-00001.csv.gz".into(),
            rows: 5,
            bytes: 77,
            csv_bytes: 99,
            sha256: "cd".repeat(32),
            etag: None,
            fingerprint: None,
        },
    ];
    let manifest: serde_json::Value =
        serde_json::from_str(&copy_manifest("bucket", &files)).unwrap();
    let entries = manifest["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(
        entries[1]["url"],
        "s3://bucket/p/runs/r/segments/0/org/part-00001.csv.gz"
    );
    assert!(entries.iter().all(|e| e["mandatory"] == true));
    assert_eq!(entries[0]["meta"]["content_length"], 123);
}

/// Phase 1 digests a column only where the run's dialect recomputes the digest from the stored
/// value (its limits say which types): each dialect's SQL hashes exactly those types, so a
/// digest is neither spent for nothing nor missing where the gate would check it.
#[test]
fn each_dialect_hashes_exactly_the_types_its_limits_say_phase_1_digests() {
    use dynamo_etl::schema::LogicalType;
    use dynamo_etl::warehouse::postgres::{self, Postgres};
    use dynamo_etl::warehouse::Warehouse;
    let types = [
        LogicalType::Bigint,
        LogicalType::Decimal {
            precision: 12,
            scale: 2,
        },
        LogicalType::NumericText,
        LogicalType::Text { max_bytes: 10 },
        LogicalType::Timestamp,
        LogicalType::Boolean,
        LogicalType::Binary,
        LogicalType::Json,
    ];
    let redshift = Redshift::new(config(), options());
    let postgres = Postgres::new(config(), postgres::Options::default());
    let dialects: [(&dyn Warehouse, DialectName); 2] = [
        (&redshift, DialectName::Redshift),
        (&postgres, DialectName::Postgres),
    ];
    for (dialect, name) in dialects {
        let digested = dynamo_etl::warehouse::limits(name).digested;
        for t in types {
            assert_eq!(
                dialect.value_hash_sql(t, "\"c\"").is_some(),
                digested.covers(t),
                "{name}: {t:?}"
            );
        }
    }
}
