//! From a survey to data-schemas: keep every previous table and its rule, give new entities
//! tables of their own, and say what was decided and why.
//!
//! - **Previous tables** keep their name, rule (hand-written or not) and columns; their columns
//!   evolve from the items their rule took this time. Within such a table, a group of items whose
//!   typical attributes the table never had, and which share little with the table's own items,
//!   is a new entity that the rule happens to match (`UserSettings` under a rule `type` begins
//!   with `User`, or a new child entity under its parent's partition key): it gets a table of its
//!   own, with the parent's rule narrowed by what tells the group apart, tried before the parent.
//! - **Items no rule claims** are split the way the previous rules split the table (their
//!   *established* candidate), else by the best candidate; on a first run, by the best candidate
//!   or, when none tells entities apart, into one table named after the source table.
//! - **A new rule never shadows an existing one**: a rule tried before an existing table's rule
//!   that could take some of its items (the survey saw such items, or could not tell) is not
//!   added; its items go to `_unclassified` and a finding says so.
//!
//! Table names come from the entity's name — the type value, or the distinguishing key prefix
//! without its delimiters (`CUSTOMER#` → `customer`, `UserSettings` → `user_settings`) — made
//! safe by [`naming`], and are never changed once written.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::weigh::{fill_of, not_telling, overlap, shown, typical, weigh, Verdict, Weighed};
use super::{pair_parts, Bucket, Candidate, Dead, Group, Split, Summary, Survey, SurveySettings};
use crate::schema::infer::columns_for;
use crate::schema::{
    naming, Condition, DataSchema, MatchRule, Test, FORMAT_VERSION, OVERFLOW_TABLE,
    UNCLASSIFIED_TABLE,
};

/// How items are told apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    /// From the data: the candidates are weighed (the default).
    Auto,
    /// By the entity prefix of this attribute (`--classify-attribute`).
    Prefix(String),
    /// Every item in one table (`--prefix-delimiter none`).
    OneTable,
}

/// What the plan needs besides the survey.
#[derive(Debug, Clone)]
pub struct PlanSettings<'a> {
    pub source_table: &'a str,
    pub strategy: Strategy,
    /// Columns from scratch (`--allow-narrowing`): previous tables keep their name and rule, and
    /// one whose rule took no item this time is dropped.
    pub narrow: bool,
}

/// The data-schemas, and what was decided on the way.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub schemas: Vec<DataSchema>,
    pub decisions: Vec<Decision>,
    pub findings: Vec<Finding>,
}

/// One choice of how to split some items, with every candidate weighed.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Whose items were split.
    pub scope: Scope,
    pub items: u64,
    /// Share of the cells filled if these items stayed in one table.
    pub one_table_fill: f64,
    /// Every candidate, the chosen one first.
    pub weighed: Vec<Weighed>,
    pub chosen: Option<Candidate>,
    /// The tables made: name, rule, items.
    pub tables: Vec<(String, Option<MatchRule>, u64)>,
    pub outcome: Outcome,
}

/// Whose items a decision is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every item: there were no previous data-schemas.
    All,
    /// The items no previous rule takes.
    Unclaimed,
    /// The items a previous table's rule took, looked into for new entities.
    Table(String),
}

/// What became of a decision's items.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The chosen candidate splits them into tables whose cells are `fill` filled.
    Split { fill: f64 },
    /// One table for all of them: asked for (`--prefix-delimiter none`), or nothing tells
    /// entities apart.
    OneTable { asked: bool },
    /// Nothing names them and no table takes them: they go to `_unclassified`.
    Unclassified,
}

/// Something a reviewer should know: where items will not land where they belong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Items no table will take: they go to `_unclassified`.
    Unclassified { items: u64, reason: String },
    /// A table whose items fall in two groups of attributes that share little besides the key:
    /// likely two entities the keys do not tell apart.
    LikelyMerge {
        table: String,
        first: (u64, Vec<String>),
        second: (u64, Vec<String>),
    },
    /// A new entity's rule was not added: it would be tried before an existing table's rule
    /// and could take its items.
    Shadowing {
        entity: String,
        rule: String,
        table: String,
        items: u64,
    },
    /// A previous table's `prefix` rule on a type attribute takes several of its values.
    SharedRule {
        table: String,
        rule: String,
        attribute: String,
        /// Each value with its items.
        values: Vec<(String, u64)>,
    },
    /// A key prefix had more values than a split may make tables: it looked like an id.
    GrowsWithData {
        candidate: String,
        example: String,
        max: usize,
    },
}

/// Why no data-schemas can be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("--classify-attribute {attribute}: more than {max} distinct prefixes (e.g. {example}), so more tables than --max-tables {max}; {attribute} looks like an id. Leave --classify-attribute out to let infer-schema choose, or pass a larger --max-tables if every prefix really is an entity")]
    TooManyValues {
        attribute: String,
        example: String,
        max: usize,
    },
}

/// The candidate the previous rules split by, if they all split the same way: every rule on one
/// non-key attribute (its values, or its prefixes when they all end with the delimiter), or
/// every rule on the key attributes (the partition key's prefix, the sort key's, or both).
pub fn established(previous: &[DataSchema], settings: &SurveySettings) -> Option<Candidate> {
    let rules: Vec<&MatchRule> = previous.iter().filter_map(|s| s.rule.as_ref()).collect();
    if rules.is_empty() {
        return None;
    }
    let keys = &settings.key_attributes;
    let attributes: BTreeSet<&str> = rules
        .iter()
        .flat_map(|r| r.conditions())
        .map(|c| c.attribute.as_str())
        .collect();
    let on_keys = attributes.iter().all(|a| keys.iter().any(|k| k == a));
    if on_keys {
        let both = rules.iter().any(|r| {
            let attrs: BTreeSet<&str> = r
                .conditions()
                .iter()
                .map(|c| c.attribute.as_str())
                .collect();
            attrs.len() > 1
        });
        return match (keys.as_slice(), attributes.len()) {
            ([p, s], _) if both || attributes.len() > 1 => {
                Some(Candidate::Tokens(p.clone(), s.clone()))
            }
            (_, 1) => attributes.first().map(|a| Candidate::Token(a.to_string())),
            _ => None,
        };
    }
    let [attribute] = attributes.iter().collect::<Vec<_>>()[..] else {
        return None;
    };
    let delimiter = settings.delimiter;
    let by_prefix = rules
        .iter()
        .flat_map(|r| r.conditions())
        .all(|c| matches!((&c.test, delimiter), (Test::Prefix(p), Some(d)) if p.ends_with(d)));
    Some(if by_prefix {
        Candidate::Token(attribute.to_string())
    } else {
        Candidate::Value(attribute.to_string())
    })
}

/// The conditions that pick one group of a candidate.
fn conditions_of(candidate: &Candidate, key: &str, delimiter: char) -> Vec<Condition> {
    let on_prefix = |attribute: &str, prefix: &str| {
        if prefix.ends_with(delimiter) {
            Condition::prefix(attribute, prefix)
        } else {
            Condition::equals(attribute, prefix)
        }
    };
    match candidate {
        Candidate::Value(a) => vec![Condition::equals(a, key)],
        Candidate::Token(a) => vec![on_prefix(a, key)],
        Candidate::Tokens(p, s) => {
            let (kp, ks) = pair_parts(key);
            vec![on_prefix(p, kp), on_prefix(s, ks)]
        }
    }
}

/// `parent`'s conditions narrowed by `extra`: a condition implied by a new one is dropped, a
/// new one implied by a kept one is not added.
fn narrowed(parent: Option<&MatchRule>, extra: Vec<Condition>) -> MatchRule {
    let mut conditions: Vec<Condition> =
        parent.map(|r| r.conditions().to_vec()).unwrap_or_default();
    for c in extra {
        conditions.retain(|old| !c.implies(old));
        if !conditions.iter().any(|old| old.implies(&c)) {
            conditions.push(c);
        }
    }
    MatchRule::of(conditions)
}

/// The entity names of a candidate's groups, in the groups' order: the type value, or the key
/// prefix without its delimiters. A pair is named by its sort key's prefix when that is an
/// entity of its own (an order under a customer, `CUSTOMER#`/`#ORDER#` → `order`; an item under
/// an order, `ORDER#`/`ITEM#` → `item`), else by its partition key's (the sort key repeats it,
/// is a fixed value such as `META`, or points at another partition, as `GROUP#`/`ORG#` does).
/// When two groups want one name, the one named most directly keeps it and the others become
/// `<partition>_<sort>` (`org_user` for `ORG#`/`USER#` beside `ORG#`/`META`).
fn entity_names(candidate: &Candidate, keys: &[&String], delimiter: char) -> Vec<String> {
    let bare = |t: &str| t.trim_matches(delimiter).to_string();
    let Candidate::Tokens(..) = candidate else {
        return keys
            .iter()
            .map(|k| match candidate {
                Candidate::Value(_) => k.to_string(),
                _ => bare(k),
            })
            .collect();
    };
    let parts: Vec<(&str, &str)> = keys.iter().map(|k| pair_parts(k)).collect();
    let partitions: BTreeSet<&str> = parts.iter().map(|(p, _)| *p).collect();
    // (name, how directly it names the group: smaller is more direct)
    let mut wanted: Vec<(String, u8)> = parts
        .iter()
        .map(|(p, s)| {
            let (np, ns) = (bare(p), bare(s));
            if p == s || np.eq_ignore_ascii_case(&ns) {
                (np, 0)
            } else if !s.ends_with(delimiter) {
                (np, 1)
            } else if !partitions.contains(s) {
                (ns, 2)
            } else {
                (np, 3)
            }
        })
        .collect();
    let mut by_name: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, (name, _)) in wanted.iter().enumerate() {
        by_name.entry(name.to_lowercase()).or_default().push(i);
    }
    for mut same in by_name.into_values().filter(|v| v.len() > 1) {
        same.sort_by_key(|&i| (wanted[i].1, i));
        for &i in &same[1..] {
            let (p, s) = parts[i];
            wanted[i].0 = format!("{}_{}", bare(p), bare(s));
        }
    }
    wanted.into_iter().map(|(n, _)| n).collect()
}

/// The groups of a split that would land in one table each, as data-schemas, skipping those
/// whose rule would shadow an existing table's.
struct NewTables<'a> {
    survey: &'a Summary,
    settings: &'a PlanSettings<'a>,
    taken: HashSet<String>,
    schemas: Vec<DataSchema>,
    findings: Vec<Finding>,
}

impl<'a> NewTables<'a> {
    fn delimiter(&self) -> char {
        self.survey.settings().delimiter.unwrap_or('#')
    }

    /// The previous table (other than `parent`) whose items `rule` could take, and how many.
    fn shadowed(
        &self,
        rule: &MatchRule,
        candidate: &Candidate,
        key: &str,
        parent: Option<usize>,
    ) -> Option<(String, u64)> {
        let previous = &self.survey.settings().previous;
        for (j, p) in previous.iter().enumerate() {
            let Some(existing) = &p.rule else { continue };
            if Some(j) == parent
                || rule.precedence() > existing.precedence()
                || rule.excludes(existing)
            {
                continue;
            }
            let bucket = &self.survey.buckets[j];
            if bucket.whole.items() == 0 {
                continue;
            }
            match bucket.split(candidate) {
                None => continue,
                Some(split) if split.dead.is_none() => match split.groups.get(key) {
                    None => continue,
                    Some(group) => return Some((p.table.clone(), group.items())),
                },
                Some(_) => return Some((p.table.clone(), bucket.whole.items())),
            }
        }
        None
    }

    /// Adds a table for each of `groups` (key, group, entity name); returns the table, rule,
    /// items and group key of those added.
    fn add(
        &mut self,
        candidate: &Candidate,
        groups: Vec<(&String, &Group, String)>,
        parent: Option<(usize, &DataSchema)>,
    ) -> Vec<(String, Option<MatchRule>, u64, String)> {
        let keys = &self.survey.settings().key_attributes;
        let delimiter = self.delimiter();
        let mut added = Vec::new();
        for (key, group, entity) in groups {
            let conditions = conditions_of(candidate, key, delimiter);
            let rule = narrowed(parent.and_then(|(_, p)| p.rule.as_ref()), conditions);
            if let Some((_, p)) = parent {
                if let Some(existing) = &p.rule {
                    if rule.precedence() >= existing.precedence() {
                        self.findings.push(Finding::Shadowing {
                            entity,
                            rule: rule.describe(),
                            table: p.table.clone(),
                            items: group.items(),
                        });
                        continue;
                    }
                }
            }
            if let Some((table, items)) =
                self.shadowed(&rule, candidate, key, parent.map(|(i, _)| i))
            {
                self.findings.push(Finding::Shadowing {
                    entity,
                    rule: rule.describe(),
                    table,
                    items,
                });
                continue;
            }
            let mut stem = naming::entity_table_name(&entity);
            if let Some((_, p)) = parent {
                if self.taken.contains(&stem) {
                    stem = naming::entity_table_name(&format!("{}_{entity}", p.table));
                }
            }
            let table = naming::assign(&stem, &mut self.taken);
            if let Some(f) = likely_merge(&table, group) {
                self.findings.push(f);
            }
            self.schemas.push(DataSchema {
                format: FORMAT_VERSION,
                source_table: self.settings.source_table.to_string(),
                table: table.clone(),
                rule: Some(rule.clone()),
                columns: columns_for(&group.stats, keys, None),
            });
            added.push((table, Some(rule), group.items(), key.clone()));
        }
        added
    }
}

/// Plans the data-schemas of everything surveyed.
pub fn plan(survey: &Survey, settings: &PlanSettings) -> Result<Plan, PlanError> {
    plan_summary(&survey.summary(), settings)
}

/// Plans the data-schemas of what a survey saw, in summary.
pub fn plan_summary(survey: &Summary, settings: &PlanSettings) -> Result<Plan, PlanError> {
    let s = survey.settings();
    let previous = &s.previous;
    let mut taken: HashSet<String> = previous.iter().map(|p| p.table.clone()).collect();
    taken.insert(UNCLASSIFIED_TABLE.to_string());
    taken.insert(OVERFLOW_TABLE.to_string());
    let mut new = NewTables {
        survey,
        settings,
        taken,
        schemas: Vec::new(),
        findings: Vec::new(),
    };
    let mut plan = Plan::default();
    for (i, p) in previous.iter().enumerate() {
        let bucket = &survey.buckets[i];
        let mut rest = bucket.whole.clone();
        if bucket.whole.items() > 0
            && settings.strategy != Strategy::OneTable
            && s.delimiter.is_some()
        {
            if let Some((decision, stays)) = split_off(&mut new, i, p) {
                rest = stays;
                plan.decisions.push(decision);
            }
        }
        if let Some(f) = shared_prefix_rule(&new, bucket, p) {
            plan.findings.push(f);
        }
        if bucket.whole.items() == 0 && settings.narrow {
            continue;
        }
        let before = (!settings.narrow).then_some(&p.columns[..]);
        if let Some(f) = likely_merge(&p.table, &rest) {
            plan.findings.push(f);
        }
        plan.schemas.push(DataSchema {
            format: FORMAT_VERSION,
            source_table: settings.source_table.to_string(),
            table: p.table.clone(),
            rule: p.rule.clone(),
            columns: columns_for(&rest.stats, &s.key_attributes, before),
        });
    }
    if survey.unclaimed() == previous.len() {
        let bucket = &survey.buckets[previous.len()];
        if bucket.whole.items() > 0 {
            let decision = new_entities(&mut new, bucket, &mut plan)?;
            plan.decisions.push(decision);
        }
    }
    plan.schemas.extend(new.schemas);
    plan.findings.extend(new.findings);
    Ok(plan)
}

/// A previous table whose `prefix` rule on a type attribute (not a key) takes items of several
/// values that stay in it (no new table took them out): the values may be entities of their own
/// that happen to begin alike (`User`, `UserSettings`), for a reviewer to decide.
fn shared_prefix_rule(new: &NewTables, bucket: &Bucket, table: &DataSchema) -> Option<Finding> {
    let keys = &new.survey.settings().key_attributes;
    let rule = table.rule.as_ref()?;
    let attribute = rule.conditions().iter().find_map(|c| match &c.test {
        Test::Prefix(_) if !keys.contains(&c.attribute) => Some(&c.attribute),
        _ => None,
    })?;
    let split = bucket.values.get(attribute)?;
    if split.dead.is_some() {
        return None;
    }
    let staying: Vec<(&String, u64)> = split
        .groups
        .iter()
        .filter(|(value, _)| {
            let taken = MatchRule::equals(attribute, value);
            !new.schemas.iter().any(|s| s.rule.as_ref() == Some(&taken))
        })
        .map(|(value, group)| (value, group.items()))
        .collect();
    (staying.len() > 1).then(|| Finding::SharedRule {
        table: table.table.clone(),
        rule: rule.describe(),
        attribute: attribute.clone(),
        values: staying.iter().map(|(v, n)| ((*v).clone(), *n)).collect(),
    })
}

/// Looks into previous table `index` for groups of items that are new entities; returns the
/// decision and what stays in the table, or `None` when there is nothing to take out.
fn split_off(new: &mut NewTables, index: usize, parent: &DataSchema) -> Option<(Decision, Group)> {
    let survey = new.survey;
    let s = survey.settings();
    let bucket = &survey.buckets[index];
    let known: HashSet<&str> = parent
        .columns
        .iter()
        .map(|c| c.attribute.as_str())
        .collect();
    let weighed = weigh(bucket, s, true);
    for w in weighed.iter().filter(|w| w.eligible()) {
        if let Strategy::Prefix(a) = &new.settings.strategy {
            if w.candidate != Candidate::Token(a.clone()) {
                continue;
            }
        }
        let split = bucket.split(&w.candidate)?;
        let skip = not_telling(bucket, s, &w.candidate);
        let sets: Vec<(&String, &Group, BTreeSet<&str>)> = split
            .groups
            .iter()
            .map(|(k, g)| (k, g, typical(g, &skip)))
            .collect();
        let known_share = |set: &BTreeSet<&str>| {
            if set.is_empty() {
                1.0
            } else {
                set.iter().filter(|a| known.contains(*a)).count() as f64 / set.len() as f64
            }
        };
        let Some(home) = sets.iter().max_by(|a, b| {
            known_share(&a.2)
                .total_cmp(&known_share(&b.2))
                .then(a.1.items().cmp(&b.1.items()))
                .then(b.0.cmp(a.0))
        }) else {
            continue;
        };
        let offs: Vec<&(&String, &Group, BTreeSet<&str>)> = sets
            .iter()
            .filter(|x| x.0 != home.0 && known_share(&x.2) < 0.5 && overlap(&x.2, &home.2) <= 0.5)
            .collect();
        if offs.is_empty() {
            continue;
        }
        let keys: Vec<&String> = offs.iter().map(|x| x.0).collect();
        let names = entity_names(&w.candidate, &keys, new.delimiter());
        let groups: Vec<(&String, &Group, String)> = offs
            .iter()
            .zip(names)
            .map(|(x, name)| (x.0, x.1, name))
            .collect();
        let added = new.add(&w.candidate, groups, Some((index, parent)));
        if added.is_empty() {
            continue;
        }
        // What stays: the groups not taken out, exactly, when every item is in a group;
        // else the whole less the groups taken out (counts exact, value summaries the whole's,
        // which hold the uncovered items' values too).
        let taken_out: Vec<&Group> = offs
            .iter()
            .filter(|x| added.iter().any(|a| &a.3 == x.0))
            .map(|x| x.1)
            .collect();
        let rest = if split.covered() == bucket.whole.items() {
            let mut rest = Group::default();
            for (key, group) in &split.groups {
                if !added.iter().any(|a| &a.3 == key) {
                    rest.merge(group);
                }
            }
            rest
        } else {
            taken_out
                .iter()
                .fold(bucket.whole.clone(), |rest, group| rest.without(group))
        };
        let tables: Vec<(String, Option<MatchRule>, u64)> =
            added.into_iter().map(|(t, r, n, _)| (t, r, n)).collect();
        let mut weighed = weighed.clone();
        mark_chosen(&mut weighed, &w.candidate);
        return Some((
            Decision {
                scope: Scope::Table(parent.table.clone()),
                items: bucket.whole.items(),
                one_table_fill: fill_of([&bucket.whole]),
                weighed,
                chosen: Some(w.candidate.clone()),
                outcome: Outcome::Split {
                    fill: fill_of(taken_out.iter().copied()),
                },
                tables,
            },
            rest,
        ));
    }
    None
}

/// Makes `candidate` the chosen one of a weighed list (it may not have ranked first).
fn mark_chosen(weighed: &mut [Weighed], candidate: &Candidate) {
    for w in weighed.iter_mut() {
        if &w.candidate == candidate {
            w.verdict = Verdict::Chosen;
        } else if w.verdict == Verdict::Chosen {
            w.verdict = Verdict::Behind(
                "ranked first, but new items are split the way the previous rules split the table"
                    .into(),
            );
        }
    }
    weighed.sort_by_key(|w| w.verdict != Verdict::Chosen);
}

/// Tables for the items no previous rule claims.
fn new_entities(
    new: &mut NewTables,
    bucket: &Bucket,
    plan: &mut Plan,
) -> Result<Decision, PlanError> {
    let survey = new.survey;
    let s = survey.settings();
    let first_run = s.previous.is_empty();
    let one_table_fill = fill_of([&bucket.whole]);
    let items = bucket.whole.items();
    let mut weighed = if s.delimiter.is_some() {
        weigh(bucket, s, first_run)
    } else {
        Vec::new()
    };
    let chosen: Option<Candidate> = match &new.settings.strategy {
        Strategy::OneTable => None,
        Strategy::Prefix(a) => {
            let candidate = Candidate::Token(a.clone());
            if let Some(split) = bucket.split(&candidate) {
                if split.dead == Some(Dead::TooManyValues) {
                    return Err(PlanError::TooManyValues {
                        attribute: a.clone(),
                        example: split.example.clone().unwrap_or_default(),
                        max: s.max_values,
                    });
                }
            }
            bucket
                .split(&candidate)
                .is_some_and(|sp| !sp.groups.is_empty())
                .then_some(candidate)
        }
        Strategy::Auto if first_run => weighed
            .iter()
            .find(|w| w.verdict == Verdict::Chosen)
            .map(|w| w.candidate.clone()),
        Strategy::Auto => established(&s.previous, s)
            .filter(|c| bucket.split(c).is_some_and(usable_as_established))
            .or_else(|| {
                weighed
                    .iter()
                    .find(|w| w.verdict == Verdict::Chosen)
                    .map(|w| w.candidate.clone())
            }),
    };
    // Key prefixes, and attributes named like a type attribute, that had too many values to
    // name tables are worth a reviewer's look; any other attribute with many values is data.
    for w in &weighed {
        let worth_saying = match &w.candidate {
            Candidate::Token(_) | Candidate::Tokens(..) => true,
            Candidate::Value(a) => super::weigh::is_type_name(a),
        };
        if worth_saying && matches!(w.verdict, Verdict::Refused(_)) {
            if let Some(split) = bucket
                .split(&w.candidate)
                .filter(|sp| sp.dead == Some(Dead::TooManyValues))
            {
                plan.findings.push(Finding::GrowsWithData {
                    candidate: w.candidate.describe(),
                    example: split
                        .example
                        .as_deref()
                        .map(|e| shown(&w.candidate, e))
                        .unwrap_or_default(),
                    max: s.max_values,
                });
            }
        }
    }
    let Some(candidate) = chosen else {
        if first_run {
            let table = naming::assign(new.settings.source_table, &mut new.taken);
            if let Some(f) = likely_merge(&table, &bucket.whole) {
                new.findings.push(f);
            }
            new.schemas.push(DataSchema {
                format: FORMAT_VERSION,
                source_table: new.settings.source_table.to_string(),
                table: table.clone(),
                rule: None,
                columns: columns_for(&bucket.whole.stats, &s.key_attributes, None),
            });
            return Ok(Decision {
                scope: Scope::All,
                items,
                one_table_fill,
                weighed,
                chosen: None,
                outcome: Outcome::OneTable {
                    asked: new.settings.strategy == Strategy::OneTable,
                },
                tables: vec![(table, None, items)],
            });
        }
        new.findings.push(Finding::Unclassified {
            items,
            reason: "no rule takes them and no attribute or key prefix names them".into(),
        });
        return Ok(Decision {
            scope: Scope::Unclaimed,
            items,
            one_table_fill,
            weighed,
            chosen: None,
            outcome: Outcome::Unclassified,
            tables: Vec::new(),
        });
    };
    mark_chosen(&mut weighed, &candidate);
    let split: &Split = bucket
        .split(&candidate)
        .expect("a chosen candidate was surveyed");
    let keys: Vec<&String> = split.groups.keys().collect();
    let names = entity_names(&candidate, &keys, new.delimiter());
    let groups: Vec<(&String, &Group, String)> = split
        .groups
        .iter()
        .zip(names)
        .map(|((k, g), n)| (k, g, n))
        .collect();
    let tables: Vec<(String, Option<MatchRule>, u64)> = new
        .add(&candidate, groups, None)
        .into_iter()
        .map(|(t, r, n, _)| (t, r, n))
        .collect();
    let uncovered = items - split.covered();
    if uncovered > 0 {
        new.findings.push(Finding::Unclassified {
            items: uncovered,
            reason: format!(
                "they have no {} that names an entity{}",
                match &candidate {
                    Candidate::Value(a) => format!("value of {a}"),
                    Candidate::Token(a) => format!("prefix of {a}"),
                    Candidate::Tokens(p, k) => format!("prefix of {p} and {k}"),
                },
                split
                    .example
                    .as_deref()
                    .map(|e| format!(" (e.g. {})", shown(&candidate, e)))
                    .unwrap_or_default()
            ),
        });
    }
    Ok(Decision {
        scope: if first_run {
            Scope::All
        } else {
            Scope::Unclaimed
        },
        items,
        one_table_fill,
        weighed,
        chosen: Some(candidate),
        tables,
        outcome: Outcome::Split {
            fill: fill_of(split.groups.values()),
        },
    })
}

/// Whether new items can be split the way the previous rules split the table: the candidate is
/// tracked, names some of them, and does not grow with the data.
fn usable_as_established(split: &Split) -> bool {
    let singles = split.groups.values().filter(|g| g.items() == 1).count();
    split.dead.is_none()
        && !split.groups.is_empty()
        && !(split.groups.len() > 3 && singles * 2 > split.groups.len())
}

/// Whether two attribute sets belong to one entity: one mostly within the other (an empty set is
/// within every set).
fn alike(a: &[String], b: &[String]) -> bool {
    let smaller = a.len().min(b.len());
    if smaller == 0 {
        return true;
    }
    let common = a.iter().filter(|x| b.contains(x)).count();
    common * 2 > smaller
}

/// Two groups of attribute sets in one table that share little besides the key (from the
/// sample of shapes): a likely merge, when the smaller group has at least two items and 1% of
/// the table.
pub fn likely_merge(table: &str, group: &Group) -> Option<Finding> {
    let shapes: Vec<_> = group.shapes.values().collect();
    let mut cluster: Vec<usize> = (0..shapes.len()).collect();
    fn root(cluster: &mut [usize], mut i: usize) -> usize {
        while cluster[i] != i {
            cluster[i] = cluster[cluster[i]];
            i = cluster[i];
        }
        i
    }
    for i in 0..shapes.len() {
        for j in i + 1..shapes.len() {
            if alike(&shapes[i].attributes, &shapes[j].attributes) {
                let (a, b) = (root(&mut cluster, i), root(&mut cluster, j));
                cluster[a.max(b)] = a.min(b);
            }
        }
    }
    let mut clusters: BTreeMap<usize, (u64, BTreeSet<String>)> = BTreeMap::new();
    for (i, shape) in shapes.iter().enumerate() {
        let r = root(&mut cluster, i);
        let entry = clusters.entry(r).or_default();
        entry.0 += shape.items;
        entry.1.extend(shape.attributes.iter().cloned());
    }
    let mut clusters: Vec<(u64, BTreeSet<String>)> = clusters.into_values().collect();
    clusters.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let [first, second, ..] = &clusters[..] else {
        return None;
    };
    (second.0 >= 2 && second.0 * 100 >= group.items()).then(|| Finding::LikelyMerge {
        table: table.to_string(),
        first: (first.0, first.1.iter().cloned().collect()),
        second: (second.0, second.1.iter().cloned().collect()),
    })
}

fn list(names: &[String]) -> String {
    const SHOWN: usize = 6;
    let mut text = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(", … ({} in all)", names.len()));
    }
    if text.is_empty() {
        "no attribute besides the key".into()
    } else {
        text
    }
}

impl Finding {
    /// In a reviewer's words, with what to do; `source` is the DynamoDB table.
    pub fn describe(&self, source: &str) -> String {
        match self {
            Finding::Unclassified { items, reason } => format!(
                "{items} item(s) will go to _unclassified: {reason}. To give them a table, write a data-schema with a rule that takes them under schemas/{source}/ (see schemas/README.md) and run `dynamo-etl infer-schema --table {source}` again"
            ),
            Finding::LikelyMerge { table, first, second } => format!(
                "likely merge in table {table}: {} item(s) with {} and {} item(s) with {} share no more than the key; they look like two entities the keys do not tell apart. Check with `dynamo-etl infer-schema --table {source} --explain`, and split them with a rule on an attribute that tells them apart in schemas/{source}/{table}.json",
                first.0,
                list(&first.1),
                second.0,
                list(&second.1)
            ),
            Finding::Shadowing { entity, rule, table, items } => format!(
                "new entity {entity:?} got no table: its rule ({rule}) would be tried before table {table}'s and could take {items} of its item(s); its items stay where they are. Write a rule for it by hand under schemas/{source}/ that does not overlap {table}'s"
            ),
            Finding::SharedRule { table, rule, attribute, values } => format!(
                "table {table}'s rule ({rule}) takes items of {} values of {attribute}: {}; they look alike, so they stay in {table}. If they are different entities, give each a table with an \"equals\" rule in schemas/{source}/ (infer-schema keeps rules written by hand)",
                values.len(),
                values
                    .iter()
                    .map(|(v, n)| format!("{v:?} ({n} items)"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Finding::GrowsWithData { candidate, example, max } => format!(
                "{candidate} were not used to name tables: more than {max} distinct values (e.g. {example}) looked like ids; pass --max-tables if every one really is an entity"
            ),
        }
    }
}
