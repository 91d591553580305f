//! Entity inference over the layouts of `testkit::layouts`, checked the way phase 1 will use the
//! result: every item classified into its entity's table, every attribute in a typed column.
#![cfg(test)]

use super::*;
use crate::schema::{Condition, LogicalType, MatchRule, SchemaSet};
use crate::testkit::layouts::{self, Layout};
use crate::transform::Transformer;
use crate::value::Item;
use crate::warehouse::postgres::limits::LIMITS as POSTGRES;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::BTreeSet;

const SOURCE: &str = "t";

/// Infers with default flags (evolving `previous`), then checks that each item lands in the
/// table the layout names, with nothing in `_extra`, and that scalar attributes got scalar
/// columns. Returns the plan.
fn check(layout: &Layout, previous: &[DataSchema]) -> Plan {
    let plan = infer_items(
        SOURCE,
        &layout.keys,
        previous,
        Strategy::Auto,
        &layout.items(),
    );
    let context = format!("layout {}\n{}", layout.name, shown(&plan));
    let set = SchemaSet::new(SOURCE, plan.schemas.clone(), "test")
        .unwrap_or_else(|e| panic!("{e}\n{context}"));
    let tables: BTreeSet<&str> = set.schemas.iter().map(|s| s.table.as_str()).collect();
    let expected: BTreeSet<&str> = layout.tables().into_iter().collect();
    assert_eq!(tables, expected, "{context}");
    let mut transformer = Transformer::new(&set, &layout.keys, &POSTGRES);
    for (table, item) in &layout.items {
        let view = ItemView::from_sdk(item);
        let row = transformer.convert(&view).unwrap();
        let schema = transformer.tables().nth(row.table).unwrap().clone();
        assert_eq!(schema.table, *table, "{item:?}\n{context}");
        // Only a NULL may be kept in `_extra` (so NULL and absent stay apart).
        if let Some(extra) = row.fields.last().unwrap() {
            let extra: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(extra).unwrap();
            assert!(
                extra.iter().all(|(name, v)| v.is_null()
                    && matches!(item.get(name), Some(AttributeValue::Null(_)))),
                "_extra of {item:?}: {extra:?}\n{context}"
            );
        }
        for (name, value) in item {
            let scalar = matches!(
                value,
                AttributeValue::S(_) | AttributeValue::N(_) | AttributeValue::Bool(_)
            );
            let column = schema
                .columns
                .iter()
                .find(|c| &c.attribute == name)
                .unwrap();
            assert!(
                !scalar || column.logical_type != LogicalType::Json,
                "{table}.{name} is json\n{context}"
            );
        }
    }
    assert!(
        transformer.drift().is_empty(),
        "{:?}\n{context}",
        transformer.drift()
    );
    plan
}

/// What a failed assertion shows: each decision with its candidates, and the findings.
fn shown(plan: &Plan) -> String {
    let mut text = String::new();
    for d in &plan.decisions {
        text.push_str(&format!(
            "{:?} ({} items): {:?} -> {:?}\n",
            d.scope, d.items, d.outcome, d.tables
        ));
        for w in &d.weighed {
            text.push_str(&format!("  {w:?}\n"));
        }
    }
    for f in &plan.findings {
        text.push_str(&format!("finding: {}\n", f.describe(SOURCE)));
    }
    text
}

fn rule_of(plan: &Plan, table: &str) -> Option<MatchRule> {
    plan.schemas
        .iter()
        .find(|s| s.table == table)
        .unwrap_or_else(|| panic!("no table {table}"))
        .rule
        .clone()
}

fn chosen(plan: &Plan) -> Option<Candidate> {
    plan.decisions[0].chosen.clone()
}

#[test]
fn every_layout_gives_each_entity_a_table_of_its_own() {
    for layout in layouts::all() {
        let plan = check(&layout, &[]);
        assert!(
            plan.findings.is_empty(),
            "{}: {:?}",
            layout.name,
            plan.findings
        );
    }
}

#[test]
fn type_attributes_are_chosen_and_give_exact_value_rules() {
    for (layout, attribute) in [
        (layouts::electrodb(), "__edb_e__"),
        (layouts::dynamodb_toolbox(), "_et"),
        (layouts::appsync(), "__typename"),
        (layouts::plain_type(), "type"),
    ] {
        let plan = check(&layout, &[]);
        assert_eq!(
            chosen(&plan),
            Some(Candidate::Value(attribute.into())),
            "{}",
            layout.name
        );
        let (_, item) = &layout.items[0];
        let AttributeValue::S(value) = &item[attribute] else {
            unreachable!()
        };
        assert_eq!(
            rule_of(&plan, layout.items[0].0),
            Some(MatchRule::equals(attribute, value))
        );
    }
}

#[test]
fn two_keys_give_rules_on_both_keys_and_names_from_the_distinguishing_prefix() {
    let plan = check(&layouts::two_keys(), &[]);
    assert_eq!(
        chosen(&plan),
        Some(Candidate::Tokens("pk".into(), "sk".into()))
    );
    let both = |p: &str, s: &str| {
        Some(MatchRule::of(vec![
            Condition::prefix("pk", p),
            Condition::prefix("sk", s),
        ]))
    };
    assert_eq!(rule_of(&plan, "customer"), both("CUSTOMER#", "CUSTOMER#"));
    assert_eq!(rule_of(&plan, "order"), both("CUSTOMER#", "#ORDER#"));
    assert_eq!(rule_of(&plan, "item"), both("ORDER#", "ITEM#"));
}

#[test]
fn a_child_entity_under_its_parents_partition_key_gets_its_own_table() {
    let plan = check(&layouts::key_prefixes(), &[]);
    assert_eq!(
        rule_of(&plan, "org"),
        Some(MatchRule::of(vec![
            Condition::prefix("pk", "ORG#"),
            Condition::equals("sk", "META"),
        ]))
    );
    assert_eq!(
        rule_of(&plan, "org_user"),
        Some(MatchRule::of(vec![
            Condition::prefix("pk", "ORG#"),
            Condition::prefix("sk", "USER#"),
        ]))
    );
}

#[test]
fn tenants_never_become_tables() {
    let layout = layouts::tenants();
    let plan = check(&layout, &[]);
    assert_eq!(chosen(&plan), Some(Candidate::Token("sk".into())));
    let weighed = &plan.decisions[0].weighed;
    for refused in [
        Candidate::Token("pk".into()),
        Candidate::Tokens("pk".into(), "sk".into()),
    ] {
        let w = weighed.iter().find(|w| w.candidate == refused).unwrap();
        assert!(
            matches!(&w.verdict, Verdict::Refused(why) if why.contains("alike items")),
            "{w:?}"
        );
    }
}

#[test]
fn the_pk_prefix_layout_of_the_demo_keeps_its_rules() {
    // The reviewed schemas/platform files are this plan (tests/it/schemas.rs compares them).
    let items = crate::testkit::fixtures::demo_items(3);
    let plan = infer_items(
        SOURCE,
        &["pk".into(), "sk".into()],
        &[],
        Strategy::Auto,
        &items,
    );
    assert_eq!(chosen(&plan), Some(Candidate::Token("pk".into())));
    let rules: BTreeSet<String> = plan
        .schemas
        .iter()
        .map(|s| s.rule.as_ref().unwrap().describe())
        .collect();
    let expected: BTreeSet<String> = ["FIN#", "GROUP#", "ORG#", "VULN#"]
        .iter()
        .map(|p| MatchRule::prefix("pk", p).describe())
        .collect();
    assert_eq!(rules, expected);
}

/// The second week's schemas: week one inferred, `edit` applied to them (a reviewer), then
/// week two's items inferred evolving them.
fn second_week(
    week_one: &Layout,
    edit: impl FnOnce(&mut Vec<DataSchema>),
    more: Vec<(&'static str, Item)>,
) -> (Vec<DataSchema>, Plan, Layout) {
    let mut first = check(week_one, &[]).schemas;
    edit(&mut first);
    let week_two = week_one.clone().with(more);
    let plan = check(&week_two, &first);
    (first, plan, week_two)
}

#[test]
fn the_second_week_adds_new_entities_and_type_values_and_keeps_a_hand_edited_rule() {
    let hand_written = MatchRule::prefix("_et", "User");
    let (first, plan, _) = second_week(
        &layouts::dynamodb_toolbox(),
        |schemas| {
            let user = schemas.iter_mut().find(|s| s.table == "user").unwrap();
            user.rule = Some(hand_written.clone());
        },
        layouts::dynamodb_toolbox_week_two(),
    );
    // The reviewer's rule is kept; UserSettings, which it would also take, gets its own table
    // with an exact rule tried before it; the new entity gets one too.
    assert_eq!(rule_of(&plan, "user"), Some(hand_written));
    assert_eq!(
        rule_of(&plan, "user_settings"),
        Some(MatchRule::equals("_et", "UserSettings"))
    );
    assert_eq!(
        rule_of(&plan, "project"),
        Some(MatchRule::equals("_et", "Project"))
    );
    // Existing tables keep their columns (and names) in order; nothing narrows.
    for before in &first {
        let after = plan
            .schemas
            .iter()
            .find(|s| s.table == before.table)
            .unwrap();
        assert_eq!(
            after.columns[..before.columns.len()],
            before.columns[..],
            "{}",
            before.table
        );
    }
    assert!(crate::schema::evolve::narrowings(&first, &plan.schemas).is_empty());
    let user = plan.schemas.iter().find(|s| s.table == "user").unwrap();
    assert!(
        !user.columns.iter().any(|c| c.attribute == "theme"),
        "UserSettings' attributes stay out of user: {:?}",
        user.columns
    );
    // The decision that took UserSettings out of user says so.
    assert!(
        plan.decisions
            .iter()
            .any(|d| d.scope == Scope::Table("user".into())
                && d.tables
                    .iter()
                    .any(|(t, _, n)| t == "user_settings" && *n == 6)),
        "{}",
        shown(&plan)
    );
}

#[test]
fn the_second_week_of_other_layouts_evolves_the_way_the_first_split() {
    // ElectroDB: a new __edb_e__ value.
    let (_, plan, _) = second_week(&layouts::electrodb(), |_| {}, layouts::electrodb_week_two());
    assert_eq!(
        rule_of(&plan, "project"),
        Some(MatchRule::equals("__edb_e__", "project"))
    );
    // Two keys: a new entity in the customer's partition.
    let (_, plan, _) = second_week(&layouts::two_keys(), |_| {}, layouts::two_keys_week_two());
    assert_eq!(
        rule_of(&plan, "address"),
        Some(MatchRule::of(vec![
            Condition::prefix("pk", "CUSTOMER#"),
            Condition::prefix("sk", "#ADDRESS#"),
        ]))
    );
}

#[test]
fn a_child_entity_appearing_under_a_split_partition_is_taken_out_of_its_parent() {
    // Week one: the demo's organisations alone (split by pk prefix). Week two: memberships
    // appear in the organisations' partitions, which the `org` rule would take.
    let demo = crate::testkit::fixtures::demo_items(2);
    let week_one = Layout {
        name: "demo",
        docs: &[],
        keys: vec!["pk".into(), "sk".into()],
        items: demo
            .iter()
            .map(|i| {
                let AttributeValue::S(pk) = &i["pk"] else {
                    unreachable!()
                };
                let table = match pk.split('#').next().unwrap() {
                    "ORG" => "org",
                    "GROUP" => "group",
                    "FIN" => "fin",
                    _ => "vuln",
                };
                (table, i.clone())
            })
            .collect(),
    };
    let memberships: Vec<(&'static str, Item)> = (0..6)
        .map(|m| {
            let mut item = Item::new();
            item.insert(
                "pk".into(),
                AttributeValue::S(format!("ORG#org-00{}", m % 2)),
            );
            item.insert("sk".into(), AttributeValue::S(format!("MEMBER#m{m}")));
            item.insert("role".into(), AttributeValue::S("admin".into()));
            item.insert("invitedBy".into(), AttributeValue::S(format!("m{}", m / 2)));
            ("member", item)
        })
        .collect();
    let (_, plan, _) = second_week(&week_one, |_| {}, memberships);
    assert_eq!(rule_of(&plan, "org"), Some(MatchRule::prefix("pk", "ORG#")));
    let member = rule_of(&plan, "member").unwrap();
    assert_eq!(
        member,
        MatchRule::of(vec![
            Condition::prefix("pk", "ORG#"),
            Condition::prefix("sk", "MEMBER#"),
        ])
    );
    assert!(member.precedence() < MatchRule::prefix("pk", "ORG#").precedence());
}

#[test]
fn a_new_rule_never_shadows_an_existing_one() {
    // A hand-written table takes A# partitions; the items no rule takes are told apart by
    // `type`, and one of their values also appears in A#'s items.
    let item = |pk: &str, kind: &str, attribute: &str| -> Item {
        [
            ("pk".to_string(), AttributeValue::S(pk.into())),
            ("sk".to_string(), AttributeValue::S("x".into())),
            ("type".to_string(), AttributeValue::S(kind.into())),
            (attribute.to_string(), AttributeValue::S("v".into())),
        ]
        .into()
    };
    let week_one: Vec<Item> = (0..4)
        .map(|i| item(&format!("A#{i}"), "Widget", "colour"))
        .collect();
    let keys = ["pk".to_string(), "sk".to_string()];
    let mut first = infer_items(SOURCE, &keys, &[], Strategy::Auto, &week_one).schemas;
    // The reviewer names the table and writes its rule; another table is split by `kind`.
    first[0].table = "a".into();
    first[0].rule = Some(MatchRule::prefix("pk", "A#"));
    let mut other = first[0].clone();
    other.table = "legacy".into();
    other.rule = Some(MatchRule::equals("kind", "old"));
    first.push(other);
    let all: Vec<Item> = week_one
        .iter()
        .cloned()
        .chain((0..4).map(|i| item(&format!("B#{i}"), "Widget", "size")))
        .chain((0..4).map(|i| item(&format!("C#{i}"), "Gadget", "weight")))
        .collect();
    let plan = infer_items(SOURCE, &keys, &first, Strategy::Auto, &all);
    let tables: Vec<&str> = plan.schemas.iter().map(|s| s.table.as_str()).collect();
    assert!(tables.contains(&"gadget"), "{tables:?}");
    assert!(!tables.contains(&"widget"), "{tables:?}");
    assert!(
        plan.findings
            .iter()
            .any(|f| matches!(f, Finding::Shadowing { table, .. } if table == "a")),
        "{:?}",
        plan.findings
    );
    assert!(plan
        .findings
        .iter()
        .any(|f| f.describe(SOURCE).contains("would be tried before table a")));
}

#[test]
fn ids_in_key_prefixes_refuse_to_split_and_say_so() {
    let layout = layouts::id_prefixes(8);
    let mut settings = SurveySettings::new(&layout.keys, Some('#'), 5, Vec::new());
    settings = settings.with_token_attribute("pk");
    let mut survey = Survey::new(Arc::new(settings));
    for item in layout.items() {
        survey.observe(&ItemView::from_sdk(&item));
    }
    let plan_settings = PlanSettings {
        source_table: SOURCE,
        strategy: Strategy::Auto,
        narrow: false,
    };
    let plan = plan(&survey, &plan_settings).unwrap();
    let pk = plan.decisions[0]
        .weighed
        .iter()
        .find(|w| w.candidate == Candidate::Token("pk".into()))
        .unwrap();
    assert!(
        matches!(&pk.verdict, Verdict::Refused(why) if why.contains("more than 5 distinct values") && why.contains("user0000#")),
        "{pk:?}"
    );
    assert!(
        plan.findings.iter().any(|f| matches!(f, Finding::GrowsWithData { candidate, .. } if candidate == "prefixes of pk")),
        "{:?}",
        plan.findings
    );
    // Told to split by it, the job refuses, naming the attribute and what to do.
    let forced = PlanSettings {
        strategy: Strategy::Prefix("pk".into()),
        ..plan_settings
    };
    let err = super::plan(&survey, &forced).unwrap_err().to_string();
    assert!(
        err.contains("--classify-attribute pk") && err.contains("--max-tables 5"),
        "{err}"
    );
}

#[test]
fn memory_does_not_grow_with_distinct_key_values() {
    let tracked = |count: usize| -> usize {
        let layout = layouts::id_prefixes(count);
        let settings = SurveySettings::new(&layout.keys, Some('#'), 50, Vec::new());
        let mut survey = Survey::new(Arc::new(settings));
        for item in layout.items() {
            survey.observe(&ItemView::from_sdk(&item));
        }
        let summary = survey.summary();
        summary.buckets[0]
            .candidates(summary.settings())
            .iter()
            .map(|(_, s)| s.groups.len() + s.groups.values().map(|g| g.shapes.len()).sum::<usize>())
            .sum()
    };
    let (small, large) = (tracked(60), tracked(3000));
    assert_eq!(small, large, "what is tracked must not grow with the keys");
    assert!(large < 50 * 4, "{large}");
}

#[test]
fn two_entities_with_the_same_key_shape_are_reported_as_a_likely_merge() {
    let mut items = Vec::new();
    for i in 0..20 {
        let mut item = Item::new();
        item.insert("pk".into(), AttributeValue::S(format!("THING#{i}")));
        item.insert("sk".into(), AttributeValue::S("META".into()));
        if i % 3 == 0 {
            item.insert("colour".into(), AttributeValue::S("red".into()));
            item.insert("weight".into(), AttributeValue::N("3".into()));
        } else {
            item.insert("title".into(), AttributeValue::S("t".into()));
            item.insert("author".into(), AttributeValue::S("a".into()));
            item.insert("pages".into(), AttributeValue::N("100".into()));
        }
        items.push(item);
    }
    let plan = infer_items(
        SOURCE,
        &["pk".into(), "sk".into()],
        &[],
        Strategy::Auto,
        &items,
    );
    let merge = plan
        .findings
        .iter()
        .find_map(|f| match f {
            Finding::LikelyMerge {
                table,
                first,
                second,
            } => Some((table, first, second)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{:?}", plan.findings));
    // One key shape (THING#/META): nothing tells them apart, so one table.
    assert_eq!(merge.0, SOURCE);
    assert_eq!((merge.1 .0, merge.2 .0), (13, 7));
    assert_eq!(merge.2 .1, ["colour", "weight"]);
    assert!(plan.findings[0]
        .describe(SOURCE)
        .starts_with("likely merge in table t:"));
    // Optional attributes of one entity are not a merge.
    for (i, item) in items.iter_mut().enumerate() {
        item.remove("colour");
        item.remove("weight");
        item.insert("title".into(), AttributeValue::S("t".into()));
        if i % 2 == 0 {
            item.remove("author");
        }
    }
    let plan = infer_items(
        SOURCE,
        &["pk".into(), "sk".into()],
        &[],
        Strategy::Auto,
        &items,
    );
    assert!(plan.findings.is_empty(), "{:?}", plan.findings);
}

#[test]
fn surveys_merge_to_the_same_plan_in_any_order() {
    for layout in layouts::all() {
        let settings = Arc::new(SurveySettings::new(
            &layout.keys,
            Some('#'),
            200,
            Vec::new(),
        ));
        let items = layout.items();
        let mut whole = Survey::new(settings.clone());
        let parts: Vec<Survey> = (0..3)
            .map(|k| {
                let mut part = Survey::new(settings.clone());
                for item in items.iter().skip(k).step_by(3) {
                    part.observe(&ItemView::from_sdk(item));
                }
                part
            })
            .collect();
        for item in &items {
            whole.observe(&ItemView::from_sdk(item));
        }
        let mut forward = Survey::new(settings.clone());
        parts.iter().for_each(|p| forward.merge(p));
        let mut backward = Survey::new(settings.clone());
        parts.iter().rev().for_each(|p| backward.merge(p));
        let plan_of = |s: &Survey| {
            let ps = PlanSettings {
                source_table: SOURCE,
                strategy: Strategy::Auto,
                narrow: false,
            };
            plan(s, &ps).unwrap().schemas
        };
        assert_eq!(forward.summary(), backward.summary(), "{}", layout.name);
        // Nothing here grows past a bound, so the parts add up to exactly the whole.
        assert_eq!(whole.summary(), forward.summary(), "{}", layout.name);
        assert_eq!(plan_of(&whole), plan_of(&forward), "{}", layout.name);
    }
}

#[test]
fn entity_prefixes_and_what_cannot_name_an_entity() {
    assert_eq!(entity_prefix("ORG#42", '#'), Some("ORG#"));
    assert_eq!(entity_prefix("#ORDER#7", '#'), Some("#ORDER#"));
    assert_eq!(entity_prefix("META", '#'), Some("META"));
    assert_eq!(
        entity_prefix("$taskapp#employee_e1", '#'),
        Some("$taskapp#")
    );
    assert_eq!(entity_prefix("2026-01-05#x", '#'), None);
    assert_eq!(entity_prefix("12345#x", '#'), None);
    assert_eq!(entity_prefix("#", '#'), None);
    for (id, kind) in [
        ("5f0c2a9e-1b2c-4d3e-8f90-a1b2c3d4e5f6", "a UUID"),
        ("01HZX3V7Q8M2N4P6R8S0T2V4W6", "a ULID"),
        ("42", "a number"),
        ("-1.5e3", "a number"),
        ("2026-12-06", "a date"),
        ("2026-12-06T10:00:00Z", "a date"),
        ("9f86d081884c7d65", "a hexadecimal id"),
    ] {
        assert_eq!(looks_like_id(id), Some(kind), "{id}");
    }
    for name in [
        "Task",
        "__typename",
        "invoice_line",
        "$task_1",
        "e000",
        "UserSettings",
    ] {
        assert_eq!(looks_like_id(name), None, "{name}");
    }
    assert!(!names_an_entity(&"x".repeat(MAX_TYPE_VALUE_BYTES + 1)));
}

#[test]
fn a_type_attribute_with_more_values_than_tables_is_reported_not_split() {
    let items: Vec<Item> = (0..12)
        .map(|i| {
            [
                ("pk".to_string(), AttributeValue::S(format!("K#{i}"))),
                ("sk".to_string(), AttributeValue::S("x".into())),
                ("type".to_string(), AttributeValue::S(format!("Kind{i}"))),
                (format!("a{i}"), AttributeValue::S("v".into())),
            ]
            .into()
        })
        .collect();
    let keys = ["pk".to_string(), "sk".to_string()];
    let mut settings = SurveySettings::new(&keys, Some('#'), 5, Vec::new());
    settings = settings.with_token_attribute("pk");
    let mut survey = Survey::new(Arc::new(settings));
    items
        .iter()
        .for_each(|i| survey.observe(&ItemView::from_sdk(i)));
    let plan = plan(
        &survey,
        &PlanSettings {
            source_table: SOURCE,
            strategy: Strategy::Auto,
            narrow: false,
        },
    )
    .unwrap();
    assert_eq!(plan.schemas.len(), 1, "{}", shown(&plan));
    assert!(
        plan.findings.iter().any(|f| matches!(f,
            Finding::GrowsWithData { candidate, .. } if candidate == "values of type")),
        "{}",
        shown(&plan)
    );
}

#[test]
fn a_hand_written_prefix_rule_over_alike_type_values_is_kept_and_reported() {
    // Two versions of one entity, with the same attributes, under a reviewer's prefix rule.
    let item = |i: usize, kind: &str| -> Item {
        [
            ("pk".to_string(), AttributeValue::S(format!("USER#{i}"))),
            ("sk".to_string(), AttributeValue::S("x".into())),
            ("_et".to_string(), AttributeValue::S(kind.into())),
            ("email".to_string(), AttributeValue::S("e".into())),
            ("name".to_string(), AttributeValue::S("n".into())),
        ]
        .into()
    };
    let keys = ["pk".to_string(), "sk".to_string()];
    let week_one: Vec<Item> = (0..6).map(|i| item(i, "UserV1")).collect();
    let mut first = infer_items(SOURCE, &keys, &[], Strategy::Auto, &week_one).schemas;
    assert_eq!(first.len(), 1);
    first[0].table = "user".into();
    first[0].rule = Some(MatchRule::prefix("_et", "User"));
    let all: Vec<Item> = week_one
        .into_iter()
        .chain((6..12).map(|i| item(i, "UserV2")))
        .collect();
    let plan = infer_items(SOURCE, &keys, &first, Strategy::Auto, &all);
    assert_eq!(plan.schemas.len(), 1, "{}", shown(&plan));
    assert_eq!(plan.schemas[0].rule, Some(MatchRule::prefix("_et", "User")));
    let said: Vec<String> = plan.findings.iter().map(|f| f.describe(SOURCE)).collect();
    assert!(
        said.iter().any(|f| f.starts_with(
            "table user's rule (_et begins with \"User\") takes items of 2 values of _et: \"UserV1\" (6 items), \"UserV2\" (6 items)"
        )),
        "{said:?}"
    );
}
