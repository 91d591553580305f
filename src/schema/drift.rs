//! How items misfit their data-schemas, as phase 1 reports it: drift (an attribute's value kept
//! out of its column, and why) and rejections (an item with no representation at all, by key).
//! The transform produces them, segment manifests and checkpoints record them, and `drift`,
//! `run`'s report and `infer-schema` read them back.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How many example keys drift and rejection reports keep per attribute.
pub const EXAMPLE_KEYS: usize = 3;

/// An item that cannot be represented; it is reported in the segment manifest instead of loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rejection {
    /// The item's key as JSON, e.g. `{"pk":"ORG#1","sk":"META"}`.
    pub key: String,
    pub reason: String,
}

/// Why an attribute's value went to `_extra` instead of its column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftReason {
    /// The data-schema has no column for the attribute.
    NotInSchema,
    /// A number column got a value that is not a number.
    NotANumber,
    DoesNotFitBigint,
    /// More digits or scale than the column's decimal holds.
    DoesNotFitDecimal,
    /// A text column got a string containing U+0000, which the warehouses cannot store as text.
    ContainsNul,
    /// Longer than the column's width.
    TooLong,
    /// A timestamp column got a string that is not an RFC 3339 timestamp with offset.
    NotATimestamp,
    /// Another DynamoDB type than the column's.
    OtherType,
    /// Beyond what the run's warehouse can hold in any column (see `schema::limits`): kept as
    /// bytes in `_overflow`.
    Overflow,
    /// A key attribute whose value the table's typed key column cannot hold (U+0000, or exactly
    /// the CSV NULL marker): the item went to `_unclassified`, whose key columns are JSON.
    KeyNotHeld,
}

impl DriftReason {
    /// In an operator's words.
    pub fn describe(self) -> &'static str {
        match self {
            DriftReason::NotInSchema => "not in the data-schema",
            DriftReason::NotANumber => "not a number",
            DriftReason::DoesNotFitBigint => "does not fit bigint",
            DriftReason::DoesNotFitDecimal => "does not fit the column's decimal precision",
            DriftReason::ContainsNul => "string contains U+0000",
            DriftReason::TooLong => "string longer than the column's width",
            DriftReason::NotATimestamp => "not an RFC 3339 timestamp with offset",
            DriftReason::OtherType => "type differs from the data-schema",
            DriftReason::Overflow => "beyond what the warehouse holds; kept in _overflow",
            DriftReason::KeyNotHeld => {
                "a key value no typed key column holds; the item went to _unclassified"
            }
        }
    }
}

impl std::fmt::Display for DriftReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

/// Which attribute drifted, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DriftKey {
    pub attribute: String,
    pub reason: DriftReason,
}

/// How often a [`DriftKey`] happened, with example item keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriftCount {
    pub count: u64,
    pub examples: Vec<String>,
}

impl DriftCount {
    /// Adds `other`'s count and examples (up to [`EXAMPLE_KEYS`], no repeats).
    pub fn add(&mut self, count: u64, examples: &[String]) {
        self.count += count;
        for example in examples {
            if self.examples.len() < EXAMPLE_KEYS && !self.examples.contains(example) {
                self.examples.push(example.clone());
            }
        }
    }

    /// The manifest's record of this count.
    pub fn entry(&self, key: &DriftKey) -> DriftEntry {
        DriftEntry {
            attribute: key.attribute.clone(),
            reason: key.reason,
            count: self.count,
            examples: self.examples.clone(),
        }
    }
}

/// One attribute of one table that went to `_extra`, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftEntry {
    pub attribute: String,
    pub reason: DriftReason,
    pub count: u64,
    pub examples: Vec<String>,
}

/// Drift seen in one table, sorted by attribute and reason.
pub type TableDrift = Vec<DriftEntry>;

/// Drift summed over segments: table → (attribute, reason) → counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriftSum {
    pub tables: BTreeMap<String, BTreeMap<DriftKey, DriftCount>>,
}

impl DriftSum {
    pub fn add(&mut self, drift: &BTreeMap<String, TableDrift>) {
        for (table, entries) in drift {
            let sums = self.tables.entry(table.clone()).or_default();
            for e in entries {
                let key = DriftKey {
                    attribute: e.attribute.clone(),
                    reason: e.reason,
                };
                sums.entry(key).or_default().add(e.count, &e.examples);
            }
        }
    }

    /// In manifest form, per table.
    pub fn entries(&self) -> BTreeMap<String, TableDrift> {
        self.tables
            .iter()
            .map(|(t, sums)| (t.clone(), sums.iter().map(|(k, c)| c.entry(k)).collect()))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.tables.values().all(BTreeMap::is_empty)
    }
}
