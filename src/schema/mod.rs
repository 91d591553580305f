//! Data-schemas: the contract that says which items land in which warehouse table, under which
//! column names and with which logical types.
//!
//! A [`DataSchema`] is read by phase 1 (classification and conversion), phase 2 (DDL) and phase 3
//! (column lists); `infer-schema` writes them. Unknown fields are rejected on read so that a typo in
//! a reviewed file fails loudly instead of being ignored.

pub mod drift;
pub mod entities;
pub mod evolve;
pub mod infer;
pub mod limits;
pub mod naming;
pub mod rules;

pub use limits::{overflow_schema, DialectName, Limits, OVERFLOW_TABLE};
pub use rules::{Condition, MatchRule, Test};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Format version written into every data-schema document.
pub const FORMAT_VERSION: u32 = 1;

/// Name of the column that receives attributes the data-schema does not know, as JSON.
pub const EXTRA_COLUMN: &str = "_extra";

/// Warehouse table that receives items no data-schema claims.
pub const UNCLASSIFIED_TABLE: &str = "_unclassified";

/// One warehouse table: which items of the source table belong to it and how they are laid out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSchema {
    /// Always [`FORMAT_VERSION`].
    pub format: u32,
    /// The DynamoDB table the items come from.
    pub source_table: String,
    /// The warehouse table name (already a safe identifier; see [`naming`]).
    pub table: String,
    /// Which items belong here (see [`rules`]); `None` means every item no rule claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<MatchRule>,
    /// The columns in warehouse order. `_extra` is implicit and always last.
    pub columns: Vec<Column>,
}

/// One warehouse column and the top-level attribute it is filled from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    /// The DynamoDB attribute name, exactly as in the item.
    pub attribute: String,
    /// The warehouse column name (safe, lowercase, unique within the table).
    pub column: String,
    #[serde(rename = "type")]
    pub logical_type: LogicalType,
    pub nullable: bool,
}

/// How a column's values are represented. Ordered from narrow to wide within each family; each
/// warehouse dialect says which column type holds each one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LogicalType {
    /// `N` values that are all integers within i64.
    Bigint,
    /// `N` values with at most `precision` significant digits and `scale` digits after the point.
    Decimal {
        precision: u32,
        scale: u32,
    },
    /// Any `N` value, kept as its exact decimal text.
    NumericText,
    /// `S` values; `max_bytes` is the longest UTF-8 length seen.
    Text {
        max_bytes: u32,
    },
    /// `S` values that are all RFC 3339 timestamps with an offset and at most microseconds.
    Timestamp,
    Boolean,
    /// `B` values: `bytea` / `VARBYTE`, written in the CSV as hex (see `limits::BinaryText`).
    Binary,
    /// Anything else (sets, lists, maps, mixed types), as JSON (see `value::json`).
    Json,
}

impl LogicalType {
    pub fn name(&self) -> String {
        match self {
            LogicalType::Bigint => "bigint".into(),
            LogicalType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            LogicalType::NumericText => "numeric_text".into(),
            LogicalType::Text { max_bytes } => format!("text({max_bytes})"),
            LogicalType::Timestamp => "timestamp".into(),
            LogicalType::Boolean => "boolean".into(),
            LogicalType::Binary => "binary".into(),
            LogicalType::Json => "json".into(),
        }
    }
}

/// The most precise DECIMAL both warehouses accept.
pub const MAX_DECIMAL_PRECISION: u32 = 38;

/// Width given to a text column in dialects with bounded strings (Redshift VARCHAR): the longest
/// value seen rounded up to a power of two (at least 256), capped at 65535 bytes. Phase 1 sends a
/// longer value to `_extra`, so a load can never fail or truncate on width.
pub fn varchar_width(max_bytes: u32) -> u32 {
    let wanted = max_bytes.max(256);
    wanted
        .checked_next_power_of_two()
        .unwrap_or(u32::MAX)
        .min(65535)
}

/// Errors reading or checking data-schemas. Each names the file or table involved.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("cannot read data-schema {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("data-schema {path} is not valid: {source}")]
    Parse {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("data-schema {origin}: {problem}")]
    Invalid { origin: String, problem: String },
    #[error("no data-schemas for source table {table:?} in {origin}; run `dynamo-etl infer-schema --table {table}` or add files under schemas/{table}/")]
    NoneForTable { table: String, origin: String },
}

impl DataSchema {
    /// Checks the invariants the rest of the pipeline relies on: safe and unique names, a known
    /// format, no column named like a metadata column.
    pub fn validate(&self, origin: &str) -> Result<(), SchemaError> {
        let bad = |problem: String| SchemaError::Invalid {
            origin: origin.to_string(),
            problem,
        };
        if self.format != FORMAT_VERSION {
            return Err(bad(format!(
                "format {} is not supported (expected {FORMAT_VERSION})",
                self.format
            )));
        }
        if !naming::is_safe_identifier(&self.table) {
            return Err(bad(format!(
                "table name {:?} is not a safe identifier (lowercase letters, digits, _; not starting with a digit; at most {} bytes)",
                self.table,
                naming::MAX_IDENTIFIER_BYTES
            )));
        }
        if self.table == UNCLASSIFIED_TABLE || self.table == OVERFLOW_TABLE {
            return Err(bad(format!("table name {} is reserved", self.table)));
        }
        if let Some(problem) = self.rule.as_ref().and_then(MatchRule::problem) {
            return Err(bad(format!("table {}: {problem}", self.table)));
        }
        let mut columns = std::collections::HashSet::new();
        let mut attributes = std::collections::HashSet::new();
        for c in &self.columns {
            if !naming::is_safe_identifier(&c.column) || naming::is_reserved(&c.column) {
                return Err(bad(format!(
                    "column {:?} (attribute {:?}) is not a safe, unreserved identifier",
                    c.column, c.attribute
                )));
            }
            if c.column == EXTRA_COLUMN {
                return Err(bad(format!(
                    "column name {EXTRA_COLUMN} is reserved for unknown attributes"
                )));
            }
            if !columns.insert(c.column.as_str()) {
                return Err(bad(format!("column {:?} appears twice", c.column)));
            }
            if !attributes.insert(c.attribute.as_str()) {
                return Err(bad(format!("attribute {:?} appears twice", c.attribute)));
            }
            if let LogicalType::Decimal { precision, scale } = c.logical_type {
                if precision == 0 || precision > MAX_DECIMAL_PRECISION || scale > precision {
                    return Err(bad(format!(
                        "column {:?}: decimal({precision},{scale}) is outside 1..=38 digits with scale <= precision",
                        c.column
                    )));
                }
            }
        }
        Ok(())
    }

    /// Whether the table has an `_extra` column: every table but `_overflow` and the key and
    /// change tables of an increment (`_inc_…`, see `staging::increment`).
    pub fn has_extra_column(&self) -> bool {
        self.table != OVERFLOW_TABLE && !self.table.starts_with("_inc_")
    }

    /// Warehouse column names in load order, `_extra` last where the table has one.
    pub fn column_names(&self) -> Vec<&str> {
        let extra = self.has_extra_column().then_some(EXTRA_COLUMN);
        self.columns
            .iter()
            .map(|c| c.column.as_str())
            .chain(extra)
            .collect()
    }

    /// Stable JSON text of this schema (two-space indent, trailing newline).
    pub fn to_pretty_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("data-schema serialises");
        text.push('\n');
        text
    }

    pub fn from_json(text: &str, origin: &str) -> Result<Self, SchemaError> {
        let schema: DataSchema =
            serde_json::from_str(text).map_err(|source| SchemaError::Parse {
                path: origin.to_string(),
                source,
            })?;
        schema.validate(origin)?;
        Ok(schema)
    }
}

/// The synthetic data-schema of `_unclassified`: the key attributes as JSON columns; everything
/// else of the item lands in `_extra`.
pub fn unclassified_schema(source_table: &str, key_attributes: &[String]) -> DataSchema {
    let mut taken = std::collections::HashSet::new();
    DataSchema {
        format: FORMAT_VERSION,
        source_table: source_table.to_string(),
        table: UNCLASSIFIED_TABLE.to_string(),
        rule: None,
        columns: key_attributes
            .iter()
            .map(|a| Column {
                attribute: a.clone(),
                column: naming::assign(a, &mut taken),
                logical_type: LogicalType::Json,
                nullable: false,
            })
            .collect(),
    }
}

/// Where a set of data-schemas came from: a schema cache snapshot or the reviewed static folder.
/// Run plans and segment manifests record it as `snapshot:<id>` or `static:<dir>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaSource {
    Snapshot(String),
    Static(PathBuf),
}

impl std::fmt::Display for SchemaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SchemaSource::Snapshot(id) => write!(f, "snapshot:{id}"),
            SchemaSource::Static(dir) => write!(f, "static:{}", dir.display()),
        }
    }
}

impl std::str::FromStr for SchemaSource {
    type Err = String;
    fn from_str(text: &str) -> Result<SchemaSource, String> {
        if let Some(id) = text.strip_prefix("snapshot:") {
            return Ok(SchemaSource::Snapshot(id.to_string()));
        }
        text.strip_prefix("static:")
            .map(|dir| SchemaSource::Static(PathBuf::from(dir)))
            .ok_or_else(|| {
                format!("schema source {text:?} is neither snapshot:<id> nor static:<dir>")
            })
    }
}

impl SchemaSource {
    /// The snapshot id, for a source that is a snapshot.
    pub fn snapshot_id(&self) -> Option<&str> {
        match self {
            SchemaSource::Snapshot(id) => Some(id),
            SchemaSource::Static(_) => None,
        }
    }
}

impl Serialize for SchemaSource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SchemaSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Sorts data-schemas in the order phase 1 tries their rules: most specific first
/// ([`MatchRule::precedence`]), ties by table name, the table without a rule last.
pub fn classification_order(schemas: &mut [DataSchema]) {
    schemas.sort_by(|a, b| {
        let key = |s: &DataSchema| (s.rule.is_none(), s.rule.as_ref().map(MatchRule::precedence));
        key(a).cmp(&key(b)).then_with(|| a.table.cmp(&b.table))
    });
}

/// All data-schemas of one source table, in classification order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaSet {
    pub source_table: String,
    pub schemas: Vec<DataSchema>,
}

impl SchemaSet {
    /// Builds a set, checking that table names are unique and that every schema belongs to the
    /// source table. Schemas with a rule are tried first, most specific first
    /// ([`MatchRule::precedence`]), so a catch-all schema only receives what no rule claims.
    pub fn new(
        source_table: &str,
        mut schemas: Vec<DataSchema>,
        origin: &str,
    ) -> Result<Self, SchemaError> {
        if schemas.is_empty() {
            return Err(SchemaError::NoneForTable {
                table: source_table.to_string(),
                origin: origin.to_string(),
            });
        }
        let mut names = std::collections::HashSet::new();
        for s in &schemas {
            s.validate(origin)?;
            if s.source_table != source_table {
                return Err(SchemaError::Invalid {
                    origin: origin.to_string(),
                    problem: format!(
                        "table {} belongs to source table {:?}, not {:?}",
                        s.table, s.source_table, source_table
                    ),
                });
            }
            if !names.insert(s.table.clone()) {
                return Err(SchemaError::Invalid {
                    origin: origin.to_string(),
                    problem: format!("table {} is defined twice", s.table),
                });
            }
        }
        let catch_all = schemas.iter().filter(|s| s.rule.is_none()).count();
        if catch_all > 1 {
            return Err(SchemaError::Invalid {
                origin: origin.to_string(),
                problem:
                    "more than one table without a rule; at most one may take every remaining item"
                        .into(),
            });
        }
        schemas.sort_by(|a, b| {
            let key =
                |s: &DataSchema| (s.rule.is_none(), s.rule.as_ref().map(MatchRule::precedence));
            key(a).cmp(&key(b)).then_with(|| a.table.cmp(&b.table))
        });
        Ok(SchemaSet {
            source_table: source_table.to_string(),
            schemas,
        })
    }

    /// Reads every `*.json` file of `dir/<source_table>/`.
    pub fn read_dir(dir: &Path, source_table: &str) -> Result<Self, SchemaError> {
        let folder = dir.join(source_table);
        let origin = folder.display().to_string();
        let entries = match std::fs::read_dir(&folder) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SchemaError::NoneForTable {
                    table: source_table.to_string(),
                    origin,
                })
            }
            Err(source) => {
                return Err(SchemaError::Read {
                    path: origin,
                    source,
                })
            }
        };
        let mut files: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        let mut schemas = Vec::new();
        for path in files {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|source| SchemaError::Read {
                path: shown.clone(),
                source,
            })?;
            schemas.push(DataSchema::from_json(&text, &shown)?);
        }
        SchemaSet::new(source_table, schemas, &origin)
    }

    /// The files of this set as (relative path, content), e.g. `platform/organization.json`.
    pub fn to_files(&self) -> BTreeMap<String, String> {
        self.schemas
            .iter()
            .map(|s| {
                (
                    format!("{}/{}.json", self.source_table, s.table),
                    s.to_pretty_json(),
                )
            })
            .collect()
    }

    pub fn get(&self, table: &str) -> Option<&DataSchema> {
        self.schemas.iter().find(|s| s.table == table)
    }

    /// Every warehouse table of a run with these data-schemas: each of them, `_unclassified` for
    /// the items none claims, then `_overflow` for the values no column can hold.
    pub fn warehouse_tables(&self, key_attributes: &[String]) -> Vec<DataSchema> {
        let mut tables = self.schemas.clone();
        tables.push(unclassified_schema(&self.source_table, key_attributes));
        tables.push(overflow_schema(&self.source_table));
        tables
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(table: &str, rule: Option<(&str, &str)>) -> DataSchema {
        DataSchema {
            format: FORMAT_VERSION,
            source_table: "t".into(),
            table: table.into(),
            rule: rule.map(|(a, p)| MatchRule::prefix(a, p)),
            columns: vec![Column {
                attribute: "pk".into(),
                column: "pk".into(),
                logical_type: LogicalType::Text { max_bytes: 10 },
                nullable: false,
            }],
        }
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let mut v = serde_json::to_value(schema("a", None)).unwrap();
        v["colour"] = serde_json::json!("red");
        let err = DataSchema::from_json(&v.to_string(), "x.json").unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn round_trips_through_json() {
        let s = schema("group", Some(("pk", "GROUP#")));
        let back = DataSchema::from_json(&s.to_pretty_json(), "x").unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn reserved_and_unsafe_columns_are_refused() {
        for bad in ["oid", "Name", "_extra", "1a", "a b"] {
            let mut s = schema("a", None);
            s.columns[0].column = bad.into();
            assert!(s.validate("x").is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn rules_are_tried_longest_prefix_first_and_catch_all_last() {
        let set = SchemaSet::new(
            "t",
            vec![
                schema("rest", None),
                schema("org", Some(("pk", "ORG#"))),
                schema("org_user", Some(("pk", "ORG#USER#"))),
            ],
            "test",
        )
        .unwrap();
        let order: Vec<_> = set.schemas.iter().map(|s| s.table.as_str()).collect();
        assert_eq!(order, ["org_user", "org", "rest"]);
    }

    #[test]
    fn the_reviewed_files_load_and_write_back_byte_for_byte() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
        let mut seen = 0;
        for folder in std::fs::read_dir(&root).unwrap() {
            let folder = folder.unwrap().path();
            if !folder.is_dir() {
                continue;
            }
            let table = folder.file_name().unwrap().to_string_lossy().to_string();
            let set = SchemaSet::read_dir(&root, &table).unwrap();
            for (path, text) in set.to_files() {
                let on_disk = std::fs::read_to_string(root.join(&path)).unwrap();
                assert_eq!(on_disk, text, "schemas/{path} does not round-trip");
                seen += 1;
            }
        }
        assert!(seen >= 7, "only {seen} files under schemas/");
    }

    #[test]
    fn two_catch_alls_are_refused() {
        let err = SchemaSet::new("t", vec![schema("a", None), schema("b", None)], "test");
        assert!(err.is_err());
    }

    #[test]
    fn schema_sources_round_trip_through_their_text_form() {
        for source in [
            SchemaSource::Snapshot("20261121T084500.250Z-0a1b2c3d".into()),
            SchemaSource::Static(PathBuf::from("schemas")),
        ] {
            assert_eq!(source.to_string().parse::<SchemaSource>(), Ok(source));
        }
        assert!("cache".parse::<SchemaSource>().is_err());
    }

    #[test]
    fn varchar_width_rounds_up_and_caps() {
        assert_eq!(varchar_width(0), 256);
        assert_eq!(varchar_width(300), 512);
        assert_eq!(varchar_width(65535), 65535);
        assert_eq!(varchar_width(70000), 65535);
    }
}
