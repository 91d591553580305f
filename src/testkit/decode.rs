//! Decoders that invert what phase 1 writes — CSV parts, rows, tagged JSON — and DynamoDB
//! equality, so tests and audits can compare values exactly. Not part of the product.

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use csv_core::{ReadFieldResult, Reader};
use std::collections::HashMap;

use crate::schema::{DataSchema, LogicalType};
use crate::staging::parts::codec::PartCompression;
use crate::staging::parts::csv::NULL_MARKER;
use crate::value::decimal::Decimal;
use crate::value::Item;

/// Lowercase hex SHA-256, as manifests record parts.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Decompresses a whole part held in memory, by its key's codec (tests and audits).
pub fn decompress(key: &str, data: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let codec = PartCompression::of_part(key).map_err(std::io::Error::other)?;
    let mut out = Vec::new();
    match codec {
        PartCompression::Zstd => {
            zstd::stream::read::Decoder::new(data)?.read_to_end(&mut out)?;
        }
        PartCompression::Gzip => {
            flate2::read::MultiGzDecoder::new(data).read_to_end(&mut out)?;
        }
    }
    Ok(out)
}

/// Decodes CSV written by [`CsvEncoder`] back into rows: an unquoted `\N` is NULL (`None`), a
/// quoted field is its text (`Some`, possibly empty). Any other unquoted field is an error.
pub fn decode_rows(mut input: &[u8]) -> Result<Vec<Vec<Option<String>>>, String> {
    let mut reader = Reader::new();
    let mut rows = Vec::new();
    let mut row: Vec<Option<String>> = Vec::new();
    let mut field: Vec<u8> = Vec::new();
    let mut quoted: Option<bool> = None;
    let mut buf = vec![0u8; 64 * 1024];
    let mut line = 1usize;
    loop {
        if quoted.is_none() {
            quoted = Some(input.first() == Some(&b'"'));
        }
        let (result, read, written) = reader.read_field(input, &mut buf);
        line += input[..read].iter().filter(|&&b| b == b'\n').count();
        input = &input[read..];
        field.extend_from_slice(&buf[..written]);
        let mut finish_field = |row: &mut Vec<Option<String>>, field: &mut Vec<u8>| {
            let text = String::from_utf8(std::mem::take(field))
                .map_err(|_| format!("line {line}: field is not UTF-8"))?;
            let was_quoted = quoted.take().unwrap_or(false);
            if was_quoted {
                row.push(Some(text));
            } else if text == NULL_MARKER {
                row.push(None);
            } else {
                return Err(format!(
                    "line {line}: unquoted field {text:?} is neither quoted nor the NULL marker"
                ));
            }
            Ok::<(), String>(())
        };
        match result {
            ReadFieldResult::InputEmpty | ReadFieldResult::OutputFull => continue,
            ReadFieldResult::Field { record_end } => {
                finish_field(&mut row, &mut field)?;
                if record_end {
                    rows.push(std::mem::take(&mut row));
                }
            }
            ReadFieldResult::End => break,
        }
        if input.is_empty() {
            // Let the reader see the end of input (it may close a last field without newline).
            let (result, _, written) = reader.read_field(&[], &mut buf);
            field.extend_from_slice(&buf[..written]);
            if let ReadFieldResult::Field { .. } = result {
                finish_field(&mut row, &mut field)?;
                rows.push(std::mem::take(&mut row));
            }
            break;
        }
    }
    Ok(rows)
}

/// Turns a row read back from a CSV part into the item it came from (the inverse of
/// [`Transformer::convert`]), so tests and audits can compare values exactly.
pub fn decode_row(schema: &DataSchema, fields: &[Option<String>]) -> Result<Item, String> {
    let expected = schema.columns.len() + usize::from(schema.has_extra_column());
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
                decode_hex(text).map_err(|e| format!("column {}: {e}", column.column))?,
            )),
            LogicalType::Json => {
                decode(text).map_err(|e| format!("column {}: {e}", column.column))?
            }
        };
        item.insert(column.attribute.clone(), value);
    }
    if !schema.has_extra_column() {
        return Ok(item);
    }
    if let Some(Some(extra)) = fields.last() {
        let attrs = decode_object(extra).map_err(|e| format!("column _extra: {e}"))?;
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

/// Binary as phase 1 writes it or PostgreSQL prints it: hex digits, with or without `\x`.
pub fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits = text.strip_prefix("\\x").unwrap_or(text);
    if digits.len() % 2 != 0 {
        return Err(format!("odd number of hex digits in {text:?}"));
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&digits[i..i + 2], 16).map_err(|_| {
                let shown: String = text.chars().take(40).collect();
                format!("{shown:?} is not hex")
            })
        })
        .collect()
}

/// The values `_overflow` rows hold, reassembled: by (table, item key) the attributes with their
/// values. Rows are the fields of [`crate::schema::overflow_schema`], in any order.
pub fn decode_overflow(
    rows: &[Vec<Option<String>>],
) -> Result<HashMap<(String, String), Item>, String> {
    type Pieces = Vec<(u64, String, Vec<u8>)>;
    let mut pieces: HashMap<(String, String, String), Pieces> = HashMap::new();
    for row in rows {
        let field = |i: usize| -> Result<&str, String> {
            row.get(i)
                .and_then(|f| f.as_deref())
                .ok_or_else(|| format!("_overflow row {row:?} lacks field {i}"))
        };
        let chunk: u64 = field(3)?
            .parse()
            .map_err(|_| format!("bad chunk in {row:?}"))?;
        pieces
            .entry((
                field(0)?.to_string(),
                field(1)?.to_string(),
                field(2)?.to_string(),
            ))
            .or_default()
            .push((chunk, field(4)?.to_string(), decode_hex(field(5)?)?));
    }
    let mut out: HashMap<(String, String), Item> = HashMap::new();
    for ((table, key, attribute), mut parts) in pieces {
        parts.sort_by_key(|p| p.0);
        if parts.iter().enumerate().any(|(i, p)| p.0 != i as u64) {
            return Err(format!("{table} {key} {attribute}: pieces are not 0..n"));
        }
        let kind = parts[0].1.clone();
        let bytes: Vec<u8> = parts.into_iter().flat_map(|p| p.2).collect();
        let value = match kind.as_str() {
            "S" => AttributeValue::S(
                String::from_utf8(bytes).map_err(|_| format!("{attribute}: S is not UTF-8"))?,
            ),
            "B" => AttributeValue::B(Blob::new(bytes)),
            "json" => {
                decode(std::str::from_utf8(&bytes).map_err(|_| format!("{attribute}: not UTF-8"))?)
                    .map_err(|e| format!("{attribute}: {e}"))?
            }
            other => return Err(format!("{attribute}: unknown kind {other:?}")),
        };
        out.entry((table, key))
            .or_default()
            .insert(attribute, value);
    }
    Ok(out)
}

/// `item` with the values of `table`'s timestamp columns rewritten to UTC: the warehouse keeps
/// a timestamp's instant, not the offset it was written with, so that is what compares.
pub fn as_instants(item: &Item, table: &DataSchema) -> Item {
    let mut out = item.clone();
    for c in &table.columns {
        if c.logical_type != LogicalType::Timestamp {
            continue;
        }
        if let Some(AttributeValue::S(s)) = item.get(&c.attribute) {
            if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
                let utc = t
                    .with_timezone(&chrono::Utc)
                    .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                    .to_string();
                out.insert(c.attribute.clone(), AttributeValue::S(utc));
            }
        }
    }
    out
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

/// Why JSON text does not decode to a DynamoDB value.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("bad {tag} tag: {problem}")]
    BadTag { tag: String, problem: String },
}

/// Parses JSON written by [`write_value`] back into the DynamoDB value it came from.
pub fn decode(text: &str) -> Result<AttributeValue, DecodeError> {
    let value: serde_json::Value = serde_json::from_str(text)?;
    from_json_value(&value)
}

/// Decodes a JSON object written by [`write_object`] into attributes (used for `_extra`).
pub fn decode_object(text: &str) -> Result<HashMap<String, AttributeValue>, DecodeError> {
    match decode(text)? {
        AttributeValue::M(m) => Ok(m),
        other => Err(DecodeError::BadTag {
            tag: "object".into(),
            problem: format!("expected an object, found {other:?}"),
        }),
    }
}

fn from_json_value(value: &serde_json::Value) -> Result<AttributeValue, DecodeError> {
    use serde_json::Value;
    Ok(match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(items) => AttributeValue::L(
            items
                .iter()
                .map(from_json_value)
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => {
            if map.len() == 1 {
                let (key, inner) = map.iter().next().expect("one entry");
                if let Some(tagged) = decode_tag(key, inner)? {
                    return Ok(tagged);
                }
            }
            let mut out = HashMap::with_capacity(map.len());
            for (key, inner) in map {
                let key = match key.strip_prefix('$') {
                    Some(rest) if rest.starts_with('$') => rest.to_string(),
                    Some(_) => {
                        return Err(DecodeError::BadTag {
                            tag: key.clone(),
                            problem: "unknown tag inside an object with other keys".into(),
                        })
                    }
                    None => key.clone(),
                };
                out.insert(key, from_json_value(inner)?);
            }
            AttributeValue::M(out)
        }
    })
}

fn decode_tag(key: &str, inner: &serde_json::Value) -> Result<Option<AttributeValue>, DecodeError> {
    let bad = |problem: &str| DecodeError::BadTag {
        tag: key.to_string(),
        problem: problem.to_string(),
    };
    let b64 = |v: &serde_json::Value| -> Result<Vec<u8>, DecodeError> {
        let s = v.as_str().ok_or_else(|| bad("expected a base64 string"))?;
        BASE64.decode(s).map_err(|e| bad(&e.to_string()))
    };
    let array = |v: &serde_json::Value| -> Result<Vec<serde_json::Value>, DecodeError> {
        v.as_array()
            .cloned()
            .ok_or_else(|| bad("expected an array"))
    };
    Ok(Some(match key {
        "$b" => AttributeValue::B(Blob::new(b64(inner)?)),
        "$n" => AttributeValue::N(
            inner
                .as_str()
                .ok_or_else(|| bad("expected the number as a string"))?
                .to_string(),
        ),
        "$s64" => AttributeValue::S(String::from_utf8(b64(inner)?).map_err(|_| bad("not UTF-8"))?),
        "$ss" => AttributeValue::Ss(
            array(inner)?
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| bad("expected strings"))
                })
                .collect::<Result<_, _>>()?,
        ),
        "$ns" => AttributeValue::Ns(
            array(inner)?
                .iter()
                .map(|v| match v {
                    serde_json::Value::Number(n) => Ok(n.to_string()),
                    serde_json::Value::Object(tagged) if tagged.len() == 1 => {
                        match tagged.get("$n").and_then(|t| t.as_str()) {
                            Some(n) => Ok(n.to_string()),
                            None => Err(bad("expected numbers")),
                        }
                    }
                    _ => Err(bad("expected numbers")),
                })
                .collect::<Result<_, _>>()?,
        ),
        "$bs" => AttributeValue::Bs(
            array(inner)?
                .iter()
                .map(|v| b64(v).map(Blob::new))
                .collect::<Result<_, _>>()?,
        ),
        _ => return Ok(None),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.into())
    }
    fn n(v: &str) -> AttributeValue {
        AttributeValue::N(v.into())
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
