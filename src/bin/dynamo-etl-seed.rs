//! Loads sample data into DynamoDB (normally DynamoDB Local) for the demo, tests and benchmarks.
//!
//! ```text
//! dynamo-etl-seed demo  --table platform [--organizations 20]
//! dynamo-etl-seed bench --table bench --items 1000000
//! dynamo-etl-seed bench-export --table bench --items 1000000 --bucket B --prefix P
//! ```
//! `demo` and `bench` (re)create the table as an on-demand table keyed by `pk`/`sk`.
//! `bench-export` writes the items `bench` loads, the same ones for the same `--items`, as a
//! DynamoDB export of the table to S3 instead (the test kit's documented layout), and prints its
//! location for `plan --export-prefix`; it leaves DynamoDB alone.

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
        Dataset::BenchExport { .. } => unreachable!("written above"),
    };
    println!(
        "loaded {count} items into {table} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
