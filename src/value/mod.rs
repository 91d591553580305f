//! The bottom layer: DynamoDB values as phase 1 reads them, and their exact codecs.
//!
//! - [`Value`] / [`ItemView`]: an item borrowed from the Scan response body ([`wire`] parses
//!   DynamoDB's JSON into them), convertible to and from the SDK's `AttributeValue` maps;
//! - [`decimal`]: numbers as exact digits and a power of ten, never floating point;
//! - [`time`]: which strings are RFC 3339 timestamps both warehouses keep exactly;
//! - [`json`]: the tagged JSON text of values that land in JSON columns, and item keys.
//!
//! Why views: the SDK's `HashMap<String, AttributeValue>` costs an allocation per attribute name
//! and string value, and hashing every name; for the benchmark's items that was more CPU than
//! converting, writing and compressing them together. A page is kept as the bytes DynamoDB sent,
//! and a view's names and strings point into them (only strings with JSON escapes and binary
//! values are copied).

pub mod decimal;
pub mod json;
pub mod time;
pub mod wire;
pub mod wire_fast;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use std::borrow::Cow;
use std::collections::HashMap;

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

/// A DynamoDB item in the SDK's form (seeding, start keys, tests). Phase 1 converts
/// [`ItemView`]s borrowed from the Scan pages instead.
pub type Item = HashMap<String, AttributeValue>;
