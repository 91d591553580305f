//! Classification and lossless conversion of scanned items into warehouse rows.
//!
//! Every item ends in exactly one place: a row of the first data-schema whose rule matches, a row
//! of `_unclassified` when none does, or a [`Rejection`] naming its key when some part of it has no
//! representation at all. Within a row, a value the column's type cannot hold exactly (a decimal
//! with too many digits, a string longer than the column's width, a string where a number was
//! expected…) goes to `_extra` with the attributes the schema does not know, and is counted as
//! drift. A DynamoDB `NULL` in a non-JSON column is also kept in `_extra` (as `null`), so that "set
//! to NULL" stays distinct from "absent"; so is a string that is exactly the CSV NULL marker `\N`.

pub mod json;
pub mod number;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use crate::item::{ItemView, Value};
use crate::schema::{
    naming, varchar_width, Column, DataSchema, LogicalType, SchemaSet, FORMAT_VERSION,
    UNCLASSIFIED_TABLE,
};
use number::Decimal;

/// A DynamoDB item in the SDK's form (seeding, schema inference, tests). Phase 1 converts
/// [`ItemView`]s borrowed from the Scan pages instead.
pub type Item = HashMap<String, AttributeValue>;

/// How many example keys drift and rejection reports keep per attribute.
pub const EXAMPLE_KEYS: usize = 3;

/// One converted item: its table (index into [`Transformer::tables`]) and one field per column,
/// `_extra` last. `None` is SQL NULL.
#[derive(Debug)]
pub struct Row<'a> {
    pub table: usize,
    pub fields: Vec<Option<Cow<'a, str>>>,
}

/// An item that cannot be represented; it is reported in the segment manifest instead of loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rejection {
    /// The item's key as JSON, e.g. `{"pk":"ORG#1","sk":"META"}`.
    pub key: String,
    pub reason: String,
}

/// Counts of attributes that went to `_extra`, per attribute and reason, with example keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftCount {
    pub count: u64,
    pub examples: Vec<String>,
}

/// Drift seen in one table: `"attribute: reason"` → counts.
pub type TableDrift = BTreeMap<String, DriftCount>;

/// The synthetic data-schema of `_unclassified`: the key attributes as JSON columns; everything
/// else of the item lands in `_extra`.
pub fn unclassified_schema(source_table: &str, key_attributes: &[String]) -> DataSchema {
    let mut taken = std::collections::HashSet::new();
    DataSchema {
        format: FORMAT_VERSION,
        source_table: source_table.to_string(),
        table: UNCLASSIFIED_TABLE.to_string(),
        rule: None,
        columns: key_attributes
            .iter()
            .map(|a| Column {
                attribute: a.clone(),
                column: naming::assign(a, &mut taken),
                logical_type: LogicalType::Json,
                nullable: false,
            })
            .collect(),
    }
}

struct TableLayout {
    schema: DataSchema,
    /// Column index by attribute name. foldhash (still seeded per process) rather than SipHash:
    /// this lookup runs for every attribute of every item.
    column_of: HashMap<String, usize, foldhash::fast::RandomState>,
}

/// Classifies and converts items of one source table. Not shared between threads: each segment
/// worker owns one and its drift counters.
pub struct Transformer {
    tables: Vec<TableLayout>,
    key_attributes: Vec<String>,
    drift: Vec<TableDrift>,
    catch_all: Option<usize>,
}

impl Transformer {
    /// `schemas` in classification order; `_unclassified` is added as the last table.
    pub fn new(schemas: &SchemaSet, key_attributes: &[String]) -> Self {
        let mut all: Vec<DataSchema> = schemas.schemas.clone();
        all.push(unclassified_schema(&schemas.source_table, key_attributes));
        let tables: Vec<TableLayout> = all
            .into_iter()
            .map(|schema| TableLayout {
                column_of: schema
                    .columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.attribute.clone(), i))
                    .collect(),
                schema,
            })
            .collect();
        let catch_all = tables
            .iter()
            .position(|t| t.schema.rule.is_none() && t.schema.table != UNCLASSIFIED_TABLE);
        Transformer {
            drift: vec![TableDrift::new(); tables.len()],
            tables,
            key_attributes: key_attributes.to_vec(),
            catch_all,
        }
    }

    /// The schemas of every output table, `_unclassified` last.
    pub fn tables(&self) -> impl Iterator<Item = &DataSchema> {
        self.tables.iter().map(|t| &t.schema)
    }

    pub fn table_count(&self) -> usize {
        self.tables.len()
    }

    /// Drift counters so far, by table name (tables without drift are left out).
    pub fn drift(&self) -> BTreeMap<String, TableDrift> {
        self.tables
            .iter()
            .zip(&self.drift)
            .filter(|(_, d)| !d.is_empty())
            .map(|(t, d)| (t.schema.table.clone(), d.clone()))
            .collect()
    }

    /// Which table an item belongs to: the first rule that matches, else the catch-all table,
    /// else `_unclassified` (always the last index).
    pub fn classify(&self, item: &ItemView) -> usize {
        // Rules nearly always test the same attribute (the partition key): look it up once.
        let mut looked_up: Option<(&str, Option<&Value>)> = None;
        for (i, t) in self.tables.iter().enumerate() {
            if let Some(rule) = &t.schema.rule {
                let value = match looked_up {
                    Some((name, value)) if name == rule.attribute => value,
                    _ => {
                        let value = item.get(&rule.attribute);
                        looked_up = Some((&rule.attribute, value));
                        value
                    }
                };
                if let Some(Value::S(s)) = value {
                    if s.starts_with(&rule.prefix) {
                        return i;
                    }
                }
            }
        }
        self.catch_all.unwrap_or(self.tables.len() - 1)
    }

    /// The item's key attributes as JSON (for reports and error messages).
    pub fn item_key(&self, item: &ItemView) -> String {
        item_key(item, &self.key_attributes)
    }

    /// Converts one item into a row of its table.
    pub fn convert<'a>(&mut self, item: &'a ItemView<'_>) -> Result<Row<'a>, Rejection> {
        let table = self.classify(item);
        let layout = &self.tables[table];
        let ncols = layout.schema.columns.len();
        let mut fields: Vec<Option<Cow<'a, str>>> = vec![None; ncols + 1];
        let mut extra: Vec<(&'a str, &'a Value)> = Vec::new();
        let mut drifted: Vec<(String, &'static str)> = Vec::new();
        for (name, value) in item.iter() {
            match layout.column_of.get(name) {
                Some(&i) => {
                    let column = &layout.schema.columns[i];
                    match convert_value(value, column.logical_type, name) {
                        Ok(Some(text)) => fields[i] = Some(text),
                        Ok(None) => extra.push((name, value)),
                        Err(Misfit::Drift(reason)) => {
                            extra.push((name, value));
                            drifted.push((name.to_string(), reason));
                        }
                        Err(Misfit::Unrepresentable(e)) => {
                            return Err(self.reject(item, e.to_string()))
                        }
                    }
                }
                None => {
                    extra.push((name, value));
                    if table != self.tables.len() - 1 {
                        drifted.push((name.to_string(), "not in the data-schema"));
                    }
                }
            }
        }
        if !extra.is_empty() {
            let mut out = Vec::new();
            if let Err(e) = json::write_object(&mut out, extra.into_iter(), "") {
                return Err(self.reject(item, e.to_string()));
            }
            fields[ncols] = Some(Cow::Owned(
                String::from_utf8(out).expect("JSON writer emits UTF-8"),
            ));
        }
        if !drifted.is_empty() {
            let key = self.item_key(item);
            let counters = &mut self.drift[table];
            for (attribute, reason) in drifted {
                let entry = counters
                    .entry(format!("{attribute}: {reason}"))
                    .or_default();
                entry.count += 1;
                if entry.examples.len() < EXAMPLE_KEYS {
                    entry.examples.push(key.clone());
                }
            }
        }
        Ok(Row { table, fields })
    }

    fn reject(&self, item: &ItemView, reason: String) -> Rejection {
        Rejection {
            key: self.item_key(item),
            reason,
        }
    }
}

/// Renders the key attributes of an item as a JSON object (missing key attributes are skipped).
pub fn item_key(item: &ItemView, key_attributes: &[String]) -> String {
    let mut out = Vec::new();
    let entries = key_attributes
        .iter()
        .filter_map(|k| item.get(k).map(|v| (k.as_str(), v)));
    if json::write_object(&mut out, entries, "").is_err() {
        // A key with a NUL in a map key cannot happen (keys are S, N or B); fall back to debug.
        return format!(
            "{:?}",
            key_attributes
                .iter()
                .map(|k| item.get(k))
                .collect::<Vec<_>>()
        );
    }
    String::from_utf8(out).expect("JSON writer emits UTF-8")
}

/// Why a value does not go into its column.
enum Misfit {
    /// It does not fit the column's type; it goes to `_extra` and is counted as drift.
    Drift(&'static str),
    /// It has no representation at all; the item is rejected.
    Unrepresentable(json::JsonError),
}

/// Text for one column value. `Ok(None)` means "keep in `_extra` without counting drift" (an
/// explicit NULL in a non-JSON column).
fn convert_value<'a>(
    value: &'a Value,
    logical_type: LogicalType,
    name: &str,
) -> Result<Option<Cow<'a, str>>, Misfit> {
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
        (LogicalType::Bigint, V::N(n)) if number::plain_integer_fits_i64(n) => {
            Cow::Borrowed(n.as_ref())
        }
        (LogicalType::Decimal { precision, scale }, V::N(n))
            if number::plain_fits_decimal(n, precision, scale) =>
        {
            Cow::Borrowed(n.as_ref())
        }
        (LogicalType::NumericText, V::N(n)) if number::canonical_plain(n).is_some() => {
            Cow::Borrowed(n.as_ref())
        }
        (LogicalType::Bigint, V::N(n)) => {
            let d = Decimal::parse(n).map_err(|_| Misfit::Drift("not a number"))?;
            let v = d.to_i64().ok_or(Misfit::Drift("does not fit bigint"))?;
            Cow::Owned(v.to_string())
        }
        (LogicalType::Decimal { precision, scale }, V::N(n)) => {
            let d = Decimal::parse(n).map_err(|_| Misfit::Drift("not a number"))?;
            if d.scale() > scale || d.integer_digits() > precision - scale {
                return Err(Misfit::Drift("does not fit the column's decimal precision"));
            }
            Cow::Owned(d.to_plain())
        }
        (LogicalType::NumericText, V::N(n)) => {
            Decimal::parse(n).map_err(|_| Misfit::Drift("not a number"))?;
            Cow::Borrowed(n.as_ref())
        }
        (LogicalType::Text { max_bytes }, V::S(s)) => {
            if s.contains('\0') {
                return Err(Misfit::Drift("string contains U+0000"));
            }
            if s.as_ref() == crate::stage::csv::NULL_MARKER {
                // Exactly the CSV NULL marker: kept in `_extra` so no warehouse can mistake it.
                return Ok(None);
            }
            if s.len() > varchar_width(max_bytes) as usize {
                return Err(Misfit::Drift("string longer than the column's width"));
            }
            Cow::Borrowed(s.as_ref())
        }
        (LogicalType::Timestamp, V::S(s)) => {
            if !is_timestamp(s) {
                return Err(Misfit::Drift("not an RFC 3339 timestamp with offset"));
            }
            Cow::Borrowed(s.as_ref())
        }
        (LogicalType::Boolean, V::Bool(b)) => Cow::Borrowed(if *b { "true" } else { "false" }),
        (LogicalType::Binary, V::B(b)) => Cow::Owned(BASE64.encode(b.as_ref())),
        (LogicalType::Json, v) => {
            Cow::Owned(json::to_json(v, name).map_err(Misfit::Unrepresentable)?)
        }
        _ => return Err(Misfit::Drift("type differs from the data-schema")),
    }))
}

/// RFC 3339 with an explicit offset (`Z` or `±hh:mm`), upper-case `T`, at most six fractional
/// digits (what `timestamptz`/`TIMESTAMPTZ` keep), no leap second, years 0001–9999.
pub fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if !(digits(0..4)
        && digits(5..7)
        && digits(8..10)
        && digits(11..13)
        && digits(14..16)
        && digits(17..19))
    {
        return false;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || i - start > 6 {
            return false;
        }
    }
    let offset_ok = match &b[i..] {
        [b'Z'] => true,
        [sign, h1, h2, b':', m1, m2] if *sign == b'+' || *sign == b'-' => {
            [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit())
        }
        _ => false,
    };
    if !offset_ok || &s[17..19] == "60" || &s[0..4] == "0000" {
        return false;
    }
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

/// Turns a row read back from a CSV part into the item it came from (the inverse of
/// [`Transformer::convert`]), so tests and audits can compare values exactly.
pub fn decode_row(schema: &DataSchema, fields: &[Option<String>]) -> Result<Item, String> {
    let expected = schema.columns.len() + 1;
    if fields.len() != expected {
        return Err(format!(
            "table {}: row has {} fields, data-schema has {expected}",
            schema.table,
            fields.len()
        ));
    }
    let mut item = Item::new();
    for (column, field) in schema.columns.iter().zip(fields) {
        let Some(text) = field else { continue };
        let value = match column.logical_type {
            LogicalType::Bigint | LogicalType::Decimal { .. } | LogicalType::NumericText => {
                AttributeValue::N(text.clone())
            }
            LogicalType::Text { .. } | LogicalType::Timestamp => AttributeValue::S(text.clone()),
            LogicalType::Boolean => match text.as_str() {
                "true" => AttributeValue::Bool(true),
                "false" => AttributeValue::Bool(false),
                other => {
                    return Err(format!(
                        "column {}: {other:?} is not a boolean",
                        column.column
                    ))
                }
            },
            LogicalType::Binary => AttributeValue::B(Blob::new(
                BASE64
                    .decode(text)
                    .map_err(|e| format!("column {}: {e}", column.column))?,
            )),
            LogicalType::Json => {
                json::decode(text).map_err(|e| format!("column {}: {e}", column.column))?
            }
        };
        item.insert(column.attribute.clone(), value);
    }
    if let Some(Some(extra)) = fields.last() {
        let attrs = json::decode_object(extra).map_err(|e| format!("column _extra: {e}"))?;
        for (name, value) in attrs {
            if item.insert(name.clone(), value).is_some() {
                return Err(format!(
                    "attribute {name:?} is both in a column and in _extra"
                ));
            }
        }
    }
    Ok(item)
}

/// DynamoDB equality: numbers by value, sets regardless of order, maps regardless of order.
pub fn values_equal(a: &AttributeValue, b: &AttributeValue) -> bool {
    use AttributeValue as V;
    let num = |x: &str| Decimal::parse(x).ok();
    match (a, b) {
        (V::N(x), V::N(y)) => num(x).is_some() && num(x) == num(y),
        (V::Ns(x), V::Ns(y)) => {
            let mut x: Vec<_> = x.iter().map(|n| num(n)).collect();
            let mut y: Vec<_> = y.iter().map(|n| num(n)).collect();
            x.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
            y.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
            x == y
        }
        (V::Ss(x), V::Ss(y)) => sorted(x) == sorted(y),
        (V::Bs(x), V::Bs(y)) => {
            sorted(&x.iter().map(|b| b.as_ref().to_vec()).collect::<Vec<_>>())
                == sorted(&y.iter().map(|b| b.as_ref().to_vec()).collect::<Vec<_>>())
        }
        (V::L(x), V::L(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| values_equal(a, b))
        }
        (V::M(x), V::M(y)) => items_equal(x, y),
        _ => a == b,
    }
}

/// Item equality under [`values_equal`].
pub fn items_equal(a: &Item, b: &Item) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|(k, v)| b.get(k).is_some_and(|w| values_equal(v, w)))
}

fn sorted<T: Ord + Clone>(v: &[T]) -> Vec<T> {
    let mut v = v.to_vec();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::MatchRule;

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
            rule: Some(MatchRule {
                attribute: "pk".into(),
                prefix: "ORG#".into(),
            }),
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

    fn round_trip(t: &mut Transformer, it: &Item) -> Item {
        let view = ItemView::from_sdk(it);
        let row = t.convert(&view).unwrap();
        let schema = t.tables().nth(row.table).unwrap().clone();
        let fields: Vec<Option<String>> = row
            .fields
            .iter()
            .map(|f| f.as_ref().map(|c| c.to_string()))
            .collect();
        decode_row(&schema, &fields).unwrap()
    }

    #[test]
    fn classifies_by_prefix_and_falls_back_to_unclassified() {
        let t = Transformer::new(&schemas(), &["pk".into()]);
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
    fn fitting_values_land_in_their_columns() {
        let mut t = Transformer::new(&schemas(), &["pk".into()]);
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
                Some("2024-02-29T23:59:59.123456+05:30"),
                Some("false"),
                Some("/wA="),
                Some(r#"{"$ss":["a"]}"#),
                Some(""),
                None
            ]
        );
        assert!(t.drift().is_empty());
        assert!(items_equal(&round_trip(&mut t, &it), &it));
    }

    #[test]
    fn misfits_go_to_extra_and_are_counted() {
        let mut t = Transformer::new(&schemas(), &["pk".into()]);
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
        let extra = json::decode_object(row.fields[8].as_deref().unwrap()).unwrap();
        assert_eq!(extra.len(), 6);
        let drift = t.drift();
        let org = &drift["organization"];
        assert_eq!(org["surprise: not in the data-schema"].count, 1);
        assert_eq!(
            org["employees: does not fit bigint"].examples,
            [r#"{"pk":"ORG#2"}"#]
        );
        assert!(
            !org.keys().any(|k| k.starts_with("active")),
            "explicit NULL is not drift"
        );
        assert!(items_equal(&round_trip(&mut t, &it), &it));
    }

    #[test]
    fn unclassified_items_keep_their_key_and_everything_else() {
        let mut t = Transformer::new(&schemas(), &["pk".into(), "sk".into()]);
        let it = item(&[("pk", s("THING#1")), ("sk", n("5")), ("x", s("y"))]);
        let view = ItemView::from_sdk(&it);
        let row = t.convert(&view).unwrap();
        assert_eq!(row.table, 1);
        assert_eq!(row.fields[0].as_deref(), Some("\"THING#1\""));
        assert_eq!(row.fields[1].as_deref(), Some("5"));
        assert!(items_equal(&round_trip(&mut t, &it), &it));
        assert!(
            t.drift().is_empty(),
            "unclassified attributes are not drift"
        );
    }

    #[test]
    fn unrepresentable_items_are_rejected_by_key() {
        let mut t = Transformer::new(&schemas(), &["pk".into()]);
        let mut inner = HashMap::new();
        inner.insert("bad\0".to_string(), s("x"));
        let it = item(&[("pk", s("ORG#3")), ("odd", AttributeValue::M(inner))]);
        let r = t.convert(&ItemView::from_sdk(&it)).unwrap_err();
        assert_eq!(r.key, r#"{"pk":"ORG#3"}"#);
        assert!(r.reason.contains("U+0000"), "{}", r.reason);
    }

    #[test]
    fn the_null_marker_string_goes_to_extra_without_drift() {
        let mut t = Transformer::new(&schemas(), &["pk".into()]);
        let it = item(&[("pk", s("ORG#5")), ("note", s("\\N"))]);
        let view = ItemView::from_sdk(&it);
        let row = t.convert(&view).unwrap();
        assert!(row.fields[7].is_none());
        assert!(row.fields[8].as_deref().unwrap().contains("note"));
        assert!(t.drift().is_empty());
        assert!(items_equal(&round_trip(&mut t, &it), &it));
    }

    #[test]
    fn strings_with_nul_are_kept_losslessly() {
        let mut t = Transformer::new(&schemas(), &["pk".into()]);
        let it = item(&[("pk", s("ORG#4")), ("note", s("a\0b"))]);
        assert!(items_equal(&round_trip(&mut t, &it), &it));
    }

    #[test]
    fn timestamp_check_is_strict() {
        for ok in [
            "2024-01-01T00:00:00Z",
            "1999-12-31T23:59:59.5-08:00",
            "2024-02-29T12:00:00.000001+00:00",
        ] {
            assert!(is_timestamp(ok), "{ok}");
        }
        for bad in [
            "2024-01-01 00:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.1234567Z",
            "2023-02-29T00:00:00Z",
            "2024-01-01T23:59:60Z",
            "2024-01-01t00:00:00z",
            "0000-01-01T00:00:00Z",
        ] {
            assert!(!is_timestamp(bad), "{bad}");
        }
    }

    #[test]
    fn number_equality_ignores_representation() {
        assert!(values_equal(&n("1.50"), &n("1.5")));
        assert!(values_equal(&n("1E+2"), &n("100")));
        assert!(!values_equal(&n("1"), &s("1")));
        assert!(values_equal(
            &AttributeValue::Ns(vec!["2".into(), "1".into()]),
            &AttributeValue::Ns(vec!["1.0".into(), "2".into()])
        ));
    }
}
