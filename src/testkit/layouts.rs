//! Items in the layouts single-table designs use, for the entity-inference tests (unit tests in
//! `schema::entities` and the integration tests of `infer-schema`). Each layout says where its
//! item format is documented, which table every item belongs in, and what a second week adds.
//!
//! The items are small but shaped like the libraries write them: the same key formats, type
//! attributes and bookkeeping attributes, with a handful of domain attributes per entity.

use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;

use super::fixtures::Rng;
use crate::value::Item;

/// Items of one layout, each with the table it belongs in.
#[derive(Debug, Clone)]
pub struct Layout {
    pub name: &'static str,
    /// Where the item format comes from.
    pub docs: &'static [&'static str],
    /// The table's key attributes, partition key first.
    pub keys: Vec<String>,
    /// Each item with the table it must land in.
    pub items: Vec<(&'static str, Item)>,
}

impl Layout {
    pub fn items(&self) -> Vec<Item> {
        self.items.iter().map(|(_, i)| i.clone()).collect()
    }

    /// The tables items belong in, sorted.
    pub fn tables(&self) -> Vec<&'static str> {
        let mut t: Vec<&'static str> = self.items.iter().map(|(t, _)| *t).collect();
        t.sort_unstable();
        t.dedup();
        t
    }

    /// This layout with `more` items appended (a second week).
    pub fn with(mut self, more: Vec<(&'static str, Item)>) -> Self {
        self.items.extend(more);
        self
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}
fn item(pairs: Vec<(&str, AttributeValue)>) -> Item {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}
fn keys(names: &[&str]) -> Vec<String> {
    names.iter().map(|k| k.to_string()).collect()
}

fn uuid(rng: &mut Rng) -> String {
    let hex: String = (0..32)
        .map(|_| char::from_digit(rng.below(16) as u32, 16).unwrap())
        .collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn when(rng: &mut Rng) -> String {
    format!(
        "2026-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        1 + rng.below(11),
        1 + rng.below(28),
        rng.below(24),
        rng.below(60),
        rng.below(60),
        rng.below(1000)
    )
}

const WORDS: &[&str] = &["alpha", "beta", "gamma", "delta", "omega", "sigma"];

/// ElectroDB: every item carries its entity's name in `__edb_e__` and the entity's version in
/// `__edb_v__`; the partition key is `$<service>#<attribute>_<value>…` and the sort key
/// `$<entity>_<version>#<attribute>_<value>…`, lowercased.
/// Key composition: <https://electrodb.dev/en/modeling/indexes/> ("Composing Indexes": the
/// service is prefixed onto the partition key, the entity onto the sort key). The two
/// identifiers: the parameters its put examples generate,
/// <https://electrodb.dev/en/mutations/put/> (earlier the static page
/// `www/src/pages/en/put.md` of github.com/tywalch/electrodb, whose `Item` ends with
/// `"__edb_e__": "MallStore", "__edb_v__": "1"`).
pub fn electrodb() -> Layout {
    let mut rng = Rng::new(1);
    let mut items = Vec::new();
    for e in 0..12 {
        let employee = format!("e{e:03}");
        items.push((
            "employee",
            item(vec![
                ("pk", s(format!("$taskapp#employee_{employee}"))),
                ("sk", s("$employee_1")),
                ("employee", s(&employee)),
                ("firstName", s(*rng.pick(WORDS))),
                ("lastName", s(*rng.pick(WORDS))),
                ("office", s(format!("office-{}", rng.below(3)))),
                ("salary", n(50_000 + rng.below(50_000))),
                ("__edb_e__", s("employee")),
                ("__edb_v__", s("1")),
            ]),
        ));
        for t in 0..2 {
            items.push((
                "task",
                item(vec![
                    ("pk", s(format!("$taskapp#task_t{e:03}{t}"))),
                    (
                        "sk",
                        s(format!("$task_1#project_p{}#employee_{employee}", e % 3)),
                    ),
                    ("task", s(format!("t{e:03}{t}"))),
                    ("project", s(format!("p{}", e % 3))),
                    ("employee", s(&employee)),
                    (
                        "description",
                        s(format!("{} the {}", rng.pick(WORDS), rng.pick(WORDS))),
                    ),
                    ("status", s(*rng.pick(&["open", "in-progress", "closed"]))),
                    ("points", n(1 + rng.below(8))),
                    ("__edb_e__", s("task")),
                    ("__edb_v__", s("1")),
                ]),
            ));
        }
    }
    for o in 0..4 {
        items.push((
            "office",
            item(vec![
                ("pk", s(format!("$taskapp#country_us#state_s{o}"))),
                ("sk", s(format!("$office_1#city_c{o}#office_office-{o}"))),
                ("office", s(format!("office-{o}"))),
                ("country", s("us")),
                ("state", s(format!("s{o}"))),
                ("city", s(format!("c{o}"))),
                ("zip", s(format!("{:05}", 10_000 + o))),
                ("__edb_e__", s("office")),
                ("__edb_v__", s("1")),
            ]),
        ));
    }
    Layout {
        name: "electrodb",
        docs: &[
            "https://electrodb.dev/en/modeling/indexes/",
            "https://electrodb.dev/en/mutations/put/",
        ],
        keys: keys(&["pk", "sk"]),
        items,
    }
}

/// ElectroDB's second week: a new entity, `project`.
pub fn electrodb_week_two() -> Vec<(&'static str, Item)> {
    (0..5)
        .map(|p| {
            (
                "project",
                item(vec![
                    ("pk", s(format!("$taskapp#project_p{p}"))),
                    ("sk", s("$project_1")),
                    ("project", s(format!("p{p}"))),
                    ("title", s(format!("project {p}"))),
                    ("budget", n(1000 * (p + 1))),
                    ("__edb_e__", s("project")),
                    ("__edb_v__", s("1")),
                ]),
            )
        })
        .collect()
}

/// dynamodb-toolbox: the entity attribute, saved as `_et`, holds the entity's name, and `_ct` and
/// `_md` the creation and modification times in ISO 8601 (its "Internal Attributes" page,
/// <https://www.dynamodbtoolbox.com/docs/entities/internal-attributes>, whose `SavedItem` example
/// is `{ pk, sk, level, _et: "Pokemon", _ct, _md }`); keys are whatever the table defines, here
/// `USER#<id>` partitions holding a user and its tasks.
pub fn dynamodb_toolbox() -> Layout {
    let mut rng = Rng::new(2);
    let mut items = Vec::new();
    for u in 0..10 {
        let user = format!("USER#u{u:02}");
        let (ct, md) = (when(&mut rng), when(&mut rng));
        items.push((
            "user",
            item(vec![
                ("pk", s(&user)),
                ("sk", s(&user)),
                ("email", s(format!("u{u}@example.com"))),
                ("displayName", s(*rng.pick(WORDS))),
                ("plan", s(*rng.pick(&["free", "pro"]))),
                ("_et", s("User")),
                ("_ct", s(ct)),
                ("_md", s(md)),
            ]),
        ));
        for t in 0..3 {
            let (ct, md) = (when(&mut rng), when(&mut rng));
            items.push((
                "task",
                item(vec![
                    ("pk", s(&user)),
                    ("sk", s(format!("TASK#t{u:02}{t}"))),
                    ("title", s(format!("{} {}", rng.pick(WORDS), t))),
                    ("done", AttributeValue::Bool(rng.below(2) == 0)),
                    ("due", s(when(&mut rng))),
                    ("_et", s("Task")),
                    ("_ct", s(ct)),
                    ("_md", s(md)),
                ]),
            ));
        }
    }
    Layout {
        name: "dynamodb-toolbox",
        docs: &["https://www.dynamodbtoolbox.com/docs/entities/internal-attributes"],
        keys: keys(&["pk", "sk"]),
        items,
    }
}

/// dynamodb-toolbox's second week: a new type value whose name begins like an existing one
/// (`UserSettings`, stored under the user's partition) and a new entity (`Project`).
pub fn dynamodb_toolbox_week_two() -> Vec<(&'static str, Item)> {
    let mut rng = Rng::new(22);
    let mut items = Vec::new();
    for u in 0..6 {
        let user = format!("USER#u{u:02}");
        items.push((
            "user_settings",
            item(vec![
                ("pk", s(&user)),
                ("sk", s("SETTINGS")),
                ("theme", s(*rng.pick(&["dark", "light"]))),
                ("locale", s(*rng.pick(&["en", "es", "de"]))),
                ("notifications", AttributeValue::Bool(true)),
                ("_et", s("UserSettings")),
                ("_ct", s(when(&mut rng))),
                ("_md", s(when(&mut rng))),
            ]),
        ));
    }
    for p in 0..4 {
        items.push((
            "project",
            item(vec![
                ("pk", s(format!("PROJECT#p{p}"))),
                ("sk", s(format!("PROJECT#p{p}"))),
                ("name", s(format!("project {p}"))),
                ("budget", n(100 * (p + 1))),
                ("_et", s("Project")),
                ("_ct", s(when(&mut rng))),
                ("_md", s(when(&mut rng))),
            ]),
        ));
    }
    items
}

/// AppSync with Amplify's `@model` types: one `id` key (a UUID from `$util.autoId()`),
/// `__typename` set to the model's name by the generated create resolver, `createdAt` and
/// `updatedAt` in ISO 8601, and on a versioned data source `_version` and `_lastChangedAt`
/// (epoch milliseconds).
/// <https://docs.amplify.aws/cli-legacy/graphql-transformer/model> (`@model` types stored in
/// DynamoDB, timestamps), the create resolver's template in github.com/aws-amplify/
/// amplify-category-api, `packages/amplify-graphql-model-transformer/src/resolvers/dynamodb/
/// mutation.ts` (`mergedValues.put("__typename", <model name>)`),
/// <https://docs.aws.amazon.com/appsync/latest/devguide/versioned-data-sources.html> (the
/// versioning metadata).
pub fn appsync() -> Layout {
    let mut rng = Rng::new(3);
    let mut items = Vec::new();
    let common = |rng: &mut Rng, typename: &str, mut it: Item| -> Item {
        it.insert("id".into(), s(uuid(rng)));
        it.insert("__typename".into(), s(typename));
        it.insert("createdAt".into(), s(when(rng)));
        it.insert("updatedAt".into(), s(when(rng)));
        it.insert("_version".into(), n(1 + rng.below(3)));
        it.insert(
            "_lastChangedAt".into(),
            n(1_760_000_000_000u64 + rng.below(1_000_000)),
        );
        it
    };
    for _ in 0..8 {
        let author = item(vec![
            ("name", s(*rng.pick(WORDS))),
            ("bio", s(format!("writes about {}", rng.pick(WORDS)))),
        ]);
        items.push(("author", common(&mut rng, "Author", author)));
    }
    for p in 0..10 {
        let post = item(vec![
            ("title", s(format!("post {p}"))),
            (
                "body",
                s(format!("{} {}", rng.pick(WORDS), rng.pick(WORDS))),
            ),
            (
                "tags",
                AttributeValue::Ss(vec!["news".into(), rng.pick(WORDS).to_string()]),
            ),
            ("authorID", s(uuid(&mut rng))),
        ]);
        items.push(("post", common(&mut rng, "Post", post)));
    }
    for _ in 0..20 {
        let comment = item(vec![
            ("content", s(format!("nice {}", rng.pick(WORDS)))),
            ("postID", s(uuid(&mut rng))),
            ("rating", n(rng.below(5))),
        ]);
        items.push(("comment", common(&mut rng, "Comment", comment)));
    }
    Layout {
        name: "appsync",
        docs: &[
            "https://docs.amplify.aws/cli-legacy/graphql-transformer/model",
            "https://github.com/aws-amplify/amplify-category-api/blob/main/packages/amplify-graphql-model-transformer/src/resolvers/dynamodb/mutation.ts",
            "https://docs.aws.amazon.com/appsync/latest/devguide/versioned-data-sources.html",
        ],
        keys: keys(&["id"]),
        items,
    }
}

/// A plain `type` attribute with random UUID keys: nothing in the keys says what an item is.
pub fn plain_type() -> Layout {
    let mut rng = Rng::new(4);
    let mut items = Vec::new();
    for _ in 0..15 {
        items.push((
            "invoice",
            item(vec![
                ("pk", s(uuid(&mut rng))),
                ("sk", s(uuid(&mut rng))),
                ("type", s("invoice")),
                ("number", s(format!("INV-{}", rng.below(10_000)))),
                (
                    "total",
                    n(format!("{}.{:02}", rng.below(1000), rng.below(100))),
                ),
                ("issuedAt", s(when(&mut rng))),
            ]),
        ));
    }
    for _ in 0..25 {
        items.push((
            "invoice_line",
            item(vec![
                ("pk", s(uuid(&mut rng))),
                ("sk", s(uuid(&mut rng))),
                ("type", s("invoice_line")),
                ("product", s(*rng.pick(WORDS))),
                ("quantity", n(1 + rng.below(9))),
                (
                    "unitPrice",
                    n(format!("{}.{:02}", rng.below(100), rng.below(100))),
                ),
            ]),
        ));
    }
    Layout {
        name: "plain type, UUID keys",
        docs: &[],
        keys: keys(&["pk", "sk"]),
        items,
    }
}

/// Two keys together: customers and their orders in the customer's partition (`CUSTOMER#<id>`
/// with sort keys `CUSTOMER#<id>` and `#ORDER#<id>`, the leading `#` sorting orders before the
/// customer), and the items of an order in the order's partition (`ORDER#<id>`/`ITEM#<id>`), as
/// in the e-commerce example of The DynamoDB Book and AWS's example of relational data in one
/// table.
/// <https://www.dynamodbbook.com/>,
/// <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-modeling-nosql-B.html>
pub fn two_keys() -> Layout {
    let mut rng = Rng::new(5);
    let mut items = Vec::new();
    for c in 0..6 {
        let customer = format!("CUSTOMER#c{c}");
        items.push((
            "customer",
            item(vec![
                ("pk", s(&customer)),
                ("sk", s(&customer)),
                ("username", s(format!("c{c}"))),
                ("email", s(format!("c{c}@example.com"))),
                (
                    "address",
                    AttributeValue::M(HashMap::from([("city".to_string(), s(*rng.pick(WORDS)))])),
                ),
            ]),
        ));
        for o in 0..3 {
            let order = format!("o{c}{o}");
            items.push((
                "order",
                item(vec![
                    ("pk", s(&customer)),
                    ("sk", s(format!("#ORDER#{order}"))),
                    ("orderId", s(&order)),
                    ("status", s(*rng.pick(&["PLACED", "SHIPPED", "DELIVERED"]))),
                    ("createdAt", s(when(&mut rng))),
                    (
                        "amount",
                        n(format!("{}.{:02}", rng.below(500), rng.below(100))),
                    ),
                ]),
            ));
            for i in 0..2 {
                items.push((
                    "item",
                    item(vec![
                        ("pk", s(format!("ORDER#{order}"))),
                        ("sk", s(format!("ITEM#i{i}"))),
                        ("itemId", s(format!("i{i}"))),
                        ("description", s(*rng.pick(WORDS))),
                        (
                            "price",
                            n(format!("{}.{:02}", rng.below(50), rng.below(100))),
                        ),
                        ("quantity", n(1 + rng.below(4))),
                    ]),
                ));
            }
        }
    }
    Layout {
        name: "two keys",
        docs: &[
            "https://www.dynamodbbook.com/",
            "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-modeling-nosql-B.html",
        ],
        keys: keys(&["pk", "sk"]),
        items,
    }
}

/// The two-key layout's second week: a new entity in the customer's partition, its addresses.
pub fn two_keys_week_two() -> Vec<(&'static str, Item)> {
    (0..6)
        .map(|c| {
            (
                "address",
                item(vec![
                    ("pk", s(format!("CUSTOMER#c{c}"))),
                    ("sk", s(format!("#ADDRESS#home{c}"))),
                    ("street", s(format!("{c} Main St"))),
                    ("city", s("Springfield")),
                    ("zip", s(format!("{:05}", 20_000 + c))),
                ]),
            )
        })
        .collect()
}

/// Tenant-keyed: the partition key is `<tenant>#<project>`, the sort key says what the item is
/// (`PROJECT`, `TASK#<n>`, `MEMBER#<user>`). Tenants are data, not entities: they must never
/// become one table each.
pub fn tenants() -> Layout {
    let mut rng = Rng::new(6);
    let mut items = Vec::new();
    for tenant in ["acme", "globex", "initech", "umbrella", "hooli"] {
        for project in ["apollo", "gemini"] {
            let pk = format!("{tenant}#{project}");
            items.push((
                "project",
                item(vec![
                    ("pk", s(&pk)),
                    ("sk", s("PROJECT")),
                    ("name", s(project)),
                    ("budget", n(1000 + rng.below(9000))),
                    ("startedAt", s(when(&mut rng))),
                ]),
            ));
            for t in 0..3 {
                items.push((
                    "task",
                    item(vec![
                        ("pk", s(&pk)),
                        ("sk", s(format!("TASK#{t}"))),
                        ("title", s(format!("{} {t}", rng.pick(WORDS)))),
                        ("state", s(*rng.pick(&["todo", "doing", "done"]))),
                        ("estimate", n(1 + rng.below(13))),
                    ]),
                ));
            }
            for m in 0..2 {
                items.push((
                    "member",
                    item(vec![
                        ("pk", s(&pk)),
                        ("sk", s(format!("MEMBER#user{m}"))),
                        ("role", s(*rng.pick(&["owner", "editor", "viewer"]))),
                        ("joinedAt", s(when(&mut rng))),
                    ]),
                ));
            }
        }
    }
    Layout {
        name: "tenant-keyed",
        docs: &[],
        keys: keys(&["pk", "sk"]),
        items,
    }
}

/// The entity-prefix layout this project started with (`ORG#…`, `USER#…`, `GROUP#…` partitions),
/// with a child entity in its parent's partition: an organisation's memberships under
/// `ORG#<id>`/`USER#<id>` beside the organisation itself at `ORG#<id>`/`META`.
pub fn key_prefixes() -> Layout {
    let mut rng = Rng::new(7);
    let mut items = Vec::new();
    for o in 0..5 {
        let org = format!("ORG#o{o}");
        items.push((
            "org",
            item(vec![
                ("pk", s(&org)),
                ("sk", s("META")),
                ("name", s(format!("org {o}"))),
                ("country", s(*rng.pick(&["CO", "US", "DE"]))),
                ("employees", n(10 + rng.below(1000))),
            ]),
        ));
        for u in 0..3 {
            items.push((
                "org_user",
                item(vec![
                    ("pk", s(&org)),
                    ("sk", s(format!("USER#u{o}{u}"))),
                    ("role", s(*rng.pick(&["admin", "member"]))),
                    ("joinedAt", s(when(&mut rng))),
                ]),
            ));
        }
        for g in 0..2 {
            items.push((
                "group",
                item(vec![
                    ("pk", s(format!("GROUP#g{o}{g}"))),
                    ("sk", s(&org)),
                    ("title", s(format!("group {g}"))),
                    ("service", s(*rng.pick(&["white", "black"]))),
                    ("machine", AttributeValue::Bool(rng.below(2) == 0)),
                ]),
            ));
        }
    }
    for u in 0..8 {
        items.push((
            "user",
            item(vec![
                ("pk", s(format!("USER#u{u}"))),
                ("sk", s("META")),
                ("email", s(format!("u{u}@example.com"))),
                ("fullName", s(*rng.pick(WORDS))),
                ("lastLogin", s(when(&mut rng))),
            ]),
        ));
    }
    Layout {
        name: "key prefixes",
        docs: &[],
        keys: keys(&["pk", "sk"]),
        items,
    }
}

/// A table whose partition keys begin with a prefix per user (`u0001#PROFILE`): the prefixes
/// are ids, `count` of them.
pub fn id_prefixes(count: usize) -> Layout {
    let items = (0..count)
        .flat_map(|u| {
            [
                (
                    "profile",
                    item(vec![
                        ("pk", s(format!("user{u:04}#PROFILE"))),
                        ("sk", s("PROFILE")),
                        ("nickname", s(format!("n{u}"))),
                    ]),
                ),
                (
                    "profile",
                    item(vec![
                        ("pk", s(format!("user{u:04}#PROFILE"))),
                        ("sk", s("PROFILE#old")),
                        ("nickname", s(format!("old{u}"))),
                    ]),
                ),
            ]
        })
        .collect();
    Layout {
        name: "id prefixes",
        docs: &[],
        keys: keys(&["pk", "sk"]),
        items,
    }
}

/// Every layout whose first week must split into one table per entity with default flags.
pub fn all() -> Vec<Layout> {
    vec![
        electrodb(),
        dynamodb_toolbox(),
        appsync(),
        plain_type(),
        two_keys(),
        tenants(),
        key_prefixes(),
    ]
}
