//! Comparing two sets of data-schemas: what a new set holds less of than the previous one.
//! Evolution (inference starting from the previous set) never narrows; inferring from scratch
//! (`infer-schema --allow-narrowing`) may, and every narrowing is reported with what it breaks.

use super::infer::Seen;
use super::{DataSchema, LogicalType};

/// One way a new set of data-schemas holds less than the previous one. Evolution
/// ([`Inference::to_schemas`] with `previous`) never produces any; inferring from scratch
/// (`infer-schema --allow-narrowing`) may.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Narrowing {
    pub table: String,
    /// The previous column name; empty when the whole table is concerned.
    pub column: String,
    pub change: Change,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The new type does not hold every value the previous one held.
    Type { from: LogicalType, to: LogicalType },
    /// The column was nullable and would no longer be.
    NotNull,
    /// The same attribute would get another column name.
    Renamed { to: String },
    /// The attribute would have no column any more.
    ColumnDropped,
    /// The table would not exist any more.
    TableDropped,
}

impl Narrowing {
    /// What would stop working, in an operator's words.
    pub fn consequence(&self) -> String {
        match &self.change {
            Change::Type { from, to } => format!(
                "values that fit {} but not {} would go to _extra (counted as drift) instead of this column, and queries expecting {} may fail",
                from.name(),
                to.name(),
                from.name()
            ),
            Change::NotNull => "an item without this attribute (or with NULL in it) would conflict with the column becoming NOT NULL".into(),
            Change::Renamed { to } => format!(
                "the column would be called {to}: queries, views and grants naming {} would break",
                self.column
            ),
            Change::ColumnDropped => "the column would disappear: its values would go to _extra and queries naming it would break".into(),
            Change::TableDropped => "the table would disappear at the next replace: its items would land in another table or _unclassified, and queries naming it would break".into(),
        }
    }
}

impl std::fmt::Display for Narrowing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match &self.change {
            Change::Type { from, to } => format!("{} -> {}", from.name(), to.name()),
            Change::NotNull => "nullable -> not null".into(),
            Change::Renamed { to } => format!("renamed to {to}"),
            Change::ColumnDropped => "dropped".into(),
            Change::TableDropped => "table dropped".into(),
        };
        if self.column.is_empty() {
            write!(f, "{}: {what}", self.table)
        } else {
            write!(f, "{}.{}: {what}", self.table, self.column)
        }
    }
}

/// True when every value a column of type `narrow` accepts is also accepted by `wide`. Text
/// widths count as the warehouse sees them (see [`super::varchar_width`]): two widths that round
/// to the same VARCHAR accept the same strings.
pub fn holds(wide: LogicalType, narrow: LogicalType) -> bool {
    match (wide, narrow) {
        (LogicalType::Text { max_bytes: w }, LogicalType::Text { max_bytes: n }) => {
            super::varchar_width(w) >= super::varchar_width(n)
        }
        _ => {
            Seen::from_type(wide)
                .join(Seen::from_type(narrow))
                .logical_type()
                == wide
        }
    }
}

/// Everything `next` holds less of than `previous`, matched by table name and attribute, in the
/// order of `previous`.
pub fn narrowings(previous: &[DataSchema], next: &[DataSchema]) -> Vec<Narrowing> {
    let mut out = Vec::new();
    for p in previous {
        let Some(n) = next.iter().find(|n| n.table == p.table) else {
            out.push(Narrowing {
                table: p.table.clone(),
                column: String::new(),
                change: Change::TableDropped,
            });
            continue;
        };
        for pc in &p.columns {
            let mut push = |change| {
                out.push(Narrowing {
                    table: p.table.clone(),
                    column: pc.column.clone(),
                    change,
                })
            };
            let Some(nc) = n.columns.iter().find(|c| c.attribute == pc.attribute) else {
                push(Change::ColumnDropped);
                continue;
            };
            if nc.column != pc.column {
                push(Change::Renamed {
                    to: nc.column.clone(),
                });
            }
            if !holds(nc.logical_type, pc.logical_type) {
                push(Change::Type {
                    from: pc.logical_type,
                    to: nc.logical_type,
                });
            }
            if pc.nullable && !nc.nullable {
                push(Change::NotNull);
            }
        }
    }
    out
}
