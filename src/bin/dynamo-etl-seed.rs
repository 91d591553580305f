//! Loads sample data into DynamoDB (normally DynamoDB Local) for the demo, tests and benchmarks.
//!
//! ```text
//! dynamo-etl-seed demo  --table platform [--organizations 20]
//! dynamo-etl-seed bench --table bench --items 1000000
//! ```
//! The table is (re)created as an on-demand table keyed by `pk`/`sk`.

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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = args.endpoints.dynamodb().await?;
    let started = Instant::now();
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
            let mut rng = Rng::new(7);
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
    };
    println!(
        "loaded {count} items into {table} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
