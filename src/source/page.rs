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
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use super::skip;
use crate::value::ItemView;

/// Takes the body of a successful response for the caller and gives the SDK `{}` to deserialise.
/// One per request attempt: [`CaptureBody::take`] after `send()` returns.
#[derive(Debug, Clone, Default)]
pub struct CaptureBody {
    slot: Arc<Mutex<Option<Result<Bytes, Damaged>>>>,
}

/// A body whose CRC32 is not the one DynamoDB's `x-amz-crc32` header gives for it: damaged on
/// the way (the header is the CRC32 of the response body as sent,
/// <https://pkg.go.dev/github.com/aws/aws-sdk-go-v2/service/dynamodb/internal/customizations>).
/// Worth the request again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the response body's CRC32 is {found}, not the {declared} its x-amz-crc32 header gives: it was damaged on the way")]
pub struct Damaged {
    pub declared: u32,
    pub found: u32,
}

impl CaptureBody {
    /// The captured body of the last successful response, if any; an error when it does not
    /// match the checksum DynamoDB sent with it.
    pub fn take(&self) -> Option<Result<Bytes, Damaged>> {
        self.slot.lock().expect("capture lock").take()
    }
}

/// Checks `body` against the CRC32 its response declared, if it declared one. The items are no
/// longer parsed as the page arrives (only located, [`skip`]), so this is what tells a body
/// damaged in transit, which is retried, from one DynamoDB wrote wrong.
fn checked(body: Bytes, declared: Option<u32>) -> Result<Bytes, Damaged> {
    match declared {
        Some(declared) => {
            let found = crc32fast::hash(&body);
            if found == declared {
                Ok(body)
            } else {
                Err(Damaged { declared, found })
            }
        }
        None => Ok(body),
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
        // We ask for no content encoding, so the checksum is of the bytes that arrive.
        let crc32 = match response.headers().get("content-encoding") {
            None | Some("identity") => response
                .headers()
                .get("x-amz-crc32")
                .and_then(|v| v.trim().parse::<u32>().ok()),
            Some(_) => None,
        };
        let inner = std::mem::replace(response.body_mut(), SdkBody::taken());
        *response.body_mut() = SdkBody::from_body_1_x(Capturing {
            inner,
            buffer: bodies::take(expected),
            crc32,
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
    /// The body's CRC32 as the response declared it.
    crc32: Option<u32>,
    slot: Arc<Mutex<Option<Result<Bytes, Damaged>>>>,
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
                    let body = std::mem::take(&mut self.buffer).freeze();
                    *self.slot.lock().expect("capture lock") = Some(checked(body, self.crc32));
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"{}")))));
                }
            }
        }
    }
}

/// Buffers of page bodies used again. A page body (about 1 MB) is larger than the allocator's
/// mmap threshold (`main.rs`), so each new one was mapped afresh and its pages faulted in and
/// zeroed by the kernel, and copying into it ran on cold memory; a few kept buffers spare that.
mod bodies {
    use bytes::{Bytes, BytesMut};
    use std::sync::Mutex;

    /// Buffers kept: the pages a segment holds at once (in flight and in the transform) come
    /// back before the next ones are read.
    const KEPT: usize = 4;
    /// Smaller bodies are not worth keeping (the allocator reuses those itself).
    const SMALLEST: usize = 256 << 10;
    /// Larger buffers are let go, so that one outsized page does not stay resident.
    const LARGEST: usize = 4 << 20;

    pub struct Pool(Mutex<Vec<BytesMut>>);

    static BODIES: Pool = Pool::new();

    pub fn take(capacity: usize) -> BytesMut {
        BODIES.take(capacity)
    }

    pub fn give_back(body: Bytes) {
        BODIES.give_back(body)
    }

    impl Pool {
        pub const fn new() -> Pool {
            Pool(Mutex::new(Vec::new()))
        }

        /// An empty buffer of at least `capacity` bytes: a kept one if one is large enough.
        pub fn take(&self, capacity: usize) -> BytesMut {
            if capacity >= SMALLEST {
                let mut kept = self.0.lock().expect("body pool lock");
                if let Some(i) = kept.iter().position(|b| b.capacity() >= capacity) {
                    return kept.swap_remove(i);
                }
            }
            BytesMut::with_capacity(capacity)
        }

        /// Keeps `body`'s buffer for a later page when nothing else holds it.
        pub fn give_back(&self, body: Bytes) {
            if body.len() < SMALLEST {
                return;
            }
            if let Ok(mut buffer) = body.try_into_mut() {
                if buffer.capacity() > LARGEST {
                    return;
                }
                buffer.clear();
                let mut kept = self.0.lock().expect("body pool lock");
                if kept.len() < KEPT {
                    kept.push(buffer);
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_body_nothing_else_holds_is_used_again() {
            let pool = Pool::new();
            let mut first = pool.take(1 << 20);
            first.extend_from_slice(&vec![7u8; 1 << 20]);
            let body = first.freeze();
            let place = body.as_ptr();
            // Still shared: not kept.
            let other = body.clone();
            pool.give_back(body);
            assert_ne!(pool.take(1 << 20).as_ptr(), place);
            pool.give_back(other);
            let again = pool.take(1000 << 10);
            assert_eq!(again.as_ptr(), place);
            assert!(again.is_empty() && again.capacity() >= 1 << 20);
            // Too small to keep, too large to keep, or more than KEPT: let go.
            pool.give_back(Bytes::from(vec![1u8; 1000]));
            pool.give_back(Bytes::from(vec![1u8; LARGEST + 1]));
            for _ in 0..KEPT + 2 {
                pool.give_back(Bytes::from(vec![1u8; SMALLEST]));
            }
            assert_eq!(pool.0.lock().unwrap().len(), KEPT);
            assert!(pool
                .0
                .lock()
                .unwrap()
                .iter()
                .all(|b| b.capacity() == SMALLEST));
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
struct Capacity {
    #[serde(rename = "CapacityUnits", default)]
    capacity_units: Option<f64>,
}

/// The envelope's fields, read by [`envelope`].
#[derive(Default)]
struct Envelope<'a> {
    /// Where the `Items` array lies in the body.
    items: Option<Range<usize>>,
    count: u64,
    scanned_count: u64,
    last_evaluated_key: Option<&'a str>,
    capacity_units: Option<f64>,
}

fn invalid(what: impl fmt::Display) -> serde_json::Error {
    <serde_json::Error as serde::de::Error>::custom(what)
}

/// Reads a Scan response's top-level object: its small fields with serde_json, its `Items`
/// array only located ([`skip::array_end`]), since the transform thread parses and validates
/// the items anyway. Letting serde_json skip the array cost about a tenth of phase 1's CPU.
fn envelope(body: &[u8]) -> Result<Envelope<'_>, serde_json::Error> {
    let ws = |mut at: usize| {
        while body.get(at).is_some_and(|b| b.is_ascii_whitespace()) {
            at += 1;
        }
        at
    };
    // One JSON value at `at`, and where it ends.
    let value = |at: usize| -> Result<(&RawValue, usize), serde_json::Error> {
        let mut stream = serde_json::Deserializer::from_slice(&body[at..]).into_iter::<&RawValue>();
        match stream.next() {
            Some(Ok(raw)) => Ok((raw, at + stream.byte_offset())),
            Some(Err(e)) => Err(e),
            None => Err(invalid("the response ends where a value was expected")),
        }
    };
    let mut out = Envelope::default();
    let mut seen: Vec<String> = Vec::new();
    let mut at = ws(0);
    if body.get(at) != Some(&b'{') {
        return Err(invalid("the response is not a JSON object"));
    }
    at = ws(at + 1);
    if body.get(at) == Some(&b'}') {
        at += 1;
    } else {
        loop {
            let (key, after) = value(at)?;
            let key: String = serde_json::from_str(key.get())?;
            at = ws(after);
            if body.get(at) != Some(&b':') {
                return Err(invalid(format!("no ':' after the key {key:?}")));
            }
            at = ws(at + 1);
            if seen.contains(&key) {
                return Err(invalid(format!("the key {key:?} appears twice")));
            }
            if key == "Items" && body.get(at) == Some(&b'[') {
                let end = skip::array_end(body, at)
                    .ok_or_else(|| invalid("the Items array does not end"))?;
                out.items = Some(at..end);
                at = end;
            } else {
                let (raw, after) = value(at)?;
                let text = raw.get();
                match key.as_str() {
                    "Items" => {
                        // Anything but an array: null is none, the rest an error.
                        let none: Option<()> = serde_json::from_str(text)
                            .map_err(|_| invalid("Items is not an array"))?;
                        debug_assert!(none.is_none());
                    }
                    "Count" => out.count = serde_json::from_str(text)?,
                    "ScannedCount" => out.scanned_count = serde_json::from_str(text)?,
                    "LastEvaluatedKey" => {
                        out.last_evaluated_key = Some(text).filter(|t| *t != "null")
                    }
                    "ConsumedCapacity" => {
                        let capacity: Option<Capacity> = serde_json::from_str(text)?;
                        out.capacity_units = capacity.and_then(|c| c.capacity_units);
                    }
                    _ => {}
                }
                at = after;
            }
            seen.push(key);
            at = ws(at);
            match body.get(at) {
                Some(b',') => at = ws(at + 1),
                Some(b'}') => {
                    at += 1;
                    break;
                }
                _ => return Err(invalid("expected ',' or '}' in the response object")),
            }
        }
    }
    if ws(at) != body.len() {
        return Err(invalid("trailing characters after the response object"));
    }
    Ok(out)
}

impl RawPage {
    /// Reads the envelope of a Scan response body. The items are only located here;
    /// [`RawPage::items`] parses and checks them.
    pub fn split(body: Bytes) -> Result<(RawPage, PageMeta), serde_json::Error> {
        let envelope = envelope(&body)?;
        let last_key = match envelope.last_evaluated_key {
            Some(raw) => Some((raw.to_string(), parse_key(raw)?)),
            None => None,
        }
        .filter(|(_, k)| !k.is_empty());
        let meta = PageMeta {
            count: envelope.count,
            scanned_count: envelope.scanned_count.max(envelope.count),
            last_evaluated_key: last_key.as_ref().map(|(_, k)| k.clone()),
            capacity_units: envelope.capacity_units,
        };
        let page = RawPage {
            count: envelope.count,
            items: envelope.items.unwrap_or(0..0),
            body,
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
        // Read by hand where it can be; serde decides the rest, and says what is wrong.
        let items: Vec<ItemView> = match crate::value::wire_fast::items(text) {
            Some(items) => items,
            None => serde_json::from_str(text)
                .map_err(|e| PageError(format!("its items are not DynamoDB JSON: {e}")))?,
        };
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

impl Drop for RawPage {
    fn drop(&mut self) {
        bodies::give_back(std::mem::take(&mut self.body));
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

    /// DynamoDB Local's own answer to a Scan, with its `x-amz-crc32` header, checks out; the
    /// same body with one byte changed does not, and a response without the header is taken as
    /// it is.
    #[test]
    fn a_body_is_checked_against_the_crc32_its_response_declares() {
        let body =
            Bytes::from_static(br#"{"Items":[{"pk":{"S":"a"}}],"Count":1,"ScannedCount":1}"#);
        let declared = crc32fast::hash(&body);
        assert_eq!(checked(body.clone(), Some(declared)), Ok(body.clone()));
        let mut damaged = body.to_vec();
        damaged[12] ^= 0x01;
        let err = checked(Bytes::from(damaged.clone()), Some(declared)).unwrap_err();
        assert_eq!(err.declared, declared);
        assert!(err.to_string().contains("damaged on the way"), "{err}");
        assert!(checked(Bytes::from(damaged), None).is_ok());
        // The CRC-32 of the standard check string (ISO-HDLC, as zlib and DynamoDB compute it).
        assert_eq!(crc32fast::hash(b"123456789"), 0xcbf4_3926);
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

    /// The page's items parse as `items`, one for one.
    fn assert_holds(page: &RawPage, items: &[crate::value::Item]) {
        let parsed = page.items().unwrap();
        assert_eq!(parsed.len(), items.len());
        assert!(parsed
            .iter()
            .zip(items)
            .all(|(p, i)| items_equal(&p.to_sdk(), i)));
    }

    #[test]
    fn generated_pages_round_trip() {
        let items = bench_items(500, 3);
        let (page, meta) = RawPage::split(scan_response_json(&items).into()).unwrap();
        assert_eq!(meta.count, 500);
        assert_holds(&page, &items);
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

    /// The envelope as serde_json reads it whole: what [`envelope`] must agree with.
    #[derive(Deserialize)]
    struct Whole<'a> {
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

    /// Pages of the adversarial, limit and benchmark items (strings full of brackets, quotes,
    /// backslashes and multi-byte characters), with the envelope's keys in every order and
    /// whitespace between tokens: the envelope read is serde_json's, and the items parse alike.
    #[test]
    fn the_envelope_is_read_as_serde_json_reads_it() {
        use crate::testkit::fixtures::{adversarial_items, limit_items};
        let mut items = adversarial_items();
        items.extend(limit_items());
        items.extend(bench_items(300, 5));
        let array = crate::testkit::wire::items_json(&items);
        let fields = [
            format!("\"Items\" : {array}"),
            format!("\"Count\":{}", items.len()),
            "\"ScannedCount\": 900".to_string(),
            r#""LastEvaluatedKey":{"pk":{"S":"a]\"["},"sk":{"S":"\\"}}"#.to_string(),
            r#""ConsumedCapacity":{"TableName":"t","CapacityUnits":2.5}"#.to_string(),
            r#""Unknown":[{"x":"]"}]"#.to_string(),
        ];
        for rotation in 0..fields.len() {
            let mut order = fields.clone();
            order.rotate_left(rotation);
            if rotation % 2 == 1 {
                order.reverse();
            }
            let body = format!("\n{{ {} }}\n", order.join(" ,\n"));
            let whole: Whole = serde_json::from_str(&body).unwrap();
            let (page, meta) = RawPage::split(Bytes::from(body.clone())).unwrap();
            assert_eq!(
                std::str::from_utf8(page.items_json()).unwrap(),
                whole.items.unwrap().get()
            );
            assert_eq!(
                (meta.count, meta.scanned_count),
                (whole.count, whole.scanned_count)
            );
            assert_eq!(
                page.last_key.as_deref(),
                whole.last_evaluated_key.map(|k| k.get())
            );
            assert_eq!(
                meta.capacity_units,
                whole.consumed_capacity.and_then(|c| c.capacity_units)
            );
            assert_holds(&page, &items);
        }
    }

    /// What serde_json refuses in an envelope, the reader refuses too; Items that are null or
    /// absent are no items.
    #[test]
    fn malformed_envelopes_are_errors() {
        for bad in [
            "",
            "[]",
            r#"{"Items":[{"pk":{"S":"a"}}]"#,
            r#"{"Items":[{"pk":{"S":"a"}}],}"#,
            r#"{"Items":[],"Count":1} x"#,
            r#"{"Items":[],"Items":[]}"#,
            r#"{"Items":{}}"#,
            r#"{"Count":"two","Items":[]}"#,
            r#"{"Count" 2}"#,
            r#"{"LastEvaluatedKey":{"pk":}}"#,
        ] {
            assert!(RawPage::split(Bytes::from(bad)).is_err(), "{bad}");
        }
        for none in [r#"{"Items":null,"Count":0}"#, r#"{ }"#, r#"{"Count":0}"#] {
            let (page, meta) = RawPage::split(Bytes::from(none)).unwrap();
            assert!(page.items().unwrap().is_empty() && meta.last_evaluated_key.is_none());
        }
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
