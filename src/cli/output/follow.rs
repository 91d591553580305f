//! The text of `follow`: one line per batch, and the follow section of `status --target`.

use dynamo_etl::phases::follow::{BatchReport, FollowStatus};
use dynamo_etl::warehouse::increment::StreamPositions;

/// One batch applied.
pub fn batch_line(target: &str, b: &BatchReport) -> String {
    let lag = b
        .lag_seconds
        .map(|s| format!("{s:.1} s from the oldest record's write to commit"))
        .unwrap_or_else(|| "no records".into());
    format!(
        "batch {} applied to {target}: {} records ({} TTL deletes, {} skipped as already served, {} rejected, {} drifted values), apply {} ms, {lag}, {:.1} records/s",
        b.run_id, b.records, b.ttl_deletes, b.skipped, b.rejected, b.drift, b.apply_ms, b.records_per_second
    )
}

/// Freshness, positions and rate, from the status file and the positions the target holds.
pub fn status_section(
    target: &str,
    status: Option<&FollowStatus>,
    held: &StreamPositions,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let mut out = String::new();
    if status.is_none() && held.shards.is_empty() {
        return out;
    }
    out.push_str(&format!("follow of {target}:\n"));
    if let Some(s) = status {
        match s.freshness(now) {
            Some(age) => out.push_str(&format!(
                "  freshness: every change written before {} is served; the oldest change possibly not applied is {} s old\n",
                s.complete_through.as_deref().unwrap_or("?"),
                age.num_seconds()
            )),
            None => out.push_str("  freshness: not caught up with the stream yet\n"),
        }
        if let Some(b) = &s.last_batch {
            out.push_str(&format!(
                "  last batch {} at {}: {} records, {:.1} records/s, apply {} ms\n",
                b.run_id, b.applied_at, b.records, b.records_per_second, b.apply_ms
            ));
        }
        out.push_str(&format!(
            "  status file updated {}; {} batches, {} records by the running follower\n",
            s.updated_at, s.batches, s.records
        ));
    }
    match &held.batch_id {
        Some(batch) => out.push_str(&format!(
            "  positions held by {target} (batch {batch}, applied {}):\n",
            held.applied_at.as_deref().unwrap_or("?")
        )),
        None => out.push_str(&format!(
            "  {target} holds no stream positions: the next follow re-bases onto the served copy\n"
        )),
    }
    for p in &held.shards {
        out.push_str(&format!(
            "    shard {}{}: {}{}\n",
            p.shard_id,
            p.parent_shard_id
                .as_deref()
                .map(|x| format!(" (parent {x})"))
                .unwrap_or_default(),
            match (&p.sequence_number, p.finished) {
                (_, true) => "finished".to_string(),
                (Some(seq), false) => format!("after sequence number {seq}"),
                (None, false) => "from its oldest record".to_string(),
            },
            p.newest_record_at
                .as_deref()
                .map(|t| format!(", newest record applied written {t}"))
                .unwrap_or_default()
        ));
    }
    out
}
