//! `plan --estimate` and `run --estimate` through the real binary against DynamoDB Local: the
//! printed figures follow from what DescribeTable reports for the seeded table, nothing reaches
//! the staging bucket, and failures keep the usual exit codes.

use crate::cli::output::estimate::{dollars, duration, number};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, KeySchemaElement, KeyType, ProvisionedThroughput, ScalarAttributeType,
};

use crate::support::{show, TestEnv};

/// Item count and size as DescribeTable reports them now.
async fn described(env: &TestEnv, table: &str) -> (u64, u64) {
    let out = env
        .dynamodb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .unwrap();
    let t = out.table().unwrap();
    (
        t.item_count().unwrap() as u64,
        t.table_size_bytes().unwrap() as u64,
    )
}

/// Strongly consistent read units of a full scan: one per 4 KB read, at least one per segment.
fn strong_units(size: u64, segments: u64) -> f64 {
    size.div_ceil(4096).max(segments) as f64
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The value printed after `label` on its row of the estimate.
fn row<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find_map(|l| {
            l.trim_start()
                .strip_prefix(label)
                .filter(|rest| rest.starts_with("  "))
        })
        .unwrap_or_else(|| panic!("no {label} row in:\n{text}"))
        .trim()
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_estimate_prints_what_describe_table_implies_and_plans_nothing() {
    let env = TestEnv::with_demo("estplan", 6).await;
    let (items, size) = described(&env, &env.table).await;
    assert!(items > 0 && size > 0, "the seeded table is described");
    // A price of a million dollars per million units makes the cost the units in dollars.
    let out = env.run(
        &[
            "plan",
            "--estimate",
            "--table",
            &env.table,
            "--total-segments",
            "2",
            "--max-read-units",
            "4",
            "--read-price-per-million",
            "1000000",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("Estimate of a full scan of table {}\n", env.table)),
        "{text}"
    );
    assert_eq!(row(&text, "items"), number(items as f64));
    assert!(
        row(&text, "size").starts_with(&format!("{} bytes", number(size as f64))),
        "{text}"
    );
    assert_eq!(row(&text, "billing"), "on-demand");
    assert_eq!(row(&text, "segments"), "2, all at once");
    assert_eq!(
        row(&text, "read budget"),
        "4 read units/s per segment, 8 at once"
    );
    let strong = strong_units(size, 2);
    let eventual = strong / 2.0;
    assert_eq!(
        row(&text, "read units"),
        format!(
            "{} eventually consistent (this run), {} strongly consistent",
            number(eventual),
            number(strong)
        )
    );
    assert_eq!(
        row(&text, "cost"),
        format!(
            "{} eventually consistent (this run), {} strongly consistent",
            dollars(eventual),
            dollars(strong)
        )
    );
    assert!(
        row(&text, "price").starts_with("$1000000 per million"),
        "{text}"
    );
    assert_eq!(
        row(&text, "time"),
        format!("about {} at 8 read units/s", duration(eventual / 8.0))
    );
    assert!(text.contains("about every six hours"), "{text}");
    // An estimate pins no run: the bucket holds nothing.
    assert_eq!(env.keys("").await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn run_estimate_reads_only_describe_table_and_writes_nothing() {
    let env = TestEnv::with_demo("estrun", 3).await;
    let (items, size) = described(&env, &env.table).await;
    let out = env.run(
        &[
            "run",
            "--estimate",
            "--table",
            &env.table,
            "--total-segments",
            "6",
            "--concurrency",
            "2",
            "--max-read-units",
            "3",
            "--consistent-read",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = stdout(&out);
    assert_eq!(row(&text, "items"), number(items as f64));
    assert_eq!(row(&text, "segments"), "6, 2 at once");
    let strong = strong_units(size, 6);
    assert!(
        row(&text, "read units").ends_with(&format!(
            "{} strongly consistent (this run)",
            number(strong)
        )),
        "{text}"
    );
    assert_eq!(
        row(&text, "time"),
        format!("about {} at 6 read units/s", duration(strong / 6.0))
    );
    // No run was chosen, planned or scanned: the staging bucket is still empty, and no report
    // was printed.
    assert_eq!(env.keys("").await, Vec::<String>::new());
    assert!(!text.contains("report saved"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_budget_above_provisioned_capacity_is_flagged_with_one_that_fits() {
    let env = TestEnv::new("estprov").await;
    env.dynamodb
        .create_table()
        .table_name(&env.table)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .provisioned_throughput(
            ProvisionedThroughput::builder()
                .read_capacity_units(5)
                .write_capacity_units(5)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let plan = |budget: &str| {
        env.run(
            &[
                "plan",
                "--estimate",
                "--table",
                &env.table,
                "--total-segments",
                "4",
                "--max-read-units",
                budget,
            ],
            &[],
        )
    };
    let out = plan("2");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = stdout(&out);
    assert_eq!(row(&text, "billing"), "provisioned, 5 read units/s");
    assert!(
        text.contains("above the table's provisioned read capacity of 5 read units/s"),
        "{text}"
    );
    assert!(
        text.contains("pass --max-read-units 1.25 or less"),
        "{text}"
    );
    assert!(text.contains("pays for its capacity instead"), "{text}");
    // The budget it suggests is not flagged.
    let out = plan("1.25");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        !stdout(&out).contains("above the table's"),
        "{}",
        show(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_table_is_fatal_and_an_unreachable_endpoint_is_worth_a_retry() {
    let env = TestEnv::new("esterr").await;
    let args = [
        "plan",
        "--estimate",
        "--table",
        &env.table,
        "--total-segments",
        "3",
    ];
    let out = env.run(&args, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(stderr.contains(&env.table), "{}", show(&out));
    assert!(stderr.contains("no such table"), "{}", show(&out));
    assert!(stdout(&out).is_empty(), "{}", show(&out));

    // Nothing listens on port 9 of this machine's loopback.
    let down = [
        ("ETL_DYNAMODB_ENDPOINT", "http://127.0.0.1:9".to_string()),
        ("ETL_RETRY_ATTEMPTS", "2".to_string()),
        ("ETL_RETRY_MIN_DELAY_MS", "1".to_string()),
    ];
    let out = env.run(&args, &down);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        stderr.contains(&format!(
            "run: dynamo-etl plan --estimate --table {} --total-segments 3",
            env.table
        )),
        "{}",
        show(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn phase_1_then_consumes_the_estimate_give_or_take_the_rounding_of_each_page() {
    let env = TestEnv::with_demo("estcheck", 260).await;
    let (_, size) = described(&env, &env.table).await;
    let out = env.run(
        &[
            "plan",
            "--estimate",
            "--table",
            &env.table,
            "--total-segments",
            "2",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let estimated = strong_units(size, 2) / 2.0;
    let text = stdout(&out);
    assert!(
        row(&text, "read units").starts_with(&format!(
            "{} eventually consistent (this run)",
            number(estimated)
        )),
        "{text}"
    );
    let (mut consumed, mut pages) = (0.0, 0);
    for segment in 0..2 {
        let out = env.phase1("r", 2, segment);
        assert!(out.status.success(), "{}", show(&out));
        let m = env.manifest("r", segment).await.unwrap();
        consumed += m.read_units;
        pages += m.pages;
    }
    // DynamoDB rounds each page's size up to a whole 4 KB on its own, so a scan spends at least
    // the estimate and at most half a unit (eventually consistent) more per page.
    assert!(
        estimated <= consumed && consumed <= estimated + 0.5 * pages as f64,
        "estimated {estimated}, phase 1 consumed {consumed} over {pages} pages ({size} bytes)"
    );
}
