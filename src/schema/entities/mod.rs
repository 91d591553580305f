//! Telling entities apart: which items of a single-table design belong in one warehouse table,
//! found from the data rather than told.
//!
//! One pass over the items (a [`Survey`]) summarises them under every way of splitting them that
//! could name entities — a *candidate*:
//!
//! - the whole value of a string attribute that is not a key (a type attribute such as ElectroDB's
//!   `__edb_e__`, dynamodb-toolbox's `_et`, AppSync's `__typename`, or a plain `type`);
//! - the entity prefix of the partition key, of the sort key, and of both together: the value up
//!   to and including the first delimiter after a leading one (`ORG#42` → `ORG#`, `#ORDER#7` →
//!   `#ORDER#`), or the whole value when it has none (`META`).
//!
//! Each candidate keeps, per value, the same per-table summary inference makes of a table
//! ([`TableStats`]) plus a small sample of the attribute sets its items have ([`Shape`]s). The
//! summaries are bounded: a candidate stops being tracked — its summaries are dropped and it is
//! marked as growing with the data — once it has more values than a table may have
//! (`--max-tables`), and values that cannot name an entity (ids, dates, numbers, anything over
//! [`MAX_TYPE_VALUE_BYTES`]) are only counted. So memory grows with the number of attributes and
//! entities, never with the number of items or of distinct key values. A value that cannot name
//! an entity is counted until there are more such values than tables may be made; a type-attribute
//! candidate then stops being tracked too, so its later values cost nothing.
//!
//! Items are first put in the bucket of the previous data-schema whose rule takes them (the same
//! rules, in the same order, as phase 1), so evolution can see what each existing table received
//! this time; [`plan()`] then weighs the candidates and writes the data-schemas.
//!
//! A survey works with numbered attribute names (`survey.rs`); its [`Summary`] names them again.
//! Summaries merge ([`Summary::merge`], and [`Survey::merge`] through them) commutatively and
//! associatively, whatever each part saw first (the bounds are decided on the union, and the kept
//! attribute sets are the ones with the smallest hashes), so per-segment results merge into the
//! same data-schemas in any order.

mod plan;
mod survey;
mod weigh;

pub use plan::{
    established, plan, Decision, Finding, Outcome, Plan, PlanError, PlanSettings, Scope, Strategy,
};
pub use survey::Survey;
pub use weigh::{is_type_name, Verdict, Weighed};

use std::collections::BTreeMap;
use std::sync::Arc;

use super::infer::TableStats;
use super::DataSchema;
use crate::value::time::is_timestamp;
use crate::value::ItemView;

/// Longest value (in bytes) that may name an entity.
pub const MAX_TYPE_VALUE_BYTES: usize = 64;

/// Attribute sets kept per group: the ones with the smallest hashes, so parts merge alike.
pub const SHAPES_KEPT: usize = 16;

/// Default most tables a split may make (`--max-tables`); also how many values a candidate
/// tracks before it counts as growing with the data.
pub const DEFAULT_MAX_TABLES: usize = 200;

/// One way of telling entities apart.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Candidate {
    /// The whole value of a string attribute that is not a key.
    Value(String),
    /// The entity prefix of a string attribute (a key, or one named by `--classify-attribute`).
    Token(String),
    /// The partition key's and the sort key's entity prefixes together.
    Tokens(String, String),
}

impl Candidate {
    /// In an operator's words.
    pub fn describe(&self) -> String {
        match self {
            Candidate::Value(a) => format!("values of {a}"),
            Candidate::Token(a) => format!("prefixes of {a}"),
            Candidate::Tokens(p, s) => format!("prefixes of {p} and {s} together"),
        }
    }

    /// The attributes it reads.
    pub fn attributes(&self) -> Vec<&str> {
        match self {
            Candidate::Value(a) | Candidate::Token(a) => vec![a],
            Candidate::Tokens(p, s) => vec![p, s],
        }
    }
}

/// What the survey is told before it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SurveySettings {
    /// The table's key attributes, partition key first.
    pub key_attributes: Vec<String>,
    /// Where an entity prefix ends; `None` tracks no candidate at all (everything in one table).
    pub delimiter: Option<char>,
    /// Values a candidate tracks before it counts as growing with the data (`--max-tables`).
    pub max_values: usize,
    /// Attributes split by their entity prefix: the key attributes, and one named by
    /// `--classify-attribute` or by the previous data-schemas' rules.
    pub token_attributes: Vec<String>,
    /// The previous data-schemas in classification order: items are surveyed per table they go to.
    pub previous: Vec<DataSchema>,
}

impl SurveySettings {
    /// Settings for a table with these keys, splitting at `delimiter`, with `previous` in
    /// classification order.
    pub fn new(
        key_attributes: &[String],
        delimiter: Option<char>,
        max_values: usize,
        mut previous: Vec<DataSchema>,
    ) -> Self {
        super::classification_order(&mut previous);
        SurveySettings {
            key_attributes: key_attributes.to_vec(),
            delimiter,
            max_values,
            token_attributes: key_attributes.to_vec(),
            previous,
        }
    }

    /// Also split `attribute` by its entity prefix.
    pub fn with_token_attribute(mut self, attribute: &str) -> Self {
        if !self.token_attributes.iter().any(|a| a == attribute) {
            self.token_attributes.push(attribute.to_string());
        }
        self
    }

    /// The partition and sort key, when the table has both.
    fn key_pair(&self) -> Option<(&str, &str)> {
        match self.key_attributes.as_slice() {
            [p, s] => Some((p, s)),
            _ => None,
        }
    }
}

/// A sample of one attribute set items have: the names of their non-key attributes holding a
/// value, and how many items have exactly that set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    pub attributes: Vec<String>,
    pub items: u64,
}

pub(super) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The splitmix64 finaliser: spreads a hash's bits so that sums of hashes stay distinct.
pub(super) fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The items of one value of a candidate (or of a whole bucket): their summary for columns, and
/// a sample of their attribute sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    pub stats: TableStats,
    /// By hash; at most [`SHAPES_KEPT`], the smallest hashes.
    pub shapes: BTreeMap<u64, Shape>,
}

impl Group {
    fn merge(&mut self, other: &Group) {
        self.stats.merge(&other.stats);
        for (hash, shape) in &other.shapes {
            self.shapes
                .entry(*hash)
                .and_modify(|s| s.items += shape.items)
                .or_insert_with(|| shape.clone());
        }
        while self.shapes.len() > SHAPES_KEPT {
            self.shapes.pop_last();
        }
    }

    /// What is left after taking `part` (some of these items) out.
    pub fn without(&self, part: &Group) -> Group {
        let mut shapes = self.shapes.clone();
        for (hash, shape) in &part.shapes {
            if let Some(s) = shapes.get_mut(hash) {
                s.items = s.items.saturating_sub(shape.items);
            }
        }
        shapes.retain(|_, s| s.items > 0);
        Group {
            stats: self.stats.without(&part.stats),
            shapes,
        }
    }

    pub fn items(&self) -> u64 {
        self.stats.items
    }
}

/// Why a candidate stopped being tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dead {
    /// More values than `--max-tables`: it grows with the data.
    TooManyValues,
    /// More values that cannot name an entity (ids, dates, numbers, long text) than
    /// `--max-tables`: not a type attribute.
    Unusable,
}

/// One candidate's summary: its values' groups, or why it is no longer tracked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    pub groups: BTreeMap<String, Group>,
    /// Items whose value cannot name an entity.
    pub unusable: u64,
    pub dead: Option<Dead>,
    /// The smallest value that could not name an entity, or once dead the smallest value seen,
    /// for messages.
    pub example: Option<String>,
    /// Whether unusable values end the candidate (type attributes) or are only counted (keys).
    dies_of_unusable: bool,
}

impl Split {
    pub(super) fn new(dies_of_unusable: bool) -> Self {
        Split {
            dies_of_unusable,
            ..Split::default()
        }
    }

    fn note_example(&mut self, value: &str) {
        if self.example.as_deref().is_none_or(|e| value < e) {
            self.example = Some(value.to_string());
        }
    }

    fn die(&mut self, why: Dead) {
        if let Some(first) = self.groups.keys().next().cloned() {
            self.note_example(&first);
        }
        self.groups.clear();
        self.dead = Some(self.dead.map_or(why, |d| d.max(why)));
    }

    fn merge(&mut self, other: &Split, max_values: usize) {
        self.unusable += other.unusable;
        if let Some(e) = &other.example {
            self.note_example(e);
        }
        if let Some(why) = other.dead {
            if let Some(first) = other.groups.keys().next() {
                self.note_example(first);
            }
            self.die(why);
        }
        if self.dead.is_none() {
            for (key, group) in &other.groups {
                self.groups.entry(key.clone()).or_default().merge(group);
            }
            if self.groups.len() > max_values {
                self.die(Dead::TooManyValues);
            }
        } else if let Some(first) = other.groups.keys().next() {
            self.note_example(first);
        }
        if self.dies_of_unusable && self.unusable > max_values as u64 {
            self.die(Dead::Unusable);
        }
    }

    /// Items in one of the groups.
    pub fn covered(&self) -> u64 {
        self.groups.values().map(Group::items).sum()
    }
}

/// Everything seen of the items one previous data-schema took (or of the items none took).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bucket {
    pub whole: Group,
    /// Type-attribute candidates by attribute.
    pub values: BTreeMap<String, Split>,
    /// Entity-prefix candidates by attribute.
    pub tokens: BTreeMap<String, Split>,
    /// The partition and sort key's prefixes together (tables with both keys).
    pub pair: Option<Split>,
}

impl Bucket {
    pub fn split(&self, candidate: &Candidate) -> Option<&Split> {
        match candidate {
            Candidate::Value(a) => self.values.get(a),
            Candidate::Token(a) => self.tokens.get(a),
            Candidate::Tokens(..) => self.pair.as_ref(),
        }
    }

    /// Every candidate tracked here, with its summary.
    pub fn candidates(&self, settings: &SurveySettings) -> Vec<(Candidate, &Split)> {
        let mut out: Vec<(Candidate, &Split)> = Vec::new();
        for (a, s) in &self.tokens {
            out.push((Candidate::Token(a.clone()), s));
        }
        if let (Some(s), Some((p, k))) = (&self.pair, settings.key_pair()) {
            out.push((Candidate::Tokens(p.to_string(), k.to_string()), s));
        }
        for (a, s) in &self.values {
            out.push((Candidate::Value(a.clone()), s));
        }
        out
    }

    fn merge(&mut self, other: &Bucket, max_values: usize) {
        self.whole.merge(&other.whole);
        for (a, s) in &other.values {
            self.values
                .entry(a.clone())
                .or_insert_with(|| Split::new(true))
                .merge(s, max_values);
        }
        for (a, s) in &other.tokens {
            self.tokens
                .entry(a.clone())
                .or_insert_with(|| Split::new(false))
                .merge(s, max_values);
        }
        if let Some(s) = &other.pair {
            self.pair
                .get_or_insert_with(|| Split::new(false))
                .merge(s, max_values);
        }
    }
}

/// Separates the two prefixes in a pair's group key (U+0000 never names an entity).
pub const PAIR_SEPARATOR: char = '\0';

/// The two prefixes of a pair's group key.
pub fn pair_parts(key: &str) -> (&str, &str) {
    key.split_once(PAIR_SEPARATOR).unwrap_or((key, ""))
}

/// The entity prefix of a key value: everything up to and including the first `delimiter` after
/// a leading one (`ORG#42` → `ORG#`, `#ORDER#7` → `#ORDER#`), or the whole value when there is
/// none (`META`). `None` when that cannot name an entity (see [`names_an_entity`]).
pub fn entity_prefix(value: &str, delimiter: char) -> Option<&str> {
    let skip = if value.starts_with(delimiter) {
        delimiter.len_utf8()
    } else {
        0
    };
    let prefix = match value[skip..].find(delimiter) {
        Some(i) => &value[..skip + i + delimiter.len_utf8()],
        None => value,
    };
    names_an_entity(prefix.trim_matches(delimiter)).then_some(prefix)
}

/// Whether a value could be an entity's name: not empty, at most [`MAX_TYPE_VALUE_BYTES`], no
/// U+0000, and not shaped like an id, a date or a number ([`looks_like_id`]).
pub fn names_an_entity(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_TYPE_VALUE_BYTES
        && !text.contains('\0')
        && looks_like_id(text).is_none()
}

/// What a value looks like when it is an id, a date or a number rather than a name: values that
/// grow with the data never name tables.
pub fn looks_like_id(text: &str) -> Option<&'static str> {
    let bytes = text.as_bytes();
    let hex = |b: &u8| b.is_ascii_hexdigit();
    if is_timestamp(text)
        || (bytes.len() >= 10
            && bytes[..4].iter().all(u8::is_ascii_digit)
            && bytes[4] == b'-'
            && bytes[5..7].iter().all(u8::is_ascii_digit)
            && bytes[7] == b'-')
    {
        return Some("a date");
    }
    if crate::value::decimal::Decimal::parse(text).is_ok() {
        return Some("a number");
    }
    if bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| {
            if [8, 13, 18, 23].contains(&i) {
                *b == b'-'
            } else {
                hex(b)
            }
        })
    {
        return Some("a UUID");
    }
    if bytes.len() == 26
        && bytes.iter().any(u8::is_ascii_digit)
        && bytes
            .iter()
            .all(|b| b.is_ascii_digit() || (b.is_ascii_uppercase() && !b"ILOU".contains(b)))
    {
        return Some("a ULID");
    }
    if bytes.len() >= 16 && bytes.iter().all(hex) {
        return Some("a hexadecimal id");
    }
    None
}

/// Surveys `items` in one pass and plans their data-schemas the way `infer-schema` does with
/// entity prefixes ending at `#`, evolving `previous` (tests and tools: `infer-schema` surveys
/// segments in parallel and merges them). `Strategy::Auto` is its default.
pub fn infer_items(
    source_table: &str,
    key_attributes: &[String],
    previous: &[DataSchema],
    strategy: Strategy,
    items: &[crate::value::Item],
) -> Plan {
    let settings = SurveySettings::new(
        key_attributes,
        Some('#'),
        DEFAULT_MAX_TABLES,
        previous.to_vec(),
    );
    let token = match (&strategy, established(&settings.previous, &settings)) {
        (Strategy::Prefix(a), _) => Some(a.clone()),
        (_, Some(Candidate::Token(a))) => Some(a),
        _ => None,
    };
    let settings = match token {
        Some(a) => settings.with_token_attribute(&a),
        None => settings,
    };
    let mut survey = Survey::new(Arc::new(settings));
    for item in items {
        survey.observe(&ItemView::from_sdk(item));
    }
    let settings = PlanSettings {
        source_table,
        strategy,
        narrow: false,
    };
    plan(&survey, &settings)
        .expect("splitting a few items by one attribute never passes --max-tables")
}

/// What a survey saw, by attribute name, per bucket: one per previous data-schema in
/// classification order, then, when no previous data-schema takes every remaining item, one for
/// the items no rule claims. Summaries of parts of a scan merge ([`Summary::merge`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    settings: Arc<SurveySettings>,
    pub buckets: Vec<Bucket>,
}

impl Summary {
    /// An empty summary.
    pub fn new(settings: Arc<SurveySettings>) -> Self {
        Summary {
            buckets: vec![Bucket::default(); Self::bucket_count(&settings)],
            settings,
        }
    }

    pub(super) fn bucket_count(settings: &SurveySettings) -> usize {
        settings.previous.len() + usize::from(Self::catch_all_of(settings).is_none())
    }

    fn catch_all_of(settings: &SurveySettings) -> Option<usize> {
        settings.previous.iter().position(|s| s.rule.is_none())
    }

    /// The bucket of items no previous rule claims: the previous catch-all table's, or the last.
    pub(super) fn unclaimed_of(settings: &SurveySettings) -> usize {
        Self::catch_all_of(settings).unwrap_or(settings.previous.len())
    }

    pub fn settings(&self) -> &SurveySettings {
        &self.settings
    }

    /// The bucket of items no previous rule claims.
    pub fn unclaimed(&self) -> usize {
        Self::unclaimed_of(&self.settings)
    }

    /// Items surveyed.
    pub fn items(&self) -> u64 {
        self.buckets.iter().map(|b| b.whole.items()).sum()
    }

    /// Adds another part's summary (of the same settings).
    pub fn merge(&mut self, other: &Summary) {
        debug_assert_eq!(self.settings, other.settings);
        let max = self.settings.max_values;
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            mine.merge(theirs, max);
        }
    }
}

#[cfg(test)]
mod tests;
