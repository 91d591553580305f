//! Fingerprints of what phase 1 wrote, so that the warehouse can prove it holds exactly that.
//!
//! Per table: the rows; per column, the non-NULL values and a *digest*; and one row digest over
//! all columns. A value's hash is the first 60 bits of the MD5 of its canonical rendering (below),
//! read as an unsigned number; a digest is the exact sum of those hashes. A sum does not depend on
//! the order of the rows and adds up: parts into their segment's manifest, segments into the
//! run. The row digest hashes, per row, the 15 hex digits of every column's value hash (`n` for
//! NULL) in column order, so values swapped between rows, or a row deleted while another is
//! duplicated, change it even when every column digest stays the same.
//!
//! Canonical renderings, by logical type (each dialect reproduces them from the stored value, see
//! `warehouse::fingerprint`; `FORMAT.md` beside this file specifies them):
//!
//! | type | rendering |
//! |---|---|
//! | `bigint` | the integer in decimal, `-` for negatives |
//! | `decimal` | the exact value, plain, without trailing fraction zeros (`12.5`, `0`, `-0.01`) |
//! | `numeric_text`, `text` | the UTF-8 bytes of the text |
//! | `timestamp` | microseconds since 1970-01-01T00:00:00Z, in decimal |
//! | `boolean` | `true` / `false` |
//! | `binary` | the bytes |
//! | `json` | the text PostgreSQL's `jsonb` prints for it (keys by length then bytes, `", "` and `": "`): the text phase 1 writes, as it is (`value::json` writes that form) |

use super::md5_lanes;
use serde::{Deserialize, Serialize};
use std::fmt;

use crate::schema::limits::{BinaryText, Limits};
use crate::schema::{DataSchema, LogicalType, EXTRA_COLUMN};
use crate::value::decimal::{self, Decimal};

/// The version of the renderings and hashes above; a manifest records it, and a reader that does
/// not know it treats the segment as not fingerprinted.
pub const FINGERPRINT_METHOD: u32 = 1;

/// An exact sum of 60-bit value hashes. Written as a decimal string: JSON readers outside Rust
/// keep no integer this wide exactly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Digest(pub u128);

impl Digest {
    pub fn add(&mut self, hash: u64) {
        self.0 = self.0.wrapping_add(u128::from(hash));
    }
    pub fn merge(&mut self, other: Digest) {
        self.0 = self.0.wrapping_add(other.0);
    }
    /// Takes away the hashes `other` sums (rows that are gone).
    pub fn remove(&mut self, other: Digest) {
        self.0 = self.0.wrapping_sub(other.0);
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for Digest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.trim()
            .parse::<u128>()
            .map(Digest)
            .map_err(|_| format!("{s:?} is not a digest (a non-negative decimal integer)"))
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One column's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnFingerprint {
    pub column: String,
    pub non_null: u64,
    /// Absent for a column the run's warehouse checks by its counts only (phase 1 does not
    /// spend a hash on it), and for a sum over parts of which one lacks it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
}

/// One table's figures, over a part, a segment or a whole run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fingerprint {
    pub rows: u64,
    /// Absent when some column's digest is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_digest: Option<Digest>,
    /// In the table's column order, `_extra` last where the table has it.
    pub columns: Vec<ColumnFingerprint>,
}

impl Fingerprint {
    /// The figures of no rows for columns `names`, every one digested.
    pub fn empty<S: AsRef<str>>(names: &[S]) -> Fingerprint {
        Fingerprint {
            rows: 0,
            row_digest: Some(Digest::default()),
            columns: names
                .iter()
                .map(|n| ColumnFingerprint {
                    column: n.as_ref().to_string(),
                    non_null: 0,
                    digest: Some(Digest::default()),
                })
                .collect(),
        }
    }

    /// Adds `other`'s rows: columns are matched by name, and one only `other` has is appended.
    /// A digest either side lacks is absent from the sum.
    pub fn add(&mut self, other: &Fingerprint) {
        self.rows += other.rows;
        self.row_digest = sum(self.row_digest, other.row_digest);
        for theirs in &other.columns {
            match self.columns.iter_mut().find(|c| c.column == theirs.column) {
                Some(ours) => {
                    ours.non_null += theirs.non_null;
                    ours.digest = sum(ours.digest, theirs.digest);
                }
                None => self.columns.push(theirs.clone()),
            }
        }
    }

    /// Takes away `gone`'s rows (a subset of these): the figures of what is left.
    pub fn remove(&mut self, gone: &Fingerprint) {
        let less = |a: Option<Digest>, b: Option<Digest>| {
            let (mut a, b) = (a?, b?);
            a.remove(b);
            Some(a)
        };
        self.rows = self.rows.saturating_sub(gone.rows);
        self.row_digest = less(self.row_digest, gone.row_digest);
        for ours in &mut self.columns {
            if let Some(theirs) = gone.column(&ours.column) {
                ours.non_null = ours.non_null.saturating_sub(theirs.non_null);
                ours.digest = less(ours.digest, theirs.digest);
            }
        }
    }

    pub fn column(&self, name: &str) -> Option<&ColumnFingerprint> {
        self.columns.iter().find(|c| c.column == name)
    }
}

fn sum(a: Option<Digest>, b: Option<Digest>) -> Option<Digest> {
    let (mut a, b) = (a?, b?);
    a.merge(b);
    Some(a)
}

/// How a column's CSV text is turned into its canonical rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rendering {
    Integer,
    Decimal,
    Bytes,
    Timestamp,
    Binary(BinaryText),
}

impl Rendering {
    fn of(t: LogicalType, binary: BinaryText) -> Rendering {
        match t {
            LogicalType::Bigint => Rendering::Integer,
            LogicalType::Decimal { .. } => Rendering::Decimal,
            // Phase 1 writes JSON in the form `jsonb` prints (`value::json`).
            LogicalType::NumericText
            | LogicalType::Text { .. }
            | LogicalType::Boolean
            | LogicalType::Json => Rendering::Bytes,
            LogicalType::Timestamp => Rendering::Timestamp,
            LogicalType::Binary => Rendering::Binary(binary),
        }
    }
}

/// Accumulates the fingerprint of rows as they are written (one per part being written).
#[derive(Debug, Clone)]
pub struct Fingerprinter {
    /// Per column, how it is rendered for its digest; `None`: counted only.
    renderings: Vec<Option<Rendering>>,
    /// The figures of no rows.
    empty: Fingerprint,
    current: Fingerprint,
    /// Rows added but not hashed yet: their renderings end to end, and per rendering its column
    /// and place; per row, `n` or `v` per field, and where each row's marks end.
    pending: Vec<u8>,
    spans: Vec<(usize, usize, usize)>,
    marks: Vec<u8>,
    row_ends: Vec<usize>,
    /// Reused by each hashing pass.
    hasher: md5_lanes::ManyHasher,
    hashes: Vec<u64>,
    rows_text: Vec<u8>,
    rows_text_ends: Vec<usize>,
    row_hashes: Vec<u64>,
}

impl Fingerprinter {
    /// For the rows of `table` as phase 1 writes them for a warehouse with limits `limits`
    /// (binary spelled as it loads it; only the types it digests are hashed).
    pub fn for_table(table: &DataSchema, limits: &Limits) -> Fingerprinter {
        let renderings: Vec<Option<Rendering>> = covered_types(table)
            .into_iter()
            .map(|t| {
                let digested = limits.digested.covers(t);
                digested.then(|| Rendering::of(t, limits.binary_text))
            })
            .collect();
        let row_digested = renderings.iter().all(Option::is_some);
        let mut empty = Fingerprint::empty(&covered_columns(table));
        for (c, r) in empty.columns.iter_mut().zip(&renderings) {
            if r.is_none() {
                c.digest = None;
            }
        }
        if !row_digested {
            empty.row_digest = None;
        }
        Fingerprinter {
            renderings,
            current: empty.clone(),
            empty,
            pending: Vec::new(),
            spans: Vec::new(),
            marks: Vec::new(),
            row_ends: Vec::new(),
            hasher: md5_lanes::ManyHasher::default(),
            hashes: Vec::new(),
            rows_text: Vec::new(),
            rows_text_ends: Vec::new(),
            row_hashes: Vec::new(),
        }
    }

    /// Adds one row, its fields as written to the CSV (`None` is NULL). Its values are rendered
    /// now and hashed later, many at once (see [`md5_lanes`]).
    pub fn row<S: AsRef<str>>(&mut self, fields: &[Option<S>]) {
        let rows_digested = self.current.row_digest.is_some();
        for (i, field) in fields.iter().enumerate() {
            let Some(c) = self.current.columns.get_mut(i) else {
                continue;
            };
            let Some(text) = field else {
                if rows_digested {
                    self.marks.push(b'n');
                }
                continue;
            };
            c.non_null += 1;
            // Where the rows are digested, so is every column.
            if let Some(rendering) = self.renderings[i] {
                let start = self.pending.len();
                render(rendering, text.as_ref(), &mut self.pending);
                self.spans.push((i, start, self.pending.len()));
                if rows_digested {
                    self.marks.push(b'v');
                }
            }
        }
        self.current.rows += 1;
        self.row_ends.push(self.marks.len());
        if self.row_ends.len() >= PENDING_ROWS || self.pending.len() >= PENDING_BYTES {
            self.hash_pending();
        }
    }

    /// Hashes the values and rows added since the last pass into the figures.
    fn hash_pending(&mut self) {
        let (pending, spans) = (&self.pending, &self.spans);
        self.hasher.hash60_each(
            spans.len(),
            |k| (&pending[spans[k].1..], spans[k].2 - spans[k].1),
            &mut self.hashes,
        );
        for (&(i, _, _), &hash) in self.spans.iter().zip(&self.hashes) {
            if let Some(digest) = self.current.columns[i].digest.as_mut() {
                digest.add(hash);
            }
        }
        if let Some(rows) = self.current.row_digest.as_mut() {
            // Each row's text: per field, the 15 hex digits of its hash, `n` for NULL.
            self.rows_text.clear();
            self.rows_text_ends.clear();
            let (mut hashes, mut from) = (self.hashes.iter(), 0);
            for &to in &self.row_ends {
                for &mark in &self.marks[from..to] {
                    match mark {
                        b'v' => {
                            let hash = hashes.next().copied().unwrap_or_default();
                            self.rows_text.extend_from_slice(&hex15(hash));
                        }
                        _ => self.rows_text.push(b'n'),
                    }
                }
                self.rows_text_ends.push(self.rows_text.len());
                from = to;
            }
            let (text, ends) = (&self.rows_text, &self.rows_text_ends);
            self.hasher.hash60_each(
                ends.len(),
                |r| {
                    let start = if r == 0 { 0 } else { ends[r - 1] };
                    (&text[start..], ends[r] - start)
                },
                &mut self.row_hashes,
            );
            for &hash in &self.row_hashes {
                rows.add(hash);
            }
        }
        self.pending.clear();
        self.spans.clear();
        self.marks.clear();
        self.row_ends.clear();
    }

    /// The figures of the rows added since the last call, and a fresh start.
    pub fn take(&mut self) -> Fingerprint {
        self.hash_pending();
        std::mem::replace(&mut self.current, self.empty.clone())
    }
}

/// Rows (or bytes of renderings) a fingerprinter keeps before hashing them: enough to fill the
/// hash lanes, little enough to stay in cache.
const PENDING_ROWS: usize = 64;
const PENDING_BYTES: usize = 64 * 1024;

/// The first 60 bits of the MD5 of `bytes`, as a number: the value of its first 15 hex digits.
pub use md5_lanes::hash60;

/// The 15 lower-case hex digits of a 60-bit hash.
fn hex15(hash: u64) -> [u8; 15] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 15];
    for (i, digit) in out.iter_mut().enumerate() {
        *digit = DIGITS[((hash >> (4 * (14 - i))) & 0xf) as usize];
    }
    out
}

/// Appends the canonical rendering of a CSV field of rendering `r`. Text that does not parse as
/// its type (phase 1 never writes such) is rendered as it is, so the warehouse's digest differs.
fn render(r: Rendering, text: &str, out: &mut Vec<u8>) {
    match r {
        Rendering::Bytes => out.extend_from_slice(text.as_bytes()),
        Rendering::Integer | Rendering::Decimal => match decimal::canonical_plain(text) {
            Some(_) => out.extend_from_slice(text.as_bytes()),
            None => match Decimal::parse(text) {
                Ok(d) => out.extend_from_slice(d.to_plain().as_bytes()),
                Err(_) => out.extend_from_slice(text.as_bytes()),
            },
        },
        Rendering::Timestamp => {
            use std::io::Write as _;
            let micros = utc_micros(text).or_else(|| {
                chrono::DateTime::parse_from_rfc3339(text)
                    .ok()
                    .map(|t| t.timestamp_micros())
            });
            match micros {
                Some(m) => write!(out, "{m}").expect("writing to a Vec cannot fail"),
                None => out.extend_from_slice(text.as_bytes()),
            }
        }
        Rendering::Binary(spelling) => {
            let hex = match spelling {
                BinaryText::PrefixedHex => text.strip_prefix("\\x").unwrap_or(text),
                BinaryText::Hex => text,
            };
            let start = out.len();
            if !decode_hex_into(hex, out) {
                out.truncate(start);
                out.extend_from_slice(text.as_bytes());
            }
        }
    }
}

/// Appends the bytes `hex` spells; false (with some appended) when it is not an even number
/// of hex digits.
fn decode_hex_into(hex: &str, out: &mut Vec<u8>) -> bool {
    let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = hex.as_bytes();
    if bytes.len() % 2 != 0 {
        return false;
    }
    out.reserve(bytes.len() / 2);
    for pair in bytes.chunks_exact(2) {
        match (digit(pair[0]), digit(pair[1])) {
            (Some(high), Some(low)) => out.push(high << 4 | low),
            _ => return false,
        }
    }
    true
}

/// The microseconds since 1970-01-01T00:00:00Z of a time in the one form phase 1 writes
/// timestamps in (`value::time::to_utc`): `YYYY-MM-DDTHH:MM:SS`, up to six fraction digits, `Z`.
/// `None` for any other text (the caller falls back to a full RFC 3339 parser).
fn utc_micros(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    let number = |r: std::ops::Range<usize>| -> Option<i64> {
        b[r].iter().try_fold(0i64, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let fraction = match &b[19..b.len() - 1] {
        [] => 0,
        [b'.', digits @ ..] if (1..=6).contains(&digits.len()) => {
            number(20..20 + digits.len())? * 10i64.pow(6 - digits.len() as u32)
        }
        _ => return None,
    };
    let days_in_month = match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if year == 0 || day == 0 || day > days_in_month || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000_000 + second * 1_000_000 + fraction)
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (the usual era
/// arithmetic: 400-year eras of 146,097 days, years counted from March).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The logical type of each column a fingerprint covers (`_extra` is JSON).
pub fn covered_types(table: &DataSchema) -> Vec<LogicalType> {
    let mut types: Vec<LogicalType> = table.columns.iter().map(|c| c.logical_type).collect();
    if table.has_extra_column() {
        types.push(LogicalType::Json);
    }
    types
}

/// The column names a table's fingerprint covers, in order.
pub fn covered_columns(table: &DataSchema) -> Vec<String> {
    let mut names: Vec<String> = table.columns.iter().map(|c| c.column.clone()).collect();
    if table.has_extra_column() {
        names.push(EXTRA_COLUMN.to_string());
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::limits::{DialectName, Digested};
    use crate::schema::{Column, FORMAT_VERSION};

    /// The row's text holds each value's hash as the 15 hex digits PostgreSQL's
    /// `left(md5(…), 15)` gives: lower case, zero-padded.
    #[test]
    fn hex15_writes_the_fifteen_hex_digits_of_a_60_bit_hash() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let hash = x >> 4;
            assert_eq!(hex15(hash), format!("{hash:015x}").as_bytes(), "{hash:x}");
        }
        for hash in [0, 1, 9, 10, 15, (1 << 60) - 1, 0x0a0b_0c0d_0e0f_0900] {
            assert_eq!(hex15(hash), format!("{hash:015x}").as_bytes(), "{hash:x}");
        }
    }

    fn table() -> DataSchema {
        let col = |name: &str, t| Column {
            attribute: name.into(),
            column: name.into(),
            logical_type: t,
            nullable: true,
        };
        DataSchema {
            format: FORMAT_VERSION,
            source_table: "src".into(),
            table: "org".into(),
            rule: None,
            columns: vec![
                col("pk", LogicalType::Text { max_bytes: 10 }),
                col("n", LogicalType::Bigint),
                col(
                    "price",
                    LogicalType::Decimal {
                        precision: 10,
                        scale: 2,
                    },
                ),
                col("at", LogicalType::Timestamp),
                col("logo", LogicalType::Binary),
            ],
        }
    }

    type Row = [Option<&'static str>; 6];

    const ROWS: [Row; 4] = [
        [
            Some("a"),
            Some("1"),
            Some("1.5"),
            Some("2024-01-01T00:00:00Z"),
            Some("\\x00ff"),
            Some("{\"b\":1,\"aa\":[1,2]}"),
        ],
        [
            Some("b"),
            None,
            Some("-0.01"),
            None,
            Some("\\x"),
            Some("{}"),
        ],
        [Some(""), Some("-7"), Some("0"), None, None, None],
        [
            Some("c"),
            Some("42"),
            Some("12"),
            Some("1969-12-31T23:59:59.999999Z"),
            None,
            Some("{\"x\":\"\\u0001\"}"),
        ],
    ];

    /// PostgreSQL's limits, digesting `digested`.
    fn limits(digested: Digested) -> Limits {
        Limits {
            digested,
            ..*crate::warehouse::limits(DialectName::Postgres)
        }
    }

    fn fingerprint_with(digested: Digested, rows: &[Row]) -> Fingerprint {
        let mut f = Fingerprinter::for_table(&table(), &limits(digested));
        for r in rows {
            f.row(r);
        }
        f.take()
    }

    fn fingerprint(rows: &[Row]) -> Fingerprint {
        fingerprint_with(Digested::AllTypes, rows)
    }

    #[test]
    fn columns_the_warehouse_counts_only_are_counted_without_a_digest_nor_a_row_digest() {
        let all = fingerprint(&ROWS);
        let counted = fingerprint_with(Digested::BooleansOnly, &ROWS);
        assert_eq!(counted.rows, all.rows);
        assert_eq!(counted.row_digest, None);
        for (c, a) in counted.columns.iter().zip(&all.columns) {
            assert_eq!((&c.column, c.non_null), (&a.column, a.non_null));
            assert_eq!(c.digest, None, "{}", c.column);
        }
        // A sum with a part lacking a digest lacks it; a part of no rows keeps the form.
        let mut sum = all.clone();
        sum.add(&counted);
        assert_eq!(sum.row_digest, None);
        assert!(sum.columns.iter().all(|c| c.digest.is_none()));
        assert_eq!(
            fingerprint_with(Digested::BooleansOnly, &[]).row_digest,
            None
        );
        let text = serde_json::to_string(&counted).unwrap();
        assert!(!text.contains("digest"), "{text}");
        assert_eq!(serde_json::from_str::<Fingerprint>(&text).unwrap(), counted);
    }

    #[test]
    fn fingerprints_do_not_depend_on_row_order_and_add_up_over_parts() {
        let whole = fingerprint(&ROWS);
        let mut reversed = ROWS;
        reversed.reverse();
        assert_eq!(fingerprint(&reversed), whole);
        // Any split into parts sums to the whole.
        for split in 0..=ROWS.len() {
            let mut sum = fingerprint(&ROWS[..split]);
            sum.add(&fingerprint(&ROWS[split..]));
            assert_eq!(sum, whole, "split at {split}");
        }
        assert_eq!(whole.rows, 4);
        let names: Vec<&str> = whole.columns.iter().map(|c| c.column.as_str()).collect();
        assert_eq!(names, ["pk", "n", "price", "at", "logo", "_extra"]);
        let non_null: Vec<u64> = whole.columns.iter().map(|c| c.non_null).collect();
        assert_eq!(non_null, [4, 3, 4, 2, 2, 3]);
    }

    #[test]
    fn a_changed_value_changes_its_column_and_swapped_values_change_the_rows() {
        let whole = fingerprint(&ROWS);
        let mut changed = ROWS;
        changed[0][0] = Some("A");
        let f = fingerprint(&changed);
        assert_ne!(f.column("pk"), whole.column("pk"));
        assert_eq!(f.column("n"), whole.column("n"));
        assert_ne!(f.row_digest, whole.row_digest);
        // Two rows' values of one column swapped: the column's digest stays, the rows' does not.
        let mut swapped = ROWS;
        swapped[0][1] = ROWS[3][1];
        swapped[3][1] = ROWS[0][1];
        let f = fingerprint(&swapped);
        assert_eq!(f.columns, whole.columns);
        assert_ne!(f.row_digest, whole.row_digest);
        // One row deleted and another duplicated: same count, other digests.
        let dup = [ROWS[0], ROWS[1], ROWS[2], ROWS[2]];
        let f = fingerprint(&dup);
        assert_eq!(f.rows, whole.rows);
        assert_ne!(f, whole);
        // An empty string and NULL differ.
        let mut nulled = ROWS;
        nulled[2][0] = None;
        assert_ne!(fingerprint(&nulled).column("pk"), whole.column("pk"));
    }

    #[test]
    fn values_are_rendered_as_the_warehouse_prints_them_back() {
        let r = |rendering, text: &str| {
            let mut out = Vec::new();
            render(rendering, text, &mut out);
            String::from_utf8_lossy(&out).into_owned()
        };
        assert_eq!(r(Rendering::Decimal, "1.50"), "1.5");
        assert_eq!(r(Rendering::Decimal, "-0.0"), "0");
        assert_eq!(r(Rendering::Integer, "007"), "7");
        assert_eq!(
            r(Rendering::Timestamp, "1970-01-01T00:00:01.000001Z"),
            "1000001"
        );
        assert_eq!(r(Rendering::Timestamp, "1969-12-31T23:59:59Z"), "-1000000");
        // Another offset than `Z` (phase 1 never writes one) goes through the full parser.
        assert_eq!(
            r(Rendering::Timestamp, "1970-01-01T01:00:00.5+01:00"),
            "500000"
        );
        assert_eq!(
            r(Rendering::Timestamp, "2024-02-30T00:00:00Z"),
            "2024-02-30T00:00:00Z"
        );
        assert_eq!(r(Rendering::Binary(BinaryText::Hex), "0g"), "0g");
        assert_eq!(
            r(Rendering::Binary(BinaryText::Hex), "00ff"),
            "\u{0}\u{fffd}"
        );
        // The hash is the first 15 hex digits of the MD5: md5("") = d41d8cd98f00b204e9800998ecf8427e.
        assert_eq!(hash60(b""), 0xd41d8cd98f00b20);
    }

    /// The quick reading of phase 1's own timestamp form agrees with a full RFC 3339 parser
    /// across the years a timestamp may have, every fraction length, and the days around leap
    /// days and month ends.
    #[test]
    fn timestamps_read_quickly_agree_with_chrono() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut checked = 0;
        for _ in 0..20_000 {
            let year = 1 + next(9999);
            let month = 1 + next(12);
            let day = 1 + next(31);
            let fraction: String = (0..next(7))
                .map(|_| char::from(b'0' + next(10) as u8))
                .collect();
            let text = format!(
                "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}{}{fraction}Z",
                next(24),
                next(60),
                next(60),
                if fraction.is_empty() { "" } else { "." }
            );
            let full = chrono::DateTime::parse_from_rfc3339(&text)
                .ok()
                .map(|t| t.timestamp_micros());
            assert_eq!(utc_micros(&text), full, "{text}");
            checked += usize::from(full.is_some());
        }
        assert!(checked > 15_000, "{checked} valid dates");
        for text in [
            "1900-02-29T00:00:00Z",
            "2000-02-29T00:00:00Z",
            "2023-02-29T00:00:00Z",
        ] {
            let full = chrono::DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| t.timestamp_micros());
            assert_eq!(utc_micros(text), full, "{text}");
        }
    }

    #[test]
    fn digests_are_written_as_decimal_strings() {
        let f = Fingerprint {
            rows: 1,
            row_digest: Some(Digest(u128::from(u64::MAX) * 3)),
            columns: vec![],
        };
        let text = serde_json::to_string(&f).unwrap();
        assert!(text.contains("\"55340232221128654845\""), "{text}");
        assert_eq!(serde_json::from_str::<Fingerprint>(&text).unwrap(), f);
    }
}
