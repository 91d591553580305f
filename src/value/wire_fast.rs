//! The items of a Scan page read by hand: the same [`ItemView`]s as the serde path in [`super::wire`],
//! without serde's visitor machinery, which was most of the parse's cost (reading names and type
//! keys through `MapAccess`, a scratch buffer per string).
//!
//! It reads only what DynamoDB sends for the ten known types, and gives up ([`Unsure`]) on
//! anything else — an unknown type key, an empty or second type key, a string with an escape
//! sequence it cannot borrow, a binary value that is not base64, nesting deeper than it goes, or
//! any malformed JSON — so that [`items`] reads the page again with serde, whose result (or error
//! message) stands. Everything it accepts serde accepts as the same values; the tests compare the
//! two on adversarial pages and on every prefix and one-byte change of them.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use std::borrow::Cow;

use super::{ItemView, Value};

/// The fast reader gave up: serde decides.
#[derive(Debug)]
pub struct Unsure;

type Read<T> = Result<T, Unsure>;

/// Deeper lists and maps than this are left to serde (DynamoDB allows 32 levels).
const DEPTH: usize = 40;

/// The items of a JSON array of DynamoDB-JSON items; `None` when the fast reader was unsure,
/// and the caller must parse `text` with serde instead.
pub fn items(text: &str) -> Option<Vec<ItemView<'_>>> {
    let mut r = Reader {
        text,
        bytes: text.as_bytes(),
        at: 0,
    };
    let out = r.array_of_items().ok()?;
    r.ws();
    (r.at == r.bytes.len()).then_some(out)
}

struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    /// Skips whitespace, then takes `b`.
    fn expect(&mut self, b: u8) -> Read<()> {
        self.ws();
        if self.bytes.get(self.at) == Some(&b) {
            self.at += 1;
            Ok(())
        } else {
            Err(Unsure)
        }
    }

    /// Skips whitespace; true (and taken) when the next byte is `b`.
    fn take(&mut self, b: u8) -> bool {
        self.ws();
        if self.bytes.get(self.at) == Some(&b) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn array_of_items(&mut self) -> Read<Vec<ItemView<'a>>> {
        self.expect(b'[')?;
        let mut out = Vec::new();
        if self.take(b']') {
            return Ok(out);
        }
        loop {
            out.push(ItemView {
                attributes: self.attributes(0)?,
            });
            if self.take(b']') {
                return Ok(out);
            }
            self.expect(b',')?;
        }
    }

    /// `{"name": value, …}`: an item, or the content of an `M`.
    fn attributes(&mut self, depth: usize) -> Read<Vec<(Cow<'a, str>, Value<'a>)>> {
        self.expect(b'{')?;
        let mut out = Vec::with_capacity(16);
        if self.take(b'}') {
            return Ok(out);
        }
        loop {
            let name = self.string()?;
            self.expect(b':')?;
            out.push((name, self.value(depth)?));
            if self.take(b'}') {
                return Ok(out);
            }
            self.expect(b',')?;
        }
    }

    /// `{"T": …}` with exactly one known type key.
    fn value(&mut self, depth: usize) -> Read<Value<'a>> {
        if depth > DEPTH {
            return Err(Unsure);
        }
        self.expect(b'{')?;
        let tag = self.string()?;
        self.expect(b':')?;
        let value = match tag.as_ref() {
            "S" => Value::S(self.string()?),
            "N" => Value::N(self.string()?),
            "B" => Value::B(Cow::Owned(self.base64()?)),
            "BOOL" => Value::Bool(self.boolean()?),
            "NULL" => match self.boolean()? {
                true => Value::Null,
                false => return Err(Unsure),
            },
            "SS" => Value::Ss(self.array(|r| r.string())?),
            "NS" => Value::Ns(self.array(|r| r.string())?),
            "BS" => Value::Bs(self.array(|r| r.base64().map(Cow::Owned))?),
            "L" => Value::L(self.array(|r| r.value(depth + 1))?),
            "M" => Value::M(self.attributes(depth + 1)?),
            _ => return Err(Unsure),
        };
        self.expect(b'}')?;
        Ok(value)
    }

    fn array<T>(&mut self, mut element: impl FnMut(&mut Self) -> Read<T>) -> Read<Vec<T>> {
        self.expect(b'[')?;
        let mut out = Vec::with_capacity(4);
        if self.take(b']') {
            return Ok(out);
        }
        loop {
            out.push(element(self)?);
            if self.take(b']') {
                return Ok(out);
            }
            self.expect(b',')?;
        }
    }

    fn boolean(&mut self) -> Read<bool> {
        self.ws();
        let rest = &self.bytes[self.at..];
        if rest.starts_with(b"true") {
            self.at += 4;
            Ok(true)
        } else if rest.starts_with(b"false") {
            self.at += 5;
            Ok(false)
        } else {
            Err(Unsure)
        }
    }

    fn base64(&mut self) -> Read<Vec<u8>> {
        let text = self.string()?;
        BASE64.decode(text.as_bytes()).map_err(|_| Unsure)
    }

    /// A string without escapes, borrowed; one with escapes is decoded by serde_json (which
    /// checks them), and a control character makes the reader unsure, as JSON forbids it raw.
    fn string(&mut self) -> Read<Cow<'a, str>> {
        self.expect(b'"')?;
        let start = self.at;
        let end = start + special(&self.bytes[start..]).ok_or(Unsure)?;
        match self.bytes[end] {
            b'"' => {
                self.at = end + 1;
                // Both ends are ASCII quotes, so these are character boundaries.
                Ok(Cow::Borrowed(&self.text[start..end]))
            }
            b'\\' => {
                let mut stream = serde_json::Deserializer::from_str(&self.text[start - 1..])
                    .into_iter::<String>();
                let decoded = stream.next().ok_or(Unsure)?.map_err(|_| Unsure)?;
                self.at = start - 1 + stream.byte_offset();
                Ok(Cow::Owned(decoded))
            }
            _ => Err(Unsure),
        }
    }
}

/// Where the first quote, backslash or control character of `bytes` is: sixteen bytes at a time
/// with SSE2 (part of every x86-64 CPU), so that most strings of a page, names and short values,
/// take one step; eight at a time elsewhere.
fn special(bytes: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        let mut at = 0;
        while let Some(block) = bytes.get(at..at + 16) {
            // SAFETY: SSE2 is in the x86-64 baseline; the load reads the 16 bytes of `block`.
            let hits = unsafe {
                let v = _mm_loadu_si128(block.as_ptr() as *const __m128i);
                let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
                let slash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
                // Below 0x20, unsigned: the byte is its minimum with 0x1f.
                let low = _mm_set1_epi8(0x1f);
                let control = _mm_cmpeq_epi8(_mm_min_epu8(v, low), v);
                _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, slash), control)) as u32
            };
            if hits != 0 {
                return Some(at + hits.trailing_zeros() as usize);
            }
            at += 16;
        }
        special_swar(&bytes[at..]).map(|i| at + i)
    }
    #[cfg(not(target_arch = "x86_64"))]
    special_swar(bytes)
}

/// [`special`] eight bytes at a time, in a `u64`.
fn special_swar(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let word = u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        // A byte is zero in `x` exactly when the byte of `word` is the one sought; a byte below
        // 0x20 of `word` is one whose value minus 0x20 borrows. Both are the classic
        // "has a zero byte" test, exact for the lowest flagged byte.
        let quote = word ^ (ONES * u64::from(b'"'));
        let slash = word ^ (ONES * u64::from(b'\\'));
        let flags = (quote.wrapping_sub(ONES) & !quote)
            | (slash.wrapping_sub(ONES) & !slash)
            | (word.wrapping_sub(ONES * 0x20) & !word);
        let flags = flags & HIGHS;
        if flags != 0 {
            return Some(at + flags.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    bytes[at..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|i| at + i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::fixtures::{adversarial_items, bench_items, limit_items};
    use crate::testkit::wire::items_json;

    fn serde(text: &str) -> Option<Vec<ItemView<'_>>> {
        serde_json::from_str(text).ok()
    }

    #[test]
    fn special_finds_the_first_quote_backslash_or_control_byte() {
        for len in 0..40 {
            for at in 0..=len {
                for b in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                    let mut bytes = vec![b'a'; len];
                    // Bytes that look close to the sought ones must not be flagged.
                    for (i, x) in bytes.iter_mut().enumerate() {
                        *x = [b'a', b'#', b'!', 0x20, 0x7f, 0xc3, b']'][i % 7];
                    }
                    if at < len {
                        bytes[at] = b;
                    }
                    let want = (at < len).then_some(at);
                    assert_eq!(special(&bytes), want, "{len} {at} {b}");
                    assert_eq!(
                        special_swar(&bytes),
                        want,
                        "eight at a time: {len} {at} {b}"
                    );
                }
            }
        }
    }

    /// On the adversarial, limit and benchmark items (every type, escapes, multi-byte
    /// characters, deep nesting) the fast reader gives serde's items.
    #[test]
    fn reads_what_serde_reads() {
        let mut all = adversarial_items();
        all.extend(limit_items());
        all.extend(bench_items(500, 3));
        let text = items_json(&all);
        let fast = items(&text).expect("the fast reader reads DynamoDB's own JSON");
        assert_eq!(Some(fast), serde(&text));
        // With whitespace between every token, the same.
        let spaced: String = serde_json::to_string_pretty(
            &serde_json::from_str::<serde_json::Value>(&text).unwrap(),
        )
        .unwrap();
        assert_eq!(items(&spaced), serde(&spaced));
        assert!(items(&spaced).is_some());
    }

    /// Whatever the fast reader accepts, serde accepts as the same items: every prefix of a
    /// page, and the page with each byte changed to each of the bytes that matter to JSON.
    #[test]
    fn never_accepts_what_serde_refuses_or_reads_otherwise() {
        let some = adversarial_items();
        let text = items_json(&some[..12.min(some.len())]);
        let bytes = text.as_bytes();
        let mut accepted = 0;
        for cut in 0..bytes.len() {
            if let Ok(prefix) = std::str::from_utf8(&bytes[..cut]) {
                if let Some(fast) = items(prefix) {
                    assert_eq!(Some(fast), serde(prefix), "prefix {cut}");
                }
            }
        }
        for i in 0..bytes.len() {
            for b in [
                b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', b' ', b'\n', 0x01, b'a', b't',
            ] {
                let mut changed = bytes.to_vec();
                changed[i] = b;
                let Ok(changed) = std::str::from_utf8(&changed) else {
                    continue;
                };
                if let Some(fast) = items(changed) {
                    accepted += 1;
                    assert_eq!(Some(fast), serde(changed), "byte {i} made {b}: {changed}");
                }
            }
        }
        assert!(accepted > 0, "some changes keep the page valid");
    }

    #[test]
    fn is_unsure_where_serde_must_decide() {
        for text in [
            r#"[{"a":{"VECTOR":[1,2]}}]"#,
            r#"[{"a":{}}]"#,
            r#"[{"a":{"S":"x","N":"1"}}]"#,
            r#"[{"a":{"B":"***"}}]"#,
            r#"[{"a":{"NULL":false}}]"#,
            r#"[{"a":"bare"}]"#,
            r#"[{"a":{"S":1}}]"#,
            "[{\"a\":{\"S\":\"raw\ttab\"}}]",
            r#"[{"a":{"S":"x"}},]"#,
            r#"[{"a":{"S":"x"}}] x"#,
        ] {
            assert!(items(text).is_none(), "{text}");
        }
        let deep = format!(
            "[{{\"a\":{}{{\"S\":\"x\"}}{}}}]",
            "{\"L\":[".repeat(DEPTH + 2),
            "]}".repeat(DEPTH + 2)
        );
        assert!(items(&deep).is_none());
        assert!(
            serde(&deep).is_some(),
            "serde reads it, so the page still parses"
        );
    }
}
