//! Parsing DynamoDB's JSON wire format into [`ItemView`]s that borrow from the input.
//!
//! Every value is an object with exactly one type key (`S`, `N`, `B`, `BOOL`, `NULL`, `SS`, `NS`,
//! `BS`, `L`, `M`). A type key this version does not know becomes [`Value::Unknown`], so the item
//! is rejected by key rather than failing the page.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use super::{ItemView, Value};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::decode::items_equal;
    use crate::testkit::fixtures::{adversarial_items, bench_items};

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
