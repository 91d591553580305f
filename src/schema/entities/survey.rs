//! The pass over the items: each item summarised under every candidate, with as little work per
//! item as the summaries allow.
//!
//! Attribute names are numbered the first time the survey meets them, so a group's statistics
//! are an array indexed by that number rather than a map keyed by name, and an item's attributes
//! are looked up and typed once however many groups it goes into. A candidate that stopped being
//! tracked costs nothing more; a value already known to name a group is not checked again.
//! [`Survey::summary`] turns the numbers back into names: summaries ([`Summary`]) are what parts
//! of a scan exchange and what the plan reads.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use foldhash::fast::RandomState;

use super::{
    entity_prefix, mix, names_an_entity, Bucket, Dead, Group, Shape, Split, Summary,
    SurveySettings, PAIR_SEPARATOR, SHAPES_KEPT,
};
use crate::schema::infer::{AttributeStats, Seen, TableStats};
use crate::value::{ItemView, Value};

/// The attribute names a survey has met, numbered in the order met.
#[derive(Debug, Clone, Default)]
struct Names {
    ids: HashMap<String, u32, RandomState>,
    names: Vec<String>,
    /// Each name's well-mixed hash: an item's attribute set hashes to the sum of its names'.
    hashes: Vec<u64>,
    /// Whether each name is a key attribute (never part of an attribute set).
    keys: Vec<bool>,
}

impl Names {
    fn id(&mut self, name: &str, settings: &SurveySettings) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = u32::try_from(self.names.len()).expect("fewer than 2^32 attribute names");
        self.ids.insert(name.to_string(), id);
        self.names.push(name.to_string());
        self.hashes.push(mix(super::fnv1a64(name.as_bytes())));
        self.keys
            .push(settings.key_attributes.iter().any(|k| k == name));
        id
    }
}

/// One attribute of the item being surveyed: its number, what its value looks like, whether it
/// holds a value (not NULL).
#[derive(Debug, Clone, Copy)]
struct Cell {
    id: u32,
    seen: Seen,
    non_null: bool,
}

/// The item being surveyed, worked out once.
#[derive(Debug, Clone, Default)]
struct ItemCells {
    cells: Vec<Cell>,
    /// The attribute set's hash: the sum of the mixed hashes of its non-key names holding a value.
    shape: u64,
}

/// What one group has seen, by attribute number.
#[derive(Debug, Clone, Default)]
struct LiveGroup {
    items: u64,
    attributes: Vec<AttributeStats>,
    /// By hash: the attribute numbers and how many items had that set; the smallest hashes kept.
    shapes: BTreeMap<u64, (Vec<u32>, u64)>,
}

impl LiveGroup {
    fn add(&mut self, item: &ItemCells, names: &Names) {
        self.items += 1;
        for cell in &item.cells {
            let i = cell.id as usize;
            if self.attributes.len() <= i {
                self.attributes.resize(i + 1, AttributeStats::default());
            }
            let stats = &mut self.attributes[i];
            stats.seen = stats.seen.join(cell.seen);
            stats.non_null += u64::from(cell.non_null);
            stats.present += 1;
        }
        if let Some((_, count)) = self.shapes.get_mut(&item.shape) {
            *count += 1;
        } else if self.shapes.len() < SHAPES_KEPT
            || self
                .shapes
                .last_key_value()
                .is_some_and(|(&largest, _)| item.shape < largest)
        {
            let ids = item
                .cells
                .iter()
                .filter(|c| c.non_null && !names.keys[c.id as usize])
                .map(|c| c.id)
                .collect();
            self.shapes.insert(item.shape, (ids, 1));
            if self.shapes.len() > SHAPES_KEPT {
                self.shapes.pop_last();
            }
        }
    }

    fn summary(&self, names: &Names) -> Group {
        let attributes = self
            .attributes
            .iter()
            .enumerate()
            .filter(|(_, s)| s.present > 0)
            .map(|(i, s)| (names.names[i].clone(), *s))
            .collect();
        let shapes = self
            .shapes
            .iter()
            .map(|(&hash, (ids, items))| {
                let mut attributes: Vec<String> = ids
                    .iter()
                    .map(|&i| names.names[i as usize].clone())
                    .collect();
                attributes.sort_unstable();
                (
                    hash,
                    Shape {
                        attributes,
                        items: *items,
                    },
                )
            })
            .collect();
        Group {
            stats: TableStats {
                items: self.items,
                attributes,
            },
            shapes,
        }
    }
}

/// One candidate's groups while the survey runs.
#[derive(Debug, Clone)]
struct LiveSplit {
    groups: HashMap<String, LiveGroup, RandomState>,
    unusable: u64,
    dead: Option<Dead>,
    example: Option<String>,
    /// Whether values that cannot name an entity end the candidate (type attributes) or are
    /// only counted (keys).
    dies_of_unusable: bool,
}

impl LiveSplit {
    fn new(dies_of_unusable: bool) -> Self {
        LiveSplit {
            groups: HashMap::default(),
            unusable: 0,
            dead: None,
            example: None,
            dies_of_unusable,
        }
    }

    fn note_example(&mut self, value: &str) {
        if self.example.as_deref().is_none_or(|e| value < e) {
            self.example = Some(value.to_string());
        }
    }

    /// Adds an item whose group key is `key` (checked with `names` only when the key is new:
    /// `valid` says whether it can name an entity, and returns the key to store).
    fn add(
        &mut self,
        key: &str,
        valid: impl FnOnce(&str) -> bool,
        item: &ItemCells,
        names: &Names,
        max_values: usize,
    ) {
        if self.dead.is_some() {
            return;
        }
        if let Some(group) = self.groups.get_mut(key) {
            group.add(item, names);
            return;
        }
        if !valid(key) {
            self.unusable += 1;
            self.note_example(key);
            if self.dies_of_unusable && self.unusable > max_values as u64 {
                self.die(Dead::Unusable);
            }
            return;
        }
        if self.groups.len() >= max_values {
            self.note_example(key);
            self.die(Dead::TooManyValues);
            return;
        }
        let mut group = LiveGroup::default();
        group.add(item, names);
        self.groups.insert(key.to_string(), group);
    }

    /// Counts an item whose value cannot name an entity whatever the groups hold.
    fn add_unusable(&mut self, value: &str, max_values: usize) {
        if self.dead.is_some() {
            return;
        }
        self.unusable += 1;
        self.note_example(value);
        if self.dies_of_unusable && self.unusable > max_values as u64 {
            self.die(Dead::Unusable);
        }
    }

    /// Stops tracking: the groups are dropped, the smallest value seen kept for messages.
    fn die(&mut self, why: Dead) {
        if let Some(first) = self.groups.keys().min().cloned() {
            self.note_example(&first);
        }
        self.groups = HashMap::default();
        self.dead = Some(why);
    }

    fn summary(&self, names: &Names) -> Split {
        let mut split = Split::new(self.dies_of_unusable);
        split.groups = self
            .groups
            .iter()
            .map(|(k, g)| (k.clone(), g.summary(names)))
            .collect();
        split.unusable = self.unusable;
        split.dead = self.dead;
        split.example = self.example.clone();
        split
    }
}

/// The items of one previous data-schema (or of none) while the survey runs.
#[derive(Debug, Clone, Default)]
struct LiveBucket {
    whole: LiveGroup,
    /// Type-attribute candidates by attribute number (`None`: never held a string).
    values: Vec<Option<LiveSplit>>,
    /// Entity-prefix candidates, in the order of `SurveySettings::token_attributes`.
    tokens: Vec<Option<LiveSplit>>,
    pair: Option<LiveSplit>,
}

impl LiveBucket {
    fn summary(&self, names: &Names, settings: &SurveySettings) -> Bucket {
        let values = self
            .values
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.as_ref()
                    .map(|s| (names.names[i].clone(), s.summary(names)))
            })
            .collect();
        let tokens = settings
            .token_attributes
            .iter()
            .zip(&self.tokens)
            .filter_map(|(a, s)| s.as_ref().map(|s| (a.clone(), s.summary(names))))
            .collect();
        Bucket {
            whole: self.whole.summary(names),
            values,
            tokens,
            pair: self.pair.as_ref().map(|s| s.summary(names)),
        }
    }
}

/// One pass over the items (of a segment, or of the whole table): see the module's notes.
#[derive(Debug, Clone)]
pub struct Survey {
    settings: Arc<SurveySettings>,
    names: Names,
    buckets: Vec<LiveBucket>,
    /// Other surveys merged into this one, already summarised.
    merged: Option<Summary>,
    item: ItemCells,
    pair_key: String,
}

impl Survey {
    pub fn new(settings: Arc<SurveySettings>) -> Self {
        let buckets = Summary::bucket_count(&settings);
        Survey {
            buckets: vec![LiveBucket::default(); buckets],
            settings,
            names: Names::default(),
            merged: None,
            item: ItemCells::default(),
            pair_key: String::new(),
        }
    }

    pub fn settings(&self) -> &SurveySettings {
        &self.settings
    }

    /// Items surveyed here and in the surveys merged into this one.
    pub fn items(&self) -> u64 {
        self.buckets.iter().map(|b| b.whole.items).sum::<u64>()
            + self.merged.as_ref().map_or(0, Summary::items)
    }

    pub fn observe(&mut self, item: &ItemView) {
        let Survey {
            settings,
            names,
            buckets,
            item: cells,
            pair_key,
            ..
        } = self;
        let bucket = settings
            .previous
            .iter()
            .position(|s| s.rule.as_ref().is_some_and(|r| r.matches(item)))
            .unwrap_or_else(|| Summary::unclaimed_of(settings));
        let bucket = &mut buckets[bucket];
        cells.cells.clear();
        cells.shape = 0;
        for (name, value) in item.iter() {
            let id = names.id(name, settings);
            let non_null = !matches!(value, Value::Null);
            if non_null && !names.keys[id as usize] {
                cells.shape = cells.shape.wrapping_add(names.hashes[id as usize]);
            }
            cells.cells.push(Cell {
                id,
                seen: Seen::of(value),
                non_null,
            });
        }
        let cells = &*cells;
        let names = &*names;
        bucket.whole.add(cells, names);
        let Some(delimiter) = settings.delimiter else {
            return;
        };
        let max = settings.max_values;
        // Entity prefixes of the keys (and of an attribute named by --classify-attribute).
        if bucket.tokens.len() < settings.token_attributes.len() {
            bucket.tokens.resize(settings.token_attributes.len(), None);
        }
        let pair = settings.key_pair();
        // Each pair key's prefix, or the value that has none.
        let mut pair_parts: [Option<Result<&str, &str>>; 2] = [None, None];
        for (i, attribute) in settings.token_attributes.iter().enumerate() {
            let Some(Value::S(text)) = item.get(attribute) else {
                continue;
            };
            let prefix = entity_prefix(text, delimiter).ok_or(text.as_ref());
            let split = bucket.tokens[i].get_or_insert_with(|| LiveSplit::new(false));
            match prefix {
                Ok(p) => split.add(p, |_| true, cells, names, max),
                Err(v) => split.add_unusable(v, max),
            }
            if let Some((p, s)) = pair {
                if attribute == p {
                    pair_parts[0] = Some(prefix);
                } else if attribute == s {
                    pair_parts[1] = Some(prefix);
                }
            }
        }
        if let [Some(p), Some(s)] = pair_parts {
            let split = bucket.pair.get_or_insert_with(|| LiveSplit::new(false));
            match (p, s) {
                (Ok(p), Ok(s)) => {
                    pair_key.clear();
                    pair_key.push_str(p);
                    pair_key.push(PAIR_SEPARATOR);
                    pair_key.push_str(s);
                    split.add(pair_key, |_| true, cells, names, max);
                }
                (Err(v), _) | (_, Err(v)) => split.add_unusable(v, max),
            }
        }
        // Whole values of the other string attributes: type attributes.
        for (cell, (_, value)) in cells.cells.iter().zip(item.iter()) {
            let Value::S(text) = value else { continue };
            let i = cell.id as usize;
            if names.keys[i] {
                continue;
            }
            if bucket.values.len() <= i {
                bucket.values.resize(i + 1, None);
            }
            bucket.values[i]
                .get_or_insert_with(|| LiveSplit::new(true))
                .add(text, names_an_entity, cells, names, max);
        }
    }

    /// Adds another survey of the same settings (another segment of the scan).
    pub fn merge(&mut self, other: &Survey) {
        debug_assert_eq!(self.settings, other.settings);
        let theirs = other.summary();
        match &mut self.merged {
            Some(merged) => merged.merge(&theirs),
            None => self.merged = Some(theirs),
        }
    }

    /// What the survey (and the surveys merged into it) saw, by attribute name.
    pub fn summary(&self) -> Summary {
        let mut summary = Summary {
            settings: self.settings.clone(),
            buckets: self
                .buckets
                .iter()
                .map(|b| b.summary(&self.names, &self.settings))
                .collect(),
        };
        if let Some(merged) = &self.merged {
            summary.merge(merged);
        }
        summary
    }
}
