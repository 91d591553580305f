//! Writing DynamoDB's JSON wire format (the inverse of `value::wire`): Scan response bodies for
//! replays, tests and benchmarks. Not part of the product.

use aws_sdk_dynamodb::types::AttributeValue;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;
use std::borrow::Cow;
use std::collections::HashMap;

use crate::value::{ItemView, Value};

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

/// `items` as the JSON array of DynamoDB JSON that a Scan response's `Items` holds.
pub fn items_json(items: &[HashMap<String, AttributeValue>]) -> String {
    let views: Vec<ItemView> = items.iter().map(ItemView::from_sdk).collect();
    serde_json::to_string(&views).expect("DynamoDB JSON always serialises")
}
