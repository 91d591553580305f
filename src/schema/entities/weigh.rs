//! Weighing candidates: which ways of splitting a bucket's items name entities, and which one
//! to use.
//!
//! A candidate is refused when it cannot name entities:
//!
//! - it grows with the data: more values than `--max-tables`, values shaped like ids, dates or
//!   numbers, or values most of which name a single item;
//! - it leaves items out: fewer than [`MIN_COVERAGE`] of them have a value that names an entity;
//! - its groups hold alike items: the *separation* — how little each group's typical attributes
//!   overlap those of the group closest to it, weighted by items — is under [`MIN_SEPARATION`].
//!   That is what tenants, states and versions of one entity look like. Attributes that (nearly)
//!   every item has, such as timestamps, and the key attributes do not count. A type attribute
//!   with a name libraries use ([`is_type_name`]) is trusted without it: two entities may have
//!   the same attribute names.
//!
//! Of the others, the one whose tables would be fullest wins: the *fill* is the share of the
//! tables' cells (items × columns) that hold a value, 1.0 when every item of a table has every
//! column. On equal fill, fewer tables win, then a type attribute with a known name, the
//! partition key's prefix, both keys' prefixes together, the sort key's prefix, any other type
//! attribute, another attribute's prefix.

use std::collections::BTreeSet;

use super::{looks_like_id, pair_parts, Bucket, Candidate, Dead, Group, Split, SurveySettings};

/// Share of items a candidate must give an entity to.
pub const MIN_COVERAGE: f64 = 0.9;

/// How far apart a candidate's groups must be.
pub const MIN_SEPARATION: f64 = 0.5;

/// An attribute in at least this share of a bucket's items is common to its entities.
const COMMON: f64 = 0.9;

/// An attribute in at least this share of a group's items is typical of the group.
const TYPICAL: f64 = 0.5;

/// Attribute names libraries and conventions give an item's entity type, compared without `_`
/// and case: ElectroDB's `__edb_e__`, dynamodb-toolbox's `_et` (and its older `entity`),
/// AppSync's `__typename`, and the common `type`, `_type`, `entityType`, `kind`.
const TYPE_NAMES: &[&str] = &[
    "edbe",
    "et",
    "entity",
    "typename",
    "type",
    "entitytype",
    "kind",
    "itemtype",
    "recordtype",
];

/// Whether an attribute's name says it holds an entity type.
pub fn is_type_name(attribute: &str) -> bool {
    let folded: String = attribute
        .chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    TYPE_NAMES.contains(&folded.as_str())
}

/// One candidate with its figures and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Weighed {
    pub candidate: Candidate,
    /// Distinct values that name an entity; `None` when there were more than were tracked.
    pub values: Option<usize>,
    /// Share of the bucket's items in one of its groups.
    pub coverage: f64,
    /// How little the groups' typical attributes overlap (1.0: nothing in common).
    pub separation: Option<f64>,
    /// Share of the resulting tables' cells that hold a value.
    pub fill: Option<f64>,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Chosen,
    /// Could name entities, but another does better (why).
    Behind(String),
    /// Cannot name entities (why).
    Refused(String),
}

impl Weighed {
    pub fn eligible(&self) -> bool {
        !matches!(self.verdict, Verdict::Refused(_))
    }
}

/// Share of the cells of these tables that hold a value (1.0 for no cells).
pub fn fill_of<'g>(groups: impl IntoIterator<Item = &'g Group>) -> f64 {
    let (filled, cells) = groups
        .into_iter()
        .map(|g| g.stats.filled_cells())
        .fold((0, 0), |(f, c), (gf, gc)| (f + gf, c + gc));
    if cells == 0 {
        1.0
    } else {
        filled as f64 / cells as f64
    }
}

/// The attributes typical of a group: in at least half its items, minus `skip`.
pub(super) fn typical<'g>(group: &'g Group, skip: &dyn Fn(&str) -> bool) -> BTreeSet<&'g str> {
    group
        .stats
        .attributes
        .iter()
        .filter(|(name, s)| {
            !skip(name) && s.non_null as f64 >= TYPICAL * group.items() as f64 && s.non_null > 0
        })
        .map(|(name, _)| name.as_str())
        .collect()
}

/// How much of the smaller set the larger one shares; two empty sets are alike, an empty and a
/// non-empty one are not.
pub(super) fn overlap(a: &BTreeSet<&str>, b: &BTreeSet<&str>) -> f64 {
    let smaller = a.len().min(b.len());
    if smaller == 0 {
        return if a.len() == b.len() { 1.0 } else { 0.0 };
    }
    a.intersection(b).count() as f64 / smaller as f64
}

/// What does not tell a bucket's entities apart: key attributes, the candidate's own attributes,
/// and attributes (nearly) every item of the bucket has.
pub(super) fn not_telling<'a>(
    bucket: &'a Bucket,
    settings: &'a SurveySettings,
    candidate: &'a Candidate,
) -> impl Fn(&str) -> bool + 'a {
    let items = bucket.whole.items() as f64;
    move |name: &str| {
        settings.key_attributes.iter().any(|k| k == name)
            || candidate.attributes().contains(&name)
            || bucket
                .whole
                .stats
                .attributes
                .get(name)
                .is_some_and(|s| s.non_null as f64 >= COMMON * items)
    }
}

/// Item-weighted mean over groups of how little each shares with the group closest to it.
fn separation(split: &Split, skip: &dyn Fn(&str) -> bool) -> Option<f64> {
    if split.groups.len() < 2 {
        return None;
    }
    let sets: Vec<(u64, BTreeSet<&str>)> = split
        .groups
        .values()
        .map(|g| (g.items(), typical(g, skip)))
        .collect();
    let total: u64 = sets.iter().map(|(n, _)| n).sum();
    let weighted: f64 = sets
        .iter()
        .enumerate()
        .map(|(i, (n, set))| {
            let closest = sets
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, (_, other))| overlap(set, other))
                .fold(0.0, f64::max);
            *n as f64 * (1.0 - closest)
        })
        .sum();
    Some(if total == 0 {
        0.0
    } else {
        weighted / total as f64
    })
}

/// The order among candidates of equal fill and table count (smaller first).
fn kind_order(candidate: &Candidate, settings: &SurveySettings) -> u8 {
    let key = |i: usize| settings.key_attributes.get(i).map(String::as_str);
    match candidate {
        Candidate::Value(a) if is_type_name(a) => 0,
        Candidate::Token(a) if Some(a.as_str()) == key(0) => 1,
        Candidate::Tokens(..) => 2,
        Candidate::Token(a) if Some(a.as_str()) == key(1) => 3,
        Candidate::Value(_) => 4,
        Candidate::Token(_) => 5,
    }
}

/// A value as a message shows it (a pair's two prefixes joined by " and ").
pub(super) fn shown(candidate: &Candidate, key: &str) -> String {
    match candidate {
        Candidate::Tokens(..) if key.contains(super::PAIR_SEPARATOR) => {
            let (p, s) = pair_parts(key);
            format!("{p:?} and {s:?}")
        }
        _ => format!("{key:?}"),
    }
}

/// Where an eligible candidate ranks: fewer empty cells (fill as thousandths, inverted), fewer
/// tables, then [`kind_order`]; smaller is better.
type Rank = (u64, usize, u8);

/// Whether most of a split's values name a single item: the mark of ids in a small sample.
fn grows(split: &Split) -> bool {
    let singles = split.groups.values().filter(|g| g.items() == 1).count();
    split.groups.len() > 3 && singles * 2 > split.groups.len()
}

/// Weighs every candidate of a bucket. With `need_two`, a candidate must split the items in two
/// or more groups (choosing a split); without, one group will do (naming new items of an
/// already split table). The result lists the chosen candidate first, then the others that could
/// name entities, best first, then the refused ones.
pub fn weigh(bucket: &Bucket, settings: &SurveySettings, need_two: bool) -> Vec<Weighed> {
    let items = bucket.whole.items();
    let max = settings.max_values;
    let mut out: Vec<(Option<Rank>, Weighed)> = Vec::new();
    for (candidate, split) in bucket.candidates(settings) {
        let covered = split.covered();
        let coverage = if items == 0 {
            0.0
        } else {
            covered as f64 / items as f64
        };
        let separation = separation(split, &not_telling(bucket, settings, &candidate));
        let fill = (split.dead.is_none() && !split.groups.is_empty())
            .then(|| fill_of(split.groups.values()));
        let example = split
            .example
            .as_deref()
            .map(|e| shown(&candidate, e))
            .unwrap_or_default();
        let refusal = match split.dead {
            Some(Dead::TooManyValues) => Some(format!(
                "more than {max} distinct values (e.g. {example}): grows with the data like an id; a split would make more tables than --max-tables {max}"
            )),
            Some(Dead::Unusable) => Some(format!(
                "values look like ids, dates or numbers (e.g. {example}{}), not entity names",
                split
                    .example
                    .as_deref()
                    .and_then(looks_like_id)
                    .map(|k| format!(", {k}"))
                    .unwrap_or_default()
            )),
            None if split.groups.is_empty() => Some(if split.unusable > 0 {
                format!("no value names an entity (e.g. {example} looks like an id or is too long)")
            } else {
                "no values".to_string()
            }),
            None if coverage < MIN_COVERAGE => Some(format!(
                "only {:.0}% of the items have a value naming an entity (at least {:.0}% must){}",
                coverage * 100.0,
                MIN_COVERAGE * 100.0,
                if split.unusable > 0 {
                    format!("; others look like ids (e.g. {example})")
                } else {
                    String::new()
                }
            )),
            None if need_two && split.groups.len() < 2 => Some(format!(
                "one value ({}): nothing to tell apart",
                split
                    .groups
                    .keys()
                    .next()
                    .map(|k| shown(&candidate, k))
                    .unwrap_or_default()
            )),
            None if grows(split) => Some(format!(
                "{} values for {covered} items, most of them naming a single item: grows with the data like an id",
                split.groups.len()
            )),
            None => match separation {
                Some(s)
                    if s < MIN_SEPARATION
                        && !matches!(&candidate, Candidate::Value(a) if is_type_name(a)) =>
                {
                    Some(format!(
                        "its groups hold alike items (separation {s:.2}, at least {MIN_SEPARATION:.2} needed): tenants, states or versions of one entity rather than entities"
                    ))
                }
                _ => None,
            },
        };
        let rank = refusal.is_none().then(|| {
            (
                u64::MAX - (fill.unwrap_or(0.0) * 1000.0).round() as u64,
                split.groups.len(),
                kind_order(&candidate, settings),
            )
        });
        out.push((
            rank,
            Weighed {
                values: split.dead.is_none().then_some(split.groups.len()),
                candidate,
                coverage,
                separation,
                fill,
                verdict: match refusal {
                    Some(why) => Verdict::Refused(why),
                    None => Verdict::Chosen,
                },
            },
        ));
    }
    // Eligible ones by rank, then refused ones (most items covered first).
    out.sort_by(|(ra, a), (rb, b)| match (ra, rb) {
        (Some(x), Some(y)) => x.cmp(y).then_with(|| a.candidate.cmp(&b.candidate)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => b
            .coverage
            .total_cmp(&a.coverage)
            .then_with(|| a.candidate.cmp(&b.candidate)),
    });
    let best = out
        .first()
        .and_then(|(r, w)| r.map(|r| (r, w.fill, w.values)));
    let mut first = true;
    out.into_iter()
        .map(|(rank, mut w)| {
            if let (Some(rank), Some((best_rank, best_fill, best_values))) = (rank, best) {
                if !first {
                    w.verdict = Verdict::Behind(if rank.0 > best_rank.0 {
                        format!(
                            "fills {:.2} of its cells against {:.2}",
                            w.fill.unwrap_or(0.0),
                            best_fill.unwrap_or(0.0)
                        )
                    } else if rank.1 > best_rank.1 {
                        format!(
                            "{} tables against {} for the same fill",
                            w.values.unwrap_or(0),
                            best_values.unwrap_or(0)
                        )
                    } else {
                        "as good, and the chosen one names tables more directly (a type attribute, then the partition key, then both keys, then the sort key)".to_string()
                    });
                }
                first = false;
            }
            w
        })
        .collect()
}
