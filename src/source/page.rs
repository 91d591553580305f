//! Scan pages kept as the bytes DynamoDB sent.
//!
//! The SDK still builds, signs and sends each Scan request (endpoint, credentials, timeouts and
//! error responses stay its business), but for a successful response the [`CaptureBody`]
//! interceptor takes the body before the SDK deserialises it and hands the SDK an empty object
//! instead. [`RawPage::split`] then reads only the page's envelope (count, last key, consumed
//! capacity) on the scan's task and leaves the `Items` array as a byte range; the transform thread
//! parses that range into [`ItemView`]s with [`RawPage::items`], so items are allocated and freed
//! on the same thread and the scan task goes straight on to the next request.

use aws_sdk_dynamodb::config::interceptors::BeforeDeserializationInterceptorContextMut;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_types::body::SdkBody;
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use serde::Deserialize;
use std::collections::HashMap;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use crate::value::ItemView;

/// Takes the body of a successful response for the caller and gives the SDK `{}` to deserialise.
/// One per request attempt: [`CaptureBody::take`] after `send()` returns.
#[derive(Debug, Clone, Default)]
pub struct CaptureBody {
    slot: Arc<Mutex<Option<Bytes>>>,
}

impl CaptureBody {
    /// The captured body of the last successful response, if any.
    pub fn take(&self) -> Option<Bytes> {
        self.slot.lock().expect("capture lock").take()
    }
}

impl Intercept for CaptureBody {
    fn name(&self) -> &'static str {
        "CaptureBody"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let response = context.response_mut();
        if !response.status().is_success() {
            // Errors stay the SDK's to parse into typed service errors.
            return Ok(());
        }
        let expected = response
            .headers()
            .get("content-length")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        let inner = std::mem::replace(response.body_mut(), SdkBody::taken());
        *response.body_mut() = SdkBody::from_body_1_x(Capturing {
            inner,
            buffer: BytesMut::with_capacity(expected),
            slot: self.slot.clone(),
            finished: false,
        });
        Ok(())
    }
}

/// A body that collects its inner body's bytes into the slot and yields `{}` at the end.
struct Capturing {
    inner: SdkBody,
    buffer: BytesMut,
    slot: Arc<Mutex<Option<Bytes>>>,
    finished: bool,
}

impl Body for Capturing {
    type Data = Bytes;
    type Error = aws_smithy_types::body::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        loop {
            if self.finished {
                return Poll::Ready(None);
            }
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        self.buffer.extend_from_slice(data);
                    }
                }
                Poll::Ready(None) => {
                    self.finished = true;
                    let body = self.buffer.split().freeze();
                    *self.slot.lock().expect("capture lock") = Some(body);
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"{}")))));
                }
            }
        }
    }
}

/// The envelope of a Scan page, everything but the items.
#[derive(Debug, Default)]
pub struct PageMeta {
    /// Items in the page (`Count`).
    pub count: u64,
    /// Items read to produce the page (`ScannedCount`; equals `count` without a filter).
    pub scanned_count: u64,
    /// Where the next page starts; `None` at the end of the segment.
    pub last_evaluated_key: Option<HashMap<String, AttributeValue>>,
    /// Consumed read units, when DynamoDB reported them.
    pub capacity_units: Option<f64>,
}

/// A Scan page's body with the byte range of its `Items` array.
#[derive(Debug, Clone)]
pub struct RawPage {
    body: Bytes,
    items: Range<usize>,
    /// `Count` of the envelope, checked against the parsed items.
    count: u64,
    /// The page's `LastEvaluatedKey` as DynamoDB sent it (DynamoDB JSON), `None` on the last
    /// page: where a scan resumed after this page starts.
    pub last_key: Option<String>,
    /// Read units the page consumed (set by the scan once it knows them).
    pub read_units: f64,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "Items", borrow, default)]
    items: Option<&'a serde_json::value::RawValue>,
    #[serde(rename = "Count", default)]
    count: u64,
    #[serde(rename = "ScannedCount", default)]
    scanned_count: u64,
    #[serde(rename = "LastEvaluatedKey", borrow, default)]
    last_evaluated_key: Option<&'a serde_json::value::RawValue>,
    #[serde(rename = "ConsumedCapacity", default)]
    consumed_capacity: Option<Capacity>,
}

#[derive(Deserialize)]
struct Capacity {
    #[serde(rename = "CapacityUnits", default)]
    capacity_units: Option<f64>,
}

impl RawPage {
    /// Reads the envelope of a Scan response body. The items are only checked to be well-formed
    /// JSON here; [`RawPage::items`] parses them.
    pub fn split(body: Bytes) -> Result<(RawPage, PageMeta), serde_json::Error> {
        let envelope: Envelope = serde_json::from_slice(&body)?;
        let items = match envelope.items {
            Some(raw) => {
                let start = raw.get().as_ptr() as usize - body.as_ptr() as usize;
                start..start + raw.get().len()
            }
            None => 0..0,
        };
        let last_key = match envelope.last_evaluated_key {
            Some(raw) => Some((raw.get().to_string(), parse_key(raw.get())?)),
            None => None,
        }
        .filter(|(_, k)| !k.is_empty());
        let meta = PageMeta {
            count: envelope.count,
            scanned_count: envelope.scanned_count.max(envelope.count),
            last_evaluated_key: last_key.as_ref().map(|(_, k)| k.clone()),
            capacity_units: envelope.consumed_capacity.and_then(|c| c.capacity_units),
        };
        let page = RawPage {
            count: envelope.count,
            body,
            items,
            last_key: last_key.map(|(text, _)| text),
            read_units: 0.0,
        };
        Ok((page, meta))
    }

    /// A page of `count` items given as a JSON array of DynamoDB-JSON items (`[{…},{…}]`), as
    /// an export's data files hold them; it has no resume key.
    pub fn of_items(array: Bytes, count: u64) -> RawPage {
        RawPage {
            items: 0..array.len(),
            body: array,
            count,
            last_key: None,
            read_units: 0.0,
        }
    }

    /// The page's items as the JSON array it holds.
    pub fn items_json(&self) -> &[u8] {
        &self.body[self.items.clone()]
    }

    /// Items in the page, as the envelope counts them.
    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Size of the items' JSON text: an upper bound of their DynamoDB size.
    pub fn items_bytes(&self) -> usize {
        self.items.len()
    }

    /// Parses the page's items; their strings borrow from the page.
    pub fn items(&self) -> Result<Vec<ItemView<'_>>, PageError> {
        if self.items.is_empty() {
            return if self.count == 0 {
                Ok(Vec::new())
            } else {
                Err(PageError(format!(
                    "the page counts {} items but has no Items array",
                    self.count
                )))
            };
        }
        // Checked as UTF-8 once, in bulk, so that the parser need not check each string again
        // (reading a `&str`, serde_json trusts it; reading bytes, it validates string by string).
        let text = std::str::from_utf8(&self.body[self.items.clone()])
            .map_err(|e| PageError(format!("its items are not UTF-8 text: {e}")))?;
        let items: Vec<ItemView> = serde_json::from_str(text)
            .map_err(|e| PageError(format!("its items are not DynamoDB JSON: {e}")))?;
        if items.len() as u64 != self.count {
            return Err(PageError(format!(
                "the page counts {} items but holds {}",
                self.count,
                items.len()
            )));
        }
        Ok(items)
    }
}

/// A key in DynamoDB JSON (a page's `LastEvaluatedKey`, or a checkpoint's copy of one) in the
/// SDK's form, for `ExclusiveStartKey`.
pub fn parse_key(text: &str) -> Result<HashMap<String, AttributeValue>, serde_json::Error> {
    let key: ItemView = serde_json::from_str(text)?;
    Ok(key.to_sdk())
}

/// A page whose items cannot be read. Says what is wrong; the caller names table and segment.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct PageError(pub String);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::decode::items_equal;
    use crate::testkit::fixtures::bench_items;
    use crate::testkit::wire::scan_response_json;

    #[test]
    fn splits_the_envelope_from_the_items() {
        let body = br#"{"Items":[{"pk":{"S":"a"}},{"pk":{"S":"b"},"LastEvaluatedKey":{"S":"x"}}],
            "Count":2,"ScannedCount":3,"LastEvaluatedKey":{"pk":{"S":"b"}},
            "ConsumedCapacity":{"TableName":"t","CapacityUnits":1.5}}"#;
        let (page, meta) = RawPage::split(Bytes::from_static(body)).unwrap();
        assert_eq!((meta.count, meta.scanned_count), (2, 3));
        assert_eq!(meta.capacity_units, Some(1.5));
        assert_eq!(
            meta.last_evaluated_key.unwrap()["pk"],
            AttributeValue::S("b".into())
        );
        let items = page.items().unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(
            items[1].get("LastEvaluatedKey"),
            Some(&crate::value::Value::S("x".into())),
            "an attribute named like an envelope field stays in its item"
        );
    }

    #[test]
    fn the_last_page_has_no_key() {
        let (page, meta) = RawPage::split(Bytes::from_static(
            br#"{"Items":[],"Count":0,"ScannedCount":0}"#,
        ))
        .unwrap();
        assert!(meta.last_evaluated_key.is_none());
        assert!(page.items().unwrap().is_empty());
    }

    #[test]
    fn generated_pages_round_trip() {
        let items = bench_items(500, 3);
        let (page, meta) = RawPage::split(scan_response_json(&items).into()).unwrap();
        assert_eq!(meta.count, 500);
        let parsed = page.items().unwrap();
        assert!(parsed
            .iter()
            .zip(&items)
            .all(|(p, i)| items_equal(&p.to_sdk(), i)));
    }

    /// Items are checked as UTF-8 in bulk before they are parsed: bytes that are not UTF-8
    /// inside a string (an export file can hold anything) make the page an error, never text.
    #[test]
    fn items_that_are_not_utf8_are_an_error() {
        let mut array = br#"[{"pk":{"S":"a"#.to_vec();
        array.push(0xff);
        array.extend_from_slice(br#""}}]"#);
        let page = RawPage::of_items(Bytes::from(array), 1);
        let error = page.items().map(|_| ()).unwrap_err();
        assert!(error.0.contains("not UTF-8"), "{}", error.0);
        let fine = RawPage::of_items(Bytes::from_static(br#"[{"pk":{"S":"\u00e9 \"q\""}}]"#), 1);
        let items = fine.items().unwrap();
        assert_eq!(
            items[0].get("pk"),
            Some(&crate::value::Value::S("é \"q\"".into()))
        );
    }

    #[test]
    fn a_count_that_disagrees_with_the_items_is_an_error() {
        let (page, _) = RawPage::split(Bytes::from_static(
            br#"{"Items":[{"pk":{"S":"a"}}],"Count":2,"ScannedCount":2}"#,
        ))
        .unwrap();
        let err = page.items().unwrap_err().to_string();
        assert!(err.contains("counts 2 items but holds 1"), "{err}");
        assert!(RawPage::split(Bytes::from_static(br#"{"Items":[{"pk":"#)).is_err());
    }
}
