//! Classification and lossless conversion of scanned items into warehouse rows.
//!
//! Every item ends in exactly one place: a row of the first data-schema whose rule matches, a row
//! of `_unclassified` when none does, or a [`Rejection`] naming its key when some part of it has no
//! representation at all. Within a row, a value the column's type cannot hold exactly (a decimal
//! with too many digits, a string longer than the column's width, a string where a number was
//! expected…) goes to `_extra` with the attributes the schema does not know, and is counted as
//! drift. A DynamoDB `NULL` in a non-JSON column is also kept in `_extra` (as `null`), so that "set
//! to NULL" stays distinct from "absent"; so is a string that is exactly the CSV NULL marker `\N`.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use crate::schema::{varchar_width, DataSchema, LogicalType, SchemaSet, UNCLASSIFIED_TABLE};
use crate::staging::manifest::{
    DriftCount, DriftKey, DriftReason, Rejection, TableDrift, EXAMPLE_KEYS,
};
use crate::staging::parts::csv::NULL_MARKER;
use crate::value::decimal::{self, Decimal};
use crate::value::json::{self, item_key};
use crate::value::time::is_timestamp;
use crate::value::{ItemView, Value};

/// One converted item: its table (index into [`Transformer::tables`]) and one field per column,
/// `_extra` last. `None` is SQL NULL.
#[derive(Debug)]
pub struct Row<'a> {
    pub table: usize,
    pub fields: Vec<Option<Cow<'a, str>>>,
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
    drift: Vec<BTreeMap<DriftKey, DriftCount>>,
    catch_all: Option<usize>,
}

impl Transformer {
    /// `schemas` in classification order; `_unclassified` is added as the last table.
    pub fn new(schemas: &SchemaSet, key_attributes: &[String]) -> Self {
        let mut all: Vec<DataSchema> = schemas.schemas.clone();
        all.push(crate::schema::unclassified_schema(
            &schemas.source_table,
            key_attributes,
        ));
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
            drift: vec![BTreeMap::new(); tables.len()],
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
            .map(|(t, d)| {
                let entries: TableDrift = d.iter().map(|(key, count)| count.entry(key)).collect();
                (t.schema.table.clone(), entries)
            })
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
        let mut drifted: Vec<(&str, DriftReason)> = Vec::new();
        for (name, value) in item.iter() {
            match layout.column_of.get(name) {
                Some(&i) => {
                    let column = &layout.schema.columns[i];
                    match convert_value(value, column.logical_type, name) {
                        Ok(Some(text)) => fields[i] = Some(text),
                        Ok(None) => extra.push((name, value)),
                        Err(Misfit::Drift(reason)) => {
                            extra.push((name, value));
                            drifted.push((name, reason));
                        }
                        Err(Misfit::Unrepresentable(e)) => {
                            return Err(self.reject(item, e.to_string()))
                        }
                    }
                }
                None => {
                    extra.push((name, value));
                    if table != self.tables.len() - 1 {
                        drifted.push((name, DriftReason::NotInSchema));
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
        Ok(Row { table, fields })
    }

    fn reject(&self, item: &ItemView, reason: String) -> Rejection {
        Rejection {
            key: self.item_key(item),
            reason,
        }
    }
}

/// Why a value does not go into its column.
enum Misfit {
    /// It does not fit the column's type; it goes to `_extra` and is counted as drift.
    Drift(DriftReason),
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
            if s.len() > varchar_width(max_bytes) as usize {
                return Err(Misfit::Drift(DriftReason::TooLong));
            }
            Cow::Borrowed(s.as_ref())
        }
        (LogicalType::Timestamp, V::S(s)) => {
            if !is_timestamp(s) {
                return Err(Misfit::Drift(DriftReason::NotATimestamp));
            }
            Cow::Borrowed(s.as_ref())
        }
        (LogicalType::Boolean, V::Bool(b)) => Cow::Borrowed(if *b { "true" } else { "false" }),
        (LogicalType::Binary, V::B(b)) => Cow::Owned(BASE64.encode(b.as_ref())),
        (LogicalType::Json, v) => {
            Cow::Owned(json::to_json(v, name).map_err(Misfit::Unrepresentable)?)
        }
        _ => return Err(Misfit::Drift(DriftReason::OtherType)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Column, MatchRule, FORMAT_VERSION};
    use crate::testkit::decode::{decode_object, decode_row, items_equal};
    use crate::value::Item;
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
}
