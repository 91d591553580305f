//! Items as phase 1 reads them: views borrowed from the Scan response body.
//!
//! The SDK's `HashMap<String, AttributeValue>` costs an allocation per attribute name and string
//! value, and hashing every name: for the benchmark's items that was more CPU than converting,
//! writing and compressing them together. A Scan page is instead kept as the bytes DynamoDB sent
//! and parsed into [`ItemView`]s whose names and strings point into those bytes (only strings with
//! JSON escapes and binary values are copied). The transform and schema inference read these
//! views; seeding and tests build the SDK's types and convert with [`ItemView::from_sdk`] and
//! [`ItemView::to_sdk`].
//!
//! The wire format is DynamoDB's JSON: every value an object with exactly one type key (`S`, `N`,
//! `B`, `BOOL`, `NULL`, `SS`, `NS`, `BS`, `L`, `M`). A type key this version does not know becomes
//! [`Value::Unknown`], so the item is rejected by key (as the SDK's `Unknown` variant was) rather
//! than failing the page.

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;

/// One DynamoDB value. Strings and numbers borrow from the page where they can.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    S(Cow<'a, str>),
    /// The number's text exactly as DynamoDB sent it.
    N(Cow<'a, str>),
    B(Cow<'a, [u8]>),
    Bool(bool),
    Null,
    Ss(Vec<Cow<'a, str>>),
    Ns(Vec<Cow<'a, str>>),
    Bs(Vec<Cow<'a, [u8]>>),
    L(Vec<Value<'a>>),
    M(Vec<(Cow<'a, str>, Value<'a>)>),
    /// A type key this version does not know; carries the key for the rejection report.
    Unknown(String),
}

/// One item: its attributes in the order the page listed them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemView<'a> {
    pub attributes: Vec<(Cow<'a, str>, Value<'a>)>,
}

impl<'a> ItemView<'a> {
    /// The value of attribute `name`. A linear search: items have a few dozen attributes at most,
    /// and comparing short names beats hashing them.
    pub fn get(&self, name: &str) -> Option<&Value<'a>> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.attributes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.attributes.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value<'a>)> {
        self.attributes.iter().map(|(k, v)| (k.as_ref(), v))
    }

    /// The item's size as DynamoDB counts it (approximately: names plus values).
    pub fn size(&self) -> usize {
        self.iter().map(|(k, v)| k.len() + v.size()).sum()
    }

    /// A view of an SDK item (borrowing its strings and bytes).
    pub fn from_sdk(item: &'a HashMap<String, AttributeValue>) -> Self {
        ItemView {
            attributes: item
                .iter()
                .map(|(k, v)| (Cow::Borrowed(k.as_str()), Value::from_sdk(v)))
                .collect(),
        }
    }

    /// The SDK's form of this item (owned; for the scan's start key and for tests). The SDK
    /// cannot hold a value of a type this version does not know, so such values are left out.
    pub fn to_sdk(&self) -> HashMap<String, AttributeValue> {
        sdk_map(&self.attributes)
    }
}

impl<'a> Value<'a> {
    pub fn from_sdk(v: &'a AttributeValue) -> Self {
        let s = |x: &'a String| Cow::Borrowed(x.as_str());
        let b = |x: &'a Blob| Cow::Borrowed(x.as_ref());
        match v {
            AttributeValue::S(x) => Value::S(s(x)),
            AttributeValue::N(x) => Value::N(s(x)),
            AttributeValue::B(x) => Value::B(b(x)),
            AttributeValue::Bool(x) => Value::Bool(*x),
            AttributeValue::Null(_) => Value::Null,
            AttributeValue::Ss(x) => Value::Ss(x.iter().map(s).collect()),
            AttributeValue::Ns(x) => Value::Ns(x.iter().map(s).collect()),
            AttributeValue::Bs(x) => Value::Bs(x.iter().map(b).collect()),
            AttributeValue::L(x) => Value::L(x.iter().map(Value::from_sdk).collect()),
            AttributeValue::M(x) => Value::M(
                x.iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_str()), Value::from_sdk(v)))
                    .collect(),
            ),
            _ => Value::Unknown("unknown to the SDK".to_string()),
        }
    }

    /// Approximate stored size, per DynamoDB's item-size rules.
    pub fn size(&self) -> usize {
        let number = |n: &Cow<str>| n.len() / 2 + 1;
        match self {
            Value::S(s) => s.len(),
            Value::N(n) => number(n),
            Value::B(b) => b.len(),
            Value::Bool(_) | Value::Null => 1,
            Value::Ss(x) => x.iter().map(|s| s.len()).sum(),
            Value::Ns(x) => x.iter().map(number).sum(),
            Value::Bs(x) => x.iter().map(|b| b.len()).sum(),
            Value::L(x) => 3 + x.iter().map(|v| 1 + v.size()).sum::<usize>(),
            Value::M(m) => 3 + m.iter().map(|(k, v)| 1 + k.len() + v.size()).sum::<usize>(),
            Value::Unknown(_) => 0,
        }
    }

    /// The SDK's form of this value; `None` for a type this version does not know (the SDK
    /// cannot build one), and such values are left out of lists and maps.
    pub fn to_sdk(&self) -> Option<AttributeValue> {
        let s = |x: &Cow<str>| x.to_string();
        let b = |x: &Cow<[u8]>| Blob::new(x.to_vec());
        Some(match self {
            Value::S(x) => AttributeValue::S(s(x)),
            Value::N(x) => AttributeValue::N(s(x)),
            Value::B(x) => AttributeValue::B(b(x)),
            Value::Bool(x) => AttributeValue::Bool(*x),
            Value::Null => AttributeValue::Null(true),
            Value::Ss(x) => AttributeValue::Ss(x.iter().map(s).collect()),
            Value::Ns(x) => AttributeValue::Ns(x.iter().map(s).collect()),
            Value::Bs(x) => AttributeValue::Bs(x.iter().map(b).collect()),
            Value::L(x) => AttributeValue::L(x.iter().filter_map(Value::to_sdk).collect()),
            Value::M(x) => AttributeValue::M(sdk_map(x)),
            Value::Unknown(_) => return None,
        })
    }
}

fn sdk_map(attributes: &[(Cow<str>, Value)]) -> HashMap<String, AttributeValue> {
    attributes
        .iter()
        .filter_map(|(k, v)| Some((k.to_string(), v.to_sdk()?)))
        .collect()
}

// ---- parsing DynamoDB JSON ----

/// A string that borrows from the input when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(s.to_string())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V(PhantomData))
    }
}

/// Base64 text on the wire, bytes in memory.
struct Bytes64(Vec<u8>);

impl<'de> Deserialize<'de> for Bytes64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Bytes64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a base64 string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Bytes64, E> {
                BASE64
                    .decode(s)
                    .map(Bytes64)
                    .map_err(|e| E::custom(format!("binary value is not base64: {e}")))
            }
        }
        d.deserialize_str(V)
    }
}

/// A JSON array read element by element with `convert`, without an intermediate vector.
struct SeqOf<T, U, F>(F, PhantomData<(T, U)>);

impl<'de, T: Deserialize<'de>, U, F: Fn(T) -> U> de::DeserializeSeed<'de> for SeqOf<T, U, F> {
    type Value = Vec<U>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<U>, D::Error> {
        struct V<T, U, F>(F, PhantomData<(T, U)>);
        impl<'de, T: Deserialize<'de>, U, F: Fn(T) -> U> Visitor<'de> for V<T, U, F> {
            type Value = Vec<U>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<U>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(4));
                while let Some(x) = seq.next_element::<T>()? {
                    out.push((self.0)(x));
                }
                Ok(out)
            }
        }
        d.deserialize_seq(V(self.0, PhantomData))
    }
}

fn next_seq<'de, A, T, U>(m: &mut A, convert: impl Fn(T) -> U) -> Result<Vec<U>, A::Error>
where
    A: MapAccess<'de>,
    T: Deserialize<'de>,
{
    m.next_value_seed(SeqOf(convert, PhantomData))
}

impl<'de: 'a, 'a> Deserialize<'de> for Value<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Value<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a DynamoDB value (an object with one type key)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Value<'a>, A::Error> {
                let tag: Text = m
                    .next_key()?
                    .ok_or_else(|| de::Error::custom("a DynamoDB value with no type key"))?;
                let value = match tag.0.as_ref() {
                    "S" => Value::S(m.next_value::<Text>()?.0),
                    "N" => Value::N(m.next_value::<Text>()?.0),
                    "B" => Value::B(Cow::Owned(m.next_value::<Bytes64>()?.0)),
                    "BOOL" => Value::Bool(m.next_value()?),
                    "NULL" => {
                        if !m.next_value::<bool>()? {
                            return Err(de::Error::custom("NULL must be true"));
                        }
                        Value::Null
                    }
                    "SS" => Value::Ss(next_seq(&mut m, |t: Text<'a>| t.0)?),
                    "NS" => Value::Ns(next_seq(&mut m, |t: Text<'a>| t.0)?),
                    "BS" => Value::Bs(next_seq(&mut m, |b: Bytes64| Cow::Owned(b.0))?),
                    "L" => Value::L(next_seq(&mut m, |v: Value<'a>| v)?),
                    "M" => Value::M(m.next_value::<ItemView>()?.attributes),
                    other => {
                        m.next_value::<IgnoredAny>()?;
                        Value::Unknown(other.to_string())
                    }
                };
                if m.next_key::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom(format!(
                        "a DynamoDB value with more than one type key (the first is {})",
                        tag.0
                    )));
                }
                Ok(value)
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for ItemView<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = ItemView<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a DynamoDB item (an object of attributes)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<ItemView<'a>, A::Error> {
                let mut attributes = Vec::with_capacity(m.size_hint().unwrap_or(8));
                while let Some(name) = m.next_key::<Text>()? {
                    attributes.push((name.0, m.next_value::<Value>()?));
                }
                Ok(ItemView { attributes })
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

// ---- writing DynamoDB JSON (seeding replays, tests and benchmarks) ----

struct Base64Text<'b>(&'b [u8]);

impl Serialize for Base64Text<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64.encode(self.0))
    }
}

struct Set<'b, T>(&'b [T]);

impl<T: Serialize> Serialize for Set<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for x in self.0 {
            seq.serialize_element(x)?;
        }
        seq.end()
    }
}

impl Serialize for Value<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        match self {
            Value::S(x) => m.serialize_entry("S", x)?,
            Value::N(x) => m.serialize_entry("N", x)?,
            Value::B(x) => m.serialize_entry("B", &Base64Text(x))?,
            Value::Bool(x) => m.serialize_entry("BOOL", x)?,
            Value::Null => m.serialize_entry("NULL", &true)?,
            Value::Ss(x) => m.serialize_entry("SS", &Set(x))?,
            Value::Ns(x) => m.serialize_entry("NS", &Set(x))?,
            Value::Bs(x) => {
                let texts: Vec<Base64Text> = x.iter().map(|b| Base64Text(b)).collect();
                m.serialize_entry("BS", &Set(&texts))?
            }
            Value::L(x) => m.serialize_entry("L", &Set(x))?,
            Value::M(x) => m.serialize_entry("M", &Attributes(x))?,
            Value::Unknown(tag) => m.serialize_entry(tag, &true)?,
        }
        m.end()
    }
}

struct Attributes<'b, 'a>(&'b [(Cow<'a, str>, Value<'a>)]);

impl Serialize for Attributes<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl Serialize for ItemView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Attributes(&self.attributes).serialize(s)
    }
}

/// A Scan response body holding `items`, as DynamoDB would send it (for replays, tests and
/// benchmarks).
pub fn scan_response_json(items: &[HashMap<String, AttributeValue>]) -> Vec<u8> {
    let views: Vec<ItemView> = items.iter().map(ItemView::from_sdk).collect();
    serde_json::to_vec(&serde_json::json!({
        "Items": views,
        "Count": items.len(),
        "ScannedCount": items.len(),
    }))
    .expect("DynamoDB JSON always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{adversarial_items, bench_items};
    use crate::transform::items_equal;

    fn parse(json: &str) -> Result<ItemView<'_>, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn sdk_items_survive_the_wire_format() {
        let mut items = adversarial_items();
        items.extend(bench_items(300, 7));
        for item in &items {
            let json = serde_json::to_string(&ItemView::from_sdk(item)).unwrap();
            let back = parse(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert!(items_equal(&back.to_sdk(), item), "{json}");
        }
    }

    #[test]
    fn plain_strings_borrow_and_escaped_ones_are_decoded() {
        let item =
            parse(r#"{"a":{"S":"plain"},"b":{"S":"tab\there \u00e9"},"n":{"N":"1.50"}}"#).unwrap();
        assert!(matches!(
            item.get("a"),
            Some(Value::S(Cow::Borrowed("plain")))
        ));
        assert_eq!(item.get("b"), Some(&Value::S("tab\there é".into())));
        assert_eq!(item.get("n"), Some(&Value::N("1.50".into())));
        assert_eq!(item.get("missing"), None);
    }

    #[test]
    fn every_type_key_is_read() {
        let item = parse(
            r#"{"b":{"B":"AP8="},"t":{"BOOL":true},"z":{"NULL":true},"ss":{"SS":["x","y"]},
               "ns":{"NS":["1","2"]},"bs":{"BS":["AQ==",""]},"l":{"L":[{"S":"x"},{"L":[]}]},
               "m":{"M":{"k":{"N":"5"}}}}"#,
        )
        .unwrap();
        assert_eq!(item.get("b"), Some(&Value::B(Cow::Owned(vec![0, 255]))));
        assert_eq!(item.get("t"), Some(&Value::Bool(true)));
        assert_eq!(item.get("z"), Some(&Value::Null));
        assert_eq!(
            item.get("ss"),
            Some(&Value::Ss(vec!["x".into(), "y".into()]))
        );
        assert_eq!(
            item.get("ns"),
            Some(&Value::Ns(vec!["1".into(), "2".into()]))
        );
        assert_eq!(
            item.get("bs"),
            Some(&Value::Bs(vec![Cow::Owned(vec![1]), Cow::Owned(vec![])]))
        );
        assert_eq!(
            item.get("l"),
            Some(&Value::L(vec![Value::S("x".into()), Value::L(vec![])]))
        );
        assert_eq!(
            item.get("m"),
            Some(&Value::M(vec![("k".into(), Value::N("5".into()))]))
        );
    }

    #[test]
    fn an_unknown_type_key_is_kept_for_rejection() {
        let item = parse(r#"{"pk":{"S":"a"},"odd":{"VECTOR":[1,2]}}"#).unwrap();
        assert_eq!(item.get("odd"), Some(&Value::Unknown("VECTOR".into())));
    }

    #[test]
    fn malformed_values_are_errors() {
        for (json, expect) in [
            (r#"{"a":{}}"#, "no type key"),
            (r#"{"a":{"S":"x","N":"1"}}"#, "more than one type key"),
            (r#"{"a":{"B":"***"}}"#, "not base64"),
            (r#"{"a":{"NULL":false}}"#, "NULL must be true"),
            (r#"{"a":"bare"}"#, "DynamoDB value"),
            (r#"{"a":{"S":1}}"#, "a string"),
        ] {
            let err = parse(json).unwrap_err().to_string();
            assert!(err.contains(expect), "{json}: {err}");
        }
    }
}
