//! Which items belong to a data-schema: its rule, and the order in which rules are tried.
//!
//! A rule is one condition on a string attribute, or several that must all hold:
//!
//! ```json
//! { "attribute": "pk", "prefix": "ORG#" }
//! { "attribute": "_et", "equals": "Task" }
//! { "all": [ { "attribute": "pk", "prefix": "CUSTOMER#" }, { "attribute": "sk", "prefix": "#ORDER#" } ] }
//! ```
//!
//! A condition only matches a string (`S`) value; an item without the attribute, or with another
//! type in it, does not match. `prefix` is how the first single-table designs were split (a key's
//! entity prefix); `equals` says "this value and no other", which is what a type attribute means:
//! `{"attribute": "type", "prefix": "User"}` would also take `UserSettings`, `equals` does not.
//!
//! Rules are tried most specific first ([`MatchRule::precedence`]): more conditions first, then
//! more `equals` conditions, then longer prefixes, then by table name; the table without a rule
//! comes last. For rules of one prefix condition this is "longest prefix first", the order the
//! project has always used, so older data-schema files classify exactly as before.

use serde::{Deserialize, Serialize};

use crate::value::{ItemView, Value};

/// What a condition asks of the attribute's string value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Test {
    /// The value starts with this text (never empty).
    Prefix(String),
    /// The value is exactly this text.
    Equals(String),
}

/// One condition on one top-level string attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Condition {
    pub attribute: String,
    pub test: Test,
}

/// A data-schema's rule: one condition, or several that must all hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MatchRule {
    One(Condition),
    /// Every condition holds (at least two of them).
    All(Vec<Condition>),
}

impl Condition {
    pub fn prefix(attribute: &str, prefix: &str) -> Self {
        Condition {
            attribute: attribute.to_string(),
            test: Test::Prefix(prefix.to_string()),
        }
    }

    pub fn equals(attribute: &str, value: &str) -> Self {
        Condition {
            attribute: attribute.to_string(),
            test: Test::Equals(value.to_string()),
        }
    }

    /// Whether a string value satisfies the condition.
    pub fn holds_for(&self, value: &str) -> bool {
        match &self.test {
            Test::Prefix(p) => value.starts_with(p.as_str()),
            Test::Equals(v) => value == v,
        }
    }

    /// True when every value satisfying `self` also satisfies `other` (same attribute).
    pub fn implies(&self, other: &Condition) -> bool {
        if self.attribute != other.attribute {
            return false;
        }
        match (&self.test, &other.test) {
            (Test::Equals(a), Test::Equals(b)) => a == b,
            (Test::Equals(a), Test::Prefix(p)) => a.starts_with(p.as_str()),
            (Test::Prefix(a), Test::Prefix(p)) => a.starts_with(p.as_str()),
            (Test::Prefix(_), Test::Equals(_)) => false,
        }
    }

    /// True when no value satisfies both (same attribute; conditions on different attributes
    /// can always hold together).
    pub fn excludes(&self, other: &Condition) -> bool {
        if self.attribute != other.attribute {
            return false;
        }
        match (&self.test, &other.test) {
            (Test::Equals(a), Test::Equals(b)) => a != b,
            (Test::Equals(a), Test::Prefix(p)) | (Test::Prefix(p), Test::Equals(a)) => {
                !a.starts_with(p.as_str())
            }
            (Test::Prefix(a), Test::Prefix(b)) => {
                !a.starts_with(b.as_str()) && !b.starts_with(a.as_str())
            }
        }
    }

    pub fn describe(&self) -> String {
        match &self.test {
            Test::Prefix(p) => format!("{} begins with {p:?}", self.attribute),
            Test::Equals(v) => format!("{} = {v:?}", self.attribute),
        }
    }
}

impl MatchRule {
    /// A rule of these conditions: one condition alone, several as [`MatchRule::All`].
    pub fn of(mut conditions: Vec<Condition>) -> Self {
        if conditions.len() == 1 {
            MatchRule::One(conditions.remove(0))
        } else {
            MatchRule::All(conditions)
        }
    }

    pub fn prefix(attribute: &str, prefix: &str) -> Self {
        MatchRule::One(Condition::prefix(attribute, prefix))
    }

    pub fn equals(attribute: &str, value: &str) -> Self {
        MatchRule::One(Condition::equals(attribute, value))
    }

    pub fn conditions(&self) -> &[Condition] {
        match self {
            MatchRule::One(c) => std::slice::from_ref(c),
            MatchRule::All(cs) => cs,
        }
    }

    /// Whether the item belongs to the rule's table, looking attributes up with `get` (phase 1
    /// caches the lookups of the key attributes every rule tests).
    pub fn matches_with<'r, 'v>(
        &'r self,
        mut get: impl FnMut(&'r str) -> Option<&'v Value<'v>>,
    ) -> bool {
        self.conditions().iter().all(|c| match get(&c.attribute) {
            Some(Value::S(s)) => c.holds_for(s),
            _ => false,
        })
    }

    pub fn matches(&self, item: &ItemView) -> bool {
        self.conditions()
            .iter()
            .all(|c| match item.get(&c.attribute) {
                Some(Value::S(s)) => c.holds_for(s),
                _ => false,
            })
    }

    /// True when no item can match both rules: some condition of one excludes one of the other.
    pub fn excludes(&self, other: &MatchRule) -> bool {
        self.conditions()
            .iter()
            .any(|a| other.conditions().iter().any(|b| a.excludes(b)))
    }

    /// The sort key of the classification order: the smaller is tried first. More conditions,
    /// then more `equals` conditions, then more prefix bytes come first.
    pub fn precedence(
        &self,
    ) -> (
        std::cmp::Reverse<usize>,
        std::cmp::Reverse<usize>,
        std::cmp::Reverse<usize>,
    ) {
        let conditions = self.conditions();
        let equals = conditions
            .iter()
            .filter(|c| matches!(c.test, Test::Equals(_)))
            .count();
        let prefix_bytes = conditions
            .iter()
            .map(|c| match &c.test {
                Test::Prefix(p) => p.len(),
                Test::Equals(_) => 0,
            })
            .sum();
        (
            std::cmp::Reverse(conditions.len()),
            std::cmp::Reverse(equals),
            std::cmp::Reverse(prefix_bytes),
        )
    }

    pub fn describe(&self) -> String {
        self.conditions()
            .iter()
            .map(Condition::describe)
            .collect::<Vec<_>>()
            .join(" and ")
    }

    /// What is wrong with a rule read from a file, if anything.
    pub fn problem(&self) -> Option<String> {
        if let MatchRule::All(cs) = self {
            if cs.len() < 2 {
                return Some(
                    "\"all\" needs at least two conditions; write a single condition without \"all\""
                        .into(),
                );
            }
        }
        self.conditions().iter().find_map(|c| {
            if c.attribute.is_empty() {
                Some("a rule's \"attribute\" must not be empty".to_string())
            } else if matches!(&c.test, Test::Prefix(p) if p.is_empty()) {
                Some(format!(
                    "the rule on {:?} has an empty prefix, which matches every item; leave \"rule\" out for a table that takes every remaining item",
                    c.attribute
                ))
            } else {
                None
            }
        })
    }
}

/// The JSON form of a rule or of one condition of `all`: exactly one of the shapes.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attribute: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    equals: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    all: Option<Vec<RuleJson>>,
}

impl RuleJson {
    fn of_condition(c: &Condition) -> Self {
        let (prefix, equals) = match &c.test {
            Test::Prefix(p) => (Some(p.clone()), None),
            Test::Equals(v) => (None, Some(v.clone())),
        };
        RuleJson {
            attribute: Some(c.attribute.clone()),
            prefix,
            equals,
            all: None,
        }
    }

    fn condition(self) -> Result<Condition, String> {
        let shape =
            "a condition is {\"attribute\": …, \"prefix\": …} or {\"attribute\": …, \"equals\": …}";
        if self.all.is_some() {
            return Err(format!("\"all\" cannot be nested; {shape}"));
        }
        let attribute = self
            .attribute
            .ok_or_else(|| format!("a condition needs \"attribute\"; {shape}"))?;
        let test = match (self.prefix, self.equals) {
            (Some(p), None) => Test::Prefix(p),
            (None, Some(v)) => Test::Equals(v),
            (Some(_), Some(_)) => {
                return Err(format!(
                    "the rule on {attribute:?} has both \"prefix\" and \"equals\"; {shape}"
                ))
            }
            (None, None) => {
                return Err(format!(
                    "the rule on {attribute:?} needs \"prefix\" or \"equals\"; {shape}"
                ))
            }
        };
        Ok(Condition { attribute, test })
    }
}

impl Serialize for MatchRule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MatchRule::One(c) => RuleJson::of_condition(c).serialize(s),
            MatchRule::All(cs) => RuleJson {
                attribute: None,
                prefix: None,
                equals: None,
                all: Some(cs.iter().map(RuleJson::of_condition).collect()),
            }
            .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for MatchRule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let json = RuleJson::deserialize(d)?;
        let rule = match json.all {
            Some(all) => {
                if json.attribute.is_some() || json.prefix.is_some() || json.equals.is_some() {
                    return Err(serde::de::Error::custom(
                        "a rule is either one condition or {\"all\": [conditions]}, not both",
                    ));
                }
                let conditions = all
                    .into_iter()
                    .map(RuleJson::condition)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(serde::de::Error::custom)?;
                MatchRule::All(conditions)
            }
            None => MatchRule::One(json.condition().map_err(serde::de::Error::custom)?),
        };
        match rule.problem() {
            Some(problem) => Err(serde::de::Error::custom(problem)),
            None => Ok(rule),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn parse(text: &str) -> Result<MatchRule, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    fn item(pairs: &[(&'static str, &'static str)]) -> ItemView<'static> {
        ItemView {
            attributes: pairs
                .iter()
                .map(|(k, v)| (Cow::Borrowed(*k), Value::S(Cow::Borrowed(*v))))
                .collect(),
        }
    }

    #[test]
    fn the_three_shapes_round_trip_byte_for_byte() {
        for text in [
            r#"{"attribute":"pk","prefix":"ORG#"}"#,
            r#"{"attribute":"_et","equals":"Task"}"#,
            r##"{"all":[{"attribute":"pk","prefix":"CUSTOMER#"},{"attribute":"sk","prefix":"#ORDER#"}]}"##,
        ] {
            let rule = parse(text).unwrap();
            assert_eq!(serde_json::to_string(&rule).unwrap(), text);
        }
    }

    #[test]
    fn malformed_rules_are_refused_with_what_to_write() {
        for (text, expected) in [
            (r#"{"attribute":"pk"}"#, "needs \"prefix\" or \"equals\""),
            (r#"{"attribute":"pk","prefix":"A","equals":"B"}"#, "both"),
            (r#"{"attribute":"pk","prefix":""}"#, "empty prefix"),
            (r#"{"attribute":"","equals":"x"}"#, "must not be empty"),
            (
                r#"{"all":[{"attribute":"pk","prefix":"A"}]}"#,
                "at least two",
            ),
            (
                r#"{"all":[{"all":[]},{"attribute":"pk","prefix":"A"}]}"#,
                "nested",
            ),
            (r#"{"attribute":"pk","prefix":"A","all":[]}"#, "not both"),
            (r#"{"attribute":"pk","suffix":"A"}"#, "suffix"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn equals_takes_one_value_where_prefix_takes_every_extension() {
        let prefix = MatchRule::prefix("type", "User");
        let equals = MatchRule::equals("type", "User");
        let settings = item(&[("type", "UserSettings")]);
        let user = item(&[("type", "User")]);
        assert!(prefix.matches(&settings) && prefix.matches(&user));
        assert!(equals.matches(&user) && !equals.matches(&settings));
        // Only strings match.
        let number = ItemView {
            attributes: vec![(Cow::Borrowed("type"), Value::N(Cow::Borrowed("1")))],
        };
        assert!(!MatchRule::prefix("type", "1").matches(&number));
        assert!(!equals.matches(&item(&[])));
    }

    #[test]
    fn all_needs_every_condition() {
        let order = MatchRule::of(vec![
            Condition::prefix("pk", "CUSTOMER#"),
            Condition::prefix("sk", "#ORDER#"),
        ]);
        assert!(order.matches(&item(&[("pk", "CUSTOMER#1"), ("sk", "#ORDER#7")])));
        assert!(!order.matches(&item(&[("pk", "CUSTOMER#1"), ("sk", "CUSTOMER#1")])));
        assert!(!order.matches(&item(&[("pk", "ORDER#7"), ("sk", "#ORDER#7")])));
        assert!(!order.matches(&item(&[("pk", "CUSTOMER#1")])));
    }

    #[test]
    fn precedence_puts_the_more_specific_rule_first() {
        let mut rules = [
            MatchRule::prefix("pk", "ORG#"),
            MatchRule::prefix("pk", "ORG#USER#"),
            MatchRule::prefix("type", "User"),
            MatchRule::equals("type", "UserSettings"),
            MatchRule::of(vec![
                Condition::prefix("pk", "ORG#"),
                Condition::prefix("sk", "USER#"),
            ]),
        ];
        rules.sort_by_key(MatchRule::precedence);
        let order: Vec<String> = rules.iter().map(MatchRule::describe).collect();
        assert_eq!(
            order,
            [
                "pk begins with \"ORG#\" and sk begins with \"USER#\"",
                "type = \"UserSettings\"",
                "pk begins with \"ORG#USER#\"",
                "pk begins with \"ORG#\"",
                "type begins with \"User\"",
            ]
        );
    }

    #[test]
    fn exclusion_and_implication_follow_the_values() {
        let p = |a: &str| Condition::prefix("pk", a);
        let e = |a: &str| Condition::equals("pk", a);
        assert!(p("ORG#").excludes(&p("USER#")));
        assert!(!p("ORG#").excludes(&p("ORG#USER#")));
        assert!(e("CONFIG").excludes(&p("ORG#")));
        assert!(!e("ORG#1").excludes(&p("ORG#")));
        assert!(e("A").excludes(&e("B")));
        assert!(!p("A").excludes(&Condition::prefix("sk", "B")));
        assert!(e("UserSettings").implies(&p("User")));
        assert!(!p("User").implies(&e("User")));
        assert!(p("ORG#USER#").implies(&p("ORG#")));
    }
}
