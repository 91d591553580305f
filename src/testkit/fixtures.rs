//! Sample datasets and table helpers for the demo, the tests and the benchmarks. Everything is
//! generated deterministically from a seed, so runs are repeatable.

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, PutRequest,
    ScalarAttributeType, WriteRequest,
};
use futures::stream::{self, StreamExt, TryStreamExt};
use std::collections::HashMap;
use std::time::Duration;

use crate::retry::{describe, is_retriable, RetryPolicy};
use crate::value::Item;

/// A small xorshift generator: deterministic across platforms and releases.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}
fn item(pairs: Vec<(&str, AttributeValue)>) -> Item {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}
fn timestamp(rng: &mut Rng) -> String {
    format!(
        "2026-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        1 + rng.below(11),
        1 + rng.below(28),
        rng.below(24),
        rng.below(60),
        rng.below(60),
        rng.below(1000)
    )
}

const SEVERITIES: &[&str] = &["low", "medium", "high", "critical"];
const STATES: &[&str] = &["open", "closed", "accepted", "in_review"];
const WORDS: &[&str] = &[
    "injection",
    "traversal",
    "overflow",
    "exposure",
    "bypass",
    "forgery",
    "leak",
    "race",
    "misconfiguration",
    "deserialisation",
];

/// The demo's single-table dataset: organizations (`ORG#`), groups (`GROUP#`), findings (`FIN#`)
/// and vulnerabilities (`VULN#`), using every DynamoDB type.
pub fn demo_items(organizations: usize) -> Vec<Item> {
    let mut rng = Rng::new(2026);
    let mut out = Vec::new();
    for o in 0..organizations {
        let org = format!("org-{o:03}");
        out.push(item(vec![
            ("pk", s(format!("ORG#{org}"))),
            ("sk", s("META")),
            (
                "name",
                s(format!("Organization {o} \"{}\"", rng.pick(WORDS))),
            ),
            ("country", s(*rng.pick(&["CO", "US", "DE", "JP", "BR"]))),
            ("created_at", s(timestamp(&mut rng))),
            ("employees", n(10 + rng.below(100_000))),
            (
                "budget",
                n(format!("{}.{:02}", rng.below(10_000_000), rng.below(100))),
            ),
            ("active", AttributeValue::Bool(rng.below(5) != 0)),
            (
                "logo",
                AttributeValue::B(Blob::new(
                    (0..16).map(|_| rng.next_u64() as u8).collect::<Vec<u8>>(),
                )),
            ),
            (
                "tags",
                AttributeValue::Ss(vec!["customer".into(), format!("tier-{}", rng.below(3))]),
            ),
            (
                "address",
                AttributeValue::M(HashMap::from([
                    (
                        "city".to_string(),
                        s(*rng.pick(&["Medellín", "Boston", "Köln", "Tokyo"])),
                    ),
                    ("zip".to_string(), n(10_000 + rng.below(89_999))),
                ])),
            ),
            ("deleted_at", AttributeValue::Null(true)),
        ]));
        for g in 0..3 {
            let group = format!("{org}-g{g}");
            out.push(item(vec![
                ("pk", s(format!("GROUP#{group}"))),
                ("sk", s(format!("ORG#{org}"))),
                ("name", s(group.clone())),
                ("service", s(*rng.pick(&["white", "black"]))),
                ("machine", AttributeValue::Bool(rng.below(2) == 0)),
                (
                    "languages",
                    AttributeValue::Ss(vec!["en".into(), "es".into()]),
                ),
                ("created_at", s(timestamp(&mut rng))),
            ]));
            for f in 0..4 {
                let finding = format!("{group}-f{f}");
                out.push(item(vec![
                    ("pk", s(format!("FIN#{finding}"))),
                    ("sk", s(format!("GROUP#{group}"))),
                    (
                        "title",
                        s(format!("{:03}. {}", rng.below(400), rng.pick(WORDS))),
                    ),
                    (
                        "severity_score",
                        n(format!("{}.{}", rng.below(10), rng.below(10))),
                    ),
                    ("state", s(*rng.pick(STATES))),
                    (
                        "cvss_vector",
                        s("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
                    ),
                    (
                        "scores",
                        AttributeValue::Ns(vec![rng.below(10).to_string(), "9.5".into()]),
                    ),
                    (
                        "history",
                        AttributeValue::L(vec![
                            AttributeValue::M(HashMap::from([
                                ("state".to_string(), s("open")),
                                ("at".to_string(), s(timestamp(&mut rng))),
                            ])),
                            AttributeValue::M(HashMap::from([
                                ("state".to_string(), s(*rng.pick(STATES))),
                                ("at".to_string(), s(timestamp(&mut rng))),
                            ])),
                        ]),
                    ),
                    ("reported_at", s(timestamp(&mut rng))),
                ]));
                for v in 0..2 {
                    out.push(item(vec![
                        ("pk", s(format!("VULN#{finding}-v{v}"))),
                        ("sk", s(format!("FIN#{finding}"))),
                        (
                            "where",
                            s(format!("src/{}/{}.rs", rng.pick(WORDS), rng.below(50))),
                        ),
                        ("specific", n(1 + rng.below(5000))),
                        ("severity", s(*rng.pick(SEVERITIES))),
                        (
                            "commit_hashes",
                            AttributeValue::Bs(vec![Blob::new(vec![
                                0xde,
                                0xad,
                                rng.next_u64() as u8,
                            ])]),
                        ),
                        (
                            "treatment",
                            s(*rng.pick(&["untreated", "accepted", "in progress"])),
                        ),
                        ("zero_risk", AttributeValue::Bool(false)),
                        (
                            "risk_exposure",
                            n(format!("{}E-{}", 1 + rng.below(99), rng.below(6))),
                        ),
                        ("reported_at", s(timestamp(&mut rng))),
                    ]));
                }
            }
        }
    }
    out
}

/// Items of ≈`bytes` bytes in three entity types with mixed types, for benchmarks.
pub fn bench_item(i: u64, rng: &mut Rng) -> Item {
    let kind = i % 3;
    let pad = |rng: &mut Rng, len: usize| -> String {
        (0..len)
            .map(|_| (b'a' + rng.below(26) as u8) as char)
            .collect()
    };
    match kind {
        0 => item(vec![
            ("pk", s(format!("ORG#{i:09}"))),
            ("sk", s("META")),
            ("name", s(pad(rng, 40))),
            ("description", s(pad(rng, 220))),
            ("employees", n(rng.below(1_000_000))),
            (
                "budget",
                n(format!(
                    "{}.{:02}",
                    rng.below(1_000_000_000),
                    rng.below(100)
                )),
            ),
            ("created_at", s(timestamp(rng))),
            ("active", AttributeValue::Bool(rng.below(2) == 0)),
            ("tags", AttributeValue::Ss(vec![pad(rng, 8), pad(rng, 8)])),
        ]),
        1 => item(vec![
            ("pk", s(format!("FIN#{i:09}"))),
            ("sk", s(format!("GROUP#{:06}", rng.below(1000)))),
            ("title", s(pad(rng, 60))),
            ("state", s(*rng.pick(STATES))),
            ("score", n(format!("{}.{}", rng.below(10), rng.below(10)))),
            (
                "history",
                AttributeValue::L(vec![
                    AttributeValue::M(HashMap::from([
                        ("state".into(), s("open")),
                        ("at".into(), s(timestamp(rng))),
                    ])),
                    AttributeValue::M(HashMap::from([
                        ("state".into(), s("closed")),
                        ("at".into(), s(timestamp(rng))),
                    ])),
                ]),
            ),
            ("notes", s(pad(rng, 160))),
            ("reported_at", s(timestamp(rng))),
        ]),
        _ => item(vec![
            ("pk", s(format!("VULN#{i:09}"))),
            ("sk", s(format!("FIN#{:09}", rng.below(1_000_000)))),
            (
                "where",
                s(format!("src/{}/{}.rs", pad(rng, 30), rng.below(1000))),
            ),
            ("specific", n(rng.below(100_000))),
            ("severity", s(*rng.pick(SEVERITIES))),
            (
                "hash",
                AttributeValue::B(Blob::new(
                    (0..32).map(|_| rng.next_u64() as u8).collect::<Vec<u8>>(),
                )),
            ),
            ("evidence", s(pad(rng, 200))),
            ("zero_risk", AttributeValue::Bool(false)),
            ("reported_at", s(timestamp(rng))),
        ]),
    }
}

/// `count` benchmark items from a seed.
pub fn bench_items(count: u64, seed: u64) -> Vec<Item> {
    let mut rng = Rng::new(seed);
    (0..count).map(|i| bench_item(i, &mut rng)).collect()
}

/// Items that stress every representation rule: extreme numbers, NULL vs empty string, binary,
/// nested values, awkward strings and attribute names. Keys are `pk = EDGE#<n>`, `sk = "x"`.
/// The last item has a map key containing U+0000 and must be rejected by key.
pub fn adversarial_items() -> Vec<Item> {
    let long_name = "a_very_long_attribute_name_".repeat(3);
    let mut items = vec![
        item(vec![
            ("big", n("12345678901234567890123456789012345678")),
            ("tiny", n("1E-130")),
            ("huge", n("9.9999999999999999999999999999999999999E+125")),
            ("i64max", n(i64::MAX)),
            ("i64min", n(i64::MIN)),
            ("price", n("19.99")),
            ("empty", s("")),
            ("nothing", AttributeValue::Null(true)),
            (
                "raw",
                AttributeValue::B(Blob::new(vec![0u8, 255, 254, 128, 10, 13, 34, 44])),
            ),
            ("flag", AttributeValue::Bool(true)),
            ("when", s("2026-11-21T08:00:00.123456+05:30")),
            ("Name", s("upper")),
            ("name", s("lower")),
            ("with space", s("spaced")),
            ("dot.ted", s("dotted")),
            ("oid", n(7)),
            ("xmin", s("reserved")),
            ("select * from users; --", s("'); drop table x; --")),
            (long_name.as_str(), s("long")),
            ("ünïcødé", s("ünïcødé ✓ 😀 \u{200b}")),
            ("1st", n(1)),
            ("_extra", s("collides with the metadata column")),
            ("mixed", n(1)),
        ]),
        item(vec![
            ("empty", AttributeValue::Null(true)),
            ("nothing", s("")),
            ("price", n("-0.01")),
            ("tricky", s("a,b\"c\nd\re\\f\t")),
            ("eod", s("\\.")),
            ("eod_lines", s("\n\\.\n")),
            ("quotes", s("\"\"")),
            ("null_marker", s("\\N")),
            ("mixed", s("one")),
            ("nul", s("a\0b")),
            ("i64max", n("9223372036854775808")),
        ]),
        item(vec![
            (
                "nested",
                AttributeValue::M(HashMap::from([
                    (
                        "list".to_string(),
                        AttributeValue::L(vec![
                            n("1.50"),
                            s(""),
                            AttributeValue::Null(true),
                            AttributeValue::Bool(false),
                        ]),
                    ),
                    ("$b".to_string(), s("looks like a tag")),
                    (
                        "deep".to_string(),
                        AttributeValue::M(HashMap::from([(
                            "x".to_string(),
                            AttributeValue::B(Blob::new(vec![1u8, 2])),
                        )])),
                    ),
                    ("empty_map".to_string(), AttributeValue::M(HashMap::new())),
                ])),
            ),
            (
                "strings",
                AttributeValue::Ss(vec!["b".into(), "a".into(), "ü,\"".into()]),
            ),
            (
                "numbers",
                AttributeValue::Ns(vec!["1E-130".into(), "42".into(), "-3.5".into()]),
            ),
            (
                "blobs",
                AttributeValue::Bs(vec![Blob::new(vec![0u8]), Blob::new(vec![255u8, 0])]),
            ),
            ("mixed", AttributeValue::L(vec![])),
            ("empty_list", AttributeValue::L(vec![])),
        ]),
        item(vec![
            ("flag", AttributeValue::Bool(false)),
            ("when", s("1999-12-31T23:59:59Z")),
        ]),
        item(vec![(
            "bad_map",
            AttributeValue::M(HashMap::from([("key\0with nul".to_string(), s("x"))])),
        )]),
    ];
    for (i, it) in items.iter_mut().enumerate() {
        it.insert("pk".into(), s(format!("EDGE#{i}")));
        it.insert("sk".into(), s("x"));
    }
    items
}

/// Items at the edges of what the warehouses hold (each under DynamoDB's 400 KB item size):
/// 19-digit integers beyond i64, a 38-digit fraction, a 100 KB string with multibyte
/// characters, a 300 KB binary, a string over 65,535 bytes and binary over 49,152 bytes inside
/// JSON values, a JSON value over 1 MB, timestamps with offsets PostgreSQL refuses, and an
/// entity with 1,700 distinct attributes. Every one is valid and must load into both dialects.
pub fn limit_items() -> Vec<Item> {
    let bytes = |len: usize| -> Vec<u8> { (0..len).map(|i| (i * 7 % 256) as u8).collect() };
    let mut items = vec![
        item(vec![
            ("big19", n("9999999999999999999")),
            ("neg19", n("-9223372036854775809")),
            ("third", n("0.33333333333333333333333333333333333333")),
            ("long_text", s("é€😀,\"\n".repeat(100_000 / 14))),
            ("when", s("2024-06-01T12:00:00+16:00")),
            ("mixed_long", n(1)),
        ]),
        item(vec![
            ("big19", n("1234567890123456789")),
            ("neg19", n(-5)),
            ("third", n("0.1")),
            ("long_text", s("short")),
            ("when", s("2024-06-01T12:00:00-15:30")),
            (
                "doc",
                AttributeValue::M(HashMap::from([("body".to_string(), s("q".repeat(70_000)))])),
            ),
        ]),
        item(vec![
            (
                "doc",
                AttributeValue::M(HashMap::from([(
                    "lines".to_string(),
                    // 150,000 one-character control strings: 300 KB in DynamoDB, about 1.2 MB as
                    // JSON (each is written as "\u0001").
                    AttributeValue::L(vec![s("\u{1}"); 150_000]),
                )])),
            ),
            ("mixed_long", s("m".repeat(70_000))),
            ("when", s("1999-12-31T23:59:59.999999Z")),
        ]),
        item(vec![
            ("blob", AttributeValue::B(Blob::new(bytes(300_000)))),
            ("when", s("0001-01-01T00:00:00Z")),
        ]),
        item(vec![
            (
                "doc",
                AttributeValue::M(HashMap::from([(
                    "bin".to_string(),
                    AttributeValue::B(Blob::new(bytes(60_000))),
                )])),
            ),
            ("blob", AttributeValue::B(Blob::new(Vec::new()))),
            ("long_text", s("x".repeat(65_536))),
        ]),
    ];
    for (i, it) in items.iter_mut().enumerate() {
        it.insert("pk".into(), s(format!("LIMIT#{i}")));
        it.insert("sk".into(), s("x"));
    }
    let mut wide: Item = (0..1_700).map(|i| (format!("a{i:04}"), n(i))).collect();
    wide.insert("pk".into(), s("WIDE#0"));
    wide.insert("sk".into(), s("x"));
    items.push(wide);
    items
}

/// Creates an on-demand table keyed by `pk` (S) and `sk` (S) and waits until it is active.
pub async fn create_table(client: &aws_sdk_dynamodb::Client, table: &str) -> anyhow::Result<()> {
    create_table_with_keys(client, table, &["pk".to_string(), "sk".to_string()]).await
}

/// Creates an on-demand table keyed by `keys` (partition key first, then the sort key if any;
/// all strings) and waits until it is active.
pub async fn create_table_with_keys(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    keys: &[String],
) -> anyhow::Result<()> {
    anyhow::ensure!(
        matches!(keys.len(), 1 | 2),
        "a table has a partition key and at most one sort key, not {keys:?}"
    );
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .expect("complete")
    };
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("complete")
    };
    let mut request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest);
    for (i, name) in keys.iter().enumerate() {
        let kind = if i == 0 {
            KeyType::Hash
        } else {
            KeyType::Range
        };
        request = request
            .key_schema(key(name, kind))
            .attribute_definitions(attr(name));
    }
    request
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("creating table {table}: {}", describe(&e)))?;
    for _ in 0..100 {
        let out = client.describe_table().table_name(table).send().await;
        if let Ok(out) = out {
            if out
                .table()
                .and_then(|t| t.table_status())
                .map(|s| s.as_str())
                == Some("ACTIVE")
            {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("table {table} did not become active")
}

/// Deletes a table if it exists.
pub async fn delete_table(client: &aws_sdk_dynamodb::Client, table: &str) -> anyhow::Result<()> {
    match client.delete_table().table_name(table).send().await {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!("deleting table {table}: {}", describe(&e))),
    }
}

/// Writes items with BatchWriteItem (25 per request, `concurrency` requests at once), retrying
/// unprocessed items and throttling.
pub async fn write_items(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    items: Vec<Item>,
    concurrency: usize,
) -> anyhow::Result<()> {
    let batches: Vec<Vec<Item>> = items.chunks(25).map(<[Item]>::to_vec).collect();
    stream::iter(batches)
        .map(|batch| write_batch(client, table, batch))
        .buffer_unordered(concurrency.max(1))
        .try_collect::<()>()
        .await
}

async fn write_batch(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    batch: Vec<Item>,
) -> anyhow::Result<()> {
    let policy = RetryPolicy::default();
    let mut pending: Vec<WriteRequest> = batch
        .into_iter()
        .map(|it| {
            WriteRequest::builder()
                .put_request(
                    PutRequest::builder()
                        .set_item(Some(it))
                        .build()
                        .expect("item set"),
                )
                .build()
        })
        .collect();
    for attempt in 0..50 {
        if pending.is_empty() {
            return Ok(());
        }
        let out = policy
            .run(
                || {
                    client
                        .batch_write_item()
                        .request_items(table, pending.clone())
                        .send()
                },
                is_retriable,
                |_, _| {},
            )
            .await
            .map_err(|e| anyhow::anyhow!("writing to {table}: {}", describe(&e)))?;
        pending = out
            .unprocessed_items
            .and_then(|mut m| m.remove(table))
            .unwrap_or_default();
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(20 * (attempt + 1))).await;
        }
    }
    anyhow::bail!(
        "{} items of a batch stayed unprocessed in {table}",
        pending.len()
    )
}
