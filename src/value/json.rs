//! JSON text for DynamoDB values that land in JSON columns (`json` type, `_extra`, `_unclassified`).
//!
//! Plain JSON where it is unambiguous — `S` → string, `N` → number (exact digits, never a float),
//! `BOOL` → boolean, `NULL` → null, `L` → array, `M` → object — and a one-key tagged object where
//! plain JSON would lose the DynamoDB type:
//!
//! | value | JSON |
//! |---|---|
//! | `B` | `{"$b": "<base64>"}` |
//! | `SS` / `NS` / `BS` | `{"$ss": [..]}` / `{"$ns": [..]}` / `{"$bs": ["<base64>", ..]}` |
//! | `S` containing U+0000 (which PostgreSQL cannot store) | `{"$s64": "<base64 of the UTF-8>"}` |
//! | `N` that no DECIMAL holds exactly (precision over 38 or scale over 37) | `{"$n": "<the number>"}` |
//!
//! Numbers: Redshift's DECIMAL holds at most 38 digits with a scale of at most 37
//! (<https://docs.aws.amazon.com/redshift/latest/dg/r_Numeric_types201.html>), and what COPY
//! makes of a JSON number inside SUPER beyond that is not documented; DynamoDB numbers reach
//! 1E-130 and 9.99E+125 (38 significant digits). Such numbers are written as a tagged string in
//! every dialect, so the JSON of a value is the same whatever the warehouse.
//!
//! Object keys that start with `$` are written with one more `$` in front, so a map can never be
//! mistaken for a tag. The test kit's decoder inverts all of this exactly.
//!
//! The text is laid out as PostgreSQL's `jsonb` prints a value it stores: keys ordered by their
//! length, then by their bytes; `", "` between items and `": "` after a key; numbers plain (a
//! number that would need an exponent is tagged, above). So the text phase 1 writes is the text
//! the warehouse gives back, and the fingerprint of a JSON value hashes the written text as it
//! is (`staging::fingerprint`; `tests/it/fingerprints.rs` compares it with a real server). JSON
//! readers, Redshift's `SUPER` among them, ignore the spaces.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use super::decimal::Decimal;
use super::{ItemView, Value};

/// Why a value has no JSON form; carries the attribute path for the error report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("attribute {path} has a map key containing U+0000, which the warehouse cannot store")]
    NulInKey { path: String },
    #[error("attribute {path} holds {value:?}, which is not a DynamoDB number")]
    BadNumber { path: String, value: String },
    #[error("attribute {path} has a DynamoDB type this version does not know ({tag}); a newer dynamo-etl may")]
    UnknownType { path: String, tag: String },
}

/// Where a value sits inside an attribute, for error messages. Kept as borrowed links and only
/// rendered when an error needs it: building the text for every nested value cost more than
/// writing the value itself.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root(&'a str),
    Index(&'a Path<'a>, usize),
    Key(&'a Path<'a>, &'a str),
}

impl Path<'_> {
    fn render(&self) -> String {
        match self {
            Path::Root(name) => name.to_string(),
            Path::Index(parent, i) => format!("{}[{i}]", parent.render()),
            Path::Key(parent, key) => match parent {
                Path::Root("") => key.to_string(),
                _ => format!("{}.{key}", parent.render()),
            },
        }
    }
}

/// Appends the JSON for `value` to `out`. `path` names the attribute for errors.
pub fn write_value(out: &mut Vec<u8>, value: &Value, path: &str) -> Result<(), JsonError> {
    write_value_at(out, value, &Path::Root(path))
}

fn write_value_at(out: &mut Vec<u8>, value: &Value, path: &Path) -> Result<(), JsonError> {
    match value {
        Value::S(s) => write_string(out, s),
        Value::N(n) => write_number(out, n, path)?,
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Null => out.extend_from_slice(b"null"),
        Value::B(b) => {
            out.extend_from_slice(b"{\"$b\": ");
            write_base64(out, b.as_ref());
            out.push(b'}');
        }
        Value::Ss(items) => {
            out.extend_from_slice(b"{\"$ss\": [");
            for (i, s) in items.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                write_string(out, s);
            }
            out.extend_from_slice(b"]}");
        }
        Value::Ns(items) => {
            out.extend_from_slice(b"{\"$ns\": [");
            for (i, n) in items.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                write_number(out, n, path)?;
            }
            out.extend_from_slice(b"]}");
        }
        Value::Bs(items) => {
            out.extend_from_slice(b"{\"$bs\": [");
            for (i, b) in items.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                write_base64(out, b.as_ref());
            }
            out.extend_from_slice(b"]}");
        }
        Value::L(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                write_value_at(out, v, &Path::Index(path, i))?;
            }
            out.push(b']');
        }
        Value::M(map) => write_object_at(out, map.iter().map(|(k, v)| (k.as_ref(), v)), path)?,
        Value::Unknown(tag) => {
            return Err(JsonError::UnknownType {
                path: path.render(),
                tag: tag.clone(),
            })
        }
    }
    Ok(())
}

/// Appends a JSON object of `(key, value)` pairs with keys in `jsonb`'s order (see
/// [`key_order`]), so output is deterministic (DynamoDB maps have no order).
pub fn write_object<'a, 'v: 'a>(
    out: &mut Vec<u8>,
    entries: impl Iterator<Item = (&'a str, &'a Value<'v>)>,
    path: &str,
) -> Result<(), JsonError> {
    write_object_at(out, entries, &Path::Root(path))
}

fn write_object_at<'a, 'v: 'a>(
    out: &mut Vec<u8>,
    entries: impl Iterator<Item = (&'a str, &'a Value<'v>)>,
    path: &Path,
) -> Result<(), JsonError> {
    let mut entries: Vec<_> = entries.collect();
    entries.sort_unstable_by(|a, b| key_order(a.0, b.0));
    out.push(b'{');
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        let child = Path::Key(path, key);
        write_key(out, key, &child)?;
        write_value_at(out, value, &child)?;
    }
    out.push(b'}');
    Ok(())
}

/// Appends `"key":`, with one more `$` in front of a key that starts with `$`.
fn write_key(out: &mut Vec<u8>, key: &str, path: &Path) -> Result<(), JsonError> {
    if key.contains('\0') {
        return Err(JsonError::NulInKey {
            path: path.render(),
        });
    }
    if key.starts_with('$') {
        let escaped = format!("${key}");
        write_plain_string(out, &escaped);
    } else {
        write_plain_string(out, key);
    }
    out.extend_from_slice(b": ");
    Ok(())
}

/// The order `jsonb` keeps an object's keys in: shorter first, then by bytes, of the keys as
/// written (a `$` key with its extra `$`). PostgreSQL documents that it does not keep the input's
/// order (<https://www.postgresql.org/docs/15/datatype-json.html>); length-then-bytes is what its
/// output shows, and `tests/it/fingerprints.rs` checks it against a real server.
pub fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    let written = |k: &str| (key_length(k), k.starts_with('$'));
    let ((a_len, a_dollar), (b_len, b_dollar)) = (written(a), written(b));
    a_len.cmp(&b_len).then_with(|| {
        // Same written length: compare the written bytes, `$` prefix included.
        let a_bytes = std::iter::once(b'$').filter(|_| a_dollar).chain(a.bytes());
        let b_bytes = std::iter::once(b'$').filter(|_| b_dollar).chain(b.bytes());
        a_bytes.cmp(b_bytes)
    })
}

/// Appends a JSON object of attributes whose values are JSON texts already (from [`to_json`]),
/// keys sorted as [`write_object`] sorts them.
pub fn write_object_of_texts(
    out: &mut Vec<u8>,
    entries: &mut [(&str, String)],
) -> Result<(), JsonError> {
    entries.sort_unstable_by(|a, b| key_order(a.0, b.0));
    out.push(b'{');
    for (i, (key, text)) in entries.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        write_key(out, key, &Path::Root(key))?;
        out.extend_from_slice(text.as_bytes());
    }
    out.push(b'}');
    Ok(())
}

/// The longest string (object keys included) in the JSON text [`write_value`] writes for
/// `value`, in bytes as the reader unescapes it: what a warehouse with a per-string limit inside
/// JSON values (Redshift's SUPER) has to hold. Mirrors the writer's tags.
pub fn longest_string(value: &Value) -> usize {
    let base64 = |n: usize| base64::encoded_len(n, true).unwrap_or(usize::MAX);
    let string = |s: &str| match s.contains('\0') {
        true => base64(s.len()).max("$s64".len()),
        false => s.len(),
    };
    match value {
        Value::S(s) => string(s),
        Value::N(n) => tagged_number_length(n),
        Value::Bool(_) | Value::Null | Value::Unknown(_) => 0,
        Value::B(b) => base64(b.len()).max("$b".len()),
        Value::Ss(items) => items
            .iter()
            .map(|s| string(s))
            .fold("$ss".len(), usize::max),
        Value::Ns(items) => items
            .iter()
            .map(|n| tagged_number_length(n))
            .fold("$ns".len(), usize::max),
        Value::Bs(items) => items
            .iter()
            .map(|b| base64(b.len()))
            .fold("$bs".len(), usize::max),
        Value::L(items) => items.iter().map(longest_string).max().unwrap_or(0),
        Value::M(map) => map
            .iter()
            .map(|(k, v)| key_length(k).max(longest_string(v)))
            .max()
            .unwrap_or(0),
    }
}

/// The length of an object key as written (with the extra `$` of a `$` key).
pub fn key_length(key: &str) -> usize {
    key.len() + usize::from(key.starts_with('$'))
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    if s.contains('\0') {
        out.extend_from_slice(b"{\"$s64\": ");
        write_base64(out, s.as_bytes());
        out.push(b'}');
    } else {
        write_plain_string(out, s);
    }
}

fn write_plain_string(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

fn write_base64(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let start = out.len();
    out.resize(
        start + base64::encoded_len(bytes.len(), true).unwrap_or(0),
        0,
    );
    let written = BASE64
        .encode_slice(bytes, &mut out[start..])
        .expect("buffer sized by encoded_len");
    out.truncate(start + written);
    out.push(b'"');
}

/// The widest DECIMAL a warehouse holds: a JSON number beyond it is written tagged.
const MAX_PRECISION: u32 = 38;
const MAX_SCALE: u32 = 37;

/// Whether `d` is written as `{"$n": …}` rather than as a JSON number.
fn number_is_tagged(d: &Decimal) -> bool {
    d.precision() > MAX_PRECISION || d.scale() > MAX_SCALE
}

fn write_number(out: &mut Vec<u8>, n: &str, path: &Path) -> Result<(), JsonError> {
    let (text, tagged) = number_text(n, path)?;
    if tagged {
        out.extend_from_slice(b"{\"$n\": \"");
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(b"\"}");
    } else {
        out.extend_from_slice(text.as_bytes());
    }
    Ok(())
}

/// A DynamoDB number's JSON text, and whether it is written tagged.
fn number_text(n: &str, path: &Path) -> Result<(String, bool), JsonError> {
    let d = Decimal::parse(n).map_err(|_| JsonError::BadNumber {
        path: path.render(),
        value: n.to_string(),
    })?;
    let mut text = String::new();
    d.write_json_number(&mut text);
    Ok((text, number_is_tagged(&d)))
}

/// The length of the string a tagged number is written as (0 for a plain JSON number).
fn tagged_number_length(n: &str) -> usize {
    match Decimal::parse(n) {
        Ok(d) if number_is_tagged(&d) => {
            let mut text = String::new();
            d.write_json_number(&mut text);
            text.len().max("$n".len())
        }
        _ => 0,
    }
}

/// JSON text for a whole value, as a `String`.
pub fn to_json(value: &Value, path: &str) -> Result<String, JsonError> {
    let mut out = Vec::new();
    write_value(&mut out, value, path)?;
    Ok(String::from_utf8(out).expect("JSON writer emits UTF-8"))
}

/// Renders the key attributes of an item as a JSON object (missing key attributes are skipped),
/// in the compact form every earlier version wrote — `{"pk":"A","sk":1}`, keys in byte order —
/// not in `jsonb`'s layout: `_overflow.item_key` holds this text, and increments find the rows of
/// a changed item there by comparing it, so it must not change between versions.
pub fn item_key(item: &ItemView, key_attributes: &[String]) -> String {
    let mut entries: Vec<(&str, &Value)> = key_attributes
        .iter()
        .filter_map(|k| item.get(k).map(|v| (k.as_str(), v)))
        .collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut out = vec![b'{'];
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if write_key_compact(&mut out, key, value).is_err() {
            // Keys are S, N or B with names free of U+0000 (DynamoDB's rules): fall back to debug.
            return format!(
                "{:?}",
                key_attributes
                    .iter()
                    .map(|k| item.get(k))
                    .collect::<Vec<_>>()
            );
        }
    }
    out.push(b'}');
    String::from_utf8(out).expect("JSON writer emits UTF-8")
}

/// `"name":value` of one key attribute, compact, tagged as [`write_value`] tags.
fn write_key_compact(out: &mut Vec<u8>, name: &str, value: &Value) -> Result<(), JsonError> {
    let path = Path::Root(name);
    if name.contains('\0') {
        return Err(JsonError::NulInKey {
            path: path.render(),
        });
    }
    match name.starts_with('$') {
        true => write_plain_string(out, &format!("${name}")),
        false => write_plain_string(out, name),
    }
    out.push(b':');
    match value {
        Value::S(s) if s.contains('\0') => {
            out.extend_from_slice(b"{\"$s64\":");
            write_base64(out, s.as_bytes());
            out.push(b'}');
        }
        Value::S(s) => write_plain_string(out, s),
        Value::B(b) => {
            out.extend_from_slice(b"{\"$b\":");
            write_base64(out, b.as_ref());
            out.push(b'}');
        }
        Value::N(n) => {
            let (text, tagged) = number_text(n, &path)?;
            match tagged {
                true => {
                    out.extend_from_slice(b"{\"$n\":\"");
                    out.extend_from_slice(text.as_bytes());
                    out.extend_from_slice(b"\"}");
                }
                false => out.extend_from_slice(text.as_bytes()),
            }
        }
        // No key attribute has another type.
        other => write_value_at(out, other, &path)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::decode::{decode, values_equal};
    use aws_sdk_dynamodb::primitives::Blob;
    use aws_sdk_dynamodb::types::AttributeValue;

    fn map(entries: &[(&str, AttributeValue)]) -> AttributeValue {
        AttributeValue::M(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    fn json(v: &AttributeValue, path: &str) -> Result<String, JsonError> {
        to_json(&Value::from_sdk(v), path)
    }

    fn round_trip(v: AttributeValue) {
        let text = json(&v, "a").unwrap();
        let back = decode(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert!(values_equal(&v, &back), "{v:?} -> {text} -> {back:?}");
    }

    /// `_overflow.item_key` rows written by earlier versions are matched by this text: it keeps
    /// their compact form and byte order of key names, whatever the layout of values.
    #[test]
    fn item_keys_keep_the_compact_form() {
        let item: std::collections::HashMap<String, AttributeValue> = [
            ("pk", AttributeValue::S("A\"b".into())),
            ("sk", AttributeValue::N("1.50".into())),
            ("id", AttributeValue::B(Blob::new(vec![1u8, 2]))),
            ("$t", AttributeValue::S("nul\0".into())),
            ("big", AttributeValue::N("1E-130".into())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let keys: Vec<String> = ["sk", "pk", "id", "$t", "big", "absent"]
            .iter()
            .map(|k| k.to_string())
            .collect();
        assert_eq!(
            item_key(&ItemView::from_sdk(&item), &keys),
            r#"{"$$t":{"$s64":"bnVsAA=="},"big":{"$n":"1E-130"},"id":{"$b":"AQI="},"pk":"A\"b","sk":1.5}"#
        );
    }

    #[test]
    fn every_type_round_trips() {
        use AttributeValue::*;
        round_trip(S("héllo \"quoted\" \\ \n".into()));
        round_trip(S(String::new()));
        round_trip(N("12345678901234567890123456789012345678".into()));
        round_trip(N("1E-130".into()));
        round_trip(N("-9.9999999999999999999999999999999999999E+125".into()));
        round_trip(Bool(true));
        round_trip(Null(true));
        round_trip(B(Blob::new(vec![0u8, 255, 128, 10])));
        round_trip(Ss(vec!["a".into(), "b".into()]));
        round_trip(Ns(vec!["1".into(), "2.5".into()]));
        round_trip(Bs(vec![Blob::new(vec![1u8]), Blob::new(vec![2u8, 3])]));
        round_trip(L(vec![S("x".into()), N("1".into()), L(vec![])]));
        round_trip(S("nul\0inside".into()));
    }

    /// Redshift's DECIMAL holds 38 digits with a scale of at most 37 (r_Numeric_types201): a
    /// number beyond that is a tagged string, so COPY never has to make one out of a JSON number.
    #[test]
    fn numbers_no_decimal_holds_are_tagged() {
        use AttributeValue::*;
        let widest = "12345678901234567890123456789012345678";
        assert_eq!(json(&N(widest.into()), "a").unwrap(), widest);
        let scale_37 = "0.1234567890123456789012345678901234567";
        assert_eq!(json(&N(scale_37.into()), "a").unwrap(), scale_37);
        for (n, tagged) in [
            ("1E-130", r#"{"$n": "1E-130"}"#),
            (
                "0.12345678901234567890123456789012345678",
                r#"{"$n": "0.12345678901234567890123456789012345678"}"#,
            ),
            (
                "1E+38",
                r#"{"$n": "100000000000000000000000000000000000000"}"#,
            ),
            (
                "-9.9999999999999999999999999999999999999E+125",
                r#"{"$n": "-9.9999999999999999999999999999999999999E+125"}"#,
            ),
            (
                "123456789012345678901234567890.123456789",
                r#"{"$n": "123456789012345678901234567890.123456789"}"#,
            ),
        ] {
            assert_eq!(json(&N(n.into()), "a").unwrap(), tagged, "{n}");
            round_trip(N(n.into()));
            assert_eq!(
                longest_string(&Value::from_sdk(&N(n.into()))),
                longest_in_text(tagged),
                "{n}"
            );
        }
        let set = Ns(vec!["1".into(), "1E+125".into()]);
        assert_eq!(
            json(&set, "a").unwrap(),
            format!(r#"{{"$ns": [1, {{"$n": "1E+125"}}]}}"#)
        );
        round_trip(set);
        round_trip(L(vec![N("1E-130".into()), N("2".into())]));
    }

    #[test]
    fn maps_that_look_like_tags_stay_maps() {
        round_trip(map(&[("$b", AttributeValue::S("not binary".into()))]));
        round_trip(map(&[
            ("$$x", AttributeValue::N("1".into())),
            ("y", AttributeValue::Bool(false)),
        ]));
        round_trip(map(&[(
            "nested",
            map(&[("$ss", AttributeValue::S("plain".into()))]),
        )]));
    }

    #[test]
    fn plain_values_stay_plain() {
        let v = map(&[
            ("n", AttributeValue::N("1.50".into())),
            ("s", AttributeValue::S("x".into())),
            ("l", AttributeValue::L(vec![AttributeValue::Bool(true)])),
        ]);
        assert_eq!(
            json(&v, "a").unwrap(),
            r#"{"l": [true], "n": 1.5, "s": "x"}"#
        );
        // Keys as `jsonb` orders them: by length, then by bytes (`$` keys with their extra `$`).
        let v = map(&[
            ("bb", AttributeValue::Bool(true)),
            ("c", AttributeValue::Null(true)),
            ("$a", AttributeValue::L(vec![])),
            ("ab", AttributeValue::M(Default::default())),
        ]);
        assert_eq!(
            json(&v, "a").unwrap(),
            r#"{"c": null, "ab": {}, "bb": true, "$$a": []}"#
        );
    }

    /// The longest string a JSON reader finds in `text`, keys included.
    fn longest_in_text(text: &str) -> usize {
        fn walk(v: &serde_json::Value) -> usize {
            match v {
                serde_json::Value::String(s) => s.len(),
                serde_json::Value::Array(a) => a.iter().map(walk).max().unwrap_or(0),
                serde_json::Value::Object(m) => m
                    .iter()
                    .map(|(k, v)| k.len().max(walk(v)))
                    .max()
                    .unwrap_or(0),
                _ => 0,
            }
        }
        walk(&serde_json::from_str(text).unwrap())
    }

    #[test]
    fn the_longest_string_is_measured_as_a_reader_sees_it() {
        use AttributeValue::*;
        let values = [
            S("a\"b\\c\u{1}".into()),
            S("nul\0inside and more".into()),
            B(Blob::new(vec![7u8; 100])),
            Ss(vec!["short".into(), "a longer one".into()]),
            Ns(vec!["1".into()]),
            Bs(vec![Blob::new(vec![1u8; 10])]),
            L(vec![S("é".repeat(40)), N("1".into())]),
            map(&[
                ("$a very long key indeed", Bool(true)),
                ("k", S("v".into())),
            ]),
            map(&[("deep", map(&[("x", B(Blob::new(vec![0u8; 33])))]))]),
            N("123".into()),
        ];
        for v in values {
            let text = json(&v, "a").unwrap();
            assert_eq!(
                longest_string(&Value::from_sdk(&v)),
                longest_in_text(&text),
                "{text}"
            );
        }
    }

    #[test]
    fn an_object_of_texts_is_the_object_of_the_values() {
        let a = AttributeValue::S("x".into());
        let b = AttributeValue::N("2".into());
        let mut texts = vec![
            ("zed", json(&b, "zed").unwrap()),
            ("$tag", json(&a, "$tag").unwrap()),
        ];
        let mut out = Vec::new();
        write_object_of_texts(&mut out, &mut texts).unwrap();
        let (va, vb) = (Value::from_sdk(&a), Value::from_sdk(&b));
        let mut direct = Vec::new();
        write_object(&mut direct, [("zed", &vb), ("$tag", &va)].into_iter(), "").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            String::from_utf8(direct).unwrap()
        );
    }

    #[test]
    fn nul_in_a_map_key_is_an_error_naming_the_path() {
        let v = map(&[("inner", map(&[("bad\0key", AttributeValue::Bool(true))]))]);
        let err = json(&v, "doc").unwrap_err();
        assert!(err.to_string().contains("doc.inner.bad"), "{err}");
    }
}
