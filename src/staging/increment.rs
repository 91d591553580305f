//! What an increment run is: the changes of one time window of a DynamoDB incremental export,
//! to be applied to the tables a target serves. The plan of such a run pins its window and the
//! served run it builds on, and its warehouse tables are the *increment layout* of that run's
//! tables, loaded into a staging schema of their own and applied from there in one transaction:
//!
//! - for every table `W` of the served run (its data tables, `_unclassified`, `_overflow`): a
//!   table of the same name holding the new images that landed in `W`, each row led by
//!   `_item_key` (the item's key as JSON, the same text `_overflow.item_key` holds) and
//!   `_version` (which change wrote it: see [`version`]);
//! - for every `W` but `_overflow`: `_inc_keys_<i>` (`i` its position), the key of every changed
//!   item in `W`'s own key columns, so the apply deletes the old rows of changed items from every
//!   table they could be in — which is also how an item whose entity changed leaves its old table;
//! - `_inc_changes`: one row per change line (`_item_key`, `_version`, `_table`: the table its new
//!   image landed in, NULL for a delete or a rejected image). The apply keeps, per key, the change
//!   with the highest version.

use serde::{Deserialize, Serialize};

use crate::schema::{Column, DataSchema, LogicalType, FORMAT_VERSION, OVERFLOW_TABLE};

/// Tables of the increment layout that are not upserts start with this.
pub const TABLE_PREFIX: &str = "_inc_";
/// One row per change line.
pub const CHANGES_TABLE: &str = "_inc_changes";
/// The item's key as JSON, leading every row of the increment layout.
pub const ITEM_KEY_COLUMN: &str = "_item_key";
/// Which change wrote a row: comparable as text, unique within an increment.
pub const VERSION_COLUMN: &str = "_version";
/// In `_inc_changes`: where the change's new image landed (NULL: nowhere, the item is gone).
pub const TABLE_COLUMN: &str = "_table";
/// The item's key as JSON is at most this long (keys are at most 2,048 + 1,024 bytes, JSON text
/// escapes at most six bytes per byte): Redshift's widest VARCHAR.
const ITEM_KEY_BYTES: u32 = 65535;

/// The key table of the served table at position `index`.
pub fn keys_table(index: usize) -> String {
    format!("{TABLE_PREFIX}keys_{index}")
}

/// What an increment run applies: the changes in `[from, to)` on top of `base_run`, the full
/// copy the target served when the increment was planned. Times are RFC 3339 in UTC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncrementSpec {
    pub base_run: String,
    /// Inclusive start: the target's watermark when the increment was planned.
    pub from: String,
    /// Exclusive end; the target's watermark once the increment is applied.
    pub to: String,
    /// The export's view type: `NEW_AND_OLD_IMAGES` or `NEW_IMAGE`.
    pub view: String,
    /// For a batch of `follow`: the stream positions it starts from and ends at. Such a batch is
    /// applied when the target holds exactly its `from` positions, and records its `to`
    /// positions in the same transaction; `from`/`to` above are then only the times of its
    /// oldest and newest record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamSpan>,
}

/// What one batch of `follow` reads of a table's stream: every shard's position before and
/// after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSpan {
    pub stream_arn: String,
    pub from: Vec<ShardPosition>,
    pub to: Vec<ShardPosition>,
    /// Stream records in the batch (change lines), and how many of them were deletions by
    /// Time to Live.
    pub records: u64,
    pub ttl_deletes: u64,
}

/// How far the target has applied one shard of a stream.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardPosition {
    pub shard_id: String,
    pub parent_shard_id: Option<String>,
    /// The sequence number of the last record applied; `None`: none yet (the shard is read
    /// from its oldest record).
    pub sequence_number: Option<String>,
    /// The shard is closed and every record of it is applied: its children may be read.
    pub finished: bool,
    /// When the newest record applied from this shard was written (approximately, RFC 3339).
    pub newest_record_at: Option<String>,
    /// Records written before this time (RFC 3339) are already in the served tables (the full
    /// copy, or a catch-up increment, holds them): they are skipped rather than re-applied.
    pub skip_before: Option<String>,
}

/// The window of changes the next increment of a target exports and applies, decided once —
/// before its incremental export starts — and kept in the staging area: a retry after a failure
/// finds it and exports (with the same client token, so DynamoDB returns the same export) the
/// same window, instead of a new window to the newest restorable time, which would be a new,
/// billed export (ExportTableToPointInTime is idempotent only for the same token *and*
/// parameters: <https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_ExportTableToPointInTime.html>).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecidedWindow {
    pub target: String,
    pub table: String,
    /// The increment's run id, also the export's client token.
    pub run_id: String,
    /// The full copy the target served when the window was decided.
    pub base_run: String,
    pub from: String,
    pub to: String,
    pub view: String,
    pub decided_at: String,
}

impl DecidedWindow {
    /// Whether a new attempt to bring `target`, at watermark `from`, up to date should take this
    /// window again: it starts where the target stands, on the same copy, with the same view.
    pub fn resumes(
        &self,
        target: &str,
        table: &str,
        base_run: &str,
        from: &str,
        view: &str,
    ) -> bool {
        self.target == target
            && self.table == table
            && self.base_run == base_run
            && self.from == from
            && self.view == view
    }
}

/// The `_version` of the `seq`-th change line segment `segment` read, written at `micros`:
/// zero-padded so that text order is the order of writes (a later write wins), with the segment
/// and line making two changes of one microsecond distinct and their order the same everywhere.
pub fn version(micros: u64, segment: u32, seq: u64) -> String {
    format!("{micros:020}.{segment:06}.{seq:012}")
}

fn text_column(name: &str, max_bytes: u32, nullable: bool) -> Column {
    Column {
        attribute: name.to_string(),
        column: name.to_string(),
        logical_type: LogicalType::Text { max_bytes },
        nullable,
    }
}

/// The columns of `table` that hold the key attributes, in key order; an error names the key
/// attribute the table has no typed column for (an increment cannot find its rows then).
pub fn key_columns<'t>(
    table: &'t DataSchema,
    key_attributes: &[String],
) -> Result<Vec<&'t Column>, String> {
    key_attributes
        .iter()
        .map(|a| {
            table
                .columns
                .iter()
                .find(|c| &c.attribute == a)
                .ok_or_else(|| {
                    format!(
                        "table {} has no column for key attribute {a} (it would be in _extra), so an increment cannot find its rows",
                        table.table
                    )
                })
        })
        .collect()
}

/// The increment layout of a served run's tables `base` (see the module documentation).
pub fn tables(base: &[DataSchema], key_attributes: &[String]) -> Result<Vec<DataSchema>, String> {
    let lead = || {
        vec![
            text_column(ITEM_KEY_COLUMN, ITEM_KEY_BYTES, false),
            text_column(VERSION_COLUMN, 64, false),
        ]
    };
    let mut out = Vec::new();
    for table in base {
        let mut upsert = table.clone();
        upsert.rule = None;
        upsert.columns = lead().into_iter().chain(table.columns.clone()).collect();
        out.push(upsert);
    }
    for (index, table) in base.iter().enumerate() {
        if table.table == OVERFLOW_TABLE {
            continue;
        }
        let keys = key_columns(table, key_attributes)?;
        out.push(DataSchema {
            format: FORMAT_VERSION,
            source_table: table.source_table.clone(),
            table: keys_table(index),
            rule: None,
            columns: std::iter::once(text_column(ITEM_KEY_COLUMN, ITEM_KEY_BYTES, false))
                .chain(keys.into_iter().cloned())
                .collect(),
        });
    }
    out.push(DataSchema {
        format: FORMAT_VERSION,
        source_table: base
            .first()
            .map(|t| t.source_table.clone())
            .unwrap_or_default(),
        table: CHANGES_TABLE.to_string(),
        rule: None,
        columns: vec![
            text_column(ITEM_KEY_COLUMN, ITEM_KEY_BYTES, false),
            text_column(VERSION_COLUMN, 64, false),
            text_column(TABLE_COLUMN, 127, true),
        ],
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{overflow_schema, unclassified_schema};

    fn table(name: &str, attributes: &[&str]) -> DataSchema {
        DataSchema {
            format: FORMAT_VERSION,
            source_table: "t".into(),
            table: name.into(),
            rule: None,
            columns: attributes
                .iter()
                .map(|a| text_column(a, 10, false))
                .collect(),
        }
    }

    #[test]
    fn versions_sort_as_text_in_the_order_of_writes() {
        let mut versions = vec![
            version(1_700_000_000_000_001, 0, 5),
            version(999, 3, 0),
            version(1_700_000_000_000_000, 1, 9),
            version(1_700_000_000_000_000, 1, 10),
        ];
        versions.sort();
        assert_eq!(
            versions,
            vec![
                version(999, 3, 0),
                version(1_700_000_000_000_000, 1, 9),
                version(1_700_000_000_000_000, 1, 10),
                version(1_700_000_000_000_001, 0, 5),
            ]
        );
    }

    #[test]
    fn the_layout_has_upserts_keys_and_changes() {
        let keys = vec!["pk".to_string(), "sk".to_string()];
        let base = vec![
            table("orders", &["pk", "sk", "total"]),
            unclassified_schema("t", &keys),
            overflow_schema("t"),
        ];
        let out = tables(&base, &keys).unwrap();
        let names: Vec<&str> = out.iter().map(|t| t.table.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "orders",
                "_unclassified",
                "_overflow",
                "_inc_keys_0",
                "_inc_keys_1",
                "_inc_changes"
            ]
        );
        assert_eq!(
            out[0].column_names(),
            vec!["_item_key", "_version", "pk", "sk", "total", "_extra"]
        );
        assert_eq!(
            out[2].column_names()[..3],
            ["_item_key", "_version", "table_name"]
        );
        assert_eq!(out[3].column_names(), vec!["_item_key", "pk", "sk"]);
        assert_eq!(
            out[5].column_names(),
            vec!["_item_key", "_version", "_table"]
        );
    }

    #[test]
    fn a_table_without_a_key_column_is_refused_by_name() {
        let keys = vec!["pk".to_string(), "sk".to_string()];
        let err = tables(&[table("orders", &["pk", "total"])], &keys).unwrap_err();
        assert!(err.contains("orders") && err.contains("sk"), "{err}");
    }
}
