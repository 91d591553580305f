//! Loads sample data into DynamoDB (normally DynamoDB Local) for the demo, tests and benchmarks.
//!
//! ```text
//! dynamo-etl-seed demo  --table platform [--organizations 20]
//! dynamo-etl-seed bench --table bench --items 1000000
//! dynamo-etl-seed bench-export --table bench --items 1000000 --bucket B --prefix P
//! dynamo-etl-seed bench-increment --table bench --items 1000000 --fraction 0.01 --from T --bucket B
//! ```
//! `demo` and `bench` (re)create the table as an on-demand table keyed by `pk`/`sk`.
//! `bench-export` writes the items `bench` loads, the same ones for the same `--items`, as a
//! DynamoDB export of the table to S3 instead (the test kit's documented layout), and prints its
//! location for `plan --export-prefix`; it leaves DynamoDB alone. `bench-increment` writes an
//! incremental export of the window `[--from, --from + 1 h)` changing `--fraction` of those
//! items (of every ten changes eight updates, one delete, one insert) and prints its location
//! for `increment --incremental-export-prefix`; it leaves DynamoDB alone too.

mod shared;

use clap::{Parser, Subcommand};
use dynamo_etl::testkit::fixtures::{self, Rng};
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "dynamo-etl-seed",
    about = "Load sample data into DynamoDB for demos, tests and benchmarks"
)]
struct Args {
    #[command(flatten)]
    endpoints: shared::Endpoints,
    #[command(subcommand)]
    dataset: Dataset,
}

#[derive(Subcommand)]
enum Dataset {
    /// Organizations, groups, findings and vulnerabilities using every DynamoDB type.
    Demo {
        #[arg(long, default_value = "platform")]
        table: String,
        #[arg(long, default_value_t = 20)]
        organizations: usize,
    },
    /// N items of about 500 bytes in three entity types.
    Bench {
        #[arg(long, default_value = "bench")]
        table: String,
        #[arg(long, default_value_t = 1_000_000)]
        items: u64,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// The items of `bench --items N`, written to S3 as a full export of the table.
    BenchExport {
        #[arg(long, default_value = "bench")]
        table: String,
        #[arg(long, default_value_t = 1_000_000)]
        items: u64,
        /// Bucket to write the export to.
        #[arg(long, env = "ETL_BUCKET")]
        bucket: String,
        /// Export prefix: the export goes under <prefix>/AWSDynamoDB/<export-id>/.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Export id, as DynamoDB names them (time in milliseconds, a dash, 8 characters).
        #[arg(long, default_value = "01700000000000-bench000")]
        export_id: String,
        /// Data files besides the empty one (their sizes differ, as a real export's do).
        #[arg(long, default_value_t = 8)]
        files: usize,
    },
    /// An incremental export changing a fraction of the items of `bench --items N`.
    BenchIncrement {
        #[arg(long, default_value = "bench")]
        table: String,
        #[arg(long, default_value_t = 1_000_000)]
        items: u64,
        /// The share of the items the increment changes.
        #[arg(long, default_value_t = 0.01)]
        fraction: f64,
        /// Start of the window (RFC 3339): the watermark of the target it is applied to.
        #[arg(long)]
        from: String,
        #[arg(long, env = "ETL_BUCKET")]
        bucket: String,
        #[arg(long, default_value = "")]
        prefix: String,
        #[arg(long, default_value = "01700000000000-benchinc")]
        export_id: String,
        #[arg(long, default_value_t = 8)]
        files: usize,
    },
}

/// The changes of `bench-increment`: `fraction` of `items`, spread over the table.
fn bench_changes(
    items: &[dynamo_etl::value::Item],
    fraction: f64,
    from_micros: u64,
) -> Vec<dynamo_etl::testkit::export::Change> {
    use aws_sdk_dynamodb::types::AttributeValue;
    use dynamo_etl::testkit::export::Change;
    let count = ((items.len() as f64 * fraction).round() as u64).max(1);
    let step = (items.len() as u64 / count).max(1);
    let mut rng = Rng::new(BENCH_SEED + 1);
    let key = |item: &dynamo_etl::value::Item| {
        item.iter()
            .filter(|(k, _)| *k == "pk" || *k == "sk")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    (0..count)
        .map(|j| {
            let micros = from_micros + 1 + j;
            let old = &items[((j * step) as usize).min(items.len() - 1)];
            match j % 10 {
                0 => Change {
                    keys: key(old),
                    new_image: None,
                    old_image: Some(old.clone()),
                    micros,
                },
                1 => {
                    let new = fixtures::bench_item(items.len() as u64 + j, &mut rng);
                    Change {
                        keys: key(&new),
                        new_image: Some(new),
                        old_image: None,
                        micros,
                    }
                }
                _ => {
                    let mut new = old.clone();
                    let at = if new.contains_key("created_at") {
                        "created_at"
                    } else {
                        "reported_at"
                    };
                    new.insert(
                        at.to_string(),
                        AttributeValue::S("2026-12-01T00:00:00Z".into()),
                    );
                    Change {
                        keys: key(old),
                        new_image: Some(new),
                        old_image: Some(old.clone()),
                        micros,
                    }
                }
            }
        })
        .collect()
}

/// The seed of the benchmark's items.
const BENCH_SEED: u64 = 7;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    if let Dataset::BenchExport {
        table,
        items,
        bucket,
        prefix,
        export_id,
        files,
    } = &args.dataset
    {
        // The seed and the order `bench` draws its items in, so these are the table's items.
        let all = fixtures::bench_items(*items, BENCH_SEED);
        let store = args.endpoints.store(bucket).await?;
        let written = dynamo_etl::testkit::export::write_export(
            store.as_ref(),
            prefix,
            export_id,
            table,
            &all,
            *files,
        )
        .await?;
        eprintln!(
            "seed: wrote {items} items of {table} as an export in {} data files in {:.1} s",
            written.files.len(),
            started.elapsed().as_secs_f64()
        );
        println!("s3://{}/{}", written.source.bucket, written.source.prefix);
        return Ok(());
    }
    if let Dataset::BenchIncrement {
        table,
        items,
        fraction,
        from,
        bucket,
        prefix,
        export_id,
        files,
    } = &args.dataset
    {
        let start = chrono::DateTime::parse_from_rfc3339(from)?.with_timezone(&chrono::Utc);
        let end = start + chrono::TimeDelta::hours(1);
        let all = fixtures::bench_items(*items, BENCH_SEED);
        let changes = bench_changes(&all, *fraction, start.timestamp_micros() as u64);
        let store = args.endpoints.store(bucket).await?;
        let instant = dynamo_etl::phases::increment::instant;
        let written = dynamo_etl::testkit::export::write_incremental_export(
            store.as_ref(),
            (prefix, export_id, table),
            &changes,
            *files,
            (&instant(start), &instant(end)),
        )
        .await?;
        eprintln!(
            "seed: wrote {} changes of {table} as an incremental export in {:.1} s",
            changes.len(),
            started.elapsed().as_secs_f64()
        );
        println!("s3://{}/{}", written.source.bucket, written.source.prefix);
        return Ok(());
    }
    let client = args.endpoints.dynamodb().await?;
    let (table, count) = match args.dataset {
        Dataset::Demo {
            table,
            organizations,
        } => {
            fixtures::delete_table(&client, &table).await?;
            fixtures::create_table(&client, &table).await?;
            let items = fixtures::demo_items(organizations);
            let count = items.len() as u64;
            fixtures::write_items(&client, &table, items, 8).await?;
            (table, count)
        }
        Dataset::Bench {
            table,
            items,
            concurrency,
        } => {
            fixtures::delete_table(&client, &table).await?;
            fixtures::create_table(&client, &table).await?;
            let mut rng = Rng::new(BENCH_SEED);
            let batch = 50_000u64;
            let mut written = 0u64;
            while written < items {
                let n = batch.min(items - written);
                let chunk: Vec<_> = (written..written + n)
                    .map(|i| fixtures::bench_item(i, &mut rng))
                    .collect();
                fixtures::write_items(&client, &table, chunk, concurrency).await?;
                written += n;
                eprintln!(
                    "seed: {written}/{items} items in {:.0} s",
                    started.elapsed().as_secs_f64()
                );
            }
            (table, items)
        }
        Dataset::BenchExport { .. } | Dataset::BenchIncrement { .. } => {
            unreachable!("written above")
        }
    };
    println!(
        "loaded {count} items into {table} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
