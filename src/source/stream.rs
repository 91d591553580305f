//! Reading a table's DynamoDB stream for `follow`: which stream and view the table has, its
//! shards and their lineage, and the records of every shard a parent-before-child order allows,
//! turned into the change lines an incremental export writes (`Keys`, `NewImage`, `Metadata`), so
//! the increment's transform takes them as they are.
//!
//! What the code relies on, from the DynamoDB Streams API reference:
//! - GetShardIterator: `TRIM_HORIZON` starts at the oldest record still kept (records are kept
//!   24 hours), `AFTER_SEQUENCE_NUMBER` right after a record; an iterator expires 15 minutes after
//!   it is handed out
//!   (<https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_streams_GetShardIterator.html>).
//! - GetRecords: a closed shard read to its end answers without `NextShardIterator`;
//!   `TrimmedDataAccessException` when the position asked for is older than the trim point, or
//!   was trimmed before the iterator was used; `ExpiredIteratorException`
//!   (<https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_streams_GetRecords.html>).
//! - A shard names its parent (`ParentShardId`), and a parent's records come before its children's
//!   (<https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_streams_Shard.html>,
//!   <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Streams.html>).
//! - A deletion by Time to Live carries `userIdentity` `{"type": "Service", "principalId":
//!   "dynamodb.amazonaws.com"}`
//!   (<https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_streams_Record.html>,
//!   <https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_streams_Identity.html>).

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodbstreams::types::{AttributeValue, ShardIteratorType};
use base64::Engine as _;

use super::DynamoDb;
use crate::error::{Class, Classify};
use crate::retry::{describe, sdk_failure, RetryPolicy};
use crate::staging::increment::ShardPosition;

/// The stream of a table, as DescribeTable tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableStream {
    pub arn: String,
    /// `NEW_AND_OLD_IMAGES` or `NEW_IMAGE`: the views that carry the item after a change.
    pub view: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("{what} failed for table {table}: {detail}")]
    Request {
        table: String,
        what: String,
        detail: String,
        retriable: bool,
    },
    #[error("{0}")]
    Unusable(String),
    /// The records after the position the target holds are no longer in the stream.
    #[error("the stream position of shard {shard} is lost: {why}")]
    Lost { shard: String, why: String },
}

impl Classify for StreamError {
    fn class(&self) -> Class {
        match self {
            StreamError::Request {
                retriable: true, ..
            } => Class::Retry,
            _ => Class::Fatal,
        }
    }
}

/// The command that turns on a stream `follow` can read.
pub fn enable_command(table: &str, update: bool) -> String {
    match update {
        // A stream's view cannot be changed in place: it is turned off, then on again.
        true => format!(
            "aws dynamodb update-table --table-name {table} --stream-specification StreamEnabled=false, then aws dynamodb update-table --table-name {table} --stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES"
        ),
        false => format!(
            "aws dynamodb update-table --table-name {table} --stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES"
        ),
    }
}

/// The table's stream, if it has one `follow` can use: enabled, with a view that carries new
/// images; otherwise the error names the `update-table` command.
pub async fn table_stream(
    dynamodb: &DynamoDb,
    table: &str,
    retry: &RetryPolicy,
) -> Result<TableStream, crate::error::Error> {
    let description = super::table::describe(dynamodb, table, retry).await?;
    let spec = description.stream_specification();
    let enabled = spec.is_some_and(|s| s.stream_enabled());
    let view = spec
        .and_then(|s| s.stream_view_type())
        .map(|v| v.as_str().to_string());
    match (enabled, description.latest_stream_arn(), view.as_deref()) {
        (true, Some(arn), Some(view @ ("NEW_AND_OLD_IMAGES" | "NEW_IMAGE"))) => Ok(TableStream {
            arn: arn.to_string(),
            view: view.to_string(),
        }),
        (true, _, view) => Err(crate::error::Error::fatal(format!(
            "the stream of table {table} has the view {}, which carries no new images: follow needs NEW_AND_OLD_IMAGES or NEW_IMAGE; {}",
            view.unwrap_or("(none)"),
            enable_command(table, true)
        ))),
        (false, _, _) => Err(crate::error::Error::fatal(format!(
            "table {table} has no stream: follow reads its DynamoDB stream; turn it on with {}",
            enable_command(table, false)
        ))),
    }
}

/// How long a stream keeps its records (GetShardIterator's `TRIM_HORIZON`, above), less a margin
/// for clocks and the trimming's own pace.
pub const RETENTION: chrono::TimeDelta = chrono::TimeDelta::hours(23);

/// When the stream `arn` was created: its label, the ISO 8601 time that ends its ARN
/// (`…/stream/2026-12-01T00:00:00.000`, the `StreamLabel` of
/// <https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_StreamSpecification.html>
/// and DescribeTable's `LatestStreamLabel`), read as UTC.
pub fn created_at(arn: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let label = arn.rsplit_once("/stream/")?.1;
    chrono::NaiveDateTime::parse_from_str(label, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

/// Why a stream read from its oldest record cannot hold every change since `watermark`, if it
/// cannot: it was created after it, or its records since then may be trimmed already.
pub fn reaches_back(
    arn: &str,
    watermark: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<String> {
    let at =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    if let Some(created) = created_at(arn).filter(|c| *c > watermark) {
        return Some(format!(
            "the table's stream began at {}, after {}, where the served tables are current to: the changes in between are in no stream",
            at(created),
            at(watermark)
        ));
    }
    (now - watermark > RETENTION).then(|| {
        format!(
            "the served tables are current to {}, longer ago than the stream keeps records (24 hours)",
            at(watermark)
        )
    })
}

/// One shard as DescribeStream lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub id: String,
    pub parent: Option<String>,
}

/// The shards of one DescribeStream page.
pub fn listed(shards: &[aws_sdk_dynamodbstreams::types::Shard]) -> Vec<Shard> {
    shards
        .iter()
        .filter_map(|s| {
            Some(Shard {
                id: s.shard_id()?.to_string(),
                parent: s.parent_shard_id().map(str::to_string),
            })
        })
        .collect()
}

/// Every shard of the stream, DescribeStream page by page.
pub async fn shards(
    client: &aws_sdk_dynamodbstreams::Client,
    table: &str,
    arn: &str,
    retry: &RetryPolicy,
) -> Result<Vec<Shard>, StreamError> {
    let mut out = Vec::new();
    let mut start: Option<String> = None;
    loop {
        let page = retry
            .run_sdk(
                || {
                    client
                        .describe_stream()
                        .stream_arn(arn)
                        .set_exclusive_start_shard_id(start.clone())
                        .send()
                },
                |e, delay| tracing::warn!(table, delay_ms = delay.as_millis() as u64, error = %describe(e), "DescribeStream failed; retrying"),
            )
            .await
            .map_err(|e| StreamError::Request {
                table: table.to_string(),
                what: "DescribeStream".into(),
                detail: describe(&e),
                retriable: sdk_failure(&e).is_retriable(),
            })?;
        let Some(description) = page.stream_description() else {
            break;
        };
        out.extend(listed(description.shards()));
        match description.last_evaluated_shard_id() {
            Some(last) => start = Some(last.to_string()),
            None => break,
        }
    }
    Ok(out)
}

/// The positions to track from now on: those held, with every shard the stream lists and the
/// target does not hold yet added (read from its oldest record), and finished shards the stream
/// no longer lists dropped. `fresh`: the target holds no positions yet (a first start, or a new
/// generation), so shards whose parents are gone are simply where the stream begins now.
///
/// An unfinished shard the target holds that the stream no longer lists, or (not fresh) a new
/// shard whose parent is neither listed nor held, means records were trimmed before they were
/// applied: [`StreamError::Lost`].
pub fn track(
    described: &[Shard],
    held: &[ShardPosition],
    fresh: bool,
    skip_before: Option<&str>,
) -> Result<Vec<ShardPosition>, StreamError> {
    let listed: HashMap<&str, &Shard> = described.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut out: BTreeMap<String, ShardPosition> = BTreeMap::new();
    for p in held {
        if listed.contains_key(p.shard_id.as_str()) {
            out.insert(p.shard_id.clone(), p.clone());
        } else if !p.finished {
            return Err(StreamError::Lost {
                shard: p.shard_id.clone(),
                why: "the stream no longer lists it (its records are older than the stream keeps) though not all of them were applied".into(),
            });
        }
    }
    for s in described {
        if out.contains_key(&s.id) {
            continue;
        }
        if let Some(parent) = &s.parent {
            let known =
                listed.contains_key(parent.as_str()) || held.iter().any(|p| &p.shard_id == parent);
            if !known && !fresh {
                return Err(StreamError::Lost {
                    shard: s.id.clone(),
                    why: format!("its parent shard {parent} was trimmed from the stream before follow read it"),
                });
            }
        }
        out.insert(
            s.id.clone(),
            ShardPosition {
                shard_id: s.id.clone(),
                parent_shard_id: s.parent.clone(),
                sequence_number: None,
                finished: false,
                newest_record_at: None,
                skip_before: skip_before.map(str::to_string),
            },
        );
    }
    Ok(out.into_values().collect())
}

/// The shards that may be read now: not finished, and whose parent is finished or not tracked
/// (trimmed before follow started, or never part of this stream's history here).
pub fn readable(positions: &[ShardPosition]) -> Vec<&ShardPosition> {
    let by_id: HashMap<&str, &ShardPosition> =
        positions.iter().map(|p| (p.shard_id.as_str(), p)).collect();
    positions
        .iter()
        .filter(|p| !p.finished)
        .filter(|p| match &p.parent_shard_id {
            None => true,
            Some(parent) => by_id.get(parent.as_str()).is_none_or(|q| q.finished),
        })
        .collect()
}

/// One stream record, ready for the increment transform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamChange {
    /// `Keys` in DynamoDB JSON.
    pub keys: String,
    /// `NewImage` in DynamoDB JSON; `None` for a REMOVE.
    pub new_image: Option<String>,
    /// A deletion by Time to Live (the record's user identity is the DynamoDB service).
    pub ttl: bool,
    /// When the record was written (approximately).
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl StreamChange {
    /// The change line an incremental export would write, every line of a batch with the same
    /// write time `micros` (their order in the batch is the stream's order, which decides).
    pub fn line(&self, micros: u64) -> Vec<u8> {
        let mut out = format!("{{\"Keys\":{}", self.keys);
        if let Some(image) = &self.new_image {
            out.push_str(",\"NewImage\":");
            out.push_str(image);
        }
        out.push_str(&format!(
            ",\"Metadata\":{{\"WriteTimestampMicros\":{{\"N\":\"{micros}\"}}}}}}"
        ));
        out.into_bytes()
    }
}

/// A value in DynamoDB JSON (`{"S": "…"}`, `{"N": "…"}` with the number's exact text, binary as
/// base64, …).
pub fn attribute_json(value: &AttributeValue) -> serde_json::Value {
    use serde_json::{json, Value};
    let b64 = |b: &aws_smithy_types::Blob| {
        Value::String(base64::engine::general_purpose::STANDARD.encode(b.as_ref()))
    };
    match value {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::B(b) => json!({ "B": b64(b) }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Null(b) => json!({ "NULL": b }),
        AttributeValue::Ss(v) => json!({ "SS": v }),
        AttributeValue::Ns(v) => json!({ "NS": v }),
        AttributeValue::Bs(v) => json!({ "BS": v.iter().map(b64).collect::<Vec<_>>() }),
        AttributeValue::L(v) => json!({ "L": v.iter().map(attribute_json).collect::<Vec<_>>() }),
        AttributeValue::M(m) => json!({ "M": map_json(m) }),
        // A type this SDK does not know yet: kept visible rather than dropped.
        other => json!({ "S": format!("{other:?}") }),
    }
}

fn map_json(map: &HashMap<String, AttributeValue>) -> serde_json::Value {
    serde_json::Value::Object(
        map.iter()
            .map(|(k, v)| (k.clone(), attribute_json(v)))
            .collect(),
    )
}

/// Whether a record's user identity is the one of a deletion by Time to Live.
pub fn is_ttl_delete(identity_type: Option<&str>, principal: Option<&str>) -> bool {
    identity_type == Some("Service") && principal == Some("dynamodb.amazonaws.com")
}

/// What one round over the readable shards found.
#[derive(Debug, Default)]
pub struct Round {
    pub changes: Vec<StreamChange>,
    /// Every readable shard answered with no record and no shard finished: the stream is read
    /// up to now.
    pub drained: bool,
    /// Records skipped because the served tables hold them already (`skip_before`).
    pub skipped: u64,
    /// Every readable shard answered with fewer records than asked for (and none finished): the
    /// round read each shard up to its newest record at the time, so every change written
    /// before the round began is in `changes` or was read before.
    pub at_tip: bool,
}

/// Reads the records of a stream shard by shard, keeping each shard's position.
pub struct StreamReader {
    pub client: aws_sdk_dynamodbstreams::Client,
    pub table: String,
    pub arn: String,
    pub retry: RetryPolicy,
    /// Where every tracked shard stands (including what this reader read but was not applied).
    pub positions: Vec<ShardPosition>,
    iterators: HashMap<String, String>,
}

/// Records asked for per GetRecords call (its maximum).
const RECORDS_PER_CALL: i32 = 1000;
/// Records older than `skip_before` by more than this are skipped; those closer to it are
/// applied again (harmless: applying a change twice leaves the same row), as written times are
/// approximate.
const SKIP_MARGIN: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

impl StreamReader {
    pub fn new(
        client: aws_sdk_dynamodbstreams::Client,
        table: &str,
        arn: &str,
        retry: RetryPolicy,
        positions: Vec<ShardPosition>,
    ) -> StreamReader {
        StreamReader {
            client,
            table: table.to_string(),
            arn: arn.to_string(),
            retry,
            positions,
            iterators: HashMap::new(),
        }
    }

    /// Adds the shards the stream lists now (a split while following); a lost position is an
    /// error.
    pub async fn refresh(&mut self) -> Result<(), StreamError> {
        let described = shards(&self.client, &self.table, &self.arn, &self.retry).await?;
        let skip = self.positions.iter().find_map(|p| p.skip_before.clone());
        self.positions = track(&described, &self.positions, false, skip.as_deref())?;
        self.iterators
            .retain(|id, _| self.positions.iter().any(|p| &p.shard_id == id));
        Ok(())
    }

    async fn iterator(&mut self, index: usize) -> Result<Option<String>, StreamError> {
        let p = &self.positions[index];
        if let Some(it) = self.iterators.get(&p.shard_id) {
            return Ok(Some(it.clone()));
        }
        let (kind, seq) = match &p.sequence_number {
            Some(seq) => (ShardIteratorType::AfterSequenceNumber, Some(seq.clone())),
            None => (ShardIteratorType::TrimHorizon, None),
        };
        let shard = p.shard_id.clone();
        let client = &self.client;
        let answer = self
            .retry
            .run_sdk(
                || {
                    client
                        .get_shard_iterator()
                        .stream_arn(&self.arn)
                        .shard_id(&shard)
                        .shard_iterator_type(kind.clone())
                        .set_sequence_number(seq.clone())
                        .send()
                },
                |e, delay| tracing::warn!(table = %self.table, shard, delay_ms = delay.as_millis() as u64, error = %describe(e), "GetShardIterator failed; retrying"),
            )
            .await;
        match answer {
            Ok(out) => Ok(out.shard_iterator().map(str::to_string)),
            Err(e) => {
                let service = e.as_service_error();
                if service.is_some_and(|s| s.is_trimmed_data_access_exception()) {
                    return Err(StreamError::Lost {
                        shard,
                        why: "GetShardIterator answered TrimmedDataAccessException: the records after the position the target holds are older than the stream keeps".into(),
                    });
                }
                if service.is_some_and(|s| s.is_resource_not_found_exception()) {
                    return Err(StreamError::Lost {
                        shard,
                        why: format!("GetShardIterator did not find it: {}", describe(&e)),
                    });
                }
                Err(StreamError::Request {
                    table: self.table.clone(),
                    what: format!("GetShardIterator of shard {shard}"),
                    detail: describe(&e),
                    retriable: sdk_failure(&e).is_retriable(),
                })
            }
        }
    }

    /// One GetRecords call on every readable shard.
    pub async fn round(&mut self) -> Result<Round, StreamError> {
        let mut round = Round {
            drained: true,
            at_tip: true,
            ..Round::default()
        };
        let ids: Vec<String> = readable(&self.positions)
            .into_iter()
            .map(|p| p.shard_id.clone())
            .collect();
        for id in ids {
            let index = self
                .positions
                .iter()
                .position(|p| p.shard_id == id)
                .expect("a readable shard is tracked");
            let Some(iterator) = self.iterator(index).await? else {
                // No iterator: the shard is closed and read to its end.
                self.positions[index].finished = true;
                round.drained = false;
                round.at_tip = false;
                continue;
            };
            let client = &self.client;
            let answer = self
                .retry
                .run_sdk(
                    || {
                        client
                            .get_records()
                            .shard_iterator(&iterator)
                            .limit(RECORDS_PER_CALL)
                            .send()
                    },
                    |e, delay| tracing::warn!(table = %self.table, shard = %id, delay_ms = delay.as_millis() as u64, error = %describe(e), "GetRecords failed; retrying"),
                )
                .await;
            let out = match answer {
                Ok(out) => out,
                Err(e) => {
                    let service = e.as_service_error();
                    if service.is_some_and(|s| s.is_expired_iterator_exception()) {
                        // Taken again from the position on the next round.
                        self.iterators.remove(&id);
                        round.drained = false;
                        round.at_tip = false;
                        continue;
                    }
                    if service.is_some_and(|s| {
                        s.is_trimmed_data_access_exception() || s.is_resource_not_found_exception()
                    }) {
                        return Err(StreamError::Lost {
                            shard: id,
                            why: format!("GetRecords answered {}", describe(&e)),
                        });
                    }
                    return Err(StreamError::Request {
                        table: self.table.clone(),
                        what: format!("GetRecords of shard {id}"),
                        detail: describe(&e),
                        retriable: sdk_failure(&e).is_retriable(),
                    });
                }
            };
            let position = &mut self.positions[index];
            let skip_before = position
                .skip_before
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&chrono::Utc) - SKIP_MARGIN);
            for record in out.records() {
                let Some(body) = record.dynamodb() else {
                    continue;
                };
                if let Some(seq) = body.sequence_number() {
                    position.sequence_number = Some(seq.to_string());
                }
                let created_at = body
                    .approximate_creation_date_time()
                    .and_then(|t| t.to_millis().ok())
                    .and_then(chrono::DateTime::from_timestamp_millis);
                if let Some(at) = created_at {
                    position.newest_record_at =
                        Some(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
                }
                if let (Some(before), Some(at)) = (skip_before, created_at) {
                    if at < before {
                        round.skipped += 1;
                        continue;
                    }
                }
                let remove = record.event_name().map(|e| e.as_str()) == Some("REMOVE");
                let identity = record.user_identity();
                let keys = body.keys().map(map_json).unwrap_or_default();
                round.changes.push(StreamChange {
                    keys: keys.to_string(),
                    new_image: match remove {
                        true => None,
                        false => body.new_image().map(|m| map_json(m).to_string()),
                    },
                    ttl: remove
                        && is_ttl_delete(
                            identity.and_then(|i| i.r#type()),
                            identity.and_then(|i| i.principal_id()),
                        ),
                    created_at,
                });
            }
            if !out.records().is_empty() {
                round.drained = false;
            }
            if out.records().len() >= RECORDS_PER_CALL as usize {
                round.at_tip = false;
            }
            match out.next_shard_iterator() {
                Some(next) => {
                    self.iterators.insert(id, next.to_string());
                }
                None => {
                    position.finished = true;
                    self.iterators.remove(&id);
                    round.drained = false;
                    round.at_tip = false;
                }
            }
        }
        Ok(round)
    }

    /// Forgets the iterators (the positions are set back to what the target holds).
    pub fn reset(&mut self, positions: Vec<ShardPosition>) {
        self.positions = positions;
        self.iterators.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parent: Option<&str>) -> Shard {
        Shard {
            id: id.into(),
            parent: parent.map(str::to_string),
        }
    }

    fn at(id: &str, parent: Option<&str>, seq: Option<&str>, finished: bool) -> ShardPosition {
        ShardPosition {
            shard_id: id.into(),
            parent_shard_id: parent.map(str::to_string),
            sequence_number: seq.map(str::to_string),
            finished,
            newest_record_at: None,
            skip_before: None,
        }
    }

    fn ids(p: &[&ShardPosition]) -> Vec<String> {
        p.iter().map(|p| p.shard_id.clone()).collect()
    }

    /// DescribeStream answers as recorded around a split: one shard, then closed with two
    /// children, then the parent trimmed away a day later.
    #[test]
    fn a_split_is_read_parent_first_and_children_after() {
        let first = track(&[shard("s1", Some("s0"))], &[], true, None).unwrap();
        assert_eq!(
            ids(&readable(&first)),
            vec!["s1"],
            "the trimmed parent s0 is not waited for"
        );
        let split = [
            shard("s1", Some("s0")),
            shard("s2", Some("s1")),
            shard("s3", Some("s1")),
        ];
        let mut held = track(&split, &first, false, None).unwrap();
        assert_eq!(
            ids(&readable(&held)),
            vec!["s1"],
            "children wait for their parent"
        );
        held[0].finished = true;
        held[0].sequence_number = Some("100".into());
        assert_eq!(ids(&readable(&held)), vec!["s2", "s3"]);
        // A day later the parent is gone from the stream: finished, so just dropped.
        let later = track(&split[1..], &held, false, None).unwrap();
        assert_eq!(ids(&readable(&later)), vec!["s2", "s3"]);
        assert_eq!(later.len(), 2);
    }

    /// The `Shards` of three DescribeStream answers in the API reference's shape
    /// (<https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_streams_DescribeStream.html>),
    /// as a split shows them: one open shard; the same shard closed (an ending sequence number)
    /// with two children; a day later the parent trimmed away.
    const ANSWERS: &str = r#"[
      [{"ShardId": "shardId-00000001764547200000-aaaa0001",
        "SequenceNumberRange": {"StartingSequenceNumber": "100000000000000000001"}}],
      [{"ShardId": "shardId-00000001764547200000-aaaa0001",
        "SequenceNumberRange": {"StartingSequenceNumber": "100000000000000000001",
                                "EndingSequenceNumber": "100000000000000000900"}},
       {"ShardId": "shardId-00000001764550800000-bbbb0002",
        "ParentShardId": "shardId-00000001764547200000-aaaa0001",
        "SequenceNumberRange": {"StartingSequenceNumber": "200000000000000000001"}},
       {"ShardId": "shardId-00000001764550800000-cccc0003",
        "ParentShardId": "shardId-00000001764547200000-aaaa0001",
        "SequenceNumberRange": {"StartingSequenceNumber": "300000000000000000001"}}],
      [{"ShardId": "shardId-00000001764550800000-bbbb0002",
        "ParentShardId": "shardId-00000001764547200000-aaaa0001",
        "SequenceNumberRange": {"StartingSequenceNumber": "200000000000000000001"}},
       {"ShardId": "shardId-00000001764550800000-cccc0003",
        "ParentShardId": "shardId-00000001764547200000-aaaa0001",
        "SequenceNumberRange": {"StartingSequenceNumber": "300000000000000000001"}}]
    ]"#;

    /// The answers as the SDK hands them to [`listed`].
    fn answers() -> Vec<Vec<aws_sdk_dynamodbstreams::types::Shard>> {
        let pages: Vec<Vec<serde_json::Value>> = serde_json::from_str(ANSWERS).unwrap();
        pages
            .iter()
            .map(|page| {
                page.iter()
                    .map(|s| {
                        aws_sdk_dynamodbstreams::types::Shard::builder()
                            .shard_id(s["ShardId"].as_str().unwrap())
                            .set_parent_shard_id(s["ParentShardId"].as_str().map(str::to_string))
                            .build()
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn recorded_answers_of_a_split_are_read_parent_before_children() {
        let answers = answers();
        let short = |p: &[&ShardPosition]| -> Vec<String> {
            p.iter()
                .map(|p| p.shard_id[p.shard_id.len() - 8..].to_string())
                .collect()
        };
        // Following from a fresh start: the one shard.
        let mut held = track(&listed(&answers[0]), &[], true, None).unwrap();
        assert_eq!(short(&readable(&held)), ["aaaa0001"]);
        // The split while following: the children are tracked but wait for their parent...
        held = track(&listed(&answers[1]), &held, false, None).unwrap();
        assert_eq!(held.len(), 3);
        assert_eq!(short(&readable(&held)), ["aaaa0001"]);
        // ...until GetRecords has read it to its end (no next iterator): then both are read.
        held[0].finished = true;
        assert_eq!(short(&readable(&held)), ["bbbb0002", "cccc0003"]);
        // A day later the parent is trimmed: finished, so simply dropped.
        held = track(&listed(&answers[2]), &held, false, None).unwrap();
        assert_eq!(short(&readable(&held)), ["bbbb0002", "cccc0003"]);
        // Had the parent not been finished, its unread records would be lost: said so.
        let mut unfinished = track(&listed(&answers[1]), &[], true, None).unwrap();
        unfinished[0].sequence_number = Some("100000000000000000500".into());
        let err = track(&listed(&answers[2]), &unfinished, false, None).unwrap_err();
        assert!(err.to_string().contains("aaaa0001"), "{err}");
    }

    #[test]
    fn a_position_the_stream_no_longer_has_is_lost() {
        let held = vec![at("s1", None, Some("5"), false)];
        let err = track(&[shard("s9", Some("s8"))], &held, false, None).unwrap_err();
        assert!(
            matches!(err, StreamError::Lost { ref shard, .. } if shard == "s1"),
            "{err}"
        );
        // A new shard whose parent nobody knows, while positions are held: its parent's records
        // were trimmed unread.
        let held = vec![at("s1", None, Some("5"), true)];
        let err = track(
            &[shard("s1", None), shard("s7", Some("s6"))],
            &held,
            false,
            None,
        )
        .unwrap_err();
        assert!(
            matches!(err, StreamError::Lost { ref shard, .. } if shard == "s7"),
            "{err}"
        );
        // The same on a fresh start is where the stream begins.
        assert!(track(&[shard("s7", Some("s6"))], &[], true, None).is_ok());
    }

    #[test]
    fn a_stream_must_reach_back_to_the_watermark() {
        let arn = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-12-01T10:00:00.000";
        let t = |h: i64, m: i64| {
            chrono::DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
                .unwrap()
                .with_timezone(&chrono::Utc)
                + chrono::TimeDelta::hours(h)
                + chrono::TimeDelta::minutes(m)
        };
        assert_eq!(created_at(arn), Some(t(10, 0)));
        assert_eq!(reaches_back(arn, t(11, 0), t(12, 0)), None);
        let late = reaches_back(arn, t(9, 59), t(12, 0)).unwrap();
        assert!(late.contains("began at 2026-12-01T10:00:00.000Z"), "{late}");
        let old = reaches_back(arn, t(11, 0), t(34, 1)).unwrap();
        assert!(old.contains("24 hours"), "{old}");
        // A label that is not a time: only the age counts.
        assert_eq!(reaches_back("arn:x/stream/label", t(11, 0), t(12, 0)), None);
    }

    #[test]
    fn a_ttl_deletion_is_known_by_its_identity() {
        assert!(is_ttl_delete(
            Some("Service"),
            Some("dynamodb.amazonaws.com")
        ));
        assert!(!is_ttl_delete(
            Some("Service"),
            Some("lambda.amazonaws.com")
        ));
        assert!(!is_ttl_delete(None, None));
    }

    #[test]
    fn records_become_the_change_lines_an_export_writes() {
        let mut key = HashMap::new();
        key.insert("pk".to_string(), AttributeValue::S("A#1".into()));
        let mut image = key.clone();
        image.insert(
            "n".to_string(),
            AttributeValue::N("12345678901234567890.5".into()),
        );
        image.insert(
            "b".to_string(),
            AttributeValue::B(aws_smithy_types::Blob::new(vec![0u8, 255])),
        );
        image.insert(
            "s".to_string(),
            AttributeValue::Ss(vec!["x".into(), "y".into()]),
        );
        let change = StreamChange {
            keys: map_json(&key).to_string(),
            new_image: Some(map_json(&image).to_string()),
            ttl: false,
            created_at: None,
        };
        let line = change.line(7);
        let parsed: crate::source::export::ChangeLine = serde_json::from_slice(&line).unwrap();
        assert_eq!(parsed.metadata.write_timestamp_micros.0, 7);
        let text = String::from_utf8(line.clone()).unwrap();
        assert!(text.contains(r#""N":"12345678901234567890.5""#), "{text}");
        assert!(text.contains(r#""B":"AP8=""#), "{text}");
        let removed = StreamChange {
            new_image: None,
            ..change
        };
        let parsed: serde_json::Value = serde_json::from_slice(&removed.line(1)).unwrap();
        assert!(parsed.get("NewImage").is_none());
    }
}
