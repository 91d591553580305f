//! Classification and lossless conversion of scanned items into warehouse rows.
//!
//! Every item ends in exactly one place: a row of the first data-schema whose rule matches, a row
//! of `_unclassified` when none does, or a [`Rejection`] naming its key when some part of it has no
//! representation at all. Within a row, a value the column's type cannot hold exactly (a decimal
//! with too many digits, a string longer than the column's width, a string where a number was
//! expected…) goes to `_extra` with the attributes the schema does not know, and is counted as
//! drift. A DynamoDB `NULL` in a non-JSON column is also kept in `_extra` (as `null`), so that "set
//! to NULL" stays distinct from "absent"; so is a string that is exactly the CSV NULL marker `\N`.
//!
//! What the run's warehouse cannot hold at all (its [`Limits`]: a string longer than its widest
//! text, a JSON value with a string longer than JSON strings may be, a JSON value too large for
//! one field) is written to `_overflow` as bytes instead, keyed by the table, the item's key and
//! the attribute, and counted as drift too. Nothing is truncated or rounded.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use crate::schema::drift::{
    DriftCount, DriftKey, DriftReason, Rejection, TableDrift, EXAMPLE_KEYS,
};
use crate::schema::limits::{overflow_schema, OverflowKind, NULL_MARKER, OVERFLOW_CHUNK_BYTES};
use crate::schema::{varchar_width, DataSchema, Limits, LogicalType, SchemaSet};
use crate::value::decimal::{self, Decimal};
use crate::value::json::{self, item_key};
use crate::value::time::{is_timestamp, to_utc};
use crate::value::{ItemView, Value};

/// One CSV row: one field per column, `None` is SQL NULL.
pub type Fields<'a> = Vec<Option<Cow<'a, str>>>;

/// One converted item: its table (index into [`Transformer::tables`]) and one field per column,
/// `_extra` last, plus the `_overflow` rows of values no column could hold.
#[derive(Debug)]
pub struct Row<'a> {
    pub table: usize,
    pub fields: Fields<'a>,
    /// Rows for the `_overflow` table (index [`Transformer::overflow_table`]).
    pub overflow: Vec<Fields<'static>>,
}

struct TableLayout {
    schema: DataSchema,
    /// Column index by attribute name. foldhash (still seeded per process) rather than SipHash:
    /// this lookup runs for every attribute of every item.
    column_of: HashMap<String, usize, foldhash::fast::RandomState>,
    /// Per column: whether it holds a key attribute.
    is_key: Vec<bool>,
}

/// Classifies and converts items of one source table. Not shared between threads: each segment
/// worker owns one and its drift counters.
pub struct Transformer {
    tables: Vec<TableLayout>,
    key_attributes: Vec<String>,
    drift: Vec<BTreeMap<DriftKey, DriftCount>>,
    catch_all: Option<usize>,
    limits: Limits,
}

/// Why an item was not converted into a row of one table.
enum Unconverted {
    Rejected(Rejection),
    /// The table's typed column for this key attribute cannot hold the item's value.
    KeyNotHeld(String),
}

/// A value bound for `_overflow`: its attribute, what its bytes are, and the bytes.
struct Overflowed<'a> {
    attribute: &'a str,
    kind: OverflowKind,
    bytes: Cow<'a, [u8]>,
}

impl Transformer {
    /// `schemas` in classification order; `_unclassified` is added as the last table that takes
    /// items, and `_overflow` after it. Values are shaped by `limits` (the run's dialect).
    pub fn new(schemas: &SchemaSet, key_attributes: &[String], limits: &Limits) -> Self {
        let mut all: Vec<DataSchema> = schemas.schemas.clone();
        all.push(crate::schema::unclassified_schema(
            &schemas.source_table,
            key_attributes,
        ));
        all.push(overflow_schema(&schemas.source_table));
        let tables: Vec<TableLayout> = all
            .into_iter()
            .map(|schema| TableLayout {
                column_of: schema
                    .columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.attribute.clone(), i))
                    .collect(),
                is_key: schema
                    .columns
                    .iter()
                    .map(|c| key_attributes.contains(&c.attribute))
                    .collect(),
                schema,
            })
            .collect();
        let catch_all = tables
            .iter()
            .take(tables.len() - 2)
            .position(|t| t.schema.rule.is_none());
        Transformer {
            drift: vec![BTreeMap::new(); tables.len()],
            tables,
            key_attributes: key_attributes.to_vec(),
            catch_all,
            limits: *limits,
        }
    }

    /// The schemas of every output table: the data-schemas, `_unclassified`, `_overflow`.
    pub fn tables(&self) -> impl Iterator<Item = &DataSchema> {
        self.tables.iter().map(|t| &t.schema)
    }

    pub fn table_count(&self) -> usize {
        self.tables.len()
    }

    /// The index of `_unclassified`.
    fn unclassified(&self) -> usize {
        self.tables.len() - 2
    }

    /// The index of `_overflow`.
    pub fn overflow_table(&self) -> usize {
        self.tables.len() - 1
    }

    /// Drift counters so far, by table name (tables without drift are left out).
    pub fn drift(&self) -> BTreeMap<String, TableDrift> {
        self.tables
            .iter()
            .zip(&self.drift)
            .filter(|(_, d)| !d.is_empty())
            .map(|(t, d)| {
                let entries: TableDrift = d.iter().map(|(key, count)| count.entry(key)).collect();
                (t.schema.table.clone(), entries)
            })
            .collect()
    }

    /// Takes over the drift counted before a checkpoint (a resumed segment), so the final
    /// counts cover the whole segment.
    pub fn restore_drift(&mut self, drift: &BTreeMap<String, TableDrift>) {
        for (layout, counters) in self.tables.iter().zip(self.drift.iter_mut()) {
            let Some(entries) = drift.get(&layout.schema.table) else {
                continue;
            };
            for e in entries {
                let key = DriftKey {
                    attribute: e.attribute.clone(),
                    reason: e.reason,
                };
                counters.entry(key).or_default().add(e.count, &e.examples);
            }
        }
    }

    /// Which table an item belongs to: the first rule that matches, else the catch-all table,
    /// else `_unclassified`.
    pub fn classify(&self, item: &ItemView) -> usize {
        // Rules nearly always test the same one or two attributes (the key): look each up once.
        let mut looked_up: [Option<(&str, Option<&Value>)>; 2] = [None, None];
        for (i, t) in self.tables.iter().enumerate() {
            let Some(rule) = &t.schema.rule else { continue };
            let matched = rule.matches_with(|name| {
                if let Some((_, value)) = looked_up.iter().flatten().find(|(n, _)| *n == name) {
                    return *value;
                }
                let value = item.get(name);
                // Keep the first two attributes asked for; others are looked up each time.
                if let Some(slot) = looked_up.iter_mut().find(|s| s.is_none()) {
                    *slot = Some((name, value));
                }
                value
            });
            if matched {
                return i;
            }
        }
        self.catch_all.unwrap_or(self.unclassified())
    }

    /// The item's key attributes as JSON (for reports and error messages).
    pub fn item_key(&self, item: &ItemView) -> String {
        item_key(item, &self.key_attributes)
    }

    /// Converts one item into a row of its table. An item whose key its table's typed key
    /// columns cannot hold (a string with U+0000, or exactly the CSV NULL marker `\N`: both
    /// valid DynamoDB keys) goes to `_unclassified`, whose key columns are JSON and hold any key,
    /// so that every row can be found by its key again (increments delete and replace rows by
    /// key); it is counted as drift of the table it was classified into.
    pub fn convert<'a>(&mut self, item: &'a ItemView<'_>) -> Result<Row<'a>, Rejection> {
        let table = self.classify(item);
        match self.convert_into(table, item) {
            Ok(row) => Ok(row),
            Err(Unconverted::Rejected(r)) => Err(r),
            Err(Unconverted::KeyNotHeld(attribute)) => {
                let key = self.item_key(item);
                let entry = self.drift[table]
                    .entry(DriftKey {
                        attribute,
                        reason: DriftReason::KeyNotHeld,
                    })
                    .or_default();
                entry.count += 1;
                if entry.examples.len() < EXAMPLE_KEYS {
                    entry.examples.push(key);
                }
                match self.convert_into(self.unclassified(), item) {
                    Ok(row) => Ok(row),
                    Err(Unconverted::Rejected(r)) => Err(r),
                    Err(Unconverted::KeyNotHeld(attribute)) => Err(self.reject(
                        item,
                        format!("key attribute {attribute} cannot be held even as JSON"),
                    )),
                }
            }
        }
    }

    fn convert_into<'a>(
        &mut self,
        table: usize,
        item: &'a ItemView<'_>,
    ) -> Result<Row<'a>, Unconverted> {
        let limits = self.limits;
        let layout = &self.tables[table];
        let ncols = layout.schema.columns.len();
        let mut fields: Fields<'a> = vec![None; ncols + 1];
        let mut extra: Vec<(&'a str, &'a Value)> = Vec::new();
        let mut drifted: Vec<(&str, DriftReason)> = Vec::new();
        let mut overflowed: Vec<Overflowed<'a>> = Vec::new();
        for (name, value) in item.iter() {
            if !limits.text_fits(name.len()) {
                return Err(Unconverted::Rejected(self.reject(
                    item,
                    format!(
                        "attribute name of {} bytes (starting {:?}) is longer than {} allows ({} bytes)",
                        name.len(),
                        name.chars().take(40).collect::<String>(),
                        limits.dialect,
                        limits.max_text_bytes.unwrap_or(u32::MAX)
                    ),
                )));
            }
            match layout.column_of.get(name) {
                Some(&i) => {
                    let column = &layout.schema.columns[i];
                    match convert_value(value, column.logical_type, name, &limits) {
                        Ok(Some(text)) => fields[i] = Some(text),
                        _ if layout.is_key[i] => {
                            return Err(Unconverted::KeyNotHeld(name.to_string()))
                        }
                        Ok(None) => extra.push((name, value)),
                        Err(Misfit::Drift(reason)) => {
                            extra.push((name, value));
                            drifted.push((name, reason));
                        }
                        Err(Misfit::Overflow(kind, bytes)) => {
                            overflowed.push(Overflowed {
                                attribute: name,
                                kind,
                                bytes,
                            });
                            drifted.push((name, DriftReason::Overflow));
                        }
                        Err(Misfit::Unrepresentable(e)) => {
                            return Err(Unconverted::Rejected(self.reject(item, e.to_string())))
                        }
                    }
                }
                None => {
                    extra.push((name, value));
                    if table != self.unclassified() {
                        drifted.push((name, DriftReason::NotInSchema));
                    }
                }
            }
        }
        if !extra.is_empty() {
            let text = extra_object(extra, &limits, &mut overflowed, &mut drifted)
                .map_err(|e| Unconverted::Rejected(self.reject(item, e.to_string())))?;
            fields[ncols] = text.map(Cow::Owned);
        }
        if let Some(max) = limits.max_row_bytes {
            let size = csv_row_bytes(&fields);
            if size > max as usize {
                return Err(Unconverted::Rejected(self.reject(
                    item,
                    format!("its row would be {size} bytes of CSV, more than {} loads in one row ({max} bytes)", limits.dialect),
                )));
            }
        }
        let overflow = match overflowed.is_empty() {
            true => Vec::new(),
            false => {
                let key = self.item_key(item);
                overflow_rows(&layout.schema.table, &key, &overflowed, &limits)
            }
        };
        if !drifted.is_empty() {
            let key = self.item_key(item);
            let counters = &mut self.drift[table];
            for (attribute, reason) in drifted {
                let entry = counters
                    .entry(DriftKey {
                        attribute: attribute.to_string(),
                        reason,
                    })
                    .or_default();
                entry.count += 1;
                if entry.examples.len() < EXAMPLE_KEYS {
                    entry.examples.push(key.clone());
                }
            }
        }
        Ok(Row {
            table,
            fields,
            overflow,
        })
    }

    /// The key of `keys` (an item's key attributes) as table `table`'s key columns hold it, in
    /// key order: what finds the item's row in that table. `None`: the table's key columns cannot
    /// hold this key, so no row of the table has it (such items are in `_unclassified`, see
    /// [`Transformer::convert`]). An error says what is wrong with the change's key.
    pub fn key_fields<'a>(
        &self,
        table: usize,
        keys: &'a ItemView<'_>,
    ) -> Result<Option<Fields<'a>>, String> {
        let layout = &self.tables[table];
        let mut out = Vec::with_capacity(self.key_attributes.len());
        for attribute in &self.key_attributes {
            let (name, value) = keys
                .iter()
                .find(|(name, _)| *name == attribute.as_str())
                .ok_or_else(|| format!("the change's key has no attribute {attribute}"))?;
            let column = layout
                .column_of
                .get(attribute.as_str())
                .map(|&i| &layout.schema.columns[i])
                .ok_or_else(|| {
                    format!(
                        "table {} has no column for key attribute {attribute}",
                        layout.schema.table
                    )
                })?;
            match convert_value(value, column.logical_type, name, &self.limits) {
                Ok(Some(text)) => out.push(Some(text)),
                _ => return Ok(None),
            }
        }
        Ok(Some(out))
    }

    fn reject(&self, item: &ItemView, reason: String) -> Rejection {
        Rejection {
            key: self.item_key(item),
            reason,
        }
    }
}

/// The `_extra` JSON object of `extra` (`None` when every attribute overflowed). Without JSON
/// limits it is written in one go; otherwise each attribute is checked against them, and
/// attributes are moved to `_overflow`, largest first, until the object fits.
fn extra_object<'a>(
    extra: Vec<(&'a str, &'a Value)>,
    limits: &Limits,
    overflowed: &mut Vec<Overflowed<'a>>,
    drifted: &mut Vec<(&'a str, DriftReason)>,
) -> Result<Option<String>, json::JsonError> {
    if limits.max_json_bytes.is_none() && limits.max_json_string_bytes.is_none() {
        let mut out = Vec::new();
        json::write_object(&mut out, extra.into_iter(), "")?;
        return Ok(Some(
            String::from_utf8(out).expect("JSON writer emits UTF-8"),
        ));
    }
    let mut kept: Vec<(&'a str, String, &'a Value)> = Vec::with_capacity(extra.len());
    for (name, value) in extra {
        let text = json::to_json(value, name)?;
        let longest = json::key_length(name).max(json::longest_string(value));
        if limits.json_fits(text.len(), longest) {
            kept.push((name, text, value));
        } else {
            overflowed.push(to_overflow(name, value, text));
            drifted.push((name, DriftReason::Overflow));
        }
    }
    // `{`, `}`, and per entry a quoted key, `": "` and `", "` (keys may need escapes: a bound, rounded up).
    let object_len = |kept: &[(&str, String, &Value)]| -> usize {
        2 + kept
            .iter()
            .map(|(k, text, _)| text.len() + 2 * k.len() + 6)
            .sum::<usize>()
    };
    while !kept.is_empty() && !limits.json_fits(object_len(&kept), 0) {
        let largest = (0..kept.len())
            .max_by_key(|&i| kept[i].1.len())
            .expect("not empty");
        let (name, text, value) = kept.swap_remove(largest);
        overflowed.push(to_overflow(name, value, text));
        drifted.push((name, DriftReason::Overflow));
    }
    if kept.is_empty() {
        return Ok(None);
    }
    let mut texts: Vec<(&str, String)> = kept.into_iter().map(|(k, t, _)| (k, t)).collect();
    let mut out = Vec::new();
    json::write_object_of_texts(&mut out, &mut texts)?;
    Ok(Some(
        String::from_utf8(out).expect("JSON writer emits UTF-8"),
    ))
}

/// A value for `_overflow` that was bound for JSON (`_extra` or a JSON column): strings and
/// binary keep their own bytes, anything else its tagged JSON text.
fn to_overflow<'a>(attribute: &'a str, value: &'a Value, json_text: String) -> Overflowed<'a> {
    let (kind, bytes) = match value {
        Value::S(s) if !s.contains('\0') => (OverflowKind::String, Cow::Borrowed(s.as_bytes())),
        Value::B(b) => (OverflowKind::Binary, Cow::Borrowed(b.as_ref())),
        _ => (OverflowKind::Json, Cow::Owned(json_text.into_bytes())),
    };
    Overflowed {
        attribute,
        kind,
        bytes,
    }
}

/// The `_overflow` rows of one item: each value cut into pieces of at most
/// [`OVERFLOW_CHUNK_BYTES`] (an empty value is one empty piece).
fn overflow_rows(
    table: &str,
    key: &str,
    values: &[Overflowed],
    limits: &Limits,
) -> Vec<Fields<'static>> {
    let mut rows = Vec::new();
    for v in values {
        let pieces: Vec<&[u8]> = match v.bytes.is_empty() {
            true => vec![&[][..]],
            false => v.bytes.chunks(OVERFLOW_CHUNK_BYTES).collect(),
        };
        for (chunk, piece) in pieces.into_iter().enumerate() {
            rows.push(vec![
                Some(Cow::Owned(table.to_string())),
                Some(Cow::Owned(key.to_string())),
                Some(Cow::Owned(v.attribute.to_string())),
                Some(Cow::Owned(chunk.to_string())),
                Some(Cow::Borrowed(v.kind.name())),
                Some(Cow::Owned(limits.binary_text.encode(piece))),
            ]);
        }
    }
    rows
}

/// The bytes `fields` take as one CSV row: each non-NULL field quoted with its quotes doubled,
/// NULL as the two-byte marker, a separator or newline after each field.
fn csv_row_bytes(fields: &[Option<Cow<str>>]) -> usize {
    fields
        .iter()
        .map(|f| match f {
            Some(text) => text.len() + 3 + memchr::memchr_iter(b'"', text.as_bytes()).count(),
            None => NULL_MARKER.len() + 1,
        })
        .sum()
}

/// Why a value does not go into its column.
enum Misfit<'a> {
    /// It does not fit the column's type; it goes to `_extra` and is counted as drift.
    Drift(DriftReason),
    /// The warehouse cannot hold it in any column: it goes to `_overflow` as bytes.
    Overflow(OverflowKind, Cow<'a, [u8]>),
    /// It has no representation at all; the item is rejected.
    Unrepresentable(json::JsonError),
}

/// Text for one column value. `Ok(None)` means "keep in `_extra` without counting drift" (an
/// explicit NULL in a non-JSON column).
fn convert_value<'a>(
    value: &'a Value,
    logical_type: LogicalType,
    name: &'a str,
    limits: &Limits,
) -> Result<Option<Cow<'a, str>>, Misfit<'a>> {
    use Value as V;
    if let (V::Null, t) = (value, logical_type) {
        return if t == LogicalType::Json {
            Ok(Some(Cow::Borrowed("null")))
        } else {
            Ok(None)
        };
    }
    Ok(Some(match (logical_type, value) {
        // Fast paths: a number already in canonical plain form is its own column text, which
        // spares parsing it into digits and rendering it back (most numbers DynamoDB returns).
        (LogicalType::Bigint, V::N(n)) if decimal::plain_integer_fits_i64(n) => {
            Cow::Borrowed(n.as_ref())
        }
        (LogicalType::Decimal { precision, scale }, V::N(n))
            if decimal::plain_fits_decimal(n, precision, scale) =>
        {
            Cow::Borrowed(n.as_ref())
        }
        (LogicalType::NumericText, V::N(n)) if decimal::canonical_plain(n).is_some() => {
            Cow::Borrowed(n.as_ref())
        }
        (LogicalType::Bigint, V::N(n)) => {
            let d = Decimal::parse(n).map_err(|_| Misfit::Drift(DriftReason::NotANumber))?;
            let v = d
                .to_i64()
                .ok_or(Misfit::Drift(DriftReason::DoesNotFitBigint))?;
            Cow::Owned(v.to_string())
        }
        (LogicalType::Decimal { precision, scale }, V::N(n)) => {
            let d = Decimal::parse(n).map_err(|_| Misfit::Drift(DriftReason::NotANumber))?;
            if d.scale() > scale || d.integer_digits() > precision - scale {
                return Err(Misfit::Drift(DriftReason::DoesNotFitDecimal));
            }
            Cow::Owned(d.to_plain())
        }
        (LogicalType::NumericText, V::N(n)) => {
            Decimal::parse(n).map_err(|_| Misfit::Drift(DriftReason::NotANumber))?;
            Cow::Borrowed(n.as_ref())
        }
        (LogicalType::Text { max_bytes }, V::S(s)) => {
            if s.contains('\0') {
                return Err(Misfit::Drift(DriftReason::ContainsNul));
            }
            if s.as_ref() == NULL_MARKER {
                // Exactly the CSV NULL marker: kept in `_extra` so no warehouse can mistake it.
                return Ok(None);
            }
            if !limits.text_fits(s.len()) {
                return Err(Misfit::Overflow(
                    OverflowKind::String,
                    Cow::Borrowed(s.as_bytes()),
                ));
            }
            // Bounded text columns (VARCHAR) are as wide as the data-schema says.
            if limits.max_text_bytes.is_some() && s.len() > varchar_width(max_bytes) as usize {
                return Err(Misfit::Drift(DriftReason::TooLong));
            }
            Cow::Borrowed(s.as_ref())
        }
        (LogicalType::Timestamp, V::S(s)) => {
            if !is_timestamp(s) {
                return Err(Misfit::Drift(DriftReason::NotATimestamp));
            }
            to_utc(s)
        }
        (LogicalType::Boolean, V::Bool(b)) => Cow::Borrowed(if *b { "true" } else { "false" }),
        (LogicalType::Binary, V::B(b)) => {
            if b.len() > limits.max_binary_bytes as usize {
                return Err(Misfit::Overflow(OverflowKind::Binary, Cow::Borrowed(b)));
            }
            Cow::Owned(limits.binary_text.encode(b))
        }
        (LogicalType::Json, v) => {
            let text = json::to_json(v, name).map_err(Misfit::Unrepresentable)?;
            if !limits.json_fits(text.len(), json::longest_string(v)) {
                let o = to_overflow(name, v, text);
                return Err(Misfit::Overflow(o.kind, o.bytes));
            }
            Cow::Owned(text)
        }
        _ => return Err(Misfit::Drift(DriftReason::OtherType)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Column, MatchRule, FORMAT_VERSION};
    use crate::testkit::decode::{
        as_instants, decode_object, decode_overflow, decode_row, items_equal,
    };
    use crate::value::Item;
    use crate::warehouse::postgres::limits::LIMITS as POSTGRES;
    use crate::warehouse::redshift::limits::LIMITS as REDSHIFT;
    use aws_sdk_dynamodb::primitives::Blob;
    use aws_sdk_dynamodb::types::AttributeValue;

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.into())
    }
    fn n(v: &str) -> AttributeValue {
        AttributeValue::N(v.into())
    }

    fn col(attribute: &str, column: &str, t: LogicalType) -> Column {
        Column {
            attribute: attribute.into(),
            column: column.into(),
            logical_type: t,
            nullable: true,
        }
    }

    fn schemas() -> SchemaSet {
        let org = DataSchema {
            format: FORMAT_VERSION,
            source_table: "platform".into(),
            table: "organization".into(),
            rule: Some(MatchRule::prefix("pk", "ORG#")),
            columns: vec![
                col("pk", "pk", LogicalType::Text { max_bytes: 20 }),
                col("employees", "employees", LogicalType::Bigint),
                col(
                    "budget",
                    "budget",
                    LogicalType::Decimal {
                        precision: 6,
                        scale: 2,
                    },
                ),
                col("created", "created", LogicalType::Timestamp),
                col("active", "active", LogicalType::Boolean),
                col("logo", "logo", LogicalType::Binary),
                col("tags", "tags", LogicalType::Json),
                col("note", "note", LogicalType::Text { max_bytes: 10 }),
            ],
        };
        SchemaSet::new("platform", vec![org], "test").unwrap()
    }

    fn item(entries: &[(&str, AttributeValue)]) -> Item {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn owned(fields: &[Option<Cow<str>>]) -> Vec<Option<String>> {
        fields
            .iter()
            .map(|f| f.as_ref().map(|c| c.to_string()))
            .collect()
    }

    /// The item back from its row and its `_overflow` rows, timestamps as instants; the source
    /// item, timestamps as instants, to compare it with.
    fn round_trip(t: &mut Transformer, it: &Item) -> (Item, Item) {
        let view = ItemView::from_sdk(it);
        let key = t.item_key(&view);
        let row = t.convert(&view).unwrap();
        let schema = t.tables().nth(row.table).unwrap().clone();
        let mut back = decode_row(&schema, &owned(&row.fields)).unwrap();
        let overflow: Vec<_> = row.overflow.iter().map(|r| owned(r)).collect();
        for ((table, k), attributes) in decode_overflow(&overflow).unwrap() {
            assert_eq!(
                (table.as_str(), k.as_str()),
                (schema.table.as_str(), key.as_str())
            );
            for (name, value) in attributes {
                assert!(back.insert(name.clone(), value).is_none(), "{name} twice");
            }
        }
        (as_instants(&back, &schema), as_instants(it, &schema))
    }

    fn survives(t: &mut Transformer, it: &Item) -> bool {
        let (back, source) = round_trip(t, it);
        items_equal(&back, &source)
    }

    #[test]
    fn classifies_by_prefix_and_falls_back_to_unclassified() {
        let t = Transformer::new(&schemas(), &["pk".into()], &POSTGRES);
        assert_eq!(
            t.classify(&ItemView::from_sdk(&item(&[("pk", s("ORG#1"))]))),
            0
        );
        assert_eq!(
            t.classify(&ItemView::from_sdk(&item(&[("pk", s("USER#1"))]))),
            1
        );
        assert_eq!(t.classify(&ItemView::from_sdk(&item(&[("pk", n("1"))]))), 1);
        assert_eq!(t.tables().nth(1).unwrap().table, "_unclassified");
    }

    #[test]
    fn rules_on_several_attributes_are_tried_most_specific_first() {
        use crate::schema::Condition;
        let table = |name: &str, rule: Option<MatchRule>| DataSchema {
            format: FORMAT_VERSION,
            source_table: "shop".into(),
            table: name.into(),
            rule,
            columns: vec![col("pk", "pk", LogicalType::Text { max_bytes: 20 })],
        };
        // Given in the least helpful order: the set sorts them.
        let set = SchemaSet::new(
            "shop",
            vec![
                table("rest", None),
                table("user", Some(MatchRule::prefix("type", "User"))),
                table("customer", Some(MatchRule::prefix("pk", "CUSTOMER#"))),
                table(
                    "order",
                    Some(MatchRule::of(vec![
                        Condition::prefix("pk", "CUSTOMER#"),
                        Condition::prefix("sk", "#ORDER#"),
                    ])),
                ),
                table("settings", Some(MatchRule::equals("type", "UserSettings"))),
            ],
            "test",
        )
        .unwrap();
        let t = Transformer::new(&set, &["pk".into(), "sk".into()], &POSTGRES);
        let table_of = |pairs: &[(&str, &str)]| -> String {
            let it: Item = pairs.iter().map(|(k, v)| (k.to_string(), s(v))).collect();
            let index = t.classify(&ItemView::from_sdk(&it));
            t.tables().nth(index).unwrap().table.clone()
        };
        assert_eq!(
            table_of(&[("pk", "CUSTOMER#1"), ("sk", "#ORDER#7")]),
            "order"
        );
        assert_eq!(
            table_of(&[("pk", "CUSTOMER#1"), ("sk", "CUSTOMER#1")]),
            "customer"
        );
        // The third attribute asked for is past the lookup cache and still read.
        assert_eq!(
            table_of(&[("pk", "X"), ("sk", "Y"), ("type", "UserSettings")]),
            "settings"
        );
        assert_eq!(
            table_of(&[("pk", "X"), ("sk", "Y"), ("type", "User")]),
            "user"
        );
        assert_eq!(table_of(&[("pk", "X"), ("type", "Other")]), "rest");
    }

    #[test]
    fn fitting_values_land_in_their_columns() {
        let mut t = Transformer::new(&schemas(), &["pk".into()], &POSTGRES);
        let it = item(&[
            ("pk", s("ORG#1")),
            ("employees", n("-9223372036854775808")),
            ("budget", n("1234.5")),
            ("created", s("2024-02-29T23:59:59.123456+05:30")),
            ("active", AttributeValue::Bool(false)),
            ("logo", AttributeValue::B(Blob::new(vec![0xff, 0x00]))),
            ("tags", AttributeValue::Ss(vec!["a".into()])),
            ("note", s("")),
        ]);
        let view = ItemView::from_sdk(&it);
        let row = t.convert(&view).unwrap();
        let f: Vec<Option<&str>> = row.fields.iter().map(|f| f.as_deref()).collect();
        assert_eq!(
            f,
            [
                Some("ORG#1"),
                Some("-9223372036854775808"),
                Some("1234.5"),
                Some("2024-02-29T18:29:59.123456Z"),
                Some("false"),
                Some("\\xff00"),
                Some(r#"{"$ss": ["a"]}"#),
                Some(""),
                None
            ]
        );
        assert!(t.drift().is_empty());
        assert!(survives(&mut t, &it));
    }

    #[test]
    fn misfits_go_to_extra_and_are_counted() {
        let mut t = Transformer::new(&schemas(), &["pk".into()], &REDSHIFT);
        let it = item(&[
            ("pk", s("ORG#2")),
            ("employees", n("9223372036854775808")),
            ("budget", n("12345.5")),
            ("created", s("yesterday")),
            (
                "note",
                s("longer than two hundred and fifty six bytes "
                    .repeat(7)
                    .as_str()),
            ),
            ("surprise", n("1")),
            ("active", AttributeValue::Null(true)),
        ]);
        let view = ItemView::from_sdk(&it);
        let row = t.convert(&view).unwrap();
        assert!(row.fields[..8].iter().skip(1).all(Option::is_none));
        let extra = decode_object(row.fields[8].as_deref().unwrap()).unwrap();
        assert_eq!(extra.len(), 6);
        let drift = t.drift();
        let org = &drift["organization"];
        let entry = |attribute: &str, reason| {
            org.iter()
                .find(|e| e.attribute == attribute && e.reason == reason)
                .unwrap_or_else(|| panic!("no drift entry {attribute} {reason:?}: {org:?}"))
        };
        assert_eq!(entry("surprise", DriftReason::NotInSchema).count, 1);
        assert_eq!(
            entry("employees", DriftReason::DoesNotFitBigint).examples,
            [r#"{"pk":"ORG#2"}"#]
        );
        assert!(
            !org.iter().any(|e| e.attribute == "active"),
            "explicit NULL is not drift"
        );
        assert!(survives(&mut t, &it));
    }

    #[test]
    fn unclassified_items_keep_their_key_and_everything_else() {
        let mut t = Transformer::new(&schemas(), &["pk".into(), "sk".into()], &POSTGRES);
        let it = item(&[("pk", s("THING#1")), ("sk", n("5")), ("x", s("y"))]);
        let view = ItemView::from_sdk(&it);
        let row = t.convert(&view).unwrap();
        assert_eq!(row.table, 1);
        assert_eq!(row.fields[0].as_deref(), Some("\"THING#1\""));
        assert_eq!(row.fields[1].as_deref(), Some("5"));
        assert!(survives(&mut t, &it));
        assert!(
            t.drift().is_empty(),
            "unclassified attributes are not drift"
        );
    }

    #[test]
    fn keys_no_typed_column_holds_go_to_unclassified_and_are_found_again() {
        for dialect in [&POSTGRES, &REDSHIFT] {
            let mut t = Transformer::new(&schemas(), &["pk".into()], dialect);
            for pk in ["ORG#\0nul", "\\N"] {
                let it = item(&[("pk", s(pk)), ("employees", n("3"))]);
                let view = ItemView::from_sdk(&it);
                let row = t.convert(&view).unwrap();
                assert_eq!(row.table, t.unclassified(), "{pk:?}");
                assert!(
                    row.fields[0].is_some(),
                    "{pk:?}: the key is in its JSON column"
                );
                assert!(survives(&mut t, &it), "{pk:?}");
                // What an increment's key rows use: no row of `organization` holds this key,
                // `_unclassified` does.
                assert_eq!(t.key_fields(0, &view).unwrap(), None, "{pk:?}");
                assert_eq!(
                    t.key_fields(t.unclassified(), &view).unwrap().unwrap(),
                    row.fields[..1].to_vec(),
                    "{pk:?}"
                );
            }
            // Counted as drift of the table the item was classified into (`\N` is no
            // organization's key at all, so it is not).
            let mut fresh = Transformer::new(&schemas(), &["pk".into()], dialect);
            for pk in ["ORG#\0nul", "\\N"] {
                fresh
                    .convert(&ItemView::from_sdk(&item(&[("pk", s(pk))])))
                    .unwrap();
            }
            let drift = fresh.drift();
            let entry = drift["organization"]
                .iter()
                .find(|e| e.reason == DriftReason::KeyNotHeld)
                .expect("counted as drift");
            assert_eq!((entry.attribute.as_str(), entry.count), ("pk", 1));
            assert_eq!(entry.examples, [r#"{"pk":{"$s64":"T1JHIwBudWw="}}"#]);
            // An ordinary key stays in its table.
            let it = item(&[("pk", s("ORG#1"))]);
            assert_eq!(t.convert(&ItemView::from_sdk(&it)).unwrap().table, 0);
        }
    }

    #[test]
    fn unrepresentable_items_are_rejected_by_key() {
        let mut t = Transformer::new(&schemas(), &["pk".into()], &POSTGRES);
        let mut inner = HashMap::new();
        inner.insert("bad\0".to_string(), s("x"));
        let it = item(&[("pk", s("ORG#3")), ("odd", AttributeValue::M(inner))]);
        let r = t.convert(&ItemView::from_sdk(&it)).unwrap_err();
        assert_eq!(r.key, r#"{"pk":"ORG#3"}"#);
        assert!(r.reason.contains("U+0000"), "{}", r.reason);
    }

    #[test]
    fn the_null_marker_string_goes_to_extra_without_drift() {
        let mut t = Transformer::new(&schemas(), &["pk".into()], &POSTGRES);
        let it = item(&[("pk", s("ORG#5")), ("note", s("\\N"))]);
        let view = ItemView::from_sdk(&it);
        let row = t.convert(&view).unwrap();
        assert!(row.fields[7].is_none());
        assert!(row.fields[8].as_deref().unwrap().contains("note"));
        assert!(t.drift().is_empty());
        assert!(survives(&mut t, &it));
    }

    #[test]
    fn strings_with_nul_are_kept_losslessly() {
        let mut t = Transformer::new(&schemas(), &["pk".into()], &POSTGRES);
        let it = item(&[("pk", s("ORG#4")), ("note", s("a\0b"))]);
        assert!(survives(&mut t, &it));
    }

    /// The Redshift limits that matter for an item of at most 400 KB: strings over 65,535 bytes
    /// anywhere, and JSON values over 1,000,000 bytes.
    #[test]
    fn what_redshift_cannot_hold_goes_to_overflow_and_comes_back_whole() {
        let long = "x".repeat(300_000);
        let mut inner = HashMap::new();
        inner.insert("body".to_string(), s(&"y".repeat(70_000)));
        let medium = |c: char| s(&c.to_string().repeat(60_000));
        let mut it = item(&[
            ("pk", s("ORG#9")),
            ("note", s(&long)),
            ("tags", AttributeValue::M(inner)),
            ("surprise", s(&"z".repeat(65_536))),
            ("logo", AttributeValue::B(Blob::new(vec![0xab; 400_000]))),
        ]);
        // Twenty strings that each fit SUPER but together pass 1,000,000 bytes.
        for (i, c) in ('a'..='t').enumerate() {
            it.insert(format!("m{i:02}"), medium(c));
        }
        let mut t = Transformer::new(&schemas(), &["pk".into()], &REDSHIFT);
        let view = ItemView::from_sdk(&it);
        let row = t.convert(&view).unwrap();
        let kinds: Vec<(&str, &str)> = row
            .overflow
            .iter()
            .map(|r| (r[2].as_deref().unwrap(), r[4].as_deref().unwrap()))
            .collect();
        // 300,000 bytes are two pieces of 256 KiB at most.
        assert_eq!(kinds.iter().filter(|k| **k == ("note", "S")).count(), 2);
        assert!(kinds.contains(&("tags", "json")), "{kinds:?}");
        assert!(kinds.contains(&("surprise", "S")), "{kinds:?}");
        assert!(row
            .overflow
            .iter()
            .all(|r| r[0].as_deref() == Some("organization")
                && r[1].as_deref() == Some(r#"{"pk":"ORG#9"}"#)));
        // The binary column holds 400 KB as hex.
        assert_eq!(row.fields[5].as_deref().map(str::len), Some(800_000));
        let extra = row.fields[8].as_deref().unwrap();
        assert!(extra.len() <= 1_000_000, "_extra has {} bytes", extra.len());
        let moved = kinds.iter().filter(|k| k.0.starts_with('m')).count();
        assert!(moved >= 4, "only {moved} medium strings moved");
        let drift = &t.drift()["organization"];
        assert!(drift
            .iter()
            .any(|e| e.attribute == "note" && e.reason == DriftReason::Overflow));
        assert!(survives(&mut t, &it));

        // PostgreSQL holds all of it in its columns and `_extra`.
        let mut pg = Transformer::new(&schemas(), &["pk".into()], &POSTGRES);
        let row = pg.convert(&view).unwrap();
        assert!(row.overflow.is_empty());
        assert_eq!(row.fields[7].as_deref().map(str::len), Some(300_000));
        assert!(survives(&mut pg, &it));
    }

    #[test]
    fn a_row_too_large_for_the_warehouse_is_rejected_by_key() {
        let tiny = Limits {
            max_row_bytes: Some(1000),
            ..REDSHIFT
        };
        let mut t = Transformer::new(&schemas(), &["pk".into()], &tiny);
        let it = item(&[("pk", s("ORG#7")), ("note", s(&"\"".repeat(600)))]);
        let r = t.convert(&ItemView::from_sdk(&it)).unwrap_err();
        assert_eq!(r.key, r#"{"pk":"ORG#7"}"#);
        assert!(
            r.reason.contains("more than redshift loads in one row"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn an_attribute_name_longer_than_redshift_strings_rejects_its_item() {
        let mut t = Transformer::new(&schemas(), &["pk".into()], &REDSHIFT);
        let it = item(&[("pk", s("ORG#8")), (&"n".repeat(65_536), s("v"))]);
        let r = t.convert(&ItemView::from_sdk(&it)).unwrap_err();
        assert!(r.reason.contains("65536 bytes"), "{}", r.reason);
        let mut pg = Transformer::new(&schemas(), &["pk".into()], &POSTGRES);
        assert!(survives(&mut pg, &it));
    }

    #[test]
    fn timestamps_with_any_offset_are_sent_in_utc() {
        let mut t = Transformer::new(&schemas(), &["pk".into()], &POSTGRES);
        let it = item(&[
            ("pk", s("ORG#6")),
            ("created", s("2024-06-01T12:00:00+16:00")),
        ]);
        let view = ItemView::from_sdk(&it);
        let row = t.convert(&view).unwrap();
        assert_eq!(row.fields[3].as_deref(), Some("2024-05-31T20:00:00Z"));
        assert!(survives(&mut t, &it));
    }
}
