//! The scan-only baseline for `jobs/bench/run`: scans every segment of a table in parallel with the
//! same requests as phase 1 (1 MB pages, no `Limit`, eventually consistent unless
//! `--consistent-read`, consumed capacity requested, the response body taken as bytes and only
//! its envelope read) and throws the items away unparsed. What phase 1 takes beyond this
//! program's wall time is the cost of parsing, converting, compressing and uploading.
//!
//! ```text
//! dynamo-etl-bare-scan --table bench_items_1000000 --total-segments 4
//! ```
//! Prints one line: items, pages and seconds. No retries: a failed page fails the run.

mod shared;

use aws_sdk_dynamodb::types::ReturnConsumedCapacity;
use clap::Parser;
use dynamo_etl::source::page::{CaptureBody, RawPage};
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "dynamo-etl-bare-scan",
    about = "Scan all segments of a table in parallel and discard the items (benchmark baseline)"
)]
struct Args {
    #[command(flatten)]
    endpoints: shared::Endpoints,
    #[arg(long)]
    table: String,
    #[arg(long, default_value_t = 4)]
    total_segments: i32,
    #[arg(long)]
    consistent_read: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The same client settings as the real binary (timeouts, SDK retries off).
    let client = args.endpoints.dynamodb().await?;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for segment in 0..args.total_segments {
        let (client, table) = (client.clone(), args.table.clone());
        let (total, consistent) = (args.total_segments, args.consistent_read);
        tasks.spawn(async move {
            let (mut items, mut pages) = (0u64, 0u64);
            let mut start_key = None;
            loop {
                let capture = CaptureBody::default();
                client
                    .scan()
                    .table_name(&table)
                    .segment(segment)
                    .total_segments(total)
                    .consistent_read(consistent)
                    .return_consumed_capacity(ReturnConsumedCapacity::Total)
                    .set_exclusive_start_key(start_key)
                    .customize()
                    .interceptor(capture.clone())
                    .send()
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!("segment {segment}: {}", dynamo_etl::retry::describe(&e))
                    })?;
                let body = capture
                    .take()
                    .ok_or_else(|| anyhow::anyhow!("segment {segment}: no response body"))?
                    .map_err(|e| anyhow::anyhow!("segment {segment}: {e}"))?;
                let (_, meta) = RawPage::split(body)
                    .map_err(|e| anyhow::anyhow!("segment {segment}: not a Scan page: {e}"))?;
                items += meta.count;
                pages += 1;
                start_key = meta.last_evaluated_key;
                if start_key.is_none() {
                    return anyhow::Ok((items, pages));
                }
            }
        });
    }
    let (mut items, mut pages) = (0, 0);
    while let Some(done) = tasks.join_next().await {
        let (i, p) = done??;
        items += i;
        pages += p;
    }
    println!(
        "bare scan of {}: {items} items, {pages} pages, {} segments, {:.3} s",
        args.table,
        args.total_segments,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
