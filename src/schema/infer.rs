//! Data-schema inference: summarise the values seen per table and attribute, then pick the
//! narrowest logical type that holds all of them.
//!
//! Which table each item belongs to is the entity survey's business (`super::entities`); this
//! module summarises a table's items. [`Seen`] is a join-semilattice and [`TableStats::merge`]
//! is commutative and associative, so per-segment partial results merge into the same schema
//! in any order. Type order:
//! bigint ⊂ decimal(p,s) ⊂ numeric text; timestamp ⊂ text; two different families (or any
//! set/list/map, or a string holding U+0000) → json.

use std::collections::{BTreeMap, HashSet};

use super::naming;
use super::{Column, LogicalType, MAX_DECIMAL_PRECISION};
use crate::value::decimal::Decimal;
use crate::value::time::is_timestamp;
use crate::value::{ItemView, Value};

/// Most columns inference gives one table, `_extra` included: the largest column cap of any
/// dialect (`Limits::column_cap`; a run for a dialect with a smaller cap keeps fewer). Past it,
/// the attributes seen least often are left to `_extra`.
pub const MAX_INFERRED_COLUMNS: usize = 1000;

/// What the values of one attribute looked like, as a lattice element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Seen {
    /// Only NULLs, or nothing.
    #[default]
    Nothing,
    Number {
        all_i64: bool,
        int_digits: u32,
        scale: u32,
    },
    Text {
        max_bytes: u32,
        all_timestamps: bool,
    },
    Boolean,
    Binary,
    Json,
}

impl Seen {
    pub fn of(value: &Value) -> Seen {
        match value {
            Value::Null => Seen::Nothing,
            Value::N(n) => match Decimal::parse(n) {
                Ok(d) => Seen::Number {
                    all_i64: d.to_i64().is_some(),
                    int_digits: d.integer_digits(),
                    scale: d.scale(),
                },
                Err(_) => Seen::Json,
            },
            // Any length: a run for a warehouse with bounded strings sends the longer ones to
            // `_overflow`.
            Value::S(s) if s.contains('\0') => Seen::Json,
            Value::S(s) => Seen::Text {
                max_bytes: u32::try_from(s.len()).unwrap_or(u32::MAX),
                all_timestamps: is_timestamp(s),
            },
            Value::Bool(_) => Seen::Boolean,
            Value::B(_) => Seen::Binary,
            _ => Seen::Json,
        }
    }

    /// The least upper bound of two summaries.
    pub fn join(self, other: Seen) -> Seen {
        use Seen::*;
        match (self, other) {
            (Nothing, x) | (x, Nothing) => x,
            (
                Number {
                    all_i64: a,
                    int_digits: ai,
                    scale: asc,
                },
                Number {
                    all_i64: b,
                    int_digits: bi,
                    scale: bsc,
                },
            ) => Number {
                all_i64: a && b,
                int_digits: ai.max(bi),
                scale: asc.max(bsc),
            },
            (
                Text {
                    max_bytes: a,
                    all_timestamps: at,
                },
                Text {
                    max_bytes: b,
                    all_timestamps: bt,
                },
            ) => Text {
                max_bytes: a.max(b),
                all_timestamps: at && bt,
            },
            (Boolean, Boolean) => Boolean,
            (Binary, Binary) => Binary,
            _ => Json,
        }
    }

    /// The narrowest logical type holding every value summarised.
    pub fn logical_type(self) -> LogicalType {
        match self {
            Seen::Nothing => LogicalType::Text { max_bytes: 0 },
            Seen::Number {
                all_i64: true,
                scale: 0,
                ..
            } => LogicalType::Bigint,
            Seen::Number {
                int_digits, scale, ..
            } => {
                let precision = (int_digits + scale).max(1);
                if precision <= MAX_DECIMAL_PRECISION {
                    LogicalType::Decimal { precision, scale }
                } else {
                    LogicalType::NumericText
                }
            }
            Seen::Text {
                all_timestamps: true,
                ..
            } => LogicalType::Timestamp,
            Seen::Text { max_bytes, .. } => LogicalType::Text { max_bytes },
            Seen::Boolean => LogicalType::Boolean,
            Seen::Binary => LogicalType::Binary,
            Seen::Json => LogicalType::Json,
        }
    }

    /// The summary a column type stands for, so an existing schema can only widen.
    pub fn from_type(t: LogicalType) -> Seen {
        match t {
            LogicalType::Bigint => Seen::Number {
                all_i64: true,
                int_digits: 19,
                scale: 0,
            },
            LogicalType::Decimal { precision, scale } => Seen::Number {
                all_i64: false,
                int_digits: precision - scale,
                scale,
            },
            LogicalType::NumericText => Seen::Number {
                all_i64: false,
                int_digits: MAX_DECIMAL_PRECISION + 1,
                scale: 0,
            },
            LogicalType::Text { max_bytes } => Seen::Text {
                max_bytes,
                all_timestamps: false,
            },
            LogicalType::Timestamp => Seen::Text {
                max_bytes: 0,
                all_timestamps: true,
            },
            LogicalType::Boolean => Seen::Boolean,
            LogicalType::Binary => Seen::Binary,
            LogicalType::Json => Seen::Json,
        }
    }
}

/// Per-attribute summary within one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AttributeStats {
    pub seen: Seen,
    /// Items where the attribute was present and not NULL.
    pub non_null: u64,
    /// Items where the attribute was present, NULL or not.
    pub present: u64,
}

/// Summary of one warehouse table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableStats {
    pub items: u64,
    pub attributes: BTreeMap<String, AttributeStats>,
}

/// One item's attributes as inference sees them, worked out once however many summaries the
/// item goes into (the entity survey adds it to several).
#[derive(Debug, Clone, Default)]
pub struct ItemSummary<'i> {
    /// Name, what its value looks like, and whether it is not NULL.
    pub attributes: Vec<(&'i str, Seen, bool)>,
}

impl<'i> ItemSummary<'i> {
    pub fn of(item: &'i ItemView) -> Self {
        ItemSummary {
            attributes: item
                .iter()
                .map(|(name, value)| (name, Seen::of(value), !matches!(value, Value::Null)))
                .collect(),
        }
    }
}

impl TableStats {
    pub fn observe(&mut self, item: &ItemView) {
        self.add(&ItemSummary::of(item));
    }

    pub fn add(&mut self, item: &ItemSummary) {
        self.items += 1;
        for &(name, seen, non_null) in &item.attributes {
            // Names repeat item after item: allocate one only the first time it is seen.
            let entry = match self.attributes.get_mut(name) {
                Some(entry) => entry,
                None => self.attributes.entry(name.to_string()).or_default(),
            };
            entry.seen = entry.seen.join(seen);
            entry.non_null += u64::from(non_null);
            entry.present += 1;
        }
    }

    pub fn merge(&mut self, other: &TableStats) {
        self.items += other.items;
        for (name, s) in &other.attributes {
            let entry = self.attributes.entry(name.clone()).or_default();
            entry.seen = entry.seen.join(s.seen);
            entry.non_null += s.non_null;
            entry.present += s.present;
        }
    }

    /// What is left after taking out `part`, a summary of some of these items: counts are
    /// subtracted exactly and attributes no remaining item has are dropped; value summaries
    /// cannot be taken apart, so each kept attribute keeps the whole's (at least as wide).
    pub fn without(&self, part: &TableStats) -> TableStats {
        let mut rest = self.clone();
        rest.items = rest.items.saturating_sub(part.items);
        for (name, s) in &part.attributes {
            if let Some(entry) = rest.attributes.get_mut(name) {
                entry.non_null = entry.non_null.saturating_sub(s.non_null);
                entry.present = entry.present.saturating_sub(s.present);
            }
        }
        rest.attributes.retain(|_, s| s.present > 0);
        rest
    }

    /// Share of the table's cells (items × attributes seen) that hold a value.
    pub fn filled_cells(&self) -> (u64, u64) {
        let filled = self.attributes.values().map(|s| s.non_null).sum();
        (filled, self.items * self.attributes.len() as u64)
    }
}

/// Columns of one table: previous ones in their order (widened), then key attributes, then the
/// rest in byte order of the attribute name.
pub fn columns_for(
    stats: &TableStats,
    keys: &[String],
    previous: Option<&[Column]>,
) -> Vec<Column> {
    let previous = previous.unwrap_or(&[]);
    let mut taken: HashSet<String> = previous.iter().map(|c| c.column.clone()).collect();
    let mut columns: Vec<Column> = previous
        .iter()
        .map(|c| {
            let seen = stats.attributes.get(&c.attribute);
            let widened = seen
                .map(|s| Seen::from_type(c.logical_type).join(s.seen).logical_type())
                .unwrap_or(c.logical_type);
            // A table with no items this time (absent from a sample, or emptied) says nothing
            // about nullability, so it keeps what it had.
            let all_present = stats.items == 0 || seen.is_some_and(|s| s.non_null == stats.items);
            Column {
                attribute: c.attribute.clone(),
                column: c.column.clone(),
                logical_type: keep_text_width(c.logical_type, widened),
                nullable: c.nullable || !all_present,
            }
        })
        .collect();
    let known: HashSet<String> = previous.iter().map(|c| c.attribute.clone()).collect();
    let mut new_names: Vec<&String> = stats
        .attributes
        .keys()
        .filter(|a| !known.contains(*a))
        .collect();
    let room = MAX_INFERRED_COLUMNS
        .saturating_sub(1)
        .saturating_sub(columns.len());
    if new_names.len() > room {
        // Keys first, then the attributes present in the most items.
        new_names.sort_by_key(|a| {
            (
                !keys.contains(a),
                std::cmp::Reverse(stats.attributes[*a].non_null),
                a.as_bytes().to_vec(),
            )
        });
        new_names.truncate(room);
    }
    new_names.sort_by_key(|a| {
        (
            !keys.contains(a),
            keys.iter().position(|k| k == *a),
            a.as_bytes().to_vec(),
        )
    });
    for attribute in new_names {
        let s = &stats.attributes[attribute];
        columns.push(Column {
            attribute: attribute.clone(),
            column: naming::assign(attribute, &mut taken),
            logical_type: s.seen.logical_type(),
            nullable: s.non_null != stats.items,
        });
    }
    columns
}

/// Text widths only grow, even when the values seen now are shorter.
fn keep_text_width(before: LogicalType, after: LogicalType) -> LogicalType {
    match (before, after) {
        (LogicalType::Text { max_bytes: a }, LogicalType::Text { max_bytes: b }) => {
            LogicalType::Text {
                max_bytes: a.max(b),
            }
        }
        (_, t) => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::entities::{
        plan, PlanSettings, Strategy, Survey, SurveySettings, DEFAULT_MAX_TABLES,
    };
    use crate::schema::evolve::{holds, narrowings};
    use crate::schema::{DataSchema, FORMAT_VERSION};
    use crate::value::Item;
    use aws_sdk_dynamodb::types::AttributeValue;

    fn seen(v: &AttributeValue) -> Seen {
        Seen::of(&Value::from_sdk(v))
    }

    /// Inference as `infer-schema --classify-attribute pk` makes it (entities by `pk` prefixes up
    /// to `#`), evolving `previous`, over the SDK's items as the tests build them.
    #[derive(Clone)]
    struct Inference {
        survey: Survey,
    }

    impl Inference {
        fn new(previous: &[DataSchema]) -> Self {
            let settings = SurveySettings::new(
                &["pk".to_string()],
                Some('#'),
                DEFAULT_MAX_TABLES,
                previous.to_vec(),
            );
            Inference {
                survey: Survey::new(std::sync::Arc::new(settings)),
            }
        }

        fn observe_sdk(&mut self, item: &Item) {
            self.survey.observe(&ItemView::from_sdk(item))
        }

        fn merge(&mut self, other: &Inference) {
            self.survey.merge(&other.survey)
        }

        fn to_schemas(&self) -> Vec<DataSchema> {
            let settings = PlanSettings {
                source_table: "t",
                strategy: Strategy::Prefix("pk".into()),
                narrow: false,
            };
            plan(&self.survey, &settings).unwrap().schemas
        }
    }

    fn n(v: &str) -> AttributeValue {
        AttributeValue::N(v.into())
    }
    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.into())
    }

    fn type_of(values: &[AttributeValue]) -> LogicalType {
        values
            .iter()
            .fold(Seen::Nothing, |acc, v| acc.join(seen(v)))
            .logical_type()
    }

    #[test]
    fn numbers_widen_along_the_lattice() {
        assert_eq!(
            type_of(&[n("1"), n("-9223372036854775808")]),
            LogicalType::Bigint
        );
        assert_eq!(
            type_of(&[n("1"), n("12.25")]),
            LogicalType::Decimal {
                precision: 4,
                scale: 2
            }
        );
        assert_eq!(
            type_of(&[n("9223372036854775808")]),
            LogicalType::Decimal {
                precision: 19,
                scale: 0
            }
        );
        assert_eq!(type_of(&[n("1E-130")]), LogicalType::NumericText);
        assert_eq!(type_of(&[n("1E+125"), n("1")]), LogicalType::NumericText);
        assert_eq!(type_of(&[n("1"), s("x")]), LogicalType::Json);
    }

    #[test]
    fn strings_timestamps_and_others() {
        assert_eq!(
            type_of(&[s("2024-01-01T00:00:00Z"), s("2024-01-02T00:00:00+01:00")]),
            LogicalType::Timestamp
        );
        assert_eq!(
            type_of(&[s("2024-01-01T00:00:00Z"), s("soon")]),
            LogicalType::Text { max_bytes: 20 }
        );
        assert_eq!(type_of(&[s("a\0")]), LogicalType::Json);
        assert_eq!(
            type_of(&[AttributeValue::Bool(true), AttributeValue::Null(true)]),
            LogicalType::Boolean
        );
        assert_eq!(
            type_of(&[AttributeValue::Ss(vec!["a".into()])]),
            LogicalType::Json
        );
        assert_eq!(
            type_of(&[AttributeValue::Bool(true), s("x")]),
            LogicalType::Json
        );
    }

    /// A small deterministic generator for the merge properties.
    fn values(seed: u64, count: usize) -> Vec<AttributeValue> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        (0..count)
            .map(|_| match next() % 9 {
                0 => n(&(next() % 1000).to_string()),
                1 => n(&format!("{}.{}", next() % 100, next() % 1000)),
                2 => n("1E-130"),
                3 => s(&"x".repeat((next() % 40) as usize)),
                4 => s("2024-05-05T05:05:05Z"),
                5 => AttributeValue::Bool(true),
                6 => AttributeValue::Null(true),
                7 => AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(vec![1])),
                _ => AttributeValue::L(vec![]),
            })
            .collect()
    }

    #[test]
    fn join_is_commutative_associative_and_idempotent() {
        for seed in 0..300 {
            let v = values(seed, 3);
            let (a, b, c) = (seen(&v[0]), seen(&v[1]), seen(&v[2]));
            assert_eq!(a.join(b), b.join(a), "{v:?}");
            assert_eq!(a.join(b).join(c), a.join(b.join(c)), "{v:?}");
            assert_eq!(a.join(a), a);
        }
    }

    #[test]
    fn partial_results_merge_to_the_same_schema_in_any_order() {
        for seed in 0..40 {
            let vals = values(seed, 60);
            let items: Vec<Item> = vals
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let mut item = Item::new();
                    item.insert("pk".into(), s(if i % 3 == 0 { "A#1" } else { "B#2" }));
                    item.insert(format!("attr{}", i % 4), v.clone());
                    item
                })
                .collect();
            let mut whole = Inference::new(&[]);
            items.iter().for_each(|i| whole.observe_sdk(i));
            // Split into 4 "segments" and merge them in two different orders.
            let parts: Vec<Inference> = (0..4)
                .map(|k| {
                    let mut p = Inference::new(&[]);
                    items
                        .iter()
                        .skip(k)
                        .step_by(4)
                        .for_each(|i| p.observe_sdk(i));
                    p
                })
                .collect();
            let mut forward = Inference::new(&[]);
            parts.iter().for_each(|p| forward.merge(p));
            let mut backward = Inference::new(&[]);
            parts.iter().rev().for_each(|p| backward.merge(p));
            let a = whole.to_schemas();
            assert_eq!(a, forward.to_schemas());
            assert_eq!(a, backward.to_schemas());
        }
    }

    #[test]
    fn evolution_appends_columns_and_only_widens() {
        let item = |pairs: &[(&str, AttributeValue)]| -> Item {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect()
        };
        let mut first = Inference::new(&[]);
        first.observe_sdk(&item(&[
            ("pk", s("ORG#1")),
            ("size", n("5")),
            ("Name", s("acme")),
        ]));
        let v1 = first.to_schemas();
        assert_eq!(v1[0].table, "org");
        let names: Vec<_> = v1[0].columns.iter().map(|c| c.column.as_str()).collect();
        assert_eq!(names, ["pk", "name", "size"]);

        let mut second = Inference::new(&v1);
        second.observe_sdk(&item(&[
            ("pk", s("ORG#2")),
            ("size", n("5.5")),
            ("name", s("x")),
            ("Name", s("a")),
        ]));
        second.observe_sdk(&item(&[("pk", s("USER#1"))]));
        let v2 = second.to_schemas();
        let org = &v2[0];
        let names: Vec<_> = org.columns.iter().map(|c| c.column.as_str()).collect();
        assert_eq!(
            names,
            ["pk", "name", "size", "name_2"],
            "existing names keep their meaning"
        );
        assert_eq!(org.columns[1].attribute, "Name");
        assert_eq!(
            org.columns[2].logical_type,
            LogicalType::Decimal {
                precision: 20,
                scale: 1
            }
        );
        assert_eq!(
            org.columns[1].logical_type,
            LogicalType::Text { max_bytes: 4 },
            "widths never shrink"
        );
        assert_eq!(v2[1].table, "user");
        assert!(narrowings(&v1, &v2).is_empty());
    }

    #[test]
    fn a_table_without_items_this_time_keeps_its_nullability() {
        let item = |pk: &str, x: Option<&str>| -> Item {
            let mut item: Item = [("pk".to_string(), s(pk))].into();
            if let Some(x) = x {
                item.insert("x".into(), s(x));
            }
            item
        };
        let mut both = Inference::new(&[]);
        both.observe_sdk(&item("A#1", Some("a")));
        both.observe_sdk(&item("B#1", Some("b")));
        let v1 = both.to_schemas();
        assert!(v1.iter().flat_map(|t| &t.columns).all(|c| !c.nullable));
        // A sample that only saw A says nothing about B: nothing changes.
        let mut only_a = Inference::new(&v1);
        only_a.observe_sdk(&item("A#2", Some("a")));
        let v2 = only_a.to_schemas();
        assert_eq!(v2, v1);
        // A B item without x is evidence: B's x becomes nullable, A's stays as it was.
        let mut b_without_x = Inference::new(&v2);
        b_without_x.observe_sdk(&item("B#2", None));
        let v3 = b_without_x.to_schemas();
        let nullable = |table: &str| -> Vec<bool> {
            let t = v3.iter().find(|t| t.table == table).unwrap();
            t.columns.iter().map(|c| c.nullable).collect()
        };
        assert_eq!(nullable("b"), [false, true]);
        assert_eq!(nullable("a"), [false, false]);
    }

    fn column(attribute: &str, logical_type: LogicalType, nullable: bool) -> Column {
        Column {
            attribute: attribute.into(),
            column: attribute.to_lowercase(),
            logical_type,
            nullable,
        }
    }

    fn table(name: &str, columns: Vec<Column>) -> DataSchema {
        DataSchema {
            format: FORMAT_VERSION,
            source_table: "t".into(),
            table: name.into(),
            rule: None,
            columns,
        }
    }

    #[test]
    fn narrowings_name_every_loss_and_ignore_widenings() {
        use LogicalType::*;
        let decimal = Decimal {
            precision: 9,
            scale: 2,
        };
        let previous = vec![
            table(
                "org",
                vec![
                    column("budget", decimal, false),
                    column("note", Text { max_bytes: 300 }, true),
                    column("seen", Text { max_bytes: 24 }, false),
                    column("extra", Json, false),
                    column("size", Bigint, false),
                    column("gone", Boolean, false),
                    column("Name", Text { max_bytes: 5 }, false),
                    column("short", Text { max_bytes: 100 }, false),
                ],
            ),
            table("old", vec![column("pk", Text { max_bytes: 3 }, false)]),
        ];
        let mut renamed = column("Name", Text { max_bytes: 5 }, false);
        renamed.column = "name_2".into();
        let next = vec![table(
            "org",
            vec![
                column("budget", Bigint, false),
                column("note", Text { max_bytes: 10 }, false),
                column("seen", Timestamp, false),
                column("extra", Text { max_bytes: 9 }, false),
                // Wider: never reported.
                column(
                    "size",
                    Decimal {
                        precision: 25,
                        scale: 3,
                    },
                    true,
                ),
                renamed,
                // Same warehouse width (VARCHAR(256)): not a narrowing.
                column("short", Text { max_bytes: 3 }, false),
            ],
        )];
        let found: Vec<String> = narrowings(&previous, &next)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            [
                "org.budget: decimal(9,2) -> bigint",
                "org.note: text(300) -> text(10)",
                "org.note: nullable -> not null",
                "org.seen: text(24) -> timestamp",
                "org.extra: json -> text(9)",
                "org.gone: dropped",
                "org.name: renamed to name_2",
                "old: table dropped",
            ]
        );
        assert!(narrowings(&next, &next).is_empty());
    }

    #[test]
    fn holds_follows_the_lattice() {
        use LogicalType::*;
        let d = |precision, scale| Decimal { precision, scale };
        assert!(holds(d(21, 2), Bigint));
        assert!(!holds(d(12, 2), Bigint), "bigint has 19 integer digits");
        assert!(holds(NumericText, d(38, 10)));
        assert!(!holds(d(38, 10), NumericText));
        assert!(holds(Json, Boolean));
        assert!(!holds(Boolean, Json));
        assert!(holds(Text { max_bytes: 40 }, Timestamp));
        assert!(!holds(Timestamp, Text { max_bytes: 40 }));
        assert!(holds(Text { max_bytes: 1 }, Text { max_bytes: 256 }));
        assert!(!holds(Text { max_bytes: 1 }, Text { max_bytes: 257 }));
    }

    #[test]
    fn evolution_never_narrows_whatever_the_data() {
        for seed in 0..60 {
            let (mut first, mut second) = (Vec::new(), Vec::new());
            for (i, v) in values(seed, 40).into_iter().enumerate() {
                let mut item = Item::new();
                item.insert("pk".into(), s(if i % 2 == 0 { "A#1" } else { "B#1" }));
                item.insert(format!("a{}", i % 5), v);
                if i < 20 {
                    first.push(item);
                } else {
                    second.push(item);
                }
            }
            let mut before = Inference::new(&[]);
            first.iter().for_each(|i| before.observe_sdk(i));
            let v1 = before.to_schemas();
            let mut after = Inference::new(&v1);
            second.iter().for_each(|i| after.observe_sdk(i));
            let v2 = after.to_schemas();
            let lost = narrowings(&v1, &v2);
            assert!(lost.is_empty(), "seed {seed}: {lost:?}");
        }
    }
}
