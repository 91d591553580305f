//! Every valid DynamoDB item loads into both dialects or is reported by key: phase 1 for
//! Redshift on an edge-case corpus, every field of every part checked against Redshift's
//! documented limits (written out here from the documentation, not taken from the dialect's
//! own table, which is what is being checked); and the PostgreSQL path loading the same corpus
//! end to end, every value compared.

use crate::support::{infer, key_json, key_of, same_item, show, TestEnv};
use dynamo_etl::schema::{overflow_schema, unclassified_schema, DataSchema};
use dynamo_etl::staging::plan::RunPlan;
use dynamo_etl::testkit::decode::{decode_overflow, decode_row, decode_rows, decompress};
use dynamo_etl::testkit::fixtures;
use dynamo_etl::value::Item;
use std::collections::{HashMap, HashSet};

/// Redshift's limits, from <https://docs.aws.amazon.com/redshift/latest/dg/>.
mod redshift {
    /// VARCHAR(n): n bytes, at most 65,535 (`r_Character_types.html`).
    pub const VARCHAR: usize = 65_535;
    /// DECIMAL precision and scale (`r_Numeric_types201.html`); precision 19 holds only up to
    /// 9223372036854775807, so it must not be declared.
    pub const PRECISION: u32 = 38;
    pub const SCALE: u32 = 37;
    /// A string inside SUPER (`limitations-super.html`).
    pub const SUPER_STRING: usize = 65_535;
    /// A SUPER value loaded from CSV: 1 MB (`r_SUPER_type.html`).
    pub const SUPER_CSV: usize = 1024 * 1024;
    /// VARBYTE, the figure every version accepts (`r_VARBYTE_type.html`).
    pub const VARBYTE: usize = 1_024_000;
    /// One input row (`copy-parameters-data-source-s3.html`).
    pub const ROW: usize = 4 * 1024 * 1024;
    /// Columns per table and identifier bytes (`amazon-redshift-limits.html`, `r_names.html`).
    pub const COLUMNS: usize = 1600;
    pub const IDENTIFIER: usize = 127;
}

/// The longest string or key in JSON text, refusing duplicate keys (Redshift's SUPER refuses
/// them from CSV, per `ingest-super.html`).
fn check_json(text: &str) -> Result<usize, String> {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    struct Longest;
    impl<'de> DeserializeSeed<'de> for Longest {
        type Value = usize;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Longest {
        type Value = usize;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_str<E>(self, v: &str) -> Result<usize, E> {
            Ok(v.len())
        }
        fn visit_bool<E>(self, _: bool) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_i64<E>(self, _: i64) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_u64<E>(self, _: u64) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_f64<E>(self, _: f64) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_unit<E>(self) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
            let mut longest = 0;
            while let Some(n) = seq.next_element_seed(Longest)? {
                longest = longest.max(n);
            }
            Ok(longest)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
            let mut keys = HashSet::new();
            let mut longest = 0;
            while let Some(key) = map.next_key::<String>()? {
                longest = longest.max(key.len());
                if !keys.insert(key.clone()) {
                    return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
                }
                longest = longest.max(map.next_value_seed(Longest)?);
            }
            Ok(longest)
        }
    }
    // Numbers must stay exact: serde_json's arbitrary precision is not enabled, so a long
    // number is read as f64 here, which is fine for measuring strings.
    let mut de = serde_json::Deserializer::from_str(text);
    let longest = Longest.deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(longest)
}

/// A Redshift column type from the DDL, as the checks need it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum RedshiftType {
    Varchar(usize),
    Decimal(u32, u32),
    Varbyte(usize),
    Super,
    Bigint,
    Boolean,
    Timestamptz,
}

/// The column types of every `CREATE TABLE` of `prepare`, parsed with the Redshift-dialect
/// parser, by table and column.
fn redshift_ddl(statements: &[String]) -> HashMap<String, Vec<(String, RedshiftType)>> {
    use sqlparser::ast::Statement;
    let mut tables = HashMap::new();
    for sql in statements {
        let parsed =
            sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::RedshiftSqlDialect {}, sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let Statement::CreateTable(create) = &parsed[0] else {
            continue;
        };
        let name = create
            .name
            .0
            .last()
            .unwrap()
            .to_string()
            .trim_matches('"')
            .to_string();
        if name.starts_with("_dynamo_etl") {
            continue;
        }
        assert!(name.len() <= redshift::IDENTIFIER, "{name}");
        let columns: Vec<(String, RedshiftType)> = create
            .columns
            .iter()
            .map(|c| {
                let column = c.name.value.clone();
                assert!(column.len() <= redshift::IDENTIFIER, "{name}.{column}");
                let ty = c.data_type.to_string().to_uppercase();
                let args = |ty: &str| -> Vec<u32> {
                    let inner = ty.split_once('(').unwrap().1.trim_end_matches(')');
                    inner
                        .split(',')
                        .map(|a| a.trim().parse().unwrap())
                        .collect()
                };
                let t = match ty.as_str() {
                    "SUPER" => RedshiftType::Super,
                    "BIGINT" => RedshiftType::Bigint,
                    "BOOLEAN" => RedshiftType::Boolean,
                    "TIMESTAMPTZ" | "TIMESTAMP WITH TIME ZONE" => RedshiftType::Timestamptz,
                    t if t.starts_with("VARCHAR(") => RedshiftType::Varchar(args(t)[0] as usize),
                    t if t.starts_with("VARBYTE(") || t.starts_with("VARBINARY(") => {
                        RedshiftType::Varbyte(args(t)[0] as usize)
                    }
                    t if t.starts_with("DECIMAL(") => {
                        let a = args(t);
                        RedshiftType::Decimal(a[0], a[1])
                    }
                    other => panic!("{name}.{column}: unexpected type {other}"),
                };
                match t {
                    RedshiftType::Varchar(n) => {
                        assert!(n <= redshift::VARCHAR, "{name}.{column} {ty}")
                    }
                    RedshiftType::Varbyte(n) => {
                        assert!(n <= redshift::VARBYTE, "{name}.{column} {ty}")
                    }
                    RedshiftType::Decimal(p, s) => assert!(
                        p <= redshift::PRECISION && s <= redshift::SCALE && s <= p && p != 19,
                        "{name}.{column} {ty}"
                    ),
                    _ => {}
                }
                (column, t)
            })
            .collect();
        assert!(
            columns.len() <= redshift::COLUMNS,
            "{name}: {} columns",
            columns.len()
        );
        tables.insert(name, columns);
    }
    tables
}

/// One field against its Redshift column type; `None` is NULL.
fn check_field(at: &str, ty: RedshiftType, field: Option<&str>) {
    let Some(text) = field else { return };
    match ty {
        RedshiftType::Varchar(n) => {
            assert!(text.len() <= n, "{at}: {} bytes > VARCHAR({n})", text.len())
        }
        RedshiftType::Decimal(p, s) => {
            let digits = text.trim_start_matches('-');
            let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
            assert!(
                int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
                    && frac.len() as u32 <= s
                    && int.trim_start_matches('0').len() as u32 <= p - s,
                "{at}: {text} does not fit DECIMAL({p},{s})"
            );
        }
        RedshiftType::Varbyte(n) => {
            assert!(
                text.bytes().all(|b| b.is_ascii_hexdigit()),
                "{at}: VARBYTE text is not plain hex"
            );
            assert!(
                text.len() % 2 == 0 && text.len() / 2 <= n,
                "{at}: {} hex digits",
                text.len()
            );
        }
        RedshiftType::Super => {
            assert!(
                text.len() <= redshift::SUPER_CSV,
                "{at}: SUPER of {} bytes",
                text.len()
            );
            let longest = check_json(text).unwrap_or_else(|e| panic!("{at}: {e}"));
            assert!(
                longest <= redshift::SUPER_STRING,
                "{at}: a string of {longest} bytes in SUPER"
            );
        }
        RedshiftType::Bigint => {
            text.parse::<i64>()
                .unwrap_or_else(|_| panic!("{at}: {text} is not a BIGINT"));
        }
        RedshiftType::Boolean => assert!(text == "true" || text == "false", "{at}: {text}"),
        RedshiftType::Timestamptz => {
            let b = text.as_bytes();
            let ok = text.ends_with('Z')
                && b.len() >= 20
                && b[10] == b'T'
                && &text[0..4] != "0000"
                && chrono::DateTime::parse_from_rfc3339(text).is_ok();
            assert!(
                ok,
                "{at}: {text} is not an ISO 8601 UTC timestamp TIMEFORMAT 'auto' reads"
            );
        }
    }
}

/// The bytes of one CSV row as phase 1 wrote it: its fields quoted, quotes doubled.
fn row_bytes(fields: &[Option<String>]) -> usize {
    fields
        .iter()
        .map(|f| {
            f.as_ref()
                .map_or(3, |t| t.len() + 3 + t.matches('"').count())
        })
        .sum()
}

/// Every row of `plan`'s run: (table, fields), read from the parts the manifests list.
async fn part_rows(env: &TestEnv, run: &str, total: u32) -> Vec<(String, Vec<Option<String>>)> {
    let mut rows = Vec::new();
    for segment in 0..total {
        let manifest = env
            .manifest(run, segment)
            .await
            .expect("manifest committed");
        for (table, output) in &manifest.tables {
            for file in &output.files {
                let data = env.get(&file.key).await.expect("part exists");
                let csv = decompress(&file.key, &data).unwrap();
                for row in decode_rows(&csv).unwrap() {
                    rows.push((table.clone(), row));
                }
            }
        }
    }
    rows
}

/// The items the rows hold, `_overflow` put back into them, by key.
fn items_of(
    rows: &[(String, Vec<Option<String>>)],
    tables: &[DataSchema],
) -> HashMap<String, (String, Item)> {
    let keys = ["pk".to_string(), "sk".to_string()];
    let mut items: HashMap<String, (String, Item)> = HashMap::new();
    let mut overflow = Vec::new();
    for (table, fields) in rows {
        if table == dynamo_etl::schema::OVERFLOW_TABLE {
            overflow.push(fields.clone());
            continue;
        }
        let schema = tables.iter().find(|s| &s.table == table).unwrap();
        let item = decode_row(schema, fields).unwrap_or_else(|e| panic!("{table}: {e}"));
        assert!(items
            .insert(key_json(&item, &keys), (table.clone(), item))
            .is_none());
    }
    for ((table, key), attributes) in decode_overflow(&overflow).unwrap() {
        let (in_table, item) = items
            .get_mut(&key)
            .unwrap_or_else(|| panic!("{key} has no row"));
        assert_eq!(in_table, &table);
        for (name, value) in attributes {
            assert!(
                item.insert(name.clone(), value).is_none(),
                "{key} {name} twice"
            );
        }
    }
    items
}

/// The corpus: the edge cases plus the adversarial items (the last of those, with a NUL in a map
/// key, has no representation and must be rejected by key). Loaded into a fresh table whose
/// data-schemas are inferred from the loadable items.
async fn corpus_env(name: &str) -> (TestEnv, Vec<Item>, Vec<DataSchema>) {
    let env = TestEnv::new(name).await;
    let mut items = fixtures::adversarial_items();
    let rejected = items.pop().unwrap();
    items.extend(fixtures::limit_items());
    let mut all = items.clone();
    all.push(rejected);
    env.load(all).await;
    let schemas = infer(&env.table, &items);
    env.write_schemas(&schemas);
    (env, items, schemas)
}

#[tokio::test(flavor = "multi_thread")]
async fn phase_1_for_redshift_sends_only_values_redshift_loads() {
    let (env, items, _) = corpus_env("lrs").await;
    for k in 0..2u32 {
        let out = env.run(
            &[
                "segment",
                "--run-id",
                "rs",
                "--table",
                &env.table,
                "--total-segments",
                "2",
                "--segment",
                &k.to_string(),
                "--dialect",
                "redshift",
            ],
            &[],
        );
        assert!(out.status.success(), "{}", show(&out));
    }
    let plan_text = env
        .get("dynamo-etl/runs/rs/run.json")
        .await
        .expect("run.json");
    let plan: RunPlan = serde_json::from_slice(&plan_text).unwrap();
    assert_eq!(plan.dialect.name(), "redshift");
    let mut tables = plan.warehouse_tables();

    // The DDL prepare would send: every type within Redshift's limits.
    let config = dynamo_etl::warehouse::WarehouseConfig {
        url: dynamo_etl::warehouse::WarehouseUrl::parse("redshift://etl@cluster.example:5439/dev")
            .unwrap(),
        target: "limits".into(),
        grantees: vec![],
        lock_timeout: std::time::Duration::from_secs(60),
        post_swap_sql: None,
        analyze: true,
        verify: true,
        options: dynamo_etl::warehouse::DialectOptions::Redshift(
            dynamo_etl::warehouse::redshift::Options {
                iam_role: Some("default".into()),
                ..Default::default()
            },
        ),
    };
    let warehouse = dynamo_etl::warehouse::open(config);
    let ddl = redshift_ddl(&warehouse.prepare_sql(&plan));
    let wide = &ddl["wide"];
    assert!(
        wide.len() > 900,
        "the 1,700-attribute entity keeps its common columns: {}",
        wide.len()
    );

    // Every field of every part within them.
    let rows = part_rows(&env, "rs", 2).await;
    let mut overflowed = 0;
    for (table, fields) in &rows {
        let columns = &ddl[table.as_str()];
        assert_eq!(fields.len(), columns.len(), "{table}");
        assert!(
            row_bytes(fields) <= redshift::ROW,
            "{table}: a row of {} bytes",
            row_bytes(fields)
        );
        for ((column, ty), field) in columns.iter().zip(fields) {
            check_field(&format!("{table}.{column}"), *ty, field.as_deref());
        }
        overflowed += usize::from(table == "_overflow");
    }
    assert!(
        overflowed >= 6,
        "strings over 65,535 bytes and a JSON value over 1 MB overflow"
    );

    // And nothing is lost: every loadable item comes back whole from its row and `_overflow`.
    tables.retain(|t| t.table != "_overflow");
    let back = items_of(&rows, &tables);
    assert_eq!(back.len(), items.len());
    for source in &items {
        let key = key_json(source, &["pk".into(), "sk".into()]);
        let (table, item) = back.get(&key).unwrap_or_else(|| panic!("{key} missing"));
        assert!(
            same_item(source, item, &tables, table),
            "{key} changed:\n source {source:?}\n back {item:?}"
        );
    }
    let m0 = env.manifest("rs", 0).await.unwrap();
    let m1 = env.manifest("rs", 1).await.unwrap();
    let rejected: Vec<_> = m0.items_rejected.iter().chain(&m1.items_rejected).collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(rejected[0].key.contains("EDGE#4"), "{rejected:?}");
    assert_eq!(m0.overflow_rows() + m1.overflow_rows(), overflowed as u64);
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_loads_the_edge_cases_end_to_end_exactly() {
    let (env, items, _) = corpus_env("lpg").await;
    env.pipeline("pg", 2);
    let plan_text = env
        .get("dynamo-etl/runs/pg/run.json")
        .await
        .expect("run.json");
    let plan: RunPlan = serde_json::from_slice(&plan_text).unwrap();
    let tables = plan.warehouse_tables();
    let wide = tables.iter().find(|t| t.table == "wide").unwrap();
    assert!(
        wide.columns.len() < 300,
        "PostgreSQL rows must fit a page: {} columns",
        wide.columns.len()
    );

    let mut conn = env.pg().await;
    let mut loaded: HashMap<String, (String, Item)> = HashMap::new();
    let mut overflow_rows = Vec::new();
    for table in &tables {
        for fields in env.text_rows(&env.target, table).await {
            if table.table == "_overflow" {
                overflow_rows.push(fields);
                continue;
            }
            let item =
                decode_row(table, &fields).unwrap_or_else(|e| panic!("{}: {e}", table.table));
            loaded.insert(key_of(&item), (table.table.clone(), item));
        }
    }
    assert!(
        overflow_rows.is_empty(),
        "PostgreSQL holds every value in its columns"
    );
    assert_eq!(loaded.len(), items.len(), "one row per loadable item");
    let with_unclassified: Vec<DataSchema> = tables
        .iter()
        .cloned()
        .chain([
            unclassified_schema(&env.table, &["pk".into(), "sk".into()]),
            overflow_schema(&env.table),
        ])
        .collect();
    for source in &items {
        let (table, back) = loaded
            .get(&key_of(source))
            .unwrap_or_else(|| panic!("{} missing from the warehouse", key_of(source)));
        assert!(
            same_item(source, back, &with_unclassified, table),
            "{} changed in the warehouse:\n source {source:?}\n loaded {back:?}",
            key_of(source)
        );
    }
    // The 300 KB binary is bytea, byte for byte; the 19-digit numbers and 1/3 are exact.
    let blob: Vec<u8> = sqlx::query_scalar(&format!(
        "SELECT blob FROM \"{}\".\"limit\" WHERE pk = 'LIMIT#3'",
        env.target
    ))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(blob.len(), 300_000);
    assert!(blob
        .iter()
        .enumerate()
        .all(|(i, b)| *b == (i * 7 % 256) as u8));
    let numbers: (String, String) = sqlx::query_as(&format!(
        "SELECT big19::text, third::text FROM \"{}\".\"limit\" WHERE pk = 'LIMIT#0'",
        env.target
    ))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        numbers,
        (
            "9999999999999999999".into(),
            "0.33333333333333333333333333333333333333".into()
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_loads_only_into_the_dialect_it_was_planned_for() {
    let env = TestEnv::with_demo("ldialect", 1).await;
    // Without a warehouse URL or --dialect, a new run cannot be planned.
    let out = env
        .command(&[
            "segment",
            "--run-id",
            "d",
            "--table",
            &env.table,
            "--total-segments",
            "1",
            "--segment",
            "0",
        ])
        .env_remove("ETL_WAREHOUSE_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pass --dialect postgres|redshift"),
        "{}",
        show(&out)
    );

    let planned = env.run(
        &[
            "segment",
            "--run-id",
            "d",
            "--table",
            &env.table,
            "--total-segments",
            "1",
            "--segment",
            "0",
            "--dialect",
            "redshift",
        ],
        &[],
    );
    assert!(planned.status.success(), "{}", show(&planned));
    for args in [
        vec!["prepare", "--run-id", "d"],
        vec!["upload", "--run-id", "d", "--segment", "0"],
        vec!["replace", "--run-id", "d"],
    ] {
        let out = env.run(&args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("run d was planned for redshift") && err.contains("--dialect postgres"),
            "{args:?}: {err}"
        );
    }
    // Resuming it for the other dialect is refused too, before any scan.
    let out = env.run(
        &[
            "segment",
            "--run-id",
            "d",
            "--total-segments",
            "1",
            "--segment",
            "0",
            "--dialect",
            "postgres",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let staging = format!("{}_staging", env.target);
    let mut conn = env.pg().await;
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.schemata WHERE schema_name = $1)",
    )
    .bind(&staging)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(!exists, "nothing was prepared for a Redshift run");
}
